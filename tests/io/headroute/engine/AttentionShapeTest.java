package io.headroute.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.cuda.FlashPlan;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import org.junit.jupiter.api.Test;

/**
 * L and S stop at 2^31 − 2^16: a tile count rounded up in int went negative within a tile of 2^31 (a launch of a
 * negative grid did nothing, leaving the output unwritten), and so did the kernels' key-tile counts and loop indices.
 */
class AttentionShapeTest {
    @Test
    void lengthsStopShortOfIntOverflow() {
        AttentionShape longest = new AttentionShape(1, 1, 1, AttentionShape.MAX_LEN, AttentionShape.MAX_LEN, 64);
        for (DType dt : new DType[] {DType.F32, DType.BF16}) {
            FlashPlan plan = FlashPlan.of(longest, dt, new Pattern.Dense());
            assertTrue(plan.gridX() > 0, dt + ": " + plan.gridX());
            assertEquals(((long) AttentionShape.MAX_LEN + plan.blockRows() - 1) / plan.blockRows(), plan.gridX(), dt + ": tiles");
        }
        ShapeException e = assertThrows(ShapeException.class,
                () -> new AttentionShape(1, 1, 1, 8, AttentionShape.MAX_LEN + 1, 64));
        assertEquals("L = 8 and S = 2147418113 must be at most 2147418112 (2^31 - 2^16)", e.getMessage());
        assertThrows(ShapeException.class, () -> new AttentionShape(1, 1, 1, Integer.MAX_VALUE, Integer.MAX_VALUE, 64));
    }

    /**
     * Causal FLOPs count the pairs of the bottom-right-aligned mask: half the dense count only at L = S (issue 4's
     * halving); L·S − L²/2 below it (a 64 × 32 block in full, then a 64-row triangle), S²/2 past it (bench/
     * torch_reference.py's causal_pairs counts the same: tests/python/test_torch_reference.py).
     */
    @Test
    void causalFlopsCountTheBottomRightAlignedPairs() {
        AttentionShape square = new AttentionShape(1, 16, 16, 32768, 32768, 128);
        assertEquals(4.0 * 16 * 32768 * 32768 * 128, square.denseFlops());
        assertEquals(square.denseFlops() / 2, square.causalFlops());
        assertEquals(square.causalFlops(), square.flops(true));
        assertEquals(square.denseFlops(), square.flops(false));
        AttentionShape wide = new AttentionShape(2, 2, 1, 64, 96, 16);
        assertEquals(64.0 * 96 - 64.0 * 64 / 2, AttentionShape.causalPairs(64, 96));
        assertEquals(4.0 * 2 * 2 * 16 * (64 * 32 + 64 * 64 / 2), wide.causalFlops());
        assertTrue(wide.causalFlops() > wide.denseFlops() / 2, "more than half: the first S − L keys are seen by every query");
        // L > S (no AttentionShape allows it, the count still does): the first L − S queries see no key.
        assertEquals(96.0 * 96 / 2, AttentionShape.causalPairs(160, 96));
        assertEquals(AttentionShape.causalPairs(96, 96), AttentionShape.causalPairs(160, 96));
    }
}
