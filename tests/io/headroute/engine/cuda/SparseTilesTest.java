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
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The block-sparse kernels' host planning: a BlockLayout split into kernel tiles (64 × 64 on tensor
 * cores, 128 × 64 in the 128-row tilings, 32 × 32 in fp32) against brute force over every (row, key)
 * pair of the token rule: a tile is listed iff it has an allowed pair, full iff every valid pair is
 * allowed, and a partial tile's bits are exactly the allowed pairs.
 */
class SparseTilesTest {
    private static final int HEADS = 3;

    @TempDir
    static Path dir;

    static Rule randomLayout(long seed, int heads, int kvLen, int bs, double keep) {
        int n = (kvLen + bs - 1) / bs;
        Random rnd = new Random(seed);
        boolean[] bits = new boolean[heads * n * n];
        for (int t = 0; t < bits.length; t++) {
            bits[t] = rnd.nextDouble() < keep;
        }
        return Rule.layout(bs, heads, n, bits);
    }

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        int[][] sizes = {{77, 300}, {300, 300}, {1, 130}, {200, 1000}};
        for (int[] ls : sizes) {
            List<Rule> rules = new ArrayList<>(List.of(Rule.dense(), Rule.causalRule(), Rule.window(0), Rule.window(45),
                    Rule.longformer(20, 5), Rule.bigbird(48, 1, 1, 2, 7), Rule.bigbird(64, 0, 0, 3, -5)));
            rules.add(randomLayout(ls[1], 1, ls[1], 64, 0.4));
            rules.add(randomLayout(ls[1] + 1, HEADS, ls[1], 20, 0.3));
            for (Rule r : rules) {
                for (boolean causal : new boolean[] {false, true}) {
                    for (int bs : new int[] {64, 128}) {
                        out.add(Arguments.of(r.withCausal(causal), ls[0], ls[1], bs, 64, 64));
                        out.add(Arguments.of(r.withCausal(causal), ls[0], ls[1], bs, 32, 32));
                        // The 128-row tilings: over blocks of 64 a kernel tile spans two layout rows.
                        out.add(Arguments.of(r.withCausal(causal), ls[0], ls[1], bs, 128, 64));
                    }
                }
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} L={1} S={2} BS={3} tile={4}x{5}")
    @MethodSource("cases")
    void kernelTilesMatchTheTokenRuleByBruteForce(Rule rule, int qLen, int kvLen, int bs, int br, int bc) {
        String what = rule + " L=" + qLen + " S=" + kvLen + " BS=" + bs + " tile=" + br + "x" + bc;
        Pattern p = rule.toEffectivePattern(dir, "st-" + rule + "-" + kvLen);
        BlockLayout layout = BlockLayout.build(p, HEADS, qLen, kvLen, bs);
        SparseTiles st = SparseTiles.build(p, layout, qLen, kvLen, br, bc);
        int qTiles = (qLen + br - 1) / br;
        int kTiles = (kvLen + bc - 1) / bc;
        assertEquals(qTiles, st.queryTiles(), what);
        assertEquals(kTiles, st.keyTiles(), what);
        assertEquals(layout.heads(), st.layoutHeads(), what);
        long listed = 0;
        for (int h = 0; h < HEADS; h++) {
            for (int qt = 0; qt < qTiles; qt++) {
                List<Integer> wantFull = new ArrayList<>();
                List<Integer> wantPartial = new ArrayList<>();
                List<long[]> wantBits = new ArrayList<>();
                for (int kt = 0; kt < kTiles; kt++) {
                    long[] bits = new long[br];
                    boolean any = false;
                    boolean all = true;
                    for (int r = 0; r < br && qt * br + r < qLen; r++) {
                        int pos = qt * br + r + kvLen - qLen;
                        for (int c = 0; c < bc && kt * bc + c < kvLen; c++) {
                            boolean a = ReferenceAttention.allowed(rule, h, pos, kt * bc + c, kvLen);
                            any |= a;
                            all &= a;
                            if (a) {
                                bits[r] |= 1L << c;
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
                String cell = what + ": head " + h + " query tile " + qt;
                assertEquals(wantFull.toString(), java.util.Arrays.toString(st.full(h, qt)), cell + ": full tiles");
                assertEquals(wantPartial.toString(), java.util.Arrays.toString(st.partial(h, qt)), cell + ": partial tiles");
                for (int x = 0; x < wantBits.size(); x++) {
                    assertArrayEquals(wantBits.get(x), st.mask(h, qt, x), cell + ": bits of partial tile " + wantPartial.get(x));
                }
                assertEquals(wantFull.size() + wantPartial.size(), st.listed(h, qt), cell + ": listed");
                if (st.layoutHeads() > 1 || h == 0) {
                    listed += st.listed(h, qt);
                }
            }
        }
        assertEquals(listed, st.listedTiles(), what + ": listed tiles over all cells");
    }

    @Test
    void deviceBytesFollowTheListedTilesNotLTimesS() {
        int n = 32768;
        Pattern w = Patterns.parse("window:256");
        BlockLayout layout = BlockLayout.build(w, 16, n, n, 64);
        SparseTiles st = SparseTiles.build(w, layout, n, n, 64, 64);
        assertEquals(1, st.layoutHeads(), "a window is the same for every head");
        // Each query tile sees the 64-key tiles within ±256 of its rows: 9 or 10 of them, 2 partial.
        long cells = (long) st.queryTiles();
        assertTrue(st.listedTiles() <= 10 * cells, st.toString());
        long bytes = st.deviceBytes();
        assertEquals(4L * (2 * (cells + 1) + st.listedTiles()) + 8L * 64 * (st.listedTiles() - fullTiles(st)), bytes);
        assertTrue(bytes < 3L << 20, "a 32K window layout takes " + bytes + " bytes, not L x S");
    }

    private static long fullTiles(SparseTiles st) {
        long n = 0;
        for (int qt = 0; qt < st.queryTiles(); qt++) {
            n += st.full(0, qt).length;
        }
        return n;
    }

    @Test
    void refusesTilesThatDoNotDivideTheBlocks() {
        Pattern w = Patterns.parse("window:4");
        BlockLayout layout = BlockLayout.build(w, 1, 100, 100, 64);
        assertThrows(IllegalArgumentException.class, () -> SparseTiles.build(w, layout, 100, 100, 128, 128));
        assertThrows(IllegalArgumentException.class, () -> SparseTiles.build(w, layout, 100, 100, 96, 64));
        assertThrows(IllegalArgumentException.class, () -> SparseTiles.build(w, layout, 100, 100, 64, 48));
        assertThrows(IllegalArgumentException.class, () -> SparseTiles.build(w, layout, 100, 200, 64, 64));
    }

    @Test
    void spanSetsExactlyTheBitsInRange() {
        assertEquals(0L, SparseTiles.span(5, 5));
        assertEquals(0b11100L, SparseTiles.span(2, 5));
        assertEquals(-1L, SparseTiles.span(0, 64));
        assertEquals(1L << 63, SparseTiles.span(63, 64));
        assertEquals(0xFFFFFFFFL, SparseTiles.span(0, 32));
    }
}
