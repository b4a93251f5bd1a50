package io.headroute.model;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The CPU projection GEMM against a float64 product, across its row blocks, tail rows and k panels. */
class BlockMathTest {
    @ParameterizedTest(name = "{0}x{1}x{2}")
    @CsvSource({"1, 1, 1", "3, 7, 5", "37, 300, 45", "70, 129, 64", "129, 513, 3"})
    void matmulMatchesAFloat64Product(int rows, int k, int n) {
        Random r = new Random(rows * 1000L + k * 10L + n);
        float[] a = new float[rows * k];
        float[] b = new float[k * n];
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) r.nextGaussian();
        }
        for (int i = 0; i < b.length; i++) {
            b[i] = (float) r.nextGaussian();
        }
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
}
