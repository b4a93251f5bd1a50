package io.headroute.engine;

import io.headroute.pattern.Pattern;

/**
 * What {@code --algo auto} runs: the block-sparse algorithm when the pattern's block layout lists few
 * enough blocks to pay for the layout walk, else flash. Materialized is never picked (it exists as a
 * baseline). This is the CPU engine's policy. The GPU engine does not use it: there the dense flash
 * kernels take only dense and causal, so auto runs every other pattern on the block-sparse kernels
 * whatever its density (a device measurement should decide whether a dense pattern at high density
 * should ever run sparse, or a near-dense one flash).
 *
 * <p>The threshold comes from a CPU measurement (see {@link #SPARSE_BELOW}).
 */
public final class AutoPolicy {
    /**
     * Block density (listed blocks / all blocks) below which sparse is picked. Measured on the CPU
     * engine ({@code SparseVsFlashMain} in the tests: f32, D = 64, block size 64, L = S = 2048 with
     * H = 4, 4096 with H = 2 and 8192 with H = 1, best of 3–5 alternating runs, 2 shared cores whose
     * timings scatter by about ±20%): over 12 patterns below density 0.2, sparse ran 0.83–1.58× the
     * speed of flash (median 1.08×); over 16 at 0.2 and above, 0.73–1.28× (median 0.85×), losing on
     * every wide window and on dense (and on causal in 2 of 3 runs), where flash's 128-key tiles cost less per key than 64-key
     * blocks. The CPU flash path skips excluded key tiles too, so the two differ only in granularity
     * there; the GPU engine should re-measure.
     */
    public static final double SPARSE_BELOW = 0.2;

    private AutoPolicy() {}

    /**
     * The algorithm for {@code pattern} whose layout has block density {@code density} (1 for dense).
     *
     * @param pattern the effective pattern; a dense one always gets flash
     * @param density listed blocks / all blocks of the pattern's layout, in [0, 1]; NaN gives flash
     * @return {@link Algorithm#SPARSE} when the pattern is not dense and density is below {@link #SPARSE_BELOW},
     *         else {@link Algorithm#FLASH}
     */
    public static Algorithm choose(Pattern pattern, double density) {
        if (pattern.isDense() || !(density < SPARSE_BELOW)) {
            return Algorithm.FLASH;
        }
        return Algorithm.SPARSE;
    }
}
