package io.headroute.engine.cpu;

/**
 * exp(x) for float in about a fifth of {@code Math.exp}'s time, with relative error below 3e-7
 * (a few ulps): softmax evaluates one exp per score, which otherwise costs as much as the GEMMs.
 * x = n·ln2 + r with |r| ≤ ln2/2 (Cody–Waite split of ln2), e^r by a degree-6 polynomial, 2^n by
 * building the exponent bits.
 */
final class FastExp {
    private static final float LOG2E = 1.44269504088896341f;
    private static final float LN2_HI = 0.693145751953125f;
    private static final float LN2_LO = 1.428606765330187045e-06f;
    /** 1.5·2^23: adding it rounds a float of magnitude below 2^22 to an integer held in the low mantissa bits. */
    private static final float ROUNDER = 12582912f;

    private FastExp() {}

    static float exp(float x) {
        if (!(x > -87.3f)) {
            return x != x ? x : 0f; // −∞ and anything below e^-87.3 (near the float subnormal range) → 0; NaN stays NaN
        }
        if (x > 88.7f) {
            return Float.POSITIVE_INFINITY;
        }
        float t = x * LOG2E + ROUNDER;
        int n = Float.floatToRawIntBits(t) - 0x4B400000;
        float nf = t - ROUNDER;
        float r = x - nf * LN2_HI - nf * LN2_LO;
        float p = 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1f;
        return p * Float.intBitsToFloat((n + 127) << 23);
    }
}
