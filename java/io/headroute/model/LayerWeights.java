package io.headroute.model;

import io.headroute.tensor.Tensor;

/**
 * One layer's weights, row-major in the X·W convention (a row of activations times a matrix).
 *
 * @param attnNorm RMSNorm gain γ, (d_model)
 * @param wq       (d_model, H·D): column block h·D … h·D + D − 1 is query head h
 * @param wk       (d_model, Hkv·D)
 * @param wv       (d_model, Hkv·D)
 * @param wo       (H·D, d_model): row block h·D … h·D + D − 1 reads query head h's output
 * @param router   (d_model, Hr) router weights Wr of a routed layer (column i scores head Hs + i), else null
 */
public record LayerWeights(Tensor attnNorm, Tensor wq, Tensor wk, Tensor wv, Tensor wo, Tensor router) {
    /**
     * An unrouted layer's weights.
     *
     * @param attnNorm γ, (d_model)
     * @param wq       (d_model, H·D)
     * @param wk       (d_model, Hkv·D)
     * @param wv       (d_model, Hkv·D)
     * @param wo       (H·D, d_model)
     */
    public LayerWeights(Tensor attnNorm, Tensor wq, Tensor wk, Tensor wv, Tensor wo) {
        this(attnNorm, wq, wk, wv, wo, null);
    }

    /**
     * The tensor with short name {@code shortName} ("attn_norm.weight", "attn.wq", "attn.wk", "attn.wv", "attn.wo",
     * "attn.router").
     *
     * @param shortName the name without the {@code layers.{i}.} prefix
     * @return the tensor; null for "attn.router" of an unrouted layer
     * @throws IllegalArgumentException for any other name
     */
    public Tensor get(String shortName) {
        return switch (shortName) {
            case ModelWeights.ATTN_NORM -> attnNorm;
            case ModelWeights.WQ -> wq;
            case ModelWeights.WK -> wk;
            case ModelWeights.WV -> wv;
            case ModelWeights.WO -> wo;
            case ModelWeights.ROUTER -> router;
            default -> throw new IllegalArgumentException("no weight '" + shortName + "'");
        };
    }
}
