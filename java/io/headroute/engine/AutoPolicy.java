package io.headroute.engine;

import io.headroute.pattern.Pattern;

/**
 * What {@code --algo auto} runs: the block-sparse algorithm when the pattern's block layout lists few
 * enough blocks to pay for the layout walk, else flash. Materialized is never picked (it exists as a
 * baseline). One policy for every engine.
 *
 * <p>The threshold comes from a CPU measurement (see {@link #SPARSE_BELOW}); the GPU engine is to use
 * the same policy until a device measurement says otherwise.
 */
public final class AutoPolicy {
    /**
     * Block density (listed blocks / all blocks) below which sparse is picked. Measured on the CPU
     * engine (2 shared cores, f32, B = 1, D = 64, L = S = 2048 and 4096, best of 5 alternating runs,
     * {@code SparseVsFlashMain} in the tests): below a density of 0.25 sparse ran 0.83–1.58× the speed
     * of flash at block size 64 (1.2–1.58× for narrow windows and bigbird with 8 random blocks);
     * from 0.25 up it ran 0.77–1.28×, and 0.77–0.89× for wide windows and dense, where flash's
     * 128-key tiles cost less per key than 64-key blocks. Timings on the shared machine scatter by
     * about ±20%, so the threshold is where sparse stops being worth its smaller tiles, not a sharp
     * crossover. The CPU flash path already skips
     * excluded key tiles, so the two differ only in granularity there; the GPU gap is expected to be
     * larger.
     */
    public static final double SPARSE_BELOW = 0.25;

    private AutoPolicy() {}

    /** The algorithm for {@code pattern} whose layout has block density {@code density} (1 for dense). */
    public static Algorithm choose(Pattern pattern, double density) {
        if (pattern.isDense() || !(density < SPARSE_BELOW)) {
            return Algorithm.FLASH;
        }
        return Algorithm.SPARSE;
    }
}
