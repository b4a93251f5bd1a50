package io.headroute.model.gpu;

import io.headroute.cuda.CudaStream;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionShape;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;

/**
 * The attention step of a GPU layer: whatever computes attention on device memory binds here (the
 * GPU attention engine's kernels). The scheduler owns every buffer: q, k, v, o and the gate are its
 * scratch, and the workspace is allocated by the scheduler from {@link #workspaceBytes} so that the
 * memory plan can predict it; an implementation allocates nothing from the pool itself.
 */
public interface DeviceAttention extends AutoCloseable {
    /** {@return what computes the attention, for reports} */
    String describe();

    /**
     * Device scratch one call of this shape needs, {@code gateBlock} as in {@link DeviceAttentionCall}.
     * The default is what the standard algorithms need: the materialized score matrix, B·H·L·S elements
     * of the dtype; nothing for flash and sparse.
     *
     * @param shape     the call's sizes
     * @param dtype     the compute dtype
     * @param algorithm the algorithm
     * @param pattern   the call's effective pattern
     * @param gateBlock 0, 1 or the router block Bq
     * @return bytes of workspace, 0 for none
     */
    default long workspaceBytes(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, int gateBlock) {
        return MemoryPlan.Workspace.STANDARD.bytes(shape, dtype, algorithm, pattern, gateBlock);
    }

    /**
     * Refuses, before any device work, a call it cannot compute (pattern, head dim, dtype), with a
     * one-line {@link UnsupportedOperationException}. Accepts everything by default.
     *
     * @param shape     the call's sizes
     * @param dtype     the compute dtype
     * @param algorithm the algorithm
     * @param pattern   the call's effective pattern
     */
    default void check(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern) {}

    /**
     * Queues the attention of {@code call} on {@code stream}; returns without waiting.
     *
     * @param call   the buffers and sizes, all the scheduler's
     * @param stream the compute stream
     */
    void run(DeviceAttentionCall call, CudaStream stream);

    /**
     * What the last {@link #run} of {@code call} launched, read back from the device (waits for
     * {@code stream}); for tests and benchmarks, never in the normal path. Implementations that cannot
     * count refuse.
     *
     * @param call   the call last run
     * @param stream the stream it ran on
     * @return the query tiles launched against the grid
     * @throws UnsupportedOperationException by default
     */
    default AttentionWork work(DeviceAttentionCall call, CudaStream stream) {
        throw new UnsupportedOperationException(describe() + " does not count the query tiles it launches");
    }

    /** Releases what the implementation holds (kernel modules); nothing by default. */
    @Override
    default void close() {}
}
