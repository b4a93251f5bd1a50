package io.headroute.engine.cpu;

/**
 * The two products of attention on small tiles, as unit-stride axpy loops over row arrays. C2 (JDK 17)
 * vectorizes an axpy loop only when its arrays are indexed from the same origin, so tiles are kept
 * as one Java array per row, indexed from 0, and reductions (dot products) are avoided.
 */
final class TileMath {
    private TileMath() {}

    /**
     * s[r][c] = Σ_d q[r][d] · kT[d][c] for the rows r = rows[0 … nr), c &lt; cols: each score sums d in order,
     * four terms per pass. The passes go d-major: four rows of kT (2 KiB at 128 keys) stay in L1 while every
     * row takes its pass (row-major, each row streamed the whole K tile: ~1.2x slower).
     */
    static void scores(float[][] q, int[] rows, int nr, int d, float[][] kT, int cols, float[][] s) {
        for (int t = 0; t < nr; t++) {
            java.util.Arrays.fill(s[rows[t]], 0, cols, 0f);
        }
        int dd = 0;
        for (; dd + 3 < d; dd += 4) {
            float[] k0 = kT[dd];
            float[] k1 = kT[dd + 1];
            float[] k2 = kT[dd + 2];
            float[] k3 = kT[dd + 3];
            for (int t = 0; t < nr; t++) {
                float[] qr = q[rows[t]];
                float[] sr = s[rows[t]];
                float a0 = qr[dd];
                float a1 = qr[dd + 1];
                float a2 = qr[dd + 2];
                float a3 = qr[dd + 3];
                for (int c = 0; c < cols; c++) {
                    sr[c] += a0 * k0[c] + a1 * k1[c] + a2 * k2[c] + a3 * k3[c];
                }
            }
        }
        for (; dd < d; dd++) {
            float[] k0 = kT[dd];
            for (int t = 0; t < nr; t++) {
                float a0 = q[rows[t]][dd];
                float[] sr = s[rows[t]];
                for (int c = 0; c < cols; c++) {
                    sr[c] += a0 * k0[c];
                }
            }
        }
    }

    /**
     * acc[r][:] += Σ_c p[r][c] · v[vOff + c][:] for the rows r = rows[0 … nr), c &lt; cols, added as
     * {@link #accumulateRow} adds them (four keys per pass, in order). Key-major: four V rows stay in L1 while
     * every row takes its pass.
     */
    static void accumulateRows(float[][] p, int[] rows, int nr, float[][] v, int vOff, int cols, int d, float[][] acc) {
        int c = 0;
        for (; c + 3 < cols; c += 4) {
            float[] v0 = v[vOff + c];
            float[] v1 = v[vOff + c + 1];
            float[] v2 = v[vOff + c + 2];
            float[] v3 = v[vOff + c + 3];
            for (int t = 0; t < nr; t++) {
                float[] pr = p[rows[t]];
                float[] a = acc[rows[t]];
                float p0 = pr[c];
                float p1 = pr[c + 1];
                float p2 = pr[c + 2];
                float p3 = pr[c + 3];
                for (int dd = 0; dd < d; dd++) {
                    a[dd] += p0 * v0[dd] + p1 * v1[dd] + p2 * v2[dd] + p3 * v3[dd];
                }
            }
        }
        for (; c < cols; c++) {
            float[] v0 = v[vOff + c];
            for (int t = 0; t < nr; t++) {
                float p0 = p[rows[t]][c];
                float[] a = acc[rows[t]];
                for (int dd = 0; dd < d; dd++) {
                    a[dd] += p0 * v0[dd];
                }
            }
        }
    }

    /**
     * accT[dd][r] += Σ_c pT[c][r] · v[vOff + c][dd] for r &lt; nr, c &lt; cols, dd &lt; d: {@link #accumulateRows}'
     * sums (four keys per pass, in order; p·v = v·p exactly) with O and P transposed, so that the tile's rows
     * are the vector lanes. C2 sizes its vectors by a loop's profiled trip count: a loop over D = 64 runs on
     * 4-wide vectors, one over 128 rows on 8-wide ones (P·V at D = 64, 128 rows: ~1.5x).
     */
    static void accumulateColumns(float[][] pT, int nr, float[][] v, int vOff, int cols, int d, float[][] accT) {
        int c = 0;
        for (; c + 3 < cols; c += 4) {
            float[] p0 = pT[c];
            float[] p1 = pT[c + 1];
            float[] p2 = pT[c + 2];
            float[] p3 = pT[c + 3];
            float[] v0 = v[vOff + c];
            float[] v1 = v[vOff + c + 1];
            float[] v2 = v[vOff + c + 2];
            float[] v3 = v[vOff + c + 3];
            for (int dd = 0; dd < d; dd++) {
                float w0 = v0[dd];
                float w1 = v1[dd];
                float w2 = v2[dd];
                float w3 = v3[dd];
                float[] a = accT[dd];
                for (int r = 0; r < nr; r++) {
                    a[r] += p0[r] * w0 + p1[r] * w1 + p2[r] * w2 + p3[r] * w3;
                }
            }
        }
        for (; c < cols; c++) {
            float[] p0 = pT[c];
            float[] v0 = v[vOff + c];
            for (int dd = 0; dd < d; dd++) {
                float w0 = v0[dd];
                float[] a = accT[dd];
                for (int r = 0; r < nr; r++) {
                    a[r] += p0[r] * w0;
                }
            }
        }
    }

    /** accT[dd][r] *= f[r] for r &lt; nr, dd &lt; d. */
    static void scaleColumns(float[][] accT, float[] f, int nr, int d) {
        for (int dd = 0; dd < d; dd++) {
            float[] a = accT[dd];
            for (int r = 0; r < nr; r++) {
                a[r] *= f[r];
            }
        }
    }

    /** Transposes the leading m × m block of s in place: s[i][j] ↔ s[j][i] for i, j &lt; m. */
    static void transposeSquare(float[][] s, int m) {
        for (int i = 1; i < m; i++) {
            float[] si = s[i];
            for (int j = 0; j < i; j++) {
                float x = si[j];
                si[j] = s[j][i];
                s[j][i] = x;
            }
        }
    }

    /** t[c][r] = src[off + r·stride + c] for r &lt; nr, c &lt; cols: a block of a row-major matrix, transposed. */
    static void transposeBlock(float[] src, int off, int stride, int nr, int cols, float[][] t) {
        for (int r = 0; r < nr; r++) {
            int o = off + r * stride;
            for (int c = 0; c < cols; c++) {
                t[c][r] = src[o + c];
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

    /** The largest of s[off … off+n), −∞ for n = 0; NaN if there is one. */
    static float rowMax(float[] s, int off, int n) {
        // Four running maxima: one chain waits for every Math.max before it. Any order gives the same maximum.
        float m0 = Float.NEGATIVE_INFINITY;
        float m1 = Float.NEGATIVE_INFINITY;
        float m2 = Float.NEGATIVE_INFINITY;
        float m3 = Float.NEGATIVE_INFINITY;
        int c = 0;
        for (; c + 3 < n; c += 4) {
            m0 = Math.max(m0, s[off + c]);
            m1 = Math.max(m1, s[off + c + 1]);
            m2 = Math.max(m2, s[off + c + 2]);
            m3 = Math.max(m3, s[off + c + 3]);
        }
        for (; c < n; c++) {
            m0 = Math.max(m0, s[off + c]);
        }
        return Math.max(Math.max(m0, m1), Math.max(m2, m3));
    }

    /**
     * s[c] = exp(s[c] − m) for c &lt; n (FastExp's bits); returns their sum, added in order. p and t are scratch
     * of at least n: the polynomial runs over the row first, in a loop C2 vectorizes.
     */
    static float expRow(float[] s, int n, float m, float[] p, float[] t) {
        expParts(s, n, m, p, t);
        float sum = 0f;
        for (int c = 0; c < n; c++) {
            float e = FastExp.fromParts(s[c] - m, p[c], t[c]);
            s[c] = e;
            sum += e;
        }
        return sum;
    }

    /**
     * As {@link #expRow} on s[off … off+n), the sum in double. x, p and t are scratch of at least n: the row
     * is copied to x first, so that the polynomial's loop reads from index 0.
     */
    static double expRowDouble(float[] s, int off, int n, float m, float[] x, float[] p, float[] t) {
        System.arraycopy(s, off, x, 0, n);
        expParts(x, n, m, p, t);
        double sum = 0;
        for (int c = 0; c < n; c++) {
            float e = FastExp.fromParts(x[c] - m, p[c], t[c]);
            s[off + c] = e;
            sum += e;
        }
        return sum;
    }

    /**
     * m[r] = max(m[r], sT[0][r], sT[1][r], …) for r &lt; nr, c &lt; cols: the row maxima of a transposed tile, from
     * the caller's start.
     */
    static void columnMax(float[][] sT, int cols, int nr, float[] m) {
        for (int c = 0; c < cols; c++) {
            float[] sc = sT[c];
            for (int r = 0; r < nr; r++) {
                m[r] = Math.max(m[r], sc[r]);
            }
        }
    }

    /**
     * sT[c][r] = exp(sT[c][r] − m[r]) (FastExp's bits) for c &lt; cols, r &lt; nr, and sum[r] += them, added in
     * order of c: {@link #expRow} on the rows of a transposed tile. p and t are scratch of at least nr.
     */
    static void expColumns(float[][] sT, int cols, int nr, float[] m, float[] p, float[] t, float[] sum) {
        for (int c = 0; c < cols; c++) {
            float[] sc = sT[c];
            for (int r = 0; r < nr; r++) {
                float x = sc[r] - m[r];
                float tr = FastExp.shifted(x);
                t[r] = tr;
                p[r] = FastExp.polynomial(x, tr);
            }
            for (int r = 0; r < nr; r++) {
                sc[r] = FastExp.fromParts(sc[r] - m[r], p[r], t[r]);
            }
            for (int r = 0; r < nr; r++) {
                sum[r] += sc[r];
            }
        }
    }

    /** t[c] = FastExp.shifted(x), p[c] = FastExp.polynomial(x, t[c]) for x = s[c] − m, c &lt; n. */
    private static void expParts(float[] s, int n, float m, float[] p, float[] t) {
        for (int c = 0; c < n; c++) {
            float x = s[c] - m;
            float tc = FastExp.shifted(x);
            t[c] = tc;
            p[c] = FastExp.polynomial(x, tc);
        }
    }

    /**
     * Key tile t of one (batch, kv head), transposed: result[dd][c] = k[kOff + (t·tile + c)·d + dd] (zero past the
     * last key), so the score loop reads the tile from index 0.
     */
    static float[][] keyTile(float[] k, int kOff, int keys, int d, int tile, int t) {
        float[][] out = new float[d][tile];
        int j0 = t * tile;
        int n = Math.min(tile, keys - j0);
        for (int c = 0; c < n; c++) {
            int src = kOff + (j0 + c) * d;
            for (int dd = 0; dd < d; dd++) {
                out[dd][c] = k[src + dd];
            }
        }
        return out;
    }

    /** Value rows j0 … j1 − 1 of one (batch, kv head) into out[j] = v[vOff + j·d …], one array per key. */
    static void valueRows(float[] v, int vOff, int j0, int j1, int d, float[][] out) {
        for (int j = j0; j < j1; j++) {
            out[j] = java.util.Arrays.copyOfRange(v, vOff + j * d, vOff + j * d + d);
        }
    }
}
