package io.headroute.engine;

/**
 * The sizes of one attention problem, validated: q (B, H, L, D), k and v (B, Hkv, S, D), optional gate
 * (B, L, H). L ≤ S and H divisible by Hkv.
 *
 * @param batch   B, the batch size
 * @param heads   H, the query heads
 * @param kvHeads Hkv, the key/value heads (query head h reads key/value head h / {@link #group()})
 * @param qLen    L, the queries per head; they sit at the last L of the S key positions
 * @param kvLen   S, the keys per head
 * @param headDim D, the elements of each query, key and value vector
 */
public record AttentionShape(int batch, int heads, int kvHeads, int qLen, int kvLen, int headDim) {
    /**
     * The longest L and S: 2^31 − 2^16, so that tile and block arithmetic in int (a tile's end, a count of tiles
     * rounded up, a loop's next index) cannot overflow anywhere, on the CPU or in the kernels.
     */
    public static final int MAX_LEN = Integer.MAX_VALUE - 65535;

    /**
     * Validates the sizes.
     *
     * @param batch   B, positive
     * @param heads   H, positive, divisible by Hkv
     * @param kvHeads Hkv, positive
     * @param qLen    L, in [1, {@link #MAX_LEN}] and at most S
     * @param kvLen   S, in [1, {@link #MAX_LEN}]
     * @param headDim D, positive
     * @throws ShapeException naming the sizes that break a rule
     */
    public AttentionShape {
        if (batch <= 0 || heads <= 0 || kvHeads <= 0 || qLen <= 0 || kvLen <= 0 || headDim <= 0) {
            throw new ShapeException("sizes must be positive: B=" + batch + " H=" + heads + " Hkv=" + kvHeads + " L=" + qLen
                    + " S=" + kvLen + " D=" + headDim);
        }
        if (qLen > MAX_LEN || kvLen > MAX_LEN) {
            throw new ShapeException("L = " + qLen + " and S = " + kvLen + " must be at most " + MAX_LEN + " (2^31 - 2^16)");
        }
        if (heads % kvHeads != 0) {
            throw new ShapeException("H = " + heads + " query heads is not divisible by Hkv = " + kvHeads + " key/value heads");
        }
        if (qLen > kvLen) {
            throw new ShapeException("L = " + qLen + " queries exceed S = " + kvLen
                    + " keys (queries sit at the last L key positions)");
        }
    }

    /** {@return the query heads per key/value head, H / Hkv}: head h reads kv head h / group(). */
    public int group() {
        return heads / kvHeads;
    }

    /**
     * {@return the absolute key position of query i}: i + (S − L); causal query i sees keys 0 … position(i).
     *
     * @param i the query index, in [0, L)
     */
    public int position(int i) {
        return i + (kvLen - qLen);
    }

    /** {@return the elements of q (and of o), B·H·L·D, as a long} */
    public long qElements() {
        return (long) batch * heads * qLen * headDim;
    }

    /** {@return the elements of k (and of v), B·Hkv·S·D, as a long} */
    public long kvElements() {
        return (long) batch * kvHeads * kvLen * headDim;
    }

    /** {@return the dense forward FLOPs, 4·B·H·L·S·D} (two GEMMs of 2 FLOPs per multiply-add). */
    public double denseFlops() {
        return 4.0 * batch * heads * qLen * kvLen * headDim;
    }

    /**
     * Causal forward FLOPs, 4·B·H·D·{@link #causalPairs}(L, S): the pairs the bottom-right-aligned causal mask
     * allows (query i sits at key position i + S − L), half of {@link #denseFlops()} only when L = S.
     *
     * @return the causal FLOPs count
     */
    public double causalFlops() {
        return 4.0 * batch * heads * headDim * causalPairs(qLen, kvLen);
    }

    /**
     * {@return {@link #causalFlops()} or {@link #denseFlops()}}
     *
     * @param causal whether the causal mask applies
     */
    public double flops(boolean causal) {
        return causal ? causalFlops() : denseFlops();
    }

    /**
     * The nominal (query, key) pairs of a bottom-right-aligned causal mask on L queries and S keys, counted
     * as a continuous triangle: L·S − L²/2 when L ≤ S (a full L × (S − L) block, then a triangle), S²/2 when
     * L &gt; S (the first L − S queries see no key). L·S/2 at L = S, the usual halving. The same count as
     * bench/torch_reference.py's {@code causal_pairs}.
     *
     * @param qLen  L, the queries
     * @param kvLen S, the keys
     * @return the pair count, a real number (it can be fractional)
     */
    public static double causalPairs(long qLen, long kvLen) {
        double l = qLen;
        double s = kvLen;
        return qLen <= kvLen ? l * s - l * l / 2 : s * s / 2;
    }

    @Override
    public String toString() {
        return "B=" + batch + " H=" + heads + " Hkv=" + kvHeads + " L=" + qLen + " S=" + kvLen + " D=" + headDim;
    }
}
