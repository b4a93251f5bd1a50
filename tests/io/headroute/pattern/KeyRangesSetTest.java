package io.headroute.pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

/** The set operations block layouts are built with, against boolean arrays. */
class KeyRangesSetTest {
    private static final int N = 60;

    private static boolean[] randomSet(Random rnd) {
        boolean[] s = new boolean[N];
        double keep = rnd.nextDouble();
        for (int j = 0; j < N; j++) {
            s[j] = rnd.nextDouble() < keep;
        }
        return s;
    }

    private static KeyRanges ranges(boolean[] s) {
        KeyRanges r = new KeyRanges();
        for (int j = 0; j < N; j++) {
            if (s[j]) {
                r.add(j, j + 1, N);
            }
        }
        return r;
    }

    private static boolean[] members(KeyRanges r) {
        boolean[] s = new boolean[N];
        for (int t = 0; t < r.size(); t++) {
            assertTrue(r.start(t) < r.end(t), "non-empty range " + r);
            if (t > 0) {
                assertTrue(r.end(t - 1) < r.start(t), "sorted, disjoint, non-adjacent: " + r);
            }
            for (int j = r.start(t); j < r.end(t); j++) {
                s[j] = true;
            }
        }
        return s;
    }

    @Test
    void unionIntersectionCopyAndCursorsMatchBooleanSets() {
        Random rnd = new Random(9);
        for (int t = 0; t < 2000; t++) {
            boolean[] a = randomSet(rnd);
            boolean[] b = randomSet(rnd);
            boolean[] or = new boolean[N];
            boolean[] and = new boolean[N];
            for (int j = 0; j < N; j++) {
                or[j] = a[j] || b[j];
                and[j] = a[j] && b[j];
            }
            KeyRanges u = ranges(a);
            u.addAll(ranges(b));
            assertArrayEquals(or, members(u), "union " + ranges(a) + " " + ranges(b));
            KeyRanges i = ranges(a);
            i.retainAll(ranges(b));
            assertArrayEquals(and, members(i), "intersection " + ranges(a) + " " + ranges(b));
            KeyRanges c = new KeyRanges();
            c.set(u);
            assertEquals(u.toString(), c.toString(), "copy");

            KeyRanges ra = ranges(a);
            int from = rnd.nextInt(N);
            int to = from + rnd.nextInt(N - from + 1);
            int first = ra.firstEndingAfter(from, 0);
            for (int r = 0; r < first; r++) {
                assertTrue(ra.end(r) <= from, "ranges before the cursor end by " + from + ": " + ra);
            }
            assertTrue(first == ra.size() || ra.end(first) > from, "cursor range ends after " + from + ": " + ra);
            assertEquals(ra.countIn(from, to), ra.countIn(from, to, first), "countIn from the cursor, " + ra);
        }
    }
}
