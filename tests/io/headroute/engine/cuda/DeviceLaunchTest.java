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
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

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

    @ParameterizedTest(name = "B={0} L={1} H={2} Br={3} compact={4}")
    @CsvSource({"2, 300, 8, 64, false", "2, 300, 8, 64, true", "1, 1, 1, 32, true", "3, 777, 5, 32, false", "1, 32768, 16, 64, true"})
    void deviceWorkListsAreCarvedAlignedFromTheWorkspace(int b, int l, int h, int br, boolean compact) {
        GateWork.Layout w = GateWork.Layout.of(b, l, h, br, compact);
        long tiles = (long) b * h * ((l + br - 1) / br);
        long[] at = {w.counts(), w.rows(), w.list(), w.total(), w.bytes()};
        long[] need = {4L * (compact ? (long) b * h : tiles), compact ? 4L * b * h * l : 0, 12L * tiles, 4};
        assertEquals(0, w.counts());
        for (int i = 0; i < 4; i++) {
            assertEquals(0, at[i] % 256, "array " + i + " is 256-byte aligned");
            assertTrue(at[i + 1] - at[i] >= need[i], "array " + i + " fits before the next");
            assertTrue(at[i + 1] - at[i] < Math.max(need[i], 4) + 256, "no more than one alignment gap after array " + i);
        }
        assertEquals(compact ? 4L * b * h * l : 0, w.rowsBytes());
        assertEquals(0, w.bytes() % 256);
        GateWork.Layout placed = w.at(1L << 20);
        assertEquals((1L << 20) + w.list(), placed.list());
        assertEquals((1L << 20) + w.total(), placed.total());
        assertEquals(compact ? (1L << 20) + w.rows() : 0, placed.rows(), "no row list without compaction");
    }

    @Test
    void theGranularityIsChosenWithoutTheGate() {
        for (DType dt : new DType[] {DType.F32, DType.BF16, DType.F16}) {
            int br = FlashPlan.tileRows(dt);
            assertEquals(CudaAttentionEngine.GateMode.WHOLE_GRID, CudaAttentionEngine.deviceGateMode(br, 0));
            assertEquals(CudaAttentionEngine.GateMode.COMPACT, CudaAttentionEngine.deviceGateMode(br, 1),
                    "per-token routing and callers' gates compact");
            assertEquals(CudaAttentionEngine.GateMode.TILES, CudaAttentionEngine.deviceGateMode(br, br),
                    "routing blocks of one kernel tile switch whole tiles");
            assertEquals(CudaAttentionEngine.GateMode.TILES, CudaAttentionEngine.deviceGateMode(br, 4 * br));
            assertEquals(CudaAttentionEngine.GateMode.COMPACT, CudaAttentionEngine.deviceGateMode(br, br / 2),
                    "blocks smaller than a tile vary within it");
            assertEquals(CudaAttentionEngine.GateMode.COMPACT, CudaAttentionEngine.deviceGateMode(br, br + 16));
        }
    }

    @Test
    void theWorkspaceHoldsTheLayoutThenTheWorkList() {
        Pattern w = Patterns.parse("window:40").withCausal();
        FlashPlan plan = FlashPlan.sparse(SHAPE, DType.BF16);
        long layout = DeviceTileLists.workspaceLayout(SparseTiles.build(w, BlockLayout.build(w, 8, 300, 300, 64), 300, 300,
                plan.blockRows(), plan.tileKeys()).lists())[4];
        GateWork.Layout tiles = GateWork.Layout.of(2, 300, 8, 64, false);
        assertEquals(layout, CudaAttentionEngine.deviceWorkspaceBytes(SHAPE, DType.BF16, Algorithm.FLASH, w, 64, 0));
        GateWork.Layout rows = GateWork.Layout.of(2, 300, 8, 64, true);
        assertEquals(layout + rows.bytes(), CudaAttentionEngine.deviceWorkspaceBytes(SHAPE, DType.BF16, Algorithm.FLASH, w, 64, 1),
                "a sparse layer routed per token adds its compacted rows and their tiles");
        assertEquals(layout + rows.total(), CudaAttentionEngine.deviceWorkTotalOffset(SHAPE, DType.BF16, Algorithm.FLASH, w, 64, 1));
        assertEquals(layout + tiles.bytes(), CudaAttentionEngine.deviceWorkspaceBytes(SHAPE, DType.BF16, Algorithm.FLASH, w, 64, 64),
                "a sparse layer routed per 64-row block adds a tile list");
        assertEquals(-1, CudaAttentionEngine.deviceWorkTotalOffset(SHAPE, DType.BF16, Algorithm.FLASH, w, 64, 0));
        Pattern c = new Pattern.Causal();
        assertEquals(0, CudaAttentionEngine.deviceWorkspaceBytes(SHAPE, DType.BF16, Algorithm.FLASH, c, 64, 0));
        assertEquals(rows.bytes(), CudaAttentionEngine.deviceWorkspaceBytes(SHAPE, DType.BF16, Algorithm.FLASH, c, 64, 1));
        assertEquals(tiles.bytes(), CudaAttentionEngine.deviceWorkspaceBytes(SHAPE, DType.BF16, Algorithm.FLASH, c, 64, 128));
        assertEquals(rows.total(), CudaAttentionEngine.deviceWorkTotalOffset(SHAPE, DType.BF16, Algorithm.FLASH, c, 64, 1));
        assertEquals(2L * 8 * 5, CudaAttentionEngine.gridTiles(SHAPE, DType.BF16, Algorithm.FLASH, c));
        assertEquals(2L * 8 * 10, CudaAttentionEngine.gridTiles(SHAPE, DType.F32, Algorithm.FLASH, c));
        assertThrows(UnsupportedOperationException.class,
                () -> CudaAttentionEngine.deviceWorkspaceBytes(SHAPE, DType.BF16, Algorithm.MATERIALIZED, c, 64, 1));

        // W4X2: work lists of 128-row tiles for the dense kernels (Bq = 64 then needs compaction); the sparse
        // kernels, fp32 and D = 96 have no W4X2 and keep their rows.
        FlashPlan.Tiling x = FlashPlan.Tiling.W4X2;
        GateWork.Layout rows128 = GateWork.Layout.of(2, 300, 8, 128, true);
        GateWork.Layout tiles128 = GateWork.Layout.of(2, 300, 8, 128, false);
        assertEquals(rows128.bytes(), CudaAttentionEngine.deviceWorkspaceBytes(SHAPE, DType.BF16, Algorithm.FLASH, c, 64, 64, x));
        assertEquals(tiles128.bytes(), CudaAttentionEngine.deviceWorkspaceBytes(SHAPE, DType.BF16, Algorithm.FLASH, c, 64, 256, x));
        assertEquals(2L * 8 * 3, CudaAttentionEngine.gridTiles(SHAPE, DType.BF16, Algorithm.FLASH, c, x));
        assertEquals(2L * 8 * 10, CudaAttentionEngine.gridTiles(SHAPE, DType.F32, Algorithm.FLASH, c, x));
        AttentionShape d96 = new AttentionShape(2, 8, 2, 300, 300, 96);
        assertEquals(2L * 8 * 5, CudaAttentionEngine.gridTiles(d96, DType.BF16, Algorithm.FLASH, c, x));
        assertEquals(layout + rows.bytes(), CudaAttentionEngine.deviceWorkspaceBytes(SHAPE, DType.BF16, Algorithm.FLASH, w, 64, 1, x),
                "the sparse kernels keep 64-row tiles");
        assertEquals(CudaAttentionEngine.GateMode.COMPACT, CudaAttentionEngine.deviceGateMode(128, 64));
        assertEquals(CudaAttentionEngine.GateMode.TILES, CudaAttentionEngine.deviceGateMode(128, 256));
    }

    @Test
    void deviceWorkListsMirrorTheHostPlans() {
        Random r = new Random(5);
        float[] g = GateWorkTest.gate(r, 2, 300, 8);
        AttentionShape sh = SHAPE;
        assertEquals(null, CudaAttentionEngine.deviceWorkList(g, sh, DType.BF16, Algorithm.FLASH, new Pattern.Causal(), 0));
        org.junit.jupiter.api.Assertions.assertArrayEquals(GateWork.compactedTiles(GateWork.compact(g, 2, 300, 8).counts(), 2, 8, 64),
                CudaAttentionEngine.deviceWorkList(g, sh, DType.BF16, Algorithm.FLASH, new Pattern.Causal(), 1));
        org.junit.jupiter.api.Assertions.assertArrayEquals(GateWork.compactedTiles(GateWork.compact(g, 2, 300, 8).counts(), 2, 8, 32),
                CudaAttentionEngine.deviceWorkList(g, sh, DType.F32, Algorithm.FLASH, Patterns.parse("window:9"), 1));
        org.junit.jupiter.api.Assertions.assertArrayEquals(GateWork.activeTiles(g, 2, 300, 8, 32),
                CudaAttentionEngine.deviceWorkList(g, sh, DType.F32, Algorithm.FLASH, Patterns.parse("window:9"), 32));
        org.junit.jupiter.api.Assertions.assertArrayEquals(GateWork.compactedTiles(GateWork.compact(g, 2, 300, 8).counts(), 2, 8, 128),
                CudaAttentionEngine.deviceWorkList(g, sh, DType.BF16, Algorithm.FLASH, new Pattern.Causal(), 1, FlashPlan.Tiling.W4X2));
    }

    /** Strided o views: the memsets cover exactly the (B, H, L, D) elements, nothing between them. */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"contiguous", "rows-of-heads", "rows-of-heads-padded-batch", "planes-padded-batch", "columns"})
    void zeroSpansCoverExactlyTheOutput(String layout) {
        int b = 2;
        int h = 3;
        int l = 5;
        int d = 8;
        int es = 2;
        long[] st = switch (layout) {
            case "contiguous" -> new long[] {(long) h * l * d, (long) l * d, d};
            // a call of heads 2..4 of 7 in a (B, L, 7, D) buffer: o starts 2·D in, rows 7·D apart
            case "rows-of-heads" -> new long[] {7L * l * d, d, 7L * d};
            case "rows-of-heads-padded-batch" -> new long[] {7L * l * d + 24, d, 7L * d};
            case "planes-padded-batch" -> new long[] {(long) h * (l * d + 8) + 40, l * d + 8, d};
            default -> new long[] {9L * l * d * 2, 3L * d, 9L * d}; // heads 3·D apart in rows of 9 heads
        };
        AttentionShape sh = new AttentionShape(b, h, h, l, l, d);
        List<long[]> spans = CudaAttentionEngine.zeroSpans(new AttentionParams.Strides(st, st, st, st), sh, es);
        long extent = ((b - 1) * st[0] + (h - 1) * st[1] + (l - 1) * st[2] + d) * es;
        int[] hits = new int[(int) extent + 64];
        for (long[] z : spans) {
            assertTrue(z[2] <= z[1] || z[3] == 1, layout + ": width within the pitch");
            for (long row = 0; row < z[3]; row++) {
                for (long x = 0; x < z[2]; x++) {
                    hits[(int) (z[0] + row * z[1] + x)]++;
                }
            }
        }
        boolean[] want = new boolean[hits.length];
        for (int bb = 0; bb < b; bb++) {
            for (int hh = 0; hh < h; hh++) {
                for (int i = 0; i < l; i++) {
                    for (int e = 0; e < d * es; e++) {
                        want[(int) ((bb * st[0] + hh * st[1] + i * st[2]) * es + e)] = true;
                    }
                }
            }
        }
        for (int i = 0; i < hits.length; i++) {
            assertEquals(want[i] ? 1 : 0, hits[i], layout + ": byte " + i);
        }
        assertTrue(spans.size() <= b * h, layout + ": " + spans.size() + " memsets");
        if (layout.equals("contiguous") || layout.equals("rows-of-heads")) {
            assertEquals(1, spans.size(), layout + ": one 2-D memset");
        }
    }
}
