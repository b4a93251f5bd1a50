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
}
