package io.headroute.routing;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The bytes of {@code struct RouterParams} (cuda-kernels/router.cu), the argument of
 * {@code hr_router_topk}: 3 pointers, then 8 int32 fields.
 */
final class RouterParams {
    static final int SIZE = 56;
    static final int OFFSET_SIZES = 24;

    private RouterParams() {}

    /** Groups of tokens, one routing decision each: B · ceil(L / Bq). */
    static long groups(long batch, long qLen, int block) {
        return batch * ((qLen + block - 1) / block);
    }

    /** Bq as the kernel sees it: a block of at least L tokens is the whole sequence (and keeps int sums in range). */
    static int effectiveBlock(int block, long qLen) {
        return (int) Math.min(block, Math.max(1, qLen));
    }

    static byte[] encode(long logits, long gate, long probs, int batch, int qLen, RouterConfig c) {
        long groups = groups(batch, qLen, c.block());
        if (groups > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(groups + " routing groups exceed one launch");
        }
        ByteBuffer b = ByteBuffer.allocate(SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(logits).putLong(gate).putLong(probs);
        b.putInt(batch).putInt(qLen).putInt(c.heads()).putInt(c.sharedHeads()).putInt(c.routedHeads()).putInt(c.k())
                .putInt(effectiveBlock(c.block(), qLen)).putInt((int) groups);
        return b.array();
    }
}
