package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.SystemProperty;
import io.headroute.engine.cuda.CudaAttentionEngine;
import java.util.List;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.config.Configurator;
import org.junit.jupiter.api.Test;

class MainTest {
    @Test
    void helpAndVersionOnEveryCommand() {
        Cli top = Cli.run("--help").assertOk();
        for (String cmd : new String[] {"attend", "pattern", "quality", "route", "bench", "demo", "experiment", "info"}) {
            assertTrue(top.out().contains(cmd), top.out());
            Cli h = Cli.run(cmd, "--help").assertOk();
            assertTrue(h.out().contains("Usage: headroute " + cmd), h.out());
            assertTrue(h.out().contains("--verbose"), h.out());
            assertEquals("headroute 0.1.0\n", Cli.run(cmd, "--version").assertOk().out().replace("\r", ""));
        }
        assertEquals("headroute 0.1.0\n", Cli.run("--version").assertOk().out().replace("\r", ""));
        assertTrue(Cli.run("attend", "--help").out().contains("--pattern"));
        // Every option a command takes is listed (demo --threads worked but was hidden).
        assertTrue(Cli.run("demo", "--help").out().contains("--threads=N"), Cli.run("demo", "--help").out());
    }

    /**
     * An unknown -Dheadroute.tiling is refused in one line by every command, whatever the backend (CPU runs ignored it
     * and exited 0); help and version still answer.
     */
    @Test
    void anUnknownTilingPropertyIsRefusedByEveryCommand() {
        try (SystemProperty tiling = SystemProperty.set(CudaAttentionEngine.TILING_PROPERTY, null)) {
            tiling.put("bogus");
            String why = "-Dheadroute.tiling=bogus: unknown tiling 'bogus' (expected ";
            Cli.run("attend", "--backend", "cpu", "--q", "missing-q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy")
                    .assertBadInput("headroute attend", why);
            Cli.run("bench", "--backend", "cpu", "--heads", "1", "--len", "16", "--repeats", "1", "--warmup", "0")
                    .assertBadInput("headroute bench", why);
            Cli.run("quality", "--backend", "cpu", "--heads", "1", "--len", "16").assertBadInput("headroute quality", why);
            Cli.run("pattern", "--spec", "window:4", "--len", "16", "--out", "p.npy").assertBadInput("headroute pattern", why);
            Cli.run("info").assertBadInput("headroute info", why);
            Cli.run("attend", "--help").assertOk();
            Cli.run("--version").assertOk();
            Cli.run("help", "bench").assertOk();
        }
    }

    /**
     * Each example in a command's help is one line (or shell lines joined by a trailing backslash) exactly as written:
     * picocli wrapped long ones mid-argument ("--variants flash,sparse:" / "window:256 ..."), breaking copy-paste.
     */
    @Test
    void helpExamplesAreUnbrokenLines() {
        picocli.CommandLine cl = new picocli.CommandLine(new Main());
        List<String> commands = new java.util.ArrayList<>(cl.getSubcommands().keySet());
        commands.remove("help");
        int examples = 0;
        for (String cmd : commands) {
            List<String> shown = joinContinuations(Cli.run(cmd, "--help").assertOk().out().lines().toList());
            List<String> viaHelp = joinContinuations(Cli.run("help", cmd).assertOk().out().lines().toList());
            for (String example : joinContinuations(List.of(cl.getSubcommands().get(cmd).getCommandSpec().usageMessage().footer()))) {
                if (example.startsWith("  headroute ")) {
                    examples++;
                    assertTrue(shown.contains(example), () -> cmd + " --help does not show on one line: " + example + "\n" + shown);
                    assertTrue(viaHelp.contains(example), () -> "help " + cmd + " does not show on one line: " + example);
                }
            }
        }
        assertTrue(examples >= 10, "examples found: " + examples);
    }

    /** Lines ending in " \\" joined with the next (a shell continuation is one command). */
    private static List<String> joinContinuations(List<String> lines) {
        List<String> out = new java.util.ArrayList<>();
        StringBuilder cur = null;
        for (String l : lines) {
            String line = l.replace("\r", "");
            if (cur != null) {
                cur.append(' ').append(line.strip());
            } else {
                cur = new StringBuilder(line);
            }
            if (cur.toString().endsWith(" \\")) {
                cur.setLength(cur.length() - 2);
            } else {
                out.add(cur.toString());
                cur = null;
            }
        }
        if (cur != null) {
            out.add(cur.toString());
        }
        return out;
    }

    @Test
    void missingOrUnknownCommandIsAUsageError() {
        Cli.run().assertBadInput("headroute", "missing command");
        Cli.run("frobnicate").assertBadInput("headroute", "frobnicate");
        // 'help bogus' says what 'bogus' says (picocli's help command said "unknown subcommand 'bogus'.").
        String unknown = Cli.run("bogus").assertBadInput("headroute", "unknown command 'bogus' (expected one of attend, ").errLines().get(0);
        assertEquals(unknown, Cli.run("help", "bogus").assertBadInput("headroute", "unknown command 'bogus'").errLines().get(0));
        Cli.run("attendd", "--q", "q.npy").assertBadInput("headroute", "unknown command 'attendd' (expected one of attend, ");
        // picocli's messages in headroute's form: lower case after "error: ".
        Cli.run("pattern", "--len", "8", "--out", "x.npy").assertBadInput("headroute pattern", "error: missing required option");
        Cli.run("bench", "--frobnicate").assertBadInput("headroute bench", "error: unknown option: '--frobnicate'");
        // A required option missing too: the unknown option is the mistake to name (picocli checks required ones first).
        Cli.run("attend", "--bogus").assertBadInput("headroute attend", "error: unknown option: '--bogus'");
        Cli.run("attend", "--q", "q.npy", "--bogus=3").assertBadInput("headroute attend", "error: unknown option: '--bogus'");
        Cli.run("--verbose", "attend", "-Z").assertBadInput("headroute attend", "error: unknown option: '-Z'");
        // Values of options are not options, even when they start with a dash.
        Cli.run("attend", "--q", "-q.npy", "--k", "k.npy").assertBadInput("headroute attend", "error: missing required option");
        // After "--" nothing is an option: the missing one is named.
        Cli.run("attend", "--q", "q.npy", "--", "--bogus").assertBadInput("headroute attend", "error: missing required option");
    }

    @Test
    void infoListsEveryKernelModuleOfTheBuild() throws java.io.IOException {
        // One module per cuda-kernels/NAME.cu; info must report each of them, so the list cannot drift.
        try (var files = java.nio.file.Files.list(java.nio.file.Path.of("cuda-kernels"))) {
            java.util.Set<String> sources = new java.util.TreeSet<>();
            files.map(f -> f.getFileName().toString()).filter(n -> n.endsWith(".cu"))
                    .forEach(n -> sources.add(n.substring(0, n.length() - 3)));
            assertEquals(sources, new java.util.TreeSet<>(java.util.List.of(InfoCommand.MODULES)));
        }
    }

    @Test
    void infoReportsBackendsCoresAndJvm() {
        Cli r = Cli.run("info").assertOk();
        assertTrue(r.out().startsWith("headroute 0.1.0"), r.out());
        assertTrue(r.out().contains("backend cpu:  available (" + Runtime.getRuntime().availableProcessors() + " cores)"), r.out());
        assertTrue(r.out().contains("backend cuda: "), r.out());
        assertTrue(r.out().contains("JVM: "), r.out());
    }

    @Test
    void verboseIsAcceptedEverywhere() {
        try {
            Cli.run("info", "--verbose").assertOk();
            Cli.run("--verbose", "info").assertOk();
            assertTrue(LogManager.getLogger("io.headroute.cli").isDebugEnabled());
        } finally {
            Configurator.reconfigure();
        }
        assertTrue(!LogManager.getLogger("io.headroute.cli").isDebugEnabled());
    }

    @Test
    void demoAgreesOnASmallSize() {
        Cli r = Cli.run("demo", "--backend", "cpu", "--len", "96", "--threads", "2").assertOk();
        assertTrue(r.out().contains("flash and materialized agree"), r.out());
        assertTrue(r.out().contains("GFLOP/s"), r.out());
        assertTrue(r.out().contains("materialized"), r.out());
    }

    /**
     * A failed call (an "error: " row, e.g. a CUDA error on a first GPU run) makes the demo fail, as it makes bench
     * fail; an algorithm that does not fit is reported and the demo still succeeds.
     */
    @Test
    void demoFailsWhenACallFailed() {
        var c = new io.headroute.bench.AttentionBenchmark.Config(1, 8, 8, 64, 64, 64, true, new io.headroute.pattern.Pattern.Dense(),
                io.headroute.tensor.DType.F32, java.util.List.of(io.headroute.engine.Algorithm.FLASH,
                        io.headroute.engine.Algorithm.MATERIALIZED), 1, 3, 42);
        var flash = new io.headroute.bench.AttentionBenchmark.Measurement(io.headroute.engine.Algorithm.FLASH,
                io.headroute.engine.Algorithm.FLASH, "cuda", java.util.List.of(1.0, 1.0, 1.0), 1.0, 1.0, 10.0, 0, 1, 0, 0.0, 1 << 20,
                null, "ok", null);
        for (String status : new String[] {io.headroute.bench.AttentionBenchmark.ERROR + "CUDA_ERROR_ILLEGAL_ADDRESS",
            "does not fit: the materialized path needs 1.50 MiB"}) {
            var materialized = new io.headroute.bench.AttentionBenchmark.Measurement(io.headroute.engine.Algorithm.MATERIALIZED,
                    io.headroute.engine.Algorithm.MATERIALIZED, "cuda", java.util.List.of(), Double.NaN, Double.NaN, Double.NaN, -1,
                    -1, -1, Double.NaN, -1, null, status, null);
            var report = new io.headroute.bench.AttentionBenchmark.Report(io.headroute.bench.AttentionBenchmark.Machine.current(),
                    c, "cuda", "GPU 0", java.util.List.of(flash, materialized));
            java.io.StringWriter out = new java.io.StringWriter();
            java.io.StringWriter err = new java.io.StringWriter();
            int rc = DemoCommand.print(report, 2, new java.io.PrintWriter(out, true), new java.io.PrintWriter(err, true));
            assertTrue(out.toString().contains(status), out.toString());
            if (status.startsWith(io.headroute.bench.AttentionBenchmark.ERROR)) {
                assertEquals(Main.INTERNAL_ERROR, rc, out + "" + err);
                assertEquals("headroute demo: error: 1 of 2 algorithms failed (the table says why)", err.toString().strip());
            } else {
                assertEquals(Main.OK, rc, out + "" + err);
                assertTrue(out.toString().contains("not both measured"), out.toString());
            }
        }
    }
}
