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
    /** For reports: what computes the attention. */
    String describe();

    /**
     * Device scratch one call of this shape needs, {@code gateBlock} as in {@link DeviceAttentionCall}.
     * The default is what the standard algorithms need: the materialized score matrix, B·H·L·S elements
     * of the dtype; nothing for flash and sparse.
     */
    default long workspaceBytes(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, int gateBlock) {
        return MemoryPlan.Workspace.STANDARD.bytes(shape, dtype, algorithm, pattern, gateBlock);
    }

    /**
     * Refuses, before any device work, a call it cannot compute (pattern, head dim, dtype), with a
     * one-line {@link UnsupportedOperationException}.
     */
    default void check(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern) {}

    /** Queues the attention of {@code call} on {@code stream}. */
    void run(DeviceAttentionCall call, CudaStream stream);

    /**
     * What the last {@link #run} of {@code call} launched, read back from the device (waits for
     * {@code stream}); for tests and benchmarks, never in the normal path. Implementations that cannot
     * count refuse.
     */
    default AttentionWork work(DeviceAttentionCall call, CudaStream stream) {
        throw new UnsupportedOperationException(describe() + " does not count the query tiles it launches");
    }

    /** Releases what the implementation holds (kernel modules); nothing by default. */
    @Override
    default void close() {}
}
