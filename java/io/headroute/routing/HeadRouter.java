package io.headroute.routing;

import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;

/**
 * Mixture-of-heads routing: from token representations X (B, L, d_model) and router weights
 * Wr (d_model, Hr), per token P = softmax(X·Wr) over the Hr routed heads (fp32 math; for f16/bf16 the
 * inputs are first rounded to that dtype); per token, or per block of Bq tokens with P averaged over
 * the block, the top k of P (ties to the lower head index) renormalized to sum 1 and multiplied by k;
 * the other routed heads get 0 and the Hs shared heads 0..Hs−1 get 1. The result is the gate
 * (B, L, H) of the attention contract. Implementations own threads or a device: close them.
 */
public interface HeadRouter extends AutoCloseable {
    /** {@return "cpu" or "cuda", the engine named in {@link RouterOutput#engine}} */
    String name();

    /** {@return where it computes, for reports: "CPU, 4 threads", or the GPU's description}; {@link #name()} by default. */
    default String device() {
        return name();
    }

    /**
     * Routes host tensors; {@code dtype} (f32, f16, bf16) is the dtype X and Wr are rounded to.
     *
     * @param x      X (B, L, d_model), any floating dtype, all values finite once rounded to {@code dtype}
     * @param wr     Wr (d_model, Hr), any floating dtype, finite likewise
     * @param config the shared and routed heads, k and the routing block
     * @param dtype  f32, f16 or bf16
     * @return the gate (B, L, H) and probabilities (B, L, Hr), float32, with their statistics and the compute time
     * @throws IllegalArgumentException      for inputs {@link #checkInputs} or {@link #checkLogitBound} refuses, or a
     *                                       non-finite value
     * @throws UnsupportedOperationException when the implementation cannot take {@code config} (the GPU router:
     *                                       more than {@link CudaHeadRouter#MAX_ROUTED} routed heads)
     */
    RouterOutput route(Tensor x, Tensor wr, RouterConfig config, DType dtype);

    @Override
    void close();

    /**
     * Refuses X and Wr whose logits X·Wr could overflow fp32: |z| ≤ d_model · max|X| · max|Wr| must stay within half
     * of fp32's range (so that z − max z stays finite too). {@code maxX} and {@code maxW} are the magnitudes once
     * rounded to the router's dtype ({@link Tensor#requireFinite}).
     *
     * @param maxX   max|X| after rounding
     * @param maxW   max|Wr| after rounding
     * @param dModel d_model, the terms summed per logit
     * @throws IllegalArgumentException when the bound exceeds {@code Float.MAX_VALUE} / 2
     */
    static void checkLogitBound(double maxX, double maxW, long dModel) {
        double bound = maxX * maxW * dModel;
        if (bound > Float.MAX_VALUE / 2.0) {
            throw new IllegalArgumentException(String.format(java.util.Locale.ROOT, "X and Wr could overflow the fp32 logits "
                    + "X·Wr: d_model · max|X| · max|Wr| = %d · %.3g · %.3g = %.3g exceeds %.3g", dModel, maxX, maxW, bound,
                    Float.MAX_VALUE / 2.0));
        }
    }

    /**
     * Checks X (B, L, d_model) and Wr (d_model, Hr) against {@code config}; one-line IllegalArgumentExceptions.
     * Also refuses an empty X, and inputs whose X or gate (B·L·H) would not fit one Java array.
     *
     * @param x      X, rank 3, floating
     * @param wr     Wr, rank 2, floating, with d_model rows and Hr columns
     * @param config the routing the inputs must match
     * @param dtype  the router's dtype, f32, f16 or bf16
     * @throws IllegalArgumentException naming the first input that does not fit
     */
    static void checkInputs(Tensor x, Tensor wr, RouterConfig config, DType dtype) {
        if (dtype != DType.F32 && dtype != DType.F16 && dtype != DType.BF16) {
            throw new IllegalArgumentException("router dtype must be f32, f16 or bf16, got " + dtype.cliName());
        }
        if (x.rank() != 3) {
            throw new IllegalArgumentException("X must have shape (B, L, d_model), got " + x.shapeString());
        }
        if (wr.rank() != 2) {
            throw new IllegalArgumentException("Wr must have shape (d_model, Hr), got " + wr.shapeString());
        }
        if (!x.dtype().isFloating() || !wr.dtype().isFloating()) {
            throw new IllegalArgumentException("X and Wr must be floating tensors (f32, f16 or bf16), got "
                    + x.dtype().cliName() + " and " + wr.dtype().cliName());
        }
        if (wr.dim(0) != x.dim(2)) {
            throw new IllegalArgumentException("Wr " + wr.shapeString() + " must have d_model = " + x.dim(2)
                    + " rows to match X " + x.shapeString());
        }
        if (wr.dim(1) != config.routedHeads()) {
            throw new IllegalArgumentException("Wr " + wr.shapeString() + " has " + wr.dim(1) + " columns, but " + config
                    + " routes " + config.routedHeads() + " heads");
        }
        for (int a = 0; a < 3; a++) {
            if (x.dim(a) == 0) {
                throw new IllegalArgumentException("X " + x.shapeString() + " is empty");
            }
        }
        long tokens = x.dim(0) * x.dim(1);
        if (x.numel() > Integer.MAX_VALUE - 8 || tokens * config.heads() > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("X " + x.shapeString() + " with " + config.heads()
                    + " heads is more than one Java array holds; use smaller inputs");
        }
    }
}
