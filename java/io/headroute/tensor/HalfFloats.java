package io.headroute.tensor;

/**
 * IEEE binary16 (fp16) and bfloat16 conversions, round-to-nearest-even, NaN and infinities kept.
 * Java 17 has no {@code Float.floatToFloat16}, so these are written out.
 */
public final class HalfFloats {
    private HalfFloats() {}

    /**
     * fp16 bits → float (exact).
     *
     * @param bits the binary16 bits
     * @return the same value as a float (subnormals, infinities and NaN included)
     */
    public static float f16ToFloat(short bits) {
        int h = bits & 0xffff;
        int sign = (h & 0x8000) << 16;
        int exp = (h >>> 10) & 0x1f;
        int mant = h & 0x3ff;
        if (exp == 0x1f) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
        }
        if (exp == 0) {
            // Subnormal (or zero): value = mant * 2^-24, exact in float.
            float v = mant * 0x1p-24f;
            return sign != 0 ? -v : v;
        }
        return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
    }

    /**
     * float → fp16 bits, round to nearest even; overflow gives infinity.
     *
     * @param f the value
     * @return the binary16 bits; a NaN stays a (quiet) NaN, values below half the smallest subnormal give ±0
     */
    public static short floatToF16(float f) {
        int x = Float.floatToRawIntBits(f);
        int sign = (x >>> 16) & 0x8000;
        int exp = (x >>> 23) & 0xff;
        int mant = x & 0x7fffff;
        if (exp == 0xff) {
            // Keep NaN a NaN (quiet bit set) and infinity an infinity.
            return (short) (sign | 0x7c00 | (mant != 0 ? 0x200 | (mant >>> 13) : 0));
        }
        int e = exp - 127 + 15;
        if (e >= 0x1f) {
            return (short) (sign | 0x7c00);
        }
        if (e <= 0) {
            if (e < -10) {
                return (short) sign; // rounds to zero (even the largest such value is below half the smallest subnormal)
            }
            // Subnormal half: shift the full 24-bit significand into place and round.
            int m = mant | 0x800000;
            int shift = 14 - e; // 13 + (1 - e)
            int half = m >>> shift;
            int rem = m & ((1 << shift) - 1);
            int mid = 1 << (shift - 1);
            if (rem > mid || (rem == mid && (half & 1) != 0)) {
                half++;
            }
            return (short) (sign | half);
        }
        int half = (e << 10) | (mant >>> 13);
        int rem = mant & 0x1fff;
        if (rem > 0x1000 || (rem == 0x1000 && (half & 1) != 0)) {
            half++; // may carry into the exponent, and up to infinity: both correct
        }
        return (short) (sign | half);
    }

    /**
     * bf16 bits → float (exact).
     *
     * @param bits the bfloat16 bits
     * @return the same value as a float
     */
    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xffff) << 16);
    }

    /**
     * float → bf16 bits, round to nearest even; NaN stays NaN.
     *
     * @param f the value
     * @return the bfloat16 bits; overflow gives infinity
     */
    public static short floatToBf16(float f) {
        int x = Float.floatToRawIntBits(f);
        if ((x & 0x7fffffff) > 0x7f800000) {
            return (short) ((x >>> 16) | 0x40);
        }
        int rounding = 0x7fff + ((x >>> 16) & 1);
        return (short) ((x + rounding) >>> 16);
    }

    /**
     * Rounds a float to the nearest fp16 value and back.
     *
     * @param f the value
     * @return the nearest fp16 value (ties to even), as a float; ±infinity from ±65520 on (65504 is the largest
     *         finite fp16)
     */
    public static float roundToF16(float f) {
        return f16ToFloat(floatToF16(f));
    }

    /**
     * Rounds a float to the nearest bf16 value and back.
     *
     * @param f the value
     * @return the nearest bf16 value (ties to even), as a float
     */
    public static float roundToBf16(float f) {
        return bf16ToFloat(floatToBf16(f));
    }
}
