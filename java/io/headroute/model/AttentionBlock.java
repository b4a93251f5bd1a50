package io.headroute.model;

import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.ShapeException;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.List;

/**
 * One pre-norm attention block on the host, any {@link AttentionEngine} computing its attention:
 *
 * <pre>
 *   n = round(RMSNorm(x) · γ)                      (B, L, d_model)
 *   Q = round(n · Wq), K = round(n · Wk), V = round(n · Wv)   (B, L, heads · D), fp32 accumulation
 *   Q, K ← round(RoPE(Q)), round(RoPE(K))           positions 0 … L − 1 ({@link RotaryTable})
 *   O = attention(Q, K, V; pattern, causal, gate)   (B, L, heads · D), rounded by the engine
 *   x' = round(x + O · Wo)                           fp32 accumulation, one rounding
 * </pre>
 *
 * "round" is to the model dtype (nothing in f32); x is rounded to it on entry. These are the points
 * where the GPU scheduler stores to memory, so both round at the same places.
 *
 * <p>A pruned head (head mask false) is not in the block at all: the weights are sliced once at
 * construction (Wq's and Wo's blocks of the active heads, Wk's and Wv's of the key/value heads some
 * active head reads), so its projections, attention and output rows are never computed.
 */
public final class AttentionBlock {
    /** The most elements one activation array (rows × width) may hold: a Java array's limit. */
    static final long MAX_ARRAY = Integer.MAX_VALUE - 8;
    private final ModelConfig config;
    private final int index;
    private final LayerSpec spec;
    private final HeadSelection sel;
    private final Rounding round;
    private final float[] gamma;
    private final float[] wq;
    private final float[] wk;
    private final float[] wv;
    private final float[] wo;

    /**
     * Layer {@code index} of {@code config}, its weights sliced to the active heads once, here.
     *
     * @param config the model
     * @param index  the layer, in [0, {@link ModelConfig#layerCount()})
     * @param w      the layer's full weights (pruned heads included), in the model dtype; only read here
     */
    public AttentionBlock(ModelConfig config, int index, LayerWeights w) {
        this.config = config;
        this.index = index;
        this.spec = config.layer(index);
        this.sel = HeadSelection.of(config, spec);
        this.round = Rounding.of(config.dtype());
        int d = config.dModel();
        int hd = config.headDim();
        this.gamma = w.attnNorm().toFloatArray();
        this.wq = BlockMath.columnBlocks(w.wq().toFloatArray(), d, config.heads() * hd, sel.heads(), hd);
        this.wk = BlockMath.columnBlocks(w.wk().toFloatArray(), d, config.kvHeads() * hd, sel.kvHeads(), hd);
        this.wv = BlockMath.columnBlocks(w.wv().toFloatArray(), d, config.kvHeads() * hd, sel.kvHeads(), hd);
        this.wo = BlockMath.rowBlocks(w.wo().toFloatArray(), d, sel.heads(), hd);
    }

    /** {@return the layer's index in the model} */
    public int index() {
        return index;
    }

    /** {@return how the layer attends: pattern, causal, algorithm, head mask, router} */
    public LayerSpec spec() {
        return spec;
    }

    /** {@return the active heads and the attention calls they split into} */
    public HeadSelection selection() {
        return sel;
    }

    /**
     * The block applied to {@code x} (B, L, d_model); returns x' in the model dtype.
     *
     * @param x      the layer input (B, L, d_model), any floating dtype (rounded to the model's on entry)
     * @param gate   optional (B, L, H) multipliers of every query head's output (the router's gate);
     *               the columns of pruned heads are ignored
     * @param engine computes the attention (its dtype is the model's)
     * @return x' (B, L, d_model) in the model dtype
     * @throws ShapeException when x or the gate has the wrong shape, or B·L rows do not fit one Java array
     */
    public Tensor forward(Tensor x, Tensor gate, AttentionEngine engine) {
        return forward(x, gate, engine, null);
    }

    Tensor forward(Tensor x, Tensor gate, AttentionEngine engine, RotaryTable rope) {
        return run(x, gate, engine, rope, false).output();
    }

    /**
     * What the block computes on the way, for head analysis: its output and the tensors attention saw.
     *
     * @param output x' (B, L, d_model), as {@link #forward} returns it
     * @param q      post-RoPE queries of the active heads, (B, H', L, D) in the order of {@link #selection()}
     * @param k      post-RoPE keys of the key/value heads they read, (B, Hkv', L, D)
     * @param o      each active head's attention output before Wo (gate applied), (B, H', L, D)
     */
    public record Trace(Tensor output, Tensor q, Tensor k, Tensor o) {}

    /**
     * {@link #forward} that also keeps Q, K and the heads' outputs (one extra copy of each).
     *
     * @param x      the layer input (B, L, d_model)
     * @param gate   optional (B, L, H) gate, or null
     * @param engine computes the attention
     * @return the output and the tensors attention saw
     */
    public Trace trace(Tensor x, Tensor gate, AttentionEngine engine) {
        return run(x, gate, engine, null, true);
    }

    private Trace run(Tensor x, Tensor gate, AttentionEngine engine, RotaryTable rope, boolean keep) {
        if (x.rank() != 3 || x.dim(2) != config.dModel()) {
            throw new ShapeException("block input must have shape (B, L, d_model = " + config.dModel() + "), got "
                    + x.shapeString());
        }
        int b = Math.toIntExact(x.dim(0));
        int len = Math.toIntExact(x.dim(1));
        if (gate != null && (gate.rank() != 3 || gate.dim(0) != b || gate.dim(1) != len || gate.dim(2) != config.heads())) {
            throw new ShapeException("gate of layer " + index + " must have shape (B, L, H) = (" + b + ", " + len + ", "
                    + config.heads() + "), got " + gate.shapeString());
        }
        if (rope == null || rope.length() != len) {
            rope = RotaryTable.of(len, config.headDim(), config.ropeTheta());
        }
        int d = config.dModel();
        int hd = config.headDim();
        int rows = b * len;
        int nq = sel.headCount();
        int nkv = sel.kvHeadCount();
        long widest = (long) rows * Math.max(d, Math.max(nq, nkv) * (long) hd);
        if (widest > MAX_ARRAY) {
            throw new ShapeException("layer " + index + " on the CPU: B·L = " + rows + " rows × " + (widest / rows)
                    + " values = " + widest + " elements exceed one Java array (" + MAX_ARRAY + "); use fewer rows (B, L)");
        }
        float[] xs = x.toDType(config.dtype()).toFloatArray();
        float[] n = BlockMath.rmsNorm(xs, rows, d, gamma, config.normEps(), round);
        float[] q = BlockMath.matmul(n, rows, d, wq, nq * hd);
        float[] k = BlockMath.matmul(n, rows, d, wk, nkv * hd);
        float[] v = BlockMath.matmul(n, rows, d, wv, nkv * hd);
        round.applyAll(q);
        round.applyAll(k);
        round.applyAll(v);
        rope.apply(q, b, nq, hd, round);
        rope.apply(k, b, nkv, hd, round);
        float[] g = gate == null ? null : gate.toFloatArray();
        float[] o = new float[rows * nq * hd];
        for (HeadSelection.Call c : sel.calls()) {
            Tensor qt = heads(q, b, len, nq, hd, c.qStart(), c.qCount());
            Tensor kt = heads(k, b, len, nkv, hd, c.kvStart(), c.kvCount());
            Tensor vt = heads(v, b, len, nkv, hd, c.kvStart(), c.kvCount());
            Tensor gt = g == null ? null : gateColumns(g, b, len, config.heads(), c.heads());
            AttentionRequest req = AttentionRequest.builder(qt, kt, vt).gate(gt).pattern(sel.pattern(spec.pattern(), c, len))
                    .causal(spec.causal()).dtype(config.dtype()).algorithm(spec.algorithm()).build();
            AttentionResult r = engine.run(req);
            unheads(r.o().toFloatArray(), o, b, len, nq, hd, c.qStart(), c.qCount());
        }
        float[] y = BlockMath.matmul(o, rows, nq * hd, wo, d);
        for (int i = 0; i < y.length; i++) {
            y[i] = round.apply(xs[i] + y[i]);
        }
        Tensor out = config.dtype() == DType.F32 ? Tensor.ofFloats(y, b, len, d) : Tensor.ofFloats(config.dtype(), y, b, len, d);
        if (!keep) {
            return new Trace(out, null, null, null);
        }
        return new Trace(out, heads(q, b, len, nq, hd, 0, nq), heads(k, b, len, nkv, hd, 0, nkv), heads(o, b, len, nq, hd, 0, nq));
    }

    /** Heads [h0, h0 + count) of a (B, L, n, D) array as a (B, count, L, D) tensor. */
    private Tensor heads(float[] a, int b, int len, int n, int hd, int h0, int count) {
        float[] out = new float[b * count * len * hd];
        for (int bi = 0; bi < b; bi++) {
            for (int h = 0; h < count; h++) {
                for (int t = 0; t < len; t++) {
                    System.arraycopy(a, ((bi * len + t) * n + h0 + h) * hd, out, ((bi * count + h) * len + t) * hd, hd);
                }
            }
        }
        return Tensor.ofFloats(config.dtype(), out, b, count, len, hd);
    }

    /** Writes a (B, count, L, D) result into heads [h0, h0 + count) of a (B, L, n, D) array. */
    private static void unheads(float[] src, float[] a, int b, int len, int n, int hd, int h0, int count) {
        for (int bi = 0; bi < b; bi++) {
            for (int h = 0; h < count; h++) {
                for (int t = 0; t < len; t++) {
                    System.arraycopy(src, ((bi * count + h) * len + t) * hd, a, ((bi * len + t) * n + h0 + h) * hd, hd);
                }
            }
        }
    }

    private static Tensor gateColumns(float[] g, int b, int len, int h, int[] heads) {
        float[] out = new float[b * len * heads.length];
        for (int r = 0; r < b * len; r++) {
            for (int i = 0; i < heads.length; i++) {
                out[r * heads.length + i] = g[r * h + heads[i]];
            }
        }
        return Tensor.ofFloats(out, b, len, heads.length);
    }

    /** {@return the bytes of this block's sliced weights in the model dtype (what a device holds for it)} */
    public long weightBytes() {
        return (long) (gamma.length + wq.length + wk.length + wv.length + wo.length) * config.dtype().byteSize();
    }

    /** The sliced weights in upload order: γ, Wq, Wk, Wv, Wo (float32 values, already in the model dtype). */
    List<float[]> slicedWeights() {
        return List.of(gamma, wq, wk, wv, wo);
    }
}
