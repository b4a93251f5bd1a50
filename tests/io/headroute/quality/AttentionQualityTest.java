package io.headroute.quality;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cpu.ReferenceAttention;
import io.headroute.engine.cpu.ReferenceAttention.Rule;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class AttentionQualityTest {
    private static CpuAttentionEngine engine;

    @BeforeAll
    static void open() {
        engine = new CpuAttentionEngine(2);
    }

    @AfterAll
    static void close() {
        engine.close();
    }

    private static Tensor gaussian(Random rnd, int... shape) {
        long n = Tensor.numel(java.util.Arrays.stream(shape).asLongStream().toArray());
        float[] x = new float[(int) n];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (rnd.nextGaussian() * 1.5);
        }
        return Tensor.ofFloats(x, java.util.Arrays.stream(shape).asLongStream().toArray());
    }

    /**
     * Recall by brute force in float64: each row's softmax over the reference's keys, summed over the
     * pattern's keys; relative error from the float64 reference outputs of both.
     */
    @ParameterizedTest
    @CsvSource({
        "window:5, false, 2, 3, 1, 77, 77, 16",
        "window:5, true, 1, 4, 2, 61, 90, 32",
        "longformer:4:3, false, 1, 2, 2, 50, 50, 8",
        "bigbird:8:1:1:2:7, true, 1, 2, 1, 70, 70, 16",
        "dense, false, 1, 2, 2, 33, 33, 16",
    })
    void matchesBruteForce(String spec, boolean causal, int b, int h, int hkv, int l, int s, int d) {
        Random rnd = new Random(spec.hashCode() * 31L + l);
        Tensor q = gaussian(rnd, b, h, l, d);
        Tensor k = gaussian(rnd, b, hkv, s, d);
        Tensor v = gaussian(rnd, b, hkv, s, d);
        Pattern pattern = Patterns.parse(spec);
        if (causal) {
            pattern = pattern.withCausal();
        }
        Rule rule = ruleOf(spec).withCausal(causal);
        Rule refRule = causal ? Rule.causalRule() : Rule.dense();
        double scale = 1 / Math.sqrt(d);

        AttentionQuality.Report got = AttentionQuality.measure(engine, q, k, v, pattern, null, DType.F32, Algorithm.FLASH);
        assertEquals(causal ? new Pattern.Causal() : new Pattern.Dense(), got.reference());

        float[] qf = q.toFloatArray();
        float[] kf = k.toFloatArray();
        int group = h / hkv;
        double total = 0;
        for (int hh = 0; hh < h; hh++) {
            double headRecall = 0;
            for (int bb = 0; bb < b; bb++) {
                int kvh = hh / group;
                for (int i = 0; i < l; i++) {
                    int p = i + (s - l);
                    double[] sc = new double[s];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j < s; j++) {
                        if (!ReferenceAttention.allowed(refRule, hh, p, j, s)) {
                            continue;
                        }
                        double dot = 0;
                        for (int c = 0; c < d; c++) {
                            dot += (double) qf[((bb * h + hh) * l + i) * d + c] * kf[((bb * hkv + kvh) * s + j) * d + c];
                        }
                        sc[j] = dot * scale;
                        max = Math.max(max, sc[j]);
                    }
                    double all = 0;
                    double kept = 0;
                    for (int j = 0; j < s; j++) {
                        if (ReferenceAttention.allowed(refRule, hh, p, j, s)) {
                            double e = Math.exp(sc[j] - max);
                            all += e;
                            if (ReferenceAttention.allowed(rule, hh, p, j, s)) {
                                kept += e;
                            }
                        }
                    }
                    headRecall += kept / all;
                }
            }
            headRecall /= (double) b * l;
            assertEquals(headRecall, got.recallPerHead()[hh], 1e-5, "recall of head " + hh);
            total += headRecall;
        }
        assertEquals(total / h, got.recall(), 1e-5);

        ReferenceAttention.Output po = ReferenceAttention.compute(q, k, v, null, rule, scale, DType.F32);
        ReferenceAttention.Output ro = ReferenceAttention.compute(q, k, v, null, refRule, scale, DType.F32);
        double diffAll = 0;
        double normAll = 0;
        for (int hh = 0; hh < h; hh++) {
            double diff = 0;
            double norm = 0;
            for (int bb = 0; bb < b; bb++) {
                for (int e = 0; e < l * d; e++) {
                    int idx = (bb * h + hh) * l * d + e;
                    diff += (po.o()[idx] - ro.o()[idx]) * (po.o()[idx] - ro.o()[idx]);
                    norm += ro.o()[idx] * ro.o()[idx];
                }
            }
            double want = Math.sqrt(diff / norm);
            // The metric is a difference of two fp32 outputs, each within ~1e-6 of its float64 value.
            assertEquals(want, got.relErrorPerHead()[hh], 1e-5 + 1e-5 * want, "relative error of head " + hh);
            diffAll += diff;
            normAll += norm;
        }
        assertEquals(Math.sqrt(diffAll / normAll), got.relError(), 1e-5);
        if (spec.equals("dense")) {
            assertEquals(1.0, got.recall(), 1e-6);
            assertEquals(0.0, got.relError(), 1e-6);
        } else {
            assertTrue(got.recall() < 1.0, "a sparse pattern drops some mass");
        }
    }

    private static Rule ruleOf(String spec) {
        String[] f = spec.split(":");
        return switch (f[0]) {
            case "dense" -> Rule.dense();
            case "window" -> Rule.window(Integer.parseInt(f[1]));
            case "longformer" -> Rule.longformer(Integer.parseInt(f[1]), Integer.parseInt(f[2]));
            case "bigbird" -> Rule.bigbird(Integer.parseInt(f[1]), Integer.parseInt(f[2]), Integer.parseInt(f[3]),
                    Integer.parseInt(f[4]), Long.parseLong(f[5]));
            default -> throw new IllegalArgumentException(spec);
        };
    }

    @Test
    void emptyRowsKeepNothingAndNaNsAreRefused() {
        AttentionShape shape = new AttentionShape(1, 1, 1, 2, 2, 1);
        float ninf = Float.NEGATIVE_INFINITY;
        AttentionQuality.Report r = AttentionQuality.compare(shape, new float[] {0, 1}, new float[] {ninf, 0.5f},
                new float[] {2, 1}, new float[] {1f, 0.5f}, new Pattern.Dense());
        assertEquals(0.5, r.recall(), 1e-12);
        assertEquals(Math.sqrt(4.0 / 5.0), r.relError(), 1e-12);
        assertThrows(IllegalStateException.class, () -> AttentionQuality.compare(shape, new float[] {0, 1},
                new float[] {Float.NaN, 0}, new float[] {2, 1}, new float[] {1f, 0.5f}, new Pattern.Dense()));
        assertThrows(IllegalStateException.class, () -> AttentionQuality.compare(shape, new float[] {0, 1},
                new float[] {0, 0}, new float[] {2, 1}, new float[] {ninf, 0.5f}, new Pattern.Dense()));
        assertThrows(IllegalArgumentException.class, () -> AttentionQuality.compare(shape, new float[] {0},
                new float[] {0, 0}, new float[] {2, 1}, new float[] {0, 0.5f}, new Pattern.Dense()));
    }
}
