package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.cpu.ReferenceAttention;
import io.headroute.engine.cpu.ReferenceAttention.Rule;
import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Key lists merged per compacted tile against brute force over every (compacted row, key) pair of the
 * token rule at the rows' original positions: a key tile is listed iff some row of the tile has an
 * allowed key in it, full iff every (valid row, key within S) pair is allowed, and a partial tile's
 * word for row r is exactly row r's allowed keys (0 past the tile's rows); full and partial lists
 * ascend; offsets and full-before counts add up.
 */
class CompactedSparseTilesTest {
    private static final int HEADS = 3;
    private static final int BATCH = 2;

    @TempDir
    static Path dir;

    /** A gate (B, L, H) with a zero share drawn per (b, h) from [lo, hi). */
    static float[] gate(Random r, int b, int l, int h, double lo, double hi) {
        float[] g = new float[b * l * h];
        for (int bb = 0; bb < b; bb++) {
            for (int hh = 0; hh < h; hh++) {
                double zero = lo + (hi - lo) * r.nextDouble();
                for (int i = 0; i < l; i++) {
                    g[(bb * l + i) * h + hh] = r.nextDouble() < zero ? 0f : 0.1f + r.nextFloat();
                }
            }
        }
        return g;
    }

    static List<Rule> rules(int kvLen, int heads) {
        return List.of(Rule.window(21), Rule.window(0), Rule.longformer(9, 3), Rule.bigbird(48, 1, 1, 2, 7),
                Rule.bigbird(64, 0, 0, 3, -5), SparseTilesTest.randomLayout(kvLen, 1, kvLen, 64, 0.4),
                SparseTilesTest.randomLayout(kvLen + 1, heads, kvLen, 20, 0.3), Rule.dense(), Rule.causalRule());
    }

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        int[][] sizes = {{77, 300}, {300, 300}, {1, 130}, {200, 457}};
        for (int[] ls : sizes) {
            for (Rule r : rules(ls[1], HEADS)) {
                for (boolean causal : new boolean[] {false, true}) {
                    for (int bs : new int[] {64, 128}) {
                        for (int tile : new int[] {64, 32}) {
                            out.add(Arguments.of(r.withCausal(causal), ls[0], ls[1], bs, tile));
                        }
                    }
                }
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} L={1} S={2} BS={3} tile={4}")
    @MethodSource("cases")
    void mergedListsMatchTheTokenRuleByBruteForce(Rule rule, int qLen, int kvLen, int bs, int tile) {
        String what = rule + " L=" + qLen + " S=" + kvLen + " BS=" + bs + " tile=" + tile;
        Pattern p = rule.toEffectivePattern(dir, "cst-" + rule + "-" + kvLen);
        SparseTiles st = SparseTiles.build(p, BlockLayout.build(p, HEADS, qLen, kvLen, bs), qLen, kvLen, tile, tile);
        Random rnd = new Random(what.hashCode());
        float[] g = gate(rnd, BATCH, qLen, HEADS, 0.3, 0.7);
        GateWork.Compaction c = GateWork.compact(g, BATCH, qLen, HEADS);
        int[] work = GateWork.compactedTiles(c.counts(), BATCH, HEADS, tile);
        CompactedSparseTiles m = CompactedSparseTiles.build(st, work, c.rows(), c.counts(), HEADS, qLen, kvLen);
        int kTiles = (kvLen + tile - 1) / tile;
        assertEquals(work.length / 3, m.blocks(), what);
        long listed = 0;
        long fullSoFar = 0;
        for (int e = 0; e < m.blocks(); e++) {
            int bh = work[3 * e] * HEADS + work[3 * e + 1];
            int h = work[3 * e + 1];
            int r0 = work[3 * e + 2] * tile;
            int n = Math.min(tile, c.counts()[bh] - r0);
            assertTrue(n >= 1 && n <= tile, what + ": rows of launched tile " + e);
            List<Integer> wantFull = new ArrayList<>();
            List<Integer> wantPartial = new ArrayList<>();
            List<long[]> wantBits = new ArrayList<>();
            for (int kt = 0; kt < kTiles; kt++) {
                long[] bits = new long[tile];
                boolean any = false;
                boolean all = true;
                for (int r = 0; r < n; r++) {
                    int pos = c.rows()[bh * qLen + r0 + r] + kvLen - qLen;
                    for (int col = 0; col < tile && kt * tile + col < kvLen; col++) {
                        boolean a = ReferenceAttention.allowed(rule, h, pos, kt * tile + col, kvLen);
                        any |= a;
                        all &= a;
                        if (a) {
                            bits[r] |= 1L << col;
                        }
                    }
                }
                if (any && all) {
                    wantFull.add(kt);
                } else if (any) {
                    wantPartial.add(kt);
                    wantBits.add(bits);
                }
            }
            String cell = what + ": launched tile " + e + " (b, h, ct) = " + Arrays.toString(Arrays.copyOfRange(work, 3 * e, 3 * e + 3));
            assertEquals(wantFull.toString(), Arrays.toString(m.full(e)), cell + ": full tiles");
            assertEquals(wantPartial.toString(), Arrays.toString(m.partial(e)), cell + ": partial tiles");
            for (int x = 0; x < wantBits.size(); x++) {
                assertArrayEquals(wantBits.get(x), m.mask(e, x), cell + ": bits of partial tile " + wantPartial.get(x));
            }
            assertEquals(wantFull.size() + wantPartial.size(), m.listed(e), cell + ": listed");
            listed += m.listed(e);
            fullSoFar += wantFull.size();
            assertEquals(listed, m.lists().offsets()[e + 1], cell + ": offsets");
            assertEquals(fullSoFar, m.lists().fullBefore()[e + 1], cell + ": full-before count");
        }
        assertEquals(listed, m.listedTiles(), what + ": listed over all launched tiles");
        assertEquals((listed - fullSoFar) * tile, m.lists().masks().length, what + ": one Br-word mask per partial entry");
    }

    /** A compacted tile of a window gathers far-apart rows: its list is the union, not any one tile's list. */
    @Test
    void aTileOfScatteredRowsListsTheUnionOfItsRowsKeyTiles() {
        int l = 640;
        Pattern w = Patterns.parse("window:10");
        SparseTiles st = SparseTiles.build(w, BlockLayout.build(w, 1, l, l, 64), l, l, 64, 64);
        float[] g = new float[l];
        for (int i = 0; i < l; i += 64) {
            g[i + 5] = 1f; // one row in each of the ten query tiles: one compacted tile
        }
        GateWork.Compaction c = GateWork.compact(g, 1, l, 1);
        int[] work = GateWork.compactedTiles(c.counts(), 1, 1, 64);
        CompactedSparseTiles m = CompactedSparseTiles.build(st, work, c.rows(), c.counts(), 1, l, l);
        assertEquals(1, m.blocks());
        // Row 64t + 5 sees keys 64t − 5 … 64t + 15: key tiles t − 1 (from t = 1 on) and t, each partial for the tile.
        assertArrayEquals(new int[0], m.full(0));
        assertArrayEquals(new int[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, m.partial(0));
        long[] first = m.mask(0, 0);
        assertEquals(SparseTiles.span(0, 16), first[0], "row 5 in key tile 0");
        assertEquals(SparseTiles.span(59, 64), first[1], "row 69 in key tile 0");
        for (int r = 2; r < 64; r++) {
            assertEquals(0L, first[r], "rows of other tiles, and rows past the count, allow nothing in key tile 0");
        }
        assertTrue(st.listedTiles() > 10, "the layout itself lists more");
        assertEquals(10, m.listedTiles());
    }

    @Test
    void refusesListsOfAnotherShape() {
        Pattern w = Patterns.parse("window:4");
        SparseTiles st = SparseTiles.build(w, BlockLayout.build(w, 1, 100, 100, 64), 100, 100, 64, 64);
        GateWork.Compaction c = GateWork.compact(new float[100], 1, 100, 1);
        assertThrows(IllegalArgumentException.class, () -> CompactedSparseTiles.build(st, new int[0], c.rows(), c.counts(), 1, 100,
                200));
        assertThrows(IllegalArgumentException.class, () -> CompactedSparseTiles.build(st, new int[2], c.rows(), c.counts(), 1, 100,
                100));
        assertEquals(0, CompactedSparseTiles.build(st, new int[0], c.rows(), c.counts(), 1, 100, 100).blocks(),
                "an all-zero gate launches nothing");
    }
}
