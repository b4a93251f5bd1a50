package io.headroute;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import javax.tools.Diagnostic;
import javax.tools.DiagnosticCollector;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileObject;
import javax.tools.StandardJavaFileManager;
import javax.tools.ToolProvider;

/**
 * The {@code java} blocks of README's "Using headroute from Java" section, each a whole program: extracted,
 * compiled against the test class path with every lint warning an error, and run in this JVM with what
 * {@code System.out} receives captured. The plain code blocks after a program, up to the next program, are what it
 * may print; a line ending in "…" there stands for any line that starts with the text before it.
 */
final class ReadmeExamples {
    static final Path README = Path.of("README.md");
    static final String SECTION = "## Using headroute from Java";

    /** One program: its public class, its source, the outputs shown after it, and the README line it starts on. */
    record Example(String className, String source, List<String> outputs, int line) {}

    private static final Pattern PUBLIC_CLASS = Pattern.compile("^public class (\\w+)", Pattern.MULTILINE);

    /**
     * Where the device bundle keeps the programs compiled ahead (its jlink runtime has no compiler): a folder
     * {@value} beside the test classes, holding {@code classes/} and {@link #FINGERPRINTS}.
     */
    static final String PRECOMPILED = "readme-examples";
    /** One line per program: its class name, a tab, the SHA-256 of its source. */
    static final String FINGERPRINTS = "sources.sha256";

    private ReadmeExamples() {}

    /**
     * {@code ReadmeExamples OUT}: compiles README's programs into OUT/classes and writes OUT/{@value #FINGERPRINTS},
     * for a runtime without a compiler ({@link #precompiled}). Run from the repository's root.
     */
    public static void main(String[] args) throws IOException {
        if (args.length != 1) {
            System.err.println("usage: ReadmeExamples OUT");
            System.exit(2);
        }
        Path out = Path.of(args[0]);
        List<Example> examples = examples();
        compile(examples, out); // out/src and out/classes
        deleteTree(out.resolve("src"));
        StringBuilder lines = new StringBuilder();
        for (Example e : examples) {
            lines.append(e.className()).append('\t').append(sha256(e.source())).append('\n');
        }
        Files.writeString(out.resolve(FINGERPRINTS), lines.toString(), StandardCharsets.UTF_8);
        System.out.println("compiled " + examples.size() + " README programs into " + out);
    }

    /**
     * The classes compiled ahead for {@code e} ({@link #main}, run by the device bundle), if there are: the folder
     * {@value #PRECOMPILED} beside the folder or jar the test classes come from. Fails when they were compiled
     * from another version of the program (README changed since), rather than run a stale one.
     */
    static java.util.Optional<Path> precompiled(Example e) throws Exception {
        Path testClasses = Path.of(ReadmeExamples.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        Path dir = testClasses.getParent().resolve(PRECOMPILED);
        Path fingerprints = dir.resolve(FINGERPRINTS);
        if (!Files.isRegularFile(fingerprints)) {
            return java.util.Optional.empty();
        }
        String want = e.className() + "\t" + sha256(e.source());
        List<String> have = Files.readAllLines(fingerprints, StandardCharsets.UTF_8);
        assertTrue(have.contains(want), () -> dir + " holds " + e.className() + " compiled from another source than README's"
                + " (README changed after the bundle was built?): " + have);
        return java.util.Optional.of(dir.resolve("classes"));
    }

    private static String sha256(String text) {
        try {
            return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256")
                    .digest(text.getBytes(StandardCharsets.UTF_8)));
        } catch (java.security.NoSuchAlgorithmException ex) {
            throw new IllegalStateException(ex);
        }
    }

    private static void deleteTree(Path root) throws IOException {
        try (var paths = Files.walk(root)) {
            for (Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }

    /** The section's programs, in README order. */
    static List<Example> examples() {
        List<String> lines;
        try {
            lines = Files.readAllLines(README, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        int start = lines.indexOf(SECTION);
        assertTrue(start >= 0, "README.md has no line '" + SECTION + "'");
        List<String[]> programs = new ArrayList<>(); // {source, first line}
        List<List<String>> outputs = new ArrayList<>();
        for (int i = start + 1; i < lines.size() && !lines.get(i).startsWith("## "); i++) {
            String fence = lines.get(i);
            if (!fence.startsWith("```")) {
                continue;
            }
            int open = i;
            StringBuilder body = new StringBuilder();
            for (i++; i < lines.size() && !lines.get(i).equals("```"); i++) {
                body.append(lines.get(i)).append('\n');
            }
            if (fence.equals("```java")) {
                programs.add(new String[] {body.toString(), Integer.toString(open + 2)});
                outputs.add(new ArrayList<>());
            } else if (fence.equals("```") && !programs.isEmpty()) {
                outputs.get(outputs.size() - 1).add(body.toString());
            }
        }
        List<Example> out = new ArrayList<>();
        for (int p = 0; p < programs.size(); p++) {
            Matcher m = PUBLIC_CLASS.matcher(programs.get(p)[0]);
            int line = Integer.parseInt(programs.get(p)[1]);
            assertTrue(m.find(), "the java block at README.md:" + line + " declares no public class");
            out.add(new Example(m.group(1), programs.get(p)[0], List.copyOf(outputs.get(p)), line));
        }
        return out;
    }

    /** Compiles every example into {@code dir}; fails with the compiler's messages at their README lines. */
    static Path compile(List<Example> examples, Path dir) throws IOException {
        Path src = Files.createDirectories(dir.resolve("src"));
        Path classes = Files.createDirectories(dir.resolve("classes"));
        List<Path> files = new ArrayList<>();
        for (Example e : examples) {
            files.add(Files.writeString(src.resolve(e.className() + ".java"), e.source()));
        }
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        assertTrue(javac != null, "no system Java compiler (a JRE without javac?)");
        DiagnosticCollector<JavaFileObject> diagnostics = new DiagnosticCollector<>();
        try (StandardJavaFileManager fm = javac.getStandardFileManager(diagnostics, Locale.ROOT,
                StandardCharsets.UTF_8)) {
            List<String> options = List.of("-d", classes.toString(), "-classpath", testClassPath(), "--release", "17",
                    "-proc:none", "-Xlint:all", "-Werror");
            boolean ok = javac.getTask(null, fm, diagnostics, options, null, fm.getJavaFileObjectsFromPaths(files))
                    .call();
            if (!ok || !diagnostics.getDiagnostics().isEmpty()) {
                fail("README examples do not compile cleanly:\n" + diagnostics.getDiagnostics().stream()
                        .map(d -> where(d, examples) + ": " + d.getMessage(Locale.ROOT))
                        .collect(Collectors.joining("\n")));
            }
        }
        return classes;
    }

    private static String where(Diagnostic<? extends JavaFileObject> d, List<Example> examples) {
        if (d.getSource() == null) {
            return "javac";
        }
        String name = Path.of(d.getSource().toUri()).getFileName().toString().replace(".java", "");
        for (Example e : examples) {
            if (e.className().equals(name)) {
                return "README.md:" + (e.line() + d.getLineNumber() - 1) + " (" + name + ")";
            }
        }
        return name + ":" + d.getLineNumber();
    }

    /** Surefire's class path when it runs the test (java.class.path may be its booter jar), else this JVM's. */
    private static String testClassPath() {
        String surefire = System.getProperty("surefire.test.class.path");
        return surefire != null && !surefire.isBlank() ? surefire : System.getProperty("java.class.path");
    }

    /** Runs {@code className}'s main with {@code args}; returns what it printed to System.out. */
    static String run(Path classes, String className, String... args) throws Exception {
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        PrintStream saved = System.out;
        try (URLClassLoader loader = new URLClassLoader(new URL[] {classes.toUri().toURL()},
                ReadmeExamples.class.getClassLoader());
                PrintStream out = new PrintStream(captured, true, StandardCharsets.UTF_8)) {
            Method main = loader.loadClass(className).getMethod("main", String[].class);
            System.setOut(out);
            try {
                main.invoke(null, (Object) args);
            } catch (InvocationTargetException e) {
                throw new AssertionError(className + " (README) threw " + e.getCause(), e.getCause());
            } finally {
                System.setOut(saved);
            }
        }
        return captured.toString(StandardCharsets.UTF_8);
    }

    /** Whether {@code output} is {@code shown}, line for line, a line ending in "…" matching any line it starts. */
    static boolean matches(String shown, String output) {
        List<String> want = shown.lines().collect(Collectors.toList());
        List<String> got = output.lines().collect(Collectors.toList());
        if (want.size() != got.size()) {
            return false;
        }
        for (int i = 0; i < want.size(); i++) {
            String w = want.get(i);
            String line = got.get(i);
            if (!(w.endsWith("…") ? line.startsWith(w.substring(0, w.length() - 1)) : line.equals(w))) {
                return false;
            }
        }
        return true;
    }

    /** Fails unless {@code output} is one of the outputs README shows for {@code e}. */
    static void assertPrintsWhatReadmeShows(Example e, String output) {
        assertTrue(!e.outputs().isEmpty(), e.className() + " (README.md:" + e.line() + ") shows no output");
        for (String shown : e.outputs()) {
            if (matches(shown, output)) {
                return;
            }
        }
        fail(e.className() + " (README.md:" + e.line() + ") printed\n" + output + "\nbut README shows\n"
                + String.join("\nor\n", e.outputs()));
    }
}
