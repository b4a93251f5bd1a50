package io.headroute.model;

/**
 * Rotary position embedding's cosines and sines for positions 0 … L − 1 and head dim D, convention
 * "rotate half": pair (i, i + D/2) of a head's vector at position t is rotated by the angle t·θ_i with
 * θ_i = theta^(−2i/D), i &lt; D/2:
 * x'[i] = x[i]·cos − x[i + D/2]·sin, x'[i + D/2] = x[i + D/2]·cos + x[i]·sin.
 * Angles, cosines and sines are computed in float64 and rounded to float32 once, so the CPU blocks and
 * the GPU kernel (which reads this same table) rotate by identical values even at long positions,
 * where a float32 angle t·θ_i would already be off by ~t·2⁻²⁴ radians.
 */
public final class RotaryTable {
    private final int len;
    private final int half;
    /** (L, D/2, 2): cos, sin. */
    private final float[] cosSin;

    private RotaryTable(int len, int half, float[] cosSin) {
        this.len = len;
        this.half = half;
        this.cosSin = cosSin;
    }

    /**
     * The table for L positions and head dim D.
     *
     * @param len     L, the positions 0 … L − 1
     * @param headDim D, even
     * @param theta   the rotary base θ, above 1
     * @return the table
     * @throws ArithmeticException when L·D does not fit an int
     */
    public static RotaryTable of(int len, int headDim, double theta) {
        int half = headDim / 2;
        float[] cs = new float[Math.multiplyExact(Math.multiplyExact(len, half), 2)];
        double[] inv = new double[half];
        for (int i = 0; i < half; i++) {
            inv[i] = Math.pow(theta, -2.0 * i / headDim);
        }
        for (int t = 0; t < len; t++) {
            for (int i = 0; i < half; i++) {
                double a = t * inv[i];
                cs[2 * (t * half + i)] = (float) Math.cos(a);
                cs[2 * (t * half + i) + 1] = (float) Math.sin(a);
            }
        }
        return new RotaryTable(len, half, cs);
    }

    /** {@return L, the positions the table covers} */
    public int length() {
        return len;
    }

    /** {@return the table as (L, D/2, 2) floats {cos, sin}, a copy}: the layout the GPU kernel reads. */
    public float[] cosSin() {
        return cosSin.clone();
    }

    /**
     * {@return the bytes of the table on the device, 4·L·D} (L·D/2 pairs of float32)
     *
     * @param len     L
     * @param headDim D, even
     */
    public static long byteSize(int len, int headDim) {
        return 4L * len * headDim;
    }

    /**
     * Rotates, in place, {@code x} laid out (B, L, n, D) (a projection's output: row (b, t) holds n
     * heads of D), then rounds to {@code round}'s dtype. Float32 arithmetic, as the kernel.
     */
    void apply(float[] x, int batch, int heads, int headDim, Rounding round) {
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t < len; t++) {
                int base = ((b * len + t) * heads) * headDim;
                for (int h = 0; h < heads; h++) {
                    int o = base + h * headDim;
                    for (int i = 0; i < half; i++) {
                        float c = cosSin[2 * (t * half + i)];
                        float s = cosSin[2 * (t * half + i) + 1];
                        float x1 = x[o + i];
                        float x2 = x[o + i + half];
                        x[o + i] = round.apply(x1 * c - x2 * s);
                        x[o + i + half] = round.apply(x2 * c + x1 * s);
                    }
                }
            }
        }
    }
}
