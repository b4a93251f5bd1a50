package io.headroute.experiment;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.engine.cuda.FlashPlan;
import io.headroute.engine.cuda.GateWork;
import io.headroute.engine.cuda.MaterializedPlan;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.PatternException;
import io.headroute.pattern.Patterns;
import io.headroute.routing.PruningPlan;
import io.headroute.routing.RouterConfig;
import io.headroute.tensor.DType;
import io.headroute.tensor.TensorFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * One way of computing attention that an experiment compares: an algorithm and the pattern it runs.
 * Sealed, and what differs between kinds is an abstract method (the memory prediction), so a new kind
 * (routed heads, pruned plans) is one new record here that the compiler makes complete, plus its case
 * in {@link #parse}.
 *
 * <p>Grammar ({@link #GRAMMAR}): {@code materialized[:PATTERN]}, {@code flash[:PATTERN]},
 * {@code sparse:PATTERN}; PATTERN is any {@code --pattern} spec (e.g. {@code window:256},
 * {@code bigbird:64:1:1:2:7}); {@code routed:HS:K[:BQ][:PATTERN]} (attention gated by a head router: dense
 * flash, or the block-sparse kernel on PATTERN);
 * {@code pruned:PLAN.json} or {@code pruned:FRACTION} (dense flash attention without the removed heads).
 * The sweep's {@code --causal} is added to every variant's pattern.
 */
public sealed interface Variant permits Variant.Materialized, Variant.Flash, Variant.Sparse, Variant.Routed, Variant.Pruned {
    /** The variant grammar, for help and error messages. */
    String GRAMMAR = "materialized[:PATTERN], flash[:PATTERN], sparse:PATTERN (PATTERN: " + Patterns.GRAMMAR + "), "
            + "routed:HS:K[:BQ][:PATTERN], pruned:PLAN.json, pruned:FRACTION";

    /** {@return the spec in canonical form, as it appears in reports} */
    String spec();

    /** {@return the algorithm requested from the engine} */
    Algorithm algorithm();

    /** {@return the pattern before the sweep's causal rule} */
    Pattern pattern();

    /**
     * The GPU peak predicted from the memory plans for one call; {@code causal} is the sweep's rule.
     *
     * @param shape  the call's sizes (before any pruning)
     * @param dtype  the compute dtype
     * @param causal whether the causal rule is added
     * @return the predicted peak bytes, and of them the score matrices'
     */
    MemoryPrediction predictMemory(AttentionShape shape, DType dtype, boolean causal);

    /**
     * Refuses, with a one-line {@link IllegalArgumentException}, a variant that cannot run at this shape
     * (a routing whose shared heads exceed H, a pruning plan for another head count). Nothing by default.
     *
     * @param heads   H
     * @param kvHeads Hkv
     * @param len     L = S
     */
    default void check(int heads, int kvHeads, int len) {}

    /** {@return whether the variant computes every query-key pair of the (causal) reference: dense or causal pattern} */
    default boolean full() {
        return pattern() instanceof Pattern.Dense || pattern() instanceof Pattern.Causal;
    }

    /**
     * The standard algorithm: the whole L × S score matrix.
     *
     * @param pattern the pattern before the sweep's causal rule
     */
    record Materialized(Pattern pattern) implements Variant {
        @Override
        public String spec() {
            return pattern.isDense() ? "materialized" : "materialized:" + pattern.spec();
        }

        @Override
        public Algorithm algorithm() {
            return Algorithm.MATERIALIZED;
        }

        @Override
        public MemoryPrediction predictMemory(AttentionShape shape, DType dtype, boolean causal) {
            return MemoryPrediction.materialized(shape, dtype);
        }
    }

    /**
     * The fused online-softmax algorithm, no L × S buffer.
     *
     * @param pattern the pattern before the sweep's causal rule
     */
    record Flash(Pattern pattern) implements Variant {
        @Override
        public String spec() {
            return pattern.isDense() ? "flash" : "flash:" + pattern.spec();
        }

        @Override
        public Algorithm algorithm() {
            return Algorithm.FLASH;
        }

        /** Flash on a pattern its dense kernels lack runs the block-sparse kernel (with its uploaded layout). */
        @Override
        public MemoryPrediction predictMemory(AttentionShape shape, DType dtype, boolean causal) {
            Pattern effective = causal ? pattern.withCausal() : pattern;
            return CudaAttentionEngine.route(Algorithm.FLASH, effective) == Algorithm.SPARSE
                    ? MemoryPrediction.sparse(shape, dtype, effective)
                    : MemoryPrediction.flash(shape, dtype);
        }
    }

    /**
     * The block-sparse algorithm: only the key blocks the pattern's layout lists.
     *
     * @param pattern the pattern before the sweep's causal rule
     */
    record Sparse(Pattern pattern) implements Variant {
        @Override
        public String spec() {
            return "sparse:" + pattern.spec();
        }

        @Override
        public Algorithm algorithm() {
            return Algorithm.SPARSE;
        }

        @Override
        public MemoryPrediction predictMemory(AttentionShape shape, DType dtype, boolean causal) {
            return MemoryPrediction.sparse(shape, dtype, causal ? pattern.withCausal() : pattern);
        }
    }

    /**
     * Attention whose gate comes from a mixture-of-heads router (like {@code bench --route}): seeded token
     * representations X (B, L, H·D) and router weights Wr; the gate switches off the rows of the heads a
     * token is not routed to, and the attention skips them. Dense flash attention, or on a sparse pattern
     * the block-sparse kernel (the gate's work skipped on top of the pattern's).
     *
     * @param sharedHeads Hs, always-active heads
     * @param k           routed heads kept per token or block
     * @param block       Bq, tokens per routing decision (1: per token)
     * @param pattern     the attention pattern (before the sweep's causal rule); dense by default
     */
    record Routed(int sharedHeads, int k, int block, Pattern pattern) implements Variant {
        /**
         * Validates the sizes; a null pattern is dense.
         *
         * @param sharedHeads Hs, at least 0
         * @param k           at least 1
         * @param block       Bq, at least 1
         * @param pattern     the pattern, or null for dense
         * @throws IllegalArgumentException when a size is out of range
         */
        public Routed {
            if (sharedHeads < 0 || k < 1 || block < 1) {
                throw new IllegalArgumentException("routed:" + sharedHeads + ":" + k + ":" + block
                        + ": expected shared heads ≥ 0, k ≥ 1 and block ≥ 1");
            }
            pattern = pattern == null ? new Pattern.Dense() : pattern;
        }

        /**
         * Routed dense attention.
         *
         * @param sharedHeads Hs, at least 0
         * @param k           routed heads kept, at least 1
         * @param block       Bq, at least 1
         */
        public Routed(int sharedHeads, int k, int block) {
            this(sharedHeads, k, block, new Pattern.Dense());
        }

        /**
         * {@return the router at H = {@code heads}}: Hs shared, H − Hs routed, k kept per block of Bq tokens
         *
         * @param heads H
         * @throws IllegalArgumentException when Hs is not below H or k exceeds H − Hs
         */
        public RouterConfig router(int heads) {
            return RouterConfig.parse(sharedHeads + ":" + k + ":" + block, heads);
        }

        @Override
        public String spec() {
            return "routed:" + sharedHeads + ":" + k + (block == 1 ? "" : ":" + block)
                    + (pattern.isDense() ? "" : ":" + pattern.spec());
        }

        /** Flash for the full patterns (dense, causal), the block-sparse algorithm for the others. */
        @Override
        public Algorithm algorithm() {
            return full() ? Algorithm.FLASH : Algorithm.SPARSE;
        }

        @Override
        public void check(int heads, int kvHeads, int len) {
            try {
                router(heads);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("variant '" + spec() + "' at H = " + heads + ": " + e.getMessage());
            }
        }

        /**
         * Before the router runs, a bound: the inputs and outputs plus the gate (B, L, H) float32, the
         * sparse pattern's block layout (if any), plus the largest work list the engine may build from a
         * gate (token compaction's, {@link GateWork#buildBytes}, in the rows per block of the kernel the engine's
         * starting tiling runs); the router's own buffers are not in the
         * call. Once the gate is known the experiment reports {@link #predictMemory(AttentionRequest)} instead.
         */
        @Override
        public MemoryPrediction predictMemory(AttentionShape shape, DType dtype, boolean causal) {
            return predictMemory(shape, dtype, causal, CudaAttentionEngine.startTiling());
        }

        /** {@link #predictMemory(AttentionShape, DType, boolean)} for an engine in {@code tiling}. */
        MemoryPrediction predictMemory(AttentionShape shape, DType dtype, boolean causal, FlashPlan.Tiling tiling) {
            Pattern effective = causal ? pattern.withCausal() : pattern;
            return new MemoryPrediction(MaterializedPlan.of(shape, dtype, true).ioBytes()
                    + (full() ? 0 : CudaAttentionEngine.sparseLayoutBytes(shape, dtype, effective, MemoryPrediction.SPARSE_BLOCK, tiling))
                    + GateWork.buildBytes(shape.batch(), shape.qLen(), shape.heads(),
                            FlashPlan.blockRows(dtype, shape.headDim(), !full(), tiling), true), 0);
        }

        /**
         * The exact prediction for the gated call {@code req}: inputs, outputs and gate, the sparse
         * pattern's block layout (if any), plus the work list the engine builds for this gate's values
         * ({@link CudaAttentionEngine#gateWorkBytes}).
         *
         * @param req the gated request as it will run
         * @return the predicted peak bytes (no score matrices)
         */
        public MemoryPrediction predictMemory(AttentionRequest req) {
            return new MemoryPrediction(MaterializedPlan.of(req.shape(), req.dtype(), req.gate() != null).ioBytes()
                    + layoutBytes(req.shape(), req.dtype(), req.pattern()) + CudaAttentionEngine.gateWorkBytes(req), 0);
        }

        private long layoutBytes(AttentionShape shape, DType dtype, Pattern effective) {
            return full() ? 0 : CudaAttentionEngine.sparseLayoutBytes(shape, dtype, effective, MemoryPrediction.SPARSE_BLOCK);
        }
    }

    /**
     * Dense flash attention with heads removed before the call (static pruning): the removed query heads'
     * q rows are sliced out, and so are the key/value heads no kept query head reads, so nothing of
     * theirs is computed or allocated. The kept heads' output is exactly dense attention's.
     *
     * @param source   the plan file or the fraction, as given
     * @param plan     the pruning plan (its layer 0 applies), or null for a fraction
     * @param fraction the share of heads to remove, 0 &lt; f &lt; 1, or NaN with a plan
     */
    record Pruned(String source, PruningPlan plan, double fraction) implements Variant {
        @Override
        public String spec() {
            return "pruned:" + source;
        }

        @Override
        public Algorithm algorithm() {
            return Algorithm.FLASH;
        }

        @Override
        public Pattern pattern() {
            return new Pattern.Dense();
        }

        /**
         * The removed query heads at H = {@code heads}, Hkv = {@code kvHeads}, ascending. A fraction removes
         * n = round(f·H) heads: the same number from every key/value group (the last heads of each) when
         * Hkv divides n, else whole groups (the last ones) when H/Hkv divides n. Either way the kept heads
         * still form equal groups, as the contract's grouping requires; anything else is refused.
         *
         * @param heads   H
         * @param kvHeads Hkv, dividing H
         * @return the removed heads, ascending, a new array
         * @throws IllegalArgumentException for a plan of another head count, a fraction removing none or all, or
         *                                  groups left unequal
         */
        public int[] removedHeads(int heads, int kvHeads) {
            int g = heads / kvHeads;
            int[] removed;
            if (plan != null) {
                if (plan.heads() != heads) {
                    throw new IllegalArgumentException("variant '" + spec() + "': the plan is for " + plan.heads()
                            + " heads, the sweep has H = " + heads);
                }
                removed = plan.removedHeads(0);
            } else {
                int n = (int) Math.round(fraction * heads);
                if (n < 1 || n >= heads) {
                    throw new IllegalArgumentException("variant '" + spec() + "': removing " + fraction + " of H = " + heads
                            + " heads is " + n + " heads; keep at least one and remove at least one");
                }
                List<Integer> r = new ArrayList<>();
                if (n % kvHeads == 0) {
                    for (int kv = 0; kv < kvHeads; kv++) {
                        for (int i = g - n / kvHeads; i < g; i++) {
                            r.add(kv * g + i);
                        }
                    }
                } else if (n % g == 0) {
                    for (int h = heads - n; h < heads; h++) {
                        r.add(h);
                    }
                } else {
                    throw new IllegalArgumentException("variant '" + spec() + "': removing " + n + " of H = " + heads
                            + " heads with Hkv = " + kvHeads + " leaves key/value groups of unequal size; choose a fraction "
                            + "that removes a multiple of " + (kvHeads == g ? kvHeads : kvHeads + " or of " + g) + " heads");
                }
                removed = r.stream().mapToInt(Integer::intValue).sorted().toArray();
            }
            int[] perKv = new int[kvHeads];
            boolean[] gone = new boolean[heads];
            for (int h : removed) {
                gone[h] = true;
            }
            for (int h = 0; h < heads; h++) {
                if (!gone[h]) {
                    perKv[h / g]++;
                }
            }
            int size = -1;
            for (int c : perKv) {
                if (c > 0 && size >= 0 && c != size) {
                    throw new IllegalArgumentException("variant '" + spec() + "': removing heads " + Arrays.toString(removed)
                            + " leaves key/value groups of unequal size " + Arrays.toString(perKv) + " (Hkv = " + kvHeads
                            + "); the attention contract's grouping is uniform");
                }
                size = c > 0 ? c : size;
            }
            if (size < 0) {
                throw new IllegalArgumentException("variant '" + spec() + "' removes every head");
            }
            return removed;
        }

        /**
         * {@return the shape of the call with the heads removed}: H minus the removed heads, Hkv minus the groups left
         * empty.
         *
         * @param shape the unpruned call's sizes
         * @throws IllegalArgumentException as {@link #removedHeads} does
         */
        public AttentionShape prunedShape(AttentionShape shape) {
            int[] removed = removedHeads(shape.heads(), shape.kvHeads());
            int g = shape.group();
            boolean[] gone = new boolean[shape.heads()];
            for (int h : removed) {
                gone[h] = true;
            }
            int kvKept = 0;
            for (int kv = 0; kv < shape.kvHeads(); kv++) {
                boolean any = false;
                for (int i = 0; i < g; i++) {
                    any |= !gone[kv * g + i];
                }
                kvKept += any ? 1 : 0;
            }
            return new AttentionShape(shape.batch(), shape.heads() - removed.length, kvKept, shape.qLen(), shape.kvLen(),
                    shape.headDim());
        }

        @Override
        public void check(int heads, int kvHeads, int len) {
            removedHeads(heads, kvHeads);
        }

        /** Flash's inputs and outputs at the pruned shape. */
        @Override
        public MemoryPrediction predictMemory(AttentionShape shape, DType dtype, boolean causal) {
            return MemoryPrediction.flash(prunedShape(shape), dtype);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Pruned p && p.source.equals(source);
        }

        @Override
        public int hashCode() {
            return source.hashCode();
        }
    }

    /**
     * Parses one variant; throws {@link IllegalArgumentException} with a one-line message naming the variant, for a
     * layout or plan file that cannot be read too.
     *
     * @param text a spec of {@link #GRAMMAR}; surrounding blanks ignored
     * @return the variant
     */
    static Variant parse(String text) {
        String s = text == null ? "" : text.strip();
        int colon = s.indexOf(':');
        String kind = colon < 0 ? s : s.substring(0, colon);
        String rest = colon < 0 ? null : s.substring(colon + 1);
        if (rest != null && rest.isBlank()) {
            throw new IllegalArgumentException("variant '" + s + "': a pattern is expected after '" + kind + ":'");
        }
        try {
            return switch (kind) {
                case "materialized" -> new Materialized(rest == null ? new Pattern.Dense() : Patterns.parse(rest));
                case "flash" -> new Flash(rest == null ? new Pattern.Dense() : Patterns.parse(rest));
                case "sparse" -> {
                    if (rest == null) {
                        throw new IllegalArgumentException("variant 'sparse' needs a pattern, e.g. sparse:window:256");
                    }
                    yield new Sparse(Patterns.parse(rest));
                }
                case "routed" -> {
                    // HS:K, then BQ if the next field is a number, then the pattern (whose specs start with a name).
                    String[] f = rest == null ? new String[0] : rest.split(":", -1);
                    int numbers = 0;
                    while (numbers < Math.min(3, f.length) && (numbers < 2 || f[numbers].strip().matches("[+-]?[0-9]+"))) {
                        numbers++;
                    }
                    if (numbers < 2) {
                        throw new IllegalArgumentException("variant '" + s + "': expected routed:HS:K[:BQ][:PATTERN] "
                                + "(shared heads, routed heads kept, tokens per routing block, attention pattern)");
                    }
                    int[] v = new int[numbers];
                    for (int i = 0; i < numbers; i++) {
                        try {
                            v[i] = Integer.parseInt(f[i].strip());
                        } catch (NumberFormatException e) {
                            throw new IllegalArgumentException("variant '" + s + "': '" + f[i] + "' is not an integer");
                        }
                    }
                    Pattern pattern = numbers == f.length ? new Pattern.Dense()
                            : Patterns.parse(String.join(":", Arrays.copyOfRange(f, numbers, f.length)));
                    try {
                        yield new Routed(v[0], v[1], numbers == 3 ? v[2] : 1, pattern);
                    } catch (IllegalArgumentException e) {
                        throw new IllegalArgumentException("variant '" + s + "': expected shared heads ≥ 0, k ≥ 1 and "
                                + "block ≥ 1");
                    }
                }
                case "pruned" -> {
                    if (rest == null) {
                        throw new IllegalArgumentException("variant 'pruned' needs a plan or a fraction, e.g. pruned:plan.json "
                                + "or pruned:0.25");
                    }
                    yield pruned(s, rest.strip());
                }
                default -> throw new IllegalArgumentException("unknown variant '" + s + "' (expected " + GRAMMAR + ")");
            };
        } catch (PatternException | TensorFileException e) {
            throw new IllegalArgumentException("variant '" + s + "': " + e.getMessage(), e);
        }
    }

    private static Pruned pruned(String s, String arg) {
        double f;
        try {
            f = Double.parseDouble(arg);
        } catch (NumberFormatException e) {
            try {
                return new Pruned(arg, PruningPlan.load(Path.of(arg)), Double.NaN);
            } catch (TensorFileException | IllegalArgumentException ex) {
                throw new IllegalArgumentException("variant '" + s + "': " + ex.getMessage());
            }
        }
        if (!(f > 0 && f < 1)) {
            throw new IllegalArgumentException("variant '" + s + "': the fraction of heads to remove must be between 0 and 1 "
                    + "(exclusive), got " + arg);
        }
        return new Pruned(String.format(Locale.ROOT, "%s", arg), null, f);
    }
}
