package io.headroute.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CPU projection GEMM against a float64 product, across its row blocks, tail rows and k panels; RMSNorm
 * against float64 at ordinary and at huge magnitudes.
 */
class BlockMathTest {
    private static float[] gaussian(Random r, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return x;
    }

    /** Bit for bit the plain float loop that adds p = 0 … k − 1 in order: the GEMM is arranged for C2's vectorizer only. */
    @ParameterizedTest(name = "{0}x{1}x{2}")
    @CsvSource({"1, 1, 1", "3, 7, 5", "5, 131, 33", "37, 300, 45", "70, 129, 64", "33, 258, 17", "129, 513, 3"})
    void matmulIsTheOrderedFloatLoop(int rows, int k, int n) {
        Random r = new Random(rows * 7919L + k * 31L + n);
        float[] a = gaussian(r, rows * k);
        float[] b = gaussian(r, k * n);
        float[] c = BlockMath.matmul(a, rows, k, b, n);
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < n; j++) {
                float want = 0f;
                for (int p = 0; p < k; p++) {
                    want += a[i * k + p] * b[p * n + j];
                }
                assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(c[i * n + j]), "C[" + i + "][" + j + "]: "
                        + c[i * n + j] + " vs " + want);
            }
        }
    }

    @ParameterizedTest(name = "{0}x{1}x{2}")
    @CsvSource({"1, 1, 1", "3, 7, 5", "37, 300, 45", "70, 129, 64", "129, 513, 3"})
    void matmulMatchesAFloat64Product(int rows, int k, int n) {
        Random r = new Random(rows * 1000L + k * 10L + n);
        float[] a = gaussian(r, rows * k);
        float[] b = gaussian(r, k * n);
        float[] c = BlockMath.matmul(a, rows, k, b, n);
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < n; j++) {
                double want = 0;
                double mag = 0;
                for (int p = 0; p < k; p++) {
                    want += (double) a[i * k + p] * b[p * n + j];
                    mag += Math.abs((double) a[i * k + p] * b[p * n + j]);
                }
                // float32 accumulation of k terms: error below k·2⁻²⁴ of the sum of magnitudes.
                assertEquals(want, c[i * n + j], k * 0x1p-24 * mag + 1e-30, "C[" + i + "][" + j + "]");
            }
        }
    }

    /**
     * RMSNorm against float64, rows of scale 1 and rows whose fp32 sum of squares overflows (scale 1e20:
     * |x|² ≈ 1e40; the plain form gave zeros there), tiny rows (eps dominates) and zero rows.
     */
    @ParameterizedTest(name = "d={0} scale={1}")
    @CsvSource({"7, 1", "1000, 3", "1000, 1e20", "257, 1e30", "64, 3e38", "33, 1e-25", "5, 0"})
    void rmsNormMatchesFloat64(int d, double scale) {
        int rows = 3;
        double eps = 1e-5;
        Random r = new Random(d * 7L + (long) Math.getExponent(scale + 1));
        float[] x = new float[rows * d];
        float[] gamma = new float[d];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) Math.max(-3.4e38, Math.min(3.4e38, r.nextGaussian() * scale));
        }
        for (int c = 0; c < d; c++) {
            gamma[c] = (float) (1 + r.nextGaussian() * 0.1);
        }
        float[] got = BlockMath.rmsNorm(x, rows, d, gamma, eps, Rounding.F32);
        for (int row = 0; row < rows; row++) {
            double ss = 0;
            for (int c = 0; c < d; c++) {
                ss += (double) x[row * d + c] * x[row * d + c];
            }
            double inv = 1 / Math.sqrt(ss / d + (float) eps);
            for (int c = 0; c < d; c++) {
                double want = x[row * d + c] * inv * gamma[c];
                float g = got[row * d + c];
                assertTrue(Float.isFinite(g), "element " + c + " of row " + row + " = " + g);
                // fp32 sum of d squares (relative error ≤ d·2⁻²⁴, half of it in the root), a few roundings more
                assertEquals(want, g, Math.abs(want) * (d * 0x1p-25 + 6 * 0x1p-24) + 1e-37, "row " + row + " element " + c);
            }
        }
    }
}
