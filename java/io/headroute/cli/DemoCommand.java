package io.headroute.cli;

import io.headroute.attention.Backend;
import io.headroute.attention.Backends;
import io.headroute.bench.AttentionBenchmark;
import io.headroute.bench.AttentionBenchmark.Config;
import io.headroute.bench.AttentionBenchmark.Measurement;
import io.headroute.bench.AttentionBenchmark.Report;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import java.io.PrintWriter;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code headroute demo}: flash against materialized causal attention, checked to agree, timed. */
@Command(name = "demo", mixinStandardHelpOptions = true, versionProvider = Main.VersionProvider.class,
        header = "Flash vs materialized causal attention: agreement, time, memory.",
        description = {"Runs causal attention (B=1, H=8, L=S=2048, D=64, f32, random inputs) with the flash and the "
                + "materialized algorithm, checks that they agree (relative L2 difference ≤ 1e-5) and prints the time, "
                + "GFLOP/s and workspace memory of each. Exit status 1 if they disagree."})
final class DemoCommand implements Callable<Integer> {
    static final double TOLERANCE = 1e-5;

    @Mixin
    VerboseMixin verboseMixin;

    @Spec
    CommandSpec spec;

    @Option(names = "--backend", paramLabel = "auto|cpu|cuda", defaultValue = "auto", converter = Converters.BackendConverter.class,
            description = "Where to run (default: ${DEFAULT-VALUE}).")
    Backend backend;

    @Option(names = "--len", defaultValue = "2048", hidden = true, description = "L = S (for quick tests).")
    int len;

    @Option(names = "--threads", paramLabel = "N", description = "CPU worker threads (default: all cores).")
    Integer threads;

    @Override
    public Integer call() {
        if (len <= 0) {
            throw new ParameterException(spec.commandLine(), "--len must be positive, got " + len);
        }
        int nThreads = threads == null ? CpuAttentionEngine.defaultThreads() : threads;
        if (nThreads <= 0) {
            throw new ParameterException(spec.commandLine(), "--threads must be positive, got " + nThreads);
        }
        Config c = new Config(1, 8, 8, len, len, 64, true, new Pattern.Dense(), DType.F32,
                List.of(Algorithm.FLASH, Algorithm.MATERIALIZED), 1, 3, 42);
        Report r;
        try (AttentionEngine engine = Backends.openWhole(backend, nThreads)) {
            r = AttentionBenchmark.run(engine, c);
        }
        return print(r, nThreads, spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /** The demo's table and verdict: its exit code (a failed call or a disagreement: an internal error). */
    static int print(Report r, int nThreads, PrintWriter o, PrintWriter err) {
        Config c = r.config();
        int len = c.qLen();
        o.println(Units.fmt("headroute demo: causal attention, %s, f32, random inputs, backend %s%s", c.shape(), r.engine(),
                r.engine().equals("cpu") ? " (" + nThreads + " threads)" : ""));
        o.println(Units.fmt("FLOPs per call = 4·B·H·L·S·D / 2 (causal) = %.2f GFLOP; median of %d calls after %d warm-up",
                c.flops() / 1e9, c.repeats(), c.warmup()));
        o.println();
        o.println(Units.fmt("  %-13s %10s %9s %14s   %s", "algorithm", "median", "GFLOP/s", "workspace", "what the workspace holds"));
        for (Measurement m : r.measurements()) {
            boolean gpu = !"cpu".equals(r.engine());
            String what;
            if (m.used() == Algorithm.MATERIALIZED) {
                what = gpu ? Units.fmt("the B·H·L·S scores of all heads (%s)",
                        Units.mib(4L * c.batch() * c.heads() * len * len))
                        : Units.fmt("the L x S scores of a head in flight (L·S·4 B = %s), and K and V repacked",
                                Units.mib(4L * len * len));
            } else {
                what = gpu ? "nothing beyond q, k, v, o and lse" : "K and V repacked once (O(S·D)) and per-worker tiles; no L x S buffer";
            }
            if (!m.ok()) {
                o.println(Units.fmt("  %-13s %s", m.requested().cliName(), m.status()));
                continue;
            }
            o.println(Units.fmt("  %-13s %10s %9.2f %14s   %s", m.used().cliName(), Units.ms(m.medianMs()), m.gflops(),
                    Units.mib(m.workspaceBytes()), what));
        }
        o.println();
        long failed = r.measurements().stream().filter(AttentionBenchmark.Measurement::failed).count();
        if (failed > 0) {
            // A call that failed (not one that does not fit or is unsupported) is an error, as in bench.
            err.println("headroute demo: error: " + failed + " of " + r.measurements().size()
                    + " algorithms failed (the table says why)");
            return Main.INTERNAL_ERROR;
        }
        if (!r.measurements().get(0).ok() || !r.measurements().get(1).ok()) {
            o.println("flash and materialized were not both measured here, so their agreement is not checked");
            return Main.OK;
        }
        double diff = r.measurements().get(1).relL2VsFirst();
        double speed = r.speedup(Algorithm.FLASH, Algorithm.MATERIALIZED).orElse(Double.NaN);
        o.println(Units.fmt("flash runs %.2fx the speed of materialized", speed));
        if (!(diff <= TOLERANCE)) {
            err.println(Units.fmt(
                    "headroute demo: error: flash and materialized disagree: relative L2 difference %.3e exceeds %.0e", diff,
                    TOLERANCE));
            return Main.INTERNAL_ERROR;
        }
        o.println(Units.fmt("flash and materialized agree: relative L2 difference %.2e (limit %.0e)", diff, TOLERANCE));
        return Main.OK;
    }
}
