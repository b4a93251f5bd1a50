package io.headroute.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.headroute.cuda.memory.DeviceOutOfMemoryException;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.engine.cuda.FlashPlan;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Objects;
import java.util.OptionalDouble;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * Times attention algorithms against each other on one engine, in one run, on the same seeded random
 * inputs: for each algorithm, warm-up calls, then timed calls; reports the median, GFLOP/s under one
 * nominal FLOP count ({@link #FLOP_FORMULA}), the workspace each algorithm allocated, and how far each
 * output is from the reference: the first output without NaN or infinite values (an output with any is a row
 * {@link #WRONG}, never the reference).
 */
public final class AttentionBenchmark {
    /**
     * The most timed calls a run takes: every call's time is kept (for the median), and more than this says
     * nothing a median of fewer would not; warm-up runs are capped likewise.
     */
    public static final int MAX_REPEATS = 100_000;

    /** Status prefix of a row whose calls threw something other than out-of-memory, unsupported or bad input. */
    public static final String ERROR = "error: ";

    /**
     * Status prefix of a row whose calls ran but whose output holds NaN or infinite values: timed, yet no result
     * (its times stay in the report; it never serves as the reference).
     */
    public static final String WRONG = "wrong: ";

    /**
     * Status prefix of a row the engine's memory plan refused before allocating anything (the plan's message says
     * what it needs and what the card has).
     */
    public static final String DOES_NOT_FIT = "does not fit (memory plan): ";

    /** Status prefix of a row whose call ran out of device memory while allocating (the pool's message). */
    public static final String OUT_OF_MEMORY = "out of memory at run: ";

    /** How {@link io.headroute.cuda.memory.DevicePool}'s own out-of-memory messages begin. */
    static final String POOL_OOM_MESSAGE = "out of device memory";

    /** How GFLOP/s are counted; printed with every report. */
    public static final String FLOP_FORMULA =
            "FLOPs per call = 4·B·H·L·S·D (two matrix products, 2 FLOPs per multiply-add); with --causal"
                    + " 4·B·H·D·(L·S − L²/2), the pairs of the bottom-right-aligned mask (half of it at L = S);"
                    + " one nominal count for every algorithm and pattern";

    private static final Logger LOG = LogManager.getLogger(AttentionBenchmark.class);
    private static final ObjectMapper MAPPER = new ObjectMapper();

    private AttentionBenchmark() {}

    /**
     * What to measure.
     *
     * @param batch      B
     * @param heads      H
     * @param kvHeads    Hkv, dividing H
     * @param qLen       L
     * @param kvLen      S, at least L
     * @param headDim    D
     * @param causal     whether the causal rule j ≤ p is added to the pattern
     * @param pattern    the pattern before the causal rule ({@code causal} adds it)
     * @param dtype      the compute dtype, also the inputs' dtype
     * @param algorithms measured in this order; the first is the reference for output differences
     * @param warmup     untimed calls per algorithm
     * @param repeats    timed calls per algorithm (the median is reported)
     * @param seed       seed of the Gaussian inputs
     * @param blockSize  block size of the sparse algorithm's layouts (64 or 128)
     * @param fp32Scores materialized scores in fp32 for f16/bf16 inputs (else in the input dtype)
     */
    public record Config(int batch, int heads, int kvHeads, int qLen, int kvLen, int headDim, boolean causal,
            Pattern pattern, DType dtype, List<Algorithm> algorithms, int warmup, int repeats, long seed, int blockSize,
            boolean fp32Scores) {
        /**
         * Validates the configuration and copies the algorithm list.
         *
         * @param batch      B
         * @param heads      H
         * @param kvHeads    Hkv
         * @param qLen       L
         * @param kvLen      S
         * @param headDim    D
         * @param causal     whether the causal rule is added
         * @param pattern    the pattern; not null
         * @param dtype      the dtype; not null
         * @param algorithms at least one, none twice
         * @param warmup     0 … {@link #MAX_REPEATS}
         * @param repeats    1 … {@link #MAX_REPEATS}
         * @param seed       the inputs' seed
         * @param blockSize  64 or 128
         * @param fp32Scores fp32 materialized scores
         * @throws io.headroute.engine.ShapeException for sizes {@link AttentionShape} refuses
         * @throws IllegalArgumentException           for inputs larger than one Java array, or a value out of range
         */
        public Config {
            Objects.requireNonNull(pattern, "pattern");
            Objects.requireNonNull(dtype, "dtype");
            // AttentionShape checks positivity, L ≤ S and H divisible by Hkv, with one-line messages.
            AttentionShape sh = new AttentionShape(batch, heads, kvHeads, qLen, kvLen, headDim);
            long most = Math.max(sh.qElements(), sh.kvElements());
            if (most > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("an input of " + most + " elements (" + sh
                        + ") is more than one Java array holds; use smaller sizes");
            }
            if (algorithms.isEmpty()) {
                throw new IllegalArgumentException("no algorithm to measure");
            }
            if (new LinkedHashSet<>(algorithms).size() != algorithms.size()) {
                throw new IllegalArgumentException("algorithm listed twice: " + algorithms);
            }
            algorithms = List.copyOf(algorithms);
            if (warmup < 0 || warmup > MAX_REPEATS) {
                throw new IllegalArgumentException("warm-up runs must be in 0.." + MAX_REPEATS + ", got " + warmup);
            }
            if (repeats <= 0 || repeats > MAX_REPEATS) {
                throw new IllegalArgumentException("repeats must be in 1.." + MAX_REPEATS + ", got " + repeats);
            }
            if (blockSize != 64 && blockSize != 128) {
                throw new IllegalArgumentException("block size must be 64 or 128, got " + blockSize);
            }
        }

        /**
         * With the default block size, 64, and scores in the input dtype.
         *
         * @param batch      B
         * @param heads      H
         * @param kvHeads    Hkv
         * @param qLen       L
         * @param kvLen      S
         * @param headDim    D
         * @param causal     whether the causal rule is added
         * @param pattern    the pattern before the causal rule
         * @param dtype      the compute dtype
         * @param algorithms the algorithms, the first the reference
         * @param warmup     untimed calls per algorithm
         * @param repeats    timed calls per algorithm
         * @param seed       the inputs' seed
         */
        public Config(int batch, int heads, int kvHeads, int qLen, int kvLen, int headDim, boolean causal, Pattern pattern,
                DType dtype, List<Algorithm> algorithms, int warmup, int repeats, long seed) {
            this(batch, heads, kvHeads, qLen, kvLen, headDim, causal, pattern, dtype, algorithms, warmup, repeats, seed, 64,
                    false);
        }

        /** {@return the attention shape of the configured sizes} */
        public AttentionShape shape() {
            return new AttentionShape(batch, heads, kvHeads, qLen, kvLen, headDim);
        }

        /** {@return the nominal FLOPs of one call, per {@link #FLOP_FORMULA}} */
        public double flops() {
            return shape().flops(causal);
        }

        /** The call's shape, pattern and dtype into a report's "config" object. */
        void writeShape(ObjectNode cfg) {
            cfg.put("batch", batch);
            cfg.put("heads", heads);
            cfg.put("kv_heads", kvHeads);
            cfg.put("q_len", qLen);
            cfg.put("kv_len", kvLen);
            cfg.put("head_dim", headDim);
            cfg.put("causal", causal);
            cfg.put("pattern", patternSpec());
            cfg.put("dtype", dtype.cliName());
        }

        /** Warm-up calls, timed calls and the inputs' seed into a report's "config" object. */
        void writeRuns(ObjectNode cfg) {
            cfg.put("warmup", warmup);
            cfg.put("repeats", repeats);
            cfg.put("seed", seed);
        }

        /** {@return the effective pattern's spec, causal rule included (e.g. "window:128+causal")} */
        public String patternSpec() {
            return causal ? pattern.withCausal().spec() : pattern.spec();
        }
    }

    /**
     * One algorithm's numbers.
     *
     * @param requested       the algorithm asked for
     * @param used            the algorithm the engine reports it ran
     * @param engine          the engine's name, "cpu" or "cuda"
     * @param timesMs         the timed calls' compute times, in order
     * @param medianMs        the median of {@code timesMs}, NaN for a row not run
     * @param minMs           the fastest timed call, NaN for a row not run
     * @param gflops          nominal GFLOP/s at the median ({@link #FLOP_FORMULA})
     * @param workspaceBytes  scratch the last call allocated, −1 for a row not run
     * @param keyTilesVisited (query tile, key tile) pairs the last call computed, −1 when not counted
     * @param keyTilesSkipped pairs the pattern let it skip, −1 when not counted
     * @param relL2VsFirst    ‖o − o_ref‖₂ / ‖o_ref‖₂ against the reference, the first output without NaN or infinite
     *                        values (0 for it; NaN for an output with such values and for a row not run)
     * @param peakDeviceBytes peak device memory of a call (GPU engines), −1 on the CPU
     * @param scoreDType      the dtype the materialized scores were stored in, or null
     * @param status          "ok", or why the algorithm was not measured (it does not fit, is unsupported, failed) or
     *                        why its output is no result ({@link #WRONG})
     * @param tiling          the tensor-core tiling this row was forced to, or null for the engine's own
     * @param reference       whether this row's output is the one the others are compared with
     * @param nonFiniteValues NaN or infinite values in the last timed call's output; −1 for a row not run
     */
    public record Measurement(Algorithm requested, Algorithm used, String engine, List<Double> timesMs, double medianMs,
            double minMs, double gflops, long workspaceBytes, long keyTilesVisited, long keyTilesSkipped,
            double relL2VsFirst, long peakDeviceBytes, DType scoreDType, String status, FlashPlan.Tiling tiling,
            boolean reference, long nonFiniteValues) {
        /**
         * Copies the times.
         *
         * @param requested       the algorithm asked for
         * @param used            the algorithm that ran
         * @param engine          the engine's name
         * @param timesMs         the timed calls' times; copied
         * @param medianMs        their median
         * @param minMs           their minimum
         * @param gflops          GFLOP/s at the median
         * @param workspaceBytes  scratch allocated
         * @param keyTilesVisited tile pairs computed
         * @param keyTilesSkipped tile pairs skipped
         * @param relL2VsFirst    error against the reference
         * @param peakDeviceBytes peak device memory
         * @param scoreDType      materialized scores' dtype, or null
         * @param status          "ok" or the reason
         * @param tiling          forced tiling, or null
         * @param reference       whether this is the reference row
         * @param nonFiniteValues NaN or infinite output values, −1 when not run
         */
        public Measurement {
            timesMs = List.copyOf(timesMs);
        }

        /**
         * A row with a finite output that is not the reference ({@code nonFiniteValues} 0 when "ok", else −1).
         *
         * @param requested       the algorithm asked for
         * @param used            the algorithm that ran
         * @param engine          the engine's name
         * @param timesMs         the timed calls' times
         * @param medianMs        their median
         * @param minMs           their minimum
         * @param gflops          GFLOP/s at the median
         * @param workspaceBytes  scratch allocated
         * @param keyTilesVisited tile pairs computed
         * @param keyTilesSkipped tile pairs skipped
         * @param relL2VsFirst    error against the reference
         * @param peakDeviceBytes peak device memory
         * @param scoreDType      materialized scores' dtype, or null
         * @param status          "ok" or the reason
         * @param tiling          forced tiling, or null
         */
        public Measurement(Algorithm requested, Algorithm used, String engine, List<Double> timesMs, double medianMs,
                double minMs, double gflops, long workspaceBytes, long keyTilesVisited, long keyTilesSkipped,
                double relL2VsFirst, long peakDeviceBytes, DType scoreDType, String status, FlashPlan.Tiling tiling) {
            this(requested, used, engine, timesMs, medianMs, minMs, gflops, workspaceBytes, keyTilesVisited, keyTilesSkipped,
                    relL2VsFirst, peakDeviceBytes, scoreDType, status, tiling, false, "ok".equals(status) ? 0 : -1);
        }

        /**
         * {@return the algorithm's name, with the tensor-core tiling when one was asked for ({@code flash[w2]})}; an
         * algorithm that ran as another reads {@code auto(flash)}.
         */
        public String label() {
            String name = requested == used ? requested.cliName() : requested.cliName() + "(" + used.cliName() + ")";
            return tiling == null ? name : name + "[" + tiling.cliName() + "]";
        }

        /** {@return whether the row was measured and its output is finite (status "ok")} */
        public boolean ok() {
            return "ok".equals(status);
        }

        /** {@return whether a call threw ({@link #ERROR}) or the output is no result ({@link #WRONG})} */
        public boolean failed() {
            return status.startsWith(ERROR) || status.startsWith(WRONG);
        }

        static Measurement notRun(Algorithm a, String engine, String why) {
            return notRun(a, engine, why, null);
        }

        static Measurement notRun(Algorithm a, String engine, String why, FlashPlan.Tiling tiling) {
            return new Measurement(a, a, engine, List.of(), Double.NaN, Double.NaN, Double.NaN, -1, -1, -1, Double.NaN, -1, null, why,
                    tiling, false, -1);
        }
    }

    /**
     * The machine the numbers came from.
     *
     * @param cores        the processors available to the JVM
     * @param jvm          the JVM's name, version and vendor
     * @param osName       the {@code os.name} property
     * @param osArch       the {@code os.arch} property
     * @param maxHeapBytes the JVM's maximum heap, in bytes
     */
    public record Machine(int cores, String jvm, String osName, String osArch, long maxHeapBytes) {
        /** {@return this JVM's machine, read now} */
        public static Machine current() {
            return new Machine(Runtime.getRuntime().availableProcessors(),
                    System.getProperty("java.vm.name") + " " + System.getProperty("java.runtime.version", System.getProperty("java.version"))
                            + " (" + System.getProperty("java.vendor") + ")",
                    System.getProperty("os.name"), System.getProperty("os.arch"), Runtime.getRuntime().maxMemory());
        }

        /** The machine as a report's "machine" object. */
        void writeJson(ObjectNode n) {
            n.put("cores", cores);
            n.put("jvm", jvm);
            n.put("os_name", osName);
            n.put("os_arch", osArch);
            n.put("max_heap_bytes", maxHeapBytes);
        }
    }

    /**
     * A whole run: where, what, and the measurements in the configured order.
     *
     * @param machine      where it ran
     * @param config       what was measured
     * @param engine       the engine's name
     * @param device       the engine's device, for reports
     * @param measurements the configured algorithms in order, then the tiling rows
     * @param flashTiling  the tiling the tensor-core dense/causal kernel ran in for the configured rows (those
     *                     without a {@link Measurement#tiling()}): the CUDA engine's, or W4 where the head dim's
     *                     kernel lacks it; null without tensor-core kernels (CPU engine, fp32) or where no
     *                     configured algorithm runs that kernel
     * @param sparseTiling the same for the tensor-core block-sparse kernel
     */
    public record Report(Machine machine, Config config, String engine, String device, List<Measurement> measurements,
            String flashTiling, String sparseTiling) {
        /**
         * Copies the measurements.
         *
         * @param machine      where it ran
         * @param config       what was measured
         * @param engine       the engine's name
         * @param device       the engine's device
         * @param measurements the rows; copied
         * @param flashTiling  the flash kernel's tiling, or null
         * @param sparseTiling the block-sparse kernel's tiling, or null
         */
        public Report {
            measurements = List.copyOf(measurements);
        }

        /**
         * A report without tensor-core tilings (both null).
         *
         * @param machine      where it ran
         * @param config       what was measured
         * @param engine       the engine's name
         * @param device       the engine's device
         * @param measurements the rows
         */
        public Report(Machine machine, Config config, String engine, String device, List<Measurement> measurements) {
            this(machine, config, engine, device, measurements, null, null);
        }

        /**
         * How many times faster {@code fast} ran than {@code base} (median vs median), if both were measured.
         *
         * @param fast the algorithm expected faster (its row without a forced tiling)
         * @param base the algorithm compared with
         * @return base median / fast median, or empty unless both rows are "ok"
         */
        public OptionalDouble speedup(Algorithm fast, Algorithm base) {
            Measurement f = find(fast);
            Measurement b = find(base);
            return f == null || b == null || !f.ok() || !b.ok() ? OptionalDouble.empty()
                    : OptionalDouble.of(b.medianMs() / f.medianMs());
        }

        private Measurement find(Algorithm a) {
            for (Measurement m : measurements) {
                if (m.requested() == a && m.tiling() == null) {
                    return m;
                }
            }
            return null;
        }

        /** {@return the report as JSON: machine, config, FLOP formula, measurements and the flash/materialized speed ratio} */
        public ObjectNode toJson() {
            ObjectNode root = MAPPER.createObjectNode();
            machine.writeJson(root.putObject("machine"));
            ObjectNode cfg = root.putObject("config");
            cfg.put("engine", engine);
            cfg.put("device", device);
            config.writeShape(cfg);
            ArrayNode algos = cfg.putArray("algorithms");
            config.algorithms().forEach(a -> algos.add(a.cliName()));
            config.writeRuns(cfg);
            cfg.put("block_size", config.blockSize());
            cfg.put("fp32_scores", config.fp32Scores());
            if (flashTiling != null) {
                cfg.put("flash_tiling", flashTiling);
            }
            if (sparseTiling != null) {
                cfg.put("sparse_tiling", sparseTiling);
            }
            root.put("flop_formula", FLOP_FORMULA);
            root.put("flops_per_call", config.flops());
            ArrayNode ms = root.putArray("measurements");
            for (Measurement m : measurements) {
                ObjectNode n = ms.addObject();
                n.put("algorithm", m.requested().cliName());
                n.put("algorithm_used", m.used().cliName());
                if (m.tiling() != null) {
                    n.put("tiling", m.tiling().cliName());
                }
                n.put("engine", m.engine());
                ArrayNode times = n.putArray("times_ms");
                m.timesMs().forEach(times::add);
                n.put("median_ms", m.medianMs());
                n.put("min_ms", m.minMs());
                n.put("gflops", m.gflops());
                n.put("workspace_bytes", m.workspaceBytes());
                n.put("key_tiles_visited", m.keyTilesVisited());
                n.put("key_tiles_skipped", m.keyTilesSkipped());
                n.put("rel_l2_vs_first", m.relL2VsFirst());
                n.put("reference", m.reference());
                if (m.nonFiniteValues() >= 0) {
                    n.put("output_finite", m.nonFiniteValues() == 0);
                    n.put("non_finite_values", m.nonFiniteValues());
                }
                n.put("peak_device_bytes", m.peakDeviceBytes());
                if (m.scoreDType() != null) {
                    n.put("score_dtype", m.scoreDType().cliName());
                }
                n.put("status", m.status());
            }
            OptionalDouble s = speedup(Algorithm.FLASH, Algorithm.MATERIALIZED);
            if (s.isPresent()) {
                root.put("flash_over_materialized_speed", s.getAsDouble());
            }
            return root;
        }
    }

    /**
     * The seeded Gaussian inputs of a config: q (B, H, L, D), k and v (B, Hkv, S, D), in {@code dtype}.
     *
     * @param q queries (B, H, L, D)
     * @param k keys (B, Hkv, S, D)
     * @param v values (B, Hkv, S, D)
     */
    public record Inputs(Tensor q, Tensor k, Tensor v) {}

    /**
     * {@return the seeded inputs of {@code c}: standard Gaussian values rounded to its dtype}, the same for a seed on
     * every machine and any thread count.
     *
     * @param c the configuration
     */
    public static Inputs randomInputs(Config c) {
        return new Inputs(gaussian(c.seed(), 0, c.dtype(), c.batch(), c.heads(), c.qLen(), c.headDim()),
                gaussian(c.seed(), 1, c.dtype(), c.batch(), c.kvHeads(), c.kvLen(), c.headDim()),
                gaussian(c.seed(), 2, c.dtype(), c.batch(), c.kvHeads(), c.kvLen(), c.headDim()));
    }

    /** Chunk of values drawn from one generator; fixed, so the values do not depend on the thread count. */
    private static final int CHUNK = 1 << 16;

    /**
     * Gaussian values in parallel (a 32K-token input has tens of millions), deterministic: chunk c of
     * tensor t comes from a SplittableRandom seeded with a mix of (seed, t, c).
     */
    private static Tensor gaussian(long seed, int tensor, DType dtype, long... shape) {
        return gaussian(seed, tensor, dtype, 1f, shape);
    }

    /** Like {@link #gaussian(long, int, DType, long...)}, each value multiplied by {@code scale} before rounding. */
    static Tensor gaussian(long seed, int tensor, DType dtype, float scale, long... shape) {
        float[] x = new float[Math.toIntExact(Tensor.numel(shape))];
        int chunks = (x.length + CHUNK - 1) / CHUNK;
        IntStream.range(0, chunks).parallel().forEach(ch -> {
            SplittableRandom r = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + tensor * 0xC2B2AE3D27D4EB4FL + ch);
            int end = Math.min(x.length, (ch + 1) * CHUNK);
            for (int i = ch * CHUNK; i < end; i++) {
                x[i] = (float) r.nextGaussian() * scale;
            }
        });
        return Tensor.ofFloats(dtype, x, shape);
    }

    /**
     * Runs the benchmark on {@code engine}; every request is validated before the first call.
     *
     * @param engine the engine to time
     * @param c      what to measure
     * @return the report; rows that do not fit, are unsupported or fail say so in their status
     * @throws IllegalArgumentException for a request the engine refuses as bad input
     */
    public static Report run(AttentionEngine engine, Config c) {
        return run(engine, c, List.of());
    }

    /**
     * {@link #run(AttentionEngine, Config)}, then flash and sparse (those of the configured algorithms) once more in
     * each of {@code tilings} (the tensor-core kernels' tilings, {@link FlashPlan.Tiling}) on the same inputs:
     * measurements labelled {@code flash[w2]}, {@code sparse[wgx2]}, ... after the configured ones (a tiling the
     * kernel that runs lacks — the block-sparse one where flash takes a sparse pattern — gives a row not run,
     * "unsupported"). Needs the CUDA engine, flash or sparse among the algorithms, and f16 or bf16.
     *
     * @param engine  the engine to time
     * @param c       what to measure
     * @param tilings the tilings to add rows for; empty for none
     * @return the report
     * @throws IllegalArgumentException when {@code tilings} is not empty and the run cannot use it, or for bad input
     */
    public static Report run(AttentionEngine engine, Config c, List<FlashPlan.Tiling> tilings) {
        CudaAttentionEngine cuda = null;
        List<Algorithm> tiled = c.algorithms().stream().filter(a -> a == Algorithm.FLASH || a == Algorithm.SPARSE).toList();
        if (!tilings.isEmpty()) {
            if (!(engine instanceof CudaAttentionEngine e)) {
                throw new IllegalArgumentException("--tilings compares the CUDA tensor-core kernels; the " + engine.name()
                        + " engine has none (use --backend cuda)");
            }
            if (tiled.isEmpty() || c.dtype() == DType.F32) {
                throw new IllegalArgumentException("--tilings compares the f16/bf16 flash and sparse kernels: needs flash or sparse"
                        + " in --algos and --dtype f16 or bf16");
            }
            cuda = e;
        }
        Inputs in = randomInputs(c);
        List<AttentionRequest> requests = new ArrayList<>();
        for (Algorithm a : c.algorithms()) {
            requests.add(AttentionRequest.builder(in.q(), in.k(), in.v()).pattern(c.pattern()).causal(c.causal())
                    .dtype(c.dtype()).algorithm(a).blockSize(c.blockSize()).fp32Scores(c.fp32Scores()).build());
        }
        List<Measurement> out = new ArrayList<>();
        float[][] reference = {null};
        for (AttentionRequest req : requests) {
            out.add(measure(engine, c, req, null, reference));
        }
        if (cuda != null) {
            FlashPlan.Tiling before = cuda.mmaTiling();
            try {
                for (Algorithm a : tiled) {
                    AttentionRequest req = requests.get(c.algorithms().indexOf(a));
                    boolean sparse = runsSparse(a, c);
                    for (FlashPlan.Tiling t : tilings) {
                        if (!t.appliesTo(c.dtype(), c.headDim(), sparse)) {
                            // The planned kernel would run in W4: a row labelled with another tiling would lie.
                            out.add(Measurement.notRun(a, engine.name(), "unsupported: the " + c.dtype().cliName() + " "
                                    + (sparse ? "block-sparse" : "flash") + " kernel for D = " + c.headDim() + " has no "
                                    + t.cliName() + " tiling", t));
                            continue;
                        }
                        String why = cuda.tilingUnavailable(t);
                        if (why != null) {
                            out.add(Measurement.notRun(a, engine.name(), "unsupported: " + why, t));
                            continue;
                        }
                        cuda.setMmaTiling(t);
                        out.add(measure(engine, c, req, t, reference));
                    }
                }
            } finally {
                cuda.setMmaTiling(before);
            }
        }
        return new Report(Machine.current(), c, engine.name(), engine.device(), out, configuredTiling(engine, c, false),
                configuredTiling(engine, c, true));
    }

    /** Whether {@code a} runs the block-sparse kernel on the CUDA engine for {@code c}'s pattern (causal rule included). */
    private static boolean runsSparse(Algorithm a, Config c) {
        return CudaAttentionEngine.route(a, c.causal() ? c.pattern().withCausal() : c.pattern()) == Algorithm.SPARSE;
    }

    /**
     * {@link Report#flashTiling()} ({@code sparse} false) or {@link Report#sparseTiling()} of a run of {@code c} on
     * {@code engine}: null unless some configured algorithm runs that tensor-core kernel there.
     */
    static String configuredTiling(AttentionEngine engine, Config c, boolean sparse) {
        if (!(engine instanceof CudaAttentionEngine e) || c.dtype() == DType.F32
                || c.algorithms().stream().noneMatch(a -> a != Algorithm.MATERIALIZED && runsSparse(a, c) == sparse)) {
            return null;
        }
        return e.mmaTiling().resolve(c.dtype(), c.headDim(), sparse).cliName();
    }

    /**
     * Warm-up and timed calls of one algorithm; {@code reference[0]} is the first measured output without NaN or
     * infinite values (this one's, when it is the first).
     */
    private static Measurement measure(AttentionEngine engine, Config c, AttentionRequest req, FlashPlan.Tiling tiling,
            float[][] reference) {
        Algorithm a = req.algorithm();
        double[] times = new double[c.repeats()];
        AttentionResult last = null;
        String what = a.cliName() + (tiling == null ? "" : "[" + tiling.cliName() + "]");
        try {
            for (int w = 0; w < c.warmup(); w++) {
                LOG.debug("bench {}: warm-up {}/{}", what, w + 1, c.warmup());
                engine.run(req);
            }
            for (int r = 0; r < c.repeats(); r++) {
                last = engine.run(req);
                times[r] = last.stats().elapsedNanos() / 1e6;
                LOG.debug("bench {}: run {}/{}: {} ms", what, r + 1, c.repeats(), times[r]);
            }
        } catch (DeviceOutOfMemoryException e) {
            // The algorithm cannot run on this card: a result, not a crash. The memory plan's refusal (before anything
            // was allocated, with what it needs and what the card has) and the pool's out-of-memory during the call are
            // told apart: the second may be fragmentation or another process, not the algorithm's size.
            return Measurement.notRun(a, engine.name(), outOfMemoryStatus(e), tiling);
        } catch (UnsupportedOperationException e) {
            return Measurement.notRun(a, engine.name(), "unsupported: " + e.getMessage(), tiling);
        } catch (IllegalArgumentException e) {
            throw e; // bad input: the whole bench is refused
        } catch (RuntimeException e) {
            // A failing call (a CUDA error in a kernel never run on this card, a bug) is a row that says so: the
            // rows measured before it are kept and reported; the command exits 1 after writing them.
            LOG.error("bench {}: {}", what, e.toString());
            LOG.debug("bench: the failure", e);
            return Measurement.notRun(a, engine.name(), ERROR + e.getClass().getSimpleName() + ": "
                    + String.valueOf(e.getMessage()).replaceAll("\\s*\\R\\s*", " "), tiling);
        }
        float[] o = last.o().toFloatArray();
        long nonFinite = nonFinite(o);
        boolean isReference = nonFinite == 0 && reference[0] == null;
        // An output with NaN or infinite values is wrong whatever it is compared with, and never the reference: the
        // rows after it are compared with the first finite output.
        double rel = nonFinite > 0 ? Double.NaN : isReference ? 0.0 : relativeL2(o, reference[0]);
        if (isReference) {
            reference[0] = o;
        }
        String status = nonFinite == 0 ? "ok" : WRONG + nonFinite + " of " + o.length + " output values are NaN or infinite";
        double median = median(times);
        List<Double> list = new ArrayList<>();
        for (double t : times) {
            list.add(t);
        }
        return new Measurement(a, last.stats().algorithm(), last.stats().engine(), list, median,
                Arrays.stream(times).min().orElse(median), c.flops() / (median * 1e6), last.stats().workspaceBytes(),
                last.stats().keyTilesVisited(), last.stats().keyTilesSkipped(), rel, last.stats().peakDeviceBytes(),
                last.stats().scoreDType(), status, tiling, isReference, nonFinite);
    }

    /** The status of a row whose call threw {@code e}: the memory plan's refusal, or the pool's out-of-memory. */
    static String outOfMemoryStatus(DeviceOutOfMemoryException e) {
        String msg = String.valueOf(e.getMessage());
        return (msg.startsWith(POOL_OOM_MESSAGE) ? OUT_OF_MEMORY : DOES_NOT_FIT) + msg;
    }

    /** How many of {@code x} are NaN or infinite. */
    static long nonFinite(float[] x) {
        long n = 0;
        for (float v : x) {
            if (!Float.isFinite(v)) {
                n++;
            }
        }
        return n;
    }

    /**
     * {@return ‖x − ref‖₂ / ‖ref‖₂ in double precision}; 0 when both are zero, +∞ when only ref is. NaN stays NaN.
     *
     * @param x   the output compared
     * @param ref the reference, as long
     * @throws IllegalArgumentException when the lengths differ
     */
    public static double relativeL2(float[] x, float[] ref) {
        if (x.length != ref.length) {
            throw new IllegalArgumentException("lengths differ: " + x.length + " vs " + ref.length);
        }
        double num = 0;
        double den = 0;
        for (int i = 0; i < x.length; i++) {
            double d = (double) x[i] - ref[i];
            num += d * d;
            den += (double) ref[i] * ref[i];
        }
        if (den == 0) {
            return num == 0 ? 0 : Double.POSITIVE_INFINITY;
        }
        return Math.sqrt(num / den);
    }

    /**
     * {@return the median; the mean of the middle two for an even count}
     *
     * @param values at least one value; not changed
     * @throws IllegalArgumentException when {@code values} is empty
     */
    public static double median(double[] values) {
        if (values.length == 0) {
            throw new IllegalArgumentException("median of nothing");
        }
        double[] s = values.clone();
        Arrays.sort(s);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    }
}
