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
