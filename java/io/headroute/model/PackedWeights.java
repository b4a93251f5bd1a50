package io.headroute.model;

import io.headroute.tensor.DType;
import io.headroute.tensor.HalfFloats;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * One layer's sliced weights as one device image: γ, Wq, Wk, Wv, Wo (active heads only) and, for a
 * routed layer, the router weights Wr (d_model, Hr, all heads: the router ranks every head) in the
 * model dtype, row-major, each starting at a multiple of {@value #ALIGN} bytes (cuBLAS's preferred
 * alignment). One copy moves a whole layer.
 */
public final class PackedWeights {
    /** The alignment of each matrix in the image, in bytes. */
    public static final int ALIGN = 256;
    /** Index of each matrix in {@link #offsets}: γ. */
    public static final int GAMMA = 0;
    /** Index of Wq's offset in {@link #offsets}. */
    public static final int WQ = 1;
    /** Index of Wk's offset in {@link #offsets}. */
    public static final int WK = 2;
    /** Index of Wv's offset in {@link #offsets}. */
    public static final int WV = 3;
    /** Index of Wo's offset in {@link #offsets}. */
    public static final int WO = 4;
    /** Wr of a routed layer (an empty slot otherwise). */
    public static final int ROUTER = 5;
    /** Index of the image's total size in {@link #offsets}. */
    public static final int TOTAL = 6;

    private PackedWeights() {}

    /**
     * Byte offsets of γ, Wq, Wk, Wv, Wo, Wr, then the image's total size ({@link #TOTAL}), for layer {@code layer}.
     *
     * @param c     the config (its dtype sets the element size)
     * @param layer the layer, whose head mask and router set the sizes
     * @return {@link #TOTAL} + 1 offsets, each a multiple of {@link #ALIGN}; an unrouted layer's Wr slot is empty
     */
    public static long[] offsets(ModelConfig c, int layer) {
        LayerSpec spec = c.layer(layer);
        HeadSelection s = HeadSelection.of(c, spec);
        long d = c.dModel();
        long qd = (long) s.headCount() * c.headDim();
        long kvd = (long) s.kvHeadCount() * c.headDim();
        long wr = spec.routed() ? d * spec.router().routedHeads() : 0;
        long[] elems = {d, d * qd, d * kvd, d * kvd, qd * d, wr};
        long[] off = new long[TOTAL + 1];
        long at = 0;
        for (int i = 0; i < elems.length; i++) {
            off[i] = at;
            at += (elems[i] * c.dtype().byteSize() + ALIGN - 1) / ALIGN * ALIGN;
        }
        off[TOTAL] = at;
        return off;
    }

    /**
     * Writes block {@code b}'s image into {@code dst} from its position (which must have room);
     * {@code router} is the layer's Wr (null for an unrouted layer).
     *
     * @param b      the block whose sliced weights to write
     * @param router Wr (d_model, Hr), any floating dtype (rounded to the model's), or null
     * @param c      the model config
     * @param dst    receives {@code offsets(c, b.index())[TOTAL]} bytes from its position, which is left unchanged;
     *               the padding between matrices is not written
     */
    public static void write(AttentionBlock b, Tensor router, ModelConfig c, ByteBuffer dst) {
        long[] off = offsets(c, b.index());
        ByteBuffer out = dst.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        int base = out.position();
        List<float[]> w = new ArrayList<>(b.slicedWeights());
        if (router != null) {
            w.add(router.toDType(c.dtype()).toFloatArray());
        }
        DType dt = c.dtype();
        for (int m = 0; m < w.size(); m++) {
            out.position(base + Math.toIntExact(off[m]));
            for (float v : w.get(m)) {
                switch (dt) {
                    case F32 -> out.putFloat(v);
                    case F16 -> out.putShort(HalfFloats.floatToF16(v));
                    default -> out.putShort(HalfFloats.floatToBf16(v));
                }
            }
        }
    }
}
