package io.headroute.pattern;

/**
 * The shapes {@link Pattern#spanKeys} is made of: for a run of positions p0 … p1, the keys some
 * position may attend (any) and the keys every position may attend (all).
 */
final class Spans {
    private Spans() {}

    /** Every key, or j ≤ p with causal: any = [0, p1] and all = [0, p0] under causal, else [0, S). Clears both. */
    static void prefix(int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all) {
        any.clear();
        all.clear();
        any.add(0, causal ? (long) p1 + 1 : kvLen, kvLen);
        all.add(0, causal ? (long) p0 + 1 : kvLen, kvLen);
    }

    /**
     * Adds the band |p − j| ≤ W (j ≤ p with causal): rows slide by one key, so the union is one range,
     * [p0 − W, p1 + W] (or [p0 − W, p1]), and the intersection is [p1 − W, p0 + W] (or [p1 − W, p0]),
     * empty when the run is longer than the band is wide.
     */
    static void band(int w, int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all) {
        long reach = causal ? 0 : w;
        any.add((long) p0 - w, (long) p1 + reach + 1, kvLen);
        all.add((long) p1 - w, (long) p0 + reach + 1, kvLen);
    }

    /**
     * For patterns whose positions in the same block of {@code bs} share their keys (bigbird, layouts):
     * one row per pattern block spanned. With causal, the block's positions g0 … g1 keep j ≤ p, so
     * they add the row's keys up to g1 to {@code any} and keep those up to g0 in {@code all}.
     */
    static void byBlocks(Pattern pattern, int bs, int head, int p0, int p1, int kvLen, boolean causal, KeyRanges any,
            KeyRanges all) {
        any.clear();
        all.clear();
        KeyRanges row = new KeyRanges();
        boolean first = true;
        for (long g0 = p0; g0 <= p1; ) {
            long g1 = Math.min(p1, (g0 / bs + 1) * bs - 1);
            pattern.allowedKeys(head, (int) g0, kvLen, row);
            if (causal) {
                row.clipBelow((int) g1 + 1);
            }
            any.addAll(row);
            if (causal) {
                row.clipBelow((int) g0 + 1);
            }
            if (first) {
                all.set(row);
                first = false;
            } else {
                all.retainAll(row);
            }
            g0 = g1 + 1;
        }
    }
}
