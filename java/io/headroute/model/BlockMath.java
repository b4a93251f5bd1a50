package io.headroute.model;

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
     * over p = 0 … k − 1 in order; four rows share every load of a B row, and B is walked in panels of
     * {@value #K_PANEL} rows so that a panel stays in cache across a task's rows.
     */
    static float[] matmul(float[] a, int rows, int k, float[] b, int n) {
        float[] c = new float[Math.multiplyExact(rows, n)];
        int tasks = (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
        IntStream.range(0, tasks).parallel().forEach(t -> {
            int r0 = t * ROWS_PER_TASK;
            int r1 = Math.min(rows, r0 + ROWS_PER_TASK);
            for (int p0 = 0; p0 < k; p0 += K_PANEL) {
                int p1 = Math.min(k, p0 + K_PANEL);
                int i = r0;
                for (; i + 4 <= r1; i += 4) {
                    int c0 = i * n;
                    int c1 = c0 + n;
                    int c2 = c1 + n;
                    int c3 = c2 + n;
                    for (int p = p0; p < p1; p++) {
                        float a0 = a[i * k + p];
                        float a1 = a[(i + 1) * k + p];
                        float a2 = a[(i + 2) * k + p];
                        float a3 = a[(i + 3) * k + p];
                        int bp = p * n;
                        for (int j = 0; j < n; j++) {
                            float bv = b[bp + j];
                            c[c0 + j] += a0 * bv;
                            c[c1 + j] += a1 * bv;
                            c[c2 + j] += a2 * bv;
                            c[c3 + j] += a3 * bv;
                        }
                    }
                }
                for (; i < r1; i++) {
                    int ci = i * n;
                    for (int p = p0; p < p1; p++) {
                        float av = a[i * k + p];
                        int bp = p * n;
                        for (int j = 0; j < n; j++) {
                            c[ci + j] += av * b[bp + j];
                        }
                    }
                }
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
