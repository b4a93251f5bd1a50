package io.headroute.pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.cpu.ReferenceAttention;
import io.headroute.engine.cpu.ReferenceAttention.Rule;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
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

class BlockLayoutTest {
    private static final int HEADS = 3;

    @TempDir
    static Path dir;

    /** Random layout bits, (heads, n, n) with n = ceil(S / bs). */
    static Rule randomLayout(long seed, int heads, int kvLen, int bs, double keep) {
        int n = (kvLen + bs - 1) / bs;
        Random rnd = new Random(seed);
        boolean[] bits = new boolean[heads * n * n];
        for (int t = 0; t < bits.length; t++) {
            bits[t] = rnd.nextDouble() < keep;
        }
        return Rule.layout(bs, heads, n, bits);
    }

    static List<Rule> rules(int kvLen) {
        List<Rule> rs = new ArrayList<>(List.of(Rule.dense(), Rule.causalRule(), Rule.window(0), Rule.window(10),
                Rule.window(100), Rule.longformer(20, 5), Rule.longformer(0, 70), Rule.bigbird(48, 1, 1, 2, 7),
                Rule.bigbird(64, 0, 0, 3, -5), Rule.bigbird(50, 1, 0, 0, 1), Rule.bigbird(32, 0, 0, 100, 2)));
        rs.add(randomLayout(kvLen, 1, kvLen, 64, 0.4));
        rs.add(randomLayout(kvLen + 1, HEADS, kvLen, 20, 0.3));
        rs.add(randomLayout(kvLen + 2, 1, kvLen, 128, 1.0));
        // Pattern blocks that the layout's blocks do not divide, and that do not divide them.
        rs.add(randomLayout(kvLen + 3, HEADS, kvLen, 7, 0.2));
        rs.add(Rule.bigbird(3, 2, 1, 4, 11));
        return rs;
    }

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        int[][] sizes = {{77, 300}, {257, 257}, {1, 300}};
        for (int[] ls : sizes) {
            for (Rule r : rules(ls[1])) {
                for (boolean causal : new boolean[] {false, true}) {
                    for (int bs : ls[0] == 1 ? new int[] {64, 128} : new int[] {5, 16, 64, 128}) {
                        out.add(Arguments.of(r.withCausal(causal), ls[0], ls[1], bs));
                    }
                }
            }
        }
        return out.stream();
    }

    /** Brute-force block classes for one head: 0 empty, 1 partial, 2 full (tiles by query index i). */
    static int[][] bruteForce(Rule rule, int h, int qLen, int kvLen, int bs) {
        int qBlocks = (qLen + bs - 1) / bs;
        int kBlocks = (kvLen + bs - 1) / bs;
        int[][] cls = new int[qBlocks][kBlocks];
        for (int qb = 0; qb < qBlocks; qb++) {
            for (int kb = 0; kb < kBlocks; kb++) {
                boolean any = false;
                boolean all = true;
                for (int i = qb * bs; i < Math.min(qLen, (qb + 1) * bs); i++) {
                    int p = i + (kvLen - qLen);
                    for (int j = kb * bs; j < Math.min(kvLen, (kb + 1) * bs); j++) {
                        boolean a = ReferenceAttention.allowed(rule, h, p, j, kvLen);
                        any |= a;
                        all &= a;
                    }
                }
                cls[qb][kb] = !any ? 0 : all ? 2 : 1;
            }
        }
        return cls;
    }

    @ParameterizedTest(name = "{0} L={1} S={2} BS={3}")
    @MethodSource("cases")
    void matchesTheTokenRuleByBruteForce(Rule rule, int qLen, int kvLen, int bs) {
        String what = rule + " H=" + HEADS + " L=" + qLen + " S=" + kvLen + " BS=" + bs;
        Pattern p = rule.toEffectivePattern(dir, "bl-" + rule + "-" + kvLen);
        BlockLayout layout = BlockLayout.build(p, HEADS, qLen, kvLen, bs);
        int qBlocks = (qLen + bs - 1) / bs;
        int kBlocks = (kvLen + bs - 1) / bs;
        boolean perHead = (rule.kind() == ReferenceAttention.Kind.BIGBIRD && rule.r() > 0)
                || (rule.kind() == ReferenceAttention.Kind.LAYOUT && rule.layoutHeads() > 1);
        assertEquals(perHead ? HEADS : 1, layout.heads(), what + ": heads()");
        assertEquals(qBlocks, layout.qBlocks(), what + ": qBlocks");
        assertEquals(kBlocks, layout.kBlocks(), what + ": kBlocks");
        assertEquals(qLen, layout.qLen(), what);
        assertEquals(kvLen, layout.kvLen(), what);
        assertEquals(bs, layout.blockSize(), what);

        Tensor dense = layout.toDense();
        assertEquals(DType.U8, dense.dtype(), what + ": toDense dtype");
        assertArrayEquals(new long[] {layout.heads(), qBlocks, kBlocks}, dense.shape(), what + ": toDense shape");
        boolean[] listed = dense.toBooleanArray();

        long full = 0;
        long partial = 0;
        for (int h = 0; h < HEADS; h++) {
            int[][] cls = bruteForce(rule, h, qLen, kvLen, bs);
            int stored = layout.heads() == 1 ? 0 : h;
            for (int qb = 0; qb < qBlocks; qb++) {
                List<Integer> wantFull = new ArrayList<>();
                List<Integer> wantPartial = new ArrayList<>();
                for (int kb = 0; kb < kBlocks; kb++) {
                    String cell = what + ": head " + h + " query tile " + qb + " key block " + kb;
                    assertEquals(cls[qb][kb] != 0, listed[(stored * qBlocks + qb) * kBlocks + kb], cell + " listed in toDense");
                    if (cls[qb][kb] == 2) {
                        wantFull.add(kb);
                    } else if (cls[qb][kb] == 1) {
                        wantPartial.add(kb);
                    }
                }
                String tile = what + ": head " + h + " query tile " + qb;
                assertEquals(wantFull.toString(), Arrays.toString(layout.fullBlocks(h, qb)), tile + ": full blocks");
                assertEquals(wantPartial.toString(), Arrays.toString(layout.partialBlocks(h, qb)), tile + ": partial blocks");
                if (h == stored) {
                    full += wantFull.size();
                    partial += wantPartial.size();
                }
            }
        }
        long total = (long) layout.heads() * qBlocks * kBlocks;
        assertEquals(total, layout.totalBlocks(), what + ": totalBlocks");
        assertEquals(full, layout.fullBlockCount(), what + ": fullBlockCount");
        assertEquals(partial, layout.partialBlockCount(), what + ": partialBlockCount");
        assertEquals(full + partial, layout.listedBlocks(), what + ": listedBlocks");
        assertEquals(total - full - partial, layout.emptyBlockCount(), what + ": emptyBlockCount");
        assertEquals(total, layout.fullBlockCount() + layout.partialBlockCount() + layout.emptyBlockCount(),
                what + ": full + partial + empty = total");
        assertEquals((double) (full + partial) / total, layout.density(), 1e-12, what + ": density");
        assertTrue(layout.sizeBytes() > 0, what + ": sizeBytes");
    }

    /** A random pattern of any kind (layouts built directly, not through a file). */
    static Pattern randomPattern(Random rnd, int heads, int kvLen) {
        Pattern p = switch (rnd.nextInt(6)) {
            case 0 -> new Pattern.Dense();
            case 1 -> new Pattern.Causal();
            case 2 -> new Pattern.Window(rnd.nextInt(3) == 0 ? rnd.nextInt(3) : rnd.nextInt(kvLen + 5));
            case 3 -> new Pattern.Longformer(rnd.nextInt(kvLen / 4 + 3), rnd.nextInt(3) == 0 ? 0 : rnd.nextInt(kvLen + 3));
            case 4 -> new Pattern.BigBird(1 + rnd.nextInt(rnd.nextBoolean() ? 8 : 160), rnd.nextInt(3), rnd.nextInt(3),
                    rnd.nextInt(5), rnd.nextLong());
            default -> {
                int bs = 1 + rnd.nextInt(rnd.nextBoolean() ? 8 : 160);
                int n = (kvLen + bs - 1) / bs;
                int lh = rnd.nextBoolean() ? 1 : heads;
                double keep = rnd.nextDouble();
                boolean[] bits = new boolean[lh * n * n];
                for (int t = 0; t < bits.length; t++) {
                    bits[t] = rnd.nextDouble() < keep;
                }
                yield new Pattern.Layout(bs, lh, n, bits, "random-" + bs);
            }
        };
        return rnd.nextBoolean() ? p.withCausal() : p;
    }

    static void assertSameLayout(BlockLayout want, BlockLayout got, String what) {
        assertEquals(want.heads(), got.heads(), what + ": heads()");
        assertEquals(want.qBlocks(), got.qBlocks(), what + ": qBlocks");
        assertEquals(want.kBlocks(), got.kBlocks(), what + ": kBlocks");
        for (int h = 0; h < want.heads(); h++) {
            for (int qb = 0; qb < want.qBlocks(); qb++) {
                String tile = what + ": head " + h + " query tile " + qb;
                assertArrayEquals(want.fullBlocks(h, qb), got.fullBlocks(h, qb), tile + ": full blocks");
                assertArrayEquals(want.partialBlocks(h, qb), got.partialBlocks(h, qb), tile + ": partial blocks");
                assertEquals(want.fullBlocks(h, qb).length, got.fullCount(h, qb), tile + ": fullCount");
                assertEquals(want.fullBlocks(h, qb).length + want.partialBlocks(h, qb).length, got.listedCount(h, qb),
                        tile + ": listedCount");
            }
        }
        assertArrayEquals(want.offsets(), got.offsets(), what + ": CSR offsets");
        assertArrayEquals(want.blockIndices(), got.blockIndices(), what + ": CSR blocks");
        assertArrayEquals(want.fullCounts(), got.fullCounts(), what + ": CSR full counts");
        assertEquals(want.fullBlockCount(), got.fullBlockCount(), what + ": fullBlockCount");
        assertEquals(want.partialBlockCount(), got.partialBlockCount(), what + ": partialBlockCount");
        assertEquals(want.sizeBytes(), got.sizeBytes(), what + ": sizeBytes");
        assertArrayEquals(want.toDense().toBooleanArray(), got.toDense().toBooleanArray(), what + ": toDense");
    }

    /** The analytic builder equals the row-by-row one on random patterns, lengths, block sizes and heads. */
    @Test
    void analyticBuilderMatchesTheRowRangeBuilder() {
        Random rnd = new Random(20261127);
        int[] blockSizes = {1, 4, 5, 16, 64, 128};
        for (int t = 0; t < 800; t++) {
            int kvLen = 1 + rnd.nextInt(rnd.nextInt(4) == 0 ? 40 : 700);
            int qLen = rnd.nextBoolean() ? kvLen : 1 + rnd.nextInt(kvLen);
            int heads = 1 + rnd.nextInt(3);
            int bs = blockSizes[rnd.nextInt(blockSizes.length)];
            Pattern p = randomPattern(rnd, heads, kvLen);
            String what = "#" + t + " " + p + " H=" + heads + " L=" + qLen + " S=" + kvLen + " BS=" + bs;
            assertSameLayout(RowRangeLayouts.build(p, heads, qLen, kvLen, bs), BlockLayout.build(p, heads, qLen, kvLen, bs),
                    what);
        }
    }

    /** Random rules of every kind, lengths and block sizes, against the float64 oracle's token rule cell by cell. */
    @Test
    void randomConfigurationsMatchTheTokenRule() {
        Random rnd = new Random(5);
        int[] blockSizes = {4, 5, 16, 64, 128};
        for (int t = 0; t < 120; t++) {
            int kvLen = 1 + rnd.nextInt(180);
            int qLen = rnd.nextBoolean() ? kvLen : 1 + rnd.nextInt(kvLen);
            int bs = blockSizes[rnd.nextInt(blockSizes.length)];
            Rule rule = switch (rnd.nextInt(6)) {
                case 0 -> Rule.dense();
                case 1 -> Rule.causalRule();
                case 2 -> Rule.window(rnd.nextInt(40));
                case 3 -> Rule.longformer(rnd.nextInt(20), rnd.nextInt(30));
                case 4 -> Rule.bigbird(1 + rnd.nextInt(40), rnd.nextInt(2), rnd.nextInt(2), rnd.nextInt(4), rnd.nextLong());
                default -> randomLayout(rnd.nextLong(), rnd.nextBoolean() ? 1 : HEADS, kvLen, 1 + rnd.nextInt(40),
                        rnd.nextDouble());
            };
            rule = rule.withCausal(rnd.nextBoolean());
            String what = "#" + t + " " + rule + " L=" + qLen + " S=" + kvLen + " BS=" + bs;
            BlockLayout layout = BlockLayout.build(rule.toEffectivePattern(dir, "rnd-" + t), HEADS, qLen, kvLen, bs);
            for (int h = 0; h < HEADS; h++) {
                int[][] cls = bruteForce(rule, h, qLen, kvLen, bs);
                for (int qb = 0; qb < cls.length; qb++) {
                    List<Integer> full = new ArrayList<>();
                    List<Integer> partial = new ArrayList<>();
                    for (int kb = 0; kb < cls[qb].length; kb++) {
                        (cls[qb][kb] == 2 ? full : cls[qb][kb] == 1 ? partial : new ArrayList<Integer>()).add(kb);
                    }
                    assertEquals(full.toString(), Arrays.toString(layout.fullBlocks(h, qb)), what + " head " + h + " tile " + qb);
                    assertEquals(partial.toString(), Arrays.toString(layout.partialBlocks(h, qb)),
                            what + " head " + h + " tile " + qb);
                }
            }
        }
    }

    @Test
    void explicitListsMakeALayout() {
        // L = 100, S = 200, BS = 64: 2 query tiles × 4 key blocks, two heads.
        int[][][] full = {{{0}, {}}, {{1, 3}, {0}}};
        int[][][] partial = {{{2}, {1, 2, 3}}, {{}, {}}};
        BlockLayout l = BlockLayout.fromLists(100, 200, 64, full, partial);
        assertEquals(2, l.heads());
        assertArrayEquals(new int[] {1, 3}, l.fullBlocks(1, 0));
        assertArrayEquals(new int[] {1, 2, 3}, l.partialBlocks(0, 1));
        assertEquals(4, l.fullBlockCount());
        assertEquals(4, l.partialBlockCount());
        assertEquals(16 - 8, l.emptyBlockCount());
        assertArrayEquals(new boolean[] {true, false, true, false, false, true, true, true, false, true, false, true, true,
            false, false, false}, l.toDense().toBooleanArray());
        BlockLayout shared = BlockLayout.fromLists(100, 200, 64, new int[][][] {{{0}, {1}}}, new int[][][] {{{}, {}}});
        assertArrayEquals(new int[] {1}, shared.fullBlocks(5, 1), "one stored head serves every head");

        int[][][] none = {{{}, {}}};
        assertThrows(IllegalArgumentException.class,
                () -> BlockLayout.fromLists(100, 200, 64, new int[][][] {{{4}, {}}}, none), "block out of range");
        assertThrows(IllegalArgumentException.class,
                () -> BlockLayout.fromLists(100, 200, 64, new int[][][] {{{2, 1}, {}}}, none), "not ascending");
        assertThrows(IllegalArgumentException.class,
                () -> BlockLayout.fromLists(100, 200, 64, new int[][][] {{{1, 1}, {}}}, none), "duplicate");
        assertThrows(IllegalArgumentException.class,
                () -> BlockLayout.fromLists(100, 200, 64, new int[][][] {{{1}, {}}}, new int[][][] {{{1}, {}}}),
                "full and partial");
        assertThrows(IllegalArgumentException.class,
                () -> BlockLayout.fromLists(100, 200, 64, new int[][][] {{{1}}}, new int[][][] {{{}}}), "one query tile of two");
        assertThrows(IllegalArgumentException.class, () -> BlockLayout.fromLists(100, 200, 64, full, none), "heads differ");
    }

    @Test
    void denseIsAllFullAndWindowZeroIsTheDiagonal() {
        BlockLayout d = BlockLayout.build(new Pattern.Dense(), 4, 257, 257, 64);
        assertEquals(1, d.heads(), "dense is shared");
        assertEquals(25, d.fullBlockCount(), "dense 257×257 at 64: 5×5 full blocks, ragged edges included");
        assertEquals(0, d.partialBlockCount());
        assertEquals(1.0, d.density());

        BlockLayout w = BlockLayout.build(new Pattern.Window(0), 1, 256, 256, 64);
        assertEquals(0, w.fullBlockCount(), "window:0 fills no block");
        assertEquals(4, w.partialBlockCount(), "window:0 touches the 4 diagonal blocks");
        for (int qb = 0; qb < 4; qb++) {
            assertArrayEquals(new int[] {qb}, w.partialBlocks(0, qb), "window:0 tile " + qb);
        }

        // Causal at L < S: tiles are by query index, shifted by S − L = 64 against the key blocks.
        BlockLayout c = BlockLayout.build(new Pattern.Causal(), 1, 100, 164, 64);
        assertArrayEquals(new int[] {0}, c.fullBlocks(0, 0), "rows 0..63 sit at 64..127: key block 0 is full");
        assertArrayEquals(new int[] {1}, c.partialBlocks(0, 0), "and key block 1 partial");
        assertArrayEquals(new int[] {0, 1}, c.fullBlocks(0, 1), "rows 64..99 sit at 128..163: blocks 0, 1 full");
        assertArrayEquals(new int[] {2}, c.partialBlocks(0, 1), "block 2 (128..163) is partial");
    }

    @Test
    void perHeadOnlyWhereThePatternDiffersByHead() {
        assertEquals(4, BlockLayout.build(new Pattern.BigBird(16, 1, 1, 2, 3), 4, 100, 200, 64).heads(), "bigbird R>0");
        assertEquals(4, BlockLayout.build(new Pattern.BigBird(16, 1, 1, 2, 3).withCausal(), 4, 100, 200, 64).heads(),
                "bigbird R>0 + causal");
        assertEquals(1, BlockLayout.build(new Pattern.BigBird(16, 1, 1, 0, 3), 4, 100, 200, 64).heads(), "bigbird R=0");
        assertEquals(1, BlockLayout.build(new Pattern.Longformer(3, 1), 4, 100, 200, 64).heads(), "longformer");
        assertEquals(1, BlockLayout.build(new Pattern.Causal(), 4, 100, 200, 64).heads(), "causal");
    }

    @Test
    void badSizesAreRejected() {
        Pattern d = new Pattern.Dense();
        assertThrows(IllegalArgumentException.class, () -> BlockLayout.build(d, 1, 10, 9, 64), "L > S");
        assertThrows(IllegalArgumentException.class, () -> BlockLayout.build(d, 0, 10, 10, 64), "H = 0");
        assertThrows(IllegalArgumentException.class, () -> BlockLayout.build(d, 1, 0, 10, 64), "L = 0");
        assertThrows(IllegalArgumentException.class, () -> BlockLayout.build(d, 1, 10, 10, 0), "BS = 0");
        Pattern wrong = randomLayout(1, 1, 300, 64, 0.5).toPattern(dir, "bl-wrong");
        assertThrows(PatternException.class, () -> BlockLayout.build(wrong, 1, 100, 400, 64), "layout for S=300 used at S=400");
    }
}
