package io.headroute.model;

import io.headroute.engine.Algorithm;
import io.headroute.pattern.Pattern;
import io.headroute.routing.RouterConfig;
import java.util.Arrays;
import java.util.Objects;

/**
 * How one layer attends: its pattern, whether the causal rule j ≤ p is added, the algorithm, and an
 * optional static head mask (issue 6's pruning), and an optional head router (mixture-of-heads routing).
 * A pruned head (mask false) is removed from the layer: its projections and attention are not computed
 * and its buffers not allocated. A routed layer's gate comes from its router (weights
 * {@code layers.{i}.attn.router}), run on the layer's normed input.
 *
 * @param pattern   the token rule (any pattern of the contract)
 * @param causal    adds j ≤ p to the pattern
 * @param algorithm the attention algorithm the layer asks its engine for
 * @param headMask  active[h] for each of the H query heads, or null when every head is active
 * @param router    the layer's head routing (Hs + Hr must be the model's H), or null for an unrouted layer
 */
public record LayerSpec(Pattern pattern, boolean causal, Algorithm algorithm, boolean[] headMask, RouterConfig router) {
    /**
     * Copies the head mask.
     *
     * @param pattern   the token rule; not null
     * @param causal    whether j ≤ p is added
     * @param algorithm the algorithm; not null
     * @param headMask  active[h] per query head, or null; copied (its length is checked by {@link ModelConfig})
     * @param router    the head routing, or null
     */
    public LayerSpec {
        Objects.requireNonNull(pattern, "pattern");
        Objects.requireNonNull(algorithm, "algorithm");
        headMask = headMask == null ? null : headMask.clone();
    }

    /**
     * An unrouted layer.
     *
     * @param pattern   the token rule; not null
     * @param causal    whether j ≤ p is added
     * @param algorithm the algorithm; not null
     * @param headMask  active[h] per query head, or null for every head
     */
    public LayerSpec(Pattern pattern, boolean causal, Algorithm algorithm, boolean[] headMask) {
        this(pattern, causal, algorithm, headMask, null);
    }

    /**
     * {@return an unrouted layer with every head active}
     *
     * @param pattern   the token rule; not null
     * @param causal    whether j ≤ p is added
     * @param algorithm the algorithm; not null
     */
    public static LayerSpec of(Pattern pattern, boolean causal, Algorithm algorithm) {
        return new LayerSpec(pattern, causal, algorithm, null, null);
    }

    /**
     * {@return this layer with {@code mask} as its head mask}
     *
     * @param mask active[h] per query head (copied), or null for no pruning
     */
    public LayerSpec withHeadMask(boolean[] mask) {
        return new LayerSpec(pattern, causal, algorithm, mask, router);
    }

    /**
     * {@return this layer with {@code r} as its router}
     *
     * @param r the routing, or null for an unrouted layer
     */
    public LayerSpec withRouter(RouterConfig r) {
        return new LayerSpec(pattern, causal, algorithm, headMask, r);
    }

    /** {@return whether the layer's gate comes from a router} */
    public boolean routed() {
        return router != null;
    }

    /** {@return active[h] per query head, a copy, or null when every head is active} */
    @Override
    public boolean[] headMask() {
        return headMask == null ? null : headMask.clone();
    }

    /**
     * {@return whether query head h is computed}
     *
     * @param h the query head, in [0, H)
     */
    public boolean active(int h) {
        return headMask == null || headMask[h];
    }

    /** {@return whether the mask removes any head} */
    public boolean pruned() {
        if (headMask == null) {
            return false;
        }
        for (boolean a : headMask) {
            if (!a) {
                return true;
            }
        }
        return false;
    }

    /** {@return the mask as a string of 0 and 1, one character per head ("1101"), or null without a mask} */
    public String maskString() {
        if (headMask == null) {
            return null;
        }
        StringBuilder sb = new StringBuilder(headMask.length);
        for (boolean a : headMask) {
            sb.append(a ? '1' : '0');
        }
        return sb.toString();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof LayerSpec s && s.pattern.equals(pattern) && s.causal == causal && s.algorithm == algorithm
                && Arrays.equals(s.headMask, headMask) && Objects.equals(s.router, router);
    }

    @Override
    public int hashCode() {
        return Objects.hash(pattern, causal, algorithm, Arrays.hashCode(headMask), router);
    }

    @Override
    public String toString() {
        return "LayerSpec[" + pattern.spec() + (causal ? "+causal" : "") + ", " + algorithm.cliName()
                + (headMask == null ? "" : ", heads " + maskString()) + (router == null ? "" : ", routed " + router) + "]";
    }
}
