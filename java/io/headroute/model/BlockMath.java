package io.headroute.model;

import java.util.stream.IntStream;

/** The CPU blocks' dense arithmetic, float32 with float32 accumulation (as cuBLAS with CUBLAS_COMPUTE_32F). */
final class BlockMath {
    private static final int ROWS_PER_TASK = 16;

    private BlockMath() {}

    /**
     * RMSNorm of each of {@code rows} rows of width d: out = round(x · (1/√(mean(x²) + eps)) · γ).
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
            float inv = (float) (1.0 / Math.sqrt(ss / d + e));
            for (int c = 0; c < d; c++) {
                out[o + c] = round.apply(x[o + c] * inv * gamma[c]);
            }
        }
        return out;
    }

    /** C (rows × n) = A (rows × k) · B (k × n), row-major; rows in parallel. */
    static float[] matmul(float[] a, int rows, int k, float[] b, int n) {
        float[] c = new float[Math.multiplyExact(rows, n)];
        int tasks = (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
        IntStream.range(0, tasks).parallel().forEach(t -> {
            int end = Math.min(rows, (t + 1) * ROWS_PER_TASK);
            for (int i = t * ROWS_PER_TASK; i < end; i++) {
                int ci = i * n;
                int ai = i * k;
                for (int p = 0; p < k; p++) {
                    float av = a[ai + p];
                    int bp = p * n;
                    for (int j = 0; j < n; j++) {
                        c[ci + j] += av * b[bp + j];
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
