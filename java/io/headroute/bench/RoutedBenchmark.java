package io.headroute.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.headroute.bench.AttentionBenchmark.Machine;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.ExecutionStats;
import io.headroute.routing.HeadRouter;
import io.headroute.routing.RouterConfig;
import io.headroute.routing.RouterOutput;
import io.headroute.routing.RouterStats;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.function.Supplier;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * Routed against dense attention in one run (issue 6's performance goal): seeded random token
 * representations X (B, L, d_model) and router weights Wr (d_model, Hr) go through the head router
 * (timed on its own), and its gate drives attention on the same seeded q, k, v as the dense,
 * ungated attention it is compared with. Timed calls alternate dense and routed so that both see the
 * same machine state. Reports the medians, routed / dense, the goal (Hs + k)/H + 0.05, the router's
 * time as a share of the routed attention's, and the work the engine reports it executed and skipped.
 */
public final class RoutedBenchmark {
    /** The allowance over the active-head fraction: routed ≤ ((Hs + k)/H + 0.05) × dense. */
    public static final double TARGET_SLACK = 0.05;
    /** The bound on the router's time, in percent of the routed attention time. */
    public static final double OVERHEAD_TARGET_PERCENT = 5.0;

    private static final Logger LOG = LogManager.getLogger(RoutedBenchmark.class);
    private static final ObjectMapper MAPPER = new ObjectMapper();
    /** Seeds' tensor indices after AttentionBenchmark's q, k, v (0, 1, 2). */
    private static final int X_TENSOR = 3;
    private static final int WR_TENSOR = 4;

    private RoutedBenchmark() {}

    /**
     * What to measure.
     *
     * @param attention the attention shape, pattern, dtype, warm-up, repeats and seed; exactly one algorithm
     * @param route     the router; its H must equal the attention's
     * @param dModel    width of X (Wr is d_model × Hr, drawn with standard deviation 1/√d_model so that
     *                  the logits have unit variance)
     */
    public record Config(AttentionBenchmark.Config attention, RouterConfig route, int dModel) {
        /**
         * Validates the configuration.
         *
         * @param attention the attention configuration, exactly one algorithm; not null
         * @param route     the routing, Hs + Hr = the attention's H; not null
         * @param dModel    d_model, positive, with B·L·d_model within one Java array
         * @throws IllegalArgumentException naming what does not fit
         */
        public Config {
            Objects.requireNonNull(attention, "attention");
            Objects.requireNonNull(route, "route");
            if (route.heads() != attention.heads()) {
                throw new IllegalArgumentException("routing " + route + " has " + route.heads() + " heads, attention has "
                        + attention.heads());
            }
            if (attention.algorithms().size() != 1) {
                throw new IllegalArgumentException("a routed benchmark compares one algorithm with itself, got "
                        + attention.algorithms());
            }
            if (dModel < 1) {
                throw new IllegalArgumentException("d_model must be positive, got " + dModel);
            }
            if ((long) attention.batch() * attention.qLen() * dModel > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("X of " + attention.batch() + " × " + attention.qLen() + " × " + dModel
                        + " elements is more than one Java array holds; use a smaller --d-model");
            }
        }

        /** {@return the one algorithm timed, dense and routed} */
        public Algorithm algorithm() {
            return attention.algorithms().get(0);
        }

        /** {@return the target of routed / dense time: (Hs + k)/H + 0.05} */
        public double target() {
            return route.activeFraction() + TARGET_SLACK;
        }
    }

    /**
     * Timed calls of one thing: per-call milliseconds, median, minimum, and the last call's engine statistics (null for the router).
     *
     * @param timesMs  each timed call's compute time, in milliseconds, in order
     * @param medianMs their median
     * @param minMs    their minimum
     * @param stats    the last call's statistics, or null for the router
     */
    public record Timing(List<Double> timesMs, double medianMs, double minMs, ExecutionStats stats) {
        /**
         * Copies the times.
         *
         * @param timesMs  the times; copied
         * @param medianMs their median
         * @param minMs    their minimum
         * @param stats    the last call's statistics, or null
         */
        public Timing {
            timesMs = List.copyOf(timesMs);
        }

        static Timing of(double[] times, ExecutionStats stats) {
            List<Double> l = new ArrayList<>();
            for (double t : times) {
                l.add(t);
            }
            return new Timing(l, AttentionBenchmark.median(times), Arrays.stream(times).min().orElse(Double.NaN), stats);
        }
    }

    /**
     * A whole run.
     *
     * @param machine           where it ran
     * @param config            what was measured
     * @param engine            the attention engine's name
     * @param device            the attention engine's device
     * @param routerEngine      the router's name, "cpu" or "cuda"
     * @param routerDevice      the router's device
     * @param router            the router's timed calls (no statistics)
     * @param routerStats       the statistics of the router's last gate
     * @param routed            the gated attention's timed calls
     * @param dense             the dense attention's timed calls, alternating with the routed ones
     * @param relL2VsGatedDense ‖o_routed − g·o_dense‖₂ / ‖g·o_dense‖₂: how far the routed output is from the
     *                          dense output multiplied by the gate row by row (the contract says they are equal
     *                          up to rounding of the output dtype)
     */
    public record Report(Machine machine, Config config, String engine, String device, String routerEngine,
            String routerDevice, Timing router, RouterStats routerStats, Timing routed, Timing dense, double relL2VsGatedDense) {
        /** {@return the routed attention time over the dense attention time (medians)} */
        public double routedOverDense() {
            return routed.medianMs() / dense.medianMs();
        }

        /** {@return the relative L2 error the routed output may have: the dtype's ({@link io.headroute.tensor.DType#tolerance()})} */
        public double tolerance() {
            return config.attention().dtype().tolerance();
        }

        /** {@return whether the routed output is gate × dense output within {@link #tolerance()} (false for NaN)} */
        public boolean withinTolerance() {
            return relL2VsGatedDense <= tolerance();
        }

        /**
         * {@return whether routed / dense is within the target and the routed output right ({@link #withinTolerance()})}:
         * a fast wrong output meets nothing.
         */
        public boolean meetsTarget() {
            return withinTolerance() && routedOverDense() <= config.target();
        }

        /** {@return the router time in percent of the routed attention time (medians)} */
        public double routerOverheadPercent() {
            return 100.0 * router.medianMs() / routed.medianMs();
        }

        /**
         * {@return whether the router's overhead is within {@link #OVERHEAD_TARGET_PERCENT} and the routed output right
         * ({@link #withinTolerance()})}
         */
        public boolean meetsOverheadTarget() {
            return withinTolerance() && routerOverheadPercent() <= OVERHEAD_TARGET_PERCENT;
        }

        /**
         * {@return the report as JSON: machine, config (with the routing), router, routed and dense timings, the ratios
         * and targets, and the error against the gated dense output}
         */
        public ObjectNode toJson() {
            AttentionBenchmark.Config a = config.attention();
            ObjectNode root = MAPPER.createObjectNode();
            machine.writeJson(root.putObject("machine"));
            ObjectNode cfg = root.putObject("config");
            cfg.put("engine", engine);
            cfg.put("device", device);
            cfg.put("router_engine", routerEngine);
            cfg.put("router_device", routerDevice);
            a.writeShape(cfg);
            cfg.put("algorithm", config.algorithm().cliName());
            a.writeRuns(cfg);
            ObjectNode rc = cfg.putObject("route");
            rc.put("shared_heads", config.route().sharedHeads());
            rc.put("routed_heads", config.route().routedHeads());
            rc.put("k", config.route().k());
            rc.put("block", config.route().block());
            rc.put("granularity", config.route().perToken() ? "token" : "block");
            rc.put("d_model", config.dModel());
            ObjectNode r = root.putObject("router");
            times(r, router);
            routerStats.writeJson(r.putObject("stats"));
            timing(root.putObject("routed"), routed);
            timing(root.putObject("dense"), dense);
            root.put("routed_over_dense", routedOverDense());
            root.put("target_routed_over_dense", config.target());
            root.put("target_formula", "(Hs + k)/H + " + TARGET_SLACK);
            root.put("meets_target", meetsTarget());
            root.put("router_overhead_percent", routerOverheadPercent());
            root.put("target_router_overhead_percent", OVERHEAD_TARGET_PERCENT);
            root.put("meets_overhead_target", meetsOverheadTarget());
            root.put("rel_l2_routed_vs_gated_dense", relL2VsGatedDense);
            root.put("tolerance", tolerance());
            root.put("within_tolerance", withinTolerance());
            return root;
        }

        private static void times(ObjectNode n, Timing t) {
            ArrayNode ts = n.putArray("times_ms");
            t.timesMs().forEach(ts::add);
            n.put("median_ms", t.medianMs());
            n.put("min_ms", t.minMs());
        }

        private static void timing(ObjectNode n, Timing t) {
            times(n, t);
            ExecutionStats s = t.stats();
            n.put("algorithm_used", s.algorithm().cliName());
            n.put("engine", s.engine());
            n.put("query_tiles", s.queryTiles());
            n.put("key_tiles_visited", s.keyTilesVisited());
            n.put("key_tiles_skipped", s.keyTilesSkipped());
            n.put("rows_skipped", s.rowsSkipped());
            n.put("workspace_bytes", s.workspaceBytes());
            n.put("peak_device_bytes", s.peakDeviceBytes());
        }
    }

    /**
     * The seeded router inputs of a config: X (B, L, d_model) and Wr (d_model, Hr), in the compute dtype.
     *
     * @param c the configuration
     * @return {X, Wr}: X standard Gaussian, Wr Gaussian with standard deviation 1/√d_model
     */
    public static Tensor[] randomRouterInputs(Config c) {
        AttentionBenchmark.Config a = c.attention();
        Tensor x = AttentionBenchmark.gaussian(a.seed(), X_TENSOR, a.dtype(), 1f, a.batch(), a.qLen(), c.dModel());
        Tensor wr = AttentionBenchmark.gaussian(a.seed(), WR_TENSOR, a.dtype(), (float) (1 / Math.sqrt(c.dModel())), c.dModel(),
                c.route().routedHeads());
        return new Tensor[] {x, wr};
    }

    /**
     * Runs the benchmark: the router on {@code router}, attention on {@code engine}.
     *
     * @param engine the attention engine to time
     * @param router the head router to time; its last gate drives the routed attention
     * @param c      what to measure
     * @return the report
     */
    public static Report run(AttentionEngine engine, HeadRouter router, Config c) {
        AttentionBenchmark.Config a = c.attention();
        AttentionBenchmark.Inputs in = AttentionBenchmark.randomInputs(a);
        Tensor[] xw = randomRouterInputs(c);

        double[] routerMs = new double[a.repeats()];
        RouterOutput routing = null;
        for (int w = 0; w < a.warmup(); w++) {
            router.route(xw[0], xw[1], c.route(), a.dtype());
        }
        for (int r = 0; r < a.repeats(); r++) {
            routing = router.route(xw[0], xw[1], c.route(), a.dtype());
            routerMs[r] = routing.elapsedNanos() / 1e6;
            LOG.debug("routed bench: router run {}/{}: {} ms", r + 1, a.repeats(), routerMs[r]);
        }
        Tensor gate = routing.gate();

        AttentionRequest dense = request(in, a, c.algorithm(), null);
        AttentionRequest routed = request(in, a, c.algorithm(), gate);
        for (int w = 0; w < a.warmup(); w++) {
            engine.run(dense);
            engine.run(routed);
        }
        double[] denseMs = new double[a.repeats()];
        double[] routedMs = new double[a.repeats()];
        AttentionResult lastDense = null;
        AttentionResult lastRouted = null;
        for (int r = 0; r < a.repeats(); r++) {
            lastDense = timed(() -> engine.run(dense), denseMs, r, "dense");
            lastRouted = timed(() -> engine.run(routed), routedMs, r, "routed");
        }
        double rel = relL2VsGatedDense(lastRouted.o().toFloatArray(), lastDense.o().toFloatArray(), gate.toFloatArray(),
                a.batch(), a.heads(), a.qLen(), a.headDim());
        return new Report(Machine.current(), c, engine.name(), engine.device(), router.name(), router.device(),
                Timing.of(routerMs, null), routing.stats(), Timing.of(routedMs, lastRouted.stats()),
                Timing.of(denseMs, lastDense.stats()), rel);
    }

    private static AttentionResult timed(Supplier<AttentionResult> call, double[] ms, int r, String what) {
        AttentionResult res = call.get();
        ms[r] = res.stats().elapsedNanos() / 1e6;
        LOG.debug("routed bench: {} run {}: {} ms", what, r + 1, ms[r]);
        return res;
    }

    private static AttentionRequest request(AttentionBenchmark.Inputs in, AttentionBenchmark.Config a, Algorithm algo,
            Tensor gate) {
        return AttentionRequest.builder(in.q(), in.k(), in.v()).gate(gate).pattern(a.pattern()).causal(a.causal())
                .dtype(a.dtype()).algorithm(algo).blockSize(a.blockSize()).build();
    }

    /** ‖o_routed − g·o_dense‖₂ / ‖g·o_dense‖₂, with o (B, H, L, D) and g (B, L, H). */
    static double relL2VsGatedDense(float[] routed, float[] dense, float[] gate, int b, int h, int l, int d) {
        float[] expected = new float[dense.length];
        for (int bb = 0; bb < b; bb++) {
            for (int hh = 0; hh < h; hh++) {
                for (int i = 0; i < l; i++) {
                    float g = gate[(bb * l + i) * h + hh];
                    int at = ((bb * h + hh) * l + i) * d;
                    for (int c = 0; c < d; c++) {
                        expected[at + c] = g * dense[at + c];
                    }
                }
            }
        }
        return AttentionBenchmark.relativeL2(routed, expected);
    }
}
