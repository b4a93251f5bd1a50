package io.headroute.pattern;

import java.util.Locale;

/**
 * Not a test: times the analytic {@link BlockLayout#build} against the row-range builder it replaced
 * ({@link RowRangeLayouts}) on large layouts, best of a few runs each, and checks they agree.
 * Run with the test classpath: {@code java -cp target/classes:target/test-classes io.headroute.pattern.LayoutBuildTimingMain}.
 */
public final class LayoutBuildTimingMain {
    private LayoutBuildTimingMain() {}

    public static void main(String[] args) {
        int n = 32768;
        int bs = 64;
        Pattern[] patterns = {new Pattern.Window(1600), new Pattern.Dense(), new Pattern.Causal(),
            new Pattern.Window(1600).withCausal(), new Pattern.BigBird(64, 1, 1, 3, 7)};
        int heads = 16;
        System.out.printf(Locale.ROOT, "L = S = %d, BS = %d, H = %d (layout heads: 1, or H for bigbird); best of 5%n", n, bs, heads);
        for (Pattern p : patterns) {
            BlockLayout a = null;
            BlockLayout b = null;
            long bestNew = Long.MAX_VALUE;
            long bestOld = Long.MAX_VALUE;
            for (int round = 0; round < 5; round++) {
                long t0 = System.nanoTime();
                a = BlockLayout.build(p, heads, n, n, bs);
                long t1 = System.nanoTime();
                b = RowRangeLayouts.build(p, heads, n, n, bs);
                long t2 = System.nanoTime();
                bestNew = Math.min(bestNew, t1 - t0);
                bestOld = Math.min(bestOld, t2 - t1);
            }
            boolean same = java.util.Arrays.equals(a.offsets(), b.offsets()) && java.util.Arrays.equals(a.blockIndices(), b.blockIndices())
                    && java.util.Arrays.equals(a.fullCounts(), b.fullCounts());
            System.out.printf(Locale.ROOT, "%-22s density %.4f, %d listed (%d full, %d partial), %.1f KiB: new %.2f ms, row-range %.2f ms (%.1fx), identical: %b%n",
                    p.spec(), a.density(), a.listedBlocks(), a.fullBlockCount(), a.partialBlockCount(), a.sizeBytes() / 1024.0,
                    bestNew / 1e6, bestOld / 1e6, (double) bestOld / bestNew, same);
        }
    }
}
