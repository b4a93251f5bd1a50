package io.headroute.engine.cpu;

/**
 * The two products of attention on small tiles, written as unit-stride axpy loops that the JIT turns
 * into SIMD code (dot-product reductions over floats are not vectorized by C2, axpy loops are).
 */
final class TileMath {
    private TileMath() {}

    /**
     * s[r, c] = Σ_d q[r, d] · kT[d, c] for r &lt; rows, c &lt; cols. {@code q} is rows × d (row stride d),
     * {@code kT} is d × cols with row stride {@code kStride}, {@code s} has row stride {@code sStride}.
     */
    static void scores(float[] q, int rows, int d, float[] kT, int kStride, int cols, float[] s, int sOff, int sStride) {
        int r = 0;
        for (; r + 1 < rows; r += 2) {
            int s0 = sOff + r * sStride;
            int s1 = s0 + sStride;
            java.util.Arrays.fill(s, s0, s0 + cols, 0f);
            java.util.Arrays.fill(s, s1, s1 + cols, 0f);
            int q0 = r * d;
            int q1 = q0 + d;
            int dd = 0;
            for (; dd + 1 < d; dd += 2) {
                float a0 = q[q0 + dd];
                float a1 = q[q0 + dd + 1];
                float b0 = q[q1 + dd];
                float b1 = q[q1 + dd + 1];
                int k0 = dd * kStride;
                int k1 = k0 + kStride;
                for (int c = 0; c < cols; c++) {
                    float x0 = kT[k0 + c];
                    float x1 = kT[k1 + c];
                    s[s0 + c] += a0 * x0 + a1 * x1;
                    s[s1 + c] += b0 * x0 + b1 * x1;
                }
            }
            for (; dd < d; dd++) {
                float a0 = q[q0 + dd];
                float b0 = q[q1 + dd];
                int k0 = dd * kStride;
                for (int c = 0; c < cols; c++) {
                    float x0 = kT[k0 + c];
                    s[s0 + c] += a0 * x0;
                    s[s1 + c] += b0 * x0;
                }
            }
        }
        for (; r < rows; r++) {
            int s0 = sOff + r * sStride;
            java.util.Arrays.fill(s, s0, s0 + cols, 0f);
            int q0 = r * d;
            for (int dd = 0; dd < d; dd++) {
                float a0 = q[q0 + dd];
                int k0 = dd * kStride;
                for (int c = 0; c < cols; c++) {
                    s[s0 + c] += a0 * kT[k0 + c];
                }
            }
        }
    }

    /**
     * acc[r, :] += Σ_c p[r, c] · v[c, :] for the rows with {@code live[r]}; {@code v} rows start at
     * {@code vOff} with stride d, {@code p} has row stride {@code pStride}.
     */
    static void accumulate(float[] p, int pOff, int pStride, boolean[] live, int rows, float[] v, int vOff, int cols, int d,
            float[] acc) {
        for (int r = 0; r < rows; r++) {
            if (!live[r]) {
                continue;
            }
            int a = r * d;
            int pr = pOff + r * pStride;
            int c = 0;
            for (; c + 3 < cols; c += 4) {
                float p0 = p[pr + c];
                float p1 = p[pr + c + 1];
                float p2 = p[pr + c + 2];
                float p3 = p[pr + c + 3];
                int v0 = vOff + c * d;
                int v1 = v0 + d;
                int v2 = v1 + d;
                int v3 = v2 + d;
                for (int dd = 0; dd < d; dd++) {
                    acc[a + dd] += p0 * v[v0 + dd] + p1 * v[v1 + dd] + p2 * v[v2 + dd] + p3 * v[v3 + dd];
                }
            }
            for (; c < cols; c++) {
                float p0 = p[pr + c];
                int v0 = vOff + c * d;
                for (int dd = 0; dd < d; dd++) {
                    acc[a + dd] += p0 * v[v0 + dd];
                }
            }
        }
    }

    /** kT[d, c] = k[kOff + (c · d) + d] for c &lt; cols: one key tile, transposed, row stride {@code kStride}. */
    static void transposeKeys(float[] k, int kOff, int cols, int d, float[] kT, int kStride) {
        for (int c = 0; c < cols; c++) {
            int src = kOff + c * d;
            for (int dd = 0; dd < d; dd++) {
                kT[dd * kStride + c] = k[src + dd];
            }
        }
    }
}
