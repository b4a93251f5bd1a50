package io.headroute.model;

import io.headroute.pattern.Pattern;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Which heads of a layer are computed, and how its attention splits into calls under the contract.
 *
 * <p>The layer's Q holds only the active query heads, in ascending order, and K/V only the key/value
 * heads that some active query head reads. When every active key/value head serves the same number of
 * active query heads, one call covers the layer (H' = active heads, Hkv' = active kv heads, the usual
 * grouping h' / (H'/Hkv')). Otherwise each active key/value head gets its own call with its query heads
 * (Hkv' = 1), since the contract's grouping is uniform.
 *
 * <p>Patterns that differ per head (bigbird with random blocks, per-head layouts) index heads by
 * their position in the call; {@link #pattern} rewrites them as a block layout over the call's
 * original heads, which allows exactly the same keys (both are block-level rules).
 */
public final class HeadSelection {
    /**
     * One attention call: query heads [qStart, qStart + qCount) of the layer's compacted Q, reading
     * key/value heads [kvStart, kvStart + kvCount) of its compacted K/V.
     *
     * @param qStart  the call's first query head in the compacted Q
     * @param qCount  H' of the call, a multiple of kvCount
     * @param kvStart the call's first key/value head in the compacted K/V
     * @param kvCount Hkv' of the call
     * @param heads   the call's query heads as indices into the full H (for patterns and gates)
     */
    public record Call(int qStart, int qCount, int kvStart, int kvCount, int[] heads) {
        /**
         * Copies {@code heads}.
         *
         * @param qStart  the first query head in the compacted Q
         * @param qCount  the call's query heads
         * @param kvStart the first key/value head in the compacted K/V
         * @param kvCount the call's key/value heads
         * @param heads   the call's query heads in the full H; copied
         */
        public Call {
            heads = heads.clone();
        }

        /** {@return the call's query heads as indices into the full H, a copy} */
        @Override
        public int[] heads() {
            return heads.clone();
        }
    }

    private final int totalHeads;
    private final int[] heads;
    private final int[] kvHeads;
    private final List<Call> calls;

    private HeadSelection(int totalHeads, int[] heads, int[] kvHeads, List<Call> calls) {
        this.totalHeads = totalHeads;
        this.heads = heads;
        this.kvHeads = kvHeads;
        this.calls = List.copyOf(calls);
    }

    /**
     * The selection of layer {@code spec} in {@code config}.
     *
     * @param config the model (H, Hkv)
     * @param spec   the layer, whose head mask says which heads are active
     * @return one call when every active key/value head serves as many active query heads, else one per active
     *         key/value head
     */
    public static HeadSelection of(ModelConfig config, LayerSpec spec) {
        int h = config.heads();
        int g = config.group();
        int[] q = new int[h];
        int nq = 0;
        int[] perKv = new int[config.kvHeads()];
        for (int i = 0; i < h; i++) {
            if (spec.active(i)) {
                q[nq++] = i;
                perKv[i / g]++;
            }
        }
        int[] kv = new int[config.kvHeads()];
        int nkv = 0;
        int count = -1;
        boolean uniform = true;
        for (int j = 0; j < perKv.length; j++) {
            if (perKv[j] > 0) {
                kv[nkv++] = j;
                uniform &= count < 0 || count == perKv[j];
                count = perKv[j];
            }
        }
        q = Arrays.copyOf(q, nq);
        kv = Arrays.copyOf(kv, nkv);
        List<Call> calls = new ArrayList<>();
        if (uniform) {
            calls.add(new Call(0, nq, 0, nkv, q));
        } else {
            int start = 0;
            for (int j = 0; j < nkv; j++) {
                int n = perKv[kv[j]];
                calls.add(new Call(start, n, j, 1, Arrays.copyOfRange(q, start, start + n)));
                start += n;
            }
        }
        return new HeadSelection(h, q, kv, calls);
    }

    /** {@return the active query heads, ascending (indices into H), a copy} */
    public int[] heads() {
        return heads.clone();
    }

    /** {@return the key/value heads read by some active query head, ascending (indices into Hkv), a copy} */
    public int[] kvHeads() {
        return kvHeads.clone();
    }

    /** {@return H', the active query heads} */
    public int headCount() {
        return heads.length;
    }

    /** {@return Hkv', the key/value heads some active query head reads} */
    public int kvHeadCount() {
        return kvHeads.length;
    }

    /** {@return the attention calls, in head order; unmodifiable} */
    public List<Call> calls() {
        return calls;
    }

    /** Whether the call's heads are 0 … H − 1 in order, so the pattern needs no rewriting. */
    private boolean identity(Call c) {
        if (c.heads.length != totalHeads) {
            return false;
        }
        for (int i = 0; i < c.heads.length; i++) {
            if (c.heads[i] != i) {
                return false;
            }
        }
        return true;
    }

    /**
     * The pattern {@code base} as seen by call {@code c}'s heads 0 … qCount − 1, for S = kvLen keys.
     *
     * @param base  the layer's pattern (causal folded in or not)
     * @param c     one of {@link #calls()}
     * @param kvLen S, the keys
     * @return {@code base} itself when it is the same for every head or the call has all H heads in order, else
     *         the pattern restricted to the call's heads
     */
    public Pattern pattern(Pattern base, Call c, int kvLen) {
        return !base.perHead() || identity(c) ? base : forHeads(base, c.heads, kvLen);
    }

    /**
     * A per-head pattern restricted to {@code heads}: call head i behaves as original head heads[i]. A layout
     * keeps those heads' blocks (at most its own size); bigbird is wrapped ({@link Pattern.HeadsOf}).
     */
    static Pattern forHeads(Pattern base, int[] heads, int kvLen) {
        if (base instanceof Pattern.CausalOf c) {
            return forHeads(c.inner(), heads, kvLen).withCausal();
        }
        if (base instanceof Pattern.Layout l) {
            int n = l.blocks();
            boolean[] bits = new boolean[heads.length * n * n];
            boolean[] src = l.bits();
            for (int i = 0; i < heads.length; i++) {
                int hh = l.heads() == 1 ? 0 : heads[i];
                System.arraycopy(src, hh * n * n, bits, i * n * n, n * n);
            }
            return new Pattern.Layout(l.bs(), heads.length, n, bits, l.source() + headsSuffix(heads));
        }
        if (base instanceof Pattern.BigBird) {
            // A rule, not a table: evaluated per row as the original heads' (a table of ceil(S / BS)² blocks per
            // head overflowed at L = 50000 on 1-token blocks).
            return new Pattern.HeadsOf(base, heads);
        }
        throw new IllegalStateException("pattern " + base.spec() + " differs per head but has no head rewrite");
    }

    private static String headsSuffix(int[] heads) {
        StringBuilder sb = new StringBuilder("#heads=");
        for (int i = 0; i < heads.length; i++) {
            sb.append(i > 0 ? "," : "").append(heads[i]);
        }
        return sb.toString();
    }
}
