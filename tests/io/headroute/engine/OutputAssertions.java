package io.headroute.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.bench.AttentionBenchmark;
import java.util.Arrays;

/**
 * The one output criterion of the engine tests: every element finite, the relative L2 error within {@code tol} over the
 * whole output and, row by row, in each row of D elements (one wrong row of n moves the whole output's error by only
 * 1/sqrt(n) of its own); lse within {@code tol} relative (absolute below 1), −∞ exactly where the reference's is.
 */
public final class OutputAssertions {
    private OutputAssertions() {}

    /** o (rows of {@code d}) against {@code want}: finite, whole output and, {@code rowByRow}, each row within {@code tol}. */
    public static void assertOutputClose(float[] o, float[] want, int d, double tol, String what, boolean rowByRow) {
        assertEquals(want.length, o.length, what + ": output length");
        for (int i = 0; i < o.length; i++) {
            assertTrue(Float.isFinite(o[i]), what + ": o[" + i + "] = " + o[i] + " (unwritten or NaN)");
        }
        double rel = AttentionBenchmark.relativeL2(o, want);
        assertTrue(rel <= tol, what + ": relative L2 error " + rel + " > " + tol);
        for (int row = 0; rowByRow && row < o.length / d; row++) {
            double rowRel = AttentionBenchmark.relativeL2(Arrays.copyOfRange(o, row * d, row * d + d),
                    Arrays.copyOfRange(want, row * d, row * d + d));
            assertTrue(rowRel <= tol, what + ": row " + row + " of B·H·L: relative L2 error " + rowRel + " > " + tol);
        }
    }

    /** o against {@code want} over the whole output and in each row. */
    public static void assertOutputClose(float[] o, float[] want, int d, double tol, String what) {
        assertOutputClose(o, want, d, tol, what, true);
    }

    /** Each lse within {@code tol} relative (absolute below 1); −∞ exactly where the reference's is. */
    public static void assertLseClose(float[] a, float[] e, double tol, String what) {
        assertEquals(e.length, a.length, what + ": lse length");
        for (int i = 0; i < a.length; i++) {
            if (e[i] == Float.NEGATIVE_INFINITY) {
                assertEquals(Float.NEGATIVE_INFINITY, a[i], what + ": lse[" + i + "] of an empty or gated row");
            } else {
                assertTrue(Float.isFinite(e[i]), what + ": the reference's lse[" + i + "] = " + e[i]);
                assertEquals(e[i], a[i], tol * Math.max(1, Math.abs(e[i])), what + ": lse[" + i + "]");
            }
        }
    }
}
