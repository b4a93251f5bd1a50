package io.headroute.cuda.blas;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.CodeSource;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * Decides where cuBLAS comes from for JCublas2 and prepares the process before JCublas2 is first
 * touched. JCublas 12.6.0's native library needs {@code libcublas.so.12}; on a machine with only
 * CUDA 13 this loads {@code libcublas.so.13} and then the headroute shim (a {@code libcublas.so.12}
 * built by {@code native/Makefile}) that forwards every call to it. Because the dynamic loader
 * matches an already loaded library by its soname, JCublas2's dependency on {@code libcublas.so.12}
 * is then satisfied by whatever this class loaded, wherever the file lives.
 *
 * <p>Order of preference: an explicit {@code libcublas.so.13} (system property
 * {@value #PROPERTY_CUBLAS13}, else environment variable {@value #ENV_CUBLAS13}; a file or the
 * directory holding it) wins over everything; then a {@code libcublas.so.12} in the library
 * directories ({@link Source#NATIVE_12}); then a {@code libcublas.so.13} in the library directories
 * or in Python {@code nvidia} package folders ({@link Source#SHIM_TO_13}); else {@link Source#ABSENT}.
 * The shim is taken from {@value #PROPERTY_NATIVE_DIR} when set, else from {@code target/native}
 * beside the classes or jar, else extracted from the class path resource {@value #SHIM_RESOURCE}.
 *
 * <p>Nothing here throws for a missing or unloadable library: the answer is then {@code ABSENT}
 * with a one-line reason. Use {@link #resolve()} in production; construct an instance with a
 * {@link Config} and a loader function to test the search without touching the real system.
 */
public final class CublasLoader {
    /** File name (and soname) of the cuBLAS that JCublas 12.6.0 links against. */
    public static final String CUBLAS12 = "libcublas.so.12";
    /** File name (and soname) of the CUDA 13 cuBLAS the shim forwards to. */
    public static final String CUBLAS13 = "libcublas.so.13";
    /** System property naming an explicit libcublas.so.13 file or its directory. */
    public static final String PROPERTY_CUBLAS13 = "headroute.cublas13";
    /** Environment variable naming an explicit libcublas.so.13; the shim itself reads it too. */
    public static final String ENV_CUBLAS13 = "HEADROUTE_CUBLAS13";
    /** System property naming the directory that holds the shim's libcublas.so.12. */
    public static final String PROPERTY_NATIVE_DIR = "headroute.native.dir";
    /** Class path resource the shim is extracted from when no directory provides it. */
    public static final String SHIM_RESOURCE = "io/headroute/native/libcublas.so.12";

    static final String CUBLASLT12 = "libcublasLt.so.12";
    static final String CUBLASLT13 = "libcublasLt.so.13";

    /** Marker string compiled into the shim (native/cublas_shim.c). */
    static final String SHIM_MARKER = "HEADROUTE_CUBLAS_SHIM";
    /** Real cuBLAS libraries are tens of megabytes; only files below this are checked for the marker. */
    private static final long SHIM_MAX_BYTES = 4L << 20;

    private static final Logger LOG = LogManager.getLogger(CublasLoader.class);
    private static final long LDCONFIG_TIMEOUT_MS = 2000;
    /** nvidia/&lt;package&gt;/lib/libcublas.so.13 is three levels below an nvidia folder. */
    private static final int NVIDIA_SEARCH_DEPTH = 3;

    private static Resolution cached;

    private final Config config;
    private final Consumer<Path> loader;

    /** Where cuBLAS comes from. */
    public enum Source {
        /** A real libcublas.so.12 was found; JCublas2 uses it directly. */
        NATIVE_12,
        /** libcublas.so.13 and the shim were loaded; JCublas2 calls reach cuBLAS 13 through the shim. */
        SHIM_TO_13,
        /** No usable cuBLAS; JCublas2 must not be touched. */
        ABSENT
    }

    /**
     * The decision.
     *
     * @param source where cuBLAS comes from
     * @param detail the path of the libcublas in use, or the one-line reason it is absent
     */
    public record Resolution(Source source, String detail) {
        /**
         * Checks that both parts are present.
         *
         * @param source where cuBLAS comes from; not null
         * @param detail the library's path or the reason; not null
         */
        public Resolution {
            Objects.requireNonNull(source, "source");
            Objects.requireNonNull(detail, "detail");
        }
    }

    /**
     * Everything the search looks at, resolved up front so that the search itself reads only these
     * values and the file system.
     *
     * @param libraryDirs directories searched for libcublas.so.12, then libcublas.so.13, in order
     * @param nvidiaDirs Python {@code nvidia} package folders searched (a few levels deep) for
     *     libcublas.so.13 after the library directories
     * @param explicitCublas13 an explicit libcublas.so.13 file or directory; wins over the search
     * @param nativeDir an explicit directory holding the shim; when set, the only place it is taken from
     * @param defaultNativeDirs directories tried for the shim when {@code nativeDir} is empty
     * @param resourceLoader class loader to extract {@value #SHIM_RESOURCE} from as a last resort
     */
    public record Config(
            List<Path> libraryDirs,
            List<Path> nvidiaDirs,
            Optional<Path> explicitCublas13,
            Optional<Path> nativeDir,
            List<Path> defaultNativeDirs,
            Optional<ClassLoader> resourceLoader) {
        /**
         * Copies the lists and checks for nulls.
         *
         * @param libraryDirs       the library path's directories; copied
         * @param nvidiaDirs        the nvidia package folders; copied
         * @param explicitCublas13  an explicit libcublas.so.13, or empty; not null
         * @param nativeDir         an explicit shim directory, or empty; not null
         * @param defaultNativeDirs the shim's default directories; copied
         * @param resourceLoader    the class loader of the shim resource, or empty; not null
         */
        public Config {
            libraryDirs = List.copyOf(libraryDirs);
            nvidiaDirs = List.copyOf(nvidiaDirs);
            Objects.requireNonNull(explicitCublas13, "explicitCublas13");
            Objects.requireNonNull(nativeDir, "nativeDir");
            defaultNativeDirs = List.copyOf(defaultNativeDirs);
            Objects.requireNonNull(resourceLoader, "resourceLoader");
        }

        /** {@return the configuration of this process: its environment, system properties and install layout} */
        public static Config fromSystem() {
            return from(System.getenv(), System.getProperties(), userHome(), codeLocation(), ldconfigDirs());
        }

        /**
         * Builds the configuration from explicit inputs.
         *
         * @param env environment variables (LD_LIBRARY_PATH, HEADROUTE_CUBLAS13, VIRTUAL_ENV, CONDA_PREFIX)
         * @param props system properties (java.library.path, headroute.cublas13, headroute.native.dir)
         * @param home the user's home directory, for ~/.local Python packages; may be null
         * @param codeLocation the classes directory or jar this class came from, if known
         * @param ldconfigDirs directories in which {@code ldconfig -p} lists a libcublas
         */
        static Config from(Map<String, String> env, Properties props, Path home, Optional<Path> codeLocation,
                List<Path> ldconfigDirs) {
            Set<Path> libraryDirs = new LinkedHashSet<>();
            libraryDirs.addAll(splitPath(env.get("LD_LIBRARY_PATH"), ":"));
            libraryDirs.addAll(splitPath(props.getProperty("java.library.path"), File.pathSeparator));
            for (String dir : List.of("/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
                    "/usr/lib/x86_64-linux-gnu")) {
                libraryDirs.add(Path.of(dir));
            }
            for (Path cuda : children(Path.of("/usr/local"), "cuda-")) {
                libraryDirs.add(cuda.resolve("lib64"));
                libraryDirs.add(cuda.resolve("lib"));
                libraryDirs.add(cuda.resolve("targets/x86_64-linux/lib"));
            }
            libraryDirs.addAll(ldconfigDirs);

            List<Path> pythonLibDirs = new ArrayList<>();
            pythonLibDirs.add(Path.of("/usr/local/lib"));
            pythonLibDirs.add(Path.of("/usr/lib"));
            pythonLibDirs.add(Path.of("/opt/conda/lib"));
            if (home != null) {
                pythonLibDirs.add(home.resolve(".local/lib"));
            }
            for (String prefix : List.of("VIRTUAL_ENV", "CONDA_PREFIX")) {
                toPath(env.get(prefix)).ifPresent(p -> pythonLibDirs.add(p.resolve("lib")));
            }
            Set<Path> nvidiaDirs = new LinkedHashSet<>();
            for (Path lib : pythonLibDirs) {
                for (Path python : children(lib, "python3")) {
                    nvidiaDirs.add(python.resolve("dist-packages/nvidia"));
                    nvidiaDirs.add(python.resolve("site-packages/nvidia"));
                }
            }

            Optional<Path> explicit = toPath(props.getProperty(PROPERTY_CUBLAS13))
                    .or(() -> toPath(env.get(ENV_CUBLAS13)));
            Optional<Path> nativeDir = toPath(props.getProperty(PROPERTY_NATIVE_DIR));
            List<Path> defaultNativeDirs = codeLocation
                    .map(Path::getParent)
                    .map(parent -> List.of(parent.resolve("native")))
                    .orElse(List.of());
            return new Config(new ArrayList<>(libraryDirs), new ArrayList<>(nvidiaDirs), explicit, nativeDir,
                    defaultNativeDirs, Optional.of(CublasLoader.class.getClassLoader()));
        }
    }

    /** What the search decided, before anything is loaded: the files to load, in order. */
    record Plan(Source source, List<Path> loads, String detail) {
        Plan {
            loads = List.copyOf(loads);
        }

        static Plan absent(String reason) {
            return new Plan(Source.ABSENT, List.of(), reason);
        }
    }

    /**
     * A loader over explicit search roots.
     *
     * @param config where to look
     * @param loader loads one native library by absolute path; {@code System::load} in production,
     *     and may throw {@link UnsatisfiedLinkError}
     */
    public CublasLoader(Config config, Consumer<Path> loader) {
        this.config = Objects.requireNonNull(config, "config");
        this.loader = Objects.requireNonNull(loader, "loader");
    }

    /**
     * Resolves once per process, loading what is needed, and returns the same answer afterwards.
     * Call before the first use of {@code jcuda.jcublas.JCublas2}; skip JCublas2 when the answer is
     * {@link Source#ABSENT}.
     *
     * @return the process's answer; {@link Source#ABSENT} (with the reason) when the search or a load fails
     */
    public static synchronized Resolution resolve() {
        if (cached == null) {
            Resolution r;
            try {
                r = new CublasLoader(Config.fromSystem(), p -> System.load(p.toString())).load();
            } catch (RuntimeException e) {
                r = new Resolution(Source.ABSENT, "resolving cuBLAS failed: " + oneLine(e));
            }
            LOG.debug("cuBLAS resolved: {} ({})", r.source(), r.detail());
            cached = r;
        }
        return cached;
    }

    /**
     * Searches and then loads what the search chose; not cached.
     *
     * @return where cuBLAS comes from; {@link Source#ABSENT} with the reason when nothing fits or a load fails
     */
    public Resolution load() {
        Plan plan = plan();
        if (plan.source() == Source.ABSENT) {
            LOG.debug("cuBLAS absent: {}", plan.detail());
            return new Resolution(Source.ABSENT, plan.detail());
        }
        for (Path lib : plan.loads()) {
            LOG.debug("loading {}", lib);
            try {
                loader.accept(lib.toAbsolutePath());
            } catch (UnsatisfiedLinkError | RuntimeException e) {
                String reason = "loading " + lib + " failed: " + oneLine(e);
                LOG.debug("cuBLAS absent: {}", reason);
                return new Resolution(Source.ABSENT, reason);
            }
        }
        LOG.debug("cuBLAS source {}: {}", plan.source(), plan.detail());
        return new Resolution(plan.source(), plan.detail());
    }

    /** The search alone: which files would be loaded. Reads the file system, loads nothing. */
    Plan plan() {
        Optional<Path> explicit = config.explicitCublas13();
        if (explicit.isPresent()) {
            Path given = explicit.get();
            Path lib = Files.isDirectory(given) ? given.resolve(CUBLAS13) : given;
            LOG.debug("explicit libcublas.so.13: {}", lib);
            if (!Files.isRegularFile(lib)) {
                return Plan.absent("the libcublas.so.13 named by " + PROPERTY_CUBLAS13 + " or " + ENV_CUBLAS13
                        + " does not exist: " + lib);
            }
            return withShim(lib);
        }
        Optional<Path> native12 = findReal12();
        if (native12.isPresent()) {
            Path lib = native12.get();
            LOG.debug("found {}", lib);
            return new Plan(Source.NATIVE_12, withSibling(lib, CUBLASLT12), lib.toString());
        }
        Optional<Path> cublas13 = findIn(config.libraryDirs(), CUBLAS13).or(this::findInNvidiaDirs);
        if (cublas13.isPresent()) {
            LOG.debug("found {}", cublas13.get());
            return withShim(cublas13.get());
        }
        return Plan.absent("neither " + CUBLAS12 + " nor " + CUBLAS13 + " was found; searched "
                + describe(config.libraryDirs()) + " and the Python nvidia folders "
                + describe(config.nvidiaDirs()) + "; set " + PROPERTY_CUBLAS13 + " or " + ENV_CUBLAS13
                + " to a " + CUBLAS13);
    }

    private Plan withShim(Path cublas13) {
        Optional<Path> shim;
        if (config.nativeDir().isPresent()) {
            Path candidate = config.nativeDir().get().resolve(CUBLAS12);
            if (!Files.isRegularFile(candidate)) {
                return Plan.absent(PROPERTY_NATIVE_DIR + " is " + config.nativeDir().get() + " but it holds no "
                        + CUBLAS12 + " shim (build it with make -C native)");
            }
            shim = Optional.of(candidate);
        } else {
            shim = findIn(config.defaultNativeDirs(), CUBLAS12).or(this::extractShim);
        }
        if (shim.isEmpty()) {
            return Plan.absent(CUBLAS13 + " is at " + cublas13 + " but the " + CUBLAS12 + " shim was found neither in "
                    + describe(config.defaultNativeDirs()) + " nor as the class path resource " + SHIM_RESOURCE
                    + "; build it with make -C native or set " + PROPERTY_NATIVE_DIR);
        }
        LOG.debug("shim: {}", shim.get());
        List<Path> loads = new ArrayList<>(withSibling(cublas13, CUBLASLT13));
        loads.add(shim.get());
        return new Plan(Source.SHIM_TO_13, loads, cublas13.toString());
    }

    /** The library, preceded by its cublasLt from the same directory when there is one: the
     *  loader only finds cublasLt by soname if it is already loaded or on its own search path. */
    private static List<Path> withSibling(Path lib, String siblingName) {
        Path dir = lib.toAbsolutePath().getParent();
        Path sibling = dir == null ? null : dir.resolve(siblingName);
        if (sibling != null && Files.isRegularFile(sibling)) {
            LOG.debug("found {}", sibling);
            return List.of(sibling, lib);
        }
        return List.of(lib);
    }

    /** A libcublas.so.12 on a search path may be this project's shim (say, target/native on
     *  LD_LIBRARY_PATH); taking it for cuBLAS 12 would skip loading libcublas.so.13 first. */
    private Optional<Path> findReal12() {
        for (Path dir : config.libraryDirs()) {
            Path candidate = dir.resolve(CUBLAS12);
            if (Files.isRegularFile(candidate)) {
                if (!isShim(candidate)) {
                    return Optional.of(candidate);
                }
                LOG.debug("{} is the headroute shim, not cuBLAS 12", candidate);
            }
        }
        LOG.debug("no real {} in {}", CUBLAS12, config.libraryDirs());
        return Optional.empty();
    }

    /** Whether {@code lib} is a headroute shim: small and containing {@link #SHIM_MARKER}. */
    static boolean isShim(Path lib) {
        try {
            if (Files.size(lib) > SHIM_MAX_BYTES) {
                return false;
            }
            return new String(Files.readAllBytes(lib), StandardCharsets.ISO_8859_1)
                    .contains(SHIM_MARKER);
        } catch (IOException | RuntimeException e) {
            LOG.debug("cannot read {}: {}", lib, oneLine(e));
            return false;
        }
    }

    private static Optional<Path> findIn(List<Path> dirs, String name) {
        for (Path dir : dirs) {
            Path candidate = dir.resolve(name);
            if (Files.isRegularFile(candidate)) {
                return Optional.of(candidate);
            }
        }
        LOG.debug("{} is in none of {}", name, dirs);
        return Optional.empty();
    }

    private Optional<Path> findInNvidiaDirs() {
        for (Path root : config.nvidiaDirs()) {
            if (!Files.isDirectory(root)) {
                continue;
            }
            try (Stream<Path> found = Files.find(root, NVIDIA_SEARCH_DEPTH,
                    (p, attrs) -> p.getFileName().toString().equals(CUBLAS13) && Files.isRegularFile(p))) {
                Optional<Path> first = found.sorted().findFirst();
                if (first.isPresent()) {
                    return first;
                }
            } catch (IOException | RuntimeException e) {
                LOG.debug("cannot search {}: {}", root, oneLine(e));
            }
        }
        LOG.debug("{} is in none of the nvidia folders {}", CUBLAS13, config.nvidiaDirs());
        return Optional.empty();
    }

    private Optional<Path> extractShim() {
        if (config.resourceLoader().isEmpty()) {
            return Optional.empty();
        }
        URL url = config.resourceLoader().get().getResource(SHIM_RESOURCE);
        if (url == null) {
            LOG.debug("no class path resource {}", SHIM_RESOURCE);
            return Optional.empty();
        }
        try (InputStream in = url.openStream()) {
            Path dir = Files.createTempDirectory("headroute-native");
            Path file = dir.resolve(CUBLAS12);
            // deleteOnExit runs in reverse order of registration: the file goes before its directory.
            dir.toFile().deleteOnExit();
            file.toFile().deleteOnExit();
            Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
            LOG.debug("extracted {} to {}", url, file);
            return Optional.of(file);
        } catch (IOException | RuntimeException e) {
            LOG.debug("cannot extract {}: {}", url, oneLine(e));
            return Optional.empty();
        }
    }

    private static String describe(List<Path> dirs) {
        return dirs.isEmpty() ? "[]" : dirs.stream().map(Path::toString).collect(Collectors.joining(", ", "[", "]"));
    }

    static String oneLine(Throwable e) {
        String message = e.getMessage() == null ? e.getClass().getName() : e.getMessage();
        return message.replaceAll("\\s*\\R\\s*", " ").strip();
    }

    private static List<Path> splitPath(String value, String separator) {
        List<Path> out = new ArrayList<>();
        if (value == null) {
            return out;
        }
        for (String part : value.split(Pattern.quote(separator))) {
            toPath(part).ifPresent(out::add);
        }
        return out;
    }

    private static Optional<Path> toPath(String value) {
        if (value == null || value.isBlank()) {
            return Optional.empty();
        }
        try {
            return Optional.of(Path.of(value.strip()));
        } catch (InvalidPathException e) {
            LOG.debug("ignoring unusable path {}: {}", value, e.getMessage());
            return Optional.empty();
        }
    }

    /** Subdirectories of {@code dir} whose names start with {@code prefix}, sorted; none if unreadable. */
    private static List<Path> children(Path dir, String prefix) {
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        List<Path> out = new ArrayList<>();
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir, prefix + "*")) {
            for (Path entry : entries) {
                if (Files.isDirectory(entry)) {
                    out.add(entry);
                }
            }
        } catch (IOException | RuntimeException e) {
            LOG.debug("cannot list {}: {}", dir, oneLine(e));
        }
        out.sort(null);
        return out;
    }

    private static Path userHome() {
        return toPath(System.getProperty("user.home")).orElse(null);
    }

    private static Optional<Path> codeLocation() {
        try {
            CodeSource source = CublasLoader.class.getProtectionDomain().getCodeSource();
            if (source == null || source.getLocation() == null) {
                return Optional.empty();
            }
            return Optional.of(Path.of(source.getLocation().toURI()));
        } catch (URISyntaxException | RuntimeException e) {
            LOG.debug("cannot tell where the classes are: {}", oneLine(e));
            return Optional.empty();
        }
    }

    /** Directories in which {@code ldconfig -p} lists an x86-64 libcublas; empty if ldconfig is unavailable. */
    static List<Path> ldconfigDirs() {
        String ldconfig = Stream.of("/sbin/ldconfig", "/usr/sbin/ldconfig")
                .filter(p -> Files.isExecutable(Path.of(p)))
                .findFirst()
                .orElse("ldconfig");
        Path output = null;
        try {
            output = Files.createTempFile("headroute-ldconfig", ".txt");
            Process p = new ProcessBuilder(ldconfig, "-p")
                    .redirectErrorStream(true)
                    .redirectOutput(output.toFile())
                    .start();
            if (!p.waitFor(LDCONFIG_TIMEOUT_MS, TimeUnit.MILLISECONDS)) {
                p.destroyForcibly();
                LOG.debug("{} -p did not finish in {} ms", ldconfig, LDCONFIG_TIMEOUT_MS);
                return List.of();
            }
            return parseLdconfig(Files.readAllLines(output));
        } catch (IOException | RuntimeException e) {
            LOG.debug("{} -p unavailable: {}", ldconfig, oneLine(e));
            return List.of();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return List.of();
        } finally {
            if (output != null) {
                try {
                    Files.deleteIfExists(output);
                } catch (IOException e) {
                    LOG.debug("cannot delete {}: {}", output, oneLine(e));
                }
            }
        }
    }

    /** Parses lines like {@code libcublas.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcublas.so.12}. */
    static List<Path> parseLdconfig(List<String> lines) {
        Set<Path> dirs = new LinkedHashSet<>();
        for (String line : lines) {
            String trimmed = line.strip();
            int arrow = trimmed.indexOf(" => ");
            if (!trimmed.startsWith("libcublas.so.") || arrow < 0 || !trimmed.contains("x86-64")) {
                continue;
            }
            toPath(trimmed.substring(arrow + 4)).map(Path::getParent).ifPresent(dirs::add);
        }
        return new ArrayList<>(dirs);
    }
}
