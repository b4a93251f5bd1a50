package io.headroute.engine.cuda;

import io.headroute.engine.AttentionShape;
import io.headroute.tensor.DType;

/**
 * The device memory of the materialized baseline, computed before anything is allocated: the
 * (B, H, L, S) score matrix (tag "scores", in the score dtype) next to the inputs and outputs. With fp32
 * scores of fp16/bf16 inputs, P needs a second (B, H, L, S) matrix in the input dtype (the P·V GEMM
 * takes both operands in one dtype), also tagged "scores".
 *
 * @param scoreDType  dtype of S: the input dtype, or fp32 when asked for (always fp32 for fp32 inputs)
 * @param scoreBytes  B·H·L·S · bytes per score, plus B·H·L·S · bytes per input element when P has its own matrix
 * @param ioBytes     q, k, v, o, lse and gate
 */
public record MaterializedPlan(DType scoreDType, long scoreBytes, long ioBytes) {
    /**
     * Scores in the input dtype.
     *
     * @param sh    the sizes
     * @param dtype the input (compute) dtype
     * @param gate  whether a gate is given (its B·L·H floats count)
     * @return the plan
     * @throws ArithmeticException when the score bytes overflow a long
     */
    public static MaterializedPlan of(AttentionShape sh, DType dtype, boolean gate) {
        return of(sh, dtype, gate, false);
    }

    /**
     * Scores in fp32 when {@code fp32Scores}, else in the input dtype.
     *
     * @param sh         the sizes
     * @param dtype      the input (compute) dtype
     * @param gate       whether a gate is given
     * @param fp32Scores fp32 scores for fp16/bf16 inputs
     * @return the plan
     * @throws ArithmeticException when the score bytes overflow a long
     */
    public static MaterializedPlan of(AttentionShape sh, DType dtype, boolean gate, boolean fp32Scores) {
        DType st = fp32Scores ? DType.F32 : dtype;
        long n = Math.multiplyExact(Math.multiplyExact((long) sh.batch() * sh.heads(), (long) sh.qLen()), (long) sh.kvLen());
        long scores = Math.multiplyExact(n, (long) st.byteSize());
        if (st != dtype) {
            scores = Math.addExact(scores, Math.multiplyExact(n, (long) dtype.byteSize()));
        }
        long io = (2 * sh.qElements() + 2 * sh.kvElements()) * dtype.byteSize() + 4L * sh.batch() * sh.heads() * sh.qLen()
                + (gate ? 4L * sh.batch() * sh.qLen() * sh.heads() : 0);
        return new MaterializedPlan(st, scores, io);
    }

    /**
     * {@return whether P is written to its own matrix (fp32 scores of fp16/bf16 inputs)}
     *
     * @param inputDType the inputs' dtype
     */
    public boolean separateProbs(DType inputDType) {
        return scoreDType != inputDType;
    }

    /** {@return the predicted peak: score bytes plus input and output bytes} */
    public long totalBytes() {
        return scoreBytes + ioBytes;
    }
}
