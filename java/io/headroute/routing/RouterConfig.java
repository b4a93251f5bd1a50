package io.headroute.routing;

/**
 * What the head router computes. Heads 0..Hs−1 are the shared heads (always active, gate 1), heads
 * Hs..H−1 the routed ones; each group of {@code block} tokens (1 = per token) keeps its top {@code k}
 * routed heads.
 *
 * @param sharedHeads Hs ≥ 0
 * @param routedHeads Hr ≥ 1
 * @param k           routed heads kept per token or block, 1 ≤ k ≤ Hr
 * @param block       Bq, tokens per routing decision: 1 routes each token, Bq &gt; 1 averages the
 *                    router probabilities over blocks of Bq query positions (the last may be shorter)
 */
public record RouterConfig(int sharedHeads, int routedHeads, int k, int block) {
    /**
     * Validates the configuration.
     *
     * @param sharedHeads Hs, at least 0
     * @param routedHeads Hr, at least 1, with Hs + Hr at most {@code Integer.MAX_VALUE}
     * @param k           in [1, Hr]
     * @param block       Bq, at least 1
     * @throws IllegalArgumentException with a one-line message naming the value out of range
     */
    public RouterConfig {
        if (sharedHeads < 0) {
            throw new IllegalArgumentException("shared heads must be ≥ 0, got " + sharedHeads);
        }
        if (routedHeads < 1) {
            throw new IllegalArgumentException("routed heads must be ≥ 1, got " + routedHeads);
        }
        if (k < 1 || k > routedHeads) {
            throw new IllegalArgumentException("k must be between 1 and the " + routedHeads + " routed heads, got " + k);
        }
        if (block < 1) {
            throw new IllegalArgumentException("the routing block must be ≥ 1 token, got " + block);
        }
        if ((long) sharedHeads + routedHeads > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("too many heads: " + sharedHeads + " + " + routedHeads);
        }
    }

    /** {@return H = Hs + Hr, the heads of the gate} */
    public int heads() {
        return sharedHeads + routedHeads;
    }

    /** {@return whether each token is routed on its own (Bq = 1), with no averaging over a block} */
    public boolean perToken() {
        return block == 1;
    }

    /** {@return the heads active per token, (Hs + k) / H}: the fraction of dense attention work routing leaves. */
    public double activeFraction() {
        return (sharedHeads + k) / (double) heads();
    }

    /**
     * Parses the command line's {@code HS:K[:BQ]} for a model of {@code heads} heads (Hr = H − Hs).
     * Throws IllegalArgumentException with a one-line message.
     *
     * @param spec  {@code HS:K} (per token) or {@code HS:K:BQ}, integers, fields may be surrounded by blanks
     * @param heads H, the model's heads; Hs must be in [0, H − 1]
     * @return the configuration with Hr = H − Hs
     */
    public static RouterConfig parse(String spec, int heads) {
        String[] f = spec.trim().split(":", -1);
        if (f.length < 2 || f.length > 3) {
            throw new IllegalArgumentException("bad routing '" + spec + "': expected HS:K or HS:K:BQ (shared heads, k, block)");
        }
        int[] v = new int[f.length];
        for (int i = 0; i < f.length; i++) {
            try {
                v[i] = Integer.parseInt(f[i].trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("bad routing '" + spec + "': '" + f[i] + "' is not an integer");
            }
        }
        if (v[0] < 0 || v[0] >= heads) {
            throw new IllegalArgumentException("bad routing '" + spec + "': shared heads must be between 0 and H − 1 = "
                    + (heads - 1) + ", got " + v[0]);
        }
        return new RouterConfig(v[0], heads - v[0], v[1], f.length == 3 ? v[2] : 1);
    }

    /** "Hs=2, Hr=14, k=4, per token" or "..., block 64". */
    @Override
    public String toString() {
        return "Hs=" + sharedHeads + ", Hr=" + routedHeads + ", k=" + k + ", " + (perToken() ? "per token" : "block " + block);
    }
}
