package io.headroute.model.gpu;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionShape;
import io.headroute.pattern.Pattern;
import io.headroute.routing.RouterConfig;
import io.headroute.tensor.DType;
import java.nio.ByteBuffer;

/**
 * The device operations a {@link LayerScheduler} issues, asynchronous on one of two lanes (the compute
 * stream and the weight-copy stream). {@link CudaBlockOps} runs them on a GPU; a test replaces them
 * with no-ops to run the scheduler's real allocation path over a fake allocator. Device addresses are
 * raw longs from the scheduler's pool; matrices are row-major.
 */
public interface BlockOps extends AutoCloseable {
    /** The compute stream, or the stream that uploads weights ahead of the layer that needs them. */
    enum Lane {
        /** The stream every kernel, GEMM and activation copy runs on, in order. */
        COMPUTE,
        /** The stream that uploads just-in-time weights while the compute lane works. */
        COPY
    }

    /** A point on a lane (a CUDA event), for ordering and timing. */
    interface Marker extends AutoCloseable {
        @Override
        void close();
    }

    /** Page-locked host memory, so that uploads from it are truly asynchronous. */
    interface HostBuffer extends AutoCloseable {
        /** {@return the memory, little-endian, position 0, capacity = the requested bytes} */
        ByteBuffer buffer();

        @Override
        void close();
    }

    /**
     * {@return page-locked host memory of {@code bytes} bytes, owned by the caller}
     *
     * @param bytes the size, 0 … {@code Integer.MAX_VALUE}
     */
    HostBuffer pinned(long bytes);

    /**
     * Copies src's remaining bytes (a direct buffer) to dst on {@code lane}. The copy may read src after this returns
     * (CUDA does not promise that an async copy from pageable memory has read it by then): the caller keeps src
     * unchanged and reachable until the lane's work is done.
     *
     * @param src  the bytes from its position to its limit; a direct buffer (pinned for a truly asynchronous copy);
     *             its position is not moved
     * @param dst  the device address to copy to
     * @param lane the stream to order the copy on
     */
    void upload(ByteBuffer src, long dst, Lane lane);

    /**
     * Waits for the compute lane, then copies dst.remaining() bytes from src into dst.
     *
     * @param src the device address to copy from
     * @param dst receives the bytes from its position; a direct buffer
     */
    void download(long src, ByteBuffer dst);

    /**
     * out = round(x · (1/√(mean(x²) + eps)) · γ), row by row, on the compute lane.
     *
     * @param x     device address of x (rows × d) in {@code dtype}
     * @param gamma device address of γ (d) in {@code dtype}
     * @param out   device address of the output (rows × d) in {@code dtype}
     * @param rows  the rows, B·L; at most {@code Integer.MAX_VALUE}
     * @param d     d_model
     * @param eps   the RMSNorm epsilon
     * @param dtype f32, f16 or bf16
     */
    void rmsNorm(long x, long gamma, long out, long rows, int d, float eps, DType dtype);

    /**
     * Rotary embedding in place on (B, L, heads, D) rows {@code rowStride} elements apart, on the compute lane,
     * rounded to {@code dtype} (see {@link io.headroute.model.RotaryTable}).
     *
     * @param x         device address of the first head's vector at (b = 0, t = 0), {@code dtype} elements
     * @param cosSin    device address of the (L, D/2, 2) float32 table
     * @param rowStride elements from one token's row to the next (heads · D for a compact projection)
     * @param batch     B
     * @param len       L
     * @param heads     the heads per row rotated
     * @param headDim   D, even
     * @param dtype     f32, f16 or bf16
     */
    void rope(long x, long cosSin, long rowStride, int batch, int len, int heads, int headDim, DType dtype);

    /**
     * C (rows × n) = A (rows × k) · W (k × n) + beta · C, fp32 accumulation, one rounding to dtype, on the compute
     * lane. Row-major, contiguous.
     *
     * @param a     device address of A
     * @param w     device address of W
     * @param c     device address of C
     * @param rows  the rows of A and C
     * @param k     the columns of A, rows of W
     * @param n     the columns of W and C
     * @param beta  0 to overwrite C, 1 to add to it (the residual add)
     * @param dtype the dtype of A, W and C: f32, f16 or bf16
     */
    void gemm(long a, long w, long c, int rows, int k, int n, float beta, DType dtype);

    /**
     * The head router on the compute lane: logits Z = X·Wr (float32 accumulation and output, into
     * {@code logits}, B·L·Hr floats), then per token or block softmax, top-k and renormalization, writing
     * the gate (B, L, H) float32. X is (B·L, d) and Wr (d, Hr), both in {@code dtype}.
     *
     * @param x      device address of X
     * @param wr     device address of Wr
     * @param logits device address of the logits scratch, B·L·Hr float32
     * @param gate   device address of the gate output, B·L·H float32
     * @param batch  B
     * @param len    L
     * @param d      d_model
     * @param router the routing
     * @param dtype  f32, f16 or bf16
     */
    void route(long x, long wr, long logits, long gate, int batch, int len, int d, RouterConfig router, DType dtype);

    /**
     * Refuses a router this device cannot run, before any device work; nothing by default.
     *
     * @param router the routing a layer asks for
     * @throws UnsupportedOperationException when it cannot run here
     */
    default void checkRouter(RouterConfig router) {}

    /**
     * On the compute lane: dst (rows × cols.length, float32, contiguous) = columns {@code cols} of src
     * (rows × srcCols, float32), in the order given.
     *
     * @param src     device address of the source matrix
     * @param srcCols the source's columns (its row pitch in floats)
     * @param dst     device address of the destination
     * @param cols    the source columns to gather, each in [0, srcCols)
     * @param rows    the rows of both
     */
    void gatherColumns(long src, int srcCols, long dst, int[] cols, long rows);

    /**
     * Device workspace of one attention call (the bound attention's answer); gateBlock as in {@link DeviceAttentionCall}.
     *
     * @param shape     the call's sizes
     * @param dtype     the compute dtype
     * @param algorithm the algorithm
     * @param pattern   the call's effective pattern
     * @param gateBlock 0, 1 or the router block Bq
     * @return bytes of scratch the call needs, 0 for none
     */
    long attentionWorkspace(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, int gateBlock);

    /**
     * Refuses a call the bound attention cannot compute, or any call when none is bound.
     *
     * @param shape     the call's sizes
     * @param dtype     the compute dtype
     * @param algorithm the algorithm
     * @param pattern   the call's effective pattern
     * @throws UnsupportedOperationException with a one-line reason
     */
    void checkAttention(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern);

    /**
     * Queues one attention call on the compute lane through the bound {@link DeviceAttention}.
     *
     * @param call the call, its buffers the scheduler's
     * @throws UnsupportedOperationException when no attention is bound
     */
    void attention(DeviceAttentionCall call);

    /**
     * Waits for the compute lane, then reads back what the last {@link #attention} of {@code call}
     * launched (before anything else reuses its workspace). For tests and benchmarks only: it synchronizes.
     *
     * @param call the call last passed to {@link #attention}
     * @return the query tiles launched against the grid
     */
    AttentionWork attentionWork(DeviceAttentionCall call);

    /**
     * {@return a marker recorded now on {@code lane}, owned by the caller}
     *
     * @param lane the lane to mark
     */
    Marker mark(Lane lane);

    /**
     * Later work on {@code lane} waits for {@code m}; the host does not wait.
     *
     * @param lane the lane that waits
     * @param m    a marker of either lane
     */
    void waitFor(Lane lane, Marker m);

    /**
     * Milliseconds between two markers of the compute lane; waits for {@code to}.
     *
     * @param from the earlier marker
     * @param to   the later marker
     * @return the elapsed device time in milliseconds
     */
    float millis(Marker from, Marker to);

    /** Waits for both lanes. */
    void synchronize();

    @Override
    void close();
}
