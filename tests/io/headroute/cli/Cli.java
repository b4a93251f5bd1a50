package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/** Runs {@link Main#run} with captured stdout and stderr. */
record Cli(int exit, String out, String err) {
    static Cli run(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int exit = Main.run(new PrintWriter(out, true), new PrintWriter(err, true), args);
        return new Cli(exit, out.toString(), err.toString());
    }

    static Cli run(List<String> args) {
        return run(args.toArray(String[]::new));
    }

    List<String> errLines() {
        return err.lines().toList();
    }

    Cli assertOk() {
        assertEquals(0, exit, this::toString);
        assertEquals("", err, this::toString);
        return this;
    }

    /**
     * Exit status 2, nothing on stdout, one error line (plus picocli's "see --help" line) naming the
     * command and containing {@code keyword}, no stack trace, and none of {@code outputs} written.
     */
    Cli assertBadInput(String command, String keyword, Path... outputs) {
        assertEquals(2, exit, this::toString);
        assertEquals("", out, this::toString);
        List<String> lines = errLines();
        assertTrue(lines.size() == 1 || (lines.size() == 2 && lines.get(1).equals("see '" + command + " --help'")),
                this::toString);
        assertTrue(lines.get(0).startsWith(command + ": error: "), this::toString);
        assertTrue(lines.get(0).contains(keyword), () -> "expected '" + keyword + "' in: " + this);
        assertFalse(err.contains("\tat "), this::toString);
        assertFalse(err.contains("Exception"), this::toString);
        for (Path p : outputs) {
            assertFalse(Files.exists(p), () -> p + " was written: " + this);
        }
        return this;
    }

    @Override
    public String toString() {
        return "exit " + exit + "\n--- stdout:\n" + out + "--- stderr:\n" + err;
    }
}
