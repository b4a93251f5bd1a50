package io.headroute.model;

import io.headroute.engine.cpu.ReferenceAttention;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.Tensor;

/**
 * The attention block written out plainly in float64 from the full (unsliced) weights: RMSNorm, the
 * three projections, rotate-half RoPE with angles t·theta^(−2i/D), softmax attention with the pattern
 * evaluated key by key, the gate, pruned heads contributing nothing, output projection, residual.
 */
public final class BlockReference {
    private BlockReference() {}

    static double[] forward(ModelConfig c, int layer, LayerWeights w, double[] x, int b, int len, float[] gate) {
        LayerSpec s = c.layer(layer);
        int d = c.dModel();
        int hd = c.headDim();
        int h = c.heads();
        int hkv = c.kvHeads();
        double[] gamma = dbl(w.attnNorm());
        double[] wq = dbl(w.wq());
        double[] wk = dbl(w.wk());
        double[] wv = dbl(w.wv());
        double[] wo = dbl(w.wo());
        int rows = b * len;
        double[] n = new double[rows * d];
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int i = 0; i < d; i++) {
                ss += x[r * d + i] * x[r * d + i];
            }
            double inv = 1 / Math.sqrt(ss / d + c.normEps());
            for (int i = 0; i < d; i++) {
                n[r * d + i] = x[r * d + i] * inv * gamma[i];
            }
        }
        double[] q = mm(n, rows, d, wq, h * hd);
        double[] k = mm(n, rows, d, wk, hkv * hd);
        double[] v = mm(n, rows, d, wv, hkv * hd);
        rope(q, b, len, h, hd, c.ropeTheta());
        rope(k, b, len, hkv, hd, c.ropeTheta());
        ReferenceAttention.Rule p = rule(s.pattern()).withCausal(s.causal());
        double scale = 1 / Math.sqrt(hd);
        double[] o = new double[rows * h * hd];
        for (int bi = 0; bi < b; bi++) {
            for (int head = 0; head < h; head++) {
                if (!s.active(head)) {
                    continue;
                }
                int kvh = head / (h / hkv);
                for (int t = 0; t < len; t++) {
                    double g = gate == null ? 1 : gate[(bi * len + t) * h + head];
                    double[] sc = new double[len];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j < len; j++) {
                        if (!ReferenceAttention.allowed(p, head, t, j, len)) {
                            sc[j] = Double.NEGATIVE_INFINITY;
                            continue;
                        }
                        double dot = 0;
                        for (int e = 0; e < hd; e++) {
                            dot += q[((bi * len + t) * h + head) * hd + e] * k[((bi * len + j) * hkv + kvh) * hd + e];
                        }
                        sc[j] = dot * scale;
                        max = Math.max(max, sc[j]);
                    }
                    if (max == Double.NEGATIVE_INFINITY || g == 0) {
                        continue;
                    }
                    double sum = 0;
                    for (int j = 0; j < len; j++) {
                        sc[j] = sc[j] == Double.NEGATIVE_INFINITY ? 0 : Math.exp(sc[j] - max);
                        sum += sc[j];
                    }
                    for (int j = 0; j < len; j++) {
                        if (sc[j] == 0) {
                            continue;
                        }
                        for (int e = 0; e < hd; e++) {
                            o[((bi * len + t) * h + head) * hd + e] += g * sc[j] / sum * v[((bi * len + j) * hkv + kvh) * hd + e];
                        }
                    }
                }
            }
        }
        double[] y = mm(o, rows, h * hd, wo, d);
        for (int i = 0; i < y.length; i++) {
            y[i] += x[i];
        }
        return y;
    }

    private static void rope(double[] a, int b, int len, int heads, int hd, double theta) {
        int half = hd / 2;
        for (int bi = 0; bi < b; bi++) {
            for (int t = 0; t < len; t++) {
                for (int h = 0; h < heads; h++) {
                    int o = ((bi * len + t) * heads + h) * hd;
                    for (int i = 0; i < half; i++) {
                        double ang = t * Math.pow(theta, -2.0 * i / hd);
                        double x1 = a[o + i];
                        double x2 = a[o + i + half];
                        a[o + i] = x1 * Math.cos(ang) - x2 * Math.sin(ang);
                        a[o + i + half] = x2 * Math.cos(ang) + x1 * Math.sin(ang);
                    }
                }
            }
        }
    }

    private static double[] mm(double[] a, int rows, int k, double[] w, int n) {
        double[] c = new double[rows * n];
        for (int i = 0; i < rows; i++) {
            for (int p = 0; p < k; p++) {
                for (int j = 0; j < n; j++) {
                    c[i * n + j] += a[i * k + p] * w[p * n + j];
                }
            }
        }
        return c;
    }

    static double[] dbl(Tensor t) {
        float[] f = t.toFloatArray();
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }

    /** ‖a − ref‖ / ‖ref‖; NaN anywhere gives +∞. */
    static double relError(float[] a, double[] ref) {
        double num = 0;
        double den = 0;
        for (int i = 0; i < ref.length; i++) {
            if (Float.isNaN(a[i])) {
                return Double.POSITIVE_INFINITY;
            }
            double e = a[i] - ref[i];
            num += e * e;
            den += ref[i] * ref[i];
        }
        return Math.sqrt(num / den);
    }

    /**
     * The layer's pattern as the float64 reference's own rule ({@link ReferenceAttention#allowed}), so that the
     * masks are not evaluated by the code under test.
     */
    static ReferenceAttention.Rule rule(Pattern p) {
        if (p instanceof Pattern.Dense) {
            return ReferenceAttention.Rule.dense();
        } else if (p instanceof Pattern.Causal) {
            return ReferenceAttention.Rule.causalRule();
        } else if (p instanceof Pattern.Window w) {
            return ReferenceAttention.Rule.window(w.w());
        } else if (p instanceof Pattern.Longformer l) {
            return ReferenceAttention.Rule.longformer(l.w(), l.g());
        } else if (p instanceof Pattern.BigBird bb) {
            return ReferenceAttention.Rule.bigbird(bb.bs(), bb.w(), bb.g(), bb.r(), bb.seed());
        } else if (p instanceof Pattern.Layout l) {
            return ReferenceAttention.Rule.layout(l.bs(), l.heads(), l.blocks(), l.bits());
        } else if (p instanceof Pattern.CausalOf c) {
            return rule(c.inner()).withCausal(true);
        }
        throw new IllegalArgumentException("no reference rule for " + p);
    }

    /**
     * {@link ModelWeights#random} with a random γ in [0.5, 1.5) per layer (random init sets every γ = 1, which would
     * hide a missing γ, or another layer's).
     */
    public static ModelWeights weights(ModelConfig c, long seed) {
        java.util.Map<String, io.headroute.tensor.Tensor> m = new java.util.LinkedHashMap<>(ModelWeights.random(c, seed).asMap());
        java.util.Random r = new java.util.Random(seed ^ 0x5eed);
        for (int i = 0; i < c.layerCount(); i++) {
            float[] g = new float[c.dModel()];
            for (int e = 0; e < g.length; e++) {
                g[e] = 0.5f + r.nextFloat();
            }
            m.put(ModelWeights.name(i, "attn_norm.weight"), io.headroute.tensor.Tensor.ofFloats(c.dtype(), g, c.dModel()));
        }
        return ModelWeights.of(c, m);
    }

    /**
     * The relative error of the residual update, ‖(a − x) − (ref − x)‖ / ‖ref − x‖: a block's (or a model's) output
     * is x plus what its attention adds, and x's share of ‖ref‖ would dilute that part's error in {@link #relError}.
     * NaN in {@code a} gives +∞.
     */
    public static double updateError(float[] a, double[] ref, float[] x) {
        double num = 0;
        double den = 0;
        for (int i = 0; i < ref.length; i++) {
            if (Float.isNaN(a[i])) {
                return Double.POSITIVE_INFINITY;
            }
            double e = (double) a[i] - ref[i];
            num += e * e;
            den += (ref[i] - x[i]) * (ref[i] - x[i]);
        }
        return Math.sqrt(num / den);
    }

    /** {@link #updateError(float[], double[], float[])} against a float reference. */
    public static double updateError(float[] a, float[] ref, float[] x) {
        double[] r = new double[ref.length];
        for (int i = 0; i < r.length; i++) {
            r[i] = ref[i];
        }
        return updateError(a, r, x);
    }

    public static double relError(float[] a, float[] ref) {
        double[] r = new double[ref.length];
        for (int i = 0; i < r.length; i++) {
            r[i] = ref[i];
        }
        return relError(a, r);
    }
}
