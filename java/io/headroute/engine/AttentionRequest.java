package io.headroute.engine;

import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.Objects;

/**
 * One attention call under the contract: q (B, H, L, D), k and v (B, Hkv, S, D), optional gate
 * (B, L, H), a pattern with the causal rule already folded in, the softmax scale, the compute dtype,
 * the algorithm and the block size of the sparse algorithm's layout. Validated on construction; build
 * with {@link #builder}.
 */
public final class AttentionRequest {
    /** The sparse algorithm's default block size. */
    public static final int DEFAULT_BLOCK_SIZE = 64;

    private final Tensor q;
    private final Tensor k;
    private final Tensor v;
    private final Tensor gate;
    private final Pattern pattern;
    private final float scale;
    private final DType dtype;
    private final Algorithm algorithm;
    private final boolean wantLse;
    private final int blockSize;
    private final boolean fp32Scores;
    private final AttentionShape shape;

    private AttentionRequest(Builder b) {
        this.q = Objects.requireNonNull(b.q, "q");
        this.k = Objects.requireNonNull(b.k, "k");
        this.v = Objects.requireNonNull(b.v, "v");
        this.gate = b.gate;
        Pattern folded = b.causal ? b.pattern.withCausal() : b.pattern;
        this.dtype = b.dtype;
        this.algorithm = b.algorithm;
        this.wantLse = b.wantLse;
        if (b.blockSize != 64 && b.blockSize != 128) {
            throw new ShapeException("block size must be 64 or 128, got " + b.blockSize);
        }
        this.blockSize = b.blockSize;
        this.fp32Scores = b.fp32Scores;
        this.shape = validate(q, k, v, gate);
        if (dtype != DType.F32 && dtype != DType.F16 && dtype != DType.BF16) {
            throw new ShapeException("compute dtype must be f32, f16 or bf16, got " + dtype.cliName());
        }
        float s = b.scale == null ? (float) (1.0 / Math.sqrt(shape.headDim())) : b.scale;
        if (!Float.isFinite(s)) {
            throw new ShapeException("scale must be finite, got " + s);
        }
        this.scale = s;
        this.pattern = positioned(folded, b.positions, shape);
        pattern.check(shape.heads(), shape.qLen(), shape.kvLen());
    }

    /**
     * The pattern at the builder's positions (checked against the sizes in every case): unchanged without positions,
     * at the default ones (the last L of S keys, S the sequence), or for a dense pattern (no rule depends on
     * positions); else {@link Pattern.Positioned}.
     */
    private static Pattern positioned(Pattern p, int[] positions, AttentionShape sh) {
        if (positions == null) {
            return p;
        }
        int qStart = positions[0];
        int kStart = positions[1];
        int keys = positions[2];
        if (qStart == sh.kvLen() - sh.qLen() && kStart == 0 && keys == sh.kvLen()) {
            return p;
        }
        Pattern.Positioned at;
        try {
            at = new Pattern.Positioned(p, qStart, kStart, keys, sh.qLen(), sh.kvLen());
        } catch (IllegalArgumentException e) {
            throw new ShapeException(e.getMessage());
        }
        return p.isDense() ? p : at;
    }

    private static AttentionShape validate(Tensor q, Tensor k, Tensor v, Tensor gate) {
        requireRank("q", q, 4, "(B, H, L, D)");
        requireRank("k", k, 4, "(B, Hkv, S, D)");
        requireRank("v", v, 4, "(B, Hkv, S, D)");
        for (var e : new Object[][] {{"q", q}, {"k", k}, {"v", v}}) {
            Tensor t = (Tensor) e[1];
            if (!t.dtype().isFloating()) {
                throw new ShapeException(e[0] + " must be a floating tensor (f32, f16 or bf16), got " + t.dtype().cliName());
            }
        }
        if (!java.util.Arrays.equals(k.shape(), v.shape())) {
            throw new ShapeException("k " + k.shapeString() + " and v " + v.shapeString() + " must have the same shape");
        }
        if (k.dim(0) != q.dim(0)) {
            throw new ShapeException("batch differs: q " + q.shapeString() + " has B = " + q.dim(0) + ", k " + k.shapeString()
                    + " has B = " + k.dim(0));
        }
        if (k.dim(3) != q.dim(3)) {
            throw new ShapeException("head dim differs: q " + q.shapeString() + " has D = " + q.dim(3) + ", k "
                    + k.shapeString() + " has D = " + k.dim(3));
        }
        AttentionShape s = new AttentionShape(toInt("B", q.dim(0)), toInt("H", q.dim(1)), toInt("Hkv", k.dim(1)),
                toInt("L", q.dim(2)), toInt("S", k.dim(2)), toInt("D", q.dim(3)));
        if (gate != null) {
            requireRank("gate", gate, 3, "(B, L, H)");
            if (gate.dim(0) != s.batch() || gate.dim(1) != s.qLen() || gate.dim(2) != s.heads()) {
                throw new ShapeException("gate " + gate.shapeString() + " must have shape (B, L, H) = (" + s.batch() + ", "
                        + s.qLen() + ", " + s.heads() + ")");
            }
            if (!gate.dtype().isFloating()) {
                throw new ShapeException("gate must be a floating tensor, got " + gate.dtype().cliName());
            }
            float[] g = gate.toFloatArray();
            for (int i = 0; i < g.length; i++) {
                if (!Float.isFinite(g[i])) {
                    throw new ShapeException("gate holds a non-finite value (" + g[i] + ") at flat index " + i);
                }
            }
        }
        return s;
    }

    private static void requireRank(String name, Tensor t, int rank, String expected) {
        if (t.rank() != rank) {
            throw new ShapeException(name + " must have shape " + expected + ", got " + t.shapeString());
        }
    }

    private static int toInt(String name, long v) {
        if (v > Integer.MAX_VALUE) {
            throw new ShapeException(name + " = " + v + " is too large");
        }
        return (int) v;
    }

    /**
     * A builder for attention over q (B, H, L, D), k and v (B, Hkv, S, D), each of any floating dtype (rounded to the
     * compute dtype when run). Nothing is checked until {@link Builder#build}.
     *
     * @param q queries (B, H, L, D)
     * @param k keys (B, Hkv, S, D)
     * @param v values (B, Hkv, S, D), the shape of {@code k}
     * @return a builder with the defaults listed on {@link Builder}
     */
    public static Builder builder(Tensor q, Tensor k, Tensor v) {
        return new Builder(q, k, v);
    }

    /** {@return the queries (B, H, L, D) as given, in their own dtype (the engine rounds them to {@link #dtype()})} */
    public Tensor q() {
        return q;
    }

    /** {@return the keys (B, Hkv, S, D) as given, in their own dtype} */
    public Tensor k() {
        return k;
    }

    /** {@return the values (B, Hkv, S, D) as given, in their own dtype} */
    public Tensor v() {
        return v;
    }

    /** {@return the gate (B, L, H), all values finite, or null for none} */
    public Tensor gate() {
        return gate;
    }

    /** {@return the effective pattern (causal folded in, {@link Pattern.Positioned} at the builder's positions), checked against H, L and S} */
    public Pattern pattern() {
        return pattern;
    }

    /** {@return the softmax scale applied to q·k: the builder's, or 1/sqrt(D) when none was given; finite} */
    public float scale() {
        return scale;
    }

    /**
     * Refuses (one line) inputs this request cannot attend to meaningfully: a NaN or infinity in q, k or v (or one
     * made by rounding to the dtype), or a scale that could overflow the scores: |scale|·log2(e)·D·max|q|·max|k|, a
     * bound on every scaled score the kernels form, past half of fp32's range (a row's maximum is subtracted from
     * each score). Scans the inputs: for callers that check a user's data (the command line), not every call.
     *
     * @throws IllegalArgumentException naming the first non-finite value and its flat index, or the overflow bound
     */
    public void requireFiniteInputs() {
        double maxQ = q.requireFinite("q", dtype);
        double maxK = k.requireFinite("k", dtype);
        v.requireFinite("v", dtype);
        double bound = Math.abs((double) scale) * 1.4426950408889634 * shape.headDim() * maxQ * maxK;
        if (bound > Float.MAX_VALUE / 2) {
            throw new IllegalArgumentException("scale " + scale + " can overflow the scores: |scale|·log2(e)·D·max|q|·max|k| = "
                    + String.format(java.util.Locale.ROOT, "%.3g", bound) + " passes half of fp32's range ("
                    + String.format(java.util.Locale.ROOT, "%.3g", Float.MAX_VALUE / 2.0) + ")");
        }
    }

    /** {@return the compute dtype: f32, f16 or bf16 (inputs are rounded to it; o is returned in it)} */
    public DType dtype() {
        return dtype;
    }

    /** {@return the requested algorithm, possibly {@link Algorithm#AUTO} (the engine then picks)} */
    public Algorithm algorithm() {
        return algorithm;
    }

    /** {@return whether the result carries lse (B, H, L) float32, the natural-log sum of exp of the scaled scores} */
    public boolean wantLse() {
        return wantLse;
    }

    /** {@return the validated sizes B, H, Hkv, L, S and D read from q and k} */
    public AttentionShape shape() {
        return shape;
    }

    /** {@return the block size (query tile and key block) of the block-sparse layout: 64 (default) or 128} */
    public int blockSize() {
        return blockSize;
    }

    /**
     * Whether the materialized algorithm stores its L × S scores in fp32 even for fp16/bf16 inputs (on
     * the GPU; costs 4 bytes per score plus P in the input dtype instead of one matrix in the input
     * dtype). The CPU computes scores in fp32 regardless. {@link ExecutionStats#scoreDType} says which ran.
     *
     * @return true for fp32 scores; false (default) for scores in the compute dtype
     */
    public boolean fp32Scores() {
        return fp32Scores;
    }

    /**
     * Builder with the contract's defaults: dense, no gate, scale 1/sqrt(D), f32, auto, no lse, block size 64,
     * materialized scores in the input dtype.
     */
    public static final class Builder {
        private final Tensor q;
        private final Tensor k;
        private final Tensor v;
        private Tensor gate;
        private Pattern pattern = new Pattern.Dense();
        private boolean causal;
        private Float scale;
        private DType dtype = DType.F32;
        private Algorithm algorithm = Algorithm.AUTO;
        private boolean wantLse;
        private int blockSize = DEFAULT_BLOCK_SIZE;
        private boolean fp32Scores;
        private int[] positions;

        private Builder(Tensor q, Tensor k, Tensor v) {
            this.q = q;
            this.k = k;
            this.v = v;
        }

        /**
         * The gate (B, L, H), any floating dtype, applied in fp32: o[b, h, i] is multiplied by g[b, i, h], and a row
         * whose gate is exactly 0 is not computed (o = 0, lse = −∞). Null for none. {@link #build} refuses a
         * non-finite value.
         *
         * @param g the gate (B, L, H), or null
         * @return this builder
         */
        public Builder gate(Tensor g) {
            this.gate = g;
            return this;
        }

        /**
         * Which keys each query may attend (default dense); {@link #causal} adds j ≤ p to it.
         *
         * @param p the pattern; not null
         * @return this builder
         */
        public Builder pattern(Pattern p) {
            this.pattern = Objects.requireNonNull(p, "pattern");
            return this;
        }

        /**
         * Where this call's queries and keys sit in a longer sequence, for a shard of one attention whose pattern
         * depends on positions (split-KV decoding or ring attention with a window, global tokens, BigBird, a layout
         * or the causal rule): query i is the sequence's query {@code queryStart + i}, key j its key
         * {@code keyStart + j}, and the pattern (with {@link #causal}) is the whole attention's, over
         * {@code sequenceKeys} keys. Merged with {@link ShardMerge}, the shards give the whole attention. Without this
         * the queries sit at the last L of the call's S keys, which is {@code positions(S − L, 0, S)}. L ≤ S still
         * holds per call.
         *
         * @param queryStart   the sequence position of query 0, at least 0, with queryStart + L ≤ sequenceKeys
         * @param keyStart     the sequence position of key 0, at least 0, with keyStart + S ≤ sequenceKeys
         * @param sequenceKeys the whole sequence's keys
         * @return this builder
         */
        public Builder positions(int queryStart, int keyStart, int sequenceKeys) {
            this.positions = new int[] {queryStart, keyStart, sequenceKeys};
            return this;
        }

        /**
         * Adds j ≤ p to the pattern: query i, at key position p = i + S − L, sees no later key.
         *
         * @param c true for causal; false (default) leaves the pattern as given
         * @return this builder
         */
        public Builder causal(boolean c) {
            this.causal = c;
            return this;
        }

        /**
         * Softmax scale multiplying q·k; null means 1/sqrt(D).
         *
         * @param s the scale, finite ({@link #build} refuses another), or null
         * @return this builder
         */
        public Builder scale(Float s) {
            this.scale = s;
            return this;
        }

        /**
         * The compute dtype, f32 (default), f16 or bf16: q, k and v are rounded to it, arithmetic is fp32, and o is
         * returned in it. It need not be the inputs' dtype.
         *
         * @param d the compute dtype; not null ({@link #build} refuses a non-floating one)
         * @return this builder
         */
        public Builder dtype(DType d) {
            this.dtype = Objects.requireNonNull(d, "dtype");
            return this;
        }

        /**
         * The algorithm (default auto: the engine picks; {@link ExecutionStats#algorithm} says which ran).
         *
         * @param a the algorithm; not null
         * @return this builder
         */
        public Builder algorithm(Algorithm a) {
            this.algorithm = Objects.requireNonNull(a, "algorithm");
            return this;
        }

        /**
         * Whether the result carries lse (B, H, L) float32; without it {@link AttentionResult#lse} is null.
         *
         * @param w true to ask for lse (needed to merge shards with {@link ShardMerge}); false by default
         * @return this builder
         */
        public Builder wantLse(boolean w) {
            this.wantLse = w;
            return this;
        }

        /**
         * Block size of the sparse layout: 64 or 128 (anything else is refused by {@link #build}).
         *
         * @param bs the block size in rows and keys
         * @return this builder
         */
        public Builder blockSize(int bs) {
            this.blockSize = bs;
            return this;
        }

        /**
         * Materialized scores in fp32 for fp16/bf16 inputs (see {@link AttentionRequest#fp32Scores}).
         *
         * @param f true for fp32 scores; false (default) for scores in the compute dtype
         * @return this builder
         */
        public Builder fp32Scores(boolean f) {
            this.fp32Scores = f;
            return this;
        }

        /**
         * The validated request.
         *
         * @return a request whose shape, pattern, dtype, scale and gate have been checked
         * @throws NullPointerException when q, k or v is null
         * @throws ShapeException for shapes outside the contract, a non-floating tensor or compute dtype, a block size
         *     other than 64 or 128, a non-finite scale or gate value, positions outside the sequence
         * @throws io.headroute.pattern.PatternException when the pattern does not fit H or S (a layout's heads or
         *     blocks)
         */
        public AttentionRequest build() {
            return new AttentionRequest(this);
        }
    }
}
