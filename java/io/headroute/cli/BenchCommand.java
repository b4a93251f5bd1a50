package io.headroute.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.headroute.attention.Backend;
import io.headroute.attention.BackendUnavailableException;
import io.headroute.attention.Backends;
import io.headroute.bench.AttentionBenchmark;
import io.headroute.bench.AttentionBenchmark.Config;
import io.headroute.bench.AttentionBenchmark.Measurement;
import io.headroute.bench.AttentionBenchmark.Report;
import io.headroute.bench.RoutedBenchmark;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cuda.FlashPlan;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.routing.HeadRouter;
import io.headroute.routing.HeadRouters;
import io.headroute.routing.RouterConfig;
import io.headroute.tensor.AtomicFiles;
import io.headroute.tensor.DType;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalDouble;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code headroute bench}: algorithms timed against each other on random inputs. */
@Command(name = "bench", mixinStandardHelpOptions = true, versionProvider = Main.VersionProvider.class,
        header = "Time attention algorithms against each other on random inputs.",
        sortOptions = false,
        description = {"Times attention algorithms in one run on the same seeded Gaussian inputs: warm-up calls, then "
                + "the median of the timed calls, GFLOP/s, workspace memory and the outputs' agreement.",
            "With --route: the head router on random X and Wr (timed), then attention with its gate against dense attention: "
                    + "routed / dense against the goal (HS + K)/H + 0.05, the router's overhead, work executed and skipped."},
        footer = {"", "Examples:", "  headroute bench --backend cpu --len 4096 --causal --json bench.json",
            "  headroute bench --backend cuda --dtype bf16 --heads 16 --dim 128 --len 32768 \\",
            "      --route 2:4 --json routed.json"})
final class BenchCommand implements Callable<Integer> {
    @Mixin
    VerboseMixin verboseMixin;

    @Spec
    CommandSpec spec;

    @Option(names = "--backend", paramLabel = "auto|cpu|cuda", defaultValue = "auto", converter = Converters.BackendConverter.class,
            description = "Where to run (default: ${DEFAULT-VALUE}).")
    Backend backend;

    @Option(names = "--batch", paramLabel = "B", defaultValue = "1", description = "Batch (default: ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--heads", paramLabel = "H", defaultValue = "8", description = "Query heads (default: ${DEFAULT-VALUE}).")
    int heads;

    @Option(names = "--kv-heads", paramLabel = "HKV", description = "Key/value heads (default: H).")
    Integer kvHeads;

    @Option(names = "--len", paramLabel = "L", defaultValue = "4096", description = "Queries (default: ${DEFAULT-VALUE}).")
    int qLen;

    @Option(names = "--kv-len", paramLabel = "S", description = "Keys (default: L).")
    Integer kvLen;

    @Option(names = "--dim", paramLabel = "D", defaultValue = "64", description = "Head dimension (default: ${DEFAULT-VALUE}).")
    int dim;

    @Option(names = "--causal", description = "Causal attention (FLOPs 4·B·H·D·(L·S − L²/2): half the dense count at L = S).")
    boolean causal;

    @Option(names = "--block-size", paramLabel = "64|128", defaultValue = "64",
            description = "Block size of the sparse algorithm's layout (default: ${DEFAULT-VALUE}).")
    int blockSize;

    @Option(names = "--fp32-scores", description = "Materialized: keep the L x S scores in fp32 for f16/bf16 inputs "
            + "(GPU; the CPU always does). Default: scores in the input dtype.")
    boolean fp32Scores;

    @Option(names = "--pattern", paramLabel = "SPEC", defaultValue = "dense",
            description = "Pattern: " + Patterns.GRAMMAR + " (default: ${DEFAULT-VALUE}).")
    String pattern;

    @Option(names = "--algos", paramLabel = "ALGO", split = ",", converter = Converters.AlgorithmConverter.class,
            description = "Algorithms, comma-separated; the first is the reference for differences (default: flash,materialized;"
                    + " with --route one algorithm, default flash).")
    List<Algorithm> algorithms;

    @Option(names = "--tilings", paramLabel = "w4|w2|w4x2|wg|wgp|wgx2|wgpx2", split = ",", converter = Converters.TilingConverter.class,
            description = "Also time flash and sparse (those in --algos) in these tensor-core tilings (f16/bf16, --backend cuda),"
                    + " after the configured algorithms on the same inputs: w4 = 4 warps x 16 query rows (the default kernel),"
                    + " w2 = 2 warps x 32 rows, w4x2 = 4 warps x 32 rows (128-row blocks; D = 64 and 128), wg = w4 with Hopper's"
                    + " wgmma, wgp = wg with each tile's P.V overlapping the next softmax, wgx2 and wgpx2 = wg and wgp with two"
                    + " warpgroups on 128-row blocks (wg, wgp, wgx2, wgpx2: D = 64 and 128, compute capability 9.0 only, else"
                    + " reported as unsupported).")
    List<FlashPlan.Tiling> tilings;

    @Option(names = "--route", paramLabel = "HS:K[:BQ]",
            description = "Routed benchmark: HS shared heads, the top K of the H − HS routed heads per token (or per block of BQ"
                    + " tokens); times the router, then routed against dense attention.")
    String route;

    @Option(names = "--d-model", paramLabel = "N", description = "With --route: width of the router input X (default: H·D).")
    Integer dModel;

    @Option(names = "--dtype", paramLabel = "f32|f16|bf16", defaultValue = "f32", converter = Converters.ComputeDTypeConverter.class,
            description = "Compute dtype (default: ${DEFAULT-VALUE}).")
    DType dtype;

    @Option(names = "--warmup", paramLabel = "N", defaultValue = "1", description = "Untimed calls per algorithm (default: ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--repeats", paramLabel = "N", defaultValue = "3", description = "Timed calls per algorithm (default: ${DEFAULT-VALUE}).")
    int repeats;

    @Option(names = "--threads", paramLabel = "N", description = "CPU worker threads (default: all cores).")
    Integer threads;

    @Option(names = "--seed", paramLabel = "N", defaultValue = "42", description = "Seed of the random inputs (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--json", paramLabel = "FILE", description = "Also write the report as JSON.")
    Path json;

    @Override
    public Integer call() {
        int s = kvLen == null ? qLen : kvLen;
        int hkv = kvHeads == null ? heads : kvHeads;
        for (Object[] o : new Object[][] {{"--batch", batch}, {"--heads", heads}, {"--kv-heads", hkv}, {"--len", qLen},
            {"--kv-len", s}, {"--dim", dim}, {"--repeats", repeats}}) {
            if ((int) o[1] <= 0) {
                throw new ParameterException(spec.commandLine(), o[0] + " must be positive, got " + o[1]);
            }
        }
        if (warmup < 0) {
            throw new ParameterException(spec.commandLine(), "--warmup must be ≥ 0, got " + warmup);
        }
        if (blockSize != 64 && blockSize != 128) {
            throw new ParameterException(spec.commandLine(), "--block-size must be 64 or 128, got " + blockSize);
        }
        int nThreads = threads == null ? CpuAttentionEngine.defaultThreads() : threads;
        if (nThreads <= 0) {
            throw new ParameterException(spec.commandLine(), "--threads must be positive, got " + nThreads);
        }
        if (json != null) {
            TensorOutputs.checkTarget(json);
        }
        Pattern p = Patterns.parse(pattern);
        List<FlashPlan.Tiling> extraTilings = tilings == null ? List.of() : tilings;
        if (!extraTilings.isEmpty() && (route != null || backend == Backend.CPU)) {
            throw new ParameterException(spec.commandLine(), "--tilings times the CUDA flash and sparse kernels of the plain bench: "
                    + (route != null ? "not with --route" : "not with --backend cpu"));
        }
        if (!extraTilings.isEmpty() && backend == Backend.AUTO) {
            // The run then opens the CUDA engine whatever auto would pick: a refusal names what the user passed.
            String why = Backends.cudaUnavailableReason();
            if (why != null) {
                throw new BackendUnavailableException("--tilings needs the CUDA backend, which --backend auto cannot use here: "
                        + why);
            }
        }
        if (fp32Scores && algorithms != null && !algorithms.contains(Algorithm.MATERIALIZED) && !algorithms.contains(Algorithm.AUTO)) {
            throw new ParameterException(spec.commandLine(), "--fp32-scores applies to the materialized algorithm only (flash "
                    + "and sparse never store the L x S scores): --algos " + String.join(",", algorithms.stream()
                    .map(Algorithm::cliName).toList()) + " has no materialized (or auto)");
        }
        if (route == null) {
            if (dModel != null) {
                throw new ParameterException(spec.commandLine(), "--d-model needs --route");
            }
            List<Algorithm> algos = algorithms == null ? List.of(Algorithm.FLASH, Algorithm.MATERIALIZED) : algorithms;
            Config config = new Config(batch, heads, hkv, qLen, s, dim, causal, p, dtype, algos, warmup, repeats, seed, blockSize,
                    fp32Scores);
            runPlain(config, extraTilings, nThreads);
        } else {
            List<Algorithm> algos = algorithms == null ? List.of(Algorithm.FLASH) : algorithms;
            if (algos.size() != 1) {
                throw new ParameterException(spec.commandLine(), "with --route, --algos names one algorithm (routed and dense"
                        + " attention both use it), got " + algos.size());
            }
            long width = dModel == null ? (long) heads * dim : dModel;
            if (width <= 0 || width > Integer.MAX_VALUE) {
                throw new ParameterException(spec.commandLine(), "--d-model must be positive, got " + width);
            }
            RouterConfig rc = RouterConfig.parse(route, heads);
            Config config = new Config(batch, heads, hkv, qLen, s, dim, causal, p, dtype, algos, warmup, repeats, seed, blockSize,
                    fp32Scores);
            runRouted(new RoutedBenchmark.Config(config, rc, (int) width), nThreads);
        }
        return Main.OK;
    }

    private void runPlain(Config config, List<FlashPlan.Tiling> extraTilings, int nThreads) {
        Report report = null;
        RuntimeException closing = null;
        // One engine for every row (auto: the GPU where usable, without a per-call CPU fallback that would time some
        // rows on the CPU beside GPU ones); tilings need the CUDA engine itself.
        try (AttentionEngine engine = Backends.openWhole(extraTilings.isEmpty() ? backend : Backend.CUDA, nThreads)) {
            report = AttentionBenchmark.run(engine, config, extraTilings);
        } catch (RuntimeException e) {
            if (report == null) {
                throw e;
            }
            closing = e; // after a CUDA error the engine may fail to close: the rows measured are still reported
        }
        print(spec.commandLine().getOut(), report, nThreads);
        if (json != null) {
            writeJson(json, report.toJson(), nThreads);
        }
        long errors = report.measurements().stream().filter(Measurement::failed).count();
        if (errors > 0 || closing != null) {
            throw new IllegalStateException((errors > 0 ? errors + " of " + report.measurements().size() + " rows failed (the table"
                    + (json != null ? " and " + json : "") + " say which)" : "the rows were measured")
                    + (closing != null ? "; closing the engine failed: " + closing : ""));
        }
    }

    private void runRouted(RoutedBenchmark.Config config, int nThreads) {
        RoutedBenchmark.Report report;
        try (AttentionEngine engine = Backends.openWhole(backend, nThreads);
                HeadRouter router = HeadRouters.open(engine.name().equals("cpu") ? Backend.CPU : backend, nThreads)) {
            report = RoutedBenchmark.run(engine, router, config);
        }
        printRouted(spec.commandLine().getOut(), report, nThreads);
        if (json != null) {
            writeJson(json, report.toJson(), nThreads);
        }
    }

    static void printRouted(PrintWriter o, RoutedBenchmark.Report r, int threads) {
        RoutedBenchmark.Config rc = r.config();
        Config c = rc.attention();
        boolean gpu = !r.engine().equals("cpu");
        o.println(Units.fmt("headroute bench --route: backend %s on %s, %s, pattern %s, %s, %s", r.engine(),
                gpu ? r.device() : "CPU (" + threads + " threads)", c.shape(), c.patternSpec(), c.dtype().cliName(),
                rc.algorithm().cliName()));
        o.println(Units.fmt("router: %s, d_model %d, on %s (%s)", rc.route(), rc.dModel(), r.routerEngine(), r.routerDevice()));
        o.println(Units.fmt("warm-up %d, then the median of %d timed calls (compute time%s, inputs in place); dense and routed"
                + " calls alternate", c.warmup(), c.repeats(), gpu ? " by CUDA events" : ""));
        o.println(Units.fmt("%-8s %12s %12s %12s %14s %20s", "run", "median ms", "min ms", "query tiles", "rows skipped",
                "key tiles run/skip"));
        o.println(Units.fmt("%-8s %12.3f %12.3f", "router", r.router().medianMs(), r.router().minMs()));
        for (Object[] e : new Object[][] {{"dense", r.dense()}, {"routed", r.routed()}}) {
            RoutedBenchmark.Timing t = (RoutedBenchmark.Timing) e[1];
            o.println(Units.fmt("%-8s %12.3f %12.3f %12d %14d %20s", e[0], t.medianMs(), t.minMs(), t.stats().queryTiles(),
                    t.stats().rowsSkipped(), t.stats().keyTilesVisited() < 0 ? "-"
                            : t.stats().keyTilesVisited() + "/" + t.stats().keyTilesSkipped()));
        }
        o.println(Units.fmt("routed / dense: %.4f (goal ≤ (Hs + k)/H + %.2f = %.4f): %s", r.routedOverDense(),
                RoutedBenchmark.TARGET_SLACK, rc.target(), r.meetsTarget() ? "met" : "NOT met"));
        o.println(Units.fmt("router overhead: %.2f%% of the routed attention time (goal ≤ %.0f%%): %s", r.routerOverheadPercent(),
                RoutedBenchmark.OVERHEAD_TARGET_PERCENT, r.meetsOverheadTarget() ? "met" : "NOT met"));
        o.println(Units.fmt("routed output vs gate × dense output: relative L2 %.2e (%s tolerance %.0e): %s", r.relL2VsGatedDense(),
                c.dtype().cliName(), r.tolerance(), r.withinTolerance() ? "within" : "OUTSIDE (neither goal counts as met)"));
        RouteCommand.printStats(o, r.routerStats());
    }

    static void print(PrintWriter o, Report r, int threads) {
        Config c = r.config();
        boolean gpu = !r.engine().equals("cpu");
        o.println(Units.fmt("headroute bench: backend %s on %s, %s, pattern %s, %s%s", r.engine(),
                gpu ? r.device() : "CPU (" + threads + " threads)", c.shape(), c.patternSpec(), c.dtype().cliName(),
                (r.flashTiling() == null ? "" : ", flash kernel tiling " + r.flashTiling())
                        + (r.sparseTiling() == null ? "" : ", sparse kernel tiling " + r.sparseTiling())));
        o.println(Units.fmt("FLOPs per call = 4·B·H·L·S·D, with --causal 4·B·H·D·(L·S − L²/2) (half at L = S) = %.3f GFLOP",
                c.flops() / 1e9));
        o.println("  (two matrix products at 2 FLOPs per multiply-add; one nominal count for every algorithm and pattern)");
        o.println(Units.fmt("warm-up %d, then the median of %d timed calls (compute time%s, inputs in place)", c.warmup(),
                c.repeats(), gpu ? " by CUDA events" : ""));
        // The name column as wide as the longest label ("flash(sparse)[wgpx2]"), so that the columns stay aligned.
        int w = Math.max(13, r.measurements().stream().mapToInt(m -> m.label().length()).max().orElse(0));
        o.println(Units.fmt("%-" + w + "s %12s %12s %10s %15s %15s %20s %16s", "algorithm", "median ms", "min ms", "GFLOP/s",
                "workspace MiB", "peak dev MiB", "key tiles run/skip", "rel L2 vs ref"));
        for (Measurement m : r.measurements()) {
            String name = m.label();
            if (!m.ok()) {
                o.println(Units.fmt("%-" + w + "s %s", name, m.status()));
                continue;
            }
            o.println(Units.fmt("%-" + w + "s %12.3f %12.3f %10.2f %15.3f %15s %20s %16s", name, m.medianMs(), m.minMs(), m.gflops(),
                    m.workspaceBytes() / (double) (1L << 20),
                    m.peakDeviceBytes() < 0 ? "-" : Units.fmt("%.1f", m.peakDeviceBytes() / (double) (1L << 20)),
                    m.keyTilesVisited() < 0 ? "-" : m.keyTilesVisited() + "/" + m.keyTilesSkipped(),
                    m.reference() ? "-" : Units.fmt("%.2e", m.relL2VsFirst())));
        }
        for (Measurement m : r.measurements()) {
            if (m.ok() && m.scoreDType() != null) {
                o.println(Units.fmt("%s stored its L x S scores in %s", m.requested().cliName(), m.scoreDType().cliName()));
            }
        }
        OptionalDouble ratio = r.speedup(Algorithm.FLASH, Algorithm.MATERIALIZED);
        if (ratio.isPresent()) {
            o.println(Units.fmt("speed flash / materialized: %.2fx", ratio.getAsDouble()));
        }
    }

    private static void writeJson(Path file, ObjectNode root, int threads) {
        root.put("headroute_version", Main.VERSION);
        ((ObjectNode) root.get("config")).put("threads", threads);
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        AtomicFiles.write(file, os -> {
            os.write(mapper.writeValueAsBytes(root));
            os.write('\n');
        });
    }
}
