package io.headroute.engine.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.ExecutionStats;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Flash and sparse items that hold the rows of several query heads of one kv head (decoding) give every row the bits
 * it gets in an item of its own head, and the statistics stay per (batch, head) query tile. (Sparse shares items only
 * for layouts shared by all heads; bigbird's random blocks are per head.)
 */
class SharedItemsTest {
    private static int[] counts(int n, int rows) {
        int[] c = new int[n];
        Arrays.fill(c, rows);
        return c;
    }

    @Test
    void headsPerItemFollowsRowsGroupAndWorkers() {
        AttentionShape gqa = new AttentionShape(1, 32, 8, 1, 4096, 128);
        assertEquals(4, CpuAttentionEngine.headsPerItem(gqa, counts(32, 1), 32, 2), "a group of 4, one row each");
        assertEquals(1, CpuAttentionEngine.headsPerItem(gqa, counts(32, 1), 32, 64), "64 workers: an item per head");
        assertEquals(2, CpuAttentionEngine.headsPerItem(gqa, counts(32, 1), 32, 16), "16 workers: 16 items of 2 heads");
        assertEquals(2, CpuAttentionEngine.headsPerItem(gqa, counts(32, 32), 32, 2), "32 rows: 2 heads make a query tile");
        assertEquals(1, CpuAttentionEngine.headsPerItem(gqa, counts(32, 33), 32, 2), "33 rows: a head fills half a tile");
        assertEquals(1, CpuAttentionEngine.headsPerItem(gqa, counts(32, 0), 32, 2), "no active row");
        AttentionShape mqa = new AttentionShape(1, 32, 1, 2, 4096, 64);
        assertEquals(16, CpuAttentionEngine.headsPerItem(mqa, counts(32, 2), 32, 2), "MQA: two items of 16 heads");
        AttentionShape mha = new AttentionShape(1, 32, 32, 1, 4096, 64);
        assertEquals(1, CpuAttentionEngine.headsPerItem(mha, counts(32, 1), 32, 2), "no group to share");
    }

    private static Tensor gaussian(Random rnd, long... shape) {
        float[] v = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) rnd.nextGaussian();
        }
        return Tensor.ofFloats(v, shape);
    }

    private static int[] bits(Tensor t) {
        float[] f = t.toFloatArray();
        int[] b = new int[f.length];
        for (int i = 0; i < f.length; i++) {
            b[i] = Float.floatToRawIntBits(f[i]);
        }
        return b;
    }

    @Test
    void sharedItemsGiveTheBitsOfItemsPerHead() {
        Random rnd = new Random(21);
        // (B, H, Hkv, L, S, D): group 4 and 8 (MQA), L from 1 to a half tile, odd S.
        int[][] shapes = {{2, 8, 2, 1, 777, 64}, {1, 8, 1, 3, 1000, 32}, {1, 12, 3, 16, 301, 96}, {2, 6, 2, 2, 64, 128}};
        String[] patterns = {"dense", "causal", "window:40", "longformer:16:3", "bigbird:16:1:1:2:5"};
        for (int[] s : shapes) {
            Tensor q = gaussian(rnd, s[0], s[1], s[3], s[5]);
            Tensor k = gaussian(rnd, s[0], s[2], s[4], s[5]);
            Tensor v = gaussian(rnd, s[0], s[2], s[4], s[5]);
            float[] g = new float[s[0] * s[3] * s[1]];
            for (int i = 0; i < g.length; i++) {
                g[i] = rnd.nextInt(4) == 0 ? 0f : 0.5f + rnd.nextFloat();
            }
            Tensor gate = Tensor.ofFloats(g, s[0], s[3], s[1]);
            for (String p : patterns) {
                for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
                    for (Algorithm algo : new Algorithm[] {Algorithm.FLASH, Algorithm.SPARSE}) {
                        AttentionRequest req = AttentionRequest.builder(q, k, v).pattern(Patterns.parse(p)).gate(gate).dtype(dtype)
                                .algorithm(algo).wantLse(true).build();
                        AttentionResult shared;
                        AttentionResult perHead;
                        // One worker shares items among a group's heads; as many workers as (batch, head)s never do.
                        try (CpuAttentionEngine one = new CpuAttentionEngine(1);
                                CpuAttentionEngine many = new CpuAttentionEngine(s[0] * s[1])) {
                            shared = one.run(req);
                            perHead = many.run(req);
                        }
                        String what = Arrays.toString(s) + " " + p + " " + dtype + " " + algo;
                        assertArrayEquals(bits(perHead.o()), bits(shared.o()), what);
                        assertArrayEquals(bits(perHead.lse()), bits(shared.lse()), what);
                        ExecutionStats a = shared.stats();
                        ExecutionStats b = perHead.stats();
                        assertEquals(b.queryTiles(), a.queryTiles(), what);
                        assertEquals(b.keyTilesVisited(), a.keyTilesVisited(), what);
                        assertEquals(b.keyTilesSkipped(), a.keyTilesSkipped(), what);
                        assertEquals(b.rowsSkipped(), a.rowsSkipped(), what);
                    }
                }
            }
        }
    }
}
