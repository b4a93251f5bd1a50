package io.headroute.model;

import java.util.Arrays;
import java.util.stream.IntStream;

/** The CPU blocks' dense arithmetic, float32 with float32 accumulation (as cuBLAS with CUBLAS_COMPUTE_32F). */
final class BlockMath {
    private static final int ROWS_PER_TASK = 32;
    private static final int K_PANEL = 128;

    private BlockMath() {}

    /**
     * RMSNorm of each of {@code rows} rows of width d: out = round(x · (1/√(mean(x²) + eps)) · γ). The
     * sum of squares is fp32, as in the kernel; a row whose x² overflow it (|x| beyond ~1e19) is
     * normalized by its largest magnitude m first: out = round((x/m) · (1/√(mean((x/m)²) + eps/m²)) · γ),
     * the same function without the overflow (the plain form gave zeros).
     */
    static float[] rmsNorm(float[] x, int rows, int d, float[] gamma, double eps, Rounding round) {
        float[] out = new float[x.length];
        float e = (float) eps;
        for (int r = 0; r < rows; r++) {
            int o = r * d;
            float ss = 0f;
            for (int c = 0; c < d; c++) {
                ss += x[o + c] * x[o + c];
            }
            if (ss == Float.POSITIVE_INFINITY) {
                float m = 0f;
                for (int c = 0; c < d; c++) {
                    m = Math.max(m, Math.abs(x[o + c]));
                }
                float ssm = 0f;
                for (int c = 0; c < d; c++) {
                    float y = x[o + c] / m;
                    ssm += y * y;
                }
                float inv = (float) (1.0 / Math.sqrt(ssm / d + e / m / m));
                for (int c = 0; c < d; c++) {
                    out[o + c] = round.apply(x[o + c] / m * inv * gamma[c]);
                }
                continue;
            }
            float inv = (float) (1.0 / Math.sqrt(ss / d + e));
            for (int c = 0; c < d; c++) {
                out[o + c] = round.apply(x[o + c] * inv * gamma[c]);
            }
        }
        return out;
    }

    /**
     * C (rows × n) = A (rows × k) · B (k × n), row-major; tasks of rows in parallel. Each element sums
     * over p = 0 … k − 1 in order. B's rows are copied to arrays of their own and each task accumulates
     * its rows in row arrays: C2 (JDK 17) vectorizes {@code c[j] += a·b[j]} only when both arrays are
     * indexed from the same origin (with offsets into the flat arrays the loop stayed scalar, ~6 GFLOP/s
     * on 2 cores). Four terms go into one pass over a row, added one after the other as before; B is
     * walked in panels of {@value #K_PANEL} rows so that a panel stays in cache across a task's rows.
     */
    static float[] matmul(float[] a, int rows, int k, float[] b, int n) {
        float[] c = new float[Math.multiplyExact(rows, n)];
        float[][] bRows = new float[k][];
        for (int p = 0; p < k; p++) {
            bRows[p] = Arrays.copyOfRange(b, p * n, p * n + n);
        }
        int tasks = (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
        IntStream.range(0, tasks).parallel().forEach(t -> {
            int r0 = t * ROWS_PER_TASK;
            int r1 = Math.min(rows, r0 + ROWS_PER_TASK);
            float[][] acc = new float[r1 - r0][n];
            for (int p0 = 0; p0 < k; p0 += K_PANEL) {
                int p1 = Math.min(k, p0 + K_PANEL);
                for (int i = r0; i < r1; i++) {
                    float[] ci = acc[i - r0];
                    int ai = i * k;
                    int p = p0;
                    for (; p + 3 < p1; p += 4) {
                        float a0 = a[ai + p];
                        float a1 = a[ai + p + 1];
                        float a2 = a[ai + p + 2];
                        float a3 = a[ai + p + 3];
                        float[] b0 = bRows[p];
                        float[] b1 = bRows[p + 1];
                        float[] b2 = bRows[p + 2];
                        float[] b3 = bRows[p + 3];
                        for (int j = 0; j < n; j++) {
                            ci[j] = (((ci[j] + a0 * b0[j]) + a1 * b1[j]) + a2 * b2[j]) + a3 * b3[j];
                        }
                    }
                    for (; p < p1; p++) {
                        float a0 = a[ai + p];
                        float[] b0 = bRows[p];
                        for (int j = 0; j < n; j++) {
                            ci[j] += a0 * b0[j];
                        }
                    }
                }
            }
            for (int i = r0; i < r1; i++) {
                System.arraycopy(acc[i - r0], 0, c, i * n, n);
            }
        });
        return c;
    }

    /** Columns blocks[i]·w … blocks[i]·w + w − 1 of a (rows × cols) matrix, in order. */
    static float[] columnBlocks(float[] m, int rows, int cols, int[] blocks, int w) {
        int n = blocks.length * w;
        float[] out = new float[rows * n];
        for (int r = 0; r < rows; r++) {
            for (int i = 0; i < blocks.length; i++) {
                System.arraycopy(m, r * cols + blocks[i] * w, out, r * n + i * w, w);
            }
        }
        return out;
    }

    /** Rows blocks[i]·w … blocks[i]·w + w − 1 of a (rows × cols) matrix, in order. */
    static float[] rowBlocks(float[] m, int cols, int[] blocks, int w) {
        float[] out = new float[blocks.length * w * cols];
        for (int i = 0; i < blocks.length; i++) {
            System.arraycopy(m, blocks[i] * w * cols, out, i * w * cols, w * cols);
        }
        return out;
    }
}
