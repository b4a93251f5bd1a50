package io.headroute.analysis;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.ShapeException;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.model.AttentionBlock;
import io.headroute.model.LayerSpec;
import io.headroute.model.Model;
import io.headroute.model.ModelConfig;
import io.headroute.model.ModelWeights;
import io.headroute.pattern.Pattern;
import io.headroute.routing.PruningPlan;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Head analysis through real models: planted heads found, pruning measured as defined. */
class ModelAnalysisTest {
    private static CpuAttentionEngine engine;

    @BeforeAll
    static void open() {
        engine = new CpuAttentionEngine(2);
    }

    @AfterAll
    static void close() {
        engine.close();
    }

    /** assertEquals(double, double) counts NaN equal to NaN: the values compared must be real numbers. */
    private static double finite(double x, String what) {
        assertTrue(Double.isFinite(x), what + " = " + x);
        return x;
    }

    private static float[] finite(float[] a, String what) {
        assertTrue(a.length > 0, what + " is empty");
        for (int i = 0; i < a.length; i++) {
            assertTrue(Float.isFinite(a[i]), what + "[" + i + "] = " + a[i]);
        }
        return a;
    }

    private static final ModelAnalysis.Options OPT = new ModelAnalysis.Options(1000, 16, 0.25, 0, 3);

    private static ModelConfig config(int layers, int heads, int kvHeads, int dim, boolean causal) {
        return ModelConfig.uniform(8 * heads, heads, kvHeads, dim, DType.F32, layers,
                LayerSpec.of(new Pattern.Dense(), causal, Algorithm.FLASH));
    }

    /** Copies {@code from}'s query head block of Wq and Wo (and, in MHA, Wk and Wv) onto head {@code to} of layer l. */
    private static ModelWeights duplicateHead(ModelWeights w, int l, int from, int to) {
        ModelConfig c = w.config();
        Map<String, Tensor> m = new LinkedHashMap<>(w.asMap());
        int dd = c.headDim();
        for (String name : List.of("attn.wq", "attn.wk", "attn.wv")) {
            Tensor t = m.get(ModelWeights.name(l, name));
            float[] a = t.toFloatArray();
            int cols = (int) t.dim(1);
            for (int r = 0; r < c.dModel(); r++) {
                System.arraycopy(a, r * cols + from * dd, a, r * cols + to * dd, dd);
            }
            m.put(ModelWeights.name(l, name), Tensor.ofFloats(a, t.shape()));
        }
        Tensor wo = m.get(ModelWeights.name(l, "attn.wo"));
        float[] a = wo.toFloatArray();
        System.arraycopy(a, from * dd * c.dModel(), a, to * dd * c.dModel(), dd * c.dModel());
        m.put(ModelWeights.name(l, "attn.wo"), Tensor.ofFloats(a, wo.shape()));
        return ModelWeights.of(c, m);
    }

    private static ModelWeights zeroWo(ModelWeights w, int l, int head) {
        ModelConfig c = w.config();
        Map<String, Tensor> m = new LinkedHashMap<>(w.asMap());
        Tensor wo = m.get(ModelWeights.name(l, "attn.wo"));
        float[] a = wo.toFloatArray();
        int rows = c.headDim() * c.dModel();
        java.util.Arrays.fill(a, head * rows, (head + 1) * rows, 0f);
        m.put(ModelWeights.name(l, "attn.wo"), Tensor.ofFloats(a, wo.shape()));
        return ModelWeights.of(c, m);
    }

    @Test
    void aDuplicatedHeadIsFlaggedRedundantAndNothingElseIs() {
        ModelConfig c = config(2, 4, 4, 8, true);
        ModelWeights w = duplicateHead(ModelWeights.random(c, 7), 1, 1, 2);
        ModelAnalysis.Report r = ModelAnalysis.analyze(w, ModelAnalysis.randomInput(2, 37, c.dModel(), 3), engine, OPT);
        ModelAnalysis.Layer l1 = r.layers().get(1);
        assertEquals(1, l1.redundant().size(), () -> l1.redundant().toString());
        ModelAnalysis.RedundantPair p = l1.redundant().get(0);
        assertEquals(1, p.a());
        assertEquals(2, p.b());
        assertEquals(1.0, p.outputCosine(), 1e-9);
        assertEquals(1.0, p.mapCosine(), 1e-9);
        // Identical heads in identical places: removing either leaves the same sums.
        assertEquals(finite(l1.importance()[1], "importance of head 1"), l1.importance()[2]);
        assertTrue(r.layers().get(0).redundant().isEmpty(), () -> r.layers().get(0).redundant().toString());
        for (int a = 0; a < 4; a++) {
            assertEquals(1.0, l1.outputSimilarity()[a][a], 1e-12);
            for (int b = 0; b < 4; b++) {
                assertEquals(finite(l1.mapSimilarity()[a][b], "map similarity " + a + "," + b), l1.mapSimilarity()[b][a]);
            }
        }
    }

    /** A head that equals another with its values negated has outputs of cosine −1: proportional, so redundant. */
    @Test
    void aNegatedDuplicateIsRedundantToo() {
        ModelConfig c = config(1, 4, 4, 8, true);
        ModelWeights w = duplicateHead(ModelWeights.random(c, 7), 0, 1, 2);
        Map<String, Tensor> m = new LinkedHashMap<>(w.asMap());
        Tensor wv = m.get(ModelWeights.name(0, "attn.wv"));
        float[] a = wv.toFloatArray();
        int cols = (int) wv.dim(1);
        for (int r = 0; r < c.dModel(); r++) {
            for (int e = 0; e < c.headDim(); e++) {
                a[r * cols + 2 * c.headDim() + e] = -a[r * cols + 2 * c.headDim() + e];
            }
        }
        m.put(ModelWeights.name(0, "attn.wv"), Tensor.ofFloats(a, wv.shape()));
        ModelAnalysis.Report r = ModelAnalysis.analyze(ModelWeights.of(c, m), ModelAnalysis.randomInput(1, 31, c.dModel(), 3),
                engine, OPT);
        ModelAnalysis.Layer l0 = r.layers().get(0);
        assertEquals(1, l0.redundant().size(), () -> l0.redundant().toString());
        assertEquals(-1.0, l0.redundant().get(0).outputCosine(), 1e-9);
        assertEquals(1.0, l0.redundant().get(0).mapCosine(), 1e-9);
    }

    /**
     * A routed layer is analysed through its router, as the pruned model that is measured runs: head h's importance
     * is the relative change of the model's output when the plan removes h alone, and a routed head's detectors count
     * only the rows routed to it.
     */
    @Test
    void aRoutedLayerIsAnalysedThroughItsGate() {
        int len = 33;
        ModelConfig c = new ModelConfig(48, 6, 6, 8, DType.F32, 10000.0, 1e-6, List.of(
                LayerSpec.of(new Pattern.Dense(), true, Algorithm.FLASH).withRouter(new io.headroute.routing.RouterConfig(2, 4,
                        1, 1))));
        ModelWeights w = ModelWeights.random(c, 13);
        Tensor x = ModelAnalysis.randomInput(1, len, c.dModel(), 9);
        double[][] imp = ModelAnalysis.importance(w, x, engine);
        float[] y = finite(ModelAnalysis.unpruned(w).forward(x, engine).toFloatArray(), "y");
        ModelConfig plain = c.withLayer(0, c.layer(0).withRouter(null));
        Map<String, Tensor> pm = new LinkedHashMap<>(w.asMap());
        pm.remove(ModelWeights.name(0, "attn.router"));
        double[][] ungated = ModelAnalysis.importance(ModelWeights.of(plain, pm), x, engine);
        boolean differs = false;
        for (int h = 0; h < 6; h++) {
            Map<Integer, List<Integer>> one = new java.util.TreeMap<>();
            one.put(0, List.of(h));
            float[] yCut = ModelAnalysis.pruned(w, PruningPlan.of(1, 6, one)).forward(x, engine).toFloatArray();
            assertEquals(HeadImportance.relativeChange(y, yCut), finite(imp[0][h], "importance " + h), 1e-12 * imp[0][h],
                    "head " + h);
            differs |= Math.abs(imp[0][h] - ungated[0][h]) > 1e-3 * ungated[0][h];
        }
        assertTrue(differs, "the router's gate changed no importance");
        ModelAnalysis.Report r = ModelAnalysis.analyze(w, x, engine, OPT);
        assertArrayEquals(imp[0], r.layers().get(0).importance());
        int routedRows = 0;
        for (HeadProbe.HeadStats st : r.layers().get(0).probe().heads()) {
            if (st.head() < 2) {
                assertEquals(len, st.rows(), "a shared head computes every row");
            } else {
                assertTrue(st.rows() < len, "routed head " + st.head() + ": " + st.rows() + " rows");
                routedRows += st.rows();
            }
        }
        assertEquals(len, routedRows, "k = 1: each row goes to one routed head");
    }

    /** A layer whose output is zero (X = 0: no norm, no values, no residual) has no relative importance: refused. */
    @Test
    void aZeroLayerOutputIsRefusedNotReportedAsInfinity() {
        ModelConfig c = config(1, 2, 2, 8, false);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ModelAnalysis.analyze(
                ModelWeights.random(c, 1), Tensor.ofFloats(new float[3 * c.dModel()], 1, 3, c.dModel()), engine, OPT));
        assertTrue(e.getMessage().startsWith("layer 0's output on this input is zero"), e.getMessage());
    }

    @Test
    void aHeadWithAZeroOutputProjectionHasZeroImportanceAndIsPrunedFirst() {
        ModelConfig c = config(2, 4, 2, 8, false);
        ModelWeights w = zeroWo(ModelWeights.random(c, 11), 0, 3);
        Tensor x = ModelAnalysis.randomInput(1, 29, c.dModel(), 5);
        double[][] imp = ModelAnalysis.importance(w, x, engine);
        assertEquals(0.0, imp[0][3]);
        for (int l = 0; l < 2; l++) {
            for (int h = 0; h < 4; h++) {
                assertTrue(l == 0 && h == 3 || imp[l][h] > 1e-4, "layer " + l + " head " + h + ": " + imp[l][h]);
            }
        }
        PruningPlan plan = ModelAnalysis.plan(imp, 1 / 8.0);
        assertArrayEquals(new int[] {3}, plan.removedHeads(0));
        assertArrayEquals(new int[0], plan.removedHeads(1));
        // Removing a head that adds nothing changes nothing, exactly.
        ModelAnalysis.Pruning p = ModelAnalysis.measure(w, x, plan, engine, 0, 1);
        assertEquals(0.0, p.relativeError());
    }

    @Test
    void measuredPruningErrorIsTheRelativeChangeOfTheTwoModelsOutputs() {
        ModelConfig c = config(3, 4, 4, 8, true);
        ModelWeights w = ModelWeights.random(c, 21);
        Tensor x = ModelAnalysis.randomInput(2, 33, c.dModel(), 21);
        ModelAnalysis.Report r = ModelAnalysis.analyze(w, x, engine, OPT);
        PruningPlan plan = r.pruning().plan();
        assertEquals(3, removed(plan), "round(0.25 · 12)");
        assertEquals(plan, ModelAnalysis.plan(r.importance(), 0.25));
        assertEquals(plan, PruningPlan.fromJson(plan.toJson()));

        List<boolean[]> masks = new ArrayList<>();
        for (int l = 0; l < 3; l++) {
            masks.add(plan.headMask(l));
        }
        float[] y = finite(new Model(w).forward(x, engine).toFloatArray(), "y");
        float[] yCut = finite(new Model(w.withConfig(c.withHeadMasks(masks))).forward(x, engine).toFloatArray(), "pruned y");
        assertEquals(finite(HeadImportance.relativeChange(y, yCut), "relative change"), r.pruning().relativeError());
        assertTrue(r.pruning().relativeError() > 0);
        assertEquals(OPT.repeats(), r.pruning().unprunedMs().length);
        assertEquals(OPT.repeats(), r.pruning().prunedMs().length);
        for (int i = 0; i < OPT.repeats(); i++) {
            assertTrue(r.pruning().unprunedMs()[i] > 0 && r.pruning().prunedMs()[i] > 0);
        }
        assertEquals(finite(r.pruning().prunedMedianMs() / r.pruning().unprunedMedianMs(), "median ratio"),
                r.pruning().timeRatio());

        // Importance is the ablation of each layer on the unpruned model's input to it.
        Model full = new Model(w);
        Tensor in1 = full.blocks().get(0).forward(x, null, engine);
        Tensor y1 = full.blocks().get(1).forward(in1, null, engine);
        boolean[] mask = {true, true, false, true};
        float[] y1Cut = new AttentionBlock(c.withLayer(1, c.layer(1).withHeadMask(mask)), 1, w.layer(1)).forward(in1, null, engine)
                .toFloatArray();
        assertEquals(finite(HeadImportance.relativeChange(finite(y1.toFloatArray(), "layer 1 output"), finite(y1Cut, "cut output")),
                "relative change"), r.layers().get(1).importance()[2]);
    }

    @Test
    void aOneHeadLayerWithoutItsHeadIsTheResidualAlone() {
        ModelConfig c = config(1, 1, 1, 8, true);
        ModelWeights w = ModelWeights.random(c, 2);
        Tensor x = ModelAnalysis.randomInput(1, 9, c.dModel(), 2);
        float[] y = finite(new Model(w).forward(x, engine).toFloatArray(), "y");
        assertEquals(finite(HeadImportance.relativeChange(y, x.toFloatArray()), "relative change"),
                ModelAnalysis.importance(w, x, engine)[0][0]);
    }

    @Test
    void traceKeepsTheForwardOutputAndTheHeadsBeforeWo() {
        ModelConfig c = config(1, 4, 2, 8, true);
        ModelWeights w = ModelWeights.random(c, 4);
        Tensor x = ModelAnalysis.randomInput(2, 13, c.dModel(), 4);
        AttentionBlock b = new AttentionBlock(c, 0, w.layer(0));
        AttentionBlock.Trace t = b.trace(x, null, engine);
        assertArrayEquals(finite(b.forward(x, null, engine).toFloatArray(), "forward"), t.output().toFloatArray());
        assertArrayEquals(new long[] {2, 4, 13, 8}, t.q().shape());
        assertArrayEquals(new long[] {2, 2, 13, 8}, t.k().shape());
        assertArrayEquals(new long[] {2, 4, 13, 8}, t.o().shape());
        // x' = x + O · Wo with O read back from the trace, (B, H, L, D) → rows of H·D.
        float[] o = t.o().toFloatArray();
        float[] wo = w.layer(0).wo().toFloatArray();
        float[] xs = x.toFloatArray();
        float[] out = t.output().toFloatArray();
        int d = c.dModel();
        for (int bi = 0; bi < 2; bi++) {
            for (int tok = 0; tok < 13; tok++) {
                for (int col = 0; col < d; col++) {
                    double s = xs[(bi * 13 + tok) * d + col];
                    for (int h = 0; h < 4; h++) {
                        for (int e = 0; e < 8; e++) {
                            s += (double) o[((bi * 4 + h) * 13 + tok) * 8 + e] * wo[(h * 8 + e) * d + col];
                        }
                    }
                    float got = out[(bi * 13 + tok) * d + col];
                    assertEquals(s, got, 1e-5 * Math.max(1, Math.abs(s)), "b " + bi + " t " + tok + " c " + col);
                }
            }
        }
        // A pruned block traces only its active heads and the key/value heads they read.
        AttentionBlock pruned = new AttentionBlock(c.withLayer(0, c.layer(0).withHeadMask(new boolean[] {false, false, true, false})),
                0, w.layer(0));
        AttentionBlock.Trace pt = pruned.trace(x, null, engine);
        assertArrayEquals(new long[] {2, 1, 13, 8}, pt.q().shape());
        assertArrayEquals(new long[] {2, 1, 13, 8}, pt.k().shape());
    }

    /**
     * A previous-token head planted through the weights: every X row points along e0, so head 0's
     * pre-RoPE q and k are the same at every position; q is k rotated back by one position's RoPE angle
     * on the four fastest frequencies (θ = 17.3^(−2i/16) = 1, 0.7, 0.49, 0.34), so q_p · k_j peaks at
     * j = p − 1. For L = 32 the margin over every other key is 0.87 of r² / √D per unit (computed from
     * Σ cos((p − j − 1)θ_i)), about 19 in the scores here.
     */
    @Test
    void aPreviousTokenHeadPlantedThroughTheWeightsIsDetected() {
        int dm = 32;
        int dd = 16;
        int len = 32;
        ModelConfig c = new ModelConfig(dm, 2, 2, dd, DType.F32, 17.3, 1e-5,
                List.of(LayerSpec.of(new Pattern.Dense(), true, Algorithm.FLASH)));
        Map<String, Tensor> m = new LinkedHashMap<>(ModelWeights.random(c, 9).asMap());
        float[] wq = m.get("layers.0.attn.wq").toFloatArray();
        float[] wk = m.get("layers.0.attn.wk").toFloatArray();
        int cols = 2 * dd;
        for (int r = 0; r < dm; r++) {
            for (int e = 0; e < dd; e++) {
                wq[r * cols + e] = 0;
                wk[r * cols + e] = 0;
            }
        }
        float a = 1.7f; // n0 = √32, so r = a · √32 ≈ 9.6
        for (int i = 0; i < 4; i++) {
            double theta = Math.pow(17.3, -2.0 * i / dd);
            wk[i] = a;
            wq[i] = (float) (a * Math.cos(theta));
            wq[i + dd / 2] = (float) (-a * Math.sin(theta));
        }
        m.put("layers.0.attn.wq", Tensor.ofFloats(wq, dm, cols));
        m.put("layers.0.attn.wk", Tensor.ofFloats(wk, dm, cols));
        ModelWeights w = ModelWeights.of(c, m);
        float[] x = new float[len * dm];
        Random rnd = new Random(1);
        for (int t = 0; t < len; t++) {
            x[t * dm] = 3f;
            for (int e = 1; e < dm; e++) {
                x[t * dm + e] = (float) (0.01 * rnd.nextGaussian());
            }
        }
        ModelAnalysis.Report r = ModelAnalysis.analyze(w, Tensor.ofFloats(x, 1, len, dm), engine, OPT);
        HeadProbe.HeadStats prev = r.layers().get(0).probe().heads()[0];
        HeadProbe.HeadStats other = r.layers().get(0).probe().heads()[1];
        assertEquals("previous-token", prev.labels());
        // Row 0 has no previous token, so the mean is at most 31/32.
        assertTrue(prev.prevToken() > 0.95 * 31 / 32, "previous-token mass " + prev.prevToken());
        assertEquals(1, prev.localWidth());
        assertFalse(other.labels().contains("previous-token"), other.toString());
        assertEquals(List.of(0, 0), List.of(ModelAnalysis.strongestHeads(r.layers(), 1).get(0)[0],
                ModelAnalysis.strongestHeads(r.layers(), 1).get(0)[1]));
    }

    @Test
    void nominalFlopsCountProjectionsAndAttention() {
        ModelConfig c = config(2, 4, 2, 8, true); // d_model 32, two query heads per key/value head
        // Unpruned: per layer 2·N·d·D·(2H + 2Hkv) + 4·B·H·L²·D / 2 (causal), N = B·L = 2·40.
        double layer = 2.0 * 80 * 32 * 8 * (8 + 4) + 4.0 * 2 * 4 * 40 * 40 * 8 / 2;
        assertEquals(2 * layer, ModelAnalysis.nominalFlops(c, PruningPlan.none(2, 4), 2, 40), 1e-6);
        // Layer 1 loses head 2 (its key/value head 1 is still read by head 3), then head 3 too (kv head 1 goes).
        double oneQ = 2.0 * 80 * 32 * 8 * (6 + 4) + 4.0 * 2 * 3 * 40 * 40 * 8 / 2;
        assertEquals(layer + oneQ, ModelAnalysis.nominalFlops(c, PruningPlan.of(2, 4, Map.of(1, List.of(2))), 2, 40), 1e-6);
        double oneKv = 2.0 * 80 * 32 * 8 * (4 + 2) + 4.0 * 2 * 2 * 40 * 40 * 8 / 2;
        assertEquals(layer + oneKv, ModelAnalysis.nominalFlops(c, PruningPlan.of(2, 4, Map.of(1, List.of(2, 3))), 2, 40), 1e-6);
        ModelWeights w = ModelWeights.random(c, 3);
        PruningPlan plan = PruningPlan.of(2, 4, Map.of(1, List.of(2, 3)));
        ModelAnalysis.Pruning p = ModelAnalysis.measure(w, ModelAnalysis.randomInput(2, 40, 32, 3), plan, engine, 0, 1);
        assertEquals((layer + oneKv) / (2 * layer), p.flopRatio(), 1e-15);
    }

    @Test
    void badInputsAreRefused() {
        ModelConfig c = config(1, 2, 2, 8, false);
        ModelWeights w = ModelWeights.random(c, 1);
        assertThrows(ShapeException.class, () -> ModelAnalysis.analyze(w, ModelAnalysis.randomInput(1, 4, 8, 1), engine, OPT));
        assertThrows(IllegalArgumentException.class, () -> new ModelAnalysis.Options(10, 8, 1.0, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> new ModelAnalysis.Options(10, 8, 0.1, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> ModelAnalysis.pruned(w, PruningPlan.none(2, 2)));
        assertThrows(IllegalArgumentException.class, () -> ModelAnalysis.randomInput(0, 4, 8, 1));
    }

    private static int removed(PruningPlan p) {
        int n = 0;
        for (int l = 0; l < p.layers(); l++) {
            n += p.removedHeads(l).length;
        }
        return n;
    }
}
