package io.headroute.engine.cuda;

import io.headroute.engine.AttentionShape;
import io.headroute.tensor.DType;

/**
 * The device memory of the materialized baseline, computed before anything is allocated: the
 * (B, H, L, S) score matrix (tag "scores", in the score dtype) next to the inputs and outputs.
 *
 * @param scoreDType  dtype of S and P: fp32 for fp32 inputs, the input dtype for fp16/bf16
 * @param scoreBytes  B·H·L·S · bytes per score
 * @param ioBytes     q, k, v, o, lse and gate
 */
public record MaterializedPlan(DType scoreDType, long scoreBytes, long ioBytes) {
    public static MaterializedPlan of(AttentionShape sh, DType dtype, boolean gate) {
        long scores = Math.multiplyExact(Math.multiplyExact((long) sh.batch() * sh.heads(), (long) sh.qLen()),
                Math.multiplyExact((long) sh.kvLen(), (long) dtype.byteSize()));
        long io = (2 * sh.qElements() + 2 * sh.kvElements()) * dtype.byteSize() + 4L * sh.batch() * sh.heads() * sh.qLen()
                + (gate ? 4L * sh.batch() * sh.qLen() * sh.heads() : 0);
        return new MaterializedPlan(dtype, scores, io);
    }

    public long totalBytes() {
        return scoreBytes + ioBytes;
    }
}
