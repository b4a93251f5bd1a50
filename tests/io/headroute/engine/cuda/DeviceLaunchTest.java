package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionShape;
import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import org.junit.jupiter.api.Test;

/** The host side of attention on caller-owned device memory (CudaAttentionEngine.launch), without a GPU. */
class DeviceLaunchTest {
    private static final AttentionShape SHAPE = new AttentionShape(2, 8, 2, 300, 300, 64);

    @Test
    void checkRoutesLikeTheEngineAndRefusesMaterialized() {
        assertEquals(Algorithm.FLASH, CudaAttentionEngine.checkLaunch(SHAPE, DType.BF16, Algorithm.FLASH, new Pattern.Causal()));
        assertEquals(Algorithm.SPARSE,
                CudaAttentionEngine.checkLaunch(SHAPE, DType.BF16, Algorithm.FLASH, Patterns.parse("window:20").withCausal()));
        assertEquals(Algorithm.SPARSE, CudaAttentionEngine.checkLaunch(SHAPE, DType.F32, Algorithm.SPARSE, new Pattern.Dense()));
        UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                () -> CudaAttentionEngine.checkLaunch(SHAPE, DType.BF16, Algorithm.MATERIALIZED, new Pattern.Dense()));
        assertTrue(e.getMessage().contains("flash or sparse, not materialized"), e.getMessage());
        assertThrows(UnsupportedOperationException.class, () -> CudaAttentionEngine.checkLaunch(
                new AttentionShape(1, 1, 1, 8, 8, 256), DType.BF16, Algorithm.FLASH, new Pattern.Dense()));
    }

    @Test
    void theLayoutsArraysSitAlignedInTheWorkspace() {
        Pattern p = Patterns.parse("bigbird:64:1:1:2:9");
        FlashPlan plan = FlashPlan.sparse(SHAPE, DType.BF16);
        SparseTiles t = SparseTiles.build(p, BlockLayout.build(p, SHAPE.heads(), SHAPE.qLen(), SHAPE.kvLen(), 64), SHAPE.qLen(),
                SHAPE.kvLen(), plan.blockRows(), plan.tileKeys());
        long[] at = DeviceTileLists.workspaceLayout(t.lists());
        long[] sizes = {4L * t.lists().offsets().length, 4L * t.lists().tiles().length, 4L * t.lists().fullBefore().length,
            8L * t.lists().masks().length};
        assertEquals(0, at[0]);
        for (int i = 0; i < 4; i++) {
            assertEquals(0, at[i] % 256, "array " + i + " is 256-byte aligned");
            assertTrue(at[i + 1] - at[i] >= Math.max(sizes[i], 4), "array " + i + " fits before the next");
            assertTrue(at[i + 1] - at[i] < Math.max(sizes[i], 8) + 256, "no more than one alignment gap");
        }
        assertTrue(at[4] >= t.deviceBytes());
    }

    @Test
    void layoutBytesFollowTheKernelsTilesWhateverTheHeadDim() {
        for (DType dt : new DType[] {DType.F32, DType.F16, DType.BF16}) {
            FlashPlan plan = FlashPlan.sparse(SHAPE, dt);
            assertEquals(plan.blockRows(), FlashPlan.tileRows(dt), dt.cliName());
            assertEquals(plan.tileKeys(), FlashPlan.tileRows(dt), dt.cliName());
        }
        Pattern w = Patterns.parse("window:40").withCausal();
        long d64 = CudaAttentionEngine.sparseLayoutBytes(SHAPE, DType.F16, w, 64);
        // D = 16 has no f16 kernel, but a memory prediction for it still has an answer: the same tiles.
        long d16 = CudaAttentionEngine.sparseLayoutBytes(new AttentionShape(2, 8, 2, 300, 300, 16), DType.F16, w, 64);
        assertEquals(d64, d16);
        FlashPlan plan = FlashPlan.sparse(SHAPE, DType.F16);
        assertEquals(SparseTiles.build(w, BlockLayout.build(w, 8, 300, 300, 64), 300, 300, plan.blockRows(), plan.tileKeys())
                .deviceBytes(), d64);
    }
}
