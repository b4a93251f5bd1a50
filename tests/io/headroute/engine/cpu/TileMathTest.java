package io.headroute.engine.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The tile routines against plain loops that add in the same order, bit for bit: the routines are
 * arranged for C2's vectorizer, and any change to the order of their float operations would move the
 * engine's outputs. Sizes are odd on purpose (vector loops leave scalar heads and tails). A NaN equals any NaN:
 * Java leaves NaN payloads open, and a vector add may pass on the other operand's NaN than a scalar add does.
 */
class TileMathTest {
    /** Scores of std 3 around 0, with −∞ (masked keys), values below exp's flush point, ±0, and rarely NaN. */
    private static float[] row(SplittableRandom rnd, int n, boolean nan) {
        float[] s = new float[n];
        for (int c = 0; c < n; c++) {
            double u = rnd.nextDouble();
            s[c] = u < 0.05 ? Float.NEGATIVE_INFINITY : u < 0.08 ? -95f - 10f * (float) rnd.nextDouble()
                    : u < 0.10 ? (rnd.nextBoolean() ? 0f : -0f) : (float) (3 * rnd.nextGaussian());
        }
        if (nan && n > 2) {
            s[n / 2] = Float.NaN;
            s[n - 1] = Float.intBitsToFloat(0x7fc00123); // a second NaN, with other payload bits
        }
        return s;
    }

    @ParameterizedTest(name = "n = {0}")
    @ValueSource(ints = {0, 1, 3, 5, 17, 63, 64, 127, 128, 129, 333, 1001})
    void rowMaxIsTheScanInOrder(int n) {
        SplittableRandom rnd = new SplittableRandom(n);
        for (boolean nan : new boolean[] {false, true}) {
            for (int off : new int[] {0, 7}) {
                float[] s = new float[off + n];
                System.arraycopy(row(rnd, n, nan), 0, s, off, n);
                float want = Float.NEGATIVE_INFINITY;
                for (int c = 0; c < n; c++) {
                    want = Math.max(want, s[off + c]);
                }
                assertEquals(Float.floatToIntBits(want), Float.floatToIntBits(TileMath.rowMax(s, off, n)),
                        "n=" + n + " off=" + off + " nan=" + nan);
            }
        }
    }

    @ParameterizedTest(name = "n = {0}")
    @ValueSource(ints = {1, 3, 5, 17, 63, 64, 127, 128, 129, 333, 1001})
    void expRowIsExpAndAnOrderedSum(int n) {
        SplittableRandom rnd = new SplittableRandom(100 + n);
        for (boolean nan : new boolean[] {false, true}) {
            float[] s = row(rnd, n, nan);
            float m = (float) (2 * rnd.nextGaussian());
            float[] want = new float[n];
            float wantSum = 0f;
            for (int c = 0; c < n; c++) {
                want[c] = FastExp.exp(s[c] - m);
                wantSum += want[c];
            }
            float[] got = s.clone();
            float sum = TileMath.expRow(got, n, m, new float[n + 3], new float[n + 3]);
            assertBits(want, 0, got, 0, n, "expRow n=" + n);
            assertEquals(Float.floatToIntBits(wantSum), Float.floatToIntBits(sum), "expRow sum, n=" + n);
        }
    }

    @ParameterizedTest(name = "n = {0}")
    @ValueSource(ints = {1, 3, 17, 129, 1001, 4099})
    void expRowDoubleIsExpAndAnOrderedDoubleSum(int n) {
        SplittableRandom rnd = new SplittableRandom(200 + n);
        int off = 11;
        float[] s = new float[off + n + 5];
        System.arraycopy(row(rnd, n, false), 0, s, off, n);
        float m = (float) (2 * rnd.nextGaussian());
        float[] want = s.clone();
        double wantSum = 0;
        for (int c = 0; c < n; c++) {
            want[off + c] = FastExp.exp(s[off + c] - m);
            wantSum += want[off + c];
        }
        float[] got = s.clone();
        double sum = TileMath.expRowDouble(got, off, n, m, new float[n], new float[n], new float[n]);
        assertBits(want, 0, got, 0, got.length, "expRowDouble n=" + n); // and nothing outside [off, off + n) written
        assertEquals(Double.doubleToLongBits(wantSum), Double.doubleToLongBits(sum), "expRowDouble sum, n=" + n);
    }

    @ParameterizedTest(name = "cols = {0}")
    @ValueSource(ints = {1, 3, 64, 127, 128})
    void columnSoftmaxIsRowMaxAndExpRowPerLane(int cols) {
        SplittableRandom rnd = new SplittableRandom(600 + cols);
        for (int nr : new int[] {1, 5, 72, 128}) {
            float[][] rows = new float[nr][];
            for (int r = 0; r < nr; r++) {
                rows[r] = row(rnd, cols, r % 5 == 3);
            }
            float[][] sT = new float[cols][nr];
            for (int r = 0; r < nr; r++) {
                for (int c = 0; c < cols; c++) {
                    sT[c][r] = rows[r][c];
                }
            }
            float[] m = new float[nr];
            float[] start = new float[nr];
            for (int r = 0; r < nr; r++) {
                start[r] = r % 4 == 0 ? Float.NEGATIVE_INFINITY : (float) rnd.nextGaussian();
                m[r] = start[r];
            }
            TileMath.columnMax(sT, cols, nr, m);
            float[] sum = new float[nr];
            for (int r = 0; r < nr; r++) {
                sum[r] = r % 2 == 0 ? 0f : 0.25f; // the caller's start, added to in order
            }
            float[] sum0 = sum.clone();
            float[] mUsed = m.clone();
            for (int r = 0; r < nr; r++) {
                if (mUsed[r] == Float.NEGATIVE_INFINITY) {
                    mUsed[r] = 0f; // a lane with nothing but −∞ (the engine leaves such rows out): any finite m
                }
            }
            TileMath.expColumns(sT, cols, nr, mUsed, new float[nr], new float[nr], sum);
            for (int r = 0; r < nr; r++) {
                float want = start[r];
                for (int c = 0; c < cols; c++) {
                    want = Math.max(want, rows[r][c]);
                }
                assertEquals(Float.floatToIntBits(want), Float.floatToIntBits(m[r]), "max of lane " + r + ", nr=" + nr);
                float[] e = rows[r].clone();
                float wantSum = sum0[r];
                for (int c = 0; c < cols; c++) {
                    e[c] = FastExp.exp(rows[r][c] - mUsed[r]);
                    wantSum += e[c];
                }
                for (int c = 0; c < cols; c++) {
                    assertEquals(Float.floatToIntBits(e[c]), Float.floatToIntBits(sT[c][r]), "P[" + r + "][" + c + "], nr=" + nr);
                }
                assertEquals(Float.floatToIntBits(wantSum), Float.floatToIntBits(sum[r]), "row sum of lane " + r + ", nr=" + nr);
            }
        }
    }

    @ParameterizedTest(name = "cols = {0}")
    @ValueSource(ints = {1, 5, 128})
    void transposeBlockCopiesTheBlock(int cols) {
        SplittableRandom rnd = new SplittableRandom(700 + cols);
        int stride = cols + 9;
        int nr = 7;
        int off = 2 * stride + 3;
        float[] src = new float[off + nr * stride];
        for (int i = 0; i < src.length; i++) {
            src[i] = (float) rnd.nextGaussian();
        }
        float[][] t = new float[cols + 1][nr + 1];
        TileMath.transposeBlock(src, off, stride, nr, cols, t);
        for (int c = 0; c <= cols; c++) {
            for (int r = 0; r <= nr; r++) {
                float want = c < cols && r < nr ? src[off + r * stride + c] : 0f;
                assertEquals(Float.floatToIntBits(want), Float.floatToIntBits(t[c][r]), "t[" + c + "][" + r + "]");
            }
        }
    }

    private static float[][] gaussian(SplittableRandom rnd, int rows, int cols) {
        float[][] x = new float[rows][cols];
        for (float[] r : x) {
            for (int c = 0; c < cols; c++) {
                r[c] = (float) rnd.nextGaussian();
            }
        }
        return x;
    }

    /** Every other row of 0 … nr − 1, from the second: a list with gaps, as the engine's live rows have. */
    private static int[] someRows(int nr) {
        int[] rows = new int[(nr + 1) / 2];
        for (int t = 0; t < rows.length; t++) {
            rows[t] = Math.min(nr - 1, 2 * t + 1);
        }
        return rows;
    }

    @ParameterizedTest(name = "d = {0}")
    @ValueSource(ints = {1, 3, 4, 5, 33, 64, 67, 128})
    void scoresAreTheOrderedSumOverD(int d) {
        SplittableRandom rnd = new SplittableRandom(300 + d);
        int nr = 13;
        for (int cols : new int[] {1, 5, 127, 128}) {
            float[][] q = gaussian(rnd, nr, d);
            float[][] kT = gaussian(rnd, d, 128);
            float[][] s = new float[nr][128];
            for (float[] r : s) {
                java.util.Arrays.fill(r, 42f);
            }
            int[] rows = someRows(nr);
            TileMath.scores(q, rows, rows.length, d, kT, cols, s);
            boolean[] listed = new boolean[nr];
            for (int r : rows) {
                listed[r] = true;
            }
            for (int r = 0; r < nr; r++) {
                for (int c = 0; c < cols; c++) {
                    float want = 42f;
                    if (listed[r]) {
                        want = 0f;
                        int dd = 0;
                        for (; dd + 3 < d; dd += 4) {
                            want += q[r][dd] * kT[dd][c] + q[r][dd + 1] * kT[dd + 1][c] + q[r][dd + 2] * kT[dd + 2][c]
                                    + q[r][dd + 3] * kT[dd + 3][c];
                        }
                        for (; dd < d; dd++) {
                            want += q[r][dd] * kT[dd][c];
                        }
                    }
                    assertEquals(Float.floatToIntBits(want), Float.floatToIntBits(s[r][c]),
                            "s[" + r + "][" + c + "], d=" + d + " cols=" + cols + (listed[r] ? "" : " (not listed: untouched)"));
                }
            }
        }
    }

    @ParameterizedTest(name = "d = {0}")
    @ValueSource(ints = {1, 3, 33, 64, 67, 128})
    void accumulateRowsAddsAsAccumulateRowAndThePlainLoop(int d) {
        SplittableRandom rnd = new SplittableRandom(400 + d);
        int nr = 11;
        int vOff = 3;
        for (int cols : new int[] {1, 2, 5, 127, 128}) {
            float[][] p = gaussian(rnd, nr, cols);
            float[][] v = gaussian(rnd, vOff + cols, d);
            float[][] acc = gaussian(rnd, nr, d);
            float[][] want = new float[nr][];
            float[][] single = new float[nr][];
            for (int r = 0; r < nr; r++) {
                want[r] = acc[r].clone();
                single[r] = acc[r].clone();
            }
            int[] rows = someRows(nr);
            for (int r : rows) {
                int c = 0;
                for (; c + 3 < cols; c += 4) {
                    for (int dd = 0; dd < d; dd++) {
                        want[r][dd] += p[r][c] * v[vOff + c][dd] + p[r][c + 1] * v[vOff + c + 1][dd]
                                + p[r][c + 2] * v[vOff + c + 2][dd] + p[r][c + 3] * v[vOff + c + 3][dd];
                    }
                }
                for (; c < cols; c++) {
                    for (int dd = 0; dd < d; dd++) {
                        want[r][dd] += p[r][c] * v[vOff + c][dd];
                    }
                }
                TileMath.accumulateRow(p[r], 0, v, vOff, cols, d, single[r]);
            }
            TileMath.accumulateRows(p, rows, rows.length, v, vOff, cols, d, acc);
            for (int r = 0; r < nr; r++) {
                assertBits(want[r], 0, acc[r], 0, d, "accumulateRows row " + r + ", d=" + d + " cols=" + cols);
                assertBits(want[r], 0, single[r], 0, d, "accumulateRow row " + r + ", d=" + d + " cols=" + cols);
            }
        }
    }

    @ParameterizedTest(name = "d = {0}")
    @ValueSource(ints = {1, 3, 33, 64, 67, 128})
    void accumulateColumnsAddsAsAccumulateRows(int d) {
        SplittableRandom rnd = new SplittableRandom(500 + d);
        int vOff = 5;
        for (int nr : new int[] {1, 7, 72, 128, 131}) {
            for (int cols : new int[] {1, 2, 5, 127, 128}) {
                float[][] p = gaussian(rnd, nr, cols);
                float[][] v = gaussian(rnd, vOff + cols, d);
                float[][] acc = gaussian(rnd, nr, d);
                float[] f = new float[nr];
                for (int r = 0; r < nr; r++) {
                    f[r] = r % 3 == 0 ? 1f : (float) rnd.nextDouble();
                }
                // By rows: O·α (skipped where α = 1, as the engine does), then P·V.
                float[][] want = new float[nr][];
                int[] all = new int[nr];
                for (int r = 0; r < nr; r++) {
                    all[r] = r;
                    want[r] = acc[r].clone();
                    if (f[r] != 1f) {
                        for (int dd = 0; dd < d; dd++) {
                            want[r][dd] *= f[r];
                        }
                    }
                }
                TileMath.accumulateRows(p, all, nr, v, vOff, cols, d, want);
                // By columns.
                float[][] accT = new float[d][nr + 3];
                for (int r = 0; r < nr; r++) {
                    for (int dd = 0; dd < d; dd++) {
                        accT[dd][r] = acc[r][dd];
                    }
                }
                // P's columns, transposed in place in a square buffer whose rows past nr hold 7s: a loop that ran
                // into lanes past nr would show in accT.
                int m = Math.max(nr, cols) + 3;
                float[][] pT = new float[m][m];
                for (int r = 0; r < m; r++) {
                    for (int c = 0; c < m; c++) {
                        pT[r][c] = r < nr && c < cols ? p[r][c] : 7f;
                    }
                }
                TileMath.transposeSquare(pT, m);
                for (int r = 0; r < m; r++) {
                    for (int c = 0; c < m; c++) {
                        float want0 = r < nr && c < cols ? p[r][c] : 7f;
                        assertEquals(Float.floatToIntBits(want0), Float.floatToIntBits(pT[c][r]), "transposeSquare");
                    }
                }
                TileMath.scaleColumns(accT, f, nr, d);
                TileMath.accumulateColumns(pT, nr, v, vOff, cols, d, accT);
                for (int r = 0; r < nr; r++) {
                    for (int dd = 0; dd < d; dd++) {
                        assertEquals(Float.floatToIntBits(want[r][dd]), Float.floatToIntBits(accT[dd][r]),
                                "O[" + r + "][" + dd + "], nr=" + nr + " cols=" + cols + " d=" + d + ": " + accT[dd][r] + " vs "
                                + want[r][dd]);
                    }
                }
                for (int dd = 0; dd < d; dd++) {
                    for (int r = nr; r < nr + 3; r++) {
                        assertEquals(0f, accT[dd][r], "a lane past nr was written");
                    }
                }
            }
        }
    }

    private static void assertBits(float[] want, int wo, float[] got, int go, int n, String what) {
        for (int c = 0; c < n; c++) {
            if (Float.floatToIntBits(want[wo + c]) != Float.floatToIntBits(got[go + c])) {
                assertEquals(want[wo + c], got[go + c], what + ": element " + c + " differs in its bits");
                assertEquals(Float.floatToIntBits(want[wo + c]), Float.floatToIntBits(got[go + c]),
                        what + ": element " + c + " differs in its bits");
            }
        }
    }
}
