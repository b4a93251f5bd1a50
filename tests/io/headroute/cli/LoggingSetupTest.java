package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The library's classes hold no Log4j configuration (one in the jar would take over an embedding application's
 * logging); the command line's process loads its own, and a configuration the user names wins over it.
 */
class LoggingSetupTest {
    /** A line of the command line's layout: "HH:mm:ss.SSS LEVEL Logger - message" (Log4j's default adds "[thread]"). */
    private static final Pattern CLI_LINE = Pattern.compile("\\d\\d:\\d\\d:\\d\\d\\.\\d{3} DEBUG +\\w+ - .*");

    @TempDir
    Path dir;

    private static Path classesOf(Class<?> c) throws URISyntaxException {
        return Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI());
    }

    @Test
    void theLibraryClassesHoldNoLog4jConfiguration() throws Exception {
        Path classes = classesOf(Main.class);
        for (String name : List.of("log4j2.xml", "log4j2.json", "log4j2.yaml", "log4j2.yml", "log4j2.properties", "log4j2-test.xml")) {
            assertFalse(Files.exists(classes.resolve(name)), () -> classes.resolve(name) + " would configure every application's logging");
        }
        assertTrue(Main.LOG_CONFIG.startsWith("classpath:"), Main.LOG_CONFIG);
        assertTrue(Files.isRegularFile(classes.resolve(Main.LOG_CONFIG.substring("classpath:".length()))), Main.LOG_CONFIG);
    }

    @Test
    void theCommandLineProcessLogsWithItsOwnSetup() throws Exception {
        Run r = runMain(List.of(), "info", "--verbose");
        assertEquals(0, r.status(), r::toString);
        assertTrue(r.out().startsWith("headroute 0.1.0"), r::toString);
        List<String> debug = r.err().lines().filter(l -> l.contains("DEBUG")).toList();
        assertFalse(debug.isEmpty(), r::toString);
        assertTrue(debug.stream().allMatch(l -> CLI_LINE.matcher(l).matches()), r::toString);
        assertFalse(r.out().contains("DEBUG"), r::toString);
    }

    @Test
    void aConfigurationTheUserNamesWins() throws Exception {
        Path config = dir.resolve("mine.xml");
        Files.writeString(config, """
                <Configuration status="WARN">
                  <Appenders><Console name="e" target="SYSTEM_ERR"><PatternLayout pattern="MINE %-5level %msg%n"/></Console></Appenders>
                  <Loggers><Root level="DEBUG"><AppenderRef ref="e"/></Root></Loggers>
                </Configuration>
                """, StandardCharsets.UTF_8);
        Run r = runMain(List.of("-Dlog4j2.configurationFile=" + config), "info");
        assertEquals(0, r.status(), r::toString);
        List<String> debug = r.err().lines().filter(l -> l.contains("DEBUG")).toList();
        assertFalse(debug.isEmpty(), r::toString);
        assertTrue(debug.stream().allMatch(l -> l.startsWith("MINE DEBUG ")), r::toString);
    }

    @Test
    void runningTheCommandLineInAProgramLeavesItsLoggingAlone() {
        String before = System.getProperty("log4j2.configurationFile");
        Cli.run("info").assertOk();
        assertEquals(before, System.getProperty("log4j2.configurationFile"));
    }

    private record Run(int status, String out, String err) {
        @Override
        public String toString() {
            return "exit " + status + "\n--- stdout\n" + out + "--- stderr\n" + err;
        }
    }

    /** Main in a JVM of its own, on the class path without the test classes (and so without their log4j2-test.xml). */
    private Run runMain(List<String> jvmOptions, String... args) throws IOException, InterruptedException, URISyntaxException {
        Path testClasses = classesOf(LoggingSetupTest.class);
        String classPath = Arrays.stream(System.getProperty("java.class.path").split(File.pathSeparator))
                .filter(e -> !e.isEmpty() && !Path.of(e).toAbsolutePath().equals(testClasses.toAbsolutePath()))
                .collect(Collectors.joining(File.pathSeparator));
        List<String> command = new ArrayList<>();
        command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        command.add("-Xmx256m");
        command.addAll(jvmOptions);
        command.addAll(List.of("-cp", classPath, Main.class.getName()));
        command.addAll(List.of(args));
        Path out = dir.resolve("out.txt");
        Path err = dir.resolve("err.txt");
        ProcessBuilder pb = new ProcessBuilder(command).redirectOutput(out.toFile()).redirectError(err.toFile());
        pb.environment().remove("LOG4J_CONFIGURATION_FILE");
        Process p = pb.start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("headroute " + String.join(" ", args) + " did not end in 120 s");
        }
        return new Run(p.exitValue(), Files.readString(out, StandardCharsets.UTF_8), Files.readString(err, StandardCharsets.UTF_8));
    }
}
