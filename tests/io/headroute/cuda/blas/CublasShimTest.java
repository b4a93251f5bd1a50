package io.headroute.cuda.blas;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import jcuda.JCudaVersion;
import jcuda.LibUtils;
import jcuda.jcublas.JCublas2;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Builds the shim and the libcublas.so.13 stand-in with {@code native/Makefile}, checks the shim's
 * ELF interface against what JCublas2 imports, and drives JCublas2 through the shim in a child JVM.
 */
class CublasShimTest {
    private static final long TIMEOUT_SECONDS = 180;
    private static final String SMOKE_LINE = "create=0 version=130042 destroy=0";

    @TempDir
    static Path out;

    private static Path project;
    private static Path shim;
    private static Path standin;
    private static String buildLog;

    @BeforeAll
    static void build() throws Exception {
        project = findProject();
        assumeTrue(project != null, "native/Makefile not found above " + Path.of("").toAbsolutePath());
        for (String tool : List.of("make", "gcc", "nm", "readelf")) {
            assumeTrue(onPath(tool), tool + " is not on the PATH; the shim cannot be built or inspected here");
        }
        Result make = run(List.of("make", "-C", project.resolve("native").toString(), "OUT=" + out, "all", "standin"),
                Map.of(), out);
        buildLog = make.stdout + make.stderr;
        assertEquals(0, make.exit, "make failed:\n" + buildLog);
        shim = out.resolve("libcublas.so.12");
        standin = out.resolve("standin/libcublas.so.13");
        assertTrue(Files.isRegularFile(shim), "make did not produce " + shim);
        assertTrue(Files.isRegularFile(standin), "make did not produce " + standin);
    }

    @Test
    void buildsWithoutWarnings() {
        assertFalse(buildLog.toLowerCase().contains("warning"), buildLog);
    }

    @Test
    void shimHasSonameLibcublas12AndStandinLibcublas13() throws Exception {
        assertEquals(List.of("libcublas.so.12"), sonames(shim));
        assertEquals(List.of("libcublas.so.13"), sonames(standin));
    }

    @Test
    void cublasLoaderRecognisesTheBuiltShim() {
        assertTrue(CublasLoader.isShim(shim), "the shim carries " + CublasLoader.SHIM_MARKER);
        assertFalse(CublasLoader.isShim(standin));
    }

    @Test
    void exportsExactlyTheListedFunctionsUnderVersionLibcublas12() throws Exception {
        Result nm = run(List.of("nm", "-D", "--defined-only", shim.toString()), Map.of(), out);
        assertEquals(0, nm.exit, nm.stderr);
        Set<String> exported = new TreeSet<>();
        for (String line : nm.stdout.split("\n")) {
            String[] f = line.trim().split("\\s+");
            if (f.length != 3 || f[1].equals("A")) {
                continue; // the "A" entry is the version node itself
            }
            assertEquals("T", f[1], "every export is a function: " + line);
            assertTrue(f[2].endsWith("@@libcublas.so.12"), "export without the default version libcublas.so.12: " + line);
            exported.add(f[2].substring(0, f[2].indexOf('@')));
        }
        assertSameNames(symbolList(), exported, "exported by the shim");
    }

    @Test
    void symbolListEqualsWhatJCublas2Imports() throws Exception {
        // The library JCublas2.initialize() loads, found the same way it finds it.
        String file = LibUtils.createLibraryFileName(
                LibUtils.createPlatformLibraryName("JCublas2-" + JCudaVersion.get()));
        Path lib = out.resolve(file);
        try (InputStream in = JCublas2.class.getResourceAsStream("/lib/" + file)) {
            assertNotNull(in, "the JCublas2 natives jar is not on the test class path (/lib/" + file + ")");
            Files.copy(in, lib);
        }
        Result nm = run(List.of("nm", "-D", "--undefined-only", lib.toString()), Map.of(), out);
        assertEquals(0, nm.exit, nm.stderr);
        Set<String> imported = new TreeSet<>();
        for (String line : nm.stdout.split("\n")) {
            String sym = line.trim().replaceFirst("^\\S+\\s+", "");
            if (sym.endsWith("@libcublas.so.12")) {
                imported.add(sym.substring(0, sym.indexOf('@')));
            }
        }
        assertSameNames(symbolList(), imported, "imported by " + file
                + " (regenerate native/cublas12-symbols.txt with native/gen-symbols.sh)");
        List<String> lines = Files.readAllLines(symbolFile());
        String header = lines.get(0) + lines.get(1);
        assertTrue(header.contains(file), "the symbol list's header names another library: " + header);
    }

    @Test
    void jcublas2ReachesTheStandInThroughTheShim() throws Exception {
        Result r = smoke(Map.of(), out.resolve("standin").toString(), shim.toString());
        assertEquals(0, r.exit, r.describe());
        assertEquals(SMOKE_LINE, r.stdout.strip(), r.describe());
    }

    @Test
    void aLibcublas13AlreadyLoadedWinsOverTheEnvironmentVariable() throws Exception {
        Path elsewhere = out.resolve("nowhere/libcublas.so.13");
        Result r = smoke(Map.of(CublasLoader.ENV_CUBLAS13, elsewhere.toString()), out.resolve("standin").toString(),
                shim.toString());
        assertEquals(0, r.exit, r.describe());
        assertEquals(SMOKE_LINE, r.stdout.strip(), r.describe());
    }

    @Test
    void aFunctionTheStandInLacksAbortsNamingIt() throws Exception {
        Result r = smoke(Map.of(), out.resolve("standin").toString(), shim.toString(), "sgemm");
        assertNotEquals(0, r.exit, r.describe());
        assertFalse(r.stdout.contains("should have aborted"), r.describe());
        assertTrue(r.stderr.contains("headroute cublas shim: cublasSgemm_v2 is not exported by libcublas.so.13 ("
                + standin + ")"), r.describe());
    }

    @Test
    void withoutLibcublas13EveryCallAbortsWithTheDlopenError() throws Exception {
        Path missing = out.resolve("nowhere/libcublas.so.13");
        Result r = smoke(Map.of(CublasLoader.ENV_CUBLAS13, missing.toString()), "--shim-only", shim.toString());
        assertNotEquals(0, r.exit, r.describe());
        assertTrue(r.stderr.contains("headroute cublas shim: cublasCreate_v2 was called, but dlopen failed for "
                + missing + ": "), r.describe());
        assertTrue(r.stderr.contains("cannot open shared object file"), "dlerror's text is kept: " + r.describe());
    }

    @Test
    void cleanRemovesWhatTheBuildMade(@TempDir Path other) throws Exception {
        String nativeDir = project.resolve("native").toString();
        Result build = run(List.of("make", "-C", nativeDir, "OUT=" + other, "all", "standin"), Map.of(), other);
        assertEquals(0, build.exit, build.describe());
        assertTrue(Files.isRegularFile(other.resolve("libcublas.so.12")));
        Result clean = run(List.of("make", "-C", nativeDir, "OUT=" + other, "clean"), Map.of(), other);
        assertEquals(0, clean.exit, clean.describe());
        try (var left = Files.list(other)) {
            assertEquals(List.of(), left.toList());
        }
    }

    private static Result smoke(Map<String, String> env, String... args) throws IOException, InterruptedException {
        Path work = Files.createTempDirectory(out, "smoke");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> command = new ArrayList<>(List.of(
                // abort() would otherwise leave a core file of the whole JVM wherever core files go.
                "/bin/sh", "-c", "ulimit -c 0; exec \"$0\" \"$@\"",
                java, "-Xmx256m", "-Djava.io.tmpdir=" + work, "-cp", System.getProperty("java.class.path"),
                ShimSmokeMain.class.getName()));
        command.addAll(List.of(args));
        Map<String, String> childEnv = new HashMap<>(env);
        childEnv.putIfAbsent(CublasLoader.ENV_CUBLAS13, null);
        return run(command, childEnv, work);
    }

    /** Reports only the differences: the lists hold about 500 names. */
    private static void assertSameNames(Set<String> listed, Set<String> actual, String what) {
        Set<String> missing = new TreeSet<>(listed);
        missing.removeAll(actual);
        Set<String> extra = new TreeSet<>(actual);
        extra.removeAll(listed);
        assertTrue(missing.isEmpty() && extra.isEmpty(), "names in native/cublas12-symbols.txt but not " + what
                + ": " + missing + "; names " + what + " but not in the list: " + extra);
    }

    private static List<String> sonames(Path lib) throws IOException, InterruptedException {
        Result r = run(List.of("readelf", "-d", lib.toString()), Map.of(), out);
        assertEquals(0, r.exit, r.stderr);
        List<String> names = new ArrayList<>();
        for (String line : r.stdout.split("\n")) {
            if (line.contains("(SONAME)")) {
                names.add(line.substring(line.indexOf('[') + 1, line.lastIndexOf(']')));
            }
        }
        return names;
    }

    private static Path symbolFile() {
        return project.resolve("native/cublas12-symbols.txt");
    }

    private static Set<String> symbolList() throws IOException {
        Set<String> names = new TreeSet<>();
        for (String line : Files.readAllLines(symbolFile())) {
            String s = line.strip();
            if (!s.isEmpty() && !s.startsWith("#")) {
                assertTrue(names.add(s), "duplicate in the symbol list: " + s);
            }
        }
        assertTrue(names.size() > 400, "the symbol list looks truncated: " + names.size() + " names");
        return names;
    }

    private static Path findProject() {
        for (Path dir = Path.of("").toAbsolutePath(); dir != null; dir = dir.getParent()) {
            if (Files.isRegularFile(dir.resolve("native/Makefile"))
                    && Files.isRegularFile(dir.resolve("native/cublas12-symbols.txt"))) {
                return dir;
            }
        }
        return null;
    }

    private static boolean onPath(String tool) {
        String path = System.getenv("PATH");
        if (path == null) {
            return false;
        }
        for (String dir : path.split(":")) {
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, tool))) {
                return true;
            }
        }
        return false;
    }

    /** A null value in {@code env} removes that variable from the child's environment. */
    private static Result run(List<String> command, Map<String, String> env, Path dir)
            throws IOException, InterruptedException {
        Path stdout = Files.createTempFile(dir, "out", ".txt");
        Path stderr = Files.createTempFile(dir, "err", ".txt");
        ProcessBuilder pb = new ProcessBuilder(command).directory(dir.toFile())
                .redirectOutput(stdout.toFile()).redirectError(stderr.toFile());
        for (Map.Entry<String, String> e : env.entrySet()) {
            if (e.getValue() == null) {
                pb.environment().remove(e.getKey());
            } else {
                pb.environment().put(e.getKey(), e.getValue());
            }
        }
        Process p = pb.start();
        if (!p.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            p.waitFor();
            throw new AssertionError(String.join(" ", command) + " did not finish in " + TIMEOUT_SECONDS + " s");
        }
        Result r = new Result(String.join(" ", command), p.exitValue(),
                Files.readString(stdout, StandardCharsets.UTF_8), Files.readString(stderr, StandardCharsets.UTF_8));
        Files.delete(stdout);
        Files.delete(stderr);
        return r;
    }

    private record Result(String command, int exit, String stdout, String stderr) {
        String describe() {
            return command + "\nexit " + exit + "\n--- stdout\n" + stdout + "--- stderr\n" + stderr;
        }
    }
}
