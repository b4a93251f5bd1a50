package io.headroute.engine.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class FastExpTest {
    @Test
    void relativeErrorBelowThreeTenMillionthsOverTheSoftmaxRange() {
        SplittableRandom rnd = new SplittableRandom(7);
        double worst = 0;
        float worstX = 0;
        for (int i = 0; i < 2_000_000; i++) {
            // Softmax feeds s − max ≤ 0; cover the positive side too. Below −87.3 the result is flushed to 0.
            float x = (float) (i % 2 == 0 ? -87.29 * rnd.nextDouble() : -87.29 + 175.29 * rnd.nextDouble());
            double ref = Math.exp(x);
            double rel = Math.abs(FastExp.exp(x) - ref) / ref;
            if (Double.isNaN(rel) || rel > worst) { // a NaN stays the worst (nothing compares greater) and fails below
                worst = rel;
                worstX = x;
            }
        }
        assertTrue(worst < 3e-7, "worst relative error " + worst + " at x = " + worstX);
    }

    @Test
    void flushesOnlyWhatFloatSoftmaxCannotSee() {
        // e^-87.3 ≈ 1.2e-38: next to the row maximum's e^0 = 1 it vanishes in any float sum.
        for (float x = -87.3f; x > -200f; x -= 0.37f) {
            assertTrue(FastExp.exp(x) <= 1.2e-38f, "exp(" + x + ") = " + FastExp.exp(x));
        }
    }

    @Test
    void exactAtZeroAndSpecialValues() {
        assertEquals(1f, FastExp.exp(0f));
        assertEquals(0f, FastExp.exp(Float.NEGATIVE_INFINITY));
        assertEquals(0f, FastExp.exp(-1000f));
        assertEquals(Float.POSITIVE_INFINITY, FastExp.exp(100f));
        assertEquals(Float.POSITIVE_INFINITY, FastExp.exp(Float.POSITIVE_INFINITY));
        assertTrue(Float.isNaN(FastExp.exp(Float.NaN)));
    }

    @Test
    void twoPassesGiveTheSameBits() {
        // The engine's exp rows: shifted and polynomial in one loop, fromParts in another; every float of exp's
        // finite range in steps, and the specials.
        float[] specials = {0f, -0f, Float.NEGATIVE_INFINITY, Float.POSITIVE_INFINITY, Float.NaN, -87.3f, Math.nextDown(-87.3f),
            Math.nextUp(-87.3f), 88.7f, Math.nextUp(88.7f), Float.MIN_VALUE, -Float.MIN_VALUE, -1e-30f, -200f};
        for (float x : specials) {
            assertEquals(Float.floatToRawIntBits(FastExp.exp(x)), Float.floatToRawIntBits(twoPasses(x)), "x = " + x);
        }
        for (int bits = Float.floatToRawIntBits(-100f); bits < 0; bits -= 97) {
            float x = Float.intBitsToFloat(bits); // −100 … −0 by small steps in the bits
            assertEquals(Float.floatToRawIntBits(FastExp.exp(x)), Float.floatToRawIntBits(twoPasses(x)), "x = " + x);
        }
        for (int bits = 0; bits <= Float.floatToRawIntBits(100f); bits += 97) {
            float x = Float.intBitsToFloat(bits);
            assertEquals(Float.floatToRawIntBits(FastExp.exp(x)), Float.floatToRawIntBits(twoPasses(x)), "x = " + x);
        }
    }

    private static float twoPasses(float x) {
        float t = FastExp.shifted(x);
        return FastExp.fromParts(x, FastExp.polynomial(x, t), t);
    }

    @Test
    void monotoneAcrossRoundingBoundaries() {
        // Around x·log2(e) = k + 0.5 the reduction switches n; the result must not step backwards.
        for (int k = -120; k < 120; k++) {
            float mid = (float) ((k + 0.5) / 1.4426950408889634);
            float prev = FastExp.exp(Math.nextDown(Math.nextDown(mid)));
            for (float x = Math.nextDown(mid); x <= Math.nextUp(Math.nextUp(mid)); x = Math.nextUp(x)) {
                float e = FastExp.exp(x);
                assertTrue(e >= prev, "exp not monotone at " + x);
                prev = e;
            }
        }
    }
}
