package io.headroute.pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.headroute.engine.cpu.ReferenceAttention;
import io.headroute.engine.cpu.ReferenceAttention.Rule;
import io.headroute.tensor.DType;
import io.headroute.tensor.Npy;
import io.headroute.tensor.Tensor;
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
import org.junit.jupiter.params.provider.ValueSource;

class PatternsTest {
    @TempDir
    static Path dir;

    // ------------------------------------------------------------------ parsing

    static Stream<Arguments> goodSpecs() {
        return Stream.of(
                Arguments.of("dense", new Pattern.Dense(), "dense"),
                Arguments.of("causal", new Pattern.Causal(), "causal"),
                Arguments.of("window:0", new Pattern.Window(0), "window:0"),
                Arguments.of("window:128", new Pattern.Window(128), "window:128"),
                Arguments.of("  window:7\t", new Pattern.Window(7), "window:7"),
                Arguments.of("longformer:256:2", new Pattern.Longformer(256, 2), "longformer:256:2"),
                Arguments.of("longformer:0:0", new Pattern.Longformer(0, 0), "longformer:0:0"),
                Arguments.of("bigbird:64:1:2:3:42", new Pattern.BigBird(64, 1, 2, 3, 42), "bigbird:64:1:2:3:42"),
                Arguments.of("bigbird:64:1:2:3: 42", new Pattern.BigBird(64, 1, 2, 3, 42), "bigbird:64:1:2:3:42"),
                Arguments.of("bigbird:1:0:0:0:-9223372036854775808",
                        new Pattern.BigBird(1, 0, 0, 0, Long.MIN_VALUE), "bigbird:1:0:0:0:-9223372036854775808"),
                Arguments.of("bigbird:48:0:0:5:9223372036854775807",
                        new Pattern.BigBird(48, 0, 0, 5, Long.MAX_VALUE), "bigbird:48:0:0:5:9223372036854775807"));
    }

    @ParameterizedTest(name = "''{0}''")
    @MethodSource("goodSpecs")
    void parsesEveryFormAndRoundTrips(String spec, Pattern expected, String canonical) {
        Pattern p = Patterns.parse(spec);
        assertEquals(expected, p, "parse('" + spec + "')");
        assertEquals(canonical, p.spec(), "spec() of '" + spec + "'");
        assertEquals(p, Patterns.parse(p.spec()), "parse(spec()) of '" + spec + "'");
    }

    @Test
    void parsesLayoutFiles() {
        boolean[] bits = {true, false, false, true, true, true, false, false, true};
        byte[] bytes = new byte[bits.length];
        for (int t = 0; t < bits.length; t++) {
            bytes[t] = (byte) (bits[t] ? 1 : 0);
        }
        // bool and uint8 files; a per-head (2, 3, 3) one made by stacking the same bits twice.
        Path boolFile = dir.resolve("l-bool.npy");
        Npy.write(boolFile, Tensor.ofBytes(DType.BOOL, bytes, 1, 3, 3));
        Path u8File = dir.resolve("l-u8.npy");
        byte[] two = new byte[18];
        System.arraycopy(bytes, 0, two, 0, 9);
        System.arraycopy(bytes, 0, two, 9, 9);
        two[9] = 7; // any non-zero byte is true
        Npy.write(u8File, Tensor.ofBytes(DType.U8, two, 2, 3, 3));

        Pattern p = Patterns.parse("layout:16:" + boolFile);
        Pattern.Layout l = assertInstanceOf(Pattern.Layout.class, p, "layout spec");
        assertEquals(16, l.bs());
        assertEquals(1, l.heads());
        assertEquals(3, l.blocks());
        assertArrayEquals(bits, l.bits(), "bool layout bits");
        assertEquals("layout:16:" + boolFile, p.spec());
        assertEquals(p, Patterns.parse(p.spec()), "layout round trip");
        assertEquals(16, p.blockSize());
        assertFalse(p.perHead(), "a 1-head layout is shared");

        Pattern.Layout l2 = assertInstanceOf(Pattern.Layout.class, Patterns.parse("layout:8:" + u8File));
        assertEquals(2, l2.heads());
        assertTrue(l2.bits()[9], "u8 value 7 reads as true");
        assertTrue(l2.perHead(), "a 2-head layout is per head");
        assertEquals(Patterns.layout(8, u8File), l2, "Patterns.layout and parse agree");

        // Neither the bits nor a head map handed out can change a pattern (layouts are cached by pattern).
        l.bits()[0] = !bits[0];
        assertArrayEquals(bits, l.bits(), "the accessor's array is a copy");
        assertEquals(bits[0], l.allows(0, 0, 0, 48));
        Pattern.HeadsOf of = new Pattern.HeadsOf(l2, new int[] {1, 0});
        of.heads()[0] = 0;
        assertArrayEquals(new int[] {1, 0}, of.heads(), "the head map's accessor returns a copy");
    }

    @Test
    void layoutFilesOfTheWrongKindAreRejected() {
        Path rank2 = dir.resolve("rank2.npy");
        Npy.write(rank2, Tensor.ofBytes(DType.U8, new byte[9], 3, 3));
        Path notSquare = dir.resolve("notsquare.npy");
        Npy.write(notSquare, Tensor.ofBytes(DType.U8, new byte[6], 1, 2, 3));
        Path floats = dir.resolve("floats.npy");
        Npy.write(floats, Tensor.ofFloats(new float[9], 1, 3, 3));
        for (Path f : List.of(rank2, notSquare, floats)) {
            PatternException e = assertThrows(PatternException.class, () -> Patterns.parse("layout:4:" + f), f.toString());
            assertOneLine(e, f.toString());
        }
    }

    static Stream<String> badSpecs() {
        return Stream.of(
                "", "   ", "foo", "dense:1", "causal:0", "window", "window:", "window:1:2", "window:-1",
                "window:1.5", "window:abc", "window:99999999999", "longformer:3", "longformer:1:2:3", "longformer:-1:0",
                "longformer:1:-2", "longformer:x:1", "bigbird:64:1:1:1", "bigbird:64:1:1:1:1:1", "bigbird:0:1:1:1:1",
                "bigbird:-64:1:1:1:1", "bigbird:64:-1:1:1:1", "bigbird:64:1:-1:1:1", "bigbird:64:1:1:-1:1",
                "bigbird:64:1:1:1:x", "bigbird:64:1:1:1:1.5", "bigbird:64:1:1:1:", "layout", "layout:64", "layout:64:",
                "layout:0:x.npy", "layout:-1:x.npy", "layout:a:x.npy", "window:3+causal");
    }

    @ParameterizedTest(name = "''{0}''")
    @MethodSource("badSpecs")
    void badSpecsAreRejected(String spec) {
        PatternException e = assertThrows(PatternException.class, () -> Patterns.parse(spec), "spec '" + spec + "'");
        assertOneLine(e, "spec '" + spec + "'");
    }

    /** Out-of-range numbers say so (they were "must be an integer"). */
    @Test
    void outOfRangeNumbersSaySo() {
        assertEquals("pattern 'window:99999999999': W must be an integer of at most 2147483647 in magnitude, got '99999999999'",
                assertThrows(PatternException.class, () -> Patterns.parse("window:99999999999")).getMessage());
        assertEquals("pattern 'window:abc': W must be an integer, got 'abc'",
                assertThrows(PatternException.class, () -> Patterns.parse("window:abc")).getMessage());
        assertTrue(assertThrows(PatternException.class, () -> Patterns.parse("bigbird:64:1:1:1:18446744073709551615")).getMessage()
                .contains("SEED must be a decimal integer from -9223372036854775808 to 9223372036854775807"));
    }

    /**
     * A pattern built in Java, not parsed, is refused for what the parser refuses: a negative window left every
     * row empty (o = 0, lse = −∞, no error), and block size 0 divided by zero.
     */
    @Test
    void recordsRefuseWhatTheParserRefuses() {
        assertEquals("pattern 'window:-1': W must be >= 0, got -1",
                assertThrows(PatternException.class, () -> new Pattern.Window(-1)).getMessage());
        assertEquals("pattern 'longformer:4:-2': G must be >= 0, got -2",
                assertThrows(PatternException.class, () -> new Pattern.Longformer(4, -2)).getMessage());
        assertEquals("pattern 'longformer:-4:2': W must be >= 0, got -4",
                assertThrows(PatternException.class, () -> new Pattern.Longformer(-4, 2)).getMessage());
        assertEquals("pattern 'bigbird:0:1:1:1:7': BS must be > 0, got 0",
                assertThrows(PatternException.class, () -> new Pattern.BigBird(0, 1, 1, 1, 7)).getMessage());
        for (int[] bad : new int[][] {{-1, 0, 0}, {0, -1, 0}, {0, 0, -1}}) {
            assertThrows(PatternException.class, () -> new Pattern.BigBird(16, bad[0], bad[1], bad[2], 7),
                    "bigbird W G R " + java.util.Arrays.toString(bad));
        }
        assertThrows(PatternException.class, () -> new Pattern.Layout(0, 1, 1, new boolean[] {true}, "x.npy"));
        // What the parser accepts still builds: the least values.
        assertEquals("window:0", new Pattern.Window(0).spec());
        assertEquals("bigbird:1:0:0:0:7", new Pattern.BigBird(1, 0, 0, 0, 7).spec());
    }

    @Test
    void nullSpecIsRejected() {
        assertOneLine(assertThrows(PatternException.class, () -> Patterns.parse(null)), "null spec");
    }

    /** A spec can come from a shell or a file and carry a line break; the message must stay one line. */
    @ParameterizedTest
    @ValueSource(strings = {"window:3\nx", "foo\nbar", "bigbird:64:1:1:1:1\r2"})
    void messagesStayOneLineForSpecsWithLineBreaks(String spec) {
        PatternException e = assertThrows(PatternException.class, () -> Patterns.parse(spec), "spec with a line break");
        assertOneLine(e, "spec " + spec.replace("\n", "\\n").replace("\r", "\\r"));
    }

    private static void assertOneLine(PatternException e, String what) {
        String m = e.getMessage();
        assertTrue(m != null && !m.isBlank(), what + ": empty message");
        assertFalse(m.contains("\n") || m.contains("\r"), what + ": message is not one line: '" + m + "'");
    }

    @Test
    void causalFolding() {
        assertEquals(new Pattern.Causal(), new Pattern.Dense().withCausal(), "dense + causal is causal");
        assertEquals(new Pattern.Causal(), new Pattern.Causal().withCausal(), "causal + causal");
        Pattern w = new Pattern.Window(3).withCausal();
        assertEquals(new Pattern.CausalOf(new Pattern.Window(3)), w);
        assertEquals(w, w.withCausal(), "causal twice");
        assertEquals("window:3+causal", w.spec());
        Pattern bb = new Pattern.BigBird(16, 1, 0, 2, 1).withCausal();
        assertEquals(16, bb.blockSize(), "CausalOf keeps the block size");
        assertTrue(bb.perHead(), "CausalOf keeps perHead");
        assertTrue(new Pattern.Dense().isDense());
        assertFalse(new Pattern.Window(1_000_000).isDense(), "only dense declares itself dense");
        assertFalse(new Pattern.BigBird(16, 1, 0, 0, 1).perHead(), "bigbird without random blocks is shared");
    }

    // ------------------------------------------------------------------ KeyRanges

    private static String ranges(KeyRanges r) {
        StringBuilder sb = new StringBuilder();
        for (int t = 0; t < r.size(); t++) {
            sb.append('[').append(r.start(t)).append(',').append(r.end(t)).append(')');
        }
        return sb.toString();
    }

    private static KeyRanges of(int limit, long... startEnd) {
        KeyRanges r = new KeyRanges();
        for (int t = 0; t < startEnd.length; t += 2) {
            r.add(startEnd[t], startEnd[t + 1], limit);
        }
        return r;
    }

    @Test
    void keyRangesAddMergesAndClips() {
        assertEquals("", ranges(new KeyRanges()), "empty");
        assertEquals("[2,5)", ranges(of(100, 2, 5)), "one range");
        assertEquals("[2,5)[7,9)", ranges(of(100, 2, 5, 7, 9)), "two in order");
        assertEquals("[2,9)", ranges(of(100, 2, 5, 5, 9)), "adjacent in order merge");
        assertEquals("[2,9)", ranges(of(100, 5, 9, 2, 5)), "adjacent out of order merge");
        assertEquals("[2,9)", ranges(of(100, 2, 7, 4, 9)), "overlapping");
        assertEquals("[2,9)", ranges(of(100, 2, 9, 3, 4)), "contained");
        assertEquals("[1,10)", ranges(of(100, 3, 4, 1, 10)), "containing");
        assertEquals("[2,5)[7,9)", ranges(of(100, 7, 9, 2, 5)), "out of order");
        assertEquals("[0,3)[10,12)[20,25)", ranges(of(100, 20, 25, 10, 12, 0, 3)), "reverse order");
        assertEquals("[0,25)", ranges(of(100, 0, 5, 10, 15, 20, 25, 3, 22)), "bridging three");
        assertEquals("[0,5)[8,25)", ranges(of(100, 0, 5, 10, 15, 20, 25, 8, 20)), "bridging two, adjacent on the right");
        assertEquals("[0,5)[6,7)[10,15)", ranges(of(100, 0, 5, 10, 15, 6, 7)), "in a gap");
        assertEquals("[0,4)", ranges(of(4, -10, 100)), "clipped to [0, limit)");
        assertEquals("", ranges(of(4, 5, 9)), "entirely past the limit");
        assertEquals("", ranges(of(4, -9, 0)), "entirely negative");
        assertEquals("", ranges(of(100, 5, 5, 7, 3)), "empty and inverted ranges add nothing");
        assertEquals("[0,2147483647)", ranges(of(Integer.MAX_VALUE, Long.MIN_VALUE, Long.MAX_VALUE)), "extreme longs");
        // Many ranges: growth past the initial capacity, then a bridging add.
        KeyRanges many = new KeyRanges();
        for (int t = 19; t >= 0; t--) {
            many.add(10L * t, 10L * t + 5, 1000);
        }
        assertEquals(20, many.size(), "20 disjoint ranges added backwards");
        assertEquals(100, many.keyCount());
        many.add(0, 200, 1000);
        assertEquals("[0,200)", ranges(many), "one add covering all");
        many.clear();
        assertEquals(0, many.size(), "clear");
        assertEquals(Integer.MAX_VALUE, many.first(), "first of empty");
        assertEquals(Integer.MIN_VALUE, many.last(), "last of empty");
    }

    @Test
    void keyRangesQueries() {
        KeyRanges r = of(100, 10, 20, 30, 35, 50, 51);
        assertEquals(10, r.first());
        assertEquals(51, r.last());
        assertEquals(16, r.keyCount());
        assertEquals(16, r.countIn(0, 100));
        assertEquals(0, r.countIn(0, 10), "before the first range");
        assertEquals(1, r.countIn(19, 30), "last key of a range");
        assertEquals(7, r.countIn(15, 32), "straddling a gap");
        assertEquals(0, r.countIn(20, 30), "inside a gap");
        assertEquals(1, r.countIn(50, 51));
        assertEquals(0, r.countIn(51, 200));
        assertEquals(0, r.countIn(40, 20), "inverted query");
        for (int j = -1; j < 60; j++) {
            boolean in = (j >= 10 && j < 20) || (j >= 30 && j < 35) || j == 50;
            assertEquals(in, r.contains(j), "contains(" + j + ")");
        }
    }

    @Test
    void keyRangesClipBelow() {
        assertEquals("[10,20)[30,35)", ranges(clip(of(100, 10, 20, 30, 35, 50, 51), 40)), "between ranges");
        assertEquals("[10,20)[30,33)", ranges(clip(of(100, 10, 20, 30, 35, 50, 51), 33)), "inside a range");
        assertEquals("[10,20)", ranges(clip(of(100, 10, 20, 30, 35, 50, 51), 30)), "at a range start");
        assertEquals("[10,20)[30,35)", ranges(clip(of(100, 10, 20, 30, 35), 35)), "at a range end");
        assertEquals("[10,11)", ranges(clip(of(100, 10, 20, 30, 35), 11)));
        assertEquals("", ranges(clip(of(100, 10, 20, 30, 35), 10)), "at the first start");
        assertEquals("", ranges(clip(of(100, 10, 20), 0)), "clip to nothing");
        assertEquals("", ranges(clip(of(100, 10, 20), -5)), "negative end");
        assertEquals("[10,20)", ranges(clip(of(100, 10, 20), 1000)), "past the end");
        assertEquals("", ranges(clip(new KeyRanges(), 5)), "empty");
        KeyRanges c = clip(of(100, 10, 20, 30, 35), 15);
        c.add(17, 40, 100);
        assertEquals("[10,15)[17,40)", ranges(c), "an add after a clip sees the clipped end, not the old one");
        c.add(15, 17, 100);
        assertEquals("[10,40)", ranges(c), "adjacent on both sides after a clip");
    }

    private static KeyRanges clip(KeyRanges r, int end) {
        r.clipBelow(end);
        return r;
    }

    /** Random adds against a boolean array: the ranges are the sorted, disjoint, non-adjacent runs of it. */
    @Test
    void keyRangesMatchABitmap() {
        Random rnd = new Random(3);
        for (int round = 0; round < 2000; round++) {
            int limit = 1 + rnd.nextInt(80);
            boolean[] bits = new boolean[limit];
            KeyRanges r = new KeyRanges();
            int adds = rnd.nextInt(8);
            StringBuilder log = new StringBuilder();
            for (int a = 0; a < adds; a++) {
                long s = rnd.nextInt(limit + 20) - 10;
                long e = s + rnd.nextInt(25) - 3;
                r.add(s, e, limit);
                log.append(" add(").append(s).append(',').append(e).append(')');
                for (long j = Math.max(0, s); j < Math.min(limit, e); j++) {
                    bits[(int) j] = true;
                }
            }
            int clip = rnd.nextBoolean() ? rnd.nextInt(limit + 2) : limit;
            r.clipBelow(clip);
            log.append(" clipBelow(").append(clip).append(')');
            for (int j = clip; j < limit; j++) {
                bits[j] = false;
            }
            String what = "limit " + limit + log;
            assertEquals(runs(bits), ranges(r), what);
            int count = 0;
            for (boolean b : bits) {
                count += b ? 1 : 0;
            }
            assertEquals(count, r.keyCount(), what + ": keyCount");
            int from = rnd.nextInt(limit);
            int to = from + rnd.nextInt(limit - from + 1);
            int in = 0;
            for (int j = from; j < to; j++) {
                in += bits[j] ? 1 : 0;
            }
            assertEquals(in, r.countIn(from, to), what + ": countIn(" + from + ", " + to + ")");
        }
    }

    private static String runs(boolean[] bits) {
        StringBuilder sb = new StringBuilder();
        int j = 0;
        while (j < bits.length) {
            if (!bits[j]) {
                j++;
                continue;
            }
            int s = j;
            while (j < bits.length && bits[j]) {
                j++;
            }
            sb.append('[').append(s).append(',').append(j).append(')');
        }
        return sb.toString();
    }

    // ------------------------------------------------------------------ allowedKeys vs the token rule

    /** Random per-head or shared layout bits for S keys at block size bs. */
    static Rule randomLayout(long seed, int heads, int kvLen, int bs) {
        int n = (kvLen + bs - 1) / bs;
        Random rnd = new Random(seed);
        boolean[] bits = new boolean[heads * n * n];
        for (int t = 0; t < bits.length; t++) {
            bits[t] = rnd.nextDouble() < 0.4;
        }
        return Rule.layout(bs, heads, n, bits);
    }

    /** The token-level patterns checked at every S; layouts are added per S since they depend on it. */
    static List<Rule> tokenRules() {
        return List.of(Rule.dense(), Rule.causalRule(), Rule.window(0), Rule.window(3), Rule.window(200),
                Rule.longformer(2, 3), Rule.longformer(0, 0), Rule.longformer(5, 100), Rule.bigbird(8, 1, 1, 2, 5),
                Rule.bigbird(7, 0, 0, 3, -1), Rule.bigbird(16, 2, 0, 100, 9), Rule.bigbird(1, 0, 1, 4, 77),
                Rule.bigbird(64, 0, 0, 1, Long.MIN_VALUE), Rule.bigbird(5, 1, 2, 0, 0));
    }

    static Stream<Arguments> allowedKeysCases() {
        List<Arguments> out = new ArrayList<>();
        for (int kvLen : new int[] {1, 7, 64, 130}) {
            List<Rule> rules = new ArrayList<>(tokenRules());
            rules.add(randomLayout(kvLen, 1, kvLen, 8));
            rules.add(randomLayout(kvLen + 1, 3, kvLen, 5));
            rules.add(randomLayout(kvLen + 2, 3, kvLen, 64));
            for (Rule r : rules) {
                for (boolean causal : new boolean[] {false, true}) {
                    out.add(Arguments.of(r.withCausal(causal), kvLen));
                }
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} S={1}")
    @MethodSource("allowedKeysCases")
    void allowedKeysEqualsTheTokenRule(Rule rule, int kvLen) {
        int heads = 3;
        Pattern p = rule.toEffectivePattern(dir, "ak-" + rule + "-" + kvLen);
        p.check(heads, kvLen, kvLen);
        KeyRanges r = new KeyRanges();
        r.add(0, 3, 5); // allowedKeys must clear what the buffer held
        for (int h = 0; h < heads; h++) {
            for (int pos = 0; pos < kvLen; pos++) {
                p.allowedKeys(h, pos, kvLen, r);
                String what = rule + " S=" + kvLen + " h=" + h + " p=" + pos + ": " + r;
                for (int t = 0; t < r.size(); t++) {
                    assertTrue(r.start(t) >= 0 && r.start(t) < r.end(t) && r.end(t) <= kvLen, what + ": range " + t);
                    if (t > 0) {
                        assertTrue(r.start(t) > r.end(t - 1), what + ": ranges sorted, disjoint, non-adjacent");
                    }
                }
                int count = 0;
                for (int j = 0; j < kvLen; j++) {
                    boolean expect = ReferenceAttention.allowed(rule, h, pos, j, kvLen);
                    if (expect != r.contains(j)) {
                        fail(what + ": key " + j + " expected " + (expect ? "allowed" : "excluded"));
                    }
                    count += expect ? 1 : 0;
                }
                assertEquals(count, r.keyCount(), what + ": keyCount");
                if (pos % 5 == 0) {
                    for (int j = 0; j < kvLen; j += 3) {
                        assertEquals(ReferenceAttention.allowed(rule, h, pos, j, kvLen), p.allows(h, pos, j, kvLen),
                                what + ": allows(" + j + ")");
                    }
                }
            }
        }
    }

    @Test
    void layoutCheckWantsTheRightBlocksAndHeads() {
        Pattern shared = randomLayout(1, 1, 130, 8).toPattern(dir, "chk-shared"); // n = 17
        shared.check(4, 100, 130);
        shared.check(1, 129, 129);
        assertOneLine(assertThrows(PatternException.class, () -> shared.check(4, 100, 137)), "S=137 needs 18 blocks");
        assertOneLine(assertThrows(PatternException.class, () -> shared.check(4, 100, 128)), "S=128 needs 16 blocks");
        Pattern three = randomLayout(2, 3, 130, 8).toPattern(dir, "chk-three");
        three.check(3, 130, 130);
        assertOneLine(assertThrows(PatternException.class, () -> three.check(4, 130, 130)), "3-head layout, H=4");
        assertOneLine(assertThrows(PatternException.class, () -> three.check(1, 130, 130)), "3-head layout, H=1");
        assertOneLine(assertThrows(PatternException.class, () -> three.withCausal().check(6, 130, 130)),
                "3-head layout + causal, H=6");
    }

    // ------------------------------------------------------------------ BigBird random blocks

    @Test
    void bigBirdRandomEqualsTheIndependentSampler() {
        long[] seeds = {0, 1, 7, -1, 42, Long.MIN_VALUE, Long.MAX_VALUE, 0x9E3779B97F4A7C15L, -123456789L};
        int checked = 0;
        for (long seed : seeds) {
            for (int h = 0; h < 5; h++) {
                for (int qb = 0; qb < 40; qb += 3) {
                    for (int n = 1; n <= 50; n += 7) {
                        for (int r = 0; r <= n + 1; r++) {
                            int[] got = BigBirdRandom.blocks(seed, h, qb, n, r);
                            boolean[] want = ReferenceAttention.randomBlocks(seed, h, qb, n, r);
                            String what = "seed=" + seed + " h=" + h + " qb=" + qb + " n=" + n + " R=" + r + ": "
                                    + java.util.Arrays.toString(got);
                            assertEquals(Math.min(r, n), got.length, what + ": count");
                            boolean[] gotSet = new boolean[n];
                            for (int t = 0; t < got.length; t++) {
                                assertTrue(got[t] >= 0 && got[t] < n, what + ": in range");
                                if (t > 0) {
                                    assertTrue(got[t] > got[t - 1], what + ": sorted and distinct");
                                }
                                gotSet[got[t]] = true;
                            }
                            assertArrayEquals(want, gotSet, what + ": blocks");
                            assertArrayEquals(got, BigBirdRandom.blocks(seed, h, qb, n, r), what + ": deterministic");
                            checked++;
                        }
                    }
                }
            }
        }
        assertTrue(checked > 10_000, "checked " + checked);
    }

    /** Pinned values, computed by hand from the contract, so a shared misreading cannot hide. */
    @Test
    void bigBirdRandomHandComputedValues() {
        // seed 0, h 0, qb 0: state 0; first draw z = splitmix64(golden) = 0xE220A8397B1DCDAF; n=10, R=1: t = 9,
        // x = ((z >>> 32) · 10) >>> 32 = (0xE220A839 · 10) >>> 32 = 8.
        assertEquals(0xE220A8397B1DCDAFL, splitMix(0x9E3779B97F4A7C15L), "SplitMix64 of the golden gamma");
        assertArrayEquals(new int[] {8}, BigBirdRandom.blocks(0, 0, 0, 10, 1), "seed 0, h 0, qb 0, n 10, R 1");
        // The head enters the state: two heads draw different blocks for some query block.
        boolean differs = false;
        for (int qb = 0; qb < 20 && !differs; qb++) {
            differs = !java.util.Arrays.equals(BigBirdRandom.blocks(5, 0, qb, 30, 3), BigBirdRandom.blocks(5, 1, qb, 30, 3));
        }
        assertTrue(differs, "heads draw independently");
    }

    private static long splitMix(long state) {
        long z = state;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
