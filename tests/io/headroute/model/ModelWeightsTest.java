package io.headroute.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Safetensors;
import io.headroute.tensor.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Weight names, shapes and dtypes; random init; .safetensors round trips; config validation. */
class ModelWeightsTest {
    @TempDir
    Path dir;

    static ModelConfig config(DType dt) {
        List<LayerSpec> specs = List.of(LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH),
                LayerSpec.of(Patterns.parse("window:16"), true, Algorithm.MATERIALIZED)
                        .withHeadMask(new boolean[] {true, false, true, true}),
                LayerSpec.of(Patterns.parse("bigbird:8:1:1:2:3"), false, Algorithm.SPARSE));
        return new ModelConfig(32, 4, 2, 8, dt, 50000.0, 1e-6, specs);
    }

    @Test
    void namesAndShapesFollowTheConfig() {
        ModelConfig c = config(DType.BF16);
        ModelWeights w = ModelWeights.random(c, 7);
        Map<String, Tensor> m = w.asMap();
        assertEquals(15, m.size());
        assertArrayEquals(new long[] {32}, m.get("layers.0.attn_norm.weight").shape());
        assertArrayEquals(new long[] {32, 32}, m.get("layers.1.attn.wq").shape());
        assertArrayEquals(new long[] {32, 16}, m.get("layers.2.attn.wk").shape());
        assertArrayEquals(new long[] {32, 16}, m.get("layers.2.attn.wv").shape());
        assertArrayEquals(new long[] {32, 32}, m.get("layers.0.attn.wo").shape());
        for (Tensor t : m.values()) {
            assertEquals(DType.BF16, t.dtype());
        }
        assertEquals(2L * (3 * (32 + 32 * 32 + 2 * 32 * 16 + 32 * 32)), w.byteSize());
    }

    @Test
    void randomInitIsSeededAndScaled() {
        ModelConfig c = ModelConfig.uniform(256, 8, 8, 32, DType.F32, 2, LayerSpec.of(new Pattern.Dense(), false, Algorithm.AUTO));
        ModelWeights a = ModelWeights.random(c, 42);
        ModelWeights b = ModelWeights.random(c, 42);
        ModelWeights other = ModelWeights.random(c, 43);
        assertArrayEquals(a.layer(1).wv().toFloatArray(), b.layer(1).wv().toFloatArray());
        assertFalse(java.util.Arrays.equals(a.layer(1).wv().toFloatArray(), other.layer(1).wv().toFloatArray()));
        assertFalse(java.util.Arrays.equals(a.layer(0).wq().toFloatArray(), a.layer(0).wk().toFloatArray()),
                "matrices of one layer differ");
        for (float g : a.layer(0).attnNorm().toFloatArray()) {
            assertEquals(1f, g);
        }
        // std 1/sqrt(fan_in): 1/16 for wq (fan_in 256), also 1/16 for wo (fan_in H·D = 256); 65536 samples.
        for (Tensor t : List.of(a.layer(0).wq(), a.layer(1).wo())) {
            float[] v = t.toFloatArray();
            double s = 0;
            double ss = 0;
            for (float x : v) {
                s += x;
                ss += (double) x * x;
            }
            double mean = s / v.length;
            double std = Math.sqrt(ss / v.length - mean * mean);
            assertEquals(0, mean, 0.002);
            assertEquals(1.0 / 16, std, 0.001);
        }
    }

    @Test
    void safetensorsRoundTripKeepsEveryBitAndTheConfig() {
        for (DType dt : new DType[] {DType.F32, DType.F16, DType.BF16}) {
            ModelConfig c = config(dt);
            ModelWeights w = ModelWeights.random(c, 5);
            Path f = dir.resolve("w-" + dt.cliName() + ".safetensors");
            w.save(f);
            ModelWeights back = ModelWeights.load(f);
            assertEquals(c, back.config(), "config from the metadata");
            ModelWeights explicit = ModelWeights.load(f, c);
            for (Map.Entry<String, Tensor> e : w.asMap().entrySet()) {
                Tensor t = back.asMap().get(e.getKey());
                assertEquals(e.getValue().dtype(), t.dtype(), e.getKey());
                assertEquals(e.getValue().bytes(), t.bytes(), e.getKey() + " bytes");
                assertEquals(e.getValue().bytes(), explicit.asMap().get(e.getKey()).bytes(), e.getKey() + " bytes");
            }
        }
    }

    @Test
    void configJsonRoundTrips() {
        ModelConfig c = config(DType.F16);
        String json = c.toJson();
        assertTrue(json.contains("\"head_mask\":\"1011\""), json);
        assertEquals(c, ModelConfig.fromJson(json));
        ModelConfig causalOf = ModelConfig.uniform(8, 2, 2, 4, DType.F32, 1,
                LayerSpec.of(Patterns.parse("window:3").withCausal(), false, Algorithm.FLASH));
        ModelConfig back = ModelConfig.fromJson(causalOf.toJson());
        assertTrue(back.layer(0).causal(), "a causal-wrapped pattern comes back as pattern + causal flag");
        assertEquals(Patterns.parse("window:3"), back.layer(0).pattern());
    }

    @Test
    void wrongTensorsAreNamedWithExpectedAndFound() {
        ModelConfig c = config(DType.F32);
        Map<String, Tensor> good = ModelWeights.random(c, 1).asMap();

        Map<String, Tensor> shape = new LinkedHashMap<>(good);
        shape.put("layers.1.attn.wk", Tensor.ofFloats(new float[32 * 8], 32, 8));
        ModelException e = assertThrows(ModelException.class, () -> ModelWeights.of(c, shape));
        assertEquals("tensor layers.1.attn.wk: expected f32 (32, 16), found f32 (32, 8)", e.getMessage());

        Map<String, Tensor> dtype = new LinkedHashMap<>(good);
        dtype.put("layers.2.attn.wo", good.get("layers.2.attn.wo").toDType(DType.BF16));
        e = assertThrows(ModelException.class, () -> ModelWeights.of(c, dtype));
        assertEquals("tensor layers.2.attn.wo: expected f32 (32, 32), found bf16 (32, 32)", e.getMessage());

        Map<String, Tensor> missing = new LinkedHashMap<>(good);
        missing.remove("layers.0.attn_norm.weight");
        e = assertThrows(ModelException.class, () -> ModelWeights.of(c, missing));
        assertEquals("missing tensor layers.0.attn_norm.weight (expected f32 (32))", e.getMessage());

        Map<String, Tensor> extra = new LinkedHashMap<>(good);
        extra.put("layers.3.attn.wq", good.get("layers.0.attn.wq"));
        e = assertThrows(ModelException.class, () -> ModelWeights.of(c, extra));
        assertEquals("unexpected tensor layers.3.attn.wq for a model of 3 layer(s)", e.getMessage());

        Map<String, Tensor> nan = new LinkedHashMap<>(good);
        float[] wv = good.get("layers.1.attn.wv").toFloatArray();
        wv[7] = Float.NaN;
        nan.put("layers.1.attn.wv", Tensor.ofFloats(wv, good.get("layers.1.attn.wv").shape()));
        e = assertThrows(ModelException.class, () -> ModelWeights.of(c, nan));
        assertEquals("tensor layers.1.attn.wv holds a non-finite value (NaN) at flat index 7", e.getMessage());
    }

    @Test
    void aFileWithoutConfigOrWithOtherShapesIsRefused() {
        ModelConfig c = config(DType.F32);
        Path f = dir.resolve("bare.safetensors");
        Safetensors.write(f, ModelWeights.random(c, 1).asMap(), Map.of());
        ModelException e = assertThrows(ModelException.class, () -> ModelWeights.load(f));
        assertTrue(e.getMessage().contains("holds no model config"), e.getMessage());
        ModelConfig wider = new ModelConfig(48, 4, 2, 8, DType.F32, 1e4, 1e-5, c.layers());
        e = assertThrows(ModelException.class, () -> ModelWeights.load(f, wider));
        assertEquals("tensor layers.0.attn_norm.weight: expected f32 (48), found f32 (32)", e.getMessage());
        assertTrue(Files.exists(f));
    }

    @Test
    void configValidationSaysWhatIsWrong() {
        LayerSpec dense = LayerSpec.of(new Pattern.Dense(), false, Algorithm.AUTO);
        assertMessage("H = 6 query heads is not divisible by Hkv = 4 key/value heads",
                () -> ModelConfig.uniform(16, 6, 4, 8, DType.F32, 1, dense));
        assertMessage("head dim D = 7 must be even (rotary embedding rotates pairs (i, i + D/2))",
                () -> ModelConfig.uniform(16, 4, 4, 7, DType.F32, 1, dense));
        assertMessage("model dtype must be f32, f16 or bf16, got i32", () -> ModelConfig.uniform(16, 4, 4, 8, DType.I32, 1, dense));
        assertMessage("a model needs at least one layer, got 0", () -> ModelConfig.uniform(16, 4, 4, 8, DType.F32, 0, dense));
        assertMessage("layer 0's head mask has 3 entries, expected H = 4",
                () -> ModelConfig.uniform(16, 4, 4, 8, DType.F32, 1, dense.withHeadMask(new boolean[3])));
        assertMessage("layer 0's head mask prunes every head; keep at least one",
                () -> ModelConfig.uniform(16, 4, 4, 8, DType.F32, 1, dense.withHeadMask(new boolean[4])));
        assertMessage("RoPE theta must be a finite number above 1, got NaN",
                () -> new ModelConfig(16, 4, 4, 8, DType.F32, Double.NaN, 1e-5, List.of(dense)));
        for (double eps : new double[] {0, -1e-5, Double.NaN, Double.POSITIVE_INFINITY, 1e-46, 1e39}) {
            assertMessage("RMSNorm eps must be a positive number within fp32's range (1.4e-45 to 3.4e38), got " + eps,
                    () -> new ModelConfig(16, 4, 4, 8, DType.F32, 1e4, eps, List.of(dense)));
        }
        assertEquals(Float.MIN_VALUE, new ModelConfig(16, 4, 4, 8, DType.F32, 1e4, Float.MIN_VALUE, List.of(dense)).normEps());
        ModelException e = assertThrows(ModelException.class, () -> ModelConfig.fromJson("{\"layers\": [{\"pattern\": \"nope\","
                + " \"algorithm\": \"flash\"}]}"));
        assertTrue(e.getMessage().startsWith("model config layer 0: unknown pattern"), e.getMessage());
        assertTrue(e instanceof IllegalArgumentException, "a user error (exit 2)");
        // A layout file that cannot be read says which layer named it (it was a TensorFileException naming the file only).
        ModelException missing = assertThrows(ModelException.class, () -> ModelConfig.fromJson("{\"layers\": [{\"pattern\":"
                + " \"layout:64:/nonexistent/l.npy\", \"algorithm\": \"sparse\"}]}"));
        assertTrue(missing.getMessage().startsWith("model config layer 0: /nonexistent/l.npy"), missing.getMessage());
        assertNotEquals(dense, dense.withHeadMask(new boolean[] {true}));
    }

    /** The config JSON is read strictly: a typo or a wrong type would otherwise change the model silently. */
    @Test
    void configJsonIsReadStrictly() {
        String good = ModelConfig.uniform(8, 2, 2, 4, DType.F32, 1, LayerSpec.of(Patterns.parse("window:3"), true,
                Algorithm.FLASH)).toJson();
        assertEquals(good, ModelConfig.fromJson(good).toJson());
        String[][] cases = {
            {"\"causal\":true", "\"casual\":true", "model config layer 0: unknown field 'casual' (expected pattern, causal,"
                    + " algorithm, head_mask, router)"},
            {"\"causal\":true", "\"causal\":\"yes\"", "model config layer 0: 'causal' must be true or false, got \"yes\""},
            {"\"heads\":2", "\"heads\":2.9", "model config: 'heads' must be an integer, got 2.9"},
            {"\"d_model\":8", "\"d_model\":8,\"dmodel\":8", "model config: unknown field 'dmodel' (expected d_model, heads,"
                    + " kv_heads, head_dim, dtype, rope_theta, norm_eps, layers)"},
            {"\"rope_theta\":10000.0", "\"rope_theta\":\"abc\"", "model config: 'rope_theta' must be a number, got \"abc\""},
            {"\"norm_eps\":1.0E-5", "\"norm_eps\":\"1e-3\"", "model config: 'norm_eps' must be a number, got \"1e-3\""},
            {"\"algorithm\":\"flash\"", "\"algorithm\":\"flash\",\"head_mask\":11",
                "model config layer 0: head_mask must be a string of 0 and 1, got 11"},
        };
        for (String[] c : cases) {
            assertTrue(good.contains(c[0]), good + " lacks " + c[0]);
            assertMessage(c[2], () -> ModelConfig.fromJson(good.replace(c[0], c[1])));
        }
        assertMessage("model config is not valid JSON: more text after the JSON object (line 1, column " + (good.length() + 2)
                + ")", () -> ModelConfig.fromJson(good + " {}"));
    }

    private static void assertMessage(String expected, org.junit.jupiter.api.function.Executable ex) {
        assertEquals(expected, assertThrows(ModelException.class, ex).getMessage());
    }
}
