package io.headroute.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigDecimal;
import java.util.Random;
import java.util.function.IntFunction;
import org.junit.jupiter.api.Test;

class HalfFloatsTest {
    private static final int F16_INF = 0x7c00;
    private static final int BF16_INF = 0x7f80;

    /** fp16 value from its fields, by the IEEE definition rather than bit shuffling. */
    private static double f16Reference(int h) {
        int exp = (h >>> 10) & 0x1f;
        int mant = h & 0x3ff;
        double v = exp == 0x1f ? Double.POSITIVE_INFINITY
                : exp == 0 ? Math.scalb((double) mant, -24)
                : Math.scalb((double) (1024 + mant), exp - 25);
        return (h & 0x8000) != 0 ? -v : v;
    }

    /** Magnitude of a positive code, where the infinity code stands for the first value past the range. */
    private static BigDecimal f16Magnitude(int code) {
        return code == F16_INF ? new BigDecimal(65536) : new BigDecimal(f16Reference(code));
    }

    private static BigDecimal bf16Magnitude(int code) {
        return code == BF16_INF ? new BigDecimal(Math.scalb(1.0, 128)) : new BigDecimal(Float.intBitsToFloat(code << 16));
    }

    /**
     * Round to nearest, ties to even, by exact search over the ordered positive codes; rounding to the
     * code past the largest finite value means overflow to infinity, as IEEE 754 specifies.
     */
    private static int referenceRound(float x, int infCode, IntFunction<BigDecimal> magnitude) {
        int sign = Float.floatToRawIntBits(x) < 0 ? 0x8000 : 0;
        if (Float.isInfinite(x)) {
            return sign | infCode;
        }
        BigDecimal ax = new BigDecimal(Math.abs((double) x));
        int lo = 0;
        int hi = infCode;
        if (ax.compareTo(magnitude.apply(infCode)) >= 0) {
            return sign | infCode;
        }
        while (hi - lo > 1) { // invariant: magnitude(lo) <= ax < magnitude(hi)
            int mid = (lo + hi) >>> 1;
            if (magnitude.apply(mid).compareTo(ax) <= 0) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        int cmp = ax.subtract(magnitude.apply(lo)).compareTo(magnitude.apply(hi).subtract(ax));
        int code = cmp < 0 ? lo : cmp > 0 ? hi : (lo % 2 == 0 ? lo : hi);
        return sign | code;
    }

    private static int f16(float x) {
        return HalfFloats.floatToF16(x) & 0xffff;
    }

    private static int bf16(float x) {
        return HalfFloats.floatToBf16(x) & 0xffff;
    }

    @Test
    void everyF16BitPatternRoundTrips() {
        int nans = 0;
        for (int h = 0; h < 0x10000; h++) {
            float f = HalfFloats.f16ToFloat((short) h);
            boolean nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
            int back = f16(f);
            if (nan) {
                nans++;
                assertTrue(Float.isNaN(f), Integer.toHexString(h));
                assertTrue((back & 0x7c00) == 0x7c00 && (back & 0x3ff) != 0, "NaN stays NaN: " + Integer.toHexString(h));
                assertEquals(h & 0x8000, back & 0x8000, "NaN keeps its sign");
            } else {
                assertEquals(f16Reference(h), f, 0.0, Integer.toHexString(h));
                assertEquals(Double.doubleToRawLongBits(f16Reference(h)), Double.doubleToRawLongBits(f), "sign of zero");
                assertEquals(h, back, Integer.toHexString(h));
            }
        }
        assertEquals(2 * 1023, nans);
    }

    @Test
    void everyBf16BitPatternRoundTrips() {
        for (int h = 0; h < 0x10000; h++) {
            float f = HalfFloats.bf16ToFloat((short) h);
            boolean nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0;
            int back = bf16(f);
            assertEquals(h << 16, Float.floatToRawIntBits(f), "bf16 is the top half of a float");
            if (nan) {
                assertTrue(Float.isNaN(f));
                assertTrue((back & 0x7f80) == 0x7f80 && (back & 0x7f) != 0, "NaN stays NaN: " + Integer.toHexString(h));
                assertEquals(h & 0x8000, back & 0x8000, "NaN keeps its sign");
            } else {
                assertEquals(h, back, Integer.toHexString(h));
            }
        }
    }

    @Test
    void f16RoundsTiesToEven() {
        assertEquals(0x3c00, f16(1f + 0x1p-11f), "1 + half an ulp: tie, down to even 1.0");
        assertEquals(0x3c02, f16(1f + 3 * 0x1p-11f), "1 + 1.5 ulp: tie, up to even");
        assertEquals(0x3c01, f16(1f + 0x1p-11f + 0x1p-20f), "just above the tie rounds up");
        assertEquals(0x3c00, f16(1f + 0x1p-11f - 0x1p-23f), "just below the tie rounds down");
        assertEquals(0xbc00, f16(-1f - 0x1p-11f), "ties are symmetric in sign");
        assertEquals(0x4000, f16(2f - 0x1p-12f), "a carry out of the mantissa bumps the exponent");
    }

    @Test
    void f16OverflowsToInfinity() {
        assertEquals(0x7bff, f16(65504f), "largest finite");
        assertEquals(0x7bff, f16(65519.996f), "below the midpoint to 65536 stays finite");
        assertEquals(F16_INF, f16(65520f), "the midpoint ties to the even neighbour, which is infinity");
        assertEquals(F16_INF, f16(1e5f));
        assertEquals(0xfc00, f16(-1e5f));
        assertEquals(F16_INF, f16(Float.MAX_VALUE));
        assertEquals(F16_INF, f16(Float.POSITIVE_INFINITY));
        assertEquals(0xfc00, f16(Float.NEGATIVE_INFINITY));
    }

    @Test
    void f16Subnormals() {
        assertEquals(0x0001, f16(0x1p-24f), "smallest subnormal");
        assertEquals(0x03ff, f16(1023 * 0x1p-24f), "largest subnormal");
        assertEquals(0x0400, f16(0x1p-14f), "smallest normal");
        assertEquals(0x0400, f16(0x1p-14f - 0x1p-25f), "tie between largest subnormal and smallest normal goes to even");
        assertEquals(0x0000, f16(0x1p-25f), "half the smallest subnormal ties down to zero");
        assertEquals(0x0001, f16(0x1p-25f + 0x1p-40f), "just above half rounds up");
        assertEquals(0x0002, f16(3 * 0x1p-25f), "1.5 subnormal ulps ties up to even");
        assertEquals(0x8000, f16(-0x1p-30f), "tiny negatives keep the sign of zero");
        assertEquals(0x0000, f16(Float.MIN_VALUE));
        assertEquals(0x8000, f16(-0f));
        assertEquals(0x1p-24f, HalfFloats.f16ToFloat((short) 1));
    }

    @Test
    void bf16RoundsTiesToEvenAndOverflows() {
        assertEquals(0x3f80, bf16(1f + 0x1p-8f), "tie down to even");
        assertEquals(0x3f82, bf16(1f + 3 * 0x1p-8f), "tie up to even");
        assertEquals(0x3f81, bf16(1f + 0x1p-8f + 0x1p-20f));
        assertEquals(0x7f7f, bf16(Float.intBitsToFloat(0x7f7f7fff)), "below the midpoint stays finite");
        assertEquals(BF16_INF, bf16(Float.MAX_VALUE), "rounds past the largest finite bf16");
        assertEquals(0xff80, bf16(-Float.MAX_VALUE));
        assertEquals(0x0001, bf16(Float.intBitsToFloat(0x00010000)), "subnormals pass through");
        assertEquals(0x0000, bf16(Float.MIN_VALUE), "the smallest float subnormal ties down to zero");
        assertEquals(0x0001, bf16(Float.intBitsToFloat(0x00008001)));
    }

    @Test
    void randomFloatsMatchAnExactReference() {
        Random rnd = new Random(20240611);
        for (int i = 0; i < 9000; i++) {
            float x = switch (i % 3) {
                case 0 -> Float.intBitsToFloat(rnd.nextInt()); // every magnitude, mostly over- and underflow for fp16
                case 1 -> (rnd.nextFloat() * 2 - 1) * 70000f; // the fp16 range and just past it
                default -> (float) (rnd.nextGaussian() * 0x1p-14); // around the fp16 subnormals
            };
            if (Float.isNaN(x)) {
                assertTrue(Float.isNaN(HalfFloats.roundToF16(x)));
                assertTrue(Float.isNaN(HalfFloats.roundToBf16(x)));
                continue;
            }
            assertEquals(referenceRound(x, F16_INF, HalfFloatsTest::f16Magnitude), f16(x), () -> "fp16 of " + x);
            assertEquals(referenceRound(x, BF16_INF, HalfFloatsTest::bf16Magnitude), bf16(x), () -> "bf16 of " + x);
        }
    }
}
