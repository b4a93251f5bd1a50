package io.headroute.cuda.blas;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.cuda.blas.CublasLoader.Config;
import io.headroute.cuda.blas.CublasLoader.Plan;
import io.headroute.cuda.blas.CublasLoader.Resolution;
import io.headroute.cuda.blas.CublasLoader.Source;
import java.io.File;
import java.io.IOException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The search and load sequence of {@link CublasLoader} over fake directory trees; nothing is really loaded. */
class CublasLoaderTest {
    @TempDir
    Path root;

    private final List<Path> loaded = new ArrayList<>();

    @Test
    void prefersLibcublas12WhenPresent() throws IOException {
        Path lib13 = touch("cuda13/lib64/libcublas.so.13").getParent();
        Path lib12 = touch("cuda12/lib64/libcublas.so.12").getParent();
        touch("cuda12/lib64/libcublasLt.so.12");
        touch("native/libcublas.so.12");
        Files.createDirectories(root.resolve("empty"));
        Config config = config(List.of(root.resolve("empty"), lib13, lib12), List.of(), Optional.empty(),
                Optional.of(root.resolve("native")), List.of(), Optional.empty());

        CublasLoader loader = new CublasLoader(config, loaded::add);
        Plan plan = loader.plan();
        assertEquals(Source.NATIVE_12, plan.source());
        assertEquals(List.of(lib12.resolve("libcublasLt.so.12"), lib12.resolve("libcublas.so.12")), plan.loads(),
                "cublasLt first, so that libcublas finds it by soname");

        Resolution r = loader.load();
        assertEquals(new Resolution(Source.NATIVE_12, lib12.resolve("libcublas.so.12").toString()), r);
        assertEquals(plan.loads(), loaded);
    }

    @Test
    void aShimOnTheSearchPathIsNotTakenForCublas12() throws IOException {
        Path fake12 = touch("target/native/libcublas.so.12");
        Files.writeString(fake12, "\u007fELF..." + CublasLoader.SHIM_MARKER + "...", StandardCharsets.US_ASCII);
        Path cublas13 = touch("cuda13/libcublas.so.13");
        Config config = config(List.of(fake12.getParent(), cublas13.getParent()), List.of(), Optional.empty(),
                Optional.empty(), List.of(fake12.getParent()), Optional.empty());
        assertEquals(List.of(cublas13, fake12), new CublasLoader(config, loaded::add).plan().loads());

        Path real12 = touch("cuda12/libcublas.so.12");
        Config both = config(List.of(fake12.getParent(), real12.getParent()), List.of(), Optional.empty(),
                Optional.empty(), List.of(), Optional.empty());
        Plan plan = new CublasLoader(both, loaded::add).plan();
        assertEquals(Source.NATIVE_12, plan.source());
        assertEquals(real12.toString(), plan.detail());
    }

    @Test
    void picksLibcublas13AndTheShimOtherwise() throws IOException {
        Path cublas13 = touch("cuda13/lib64/libcublas.so.13");
        Path lt13 = touch("cuda13/lib64/libcublasLt.so.13");
        Path shim = touch("native/libcublas.so.12");
        Config config = config(List.of(root.resolve("nothing-here"), cublas13.getParent()), List.of(),
                Optional.empty(), Optional.of(shim.getParent()), List.of(), Optional.empty());

        Resolution r = new CublasLoader(config, loaded::add).load();
        assertEquals(new Resolution(Source.SHIM_TO_13, cublas13.toString()), r);
        assertEquals(List.of(lt13, cublas13, shim), loaded, "cublasLt, then cublas, then the shim whose constructor needs it");
    }

    @Test
    void findsLibcublas13InAPythonNvidiaFolder() throws IOException {
        touch("site-packages/nvidia/cublas/include/cublas_api.h");
        Path cublas13 = touch("site-packages/nvidia/cu13/lib/libcublas.so.13");
        Path shim = touch("target/native/libcublas.so.12");
        Config config = config(List.of(root.resolve("lib64")), List.of(root.resolve("missing/nvidia"),
                root.resolve("site-packages/nvidia")), Optional.empty(), Optional.empty(),
                List.of(shim.getParent()), Optional.empty());

        Plan plan = new CublasLoader(config, loaded::add).plan();
        assertEquals(Source.SHIM_TO_13, plan.source());
        assertEquals(List.of(cublas13, shim), plan.loads());
        assertEquals(cublas13.toString(), plan.detail());
        assertEquals(List.of(), loaded, "plan() loads nothing");
    }

    @Test
    void anExplicitLibcublas13WinsOverEverythingFound() throws IOException {
        Path lib12 = touch("cuda12/libcublas.so.12").getParent();
        Path found13 = touch("cuda13/libcublas.so.13").getParent();
        Path explicit = touch("chosen/libcublas.so.13");
        Path shim = touch("native/libcublas.so.12");

        for (Path given : List.of(explicit, explicit.getParent())) {
            Config config = config(List.of(lib12, found13), List.of(), Optional.of(given),
                    Optional.of(shim.getParent()), List.of(), Optional.empty());
            loaded.clear();
            Resolution r = new CublasLoader(config, loaded::add).load();
            assertEquals(new Resolution(Source.SHIM_TO_13, explicit.toString()), r, "given " + given);
            assertEquals(List.of(explicit, shim), loaded);
        }
    }

    @Test
    void anExplicitLibcublas13ThatDoesNotExistIsAbsent() throws IOException {
        Path lib12 = touch("cuda12/libcublas.so.12").getParent();
        Path wrong = root.resolve("typo/libcublas.so.13");
        Config config = config(List.of(lib12), List.of(), Optional.of(wrong), Optional.empty(), List.of(),
                Optional.empty());

        Resolution r = new CublasLoader(config, loaded::add).load();
        assertEquals(Source.ABSENT, r.source());
        assertTrue(r.detail().contains(wrong.toString()), r.detail());
        assertTrue(r.detail().contains(CublasLoader.PROPERTY_CUBLAS13), r.detail());
        assertEquals(List.of(), loaded);
    }

    @Test
    void absentWithAReasonWhenNothingIsFound() throws IOException {
        Path lib = Files.createDirectories(root.resolve("lib64"));
        touch("lib64/libcublas.so.11");
        touch("nvidia/cu12/lib/libcublas.so.12");
        Config config = config(List.of(lib), List.of(root.resolve("nvidia")), Optional.empty(), Optional.empty(),
                List.of(), Optional.empty());

        Resolution r = new CublasLoader(config, loaded::add).load();
        assertEquals(Source.ABSENT, r.source());
        String why = r.detail();
        assertTrue(why.startsWith("neither libcublas.so.12 nor libcublas.so.13 was found"), why);
        assertTrue(why.contains(lib.toString()) && why.contains(root.resolve("nvidia").toString()),
                "names where it looked: " + why);
        assertTrue(why.contains(CublasLoader.ENV_CUBLAS13), "says how to point at a library: " + why);
        assertFalse(why.contains("\n"), why);
        assertEquals(List.of(), loaded);
    }

    @Test
    void absentWhenLibcublas13HasNoShim() throws IOException {
        Path cublas13 = touch("lib/libcublas.so.13");
        Config config = config(List.of(cublas13.getParent()), List.of(), Optional.empty(), Optional.empty(),
                List.of(root.resolve("target/native")), Optional.empty());

        Resolution r = new CublasLoader(config, loaded::add).load();
        assertEquals(Source.ABSENT, r.source());
        assertTrue(r.detail().contains(cublas13.toString()), r.detail());
        assertTrue(r.detail().contains(root.resolve("target/native").toString()), r.detail());
        assertTrue(r.detail().contains("make -C native") && r.detail().contains(CublasLoader.PROPERTY_NATIVE_DIR),
                r.detail());
        assertEquals(List.of(), loaded);
    }

    @Test
    void anExplicitNativeDirIsTheOnlyPlaceTheShimIsTakenFrom() throws IOException {
        Path cublas13 = touch("lib/libcublas.so.13");
        Path defaultShim = touch("target/native/libcublas.so.12");
        Path emptyNative = Files.createDirectories(root.resolve("elsewhere"));

        Config wrongDir = config(List.of(cublas13.getParent()), List.of(), Optional.empty(), Optional.of(emptyNative),
                List.of(defaultShim.getParent()), Optional.empty());
        Resolution r = new CublasLoader(wrongDir, loaded::add).load();
        assertEquals(Source.ABSENT, r.source());
        assertTrue(r.detail().startsWith(CublasLoader.PROPERTY_NATIVE_DIR + " is " + emptyNative), r.detail());

        Config noDir = config(List.of(cublas13.getParent()), List.of(), Optional.empty(), Optional.empty(),
                List.of(root.resolve("not/there"), defaultShim.getParent()), Optional.empty());
        assertEquals(List.of(cublas13, defaultShim), new CublasLoader(noDir, loaded::add).plan().loads());
    }

    @Test
    void theShimIsExtractedFromTheClassPathAsALastResort() throws IOException {
        Path cublas13 = touch("lib/libcublas.so.13");
        byte[] shimBytes = "\u007fELF pretend shim".getBytes(StandardCharsets.US_ASCII);
        Path jarRoot = root.resolve("classes");
        Path resource = jarRoot.resolve(CublasLoader.SHIM_RESOURCE);
        Files.createDirectories(resource.getParent());
        Files.write(resource, shimBytes);

        try (URLClassLoader classes = new URLClassLoader(new URL[] {jarRoot.toUri().toURL()}, null)) {
            Config config = config(List.of(cublas13.getParent()), List.of(), Optional.empty(), Optional.empty(),
                    List.of(root.resolve("no-native")), Optional.of(classes));
            Resolution r = new CublasLoader(config, loaded::add).load();
            assertEquals(new Resolution(Source.SHIM_TO_13, cublas13.toString()), r);
        }
        assertEquals(2, loaded.size());
        assertEquals(cublas13, loaded.get(0));
        Path extracted = loaded.get(1);
        assertEquals("libcublas.so.12", extracted.getFileName().toString());
        assertArrayEquals(shimBytes, Files.readAllBytes(extracted));
        assertFalse(extracted.startsWith(root), "extracted to a fresh temporary directory");
        Files.delete(extracted);
        Files.delete(extracted.getParent());
    }

    @Test
    void aFailedLoadIsAbsentWithTheErrorOnOneLine() throws IOException {
        Path cublas13 = touch("lib/libcublas.so.13");
        Path shim = touch("native/libcublas.so.12");
        Config config = config(List.of(cublas13.getParent()), List.of(), Optional.empty(),
                Optional.of(shim.getParent()), List.of(), Optional.empty());

        Resolution r = new CublasLoader(config, p -> {
            loaded.add(p);
            if (p.equals(shim)) {
                throw new UnsatisfiedLinkError(p + ": undefined symbol: foo\n  (needed by something)");
            }
        }).load();
        assertEquals(new Resolution(Source.ABSENT,
                "loading " + shim + " failed: " + shim + ": undefined symbol: foo (needed by something)"), r);
        assertEquals(List.of(cublas13, shim), loaded);
    }

    @Test
    void configFromTheEnvironmentPropertiesAndInstallLayout() throws IOException {
        Path home = root.resolve("home");
        Path nvidia = Files.createDirectories(home.resolve(".local/lib/python3.12/site-packages/nvidia"));
        Files.createDirectories(home.resolve(".local/lib/python2.7/site-packages/nvidia"));
        Properties props = new Properties();
        props.setProperty("java.library.path", "/jlp/one" + File.pathSeparator + "/jlp/two");
        props.setProperty(CublasLoader.PROPERTY_CUBLAS13, "/prop/libcublas.so.13");
        props.setProperty(CublasLoader.PROPERTY_NATIVE_DIR, "/prop/native");
        Map<String, String> env = Map.of(
                "LD_LIBRARY_PATH", "/ld/a::/ld/b",
                CublasLoader.ENV_CUBLAS13, "/env/libcublas.so.13");

        Config c = Config.from(env, props, home, Optional.of(Path.of("/proj/target/classes")), List.of(Path.of("/ldconfig")));
        List<Path> dirs = c.libraryDirs();
        assertEquals(List.of(Path.of("/ld/a"), Path.of("/ld/b"), Path.of("/jlp/one"), Path.of("/jlp/two")),
                dirs.subList(0, 4), "LD_LIBRARY_PATH, then java.library.path, empty entries dropped");
        assertTrue(dirs.indexOf(Path.of("/usr/local/cuda/lib64")) > 3, dirs.toString());
        assertTrue(dirs.contains(Path.of("/usr/local/cuda/targets/x86_64-linux/lib")), dirs.toString());
        assertTrue(dirs.contains(Path.of("/usr/lib/x86_64-linux-gnu")), dirs.toString());
        assertEquals(Path.of("/ldconfig"), dirs.get(dirs.size() - 1));
        assertTrue(c.nvidiaDirs().contains(nvidia), c.nvidiaDirs().toString());
        assertFalse(c.nvidiaDirs().stream().anyMatch(p -> p.toString().contains("python2")), c.nvidiaDirs().toString());
        assertEquals(Optional.of(Path.of("/prop/libcublas.so.13")), c.explicitCublas13(), "the property beats the variable");
        assertEquals(Optional.of(Path.of("/prop/native")), c.nativeDir());
        assertEquals(List.of(Path.of("/proj/target/native")), c.defaultNativeDirs());

        Config envOnly = Config.from(env, new Properties(), null, Optional.empty(), List.of());
        assertEquals(Optional.of(Path.of("/env/libcublas.so.13")), envOnly.explicitCublas13());
        assertEquals(Optional.empty(), envOnly.nativeDir());
        assertEquals(List.of(), envOnly.defaultNativeDirs());
    }

    @Test
    void parsesLdconfigOutput() {
        List<String> lines = List.of(
                "1234 libs found in cache `/etc/ld.so.cache'",
                "\tlibcublas.so.13 (libc6,x86-64) => /opt/cuda13/lib/libcublas.so.13",
                "\tlibcublasLt.so.13 (libc6,x86-64) => /opt/lt/libcublasLt.so.13",
                "\tlibcublas.so.12 (libc6) => /usr/lib32/libcublas.so.12",
                "\tlibcublas.so.12 (libc6,x86-64) => /usr/local/cuda-12.4/lib64/libcublas.so.12",
                "\tlibcublas.so (libc6,x86-64) => /opt/cuda13/lib/libcublas.so",
                "\tlibcudart.so.13 (libc6,x86-64) => /usr/local/cuda-13.0/lib/libcudart.so.13");
        assertEquals(List.of(Path.of("/opt/cuda13/lib"), Path.of("/usr/local/cuda-12.4/lib64")),
                CublasLoader.parseLdconfig(lines));
    }

    private Path touch(String relative) throws IOException {
        Path p = root.resolve(relative);
        Files.createDirectories(p.getParent());
        return Files.createFile(p);
    }

    private static Config config(List<Path> libraryDirs, List<Path> nvidiaDirs, Optional<Path> explicit,
            Optional<Path> nativeDir, List<Path> defaultNativeDirs, Optional<ClassLoader> resources) {
        return new Config(libraryDirs, nvidiaDirs, explicit, nativeDir, defaultNativeDirs, resources);
    }
}
