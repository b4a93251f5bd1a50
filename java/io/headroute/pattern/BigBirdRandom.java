package io.headroute.pattern;

import java.util.Arrays;

/**
 * The random key blocks of {@code bigbird:BS:W:G:R:SEED}: for each (head h, absolute query block qb),
 * R distinct key blocks out of n = ceil(S / BS), drawn from all n blocks (they may coincide with
 * window or global blocks). Deterministic and identical on every backend:
 * <ol>
 *   <li>state = SEED xor (0x9E3779B97F4A7C15 · ((h &lt;&lt; 32) | qb)), 64-bit wrapping arithmetic;</li>
 *   <li>each draw is one SplitMix64 step: state += 0x9E3779B97F4A7C15; z = state;
 *       z = (z xor (z &gt;&gt;&gt; 30)) · 0xBF58476D1CE4E5B9; z = (z xor (z &gt;&gt;&gt; 27)) · 0x94D049BB133111EB;
 *       z = z xor (z &gt;&gt;&gt; 31); an integer below m is ((z &gt;&gt;&gt; 32) · m) &gt;&gt;&gt; 32;</li>
 *   <li>R distinct blocks by Robert Floyd's sampling: for t = n − R … n − 1, draw x below t + 1;
 *       take x unless already taken, else take t. If R ≥ n every block is taken.</li>
 * </ol>
 */
public final class BigBirdRandom {
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;

    private BigBirdRandom() {}

    /**
     * The chosen key blocks for (head, qb), sorted ascending.
     *
     * @param seed       SEED of the spec
     * @param head       the head h
     * @param queryBlock the absolute query block qb = p / BS
     * @param keyBlocks  n = ceil(S / BS), the key blocks to draw from
     * @param r          R, the blocks to draw
     * @return min(R, n) distinct key blocks in [0, n), ascending (every block when R ≥ n); a new array
     */
    public static int[] blocks(long seed, int head, int queryBlock, int keyBlocks, int r) {
        if (r >= keyBlocks) {
            int[] all = new int[keyBlocks];
            for (int i = 0; i < keyBlocks; i++) {
                all[i] = i;
            }
            return all;
        }
        long state = seed ^ (GOLDEN * ((((long) head) << 32) | (queryBlock & 0xffffffffL)));
        int[] chosen = new int[r];
        int taken = 0;
        for (int t = keyBlocks - r; t < keyBlocks; t++) {
            state += GOLDEN;
            long z = state;
            z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
            z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
            z = z ^ (z >>> 31);
            int x = (int) (((z >>> 32) * (t + 1L)) >>> 32);
            chosen[taken] = contains(chosen, taken, x) ? t : x;
            taken++;
        }
        Arrays.sort(chosen);
        return chosen;
    }

    private static boolean contains(int[] a, int n, int x) {
        for (int i = 0; i < n; i++) {
            if (a[i] == x) {
                return true;
            }
        }
        return false;
    }
}
