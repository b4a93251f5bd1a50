package io.headroute.experiment;

import io.headroute.engine.AttentionShape;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.engine.cuda.MaterializedPlan;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;

/**
 * The GPU peak memory of a variant predicted from the engine's memory plans, without a GPU: what the
 * CUDA engine's pool would hold during one call (before its 512-byte rounding of each buffer).
 *
 * <ul>
 *   <li>materialized: {@link MaterializedPlan#totalBytes()}, the B·H·L·S scores next to q, k, v, o, lse;</li>
 *   <li>flash: the same inputs and outputs, no workspace (the kernel keeps its tiles on chip);</li>
 *   <li>sparse: inputs and outputs plus the device layout the CUDA engine uploads (kernel-tile lists and
 *       the partial tiles' allowed-pair bits, {@link CudaAttentionEngine#sparseLayoutBytes}) at the
 *       request's block size, {@value #SPARSE_BLOCK}.</li>
 * </ul>
 *
 * @param bytes       predicted peak bytes
 * @param scoreBytes  of which the L × S score matrices (materialized), else 0
 */
public record MemoryPrediction(long bytes, long scoreBytes) {
    /** Block size of the sparse algorithm's layouts in experiments (the requests' default). */
    public static final int SPARSE_BLOCK = 64;

    /** The materialized baseline: scores, inputs and outputs. */
    static MemoryPrediction materialized(AttentionShape shape, DType dtype) {
        MaterializedPlan plan = MaterializedPlan.of(shape, dtype, false);
        return new MemoryPrediction(plan.totalBytes(), plan.scoreBytes());
    }

    /** Flash: inputs and outputs only. */
    static MemoryPrediction flash(AttentionShape shape, DType dtype) {
        return new MemoryPrediction(MaterializedPlan.of(shape, dtype, false).ioBytes(), 0);
    }

    /** Block-sparse: inputs, outputs and the block layout of the effective pattern. */
    static MemoryPrediction sparse(AttentionShape shape, DType dtype, Pattern effective) {
        long layout = CudaAttentionEngine.sparseLayoutBytes(shape, dtype, effective, SPARSE_BLOCK);
        return new MemoryPrediction(MaterializedPlan.of(shape, dtype, false).ioBytes() + layout, 0);
    }
}
