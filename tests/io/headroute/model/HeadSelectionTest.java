package io.headroute.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.ShapeException;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.KeyRanges;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.PatternException;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Limits of pruned and long layers: what their patterns and activations cost before any work. */
class HeadSelectionTest {
    /**
     * A pruned layer's bigbird is the rule seen by its remaining heads, not a table of ceil(S / BS)² blocks per head:
     * at L = 50000 on 1-token blocks that table was 2.5·10⁹ entries a head (NegativeArraySizeException, exit 1).
     */
    @Test
    void prunedBigbirdAtLongLengthsIsARuleNotATable() {
        int len = 50_000;
        Pattern base = Patterns.parse("bigbird:1:0:0:1:1");
        int[] heads = {3, 1};
        Pattern p = HeadSelection.forHeads(base, heads, len);
        assertInstanceOf(Pattern.HeadsOf.class, p);
        p.check(2, len, len);
        KeyRanges want = new KeyRanges();
        KeyRanges got = new KeyRanges();
        for (int i = 0; i < heads.length; i++) {
            for (int pos : new int[] {0, 1, 777, len - 1}) {
                base.allowedKeys(heads[i], pos, len, want);
                p.allowedKeys(i, pos, len, got);
                assertEquals(want.toString(), got.toString(), "head " + i + " (was " + heads[i] + ") p=" + pos);
            }
        }
        assertEquals("bigbird:1:0:0:1:1#heads=3,1", p.spec());
        assertTrue(p.perHead());
        assertEquals(1, p.blockSize());
        // Equal rewrites are equal patterns (a layout cache keys on them); other heads are not.
        assertEquals(p, HeadSelection.forHeads(base, new int[] {3, 1}, len));
        assertEquals(p.hashCode(), HeadSelection.forHeads(base, new int[] {3, 1}, len).hashCode());
        assertNotEquals(p, HeadSelection.forHeads(base, new int[] {1, 3}, len));
        PatternException e = assertThrows(PatternException.class, () -> p.check(3, len, len));
        assertEquals("bigbird:1:0:0:1:1#heads=3,1 holds 2 heads, but H = 3 heads attend", e.getMessage());
    }

    /**
     * A CPU layer whose activations (B·L rows × the widest of d_model, H·D, Hkv·D) exceed one Java array is refused as
     * bad input, before any work, naming the sizes (it was an ArithmeticException: "internal error", exit 1).
     */
    @Test
    void activationsPastAJavaArrayAreRefusedBeforeAnyWork() {
        ModelConfig c = new ModelConfig(8, 64, 64, 256, DType.F32, 10000.0, 1e-6,
                List.of(LayerSpec.of(new Pattern.Dense(), false, Algorithm.FLASH)));
        AttentionBlock block = new AttentionBlock(c, 0, BlockReference.weights(c, 3).layer(0));
        Tensor x = Tensor.ofFloats(new float[140_000 * 8], 1, 140_000, 8);
        try (CpuAttentionEngine engine = new CpuAttentionEngine()) {
            ShapeException e = assertThrows(ShapeException.class, () -> block.forward(x, null, engine));
            assertEquals("layer 0 on the CPU: B·L = 140000 rows × 16384 values = 2293760000 elements exceed one Java array"
                    + " (2147483639); use fewer rows (B, L)", e.getMessage());
        }
    }
}
