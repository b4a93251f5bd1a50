package io.headroute.device;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.cli.Main;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The compare step's one-JVM runner: a result line and a log per run, and a stop after an internal error. */
class CommandRunsTest {
    @TempDir
    Path dir;

    @Test
    void eachRunGetsItsLogAndResultLine() throws IOException {
        Path runs = dir.resolve("runs.in");
        Files.writeString(runs, "help\tpattern\t--help\n\nbad\tattend\t--q\t" + dir.resolve("missing.npy") + "\n",
                StandardCharsets.UTF_8);
        int rc = CommandRuns.run(runs, dir.resolve("out"), dir.resolve("batch.tsv"));
        assertEquals(0, rc);
        List<String> lines = Files.readAllLines(dir.resolve("batch.tsv"));
        assertEquals(2, lines.size(), lines::toString);
        assertTrue(lines.get(0).startsWith("help\t0\t"), lines::toString);
        assertTrue(lines.get(1).startsWith("bad\t2\t"), lines::toString);
        assertTrue(Files.readString(dir.resolve("out/help.log")).contains("Usage: headroute pattern"));
        String bad = Files.readString(dir.resolve("out/bad.log"));
        assertTrue(bad.startsWith("headroute attend: error: "), bad);
    }

    @Test
    void itStopsAfterAnInternalError() throws IOException {
        Path runs = dir.resolve("runs.in");
        Files.writeString(runs, "a\tx\nb\ty\nc\tz\n", StandardCharsets.UTF_8);
        int rc = CommandRuns.run(runs, dir.resolve("out"), dir.resolve("batch.tsv"), (out, err, args) -> {
            err.println("ran " + args[0]);
            return args[0].equals("y") ? Main.INTERNAL_ERROR : Main.OK;
        });
        assertEquals(1, rc);
        List<String> lines = Files.readAllLines(dir.resolve("batch.tsv"));
        assertEquals(List.of("a\t0\t0", "b\t1\t0"), lines);
        assertEquals("ran y\n", Files.readString(dir.resolve("out/b.log")));
        assertFalse(Files.exists(dir.resolve("out/c.log")), "c is the caller's, in a JVM of its own");
    }
}
