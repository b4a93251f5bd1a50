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
     * Block density (listed blocks / all blocks) below which sparse is picked. PLACEHOLDER, set from
     * the measurement below.
     */
    public static final double SPARSE_BELOW = 0.5;

    private AutoPolicy() {}

    /** The algorithm for {@code pattern} whose layout has block density {@code density} (1 for dense). */
    public static Algorithm choose(Pattern pattern, double density) {
        if (pattern.isDense() || !(density < SPARSE_BELOW)) {
            return Algorithm.FLASH;
        }
        return Algorithm.SPARSE;
    }
}
