package io.headroute.pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.BitSet;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** A positioned pattern is its inner pattern at the sequence's positions, seen through the call's keys. */
class PositionedTest {
    private static final String[] SPECS = {"causal", "window:9", "longformer:5:3", "bigbird:8:1:1:2:3", "window:4+causal"};

    private static Pattern parse(String spec) {
        return spec.endsWith("+causal") ? Patterns.parse(spec.substring(0, spec.length() - 7)).withCausal() : Patterns.parse(spec);
    }

    private static BitSet keys(KeyRanges r) {
        BitSet b = new BitSet();
        for (int t = 0; t < r.size(); t++) {
            b.set(r.start(t), r.end(t));
        }
        return b;
    }

    @Test
    void rowsAndSpansAreTheInnerPatternsAtTheSequencePositions() {
        Random rnd = new Random(17);
        for (String spec : SPECS) {
            Pattern inner = parse(spec);
            for (int trial = 0; trial < 40; trial++) {
                int n = 40 + rnd.nextInt(90);
                int s = 1 + rnd.nextInt(n);
                int l = 1 + rnd.nextInt(s);
                int qStart = rnd.nextInt(n - l + 1);
                int kStart = rnd.nextInt(n - s + 1);
                Pattern.Positioned p = new Pattern.Positioned(inner, qStart, kStart, n, l, s);
                int h = rnd.nextInt(3);
                KeyRanges out = new KeyRanges();
                BitSet[] rows = new BitSet[l];
                for (int i = 0; i < l; i++) {
                    p.allowedKeys(h, i + s - l, s, out);
                    rows[i] = keys(out);
                    BitSet want = new BitSet();
                    for (int j = 0; j < s; j++) {
                        if (inner.allows(h, qStart + i, kStart + j, n)) {
                            want.set(j);
                        }
                    }
                    assertEquals(want, rows[i], spec + " " + p.spec() + " L=" + l + " S=" + s + " row " + i);
                }
                int i0 = rnd.nextInt(l);
                int i1 = i0 + rnd.nextInt(l - i0);
                KeyRanges any = new KeyRanges();
                KeyRanges all = new KeyRanges();
                p.spanKeys(h, i0 + s - l, i1 + s - l, s, false, any, all);
                BitSet wantAny = new BitSet();
                BitSet wantAll = new BitSet();
                wantAll.set(0, s);
                for (int i = i0; i <= i1; i++) {
                    wantAny.or(rows[i]);
                    wantAll.and(rows[i]);
                }
                assertEquals(wantAny, keys(any), p.spec() + " any of rows " + i0 + " … " + i1);
                assertEquals(wantAll, keys(all), p.spec() + " all of rows " + i0 + " … " + i1);
            }
        }
    }

    @Test
    void theCausalRuleIsTheSequences() {
        Pattern.Positioned p = new Pattern.Positioned(new Pattern.Window(100), 50, 30, 200, 10, 40);
        Pattern c = p.withCausal();
        assertEquals("window:100+causal@q50,k30/200", c.spec());
        // Query 0 sits at 50: keys 30 … 50 of the sequence, the call's 0 … 20.
        assertTrue(c.allows(0, 40 - 10, 20, 40));
        assertTrue(!c.allows(0, 40 - 10, 21, 40));
        assertEquals(c, c.withCausal());
    }

    @Test
    void checksAndRefusals() {
        Pattern.Positioned p = new Pattern.Positioned(new Pattern.Window(3), 0, 10, 100, 5, 20);
        p.check(2, 5, 20);
        assertEquals("window:3@q0,k10/100 was positioned for L = 5, S = 20, not L = 5, S = 21",
                assertThrows(PatternException.class, () -> p.check(2, 5, 21)).getMessage());
        assertThrows(IllegalArgumentException.class, () -> new Pattern.Positioned(p, 0, 0, 100, 5, 20));
        assertThrows(IllegalArgumentException.class, () -> new Pattern.Positioned(new Pattern.Causal(), 0, 90, 100, 5, 20));
        assertThrows(IllegalArgumentException.class, () -> new Pattern.Positioned(new Pattern.Causal(), 0, 0, 100, 21, 20));
        // A layout is checked against the sequence's keys, not the call's.
        boolean[] bits = new boolean[4 * 4];
        java.util.Arrays.fill(bits, true);
        Pattern.Layout layout = new Pattern.Layout(16, 1, 4, bits, "test");
        new Pattern.Positioned(layout, 0, 32, 64, 8, 16).check(1, 8, 16);
        assertThrows(PatternException.class, () -> new Pattern.Positioned(layout, 0, 0, 80, 8, 16).check(1, 8, 16));
    }
}
