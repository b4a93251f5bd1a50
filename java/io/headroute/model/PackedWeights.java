package io.headroute.model;

import io.headroute.tensor.DType;
import io.headroute.tensor.HalfFloats;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * One layer's sliced weights as one device image: γ, Wq, Wk, Wv, Wo (active heads only) in the model
 * dtype, row-major, each starting at a multiple of {@value #ALIGN} bytes (cuBLAS's preferred
 * alignment). One copy moves a whole layer.
 */
public final class PackedWeights {
    public static final int ALIGN = 256;
    /** Index of each matrix in {@link #offsets}. */
    public static final int GAMMA = 0;
    public static final int WQ = 1;
    public static final int WK = 2;
    public static final int WV = 3;
    public static final int WO = 4;

    private PackedWeights() {}

    /** Byte offsets of γ, Wq, Wk, Wv, Wo, then the image's total size, for a layer's head selection. */
    public static long[] offsets(ModelConfig c, HeadSelection s) {
        long d = c.dModel();
        long qd = (long) s.headCount() * c.headDim();
        long kvd = (long) s.kvHeadCount() * c.headDim();
        long[] elems = {d, d * qd, d * kvd, d * kvd, qd * d};
        long[] off = new long[6];
        long at = 0;
        for (int i = 0; i < elems.length; i++) {
            off[i] = at;
            at += (elems[i] * c.dtype().byteSize() + ALIGN - 1) / ALIGN * ALIGN;
        }
        off[5] = at;
        return off;
    }

    /** Writes block {@code b}'s image into {@code dst} from its position (which must have room). */
    public static void write(AttentionBlock b, ModelConfig c, ByteBuffer dst) {
        long[] off = offsets(c, b.selection());
        ByteBuffer out = dst.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        int base = out.position();
        List<float[]> w = b.slicedWeights();
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
