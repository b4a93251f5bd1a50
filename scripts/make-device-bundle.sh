#!/usr/bin/env bash
# Builds build/device/: everything the one-call GPU device check (scripts/device-check.sh) needs on a
# machine that has no Maven, no network and maybe no Java. Called by `make device-bundle`, which first
# runs `make build` (kernels, the cuBLAS shim, the jar, target/lib/ and, through Maven's package
# phase, the compiled tests in target/test-classes/).
#
#   build/device/jre.tar.gz      a jlink runtime (top folder jre/), modules from jdeps over every jar
#   build/device/lib/*.jar       the project jar and its runtime dependencies (target/lib/)
#   build/device/lib/test/       classes/ (a copy of target/test-classes) and JUnit's console launcher jar
#   build/device/kernels/        ptxas.txt (the register report; the modules themselves travel in the jar only)
#   build/device/native/         libcublas.so.12, the cuBLAS 12 -> 13 shim
#   build/device/MANIFEST.txt    commit (and whether the tree was dirty), date, JDK, modules, sizes
#
# The test parts sit in lib/test/ so that `-cp 'build/device/lib/*'` is exactly the runtime class path.
# The test classes stay a folder, not a jar, as under Maven: tests that open their resources as files
# (Path.of(getResource(..).toURI()), e.g. NpyTest's fixtures) fail from a jar.
# Needs JDK 17 (jdeps, jlink, jar), Maven (only to fetch/copy the console launcher; works offline once
# it is in ~/.m2), tar and gzip. Fails when the bundle is larger than 48 MiB (the device tool carries
# 64 MiB in all). The runtime is also unpacked to a temporary folder and run here (java -version,
# headroute --version, headroute info), so a missing JVM module shows up now, not on the GPU machine.
#
# Environment: MVN (default "mvn -B"), JAVA_HOME (default: the java on the PATH),
#   HEADROUTE_BUNDLE_MAX_BYTES (default 50331648 = 48 MiB), HEADROUTE_JLINK_EXTRA_MODULES (comma list).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

MVN=${MVN:-mvn -B}
JUNIT_CONSOLE_VERSION=1.14.4
MAX_BYTES=${HEADROUTE_BUNDLE_MAX_BYTES:-$((48 * 1024 * 1024))}
# jlink --compress=1 (constant-string sharing) rather than 2 (zip): a zip-compressed module image does
# not gzip any further, so with java.desktop (needed by Log4j) --compress=2 packs to 32 MB and
# --compress=1 to 25 MB.
JLINK_COMPRESS=${HEADROUTE_JLINK_COMPRESS:-1}
OUT=build/device
STAGE=build/device.tmp

die() { echo "device-bundle: error: $*" >&2; exit 1; }
say() { echo "device-bundle: $*"; }

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/jlink" ]]; then
    jdk_bin="$JAVA_HOME/bin"
else
    java_path="$(command -v java)" || die "no java on the PATH and no JAVA_HOME: a JDK 17 with jlink is needed"
    jdk_bin="$(dirname "$(readlink -f "$java_path")")"
fi
for tool in jlink jdeps jar java; do
    [[ -x "$jdk_bin/$tool" ]] || die "$jdk_bin/$tool is missing: a full JDK 17 (with jlink and jdeps) is needed"
done
jdk_version="$("$jdk_bin/java" -version 2>&1 | head -n 1)"
jdk_feature="$("$jdk_bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
[[ "$jdk_feature" == 17 ]] || say "warning: jlink is from Java $jdk_feature, not 17 ($jdk_version)"

version="$(sed -n 's|^  <version>\(.*\)</version>$|\1|p' pom.xml | head -n 1)"
jar="target/headroute-$version.jar"
[[ -f "$jar" ]] || die "$jar is missing: run 'make build' first"
[[ -d target/lib ]] && compgen -G 'target/lib/*.jar' >/dev/null || die "target/lib/*.jar is missing: run 'make build' first"
[[ -d target/test-classes/io ]] || die "target/test-classes is missing: run 'mvn test-compile' (make build does it)"
compgen -G 'target/kernels/*.fatbin' >/dev/null \
    || die "target/kernels/*.fatbin is missing: 'make kernels' needs nvcc; a bundle without kernels cannot test the GPU"
[[ -f target/kernels/ptxas.txt ]] || die "target/kernels/ptxas.txt is missing: run 'make kernels'"
[[ -f target/native/libcublas.so.12 ]] || die "target/native/libcublas.so.12 is missing: run 'make native' (gcc, x86-64)"
# A jar older than its sources may hold stale code (make device-bundle runs make build first, and Maven
# leaves an up-to-date jar alone, so this only warns).
newest_src="$(find java cuda-kernels -type f -newer "$jar" -print -quit 2>/dev/null || true)"
[[ -z "$newest_src" ]] || say "warning: $newest_src is newer than $jar (run 'make build' if it changed)"

rm -rf "$STAGE" "$OUT" build/device-jre
mkdir -p "$STAGE/lib/test" "$STAGE/kernels" "$STAGE/native"
trap 'rm -rf "$root/$STAGE" "$root/build/device-verify"' EXIT

say "jars"
cp "$jar" "$STAGE/lib/"
cp target/lib/*.jar "$STAGE/lib/"
# JCuda's natives jar carries libJNvPTXCompiler (24 MB, 8 MB packed), the JNI side of NVIDIA's PTX
# compiler library, which headroute never loads (kernels are compiled ahead by make kernels). The
# bundle's copy leaves it out; HEADROUTE_BUNDLE_KEEP_PTXCOMPILER=1 keeps it.
if [[ "${HEADROUTE_BUNDLE_KEEP_PTXCOMPILER:-0}" != 1 ]]; then
    for natives in "$STAGE"/lib/jcuda-natives-*.jar; do
        [[ -f "$natives" ]] || continue
        python3 - "$natives" <<'PY' || die "could not trim $natives"
import os, sys, zipfile
path = sys.argv[1]
tmp = path + ".tmp"
with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        if "JNvPTXCompiler" not in info.filename:
            dst.writestr(info, src.read(info.filename))
os.replace(tmp, path)
PY
    done
fi
cp -r target/test-classes "$STAGE/lib/test/classes"
console="junit-platform-console-standalone-$JUNIT_CONSOLE_VERSION.jar"
# shellcheck disable=SC2086  # MVN may hold flags, e.g. "mvn -B -o -q"
if ! $MVN -q dependency:copy \
        "-Dartifact=org.junit.platform:junit-platform-console-standalone:$JUNIT_CONSOLE_VERSION" \
        "-DoutputDirectory=$STAGE/lib/test" >"$STAGE/mvn.log" 2>&1 || [[ ! -f "$STAGE/lib/test/$console" ]]; then
    cat "$STAGE/mvn.log" >&2
    die "could not get $console through Maven (offline? run once without -o, or put it in ~/.m2)"
fi
rm -f "$STAGE/mvn.log"
# README's Java programs, compiled here: the bundle's runtime has no compiler, and ReadmeExamplesGpuTest runs the
# GPU one from these classes (checking they were compiled from README's current source).
"$jdk_bin/java" -cp "$STAGE/lib/*:$STAGE/lib/test/*:$STAGE/lib/test/classes" io.headroute.ReadmeExamples \
    "$STAGE/lib/test/readme-examples" >/dev/null || die "could not compile README's Java programs for the bundle"

say "kernels, native shim"
# The fatbins are in the jar (io/headroute/kernels/, where KernelModule loads them); loose copies would cost
# ~11 MB of the carry limit, so the bundle keeps only ptxas's report, and MANIFEST.txt their checksums.
cp target/kernels/ptxas.txt "$STAGE/kernels/"
cp target/native/libcublas.so.12 "$STAGE/native/"

say "jdeps"
all_jars=("$STAGE"/lib/*.jar "$STAGE"/lib/test/*.jar "$STAGE/lib/test/classes")
cp_all="$(IFS=:; echo "${all_jars[*]}")"
jdeps_modules="$("$jdk_bin/jdeps" --print-module-deps --ignore-missing-deps --multi-release 17 -q \
    --class-path "$cp_all" "${all_jars[@]}" | tail -n 1)"
[[ "$jdeps_modules" =~ ^[a-z][a-z0-9.,]*$ ]] || die "jdeps printed no module list: $jdeps_modules"
# jdeps' list is used as it is (java.desktop included: Log4j's LoggerContext needs java.beans at start-up),
# plus java.xml (Log4j's XML configuration), java.logging (JCuda), jdk.unsupported (Log4j, Unsafe) and
# java.management (Log4j's JMX), named so that they stay should jdeps' list change.
# jdk.zipfs is a service provider jdeps cannot see: without it JUnit's package scan cannot open jars
# ("Provider \"jar\" not found") and finds no test at all.
modules="$(echo "$jdeps_modules,java.xml,java.logging,java.management,jdk.unsupported,jdk.zipfs${HEADROUTE_JLINK_EXTRA_MODULES:+,$HEADROUTE_JLINK_EXTRA_MODULES}" \
    | tr ',' '\n' | sort -u | paste -sd, -)"
say "jdeps: $jdeps_modules"
say "jlink modules: $modules"

say "jlink"
mkdir -p "$STAGE/jlink"
"$jdk_bin/jlink" --add-modules "$modules" --strip-debug --no-header-files --no-man-pages --compress="$JLINK_COMPRESS" \
    --output "$STAGE/jlink/jre"
jre_unpacked_bytes="$(du -sb "$STAGE/jlink/jre" | cut -f1)"
tar -C "$STAGE/jlink" -czf "$STAGE/jre.tar.gz" jre
rm -rf "$STAGE/jlink"

say "checking the bundle with its own runtime"
verify=build/device-verify
rm -rf "$verify" && mkdir -p "$verify"
tar -C "$verify" -xzf "$STAGE/jre.tar.gz"
bjava="$verify/jre/bin/java"
runtime_version="$("$bjava" -version 2>&1)" || die "the bundled runtime does not start: $runtime_version"
hr_version="$("$bjava" -cp "$STAGE/lib/*" io.headroute.cli.Main --version 2>&1)" \
    || die "headroute --version failed on the bundled runtime: $hr_version"
# info touches picocli, Log4j (XML configuration) and the GPU probe; disabled CUDA keeps it quick here.
info_out="$("$bjava" -Dheadroute.cuda.disable=true -cp "$STAGE/lib/*" io.headroute.cli.Main info 2>&1)" \
    || die "headroute info failed on the bundled runtime: $info_out"
# The package scan, as the device check runs it (it needs jdk.zipfs to read the jars), narrowed to one class.
launcher_out="$("$bjava" -cp "$STAGE/lib/*:$STAGE/lib/test/*:$STAGE/lib/test/classes" org.junit.platform.console.ConsoleLauncher \
    execute --disable-banner --disable-ansi-colors --details=none --fail-if-no-tests \
    --select-package io.headroute.cli --include-classname 'io\.headroute\.cli\.MainTest' 2>&1)" \
    || die "the console launcher failed on the bundled runtime (package scan for MainTest):
$launcher_out"
if grep -q 'WARNING: Error scanning' <<<"$launcher_out"; then
    die "the console launcher could not scan the jars on the bundled runtime:
$launcher_out"
fi
rm -rf "$verify"
say "runtime ok: $(echo "$runtime_version" | head -n 1); $hr_version; MainTest passes under the console launcher"

commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ "$commit" == unknown ]]; then
    dirty=unknown
elif [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    dirty=yes
else
    dirty=no
fi

size_of() { du -sb "$1" | cut -f1; }
{
    echo "headroute device bundle"
    echo "commit: $commit"
    echo "dirty: $dirty"
    echo "branch: $(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "built_on: $(uname -srm)"
    echo "headroute_version: $version"
    echo "jlink_java: $jdk_version"
    echo "jdeps_modules: $jdeps_modules"
    echo "jlink_modules: $modules"
    echo "jlink_compress: $JLINK_COMPRESS"
    echo "jre_unpacked_bytes: $jre_unpacked_bytes"
    echo "jcuda_natives_trimmed: $([[ "${HEADROUTE_BUNDLE_KEEP_PTXCOMPILER:-0}" == 1 ]] && echo no || echo 'yes (libJNvPTXCompiler left out)')"
    echo "nvcc: $( (command -v nvcc >/dev/null && nvcc --version | tail -n 1) || echo none)"
    echo
    echo "sizes (bytes):"
    printf '  %-60s %12s\n' jre.tar.gz "$(size_of "$STAGE/jre.tar.gz")"
    for f in "$STAGE"/lib/*.jar "$STAGE"/lib/test/*.jar "$STAGE/lib/test/classes" "$STAGE"/kernels/* "$STAGE"/native/*; do
        printf '  %-60s %12s\n' "${f#"$STAGE"/}" "$(size_of "$f")"
    done
    printf '  %-60s %12s\n' "lib/ (all)" "$(size_of "$STAGE/lib")"
    printf '  %-60s %12s\n' "kernels/ (all)" "$(size_of "$STAGE/kernels")"
    printf '  %-60s %12s\n' "native/ (all)" "$(size_of "$STAGE/native")"
    echo
    echo "sha256:"
    (cd "$STAGE" && sha256sum native/libcublas.so.12 "lib/headroute-$version.jar" | sed 's/^/  /')
    (cd target && sha256sum kernels/*.fatbin | sed 's/^/  /; s/$/ (in the jar)/')
} >"$STAGE/MANIFEST.txt"

total="$(size_of "$STAGE")"
echo "  total (bundle): $total bytes" >>"$STAGE/MANIFEST.txt"
if (( total > MAX_BYTES )); then
    sed -n '/^sizes/,$p' "$STAGE/MANIFEST.txt" >&2
    die "the bundle is $total bytes, more than the $MAX_BYTES allowed ($(( MAX_BYTES / 1048576 )) MiB; the device tool carries 64 MiB in all)"
fi
mv "$STAGE" "$OUT"
trap - EXIT
say "$OUT: $total bytes ($(( total / 1048576 )) MiB of $(( MAX_BYTES / 1048576 )) MiB); see $OUT/MANIFEST.txt"
