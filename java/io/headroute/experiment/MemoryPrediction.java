package io.headroute.experiment;

import io.headroute.engine.AttentionShape;
import io.headroute.engine.cuda.MaterializedPlan;
import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;

/**
 * The GPU peak memory of a variant predicted from the engine's memory plans, without a GPU: what the
 * CUDA engine's pool would hold during one call (before its 512-byte rounding of each buffer).
 *
 * <ul>
 *   <li>materialized: {@link MaterializedPlan#totalBytes()}, the B·H·L·S scores next to q, k, v, o, lse;</li>
 *   <li>flash: the same inputs and outputs, no workspace (the kernel keeps its tiles on chip);</li>
 *   <li>sparse: inputs and outputs plus the block layout (offsets, block lists, full counts) at the
 *       block size the GPU kernel would use (the pattern's own, else {@value #SPARSE_BLOCK}).</li>
 * </ul>
 *
 * @param bytes       predicted peak bytes
 * @param scoreBytes  of which the L × S score matrices (materialized), else 0
 */
public record MemoryPrediction(long bytes, long scoreBytes) {
    /** Block size of the sparse kernel's layout for token-level patterns. */
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
        int bs = effective.blockSize() != 0 ? effective.blockSize() : SPARSE_BLOCK;
        long layout = BlockLayout.build(effective, shape.heads(), shape.qLen(), shape.kvLen(), bs).sizeBytes();
        return new MemoryPrediction(MaterializedPlan.of(shape, dtype, false).ioBytes() + layout, 0);
    }
}
