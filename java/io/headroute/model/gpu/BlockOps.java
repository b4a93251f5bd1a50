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
    enum Lane { COMPUTE, COPY }

    /** A point on a lane (a CUDA event), for ordering and timing. */
    interface Marker extends AutoCloseable {
        @Override
        void close();
    }

    /** Page-locked host memory, so that uploads from it are truly asynchronous. */
    interface HostBuffer extends AutoCloseable {
        /** The memory, little-endian, position 0, capacity = the requested bytes. */
        ByteBuffer buffer();

        @Override
        void close();
    }

    HostBuffer pinned(long bytes);

    /**
     * Copies src's remaining bytes (a direct buffer) to dst on {@code lane}. The copy may read src after this returns
     * (CUDA does not promise that an async copy from pageable memory has read it by then): the caller keeps src
     * unchanged and reachable until the lane's work is done.
     */
    void upload(ByteBuffer src, long dst, Lane lane);

    /** Waits for the compute lane, then copies dst.remaining() bytes from src into dst. */
    void download(long src, ByteBuffer dst);

    /** out = round(x · (1/√(mean(x²) + eps)) · γ), row by row. */
    void rmsNorm(long x, long gamma, long out, long rows, int d, float eps, DType dtype);

    /** Rotary embedding in place on (B, L, heads, D) rows {@code rowStride} elements apart. */
    void rope(long x, long cosSin, long rowStride, int batch, int len, int heads, int headDim, DType dtype);

    /** C (rows × n) = A (rows × k) · W (k × n) + beta · C, fp32 accumulation, one rounding to dtype. */
    void gemm(long a, long w, long c, int rows, int k, int n, float beta, DType dtype);

    /**
     * The head router on the compute lane: logits Z = X·Wr (float32 accumulation and output, into
     * {@code logits}, B·L·Hr floats), then per token or block softmax, top-k and renormalization, writing
     * the gate (B, L, H) float32. X is (B·L, d) and Wr (d, Hr), both in {@code dtype}.
     */
    void route(long x, long wr, long logits, long gate, int batch, int len, int d, RouterConfig router, DType dtype);

    /** Refuses a router this device cannot run, before any device work; nothing by default. */
    default void checkRouter(RouterConfig router) {}

    /**
     * On the compute lane: dst (rows × cols.length, float32, contiguous) = columns {@code cols} of src
     * (rows × srcCols, float32), in the order given.
     */
    void gatherColumns(long src, int srcCols, long dst, int[] cols, long rows);

    /** Device workspace of one attention call (the bound attention's answer); gateBlock as in {@link DeviceAttentionCall}. */
    long attentionWorkspace(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, int gateBlock);

    /** Refuses a call the bound attention cannot compute, or any call when none is bound. */
    void checkAttention(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern);

    void attention(DeviceAttentionCall call);

    /**
     * Waits for the compute lane, then reads back what the last {@link #attention} of {@code call}
     * launched (before anything else reuses its workspace). For tests and benchmarks only: it synchronizes.
     */
    AttentionWork attentionWork(DeviceAttentionCall call);

    Marker mark(Lane lane);

    /** Later work on {@code lane} waits for {@code m}. */
    void waitFor(Lane lane, Marker m);

    /** Milliseconds between two markers of the compute lane; waits for {@code to}. */
    float millis(Marker from, Marker to);

    /** Waits for both lanes. */
    void synchronize();

    @Override
    void close();
}
