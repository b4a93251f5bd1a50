package io.headroute.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.routing.CpuHeadRouter;
import io.headroute.routing.RouterConfig;
import io.headroute.routing.RouterOutput;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Routed layers in the model: the router on the block's normed input drives the layer's gate. */
class ModelRoutingTest {
    private static CpuAttentionEngine engine;
    private static CpuHeadRouter router;

    @BeforeAll
    static void open() {
        engine = new CpuAttentionEngine(2);
        router = new CpuHeadRouter(2);
    }

    @AfterAll
    static void close() {
        engine.close();
        router.close();
    }

    /**
     * Returns {@code a} after checking every element is finite: assertArrayEquals(float[]...) counts NaN equal to NaN,
     * so two NaN-filled arrays would compare equal.
     */
    private static float[] finite(float[] a, String what) {
        assertTrue(a.length > 0, what + " is empty");
        for (int i = 0; i < a.length; i++) {
            assertTrue(Float.isFinite(a[i]), what + "[" + i + "] = " + a[i]);
        }
        return a;
    }

    /** Three layers: routed per token, unrouted, routed per block of 4 with a pruned head (GQA). */
    static ModelConfig config(DType dt) {
        return new ModelConfig(24, 6, 3, 8, dt, 500.0, 1e-6, List.of(
                LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH).withRouter(new RouterConfig(2, 4, 2, 1)),
                LayerSpec.of(Patterns.parse("window:3"), true, Algorithm.MATERIALIZED),
                LayerSpec.of(new Pattern.Dense(), false, Algorithm.FLASH).withHeadMask(LayerSpecMask.of("110111"))
                        .withRouter(new RouterConfig(1, 5, 2, 4))));
    }

    /** Masks from strings. */
    static final class LayerSpecMask {
        static boolean[] of(String m) {
            boolean[] a = new boolean[m.length()];
            for (int i = 0; i < a.length; i++) {
                a[i] = m.charAt(i) == '1';
            }
            return a;
        }
    }

    static Tensor input(Random r, DType dt, int b, int len, int d) {
        float[] v = new float[b * len * d];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return Tensor.ofFloats(dt, v, b, len, d);
    }

    /**
     * The router written out independently in double: n = RMSNorm(x)·γ, P = softmax(n·Wr) per token,
     * averaged per block, top k by sorting (probability descending, index ascending), k·P/ΣP kept.
     */
    static float[] referenceGate(ModelConfig c, int layer, LayerWeights w, double[] x, int b, int len) {
        RouterConfig rc = c.layer(layer).router();
        int d = c.dModel();
        int hr = rc.routedHeads();
        double[] gamma = BlockReference.dbl(w.attnNorm());
        double[] wr = BlockReference.dbl(w.router());
        double[][] p = new double[b * len][hr];
        for (int t = 0; t < b * len; t++) {
            double ss = 0;
            for (int i = 0; i < d; i++) {
                ss += x[t * d + i] * x[t * d + i];
            }
            double inv = 1 / Math.sqrt(ss / d + c.normEps());
            double[] z = new double[hr];
            for (int i = 0; i < d; i++) {
                double n = x[t * d + i] * inv * gamma[i];
                for (int j = 0; j < hr; j++) {
                    z[j] += n * wr[i * hr + j];
                }
            }
            double max = Arrays.stream(z).max().orElseThrow();
            double sum = 0;
            for (int j = 0; j < hr; j++) {
                p[t][j] = Math.exp(z[j] - max);
                sum += p[t][j];
            }
            for (int j = 0; j < hr; j++) {
                p[t][j] /= sum;
            }
        }
        float[] gate = new float[b * len * c.heads()];
        for (int bb = 0; bb < b; bb++) {
            for (int t0 = 0; t0 < len; t0 += rc.block()) {
                int t1 = Math.min(len, t0 + rc.block());
                double[] avg = new double[hr];
                for (int t = t0; t < t1; t++) {
                    for (int j = 0; j < hr; j++) {
                        avg[j] += p[bb * len + t][j] / (t1 - t0);
                    }
                }
                Integer[] order = IntStream.range(0, hr).boxed().toArray(Integer[]::new);
                Arrays.sort(order, Comparator.comparingDouble((Integer j) -> -avg[j]).thenComparingInt(j -> j));
                double kept = 0;
                for (int r = 0; r < rc.k(); r++) {
                    kept += avg[order[r]];
                }
                for (int t = t0; t < t1; t++) {
                    int row = (bb * len + t) * c.heads();
                    for (int s = 0; s < rc.sharedHeads(); s++) {
                        gate[row + s] = 1f;
                    }
                    for (int r = 0; r < rc.k(); r++) {
                        gate[row + rc.sharedHeads() + order[r]] = (float) (rc.k() * avg[order[r]] / kept);
                    }
                }
            }
        }
        return gate;
    }

    @Test
    void routedModelEqualsTheReferenceRouterAndBlocks() {
        ModelConfig c = config(DType.F32);
        ModelWeights w = BlockReference.weights(c, 13);
        int b = 2;
        int len = 11;
        Tensor x = input(new Random(3), DType.F32, b, len, c.dModel());
        Model.Pass pass = new Model(w).run(x, null, engine, router);
        double[] ref = BlockReference.dbl(x);
        for (int i = 0; i < c.layerCount(); i++) {
            float[] gate = c.layer(i).routed() ? referenceGate(c, i, w.layer(i), ref, b, len) : null;
            if (gate != null) {
                float[] got = pass.routing().get(i).gate().toFloatArray();
                for (int e = 0; e < gate.length; e++) {
                    assertEquals(gate[e] == 0f, got[e] == 0f, "layer " + i + ": the same heads are routed (entry " + e + ")");
                }
                assertTrue(BlockReference.relError(got, gate) <= 1e-5, "layer " + i + " gate");
            }
            ref = BlockReference.forward(c, i, w.layer(i), ref, b, len, gate);
        }
        double err = BlockReference.updateError(pass.output().toFloatArray(), ref, x.toFloatArray());
        assertTrue(err <= 1e-5, "routed model vs reference: relative error of the residual updates " + err);
        // forward() routes too, and gives the same output.
        assertArrayEquals(finite(pass.output().toFloatArray(), "run's output"), new Model(w).forward(x, engine).toFloatArray());
    }

    @Test
    void gatesOfRoutedLayersEqualTheRoutersOnTheNormedInput() {
        for (DType dt : List.of(DType.F32, DType.BF16)) {
            ModelConfig c = config(dt);
            Model m = new Model(BlockReference.weights(c, 5));
            Tensor x = input(new Random(8), dt, 1, 17, c.dModel());
            List<Tensor> inputs = new ArrayList<>();
            Model.Pass pass = m.run(x, (layer, in) -> {
                inputs.add(in);
                return null;
            }, engine, router);
            assertEquals(c.layerCount(), inputs.size());
            for (int i = 0; i < c.layerCount(); i++) {
                RouterOutput got = pass.routing().get(i);
                if (!c.layer(i).routed()) {
                    assertNull(got, "layer " + i + " is not routed");
                    assertNull(pass.routerStats(i));
                    continue;
                }
                // The router's input written out here: round(x·γ / sqrt(mean(x²) + eps)) in the model dtype, from float64.
                float[] in = inputs.get(i).toFloatArray();
                float[] gamma = m.weights().layer(i).attnNorm().toFloatArray();
                int d = c.dModel();
                float[] normed = new float[in.length];
                for (int t = 0; t < in.length / d; t++) {
                    double ss = 0;
                    for (int e = 0; e < d; e++) {
                        ss += (double) in[t * d + e] * in[t * d + e];
                    }
                    double inv = 1 / Math.sqrt(ss / d + c.normEps());
                    for (int e = 0; e < d; e++) {
                        normed[t * d + e] = (float) (in[t * d + e] * inv * gamma[e]);
                    }
                }
                RouterOutput expected = router.route(Tensor.ofFloats(dt, normed, inputs.get(i).shape()),
                        m.weights().layer(i).router(), c.layer(i).router(), dt);
                float[] want = expected.gate().toFloatArray();
                float[] gate = got.gate().toFloatArray();
                for (int e = 0; e < want.length; e++) {
                    assertEquals(want[e] == 0f, gate[e] == 0f, dt + " layer " + i + ": the same heads are routed (entry " + e + ")");
                }
                double err = BlockReference.relError(gate, want);
                assertTrue(err <= AttentionBlockTest.tolerance(dt), dt + " layer " + i + ": gate relative error " + err);
                RouterConfig rc = c.layer(i).router();
                assertEquals(rc.activeFraction(), pass.routerStats(i).activeHeadFraction(), 1e-12,
                        "top-k keeps exactly k routed heads per token");
                double balance = pass.routerStats(i).loadBalance();
                assertTrue(balance > 0 && balance <= rc.routedHeads(), "load balance " + pass.routerStats(i));
            }
        }
    }

    @Test
    void aRoutedLayerTakesNoGateFromTheCallerAndNeedsARouter() {
        ModelConfig c = config(DType.F32);
        Model m = new Model(ModelWeights.random(c, 5));
        Tensor x = input(new Random(1), DType.F32, 1, 5, c.dModel());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> m.run(x,
                (layer, in) -> Tensor.ofFloats(new float[5 * 6], 1, 5, 6), engine, router));
        assertEquals("layer 0 is routed: its gate comes from its router, not from the caller", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> m.run(x, null, engine, null));
    }

    @Test
    void routerWeightsRoundTripAndAreValidated(@TempDir Path dir) {
        ModelConfig c = config(DType.BF16);
        ModelWeights w = ModelWeights.random(c, 77);
        assertNotNull(w.layer(0).router());
        assertNull(w.layer(1).router());
        assertArrayEquals(new long[] {24, 4}, w.layer(0).router().shape());
        assertArrayEquals(new long[] {24, 5}, w.layer(2).router().shape());
        assertTrue(w.asMap().containsKey("layers.2.attn.router"));
        assertTrue(!w.asMap().containsKey("layers.1.attn.router"));
        // Seeded: the same seed gives the same router, another layer another one.
        assertArrayEquals(finite(w.layer(0).router().toFloatArray(), "layer 0 router"),
                ModelWeights.random(c, 77).layer(0).router().toFloatArray());
        Path f = dir.resolve("w.safetensors");
        w.save(f);
        ModelWeights back = ModelWeights.load(f);
        assertEquals(c, back.config());
        for (var e : w.asMap().entrySet()) {
            assertArrayEquals(finite(e.getValue().toFloatArray(), e.getKey()), back.asMap().get(e.getKey()).toFloatArray(), e.getKey());
        }
        assertEquals(c, ModelConfig.fromJson(c.toJson()));

        Map<String, Tensor> missing = new LinkedHashMap<>(w.asMap());
        missing.remove("layers.0.attn.router");
        ModelException m1 = assertThrows(ModelException.class, () -> ModelWeights.of(c, missing));
        assertEquals("missing tensor layers.0.attn.router (expected bf16 (24, 4))", m1.getMessage());
        Map<String, Tensor> extra = new LinkedHashMap<>(w.asMap());
        extra.put("layers.1.attn.router", w.layer(0).router());
        ModelException m2 = assertThrows(ModelException.class, () -> ModelWeights.of(c, extra));
        assertEquals("unexpected tensor layers.1.attn.router: layer 1 is not routed", m2.getMessage());
        Map<String, Tensor> wrong = new LinkedHashMap<>(w.asMap());
        wrong.put("layers.2.attn.router", w.layer(0).router());
        ModelException m3 = assertThrows(ModelException.class, () -> ModelWeights.of(c, wrong));
        assertEquals("tensor layers.2.attn.router: expected bf16 (24, 5), found bf16 (24, 4)", m3.getMessage());

        ModelException m4 = assertThrows(ModelException.class, () -> new ModelConfig(24, 6, 3, 8, DType.F32, 500.0, 1e-6,
                List.of(LayerSpec.of(new Pattern.Dense(), false, Algorithm.FLASH).withRouter(new RouterConfig(2, 6, 2, 1)))));
        assertEquals("layer 0's routing has Hs + Hr = 2 + 6 = 8 heads, but the model has H = 6", m4.getMessage());
        ModelException m5 = assertThrows(ModelException.class, () -> ModelConfig.fromJson(c.toJson().replace("\"k\":2", "\"k\":9")));
        assertTrue(m5.getMessage().startsWith("model config layer 0 router: k must be between 1 and the 4 routed heads"),
                m5.getMessage());
    }

    @Test
    void specsCarryTheirRouterThroughMasksAndPlans() {
        RouterConfig rc = new RouterConfig(1, 3, 2, 8);
        LayerSpec s = LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH).withRouter(rc);
        assertTrue(s.routed());
        assertEquals(rc, s.withHeadMask(LayerSpecMask.of("1011")).router(), "a head mask keeps the router");
        assertTrue(!s.equals(s.withRouter(null)) && !s.withRouter(null).routed());
        assertEquals(s, new LayerSpec(new Pattern.Causal(), false, Algorithm.FLASH, null, new RouterConfig(1, 3, 2, 8)));
        assertTrue(s.toString().endsWith(", routed Hs=1, Hr=3, k=2, block 8]"), s.toString());
        ModelConfig c = ModelConfig.uniform(16, 4, 2, 4, DType.F32, 3, LayerSpec.of(new Pattern.Dense(), false, Algorithm.FLASH));
        assertTrue(!c.routed());
        ModelConfig routed = c.withRouter(rc);
        assertTrue(routed.routed() && routed.layers().stream().allMatch(LayerSpec::routed));
        ModelConfig planned = routed.withHeadMasks(java.util.Arrays.asList(null, LayerSpecMask.of("0111"), null));
        assertEquals(rc, planned.layer(1).router());
        assertEquals(routed, ModelConfig.fromJson(routed.toJson()));
        // The same weights serve a new pruning plan of a routed model.
        ModelWeights w = ModelWeights.random(routed, 4);
        assertArrayEquals(finite(w.layer(1).router().toFloatArray(), "layer 1 router"),
                w.withConfig(planned).layer(1).router().toFloatArray());
    }
}
