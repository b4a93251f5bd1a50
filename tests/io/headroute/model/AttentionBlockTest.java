package io.headroute.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.ShapeException;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** CPU blocks against a float64 reference, and pruned blocks against gated unpruned ones. */
class AttentionBlockTest {
    private static CpuAttentionEngine engine;

    @BeforeAll
    static void open() {
        engine = new CpuAttentionEngine(2);
    }

    @AfterAll
    static void close() {
        engine.close();
    }

    static double tolerance(DType t) {
        return t.tolerance();
    }

    static ModelWeights weights(ModelConfig c, long seed) {
        return BlockReference.weights(c, seed);
    }

    static Tensor input(Random r, DType dt, int b, int len, int d) {
        float[] x = new float[b * len * d];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return Tensor.ofFloats(dt, x, b, len, d);
    }

    static Tensor gate(Random r, int b, int len, int h, double zeroShare) {
        float[] g = new float[b * len * h];
        for (int i = 0; i < g.length; i++) {
            g[i] = r.nextDouble() < zeroShare ? 0f : 0.25f + 1.5f * r.nextFloat();
        }
        return Tensor.ofFloats(g, b, len, h);
    }

    @ParameterizedTest(name = "{0} H={1} Hkv={2} D={3} d={4} B={5} L={6} {7} causal={8} mask={9} gate={10}")
    @CsvSource({
        "f32, 4, 4, 8, 24, 1, 37, dense, false, , false",
        "f32, 4, 2, 6, 20, 2, 33, dense, true, , true",
        "f32, 6, 3, 8, 16, 1, 41, window:5, true, 110100, false",
        "f32, 6, 1, 4, 12, 2, 29, longformer:3:2, false, 011010, true",
        "f32, 4, 2, 8, 16, 1, 70, bigbird:16:1:1:2:9, false, 1011, false",
        "f16, 4, 2, 16, 32, 1, 45, causal, false, , true",
        "bf16, 8, 2, 16, 32, 2, 19, dense, true, 11011110, false",
    })
    void blockMatchesTheFloat64Reference(String dtype, int h, int hkv, int hd, int d, int b, int len, String pattern,
            boolean causal, String mask, boolean withGate) {
        DType dt = DType.parse(dtype);
        LayerSpec spec = LayerSpec.of(Patterns.parse(pattern), causal, Algorithm.FLASH).withHeadMask(mask(mask));
        ModelConfig c = ModelConfig.uniform(d, h, hkv, hd, dt, 1, spec);
        ModelWeights w = weights(c, 11 + h + len);
        Random r = new Random(len * 31L + d);
        Tensor x = input(r, dt, b, len, d);
        Tensor g = withGate ? gate(r, b, len, h, 0.2) : null;
        Tensor out = new AttentionBlock(c, 0, w.layer(0)).forward(x, g, engine);
        assertEquals(dt, out.dtype());
        assertArrayEquals(new long[] {b, len, d}, out.shape());
        double[] ref = BlockReference.forward(c, 0, w.layer(0), BlockReference.dbl(x), b, len,
                g == null ? null : g.toFloatArray());
        double err = BlockReference.updateError(out.toFloatArray(), ref, x.toFloatArray());
        assertTrue(err <= tolerance(dt), "relative error of the residual update " + err + " > " + tolerance(dt));
        // The attention must matter: the block is not the identity.
        assertTrue(BlockReference.relError(x.toFloatArray(), ref) > 10 * tolerance(dt), "block output equals its input");
    }

    static boolean[] mask(String m) {
        if (m == null || m.isEmpty()) {
            return null;
        }
        boolean[] a = new boolean[m.length()];
        for (int i = 0; i < a.length; i++) {
            a[i] = m.charAt(i) == '1';
        }
        return a;
    }

    /**
     * Pruned == unpruned with the pruned heads' gates at zero, measured on the residual update (the block's output
     * less its input x), not on the whole output, whose x would dilute an error in what attention adds; at the dtype's
     * tolerance.
     */
    @ParameterizedTest(name = "{0} H={1} Hkv={2} mask={3} {4} causal={5} {6}")
    @CsvSource({
        "f32, 6, 3, 110100, dense, true, flash",          // kv head 2 unused; groups of 2 and 1 active heads: one call per kv head
        "f32, 6, 3, 101010, window:4, false, materialized", // one active head per group: one call
        "f32, 8, 2, 01101101, bigbird:8:1:1:2:5, false, flash", // per-head random blocks on a subset of heads
        "f32, 4, 4, 0110, causal, false, flash",
        "f32, 4, 1, 1001, longformer:2:3, true, flash",
        "f16, 6, 3, 110100, dense, true, flash",
        "f16, 4, 1, 1001, longformer:2:3, true, materialized",
        "bf16, 8, 2, 01101101, bigbird:8:1:1:2:5, false, flash",
        "bf16, 6, 3, 101010, window:4, false, materialized",
    })
    void prunedBlockEqualsUnprunedWithThoseGatesAtZero(String dtype, int h, int hkv, String mask, String pattern, boolean causal,
            String algo) {
        DType dt = DType.parse(dtype);
        double tol = tolerance(dt);
        boolean[] m = mask(mask);
        LayerSpec full = LayerSpec.of(Patterns.parse(pattern), causal, Algorithm.parse(algo));
        ModelConfig c = ModelConfig.uniform(20, h, hkv, 8, dt, 1, full);
        ModelConfig pc = c.withLayer(0, full.withHeadMask(m));
        ModelWeights w = weights(c, 3);
        Random r = new Random(h * 7L + hkv);
        int b = 2;
        int len = 53;
        Tensor x = input(r, dt, b, len, 20);
        Tensor userGate = gate(r, b, len, h, 0.1);
        float[] g = userGate.toFloatArray();
        float[] zeroed = g.clone();
        for (int i = 0; i < zeroed.length; i++) {
            if (!m[i % h]) {
                zeroed[i] = 0f;
            }
        }
        Tensor reference = new AttentionBlock(c, 0, w.layer(0)).forward(x, Tensor.ofFloats(zeroed, b, len, h), engine);
        AttentionBlock pruned = new AttentionBlock(pc, 0, w.withConfig(pc).layer(0));
        Tensor got = pruned.forward(x, userGate, engine);
        double err = BlockReference.updateError(got.toFloatArray(), reference.toFloatArray(), x.toFloatArray());
        assertTrue(err <= tol, "pruned vs gated: relative error of the residual update " + err + " > " + tol);
        // Without a user gate: pruned == unpruned with a 0/1 gate.
        float[] ones = new float[g.length];
        for (int i = 0; i < ones.length; i++) {
            ones[i] = m[i % h] ? 1f : 0f;
        }
        Tensor ref2 = new AttentionBlock(c, 0, w.layer(0)).forward(x, Tensor.ofFloats(ones, b, len, h), engine);
        double err2 = BlockReference.updateError(pruned.forward(x, null, engine).toFloatArray(), ref2.toFloatArray(),
                x.toFloatArray());
        assertTrue(err2 <= tol, "pruned vs 0/1 gate: relative error of the residual update " + err2 + " > " + tol);

        int active = 0;
        for (boolean a : m) {
            active += a ? 1 : 0;
        }
        assertEquals(active, pruned.selection().headCount());
        long kvUsed = Arrays.stream(pruned.selection().kvHeads()).count();
        long expectBytes = dt.byteSize() * (20 + 20 * active * 8 + 2 * 20 * kvUsed * 8 + active * 8 * 20);
        assertEquals(expectBytes, pruned.weightBytes(), "only active heads' weights are kept");
    }

    @Test
    void selectionDropsKeyValueHeadsNoActiveHeadReads() {
        ModelConfig c = ModelConfig.uniform(16, 6, 3, 4, DType.F32, 1,
                new LayerSpec(new Pattern.Dense(), false, Algorithm.FLASH, mask("110100")));
        HeadSelection s = HeadSelection.of(c, c.layer(0));
        assertArrayEquals(new int[] {0, 1, 3}, s.heads());
        assertArrayEquals(new int[] {0, 1}, s.kvHeads());
        assertEquals(2, s.calls().size(), "two active heads on kv head 0, one on kv head 1: not uniform");
        assertArrayEquals(new int[] {3}, s.calls().get(1).heads());
        HeadSelection u = HeadSelection.of(c, c.layer(0).withHeadMask(mask("101010")));
        assertEquals(1, u.calls().size());
        assertEquals(3, u.calls().get(0).kvCount());
    }

    @Test
    void perHeadPatternsKeepTheirHeadsWhenRewritten() {
        int len = 150;
        List<Pattern> patterns = new ArrayList<>();
        patterns.add(Patterns.parse("bigbird:16:1:1:3:77"));
        patterns.add(Patterns.parse("bigbird:16:0:2:2:5").withCausal());
        int n = (len + 15) / 16;
        boolean[] bits = new boolean[5 * n * n];
        Random r = new Random(4);
        for (int i = 0; i < bits.length; i++) {
            bits[i] = r.nextInt(3) == 0;
        }
        patterns.add(new Pattern.Layout(16, 5, n, bits, "test"));
        int[] heads = {4, 1, 3};
        for (Pattern p : patterns) {
            Pattern q = HeadSelection.forHeads(p, heads, len);
            q.check(heads.length, len, len);
            for (int i = 0; i < heads.length; i++) {
                for (int pos = 0; pos < len; pos++) {
                    for (int j = 0; j < len; j++) {
                        assertEquals(p.allows(heads[i], pos, j, len), q.allows(i, pos, j, len),
                                p.spec() + " head " + heads[i] + " p=" + pos + " j=" + j);
                    }
                }
            }
        }
    }

    @Test
    void modelRunsItsLayersInOrder() {
        List<LayerSpec> specs = List.of(LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH),
                LayerSpec.of(Patterns.parse("window:4"), true, Algorithm.MATERIALIZED).withHeadMask(mask("1010")),
                LayerSpec.of(new Pattern.Dense(), false, Algorithm.FLASH));
        ModelConfig c = new ModelConfig(24, 4, 2, 8, DType.F32, 500.0, 1e-6, specs);
        ModelWeights w = weights(c, 8);
        Random r = new Random(5);
        Tensor x = input(r, DType.F32, 1, 31, 24);
        Tensor out = new Model(w).forward(x, engine);
        double[] ref = BlockReference.dbl(x);
        for (int i = 0; i < 3; i++) {
            ref = BlockReference.forward(c, i, w.layer(i), ref, 1, 31, null);
        }
        double err = BlockReference.updateError(out.toFloatArray(), ref, x.toFloatArray());
        assertTrue(err <= 1e-5, "3-layer model: relative error of the residual updates " + err);
    }

    @Test
    void badInputsAreRefusedWithOneLine() {
        ModelConfig c = ModelConfig.uniform(16, 4, 2, 4, DType.F32, 2, LayerSpec.of(new Pattern.Dense(), false, Algorithm.AUTO));
        Model m = new Model(ModelWeights.random(c, 1));
        Tensor wrongWidth = Tensor.ofFloats(new float[2 * 3 * 15], 2, 3, 15);
        ShapeException e = assertThrows(ShapeException.class, () -> m.forward(wrongWidth, engine));
        assertTrue(e.getMessage().contains("d_model = 16"), e.getMessage());
        Tensor x = Tensor.ofFloats(new float[3 * 16], 1, 3, 16);
        ShapeException g = assertThrows(ShapeException.class,
                () -> m.forward(x, java.util.Arrays.asList(Tensor.ofFloats(new float[3 * 3], 1, 3, 3), null), engine));
        assertTrue(g.getMessage().contains("(B, L, H) = (1, 3, 4)"), g.getMessage());
    }

    @Test
    void aGateSourceSeesEachLayersInputAndPruningPlansApplyPerLayer() {
        ModelConfig c = ModelConfig.uniform(16, 4, 2, 4, DType.F32, 3, LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH));
        ModelConfig pruned = c.withHeadMasks(java.util.Arrays.asList(mask("1100"), null, mask("0001")));
        assertEquals("1100", pruned.layer(0).maskString());
        assertEquals(null, pruned.layer(1).headMask());
        ModelWeights w = weights(c, 4);
        Model m = new Model(w);
        Random r = new Random(3);
        Tensor x = input(r, DType.F32, 1, 9, 16);
        List<Tensor> seen = new ArrayList<>();
        Tensor gate = gate(r, 1, 9, 4, 0.3);
        Tensor out = m.forwardWithGates(x, (layer, in) -> {
            seen.add(in);
            return layer == 1 ? gate : null;
        }, engine);
        assertEquals(3, seen.size());
        assertArrayEquals(x.toFloatArray(), seen.get(0).toFloatArray(), "layer 0 sees the model input");
        Tensor afterTwo = m.blocks().get(1).forward(m.blocks().get(0).forward(x, null, engine), gate, engine);
        assertArrayEquals(afterTwo.toFloatArray(), seen.get(2).toFloatArray(), "layer 2 sees layer 1's gated output");
        assertArrayEquals(m.blocks().get(2).forward(afterTwo, null, engine).toFloatArray(), out.toFloatArray());
    }
}
