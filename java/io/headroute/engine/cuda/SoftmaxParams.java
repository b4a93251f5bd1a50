package io.headroute.engine.cuda;

import io.headroute.pattern.Pattern;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The bytes of {@code struct SoftmaxParams} (cuda-kernels/softmax_rows.cu), the argument of the
 * materialized path's row softmax: 4 pointers, then 8 int32 fields.
 */
public final class SoftmaxParams {
    /** sizeof(SoftmaxParams) in bytes. */
    public static final int SIZE = 64;
    static final int DENSE = 0;
    static final int CAUSAL = 1;
    static final int WINDOW = 2;
    static final int LONGFORMER = 3;

    private SoftmaxParams() {}

    /** The token rule the kernel evaluates: {kind, W, G, causal}. Block-level patterns are refused. */
    static int[] rule(Pattern p) {
        if (p instanceof Pattern.Positioned) {
            throw new UnsupportedOperationException("pattern " + p.spec() + " is evaluated at positions of a longer sequence;"
                    + " the GPU materialized path evaluates rules at the call's own positions; use --algo sparse (or flash)");
        }
        boolean causal = false;
        if (p instanceof Pattern.CausalOf c) {
            causal = true;
            p = c.inner();
        }
        int flag = causal ? 1 : 0;
        if (p instanceof Pattern.Dense) {
            return new int[] {DENSE, 0, 0, flag};
        } else if (p instanceof Pattern.Causal) {
            return new int[] {CAUSAL, 0, 0, flag};
        } else if (p instanceof Pattern.Window w) {
            return new int[] {WINDOW, w.w(), 0, flag};
        } else if (p instanceof Pattern.Longformer l) {
            return new int[] {LONGFORMER, l.w(), l.g(), flag};
        }
        throw new UnsupportedOperationException("pattern " + p.spec() + " is block-level; the GPU materialized path "
                + "evaluates dense, causal, window and longformer; use --algo sparse (or flash) for block-level patterns");
    }

    /** Encodes the struct, little-endian; {@code probs} 0 writes P over the scores. */
    static byte[] encode(long scores, long probs, long lse, long gate, int heads, int qLen, int kvLen, Pattern pattern,
            long rows) {
        if (rows > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("B·H·L = " + rows + " rows exceed one launch");
        }
        int[] r = rule(pattern);
        ByteBuffer b = ByteBuffer.allocate(SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(scores).putLong(probs).putLong(lse).putLong(gate);
        b.putInt(heads).putInt(qLen).putInt(kvLen).putInt(r[0]).putInt(r[1]).putInt(r[2]).putInt(r[3]).putInt((int) rows);
        return b.array();
    }
}
