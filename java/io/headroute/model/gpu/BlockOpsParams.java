package io.headroute.model.gpu;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The bytes of {@code struct RmsNormParams} and {@code struct RopeParams} (cuda-kernels/block_ops.cu),
 * the by-value arguments of the block kernels; the CUDA side pins their layouts with static_asserts.
 */
public final class BlockOpsParams {
    /** sizeof(RmsNormParams): 3 pointers, int64 rows, int32 d, float eps. */
    public static final int RMSNORM_SIZE = 40;
    /** sizeof(RopeParams): 2 pointers, int64 row stride, 4 int32 sizes. */
    public static final int ROPE_SIZE = 40;

    private BlockOpsParams() {}

    /**
     * {@return the {@value #RMSNORM_SIZE} little-endian bytes of {@code RmsNormParams}}
     *
     * @param x     device address of the input rows
     * @param gamma device address of γ
     * @param out   device address of the output rows
     * @param rows  the rows
     * @param d     d_model, the row width
     * @param eps   the RMSNorm epsilon
     */
    public static byte[] rmsNorm(long x, long gamma, long out, long rows, int d, float eps) {
        ByteBuffer b = ByteBuffer.allocate(RMSNORM_SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(x).putLong(gamma).putLong(out).putLong(rows).putInt(d).putFloat(eps);
        return b.array();
    }

    /**
     * {@return the {@value #ROPE_SIZE} little-endian bytes of {@code RopeParams}}
     *
     * @param x         device address of the vectors rotated in place
     * @param cosSin    device address of the (L, D/2, 2) float32 table
     * @param rowStride elements between consecutive token rows
     * @param batch     B
     * @param len       L
     * @param heads     the heads per row
     * @param headDim   D
     */
    public static byte[] rope(long x, long cosSin, long rowStride, int batch, int len, int heads, int headDim) {
        ByteBuffer b = ByteBuffer.allocate(ROPE_SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(x).putLong(cosSin).putLong(rowStride).putInt(batch).putInt(len).putInt(heads).putInt(headDim);
        return b.array();
    }
}
