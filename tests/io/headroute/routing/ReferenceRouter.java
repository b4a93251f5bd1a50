package io.headroute.routing;

import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.Comparator;
import java.util.stream.IntStream;

/**
 * The router written out the plain way, independent of {@link CpuHeadRouter}: double precision,
 * top k by sorting head indices (probability descending, index ascending), one token or block at a time.
 */
final class ReferenceRouter {
    private ReferenceRouter() {}

    /** The gate (B·L·H, row-major) for X (B, L, d) and Wr (d, Hr), inputs first rounded to {@code dtype}. */
    static double[] gate(Tensor x, Tensor wr, RouterConfig c, DType dtype) {
        float[] xs = x.toDType(dtype).toFloatArray();
        float[] ws = wr.toDType(dtype).toFloatArray();
        int b = (int) x.dim(0);
        int l = (int) x.dim(1);
        int d = (int) x.dim(2);
        int hr = c.routedHeads();
        double[][] p = new double[b * l][];
        for (int t = 0; t < b * l; t++) {
            double[] z = new double[hr];
            for (int j = 0; j < hr; j++) {
                for (int i = 0; i < d; i++) {
                    z[j] += (double) xs[t * d + i] * ws[i * hr + j];
                }
            }
            p[t] = softmax(z);
        }
        double[] gate = new double[b * l * c.heads()];
        for (int bb = 0; bb < b; bb++) {
            for (int t0 = 0; t0 < l; t0 += c.block()) {
                int t1 = Math.min(l, t0 + c.block());
                double[] avg = new double[hr];
                for (int t = t0; t < t1; t++) {
                    for (int j = 0; j < hr; j++) {
                        avg[j] += p[bb * l + t][j] / (t1 - t0);
                    }
                }
                Integer[] order = IntStream.range(0, hr).boxed().toArray(Integer[]::new);
                java.util.Arrays.sort(order, Comparator.<Integer>comparingDouble(j -> -avg[j]).thenComparingInt(j -> j));
                double kept = 0;
                for (int r = 0; r < c.k(); r++) {
                    kept += avg[order[r]];
                }
                for (int t = t0; t < t1; t++) {
                    int row = (bb * l + t) * c.heads();
                    for (int h = 0; h < c.sharedHeads(); h++) {
                        gate[row + h] = 1;
                    }
                    for (int r = 0; r < c.k(); r++) {
                        gate[row + c.sharedHeads() + order[r]] = c.k() * avg[order[r]] / kept;
                    }
                }
            }
        }
        return gate;
    }

    static double[] softmax(double[] z) {
        double m = Double.NEGATIVE_INFINITY;
        for (double v : z) {
            m = Math.max(m, v);
        }
        double s = 0;
        double[] e = new double[z.length];
        for (int j = 0; j < z.length; j++) {
            e[j] = Math.exp(z[j] - m);
            s += e[j];
        }
        for (int j = 0; j < z.length; j++) {
            e[j] /= s;
        }
        return e;
    }

    /**
     * Values on a grid of 1/8 with |v| ≤ 1: exact in f32, f16 and bf16, so every dot product over fewer
     * than 2¹⁶ terms is exact in fp32 whatever the order, and distinct logits differ by at least 1/64.
     * Small enough that logits stay within a few tens of each other (no probability near fp32's underflow).
     */
    static Tensor grid(java.util.Random r, DType dtype, long... shape) {
        float[] v = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < v.length; i++) {
            v[i] = (r.nextInt(17) - 8) / 8f;
        }
        return Tensor.ofFloats(dtype, v, shape);
    }

    /**
     * Bq ≥ L is one group per sequence, up to 2^31 − 1 (whose ceil(L / Bq) overflowed): {@code router}'s gates for such
     * blocks equal {@code reference}'s at Bq = L, within {@code tol} (relative, per element).
     */
    static void assertBlocksBeyondTheSequenceAreTheWholeSequence(HeadRouter reference, HeadRouter router, float tol) {
        java.util.Random r = new java.util.Random(4);
        Tensor x = grid(r, DType.F32, 2, 7, 6);
        Tensor wr = grid(r, DType.F32, 6, 5);
        float[] want = reference.route(x, wr, new RouterConfig(1, 5, 2, 7), DType.F32).gate().toFloatArray();
        org.junit.jupiter.api.Assertions.assertEquals(1f, want[0], "the shared head"); // not the overflow's all-zero gate
        for (int bq : new int[] {8, 1_000_000, Integer.MAX_VALUE - 3, Integer.MAX_VALUE}) {
            float[] got = router.route(x, wr, new RouterConfig(1, 5, 2, bq), DType.F32).gate().toFloatArray();
            for (int i = 0; i < want.length; i++) {
                org.junit.jupiter.api.Assertions.assertEquals(want[i], got[i], tol * Math.max(1, Math.abs(want[i])),
                        "Bq = " + bq + ", element " + i);
            }
        }
    }
}
