package io.headroute.experiment;

import io.headroute.attention.Backend;
import io.headroute.attention.BackendUnavailableException;
import io.headroute.bench.AttentionBenchmark;
import io.headroute.bench.RoutedBenchmark;
import io.headroute.cuda.memory.Bytes;
import io.headroute.cuda.memory.DeviceOutOfMemoryException;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.ExecutionStats;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.KeyRanges;
import io.headroute.pattern.Pattern;
import io.headroute.quality.AttentionQuality;
import io.headroute.routing.CpuHeadRouter;
import io.headroute.routing.HeadRouter;
import io.headroute.routing.HeadRouters;
import io.headroute.routing.RouterConfig;
import io.headroute.routing.RouterOutput;
import io.headroute.routing.RouterStats;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * Runs a {@link Sweep} on one engine. Per (dtype, heads, length): seeded Gaussian inputs (the bench's),
 * then each variant: refused up front when its predicted memory exceeds the given device memory (or,
 * on the CPU, the Java heap), else warm-up calls and timed calls (median), its peak device memory, and
 * its fidelity against full attention on the same inputs (quality metrics of {@link AttentionQuality}).
 * Nothing here throws for a configuration that does not fit or is unsupported: the row says so.
 */
public final class Experiment {
    /** Status prefix of a run whose call threw something other than "does not fit" or "unsupported". */
    public static final String FAILED = "failed: ";

    /**
     * The command line's warm-up time per run at the first length of each (dtype, heads) ({@link Limits}): for the JVM
     * to compile the engine's code paths, on this machine type's 2 cores beside the timed work. With one warm-up call
     * and none of this, a cpu-preset sweep from L = 256 measured materialized at 47.8 ms at L = 256 against 27.3 ms at
     * L = 512 (2.5 ms against 6.5 ms with it). The warm-up then goes on until the JVM has settled ({@link WarmUp}).
     */
    public static final long FIRST_LENGTH_WARMUP_NANOS = 500_000_000L;
    /** The most warm-up calls of a run. */
    public static final int FIRST_LENGTH_MAX_WARMUP = WarmUp.MAX_CALLS;

    private static final Logger LOG = LogManager.getLogger(Experiment.class);

    private Experiment() {}

    /**
     * Limits and budgets of a run.
     *
     * @param deviceMemoryBytes    refuse variants whose predicted GPU peak exceeds this (0: no such check;
     *                             the GPU engine still refuses what does not fit the card)
     * @param maxReferenceFlops    skip the full-attention reference (fidelity n/a) above this nominal cost
     * @param firstWarmupNanos     when the sweep asks for any warm-up, the runs of the first length of each (dtype,
     *                             heads) go on with untimed calls for at least this long and then until the JIT is
     *                             quiet and the calls' times agree, for at most twice as long and
     *                             {@link #FIRST_LENGTH_MAX_WARMUP} calls ({@link WarmUp})
     */
    public record Limits(long deviceMemoryBytes, double maxReferenceFlops, long firstWarmupNanos) {
        /**
         * Validates the limits.
         *
         * @param deviceMemoryBytes bytes, at least 0
         * @param maxReferenceFlops nominal FLOPs, at least 0 (not NaN)
         * @param firstWarmupNanos  nanoseconds, at least 0
         * @throws IllegalArgumentException naming the value below 0
         */
        public Limits {
            if (deviceMemoryBytes < 0) {
                throw new IllegalArgumentException("device memory must be ≥ 0, got " + deviceMemoryBytes);
            }
            if (!(maxReferenceFlops >= 0)) {
                throw new IllegalArgumentException("reference FLOP limit must be ≥ 0, got " + maxReferenceFlops);
            }
            if (firstWarmupNanos < 0) {
                throw new IllegalArgumentException("warm-up time must be ≥ 0, got " + firstWarmupNanos);
            }
        }

        /**
         * No warm-up beyond the sweep's count of calls ({@code firstWarmupNanos} 0).
         *
         * @param deviceMemoryBytes refuse variants predicted above this many bytes (0: no such check)
         * @param maxReferenceFlops skip the full-attention reference above this nominal cost
         */
        public Limits(long deviceMemoryBytes, double maxReferenceFlops) {
            this(deviceMemoryBytes, maxReferenceFlops, 0);
        }
    }

    /**
     * Runs every (dtype, heads, length, variant) of {@code sweep}, in that nesting order, on {@code engine}; routed
     * variants get a head router on the engine's device, closed before this returns.
     *
     * @param engine   the engine; not null; not closed here
     * @param sweep    what to measure
     * @param limits   memory and reference limits, and the first length's warm-up time
     * @param progress told before each run and once at the end
     * @return one row per run, with the comparison columns (VRAM saved, speed-up) filled in per shape
     */
    public static List<Run> run(AttentionEngine engine, Sweep sweep, Limits limits, Progress progress) {
        Objects.requireNonNull(engine, "engine");
        try (Routers routers = new Routers(engine)) {
            return run(engine, routers, sweep, limits, progress);
        }
    }

    private static List<Run> run(AttentionEngine engine, Routers routers, Sweep sweep, Limits limits, Progress progress) {
        List<Run> rows = new ArrayList<>();
        int total = sweep.runCount();
        int index = 0;
        for (DType dtype : sweep.dtypes()) {
            for (int h : sweep.heads()) {
                for (int len : sweep.lens()) {
                    long warmupNanos = len == sweep.lens().get(0) && sweep.warmup() > 0 ? limits.firstWarmupNanos() : 0;
                    Shape one = new Shape(engine, routers, sweep, limits, dtype, h, len, warmupNanos);
                    List<Run> group = new ArrayList<>();
                    for (Variant v : sweep.variants()) {
                        progress.starting(index++, total, String.format(Locale.ROOT, "%s %s H=%d L=%d", v.spec(),
                                dtype.cliName(), h, len));
                        group.add(one.measure(v));
                    }
                    rows.addAll(compare(group, sweep.causal(), dtype, one.shape));
                }
            }
        }
        progress.finished(total);
        return rows;
    }

    /** The runs of one shape, with VRAM saved against materialized and speed-up against full attention filled in. */
    static List<Run> compare(List<Run> group, boolean causal, DType dtype, AttentionShape shape) {
        Run matMeasured = null;
        Run baseline = null;
        for (Run r : group) {
            if (r.ok() && r.variant() instanceof Variant.Materialized && r.variant().pattern().isDense()) {
                matMeasured = r;
            }
        }
        for (Run r : group) {
            if (r.ok() && r.variant() instanceof Variant.Flash && r.variant().pattern().isDense()) {
                baseline = r;
            }
        }
        if (baseline == null) {
            baseline = matMeasured;
        }
        long matPredicted = MemoryPrediction.materialized(shape, dtype).bytes();
        List<Run> out = new ArrayList<>();
        for (Run r : group) {
            double saved = Double.NaN;
            String basis = null;
            if (matMeasured != null && matMeasured.measuredPeakBytes() > 0 && r.measuredPeakBytes() >= 0) {
                saved = 1.0 - (double) r.measuredPeakBytes() / matMeasured.measuredPeakBytes();
                basis = "measured";
            } else {
                saved = 1.0 - (double) r.predictedPeakBytes() / matPredicted;
                basis = "predicted";
            }
            double speedup = r.ok() && baseline != null ? baseline.medianMs() / r.medianMs() : Double.NaN;
            out.add(r.compared(saved, basis, speedup, baseline == null ? null : baseline.variant().spec()));
        }
        return out;
    }

    /**
     * The share of the L·S query-key pairs (per head, averaged over heads) that {@code p} allows. Walks every row:
     * O(heads · L) range lists.
     *
     * @param p      the effective pattern
     * @param heads  H; a pattern that is the same for every head is evaluated once
     * @param qLen   L
     * @param kvLen  S
     * @return the density, in [0, 1]
     */
    public static double tokenDensity(Pattern p, int heads, int qLen, int kvLen) {
        KeyRanges r = new KeyRanges();
        int distinctHeads = p.perHead() ? heads : 1;
        long allowed = 0;
        for (int h = 0; h < distinctHeads; h++) {
            for (int i = 0; i < qLen; i++) {
                p.allowedKeys(h, i + (kvLen - qLen), kvLen, r);
                allowed += r.keyCount();
            }
        }
        return allowed / ((double) distinctHeads * qLen * kvLen);
    }

    /**
     * The head router of routed variants, opened on first need on the engine's device: the CPU router next
     * to the CPU engine, the GPU router next to a GPU engine.
     */
    private static final class Routers implements AutoCloseable {
        final AttentionEngine engine;
        HeadRouter router;

        Routers(AttentionEngine engine) {
            this.engine = engine;
        }

        HeadRouter get() {
            if (router == null) {
                router = engine instanceof CpuAttentionEngine cpu ? new CpuHeadRouter(cpu.threads())
                        : HeadRouters.open(Backend.CUDA, 1);
            }
            return router;
        }

        @Override
        public void close() {
            if (router != null) {
                router.close();
            }
        }
    }

    /** Timed calls of one request: the per-call times and the last result, or the row saying why it did not run. */
    private record Timed(double[] times, AttentionResult last, Run failure) {}

    /** One (dtype, heads, length) point of the sweep: its inputs and its full-attention reference, made on first need. */
    private static final class Shape {
        final AttentionEngine engine;
        final Routers routers;
        final Sweep sweep;
        final Limits limits;
        final DType dtype;
        final AttentionShape shape;
        final AttentionBenchmark.Config config;
        /** At least this long of untimed calls (besides the sweep's count) before each run's timed ones. */
        final long warmupNanos;
        AttentionBenchmark.Inputs inputs;
        /** Full-attention outputs by reference pattern spec: a float[][] {o, lse}, or the String why it is n/a. */
        final Map<String, Object> references = new HashMap<>();

        Shape(AttentionEngine engine, Routers routers, Sweep sweep, Limits limits, DType dtype, int heads, int len,
                long warmupNanos) {
            this.warmupNanos = warmupNanos;
            this.engine = engine;
            this.routers = routers;
            this.sweep = sweep;
            this.limits = limits;
            this.dtype = dtype;
            this.shape = new AttentionShape(sweep.batch(), heads, sweep.kvHeadsFor(heads), len, len, sweep.dim());
            // The bench's config: its seeded inputs and its FLOP formula (the algorithm list is not used here).
            this.config = new AttentionBenchmark.Config(shape.batch(), heads, shape.kvHeads(), len, len, sweep.dim(),
                    sweep.causal(), new Pattern.Dense(), dtype, List.of(Algorithm.FLASH), sweep.warmup(), sweep.repeats(),
                    sweep.seed());
        }

        Run measure(Variant v) {
            Pattern effective = sweep.causal() ? v.pattern().withCausal() : v.pattern();
            effective.check(shape.heads(), shape.qLen(), shape.kvLen());
            double density = tokenDensity(effective, shape.heads(), shape.qLen(), shape.kvLen());
            long predicted = v.predictMemory(shape, dtype, sweep.causal()).bytes();
            String refused = null;
            if (limits.deviceMemoryBytes() > 0 && predicted > limits.deviceMemoryBytes()) {
                String[] needHas = Bytes.formatDistinct(predicted, limits.deviceMemoryBytes());
                refused = "does not fit: needs " + needHas[0] + " (predicted), has " + needHas[1] + " (--device-memory)";
            } else if (engine instanceof CpuAttentionEngine cpu) {
                refused = heapRefusal(v, cpu.threads());
            }
            if (refused != null) {
                return notRun(v, refused, density, predicted);
            }
            if (v instanceof Variant.Routed rv) {
                return routed(rv, density, predicted);
            }
            if (v instanceof Variant.Pruned pv) {
                return pruned(pv, density, predicted);
            }
            AttentionRequest req = AttentionRequest.builder(inputs().q(), inputs().k(), inputs().v()).pattern(v.pattern())
                    .causal(sweep.causal()).dtype(dtype).algorithm(v.algorithm()).wantLse(true).build();
            Timed t = time(v, req, density, predicted);
            if (t.failure() != null) {
                return t.failure();
            }
            double rel = Double.NaN;
            double recall = Double.NaN;
            String note = null;
            Object ref = reference(effective);
            if (ref instanceof String why) {
                note = why;
            } else {
                float[][] r = (float[][]) ref;
                AttentionQuality.Report q = AttentionQuality.compare(shape, t.last().o().toFloatArray(),
                        t.last().lse().toFloatArray(), r[0], r[1], AttentionQuality.referenceFor(effective));
                rel = q.relError();
                recall = q.recall();
            }
            return ok(v, t, density, predicted, rel, recall, note, details(t.last(), Double.NaN, null, Double.NaN));
        }

        /**
         * The router's gate drives dense flash attention on the same inputs. The router is timed on its own
         * (its median is reported as overhead); the attention's output is compared with the gate times the
         * dense output: routing changes only which work is skipped, so the two agree to rounding.
         */
        private Run routed(Variant.Routed v, double density, long predicted) {
            RouterConfig rc = v.router(shape.heads());
            RoutedBenchmark.Config rconf = new RoutedBenchmark.Config(config, rc, shape.heads() * shape.headDim());
            Tensor[] xw = RoutedBenchmark.randomRouterInputs(rconf);
            double[] routerMs = new double[sweep.repeats()];
            RouterOutput routing = null;
            try {
                HeadRouter router = routers.get();
                for (WarmUp w = WarmUp.of(sweep.warmup(), warmupNanos); w.more(); ) {
                    long t0 = System.nanoTime();
                    router.route(xw[0], xw[1], rc, dtype);
                    w.called(System.nanoTime() - t0);
                }
                for (int r = 0; r < routerMs.length; r++) {
                    routing = router.route(xw[0], xw[1], rc, dtype);
                    routerMs[r] = routing.elapsedNanos() / 1e6;
                }
            } catch (BackendUnavailableException | UnsupportedOperationException e) {
                return notRun(v, "unsupported: the router: " + e.getMessage(), density, predicted);
            } catch (DeviceOutOfMemoryException e) {
                return notRun(v, "does not fit: the router: " + e.getMessage(), density, predicted);
            } catch (RuntimeException e) {
                LOG.error("experiment: the router of {} failed: {}", v.spec(), e.toString());
                LOG.debug("experiment: the failure", e);
                return notRun(v, FAILED + "the router: " + e.getClass().getSimpleName() + ": " + e.getMessage(), density,
                        predicted);
            }
            Tensor gate = routing.gate();
            AttentionRequest req = AttentionRequest.builder(inputs().q(), inputs().k(), inputs().v()).gate(gate)
                    .pattern(v.pattern()).causal(sweep.causal()).dtype(dtype).algorithm(v.algorithm()).wantLse(true).build();
            long exact;
            try {
                exact = v.predictMemory(req).bytes();
            } catch (UnsupportedOperationException e) {
                exact = predicted; // no GPU kernel takes this shape (a head dim): the bound before routing stands
            }
            Timed t = time(v, req, density, exact);
            if (t.failure() != null) {
                return t.failure();
            }
            double rel = Double.NaN;
            String note;
            Pattern effective = sweep.causal() ? v.pattern().withCausal() : v.pattern();
            Object ref = ungated(effective, v.algorithm(), density);
            if (ref instanceof String why) {
                note = why;
            } else {
                rel = relErrorVsGated(t.last().o().toFloatArray(), ((float[][]) ref)[0], gate.toFloatArray());
                note = "routed: rel. error against gate × " + effective.spec()
                        + " output (routing changes only the skipped work); mass recall n/a";
            }
            RouterStats st = routing.stats();
            return ok(v, t, density, exact, rel, Double.NaN, note,
                    details(t.last(), AttentionBenchmark.median(routerMs), st, Double.NaN));
        }

        /**
         * Dense flash attention on the kept heads only: their q heads, and the key/value heads they read,
         * sliced out of the shape's inputs before the call. The kept heads' output is dense attention's by
         * construction, so instead of an error the row reports the share of heads removed (and the time
         * ratio against dense flash).
         */
        private Run pruned(Variant.Pruned v, double density, long predicted) {
            int[] removed = v.removedHeads(shape.heads(), shape.kvHeads());
            AttentionShape ps = v.prunedShape(shape);
            boolean[] gone = new boolean[shape.heads()];
            for (int h : removed) {
                gone[h] = true;
            }
            int g = shape.group();
            int[] qKeep = new int[ps.heads()];
            int[] kvKeep = new int[ps.kvHeads()];
            int nq = 0;
            int nkv = 0;
            for (int kv = 0; kv < shape.kvHeads(); kv++) {
                boolean any = false;
                for (int i = 0; i < g; i++) {
                    if (!gone[kv * g + i]) {
                        qKeep[nq++] = kv * g + i;
                        any = true;
                    }
                }
                if (any) {
                    kvKeep[nkv++] = kv;
                }
            }
            Tensor q = heads(inputs().q(), shape.heads(), shape.qLen(), qKeep);
            Tensor k = heads(inputs().k(), shape.kvHeads(), shape.kvLen(), kvKeep);
            Tensor vv = heads(inputs().v(), shape.kvHeads(), shape.kvLen(), kvKeep);
            AttentionRequest req = AttentionRequest.builder(q, k, vv).pattern(v.pattern()).causal(sweep.causal()).dtype(dtype)
                    .algorithm(v.algorithm()).wantLse(true).build();
            Timed t = time(v, req, density, predicted);
            if (t.failure() != null) {
                return t.failure();
            }
            return ok(v, t, density, predicted, Double.NaN, Double.NaN, "pruned: the kept heads are computed exactly as "
                    + "in dense attention (error 0 by construction) and the removed ones not at all; see heads removed and "
                    + "the time ratio", details(t.last(), Double.NaN, null, removed.length / (double) shape.heads()));
        }

        /** Heads {@code keep} of a (B, heads, len, D) tensor, in order. */
        private Tensor heads(Tensor t, int heads, int len, int[] keep) {
            float[] a = t.toFloatArray();
            int b = shape.batch();
            int per = len * shape.headDim();
            float[] out = new float[b * keep.length * per];
            for (int bi = 0; bi < b; bi++) {
                for (int i = 0; i < keep.length; i++) {
                    System.arraycopy(a, (bi * heads + keep[i]) * per, out, (bi * keep.length + i) * per, per);
                }
            }
            return Tensor.ofFloats(t.dtype(), out, b, keep.length, len, shape.headDim());
        }

        /** ‖o − g·o_ref‖ / ‖g·o_ref‖ with o (B, H, L, D) and g (B, L, H). */
        private double relErrorVsGated(float[] o, float[] ref, float[] gate) {
            int h = shape.heads();
            int l = shape.qLen();
            int d = shape.headDim();
            float[] expected = new float[ref.length];
            for (int bb = 0; bb < shape.batch(); bb++) {
                for (int hh = 0; hh < h; hh++) {
                    for (int i = 0; i < l; i++) {
                        float gv = gate[(bb * l + i) * h + hh];
                        int at = ((bb * h + hh) * l + i) * d;
                        for (int c = 0; c < d; c++) {
                            expected[at + c] = gv * ref[at + c];
                        }
                    }
                }
            }
            return AttentionBenchmark.relativeL2(o, expected);
        }

        private static Run.Details details(AttentionResult last, double routerMs, RouterStats st, double headsRemoved) {
            ExecutionStats s = last.stats();
            return new Run.Details(s.queryTiles(), s.keyTilesVisited(), s.rowsSkipped(), routerMs,
                    st == null ? Double.NaN : st.loadBalance(), st == null ? Double.NaN : st.activeHeadFraction(), headsRemoved);
        }

        private Run ok(Variant v, Timed t, double density, long predicted, double rel, double recall, String note,
                Run.Details details) {
            double median = AttentionBenchmark.median(t.times());
            return new Run(v, dtype, shape.batch(), shape.heads(), shape.kvHeads(), shape.qLen(), shape.headDim(), sweep.causal(),
                    "ok", t.last().stats().engine(), t.last().stats().algorithm().cliName(), median,
                    Arrays.stream(t.times()).min().orElse(median), config.flops() / (median * 1e-3) / 1e12, density,
                    t.last().stats().peakDeviceBytes(), predicted, Double.NaN, null, Double.NaN, null, rel, recall, note, details);
        }

        /** Warm-up calls, then the timed ones; a call that throws becomes the row that says why. */
        private Timed time(Variant v, AttentionRequest req, double density, long predicted) {
            double[] times = new double[sweep.repeats()];
            AttentionResult last = null;
            try {
                for (WarmUp w = WarmUp.of(sweep.warmup(), warmupNanos); w.more(); ) {
                    long t0 = System.nanoTime();
                    engine.run(req);
                    w.called(System.nanoTime() - t0);
                }
                for (int r = 0; r < times.length; r++) {
                    last = engine.run(req);
                    times[r] = last.stats().elapsedNanos() / 1e6;
                }
            } catch (DeviceOutOfMemoryException e) {
                return new Timed(null, null, notRun(v, "does not fit: " + e.getMessage(), density, predicted));
            } catch (UnsupportedOperationException e) {
                return new Timed(null, null, notRun(v, "unsupported: " + e.getMessage(), density, predicted));
            } catch (RuntimeException e) {
                // A failing call (a CUDA error, a bug) is kept as a failed row so that the runs before it
                // are still written; the command then exits with status 1.
                LOG.error("experiment: {} {} H={} L={} failed: {}", v.spec(), dtype.cliName(), shape.heads(), shape.qLen(),
                        e.toString());
                LOG.debug("experiment: the failure", e);
                return new Timed(null, null, notRun(v, FAILED + e.getClass().getSimpleName() + ": " + e.getMessage(), density,
                        predicted));
            }
            return new Timed(times, last, null);
        }

        private Run notRun(Variant v, String status, double density, long predicted) {
            return new Run(v, dtype, shape.batch(), shape.heads(), shape.kvHeads(), shape.qLen(), shape.headDim(), sweep.causal(),
                    status, engine.name(), null, Double.NaN, Double.NaN, Double.NaN, density, -1, predicted, Double.NaN, null,
                    Double.NaN, null, Double.NaN, Double.NaN, "not run");
        }

        /**
         * Whether the CPU engine's materialized path (an L × S fp32 score matrix per worker) and the outputs
         * fit the Java heap that is left; null when they do.
         */
        private String heapRefusal(Variant v, int threads) {
            long outputs = 4L * shape.qElements() * 3;
            long scores = v.algorithm() == Algorithm.MATERIALIZED
                    ? 4L * shape.qLen() * shape.kvLen() * Math.min(threads, shape.batch() * shape.heads()) : 0;
            Runtime rt = Runtime.getRuntime();
            long free = rt.maxMemory() - (rt.totalMemory() - rt.freeMemory());
            if (scores + outputs > free) {
                return "does not fit: the CPU path needs " + Bytes.format(scores + outputs) + " of Java heap, has "
                        + Bytes.format(free) + " (raise it with HEADROUTE_JAVA_OPTS=-Xmx...)";
            }
            return null;
        }

        private AttentionBenchmark.Inputs inputs() {
            if (inputs == null) {
                inputs = AttentionBenchmark.randomInputs(config);
            }
            return inputs;
        }

        /** Full attention (flash, dense or causal as the pattern needs) on the same inputs: {o, lse}, or why not. */
        private Object reference(Pattern effective) {
            Pattern ref = AttentionQuality.referenceFor(effective);
            return references.computeIfAbsent(ref.spec(), k -> output(ref, Algorithm.FLASH,
                    shape.flops(ref instanceof Pattern.Causal)));
        }

        /**
         * The ungated output of the pattern {@code effective} itself, {o, lse}, or the String why it is n/a:
         * the full reference for dense and causal, else one call of {@code algo} on the pattern (what a
         * routed row on a sparse pattern is compared with, times its gate).
         */
        private Object ungated(Pattern effective, Algorithm algo, double density) {
            if (AttentionQuality.referenceFor(effective).equals(effective)) {
                return reference(effective);
            }
            return references.computeIfAbsent("ungated " + effective.spec(),
                    k -> output(effective, algo, shape.denseFlops() * density));
        }

        private Object output(Pattern p, Algorithm algo, double flops) {
            if (flops > limits.maxReferenceFlops()) {
                return String.format(Locale.ROOT, "n/a: the %s reference costs %.3g GFLOP, above the %.3g GFLOP limit "
                        + "(--max-reference-gflop)", p.spec(), flops / 1e9, limits.maxReferenceFlops() / 1e9);
            }
            try {
                AttentionResult r = engine.run(AttentionRequest.builder(inputs().q(), inputs().k(), inputs().v()).pattern(p)
                        .dtype(dtype).algorithm(algo).wantLse(true).build());
                return new float[][] {r.o().toFloatArray(), r.lse().toFloatArray()};
            } catch (DeviceOutOfMemoryException e) {
                return "n/a: the " + p.spec() + " reference does not fit: " + e.getMessage();
            } catch (UnsupportedOperationException e) {
                return "n/a: the " + p.spec() + " reference is unsupported here: " + e.getMessage();
            } catch (RuntimeException e) {
                LOG.error("experiment: the {} reference failed: {}", p.spec(), e.toString());
                LOG.debug("experiment: the failure", e);
                return "n/a: the " + p.spec() + " reference failed: " + e;
            }
        }
    }
}
