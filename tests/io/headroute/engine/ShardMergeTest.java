package io.headroute.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.bench.AttentionBenchmark;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class ShardMergeTest {
    private static final CpuAttentionEngine ENGINE = new CpuAttentionEngine(2);

    @AfterAll
    static void close() {
        ENGINE.close();
    }

    private static Tensor gaussian(Random r, long... shape) {
        float[] x = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return Tensor.ofFloats(x, shape);
    }

    @ParameterizedTest(name = "L={0} S={1} shards={2} Hkv={3}")
    @CsvSource({"1, 1000, 3, 4", "77, 300, 2, 2", "64, 640, 5, 1", "5, 50, 7, 4"})
    void shardedEqualsUnsharded(int l, int s, int shards, int hkv) {
        Random r = new Random(l * 31L + s);
        Tensor q = gaussian(r, 2, 4, l, 64);
        Tensor k = gaussian(r, 2, hkv, s, 64);
        Tensor v = gaussian(r, 2, hkv, s, 64);
        AttentionResult whole = ENGINE.run(AttentionRequest.builder(q, k, v).wantLse(true).build());
        List<ShardMerge.Part> parts = new ArrayList<>();
        for (int i = 0; i < shards; i++) {
            int from = s * i / shards;
            int to = s * (i + 1) / shards;
            // Dense attention does not depend on positions, so a shard is plain attention over its keys;
            // the contract needs L ≤ S in each shard, which the cases keep.
            assertTrue(to - from >= l, "shard smaller than L");
            Tensor ks = k.slice(2, from, to);
            Tensor vs = v.slice(2, from, to);
            AttentionResult res = ENGINE.run(AttentionRequest.builder(q, ks, vs).wantLse(true).build());
            parts.add(new ShardMerge.Part(res.o(), res.lse()));
        }
        ShardMerge.Part merged = ShardMerge.merge(parts);
        assertTrue(AttentionBenchmark.relativeL2(merged.o().toFloatArray(), whole.o().toFloatArray()) < 1e-6);
        float[] a = merged.lse().toFloatArray();
        float[] b = whole.lse().toFloatArray();
        for (int i = 0; i < a.length; i++) {
            assertEquals(b[i], a[i], 1e-5 * Math.max(1, Math.abs(b[i])), "lse row " + i);
        }
    }

    /**
     * Causal ring attention from the public pieces: the sequence in blocks of Bk tokens; query block t attends the key
     * blocks before it densely (every key is in its past) and its own block causally (L = S = Bk, where the bottom-right
     * alignment is the diagonal); later blocks are skipped. Merged, that equals causal attention over the whole.
     */
    @ParameterizedTest(name = "N={0} Bk={1} Hkv={2}")
    @CsvSource({"300, 100, 2", "231, 77, 1", "64, 64, 4"})
    void causalRingAttentionIsDensePastShardsAndACausalDiagonalShard(int n, int bk, int hkv) {
        Random r = new Random(n * 7L + bk);
        Tensor q = gaussian(r, 1, 4, n, 32);
        Tensor k = gaussian(r, 1, hkv, n, 32);
        Tensor v = gaussian(r, 1, hkv, n, 32);
        AttentionResult whole = ENGINE.run(AttentionRequest.builder(q, k, v).causal(true).wantLse(true).build());
        for (int t = 0; t * bk < n; t++) {
            int from = t * bk;
            int to = Math.min(n, from + bk);
            Tensor qt = q.slice(2, from, to);
            List<ShardMerge.Part> parts = new ArrayList<>();
            for (int u = 0; u <= t; u++) {
                AttentionResult res = ENGINE.run(AttentionRequest.builder(qt, k.slice(2, u * bk, u * bk + bk),
                        v.slice(2, u * bk, u * bk + bk)).causal(u == t).wantLse(true).build());
                parts.add(new ShardMerge.Part(res.o(), res.lse()));
            }
            ShardMerge.Part merged = ShardMerge.merge(parts);
            float[] want = whole.o().slice(2, from, to).toFloatArray();
            assertTrue(AttentionBenchmark.relativeL2(merged.o().toFloatArray(), want) < 1e-6, "query block " + t);
            float[] lse = merged.lse().toFloatArray();
            float[] all = whole.lse().toFloatArray();
            for (int h = 0; h < 4; h++) {
                for (int i = from; i < to; i++) {
                    float b = all[h * n + i];
                    assertEquals(b, lse[h * (to - from) + i - from], 1e-5 * Math.max(1, Math.abs(b)), "lse head " + h + " row " + i);
                }
            }
        }
    }

    /**
     * Any pattern shards once each call says where its queries and keys sit ({@code positions}): query blocks of Bq
     * tokens against key blocks of Bk ≥ Bq tokens, every pair of blocks a call (pairs the pattern leaves empty give
     * lse −∞, weight 0), merged per query block: the whole attention, by each algorithm, rows empty in the whole
     * (a window's far rows have none) empty in the merge.
     */
    @ParameterizedTest(name = "{0} causal={1} N={2} Bq={3} Bk={4} {5}")
    @CsvSource({
        "window:23, false, 300, 50, 100, FLASH",
        "window:23, true, 300, 50, 100, SPARSE",
        "window:40, true, 257, 64, 64, MATERIALIZED",
        "longformer:10:7, false, 230, 40, 77, FLASH",
        "longformer:10:7, true, 230, 40, 77, SPARSE",
        "bigbird:16:1:1:2:5, false, 200, 32, 48, FLASH",
        "bigbird:16:1:1:2:5, true, 200, 32, 48, MATERIALIZED",
        "causal, false, 301, 60, 60, SPARSE",
        "dense, true, 150, 25, 75, FLASH"})
    void anyPatternShardsAtItsPositions(String spec, boolean causal, int n, int bq, int bk, Algorithm algo) {
        Random r = new Random(spec.hashCode() + n);
        Tensor q = gaussian(r, 1, 4, n, 32);
        Tensor k = gaussian(r, 1, 2, n, 32);
        Tensor v = gaussian(r, 1, 2, n, 32);
        Pattern pattern = Patterns.parse(spec);
        AttentionResult whole = ENGINE.run(AttentionRequest.builder(q, k, v).pattern(pattern).causal(causal).wantLse(true).build());
        float[] wholeLse = whole.lse().toFloatArray();
        for (int from = 0; from < n; from += bq) {
            int to = Math.min(n, from + bq);
            Tensor qt = q.slice(2, from, to);
            List<ShardMerge.Part> parts = new ArrayList<>();
            for (int k0 = 0, k1; k0 < n; k0 = k1) {
                // Blocks of Bk keys, the last one taking the rest: no call has fewer keys than queries (L ≤ S).
                k1 = n - k0 < 2 * bk ? n : k0 + bk;
                AttentionResult res = ENGINE.run(AttentionRequest.builder(qt, k.slice(2, k0, k1), v.slice(2, k0, k1))
                        .pattern(pattern).causal(causal).positions(from, k0, n).algorithm(algo).wantLse(true).build());
                parts.add(new ShardMerge.Part(res.o(), res.lse()));
            }
            ShardMerge.Part merged = ShardMerge.merge(parts);
            float[] want = whole.o().slice(2, from, to).toFloatArray();
            assertTrue(AttentionBenchmark.relativeL2(merged.o().toFloatArray(), want) < 1e-6, "query block at " + from);
            float[] lse = merged.lse().toFloatArray();
            for (int h = 0; h < 4; h++) {
                for (int i = from; i < to; i++) {
                    float b = wholeLse[h * n + i];
                    float a = lse[h * (to - from) + i - from];
                    if (b == Float.NEGATIVE_INFINITY) {
                        assertEquals(b, a, "empty row, head " + h + " row " + i);
                    } else {
                        assertEquals(b, a, 1e-5 * Math.max(1, Math.abs(b)), "lse head " + h + " row " + i);
                    }
                }
            }
        }
    }

    @Test
    void positionsOutsideTheSequenceAreRefused() {
        Random r = new Random(5);
        Tensor q = gaussian(r, 1, 2, 4, 8);
        Tensor k = gaussian(r, 1, 2, 10, 8);
        AttentionRequest.Builder b = AttentionRequest.builder(q, k, k).pattern(Patterns.parse("window:3"));
        assertEquals("positions: queries 0 … 3 and keys 95 … 104 must lie in the sequence's 100 keys (L = 4, S = 10)",
                assertThrows(ShapeException.class, () -> b.positions(0, 95, 100).build()).getMessage());
        assertThrows(ShapeException.class, () -> b.positions(-1, 0, 100).build());
        assertThrows(ShapeException.class, () -> b.positions(97, 0, 100).build());
        // The default positions, and any positions of a dense pattern, leave the pattern as it is.
        assertEquals("window:3", b.positions(6, 0, 10).build().pattern().spec());
        assertEquals("dense", AttentionRequest.builder(q, k, k).positions(0, 50, 100).build().pattern().spec());
        // Positions are checked whatever the pattern: a dense shard's are wrong as well.
        assertThrows(ShapeException.class, () -> AttentionRequest.builder(q, k, k).positions(0, 95, 100).build());
        assertEquals("window:3+causal@q40,k30/100", b.causal(true).positions(40, 30, 100).build().pattern().spec());
    }

    @Test
    void rowsEmptyInEveryShardStayEmpty() {
        Tensor o = Tensor.ofFloats(new float[] {0, 0, 1, 2}, 1, 1, 2, 2);
        Tensor lse = Tensor.ofFloats(new float[] {Float.NEGATIVE_INFINITY, 0.5f}, 1, 1, 2);
        Tensor o2 = Tensor.ofFloats(new float[] {0, 0, 3, 4}, 1, 1, 2, 2);
        Tensor lse2 = Tensor.ofFloats(new float[] {Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY}, 1, 1, 2);
        ShardMerge.Part m = ShardMerge.merge(List.of(new ShardMerge.Part(o, lse), new ShardMerge.Part(o2, lse2)));
        float[] mo = m.o().toFloatArray();
        float[] ml = m.lse().toFloatArray();
        assertEquals(Float.NEGATIVE_INFINITY, ml[0]);
        assertEquals(0f, mo[0]);
        assertEquals(0f, mo[1]);
        assertEquals(0.5f, ml[1]);
        assertEquals(1f, mo[2]);
        assertEquals(2f, mo[3], "a shard with lse −∞ has weight 0");
    }

    @Test
    void mismatchedShardsAreRefused() {
        Tensor o = Tensor.ofFloats(new float[4], 1, 1, 2, 2);
        Tensor lse = Tensor.ofFloats(new float[2], 1, 1, 2);
        Tensor o3 = Tensor.ofFloats(new float[6], 1, 1, 3, 2);
        Tensor lse3 = Tensor.ofFloats(new float[3], 1, 1, 3);
        assertThrows(ShapeException.class,
                () -> ShardMerge.merge(List.of(new ShardMerge.Part(o, lse), new ShardMerge.Part(o3, lse3))));
        assertThrows(IllegalArgumentException.class, () -> ShardMerge.merge(List.of()));
    }

    /** A result run without wantLse(true) has no lse: the shard is refused with a message saying so (it was an NPE). */
    @Test
    void aShardWithoutLseSaysHowToGetOne() {
        Random r = new Random(3);
        AttentionResult res = ENGINE.run(AttentionRequest.builder(gaussian(r, 1, 2, 4, 8), gaussian(r, 1, 2, 8, 8),
                gaussian(r, 1, 2, 8, 8)).build());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ShardMerge.merge(List.of(new ShardMerge.Part(res.o(), res.lse()))));
        assertEquals("a shard needs o and lse, got o (1, 2, 4, 8) and no lse (request it with wantLse(true))",
                e.getMessage());
    }
}
