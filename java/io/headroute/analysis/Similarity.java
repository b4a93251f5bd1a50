package io.headroute.analysis;

/** Similarity measures for head redundancy. */
public final class Similarity {
    private Similarity() {}

    /**
     * {@return the cosine similarity of two equally long vectors, in [−1, 1]}; 0 when either is all zeros.
     *
     * @param a one vector
     * @param b another, as long
     * @throws IllegalArgumentException when the lengths differ
     */
    public static double cosine(double[] a, double[] b) {
        if (a.length != b.length) {
            throw new IllegalArgumentException("cosine: lengths differ (" + a.length + " vs " + b.length + ")");
        }
        double dot = 0;
        double na = 0;
        double nb = 0;
        for (int i = 0; i < a.length; i++) {
            dot += a[i] * b[i];
            na += a[i] * a[i];
            nb += b[i] * b[i];
        }
        return na == 0 || nb == 0 ? 0 : dot / Math.sqrt(na * nb);
    }

    /**
     * Pairwise cosine similarity of the heads of an output o (B, H, L, D) given as floats: head h's
     * vector is o[:, h, :, :] flattened.
     *
     * @param o     the output, B·H·rows·dim floats in (B, H, rows, D) order
     * @param batch B
     * @param heads H
     * @param rows  L, the rows per head
     * @param dim   D
     * @return the symmetric H × H matrix of cosines
     * @throws IllegalArgumentException when {@code o}'s length does not match the sizes
     */
    public static double[][] headOutputs(float[] o, int batch, int heads, int rows, int dim) {
        if ((long) batch * heads * rows * dim != o.length) {
            throw new IllegalArgumentException("headOutputs: " + o.length + " values are not (" + batch + ", " + heads
                    + ", " + rows + ", " + dim + ")");
        }
        double[][] vec = new double[heads][batch * rows * dim];
        int per = rows * dim;
        for (int b = 0; b < batch; b++) {
            for (int h = 0; h < heads; h++) {
                for (int e = 0; e < per; e++) {
                    vec[h][b * per + e] = o[(b * heads + h) * per + e];
                }
            }
        }
        double[][] sim = new double[heads][heads];
        for (int a = 0; a < heads; a++) {
            for (int c = a; c < heads; c++) {
                sim[a][c] = sim[c][a] = cosine(vec[a], vec[c]);
            }
        }
        return sim;
    }
}
