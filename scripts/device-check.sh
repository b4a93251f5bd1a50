#!/usr/bin/env bash
# headroute's one-call GPU device check. Run from the repository root on the lent GPU machine:
#
#     bash scripts/device-check.sh            # with $OUT set by the device tool (default ./device-out)
#
# It needs the bundle from `make device-bundle` (build/device/, carried with the call) and, on that
# machine, nothing else but bash, coreutils and python3: no Maven, no network, no system Java. Each step
# logs to <work>/<step>.log, runs under its own `timeout`, and records its status, so one failing or hanging
# step does not hide the rest. A summary table is printed last, because the device tool shows only the last
# 12,000 characters of output. The device tool brings back at most 8 files from $OUT, so the steps write to a
# work folder (HEADROUTE_WORK, default build/device-run/) and $OUT receives three: summary.md, steps.tsv and
# results.tar.gz (the work folder without its .npy inputs and outputs; a file over 2 MiB is left out and named
# in left-out.txt inside it).
#
# Steps, in order (each bounded; the whole run stays within HEADROUTE_CHECK_BUDGET seconds, default 560, then
# ~20 s for the summary and the archive: run it with the device tool's timeout_s 600; every step keeps a floor of
# time for the ones after it, and the caps below add up to the default budget):
#   facts      date, nvidia-smi, nvcc, java/cuBLAS/torch found on the machine, commit
#   java       the bundled jlink runtime (unpacked to build/device-jre/), else a system java >= 17
#   cublas     libcublas.so.13 (ldconfig, /usr/local/cuda*, python's nvidia/* packages); the cuBLAS shim's
#              coverage of it (nm)
#   info       headroute info through the bundle
#   gpu-tests  the @Tag("gpu") JUnit tests through JUnit's console launcher (reports in $OUT/junit/), but
#              not those also tagged gpu-long (the 32K experiment preset; the bench step covers 32K)
#   bench      headroute bench --backend cuda, bf16, flash (the default W4 tiling) and materialized, L = 4K, 16K,
#              32K: first the 32K H16 D128 dense run, the block-sparse density sweep compared with it (window:W
#              at ~5/10/25/50% density, and dense, --algos sparse) and issue 6's routed runs (bench --route 2:4
#              and 2:4:64: routed vs dense flash in the same run); then the other shapes, smallest first; then,
#              each in a run of its own (a failure or hang costs only that run), flash in W2, W4X2, WG, WGP,
#              WGX2 and WGPX2 (--tilings w2,w4x2,wg,wgp,wgx2,wgpx2; WG* = wgmma, sm_90 only) on every dense
#              shape, and sparse in WGPX2 at ~10% and ~50% density on 128-blocks (--block-size 128: the block
#              mask FlexAttention's rows use; the sweep's own runs use the default, 64)
#   torch      bench/torch_reference.py: PyTorch SDPA per backend and FlexAttention on the same shapes,
#              and the comparison inputs with float64 references ($OUT/compare/)
#   compare    headroute attend (cpu f32; sparse bf16 on a window pattern, in the engine's tiling on 64-blocks and in
#              WGPX2 on 128-blocks, the density sweep's check; cuda flash/materialized f32/bf16, flash bf16 in W2, W4X2,
#              WG, WGP, WGX2, WGPX2, sparse bf16 in WGPX2) on the comparison inputs, relative L2 error against the
#              float64 reference
#   sanitizer  compute-sanitizer memcheck (flash f32, flash bf16, materialized f32, sparse bf16 with a gate
#              (tile list), sparse bf16 with row compaction (the merging kernel), flash f32 with row
#              compaction, flash bf16 in the W2, W4X2, WG, WGP, WGX2 and WGPX2 tilings, sparse bf16 with a gate in
#              WGPX2) and racecheck (flash bf16
#              in W4, W2, W4X2, WG, WGP and WGPX2; the merging sparse kernel) on tiny attend cases
#   ncu        Nsight Compute on the flash kernel in W4, W2, W4X2, WG, WGP, WGX2 and WGPX2 (one bench process,
#              bf16 H16 D128 L=S=8192): throughput sections, then tensor-pipe and shared-memory counters, with the time left
#   summary    the table
#
# Environment:
#   OUT                     the folder whose files come back (default ./device-out): summary.md, steps.tsv,
#                           results.tar.gz
#   HEADROUTE_WORK          the steps' work folder (default build/device-run; cleared of this script's files first)
#   HEADROUTE_STEPS         subset, e.g. "gpu-tests,compare" (java and cublas are added when needed)
#   HEADROUTE_CHECK_BUDGET  seconds for all steps together (default 560)
#   HEADROUTE_BUNDLE        the bundle folder (default build/device)
#   HEADROUTE_JAVA          a java to use instead of the bundled one
#   HEADROUTE_CUBLAS13      a libcublas.so.13 (file or folder) to use instead of searching
#   HEADROUTE_JAVA_OPTS     extra JVM options for every java run (split on spaces)
#   HEADROUTE_QUICK=1       small bench shapes only (L = 1024, 2048) and torch_reference.py --quick
#   HEADROUTE_BENCH_LENS    the bench step's lengths instead (e.g. "256" for a pre-flight on the CPU emulator:
#                           LD_LIBRARY_PATH=target/native/emu HEADROUTE_CUBLAS13=target/native/emu/libcublas.so.13)
# Without a GPU (e.g. a dry run on a developer machine) every step still runs or says why not, quickly.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export ROOT="$PWD"
# RESULTS: where the device tool picks files up (at most 8 come back); OUT, from here on: the steps' work folder.
export RESULTS="${OUT:-$ROOT/device-out}"
mkdir -p "$RESULTS" || { echo "device-check: cannot create $RESULTS" >&2; exit 1; }
RESULTS="$(cd "$RESULTS" && pwd)"
export OUT="${HEADROUTE_WORK:-$ROOT/build/device-run}"
mkdir -p "$OUT" || { echo "device-check: cannot create $OUT" >&2; exit 1; }
OUT="$(cd "$OUT" && pwd)"
if [[ "$OUT" == "$RESULTS" ]]; then echo "device-check: HEADROUTE_WORK must differ from OUT" >&2; exit 2; fi
rm -f "$RESULTS/summary.md" "$RESULTS/steps.tsv" "$RESULTS/results.tar.gz"
export BUNDLE="${HEADROUTE_BUNDLE:-$ROOT/build/device}"
export PY="$ROOT/scripts/device_check.py"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ folders in the tree
export BUDGET="${HEADROUTE_CHECK_BUDGET:-560}"
export QUICK="${HEADROUTE_QUICK:-0}"
export T0
T0="$(date +%s)"
export DEADLINE=$((T0 + BUDGET))
SUMMARY_RESERVE=10

ALL_STEPS=(facts java cublas info gpu-tests bench torch compare sanitizer ncu)
# Caps adding up to the default budget, so that with it every step gets its cap (the bench would use any time
# given; at 330 s the last four steps got their floors: ncu, FlexAttention and most compare and sanitizer cases
# never ran).
declare -A CAP=([facts]=25 [java]=30 [cublas]=20 [info]=30 [gpu-tests]=110 [bench]=120 [torch]=95 [compare]=45 [sanitizer]=45
    [ncu]=40)
declare -A FLOOR=([facts]=5 [java]=5 [cublas]=5 [info]=10 [gpu-tests]=30 [bench]=30 [torch]=40 [compare]=15 [sanitizer]=20
    [ncu]=10)

# Only what this script writes is cleared, so a rerun into the same folder starts clean.
rm -rf "$OUT/state" "$OUT/junit" "$OUT/junit-probe" "$OUT/junit-probe.log" "$OUT/bench" "$OUT/compare" "$OUT/sanitizer" \
    "$OUT/ncu" "$OUT/torch.json" "$OUT/summary.md" "$OUT/steps.tsv" "$OUT"/*.log "$OUT/tmp" "$OUT/summary.err"
mkdir -p "$OUT/state" "$OUT/tmp"
: >"$OUT/state/info.txt"
: >"$OUT/state/env.sh"
printf 'step\tstatus\tsecs\tnote\n' >"$OUT/steps.tsv"

# ----------------------------------------------------------------------------------------- helpers
elapsed() { echo $(($(date +%s) - T0)); }
# "key: value" facts for the summary (the last value of a key wins).
info() { printf '%s: %s\n' "$1" "$2" >>"$OUT/state/info.txt"; }
# The running step's status and a short note (the runner falls back to the exit code).
status() { printf '%s\t%s\n' "$1" "${2:-}" >"$OUT/state/$STEP.status"; }
# Seconds left to the running step.
left() { echo $((STEP_DEADLINE - $(date +%s))); }
# min(N, seconds left to the step less 3): an inner timeout fires before the step's own, so the step
# still records what happened.
cap() {
    local l
    l=$(($(left) - 3))
    if ((l < 1)); then l=1; fi  # never 0: `timeout 0` means no limit at all
    if ((l < $1)); then echo "$l"; else echo "$1"; fi
}
have_gpu() { [[ "${HAVE_GPU:-0}" == 1 ]]; }
have_java() { [[ -n "${JAVA:-}" && -x "${JAVA:-}" ]]; }
setenv() { printf '%s\n' "$*" >>"$OUT/state/env.sh"; }
# The JVM options of every java run: a heap limit (the default, a quarter of MemTotal, may be small where the
# machine's memory grows as it is used), JCuda's native libraries extracted into the work folder (not a shared or
# noexec /tmp), crash reports kept with the logs; the shim's folder and the libcublas.so.13 found by the cublas step.
jvm_opts() {
    JOPTS=(-Xmx24g "-Djava.io.tmpdir=$OUT/tmp" "-XX:ErrorFile=$OUT/hs_err_pid%p.log" "-Dheadroute.native.dir=$BUNDLE/native")
    if [[ -n "${CUBLAS13:-}" ]]; then JOPTS+=("-Dheadroute.cublas13=$CUBLAS13"); fi
    # cuBLAS's folder for the JVM alone (not exported to the torch step, whose own CUDA libraries it could shadow).
    if [[ -n "${CUBLAS_DIR:-}" ]]; then export LD_LIBRARY_PATH="$CUBLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
    # shellcheck disable=SC2206  # split on spaces on purpose, like the ./headroute launcher
    if [[ -n "${HEADROUTE_JAVA_OPTS:-}" ]]; then JOPTS+=(${HEADROUTE_JAVA_OPTS}); fi
}
# Launchers usable under `timeout` and compute-sanitizer: $OUT/state/jvm (java + options) and
# $OUT/state/hr (headroute's command line). They read env.sh when run, so later steps' findings count.
make_launchers() {
    cat >"$OUT/state/jvm" <<EOF
#!/usr/bin/env bash
source "$OUT/state/env.sh"
opts=(-Xmx24g "-Djava.io.tmpdir=$OUT/tmp" "-XX:ErrorFile=$OUT/hs_err_pid%p.log" "-Dheadroute.native.dir=$BUNDLE/native")
if [[ -n "\${CUBLAS13:-}" ]]; then opts+=("-Dheadroute.cublas13=\$CUBLAS13"); fi
if [[ -n "\${CUBLAS_DIR:-}" ]]; then export LD_LIBRARY_PATH="\$CUBLAS_DIR\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"; fi
# shellcheck disable=SC2086
exec "\$JAVA" "\${opts[@]}" \${HEADROUTE_JAVA_OPTS:-} "\$@"
EOF
    cat >"$OUT/state/hr" <<EOF
#!/usr/bin/env bash
exec "$OUT/state/jvm" -cp "$BUNDLE/lib/*" io.headroute.cli.Main "\$@"
EOF
    chmod +x "$OUT/state/jvm" "$OUT/state/hr"
}
java_feature() { "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | head -n 1; }
last_line() { grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-150; }

# ------------------------------------------------------------------------------------------- steps
# attend's --algo for a run's label: gated and flash-TILING (w2, w4x2, wg, wgp, wgx2, wgpx2) are flash runs (with
# --gate, --tiling), sparse-compact and sparse-TILING (wg, wgp, wgx2, wgpx2) sparse ones.
attend_algo() {
    case $1 in gated | flash-w*) echo flash ;; sparse-compact | sparse-w*) echo sparse ;; *) echo "$1" ;; esac
}

step_facts() {
    echo "== date -u"
    date -u
    info date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    # The commit first: the results are filed under it, whatever the slower probes below run into.
    echo "== commit"
    local commit="" dirty="" bcommit bdirty bbuilt
    if command -v git >/dev/null 2>&1 && commit="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null)"; then
        if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then dirty=dirty; else dirty=clean; fi
        echo "git: $commit ($dirty)"
    else
        echo "git: no repository here (the commit comes from the bundle's MANIFEST.txt)"
        commit=""
    fi
    bcommit="$(sed -n 's/^commit: //p' "$BUNDLE/MANIFEST.txt" 2>/dev/null)"
    bdirty="$(sed -n 's/^dirty: //p' "$BUNDLE/MANIFEST.txt" 2>/dev/null)"
    bbuilt="$(sed -n 's/^built: //p' "$BUNDLE/MANIFEST.txt" 2>/dev/null)"
    echo "bundle: ${bcommit:-no MANIFEST.txt} (dirty: ${bdirty:-?}, built ${bbuilt:-?})"
    if [[ -n "$commit" ]]; then
        info commit "${commit:0:12} ($dirty)"
    else
        info commit "${bcommit:0:12} (from the bundle)"
    fi
    local same=""
    if [[ -n "$commit" && -n "$bcommit" && "$commit" != "$bcommit" ]]; then same=" - NOT the tree's commit"; fi
    info bundle "${bcommit:0:12} (dirty: ${bdirty:-?}) built ${bbuilt:-?}$same"
    if command -v nvidia-smi >/dev/null 2>&1; then
        echo "== nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv"
        timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1
        local q name mem drv cc
        q="$(timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>/dev/null | head -n 1)"
        IFS=',' read -r name mem drv cc <<<"$q"
        info card "$(echo "${name:-?}" | xargs)"
        info memory "$(echo "${mem:-?}" | xargs)"
        info driver "$(echo "${drv:-?}" | xargs)"
        info compute_cap "$(echo "${cc:-?}" | xargs)"
        echo "== nvidia-smi"
        timeout 20 nvidia-smi 2>&1
    else
        echo "nvidia-smi: not found"
        info card "none (no nvidia-smi)"
    fi
    echo "== nvcc --version"
    local nvcc
    nvcc="$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)"
    if [[ -n "$nvcc" ]]; then
        "$nvcc" --version 2>&1
        info nvcc "$("$nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\), V\([0-9.]*\).*/\2/p')"
    else
        echo "nvcc: not found"
        info nvcc none
    fi
    echo "== command -v java"
    if command -v java; then java -version 2>&1; else echo "no java on the PATH"; fi
    echo "== ldconfig -p | grep -E 'libcuda.so|libcublas'"
    ldconfig -p 2>/dev/null | grep -E 'libcuda.so|libcublas' || echo "(none)"
    echo "== find /usr /opt -xdev -name 'libcublas.so.1*' (5 s at most; the cublas step searches python's packages)"
    timeout "$(cap 5)" find /usr /opt -xdev -name 'libcublas.so.1*' 2>/dev/null | head -n 20
    echo "== python3, torch"
    if command -v python3 >/dev/null 2>&1; then
        python3 --version 2>&1
        local t
        t="$(timeout "$(cap 15)" python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")' 2>&1 | tail -n 1)"
        echo "$t"
        info torch "$t"
    else
        echo "no python3"
        info torch "no python3"
    fi
    echo "== compute-sanitizer"
    command -v compute-sanitizer 2>&1 || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null || echo "not found"
    echo "== machine"
    uname -a
    nproc
    free -g 2>/dev/null | head -n 2
    echo "== bundle"
    du -sh "$BUNDLE" 2>&1
    head -n 14 "$BUNDLE/MANIFEST.txt" 2>&1
    if [[ -n "$same" ]]; then
        status ok "bundle built from ${bcommit:0:12}, tree at ${commit:0:12}: run make device-bundle"
    else
        status ok "$(have_gpu && echo "GPU visible" || echo "no GPU visible")"
    fi
}

step_java() {
    local cand="" desc="" feature
    if [[ -n "${HEADROUTE_JAVA:-}" ]]; then
        cand="$HEADROUTE_JAVA"
        desc="HEADROUTE_JAVA"
    elif [[ -x "$BUNDLE/jre/bin/java" ]]; then
        cand="$BUNDLE/jre/bin/java"
        desc="bundled runtime"
    elif [[ -f "$BUNDLE/jre.tar.gz" ]]; then
        # Unpacked beside the bundle, not inside it: build/device/ must stay small enough to carry.
        local dest="$ROOT/build/device-jre" stamp
        stamp="$(cksum <"$BUNDLE/jre.tar.gz")"
        if [[ ! -x "$dest/jre/bin/java" || "$(cat "$dest/.stamp" 2>/dev/null)" != "$stamp" ]]; then
            echo "unpacking $BUNDLE/jre.tar.gz to $dest"
            rm -rf "$dest" && mkdir -p "$dest" && tar -C "$dest" -xzf "$BUNDLE/jre.tar.gz" \
                && echo "$stamp" >"$dest/.stamp" || echo "unpacking failed"
        fi
        cand="$dest/jre/bin/java"
        desc="bundled runtime"
    else
        echo "no bundled runtime: $BUNDLE/jre.tar.gz is missing (make device-bundle)"
    fi
    if [[ -n "$cand" ]]; then
        feature="$(java_feature "$cand")"
        if [[ -z "$feature" ]]; then
            echo "$cand does not start:"
            "$cand" -version 2>&1 | tail -n 5
            cand=""
        fi
    fi
    if [[ -z "$cand" ]]; then
        local sys
        for sys in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java 2>/dev/null)"; do
            [[ -n "$sys" && -x "$sys" ]] || continue
            feature="$(java_feature "$sys")"
            echo "system java $sys: specification version ${feature:-?}"
            if [[ -n "$feature" ]] && ((${feature%%.*} >= 17)); then
                cand="$sys"
                desc="system java"
                break
            fi
        done
    fi
    if [[ -z "$cand" ]]; then
        info java "none"
        status fail "no java: neither $BUNDLE/jre.tar.gz (make device-bundle) nor a system java >= 17"
        return 1
    fi
    cand="$(cd "$(dirname "$cand")" && pwd)/$(basename "$cand")"
    "$cand" -version 2>&1
    setenv "JAVA=$(printf '%q' "$cand")"
    local v
    v="$("$cand" -version 2>&1 | head -n 1)"
    info java "$desc: $v ($cand)"
    if [[ ! -d "$BUNDLE/lib" ]]; then
        status fail "$desc found, but $BUNDLE/lib is missing (make device-bundle)"
        return 1
    fi
    status ok "$desc, $v"
}

step_cublas() {
    local cands=() c d
    if [[ -n "${HEADROUTE_CUBLAS13:-}" ]]; then
        if [[ -d "$HEADROUTE_CUBLAS13" ]]; then cands+=("$HEADROUTE_CUBLAS13/libcublas.so.13"); else cands+=("$HEADROUTE_CUBLAS13"); fi
    fi
    while read -r c; do [[ -n "$c" ]] && cands+=("$c"); done < <(ldconfig -p 2>/dev/null | awk '/libcublas\.so\.13 /{print $NF}')
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 \
        /usr/local/cuda-*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
        [[ -e "$d/libcublas.so.13" ]] && cands+=("$d/libcublas.so.13")
    done
    if command -v python3 >/dev/null 2>&1; then
        while read -r c; do [[ -n "$c" ]] && cands+=("$c"); done < <(timeout 30 python3 - <<'PY' 2>/dev/null
import glob, os, site, sys
dirs = []
for f in (site.getsitepackages, lambda: [site.getusersitepackages()]):
    try:
        dirs += list(f())
    except Exception:
        pass
dirs += [p for p in sys.path if p.endswith("-packages")]
try:
    import nvidia
    dirs += [os.path.dirname(p) for p in nvidia.__path__]
except Exception:
    pass
seen = set()
for d in dirs:
    for pat in ("nvidia/cu13/lib/libcublas.so.13*", "nvidia/cublas/lib/libcublas.so.13*",
                "nvidia/*/lib/libcublas.so.13*", "torch/lib/libcublas.so.13*"):
        for f in sorted(glob.glob(os.path.join(d, pat))):
            f = os.path.realpath(f) if not f.endswith("libcublas.so.13") else f
            if f not in seen:
                seen.add(f)
                print(f)
PY
        )
    fi
    echo "candidates:"
    local chosen=""
    for c in "${cands[@]}"; do
        local lt=no
        compgen -G "$(dirname "$c")/libcublasLt.so.13*" >/dev/null && lt=yes
        echo "  $c (exists: $([[ -e "$c" ]] && echo yes || echo no), libcublasLt beside it: $lt)"
        if [[ -z "$chosen" && -e "$c" && "$lt" == yes ]]; then chosen="$c"; fi
    done
    if [[ -z "$chosen" ]]; then
        for c in "${cands[@]}"; do [[ -e "$c" ]] && { chosen="$c"; break; }; done
    fi
    if [[ -z "$chosen" ]]; then
        info cublas "libcublas.so.13 not found"
        if have_gpu; then status fail "libcublas.so.13 not found (set HEADROUTE_CUBLAS13)"; return 1; fi
        status skipped "no GPU; libcublas.so.13 not found either"
        return 0
    fi
    chosen="$(cd "$(dirname "$chosen")" && pwd)/$(basename "$chosen")"
    d="$(dirname "$chosen")"
    echo "chosen: $chosen"
    setenv "CUBLAS13=$(printf '%q' "$chosen")"
    setenv "export HEADROUTE_CUBLAS13=$(printf '%q' "$chosen")"
    # Its folder goes on the JVMs' library path only (the launchers, jvm_opts), not on every step's.
    setenv "CUBLAS_DIR=$(printf '%q' "$d")"
    local coverage="nm missing: shim coverage not checked"
    if command -v nm >/dev/null 2>&1 && [[ -f "$ROOT/native/cublas12-symbols.txt" ]]; then
        local missing
        missing="$(grep -v '^#' "$ROOT/native/cublas12-symbols.txt" | LC_ALL=C sort -u | LC_ALL=C comm -23 - \
            <(nm -D --defined-only "$chosen" 2>/dev/null | awk '{sub(/@.*/, "", $3); print $3}' | LC_ALL=C sort -u))"
        local n total
        n="$(printf '%s' "$missing" | grep -c . || true)"
        total="$(grep -vc '^#' "$ROOT/native/cublas12-symbols.txt")"
        echo "cuBLAS 12 functions JCublas2 imports that $chosen does not export: $n of $total"
        printf '%s\n' "$missing" | head -n 40 | sed 's/^/  /'
        coverage="shim: $n of $total JCublas2 imports missing in it"
    fi
    info cublas "$chosen; $coverage"
    status ok "$(basename "$d")/$(basename "$chosen"); $coverage"
}

step_info() {
    have_java || { status skipped "no java"; return 0; }
    timeout -k 5 "$(cap 60)" "$OUT/state/hr" info
    local rc=$?
    echo "(exit $rc)"
    local cuda
    cuda="$(grep -m1 '^backend cuda' "$OUT/info.log" | cut -c1-110)"
    info cuda_backend "${cuda:-?}"
    if ((rc == 0)); then status ok "${cuda:-}"; else status fail "exit $rc: $(grep -m1 -i 'error' "$OUT/info.log" | cut -c1-100)"; fi
}

step_gpu_tests() {
    have_java || { status skipped "no java"; return 0; }
    [[ -d "$BUNDLE/lib/test/classes/io" ]] || { status fail "no $BUNDLE/lib/test/classes (make device-bundle)"; return 1; }
    # The class path holds everything (the JVM expands the wildcards); the console launcher then scans the
    # package in the test classes folder. A per-test timeout makes a test stuck in Java fail instead of using the step up.
    # First the wgmma layout probes on their own (seconds; reports in junit-probe/): should the step's limit
    # cut the whole run short, their verdict still tells a misread descriptor from a bug in the WG/WGP loop.
    # -Dheadroute.pool.poison=true: as under Maven, every device pool fills what it hands out with NaN bytes.
    timeout -k 5 "$(cap 30)" "$OUT/state/jvm" -Dheadroute.pool.poison=true \
        -cp "$BUNDLE/lib/*:$BUNDLE/lib/test/*:$BUNDLE/lib/test/classes" \
        org.junit.platform.console.ConsoleLauncher execute \
        --select-class io.headroute.engine.cuda.WgmmaProbeGpuTest --include-tag gpu \
        --reports-dir "$OUT/junit-probe" --details=flat --disable-banner --disable-ansi-colors >"$OUT/junit-probe.log" 2>&1 \
        </dev/null
    # Its console output has a log of its own: this step's log is the main run's, which the summary counts.
    echo "(wgmma probes: console launcher exit $?; $OUT/junit-probe.log)"
    timeout -k 5 "$(cap 150)" "$OUT/state/jvm" -Dheadroute.pool.poison=true \
        -cp "$BUNDLE/lib/*:$BUNDLE/lib/test/*:$BUNDLE/lib/test/classes" \
        org.junit.platform.console.ConsoleLauncher execute \
        --select-package io.headroute --include-tag gpu --exclude-tag gpu-long --fail-if-no-tests \
        --config 'junit.jupiter.execution.timeout.default=100 s' \
        --reports-dir "$OUT/junit" --details=flat --disable-banner --disable-ansi-colors </dev/null
    local rc=$?
    echo "(console launcher exit $rc)"
    local counts
    # The XML report is written at the end; cut off by the timeout, the flat log (printed as tests finish) counts.
    counts="$(python3 "$PY" junit "$OUT/junit" --log "$OUT/gpu-tests.log" 2>&1)"
    echo "$counts"
    case $rc in
        0) status ok "$counts" ;;
        2) status fail "no test tagged gpu found (exit 2)" ;;
        124 | 137) status timeout "$counts" ;;
        *) status fail "$counts" ;;
    esac
}

step_bench() {
    have_java || { status skipped "no java"; return 0; }
    mkdir -p "$OUT/bench"
    printf 'name\theads\tdim\tlen\tcausal\tpattern\talgos\trc\tsecs\tstatus\troute\tblock_size\n' >"$OUT/bench/runs.tsv"
    local lens=(4096 16384 32768) w10 w50
    if [[ "$QUICK" == 1 ]]; then lens=(1024 2048); fi
    if [[ -n "${HEADROUTE_BENCH_LENS:-}" ]]; then read -r -a lens <<<"${HEADROUTE_BENCH_LENS//,/ }"; fi
    # Window widths for ~5/10/25/50% token density at L = 32768: the same as torch_reference.py's FlexAttention.
    local dens=()
    read -r -a dens < <(python3 -B -c 'import sys; sys.path.insert(0, "bench"); import torch_reference as t; print(*[t.window_for_density(32768, x) for x in t.FLEX_DENSITIES])' 2>/dev/null || echo "830 1682 4390 9598")
    # Each run: "H D L causal pattern algos route tilings block-size" ("-": no route, no other tilings, the
    # sparse layout's default block size, 64).
    local runs=() n hd c i
    # The tilings never run on a GPU before (W2, W4X2 and the wgmma ones) are timed in runs of their own after
    # every baseline run, so that one that fails or hangs costs its own run, not the baseline's numbers nor the
    # runs after it; the summary takes each algorithm's first measurement of a shape.
    local later=()
    local all_tilings=w2,w4x2,wg,wgp,wgx2,wgpx2
    # First what only L = 32768 gives (so that the step's budget cuts the other shapes, not these): the
    # H=16 D=128 dense run, issue 5's density table against it (the sparse kernel at each density; 100% is
    # the dense pattern through the sparse kernel) and issue 6's routed heads (Hs = 2 shared, k = 4 of 14
    # routed, per token and per 64-token block, each against dense flash in the same run). Then the rest,
    # smallest first; then the other tilings, in the same order.
    local first=0
    for n in "${lens[@]}"; do [[ "$QUICK" != 1 && "$n" == 32768 ]] && first=1; done
    if ((first)); then
        runs+=("16 128 32768 0 dense flash,materialized - - -")
        later+=("16 128 32768 0 dense flash - $all_tilings -")
        for i in "${!dens[@]}"; do
            runs+=("16 128 32768 0 window:${dens[$i]} sparse - - -")
            # The ~10% and ~50% goals also in WGPX2 (128-row tiles; the dense run times flash in it too), on
            # 128-blocks: the same block mask as FlexAttention's rows (torch_reference.py's FLEX_BLOCK).
            if ((i == 1 || i == 3)); then later+=("16 128 32768 0 window:${dens[$i]} sparse - wgpx2 128"); fi
        done
        runs+=("16 128 32768 0 dense sparse - - -" "16 128 32768 0 dense flash 2:4 - -"
            "16 128 32768 0 dense flash 2:4:64 - -")
    fi
    for n in "${lens[@]}"; do
        for hd in "16 128" "32 64"; do
            for c in 0 1; do
                if ((first)) && [[ "$hd $n $c" == "16 128 32768 0" ]]; then continue; fi
                runs+=("$hd $n $c dense flash,materialized - - -")
                later+=("$hd $n $c dense flash - $all_tilings -")
            done
        done
    done
    runs+=("${later[@]}")
    local r h d causal pattern algos route tilings bs kind name t rc start secs st skip_all="" ok=0 failed=0 skipped=0
    # After a timeout, the same head configuration is not tried again at that length or above, in the same kind
    # of run (the baseline, or the other tilings).
    local -A skip_from=()
    for r in "${runs[@]}"; do
        read -r h d n causal pattern algos route tilings bs <<<"$r"
        [[ $route == - ]] && route=""
        [[ $tilings == - ]] && tilings=""
        [[ $bs == - ]] && bs=""
        kind=$([[ -n $tilings ]] && echo tilings || echo base)
        name="bench-h$h-d$d-L$n-$([[ $causal == 1 ]] && echo causal || echo "${pattern//:/}")$([[ $algos == sparse ]] && echo -sparse)$([[ -n $route ]] && echo "-route${route//:/-}")$([[ -n $tilings ]] && echo -tilings)$([[ -n $bs ]] && echo "-bs$bs")"
        t="$(cap 60)"
        if [[ -n "$skip_all" ]]; then
            st="skipped: $skip_all"
        elif ((n >= ${skip_from[$h-$d-$kind]:-999999})); then
            st="skipped: H=$h D=$d ($kind) timed out at L=${skip_from[$h-$d-$kind]}"
        elif ((t < 5)); then
            st="skipped: step budget used up"
        else
            st=""
        fi
        if [[ -n "$st" ]]; then
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t0\t%s\t%s\t%s\n' "$name" "$h" "$d" "$n" "$causal" "$pattern" "$algos" "$st" "$route" "$bs" >>"$OUT/bench/runs.tsv"
            echo "$name: $st"
            skipped=$((skipped + 1))
            continue
        fi
        echo "$name (timeout ${t}s) ..."
        local cflag=()
        if [[ $causal == 1 ]]; then cflag=(--causal); fi
        if [[ -n $route ]]; then cflag+=(--route "$route"); fi
        # The tilings runs time flash (or sparse) in the W2 (2 warps x 32 rows), W4X2 (4 warps x 32 rows, 128-row
        # blocks), WG (W4 with wgmma), WGP (WG, P.V overlapping the next softmax), WGX2 and WGPX2 (WG and WGP
        # with two warpgroups on 128-row blocks) tilings after the engine's own, on the same inputs (WG*: sm_90
        # only, else rows marked unsupported).
        if [[ -n $tilings ]]; then cflag+=(--tilings "$tilings"); fi
        if [[ -n $bs ]]; then cflag+=(--block-size "$bs"); fi
        # Every call uploads its inputs from the host (a 32K run's calls are mostly that): fewer calls there.
        local reps=(--warmup 2 --repeats 5)
        if ((n >= 32768)); then reps=(--warmup 1 --repeats 3); fi
        start="$(date +%s)"
        timeout -k 5 "$t" "$OUT/state/hr" bench --backend cuda --dtype bf16 --batch 1 --heads "$h" --dim "$d" \
            --len "$n" "${cflag[@]}" --pattern "$pattern" --algos "$algos" \
            "${reps[@]}" --json "$OUT/bench/$name.json" >"$OUT/bench/$name.log" 2>&1 </dev/null
        rc=$?
        secs=$(($(date +%s) - start))
        case $rc in
            0) st=ok; ok=$((ok + 1)) ;;
            124 | 137) st="timeout after ${t}s"; skip_from[$h-$d-$kind]=$n; failed=$((failed + 1)) ;;
            *) st="fail (exit $rc): $(last_line "$OUT/bench/$name.log" | cut -c1-80)"; failed=$((failed + 1)) ;;
        esac
        # Exit 2 on the first shape is a usage error or an unavailable backend: the rest would say the same.
        if ((rc == 2 && ok == 0 && failed == 1)); then skip_all="the first run failed with exit 2"; fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$h" "$d" "$n" "$causal" "$pattern" "$algos" "$rc" "$secs" "$st" "$route" "$bs" >>"$OUT/bench/runs.tsv"
        echo "$name: $st (${secs}s)"
        sed -n '/^algorithm/,$p' "$OUT/bench/$name.log" | head -n 4 | sed 's/^/    /'
    done
    local note="$ok ok, $failed failed, $skipped skipped of ${#runs[@]} runs"
    if ((failed == 0 && ok > 0)); then
        status ok "$note"
    elif [[ -n "$skip_all" ]]; then
        status fail "$note; first: $(last_line "$OUT/bench/$(sed -n '2p' "$OUT/bench/runs.tsv" | cut -f1).log" | cut -c1-70)"
    else
        status fail "$note"
    fi
}

step_torch() {
    command -v python3 >/dev/null 2>&1 || { status skipped "no python3"; return 0; }
    local budget extra=()
    budget=$(($(left) - 12))
    if [[ "$QUICK" == 1 ]]; then extra+=(--quick); fi
    timeout -k 5 "$(cap 120)" python3 "$ROOT/bench/torch_reference.py" --json "$OUT/torch.json" \
        --compare-dir "$OUT/compare" --budget "$budget" "${extra[@]}" </dev/null
    local rc=$?
    echo "(exit $rc)"
    local counts
    counts="$(python3 - "$OUT/torch.json" <<'PY' 2>/dev/null
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    print("no torch.json")
    sys.exit()
rows = d.get("rows", [])
ok = sum(1 for r in rows if r.get("status") == "ok")
print("%d rows: %d ok, %d not (torch %s)" % (len(rows), ok, len(rows) - ok, d.get("torch")))
PY
)"
    case $rc in
        0) status ok "$counts" ;;
        3) status skipped "torch cannot be imported" ;;
        124 | 137) status timeout "$counts" ;;
        *) status fail "exit $rc; $counts" ;;
    esac
}

step_compare() {
    have_java || { status skipped "no java"; return 0; }
    local dir="$OUT/compare"
    mkdir -p "$dir/out"
    if [[ ! -f "$dir/meta.json" ]]; then
        echo "no comparison inputs from torch_reference.py; numpy fallback"
        timeout 60 python3 "$PY" make-compare "$dir" || { status skipped "no comparison inputs (no torch, no numpy)"; return 0; }
    fi
    printf 'variant\tbackend\talgo\tdtype\trc\tsecs\tstatus\tfile\n' >"$dir/runs.tsv"
    local runs=() variant r backend algo dtype name t rc start secs st cuda_skip="" cuda_runs=0 base bs window
    # The window reference's W (|q - k| <= W; torch_reference.py's COMPARE_WINDOW), if the references have one.
    window="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("window") or "")' "$dir/meta.json" 2>/dev/null)"
    # Each case dense then causal, the kernels never run on a GPU (the wgmma tilings) early: the step's time may end
    # the list before its end. First after the CPU's, the block-sparse kernel on a window pattern,
    # the density sweep's (the bench step times it alone, with no row to compare with): "sparse-bs64" in the engine's
    # tiling on 64-blocks (the sweep's sparse column), "sparse-wgpx2-bs128" in WGPX2 on 128-blocks (its wgpx2 column).
    local c
    runs+=("dense cpu flash f32" "causal cpu flash f32" "window cuda sparse-bs64 bf16" "window cuda sparse-wgpx2-bs128 bf16")
    for c in "cuda flash bf16" "cuda flash-wgpx2 bf16" "cuda flash-wg bf16" "cuda flash-wgp bf16" \
        "cuda flash-wgx2 bf16" "cuda sparse-wgpx2 bf16" "cuda flash-w2 bf16" "cuda flash-w4x2 bf16" "cuda flash f32" \
        "cuda materialized bf16" "cuda materialized f32"; do
        runs+=("dense $c" "causal $c")
    done
    # Each run's command line, tab-separated after its name (RUN[name]); first all of them in one JVM
    # (io.headroute.device.CommandRuns, from the test classes: a JVM per run pays the start-up of Java and
    # CUDA), then, one JVM each as before, the runs it did not get to (it stops after an internal error, which on a
    # GPU may be a sticky CUDA error that fails every later call in its process, or its time ran out).
    local -A RUN=()
    local line
    : >"$dir/runs.in"
    : >"$dir/batch.tsv"
    for r in "${runs[@]}"; do
        read -r variant backend algo dtype <<<"$r"
        name="$variant-$backend-$algo-$dtype"
        [[ $variant == window && -z "$window" ]] && continue
        local cflag=()
        if [[ $variant == causal ]]; then cflag=(--causal); fi
        if [[ $variant == window ]]; then cflag=(--pattern "window:$window"); fi
        # ALGO-bsN: ALGO on N-blocks (--block-size N).
        base="$algo" bs=""
        if [[ $algo == *-bs* ]]; then base="${algo%-bs*}" bs="${algo##*-bs}"; cflag+=(--block-size "$bs"); fi
        # flash-TILING, sparse-TILING: the dense or the block-sparse kernel (here on the dense or causal layout) in it.
        if [[ $base == flash-w* || $base == sparse-w* ]]; then cflag+=(--tiling "${base#*-}"); fi
        line="$(printf '%s\t' attend --q "$dir/q.npy" --k "$dir/k.npy" --v "$dir/v.npy" "${cflag[@]}" --backend "$backend" \
            --algo "$(attend_algo "$base")" --dtype "$dtype" --out "$dir/out/$name.npy")"
        RUN[$name]="${line%$'\t'}"
        printf '%s\t%s\n' "$name" "${RUN[$name]}" >>"$dir/runs.in"
    done
    if [[ -s "$dir/runs.in" && -d "$BUNDLE/lib/test/classes/io" ]]; then
        start="$(date +%s)"
        timeout -k 5 "$(cap 30)" "$OUT/state/jvm" -cp "$BUNDLE/lib/*:$BUNDLE/lib/test/*:$BUNDLE/lib/test/classes" \
            io.headroute.device.CommandRuns "$dir/runs.in" "$dir/out" "$dir/batch.tsv" </dev/null
        echo "(one JVM: exit $?, $(wc -l <"$dir/batch.tsv") of $(wc -l <"$dir/runs.in") runs in $(($(date +%s) - start))s)"
    fi
    local -A DONE_RC=() DONE_SECS=()
    local n rc1 s1
    while IFS=$'\t' read -r n rc1 s1; do DONE_RC[$n]="$rc1" DONE_SECS[$n]="$s1"; done <"$dir/batch.tsv"
    for r in "${runs[@]}"; do
        read -r variant backend algo dtype <<<"$r"
        name="$variant-$backend-$algo-$dtype"
        t="$(cap 40)"
        st=""
        if [[ "$backend" == cuda && -n "$cuda_skip" ]]; then st="skipped: $cuda_skip"; fi
        if [[ -z "$st" && $variant == window && -z "$window" ]]; then st="skipped: no window reference in meta.json"; fi
        if [[ -z "$st" && -z "${DONE_RC[$name]:-}" ]] && ((t < 5)); then st="skipped: step budget used up"; fi
        if [[ -n "$st" ]]; then
            printf '%s\t%s\t%s\t%s\t\t0\t%s\t%s\n' "$variant" "$backend" "$algo" "$dtype" "$st" "$name.npy" >>"$dir/runs.tsv"
            continue
        fi
        if [[ -n "${DONE_RC[$name]:-}" ]]; then
            rc="${DONE_RC[$name]}" secs="${DONE_SECS[$name]}"
        else
            local argv=()
            IFS=$'\t' read -r -a argv <<<"${RUN[$name]}"
            start="$(date +%s)"
            timeout -k 5 "$t" "$OUT/state/hr" "${argv[@]}" >"$dir/out/$name.log" 2>&1 </dev/null
            rc=$?
            secs=$(($(date +%s) - start))
        fi
        case $rc in
            0) st=ok ;;
            # Cut by the step's end (its limit below the run's own 40 s): not run, rather than failed.
            124 | 137) if ((t < 40)); then st="skipped: step budget used up"; else st="timeout"; fi ;;
            *) st="exit $rc: $(last_line "$dir/out/$name.log" | cut -c1-60)" ;;
        esac
        # Exit 2 on the first CUDA run is an unavailable backend: the rest would say the same. Later, it is that one
        # algorithm's (cuBLAS missing for materialized, a tiling this card lacks): the other kernels still count.
        if [[ "$backend" == cuda ]]; then
            cuda_runs=$((cuda_runs + 1))
            if ((rc == 2 && cuda_runs == 1)) && [[ -z "$cuda_skip" ]]; then cuda_skip="the first cuda attend failed with exit 2"; fi
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$backend" "$algo" "$dtype" "$rc" "$secs" "$st" "$name.npy" >>"$dir/runs.tsv"
        echo "$name: $st (${secs}s)"
    done
    python3 "$PY" compare-eval "$dir"
    local rc2=$?
    local n_ok n_all n_skipped
    n_all="$(($(wc -l <"$dir/runs.tsv") - 1))"
    n_ok="$(python3 -c 'import json,sys; print(sum(r["verdict"]=="ok" for r in json.load(open(sys.argv[1]))["results"]))' "$dir/results.json" 2>/dev/null || echo 0)"
    n_skipped="$(grep -c $'\tskipped: step budget used up\t' "$dir/runs.tsv" || true)"
    # Cases left out for time are not failures: the step is partial then, failed only where a run was wrong or broke.
    if ((rc2 == 0)); then
        status ok "$n_ok of $n_all within tolerance"
    elif ((n_ok + n_skipped == n_all && n_ok > 0)); then
        status partial "$n_ok of $n_all within tolerance, $n_skipped not run (step budget)"
    else
        local also=""
        ((n_skipped > 0)) && also=", $n_skipped not run (step budget)"
        status fail "$n_ok of $n_all within tolerance$also${cuda_skip:+; $cuda_skip}"
    fi
}

step_sanitizer() {
    have_gpu || { status skipped "no nvidia-smi/GPU"; return 0; }
    have_java || { status skipped "no java"; return 0; }
    local san
    san="$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /usr/local/cuda*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -n 1)"
    [[ -n "$san" ]] || { status skipped "no compute-sanitizer"; return 0; }
    local dir="$OUT/sanitizer"
    mkdir -p "$dir"
    python3 "$PY" npy-random "$dir/in" --shape 1,2,77,64 --seed 7 || { status fail "could not write the tiny inputs"; return 1; }
    # L = 300 rows: enough tiles that the engine compacts the sparse case's gate (DeviceBundleTest pins which
    # work list each gated case gets).
    python3 "$PY" npy-random "$dir/in300" --shape 1,2,300,64 --seed 8 || { status fail "could not write the tiny inputs"; return 1; }
    printf 'tool\talgo\tdtype\trc\tsecs\tstatus\tlog\n' >"$dir/runs.tsv"
    jvm_opts
    # sparse: the block-sparse kernel on a causal window with a gate (tile work list, gate_work.cu);
    # sparse-compact: the same on 300 rows, whose gate is compacted (hr_flash_sparse_merge_*: shared-memory
    # bitmap, atomics, words staged a tile ahead);
    # gated: the dense kernel with a gate that switches most rows off (row compaction, gate_work.cu).
    # flash-w2, flash-w4x2: the dense kernel in the W2 and W4X2 tilings (single-buffered K/V, their own barrier
    # order, never run on a GPU before): their racechecks come early, in case the budget cuts the last runs.
    # flash-wg, flash-wgp, flash-wgpx2: the wgmma kernels (descriptors, async proxy fences, WGP's P.V left running
    # through the next softmax, WGPX2's two warpgroups sharing each tile; never run on a GPU): memcheck early.
    # sparse-wgpx2: sparse-compact's case in WGPX2, 128-row tiles whose lists join two layout rows' (the gate is
    # compacted there too, so the merging kernel hr_flash_sparse_merge_wgpx2_* runs: DeviceBundleTest pins it).
    local runs=("memcheck flash bf16" "memcheck flash-wg bf16" "memcheck flash-wgp bf16" "memcheck flash-wgpx2 bf16"
        "memcheck sparse-wgpx2 bf16"
        "racecheck flash-w2 bf16" "racecheck flash-w4x2 bf16" "racecheck sparse-compact bf16" "racecheck flash-wgp bf16"
        "racecheck flash-wgpx2 bf16" "racecheck flash-wg bf16" "racecheck flash bf16" "memcheck flash-w2 bf16"
        "memcheck flash-w4x2 bf16" "memcheck sparse-compact bf16" "memcheck flash-wgx2 bf16" "memcheck flash f32"
        "memcheck sparse bf16" "memcheck gated f32" "memcheck materialized f32")
    local r tool algo dtype name t rc start secs st skip="" bad=0 san_runs=0 extra in
    for r in "${runs[@]}"; do
        read -r tool algo dtype <<<"$r"
        name="$tool-$algo-$dtype"
        extra=()
        in="$dir/in"
        case $algo in
            sparse) extra=(--gate "$dir/in/gate.npy" --pattern window:9 --causal) ;;
            sparse-compact) in="$dir/in300" extra=(--gate "$dir/in300/gate.npy" --pattern window:9 --causal) ;;
            sparse-w*) in="$dir/in300" extra=(--gate "$dir/in300/gate.npy" --pattern window:9 --causal --tiling "${algo#sparse-}") ;;
            gated) extra=(--gate "$dir/in/gate.npy" --causal) ;;
            flash-w*) extra=(--tiling "${algo#flash-}" --causal) ;;
        esac
        t="$(cap 60)"
        st=""
        if [[ -n "$skip" ]]; then st="skipped: $skip"; elif ((t < 5)); then st="skipped: step budget used up"; fi
        if [[ -n "$st" ]]; then
            printf '%s\t%s\t%s\t\t0\t%s\t%s\n' "$tool" "$algo" "$dtype" "$st" "$name.log" >>"$dir/runs.tsv"
            continue
        fi
        start="$(date +%s)"
        # --report-api-errors no: a CUDA call that fails by design (cuEventQuery's "not ready") is no memory error.
        timeout -k 5 "$t" "$san" --tool "$tool" --error-exitcode 3 --print-limit 50 --report-api-errors no \
            "$JAVA" "${JOPTS[@]}" -cp "$BUNDLE/lib/*" io.headroute.cli.Main attend \
            --q "$in/q.npy" --k "$in/k.npy" --v "$in/v.npy" --backend cuda --algo "$(attend_algo "$algo")" \
            --dtype "$dtype" "${extra[@]}" --out "$dir/o-$name.npy" >"$dir/$name.log" 2>&1 </dev/null
        rc=$?
        secs=$(($(date +%s) - start))
        case $rc in
            0) st=ok ;;
            3) st="sanitizer errors"; bad=$((bad + 1)) ;;
            # Cut by the step's end (its limit below the run's own 60 s): not run, rather than failed.
            124 | 137) if ((t < 60)); then st="skipped: step budget used up"; san_runs=$((san_runs - 1)); else st="timeout"; bad=$((bad + 1)); fi ;;
            *) st="exit $rc: $(grep -v '^=========' "$dir/$name.log" | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-60)"; bad=$((bad + 1)) ;;
        esac
        san_runs=$((san_runs + 1))
        # Only an exit 2 of the first run (no usable backend) stops the rest; later it is that case's own.
        if ((rc == 2 && san_runs == 1)) && [[ -z "$skip" ]]; then skip="the first attend failed with exit 2"; fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$algo" "$dtype" "$rc" "$secs" "$st" "$name.log" >>"$dir/runs.tsv"
        echo "$name: $st (${secs}s)"
    done
    python3 "$PY" sanitizer-eval "$dir"
    local not_run=$((${#runs[@]} - san_runs)) also=""
    ((not_run > 0)) && also=", $not_run not run"
    if ((bad > 0)); then
        status fail "$bad of $san_runs runs not clean$also${skip:+; $skip}"
    elif ((san_runs == 0)); then
        status fail "no run${skip:+: $skip}"
    elif ((not_run > 0)); then
        status partial "$san_runs runs clean, $not_run not run${skip:+ ($skip)}"
    else
        status ok "$san_runs runs clean"
    fi
}

# Nsight Compute on the flash kernel in each tiling, one bench process (bf16 B=1 H=16 D=128 L=S=8192, one call
# per tiling), with --clock-control none (the card's clocks are left as they are, by this workplace's rule): what
# bounds each (SM, L1/shared memory, L2, DRAM throughput, issue slots, occupancy). The
# sections first (stable names); then, with the time left, raw tensor-pipe and shared-memory counters in a
# second run, whose failure (an unknown metric name on this ncu) costs only its own table rows.
step_ncu() {
    have_gpu || { status skipped "no nvidia-smi/GPU"; return 0; }
    have_java || { status skipped "no java"; return 0; }
    local ncu
    ncu="$(command -v ncu || ls /usr/local/cuda*/bin/ncu /usr/local/cuda*/nsight-compute*/ncu /opt/nvidia/nsight-compute/*/ncu \
        2>/dev/null | head -n 1)"
    [[ -n "$ncu" ]] || { status skipped "no ncu"; return 0; }
    local dir="$OUT/ncu" t rc
    mkdir -p "$dir"
    jvm_opts
    local app=("$JAVA" "${JOPTS[@]}" -cp "$BUNDLE/lib/*" io.headroute.cli.Main bench --backend cuda --dtype bf16 --batch 1
        --heads 16 --dim 128 --len 8192 --algos flash --tilings w2,w4x2,wg,wgp,wgx2,wgpx2 --warmup 0 --repeats 1)
    local t1
    t1="$(cap 50)"
    timeout -k 5 "$t1" "$ncu" --clock-control none --target-processes all -k regex:hr_flash_fwd --launch-count 7 \
        --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy \
        --section LaunchStats --csv --page details --log-file "$dir/sections.csv" "${app[@]}" >"$dir/sections.log" 2>&1 </dev/null
    rc=$?
    echo "sections: exit $rc"
    tail -n 5 "$dir/sections.log"
    t="$(cap 30)"
    if ((rc == 0 && t >= 15)); then
        timeout -k 5 "$t" "$ncu" --clock-control none --target-processes all -k regex:hr_flash_fwd --launch-count 7 --metrics \
            sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,smsp__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active \
            --csv --page raw --log-file "$dir/metrics.csv" "${app[@]}" >"$dir/metrics.log" 2>&1 </dev/null
        echo "metrics: exit $?"
        # The wgmma (GMMA) pipe apart: WG's tensor work does not show in the HMMA counter, and a metric
        # name this ncu does not know costs only this run.
        t="$(cap 20)"
        if ((t >= 12)); then
            timeout -k 5 "$t" "$ncu" --clock-control none --target-processes all -k regex:hr_flash_fwd --launch-count 7 --metrics \
                sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active \
                --csv --page raw --log-file "$dir/metrics_gmma.csv" "${app[@]}" >"$dir/metrics_gmma.log" 2>&1 </dev/null
            echo "gmma metric: exit $?"
        fi
    fi
    python3 "$PY" ncu-eval "$dir"
    case $rc in
        0) status ok "$(head -n 1 "$dir/results.txt" 2>/dev/null)" ;;
        124 | 137) status timeout "the sections run took over ${t1}s" ;;
        *) status fail "exit $rc: $(grep -E 'ERR|rror' "$dir/sections.csv" "$dir/sections.log" 2>/dev/null | head -n 1 | cut -c1-90)" ;;
    esac
}

export -f elapsed info status left cap have_gpu have_java setenv jvm_opts make_launchers java_feature last_line attend_algo \
    step_facts step_java step_cublas step_info step_gpu_tests step_bench step_torch step_compare step_sanitizer step_ncu

# -------------------------------------------------------------------------------------------- runner
# Which steps: all, or HEADROUTE_STEPS (java and cublas are added when a selected step runs java).
read -r -a wanted <<<"$(echo "${HEADROUTE_STEPS:-${ALL_STEPS[*]}}" | tr ',' ' ')"
needs_java=0
for s in "${wanted[@]}"; do
    [[ -n "${CAP[$s]:-}" ]] || { echo "device-check: unknown step '$s' (steps: ${ALL_STEPS[*]})" >&2; exit 2; }
    case $s in info | gpu-tests | bench | compare | sanitizer | ncu) needs_java=1 ;; esac
done
STEPS=()
for s in "${ALL_STEPS[@]}"; do
    for w in "${wanted[@]}"; do
        if [[ "$s" == "$w" ]] || { ((needs_java)) && [[ "$s" == java || "$s" == cublas ]]; }; then STEPS+=("$s"); break; fi
    done
done

export HAVE_GPU=0
if command -v nvidia-smi >/dev/null 2>&1 && timeout 20 nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then HAVE_GPU=1; fi
info budget "$BUDGET"
echo "device-check: $(date -u +%Y-%m-%dT%H:%M:%SZ), work folder $OUT, results to $RESULTS, budget ${BUDGET}s, GPU: $(have_gpu && echo yes || echo 'no (nvidia-smi missing or lists none)'), steps: ${STEPS[*]}"

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$OUT/steps.tsv"; }

# Whatever a step left on the GPU is ended before the next step starts: a command under an inner `timeout` runs in a
# process group of its own, which the step's own limit (and a TERM to this script) does not reach. On the lent
# machine every process on the GPU is this check's.
kill_gpu_leftovers() {
    have_gpu || return 0
    local pids
    pids="$(timeout 10 nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null | tr -d ' ' | grep -E '^[0-9]+$')"
    [[ -n "$pids" ]] || return 0
    # Only this check's kinds of process, seen in this machine's /proc (a runtime whose nvidia-smi reports another
    # pid namespace must not make it kill something else, least of all this script).
    local pid comm killed=()
    for pid in $pids; do
        [[ "$pid" == "$$" ]] && continue
        comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || continue
        case $comm in
            java | python* | compute-sanitiz* | ncu*) kill -9 "$pid" 2>/dev/null && killed+=("$pid $comm") ;;
        esac
    done
    if ((${#killed[@]})); then
        echo "    (ended what was left on the GPU: ${killed[*]})"
        sleep 1
    fi
}

# What comes back: the device tool returns at most 8 files from $OUT, 16 MiB each. summary.md and steps.tsv, and
# the work folder as results.tar.gz without its .npy files, JCuda's extracted libraries and any file over 2 MiB
# (named in left-out.txt, which travels in it).
publish() {
    cp -f "$OUT/summary.md" "$RESULTS/summary.md" 2>/dev/null
    cp -f "$OUT/steps.tsv" "$RESULTS/steps.tsv" 2>/dev/null
    local base
    base="$(basename "$OUT")"
    (cd "$OUT" && find . -type f \( -name '*.npy' -o -size +2M \) ! -path './tmp/*' | sed 's|^\./||' | sort) >"$OUT/left-out.txt"
    if ! tar -C "$(dirname "$OUT")" -czf "$RESULTS/results.tar.gz" --exclude="$base/tmp" \
        --exclude-from=<(sed "s|^|$base/|" "$OUT/left-out.txt") "$base" 2>"$OUT/tar.err"; then
        echo "(results.tar.gz: tar failed: $(tail -n 1 "$OUT/tar.err"))"
    fi
    local size
    size="$(stat -c %s "$RESULTS/results.tar.gz" 2>/dev/null || echo 0)"
    if ((size > 16000000)); then
        echo "(results.tar.gz is $size bytes, over the 16 MiB a file may have to come back: removed)"
        rm -f "$RESULTS/results.tar.gz"
    fi

}

run_step() {
    local name=$1 i reserve=$SUMMARY_RESERVE after=0
    for i in "${STEPS[@]}"; do
        if ((after)); then reserve=$((reserve + FLOOR[$i])); fi
        [[ "$i" == "$name" ]] && after=1
    done
    local now limit
    now="$(date +%s)"
    # What the later steps' floors leave, but at least this step's own floor, at most its cap, and never past
    # the deadline less the summary's reserve.
    limit=$((DEADLINE - now - reserve))
    ((limit < FLOOR[$name])) && limit=${FLOOR[$name]}
    ((limit > CAP[$name])) && limit=${CAP[$name]}
    ((limit > DEADLINE - now - SUMMARY_RESERVE)) && limit=$((DEADLINE - now - SUMMARY_RESERVE))
    echo ">>> [$(elapsed)s] $name (limit ${limit}s) -> $OUT/$name.log"
    if ((limit < 5)); then
        record "$name" skipped 0 "out of time (budget ${BUDGET}s)"
        echo "<<< $name: skipped (out of time)"
        return
    fi
    rm -f "$OUT/state/$name.status"
    export STEP="$name" STEP_DEADLINE=$((now + limit))
    # In the background and waited for, so that a TERM to this script (the device call's own limit) is handled at
    # once: the step is stopped and the summary of what ran is still printed (see on_term).
    timeout -k 5 "$limit" bash -c 'set -uo pipefail; source "$OUT/state/env.sh"; "step_${STEP//-/_}"' \
        >"$OUT/$name.log" 2>&1 </dev/null &
    STEP_PID=$!
    STEP_START=$now
    wait "$STEP_PID"
    local rc=$? secs st="" note=""
    STEP_PID=""
    kill_gpu_leftovers
    secs=$(($(date +%s) - now))
    if [[ -f "$OUT/state/$name.status" ]]; then IFS=$'\t' read -r st note <"$OUT/state/$name.status"; fi
    if ((rc == 124 || rc == 137)); then
        note="killed after ${limit}s${note:+; $note}"
        st=timeout
    elif [[ -z "$st" ]]; then
        if ((rc == 0)); then st=ok; else st=fail; note="exit $rc: $(last_line "$OUT/$name.log")"; fi
    fi
    record "$name" "$st" "$secs" "$note"
    echo "<<< $name: $st (${secs}s) $note"
    if [[ "$st" != ok && "$st" != skipped ]]; then
        tail -n 5 "$OUT/$name.log" | cut -c1-200 | sed 's/^/    | /'
    fi
    if [[ "$name" == java || "$name" == cublas ]]; then
        # shellcheck disable=SC1091
        source "$OUT/state/env.sh"
        make_launchers
    fi
}

summarize() {
    echo ">>> [$(elapsed)s] summary"
    info total "$(elapsed)"
    if ! timeout 30 python3 "$PY" summary "$OUT" 2>"$OUT/summary.err"; then
        echo "(summary failed: $(tail -n 1 "$OUT/summary.err" 2>/dev/null); the raw step table follows)"
        column -t -s $'\t' "$OUT/steps.tsv" 2>/dev/null || cat "$OUT/steps.tsv"
        echo "device-check: done in $(elapsed)s"
    fi
}

# Stopped from outside (a device call's limit shorter than the budget): stop the running step, record it, and
# print the summary of what ran before exiting.
STEP_PID=""
on_term() {
    trap - TERM INT
    if [[ -n "$STEP_PID" ]]; then
        kill -TERM "$STEP_PID" 2>/dev/null
        sleep 1
        kill -KILL "$STEP_PID" 2>/dev/null
        record "${STEP:-?}" timeout "$(($(date +%s) - ${STEP_START:-$T0}))" "stopped from outside at $(elapsed)s"
    fi
    kill_gpu_leftovers
    echo ">>> stopped from outside at $(elapsed)s"
    summarize
    publish
    exit 143
}
trap on_term TERM INT

make_launchers
for s in "${STEPS[@]}"; do run_step "$s"; done
summarize
publish
