package io.headroute.engine.cpu;

/**
 * The two products of attention on small tiles, as unit-stride axpy loops over row arrays. C2 (JDK 17)
 * vectorizes an axpy loop only when its arrays are indexed from the same origin, so tiles are kept
 * as one Java array per row, indexed from 0, and reductions (dot products) are avoided.
 */
final class TileMath {
    private TileMath() {}

    /** s[r][c] = Σ_d q[r][d] · kT[d][c] for r &lt; rows, c &lt; cols. */
    static void scores(float[][] q, int rows, int d, float[][] kT, int cols, float[][] s) {
        for (int r = 0; r < rows; r++) {
            float[] qr = q[r];
            float[] sr = s[r];
            java.util.Arrays.fill(sr, 0, cols, 0f);
            int dd = 0;
            for (; dd + 3 < d; dd += 4) {
                float a0 = qr[dd];
                float a1 = qr[dd + 1];
                float a2 = qr[dd + 2];
                float a3 = qr[dd + 3];
                float[] k0 = kT[dd];
                float[] k1 = kT[dd + 1];
                float[] k2 = kT[dd + 2];
                float[] k3 = kT[dd + 3];
                for (int c = 0; c < cols; c++) {
                    sr[c] += a0 * k0[c] + a1 * k1[c] + a2 * k2[c] + a3 * k3[c];
                }
            }
            for (; dd < d; dd++) {
                float a0 = qr[dd];
                float[] k0 = kT[dd];
                for (int c = 0; c < cols; c++) {
                    sr[c] += a0 * k0[c];
                }
            }
        }
    }

    /** acc[:] += Σ_c p[pOff + c] · v[vOff + c][:] for c &lt; cols. */
    static void accumulateRow(float[] p, int pOff, float[][] v, int vOff, int cols, int d, float[] acc) {
        int c = 0;
        for (; c + 3 < cols; c += 4) {
            float p0 = p[pOff + c];
            float p1 = p[pOff + c + 1];
            float p2 = p[pOff + c + 2];
            float p3 = p[pOff + c + 3];
            float[] v0 = v[vOff + c];
            float[] v1 = v[vOff + c + 1];
            float[] v2 = v[vOff + c + 2];
            float[] v3 = v[vOff + c + 3];
            for (int dd = 0; dd < d; dd++) {
                acc[dd] += p0 * v0[dd] + p1 * v1[dd] + p2 * v2[dd] + p3 * v3[dd];
            }
        }
        for (; c < cols; c++) {
            float p0 = p[pOff + c];
            float[] v0 = v[vOff + c];
            for (int dd = 0; dd < d; dd++) {
                acc[dd] += p0 * v0[dd];
            }
        }
    }

    /**
     * Key tiles of one (batch, kv head), transposed: result[t][d][c] = k[kOff + (t·tile + c)·d + d]
     * (zero-padded past the last key), so the score loop reads each tile from index 0.
     */
    static float[][][] keyTiles(float[] k, int kOff, int keys, int d, int tile) {
        int tiles = (keys + tile - 1) / tile;
        float[][][] out = new float[tiles][d][tile];
        for (int j = 0; j < keys; j++) {
            float[][] t = out[j / tile];
            int c = j % tile;
            int src = kOff + j * d;
            for (int dd = 0; dd < d; dd++) {
                t[dd][c] = k[src + dd];
            }
        }
        return out;
    }

    /** Value rows of one (batch, kv head): result[j] = v[vOff + j·d …], one array per key. */
    static float[][] valueRows(float[] v, int vOff, int keys, int d) {
        float[][] out = new float[keys][d];
        for (int j = 0; j < keys; j++) {
            System.arraycopy(v, vOff + j * d, out[j], 0, d);
        }
        return out;
    }
}
