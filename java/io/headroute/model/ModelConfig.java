package io.headroute.model;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.headroute.engine.Algorithm;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.PatternException;
import io.headroute.pattern.Patterns;
import io.headroute.routing.RouterConfig;
import io.headroute.tensor.DType;
import io.headroute.tensor.JsonProblem;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The shape of a stack of attention blocks, validated on construction with one-line messages.
 *
 * @param dModel    width of the residual stream
 * @param heads     query heads H
 * @param kvHeads   key/value heads Hkv (H divisible by Hkv)
 * @param headDim   D, even (rotary embedding rotates pairs (i, i + D/2))
 * @param dtype     f32, f16 or bf16: weights and activations are stored in it (see {@link AttentionBlock})
 * @param ropeTheta rotary base θ (θ_i = theta^(−2i/D)); 10000 by default
 * @param normEps   RMSNorm epsilon; 1e-5 by default
 * @param layers    one spec per layer, in order
 */
public record ModelConfig(int dModel, int heads, int kvHeads, int headDim, DType dtype, double ropeTheta, double normEps,
        List<LayerSpec> layers) {
    /** The rotary base θ when a config names none: 10000, as in the original RoPE. */
    public static final double DEFAULT_ROPE_THETA = 10000.0;
    /** The RMSNorm epsilon when a config names none: 1e-5. */
    public static final double DEFAULT_NORM_EPS = 1e-5;
    /** The {@code __metadata__} key under which a weight file stores its config as JSON. */
    public static final String METADATA_KEY = "headroute.model";

    /** Written plainly; read strictly: duplicate keys and anything after the object are refused. */
    private static final ObjectMapper JSON = JsonMapper.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS).build();

    /**
     * Validates the config and copies the layer list.
     *
     * @param dModel    d_model, positive
     * @param heads     H, positive, divisible by Hkv
     * @param kvHeads   Hkv, positive
     * @param headDim   D, positive and even
     * @param dtype     f32, f16 or bf16
     * @param ropeTheta θ, finite and above 1
     * @param normEps   ε, positive and finite once rounded to fp32
     * @param layers    at least one spec, none null; head masks of H entries keeping at least one head, routers
     *                  of Hs + Hr = H heads
     * @throws ModelException naming the first value that breaks a rule
     */
    public ModelConfig {
        if (dModel <= 0 || heads <= 0 || kvHeads <= 0 || headDim <= 0) {
            throw new ModelException("model sizes must be positive: d_model=" + dModel + " H=" + heads + " Hkv=" + kvHeads
                    + " D=" + headDim);
        }
        if (heads % kvHeads != 0) {
            throw new ModelException("H = " + heads + " query heads is not divisible by Hkv = " + kvHeads + " key/value heads");
        }
        if (headDim % 2 != 0) {
            throw new ModelException("head dim D = " + headDim + " must be even (rotary embedding rotates pairs (i, i + D/2))");
        }
        if (dtype != DType.F32 && dtype != DType.F16 && dtype != DType.BF16) {
            throw new ModelException("model dtype must be f32, f16 or bf16, got " + (dtype == null ? "none" : dtype.cliName()));
        }
        if (!(ropeTheta > 1) || Double.isInfinite(ropeTheta)) {
            throw new ModelException("RoPE theta must be a finite number above 1, got " + ropeTheta);
        }
        // The norm adds eps in fp32: an eps that rounds to 0 there gives NaN rows for zero inputs, one that
        // rounds to infinity gives zeros.
        if (!((float) normEps > 0) || Float.isInfinite((float) normEps)) {
            throw new ModelException("RMSNorm eps must be a positive number within fp32's range (1.4e-45 to 3.4e38), got "
                    + normEps);
        }
        if (layers == null || layers.isEmpty()) {
            throw new ModelException("a model needs at least one layer");
        }
        layers = Collections.unmodifiableList(new ArrayList<>(layers));
        for (int i = 0; i < layers.size(); i++) {
            LayerSpec s = layers.get(i);
            if (s == null) {
                throw new ModelException("layer " + i + " has no spec");
            }
            boolean[] mask = s.headMask();
            if (mask != null) {
                if (mask.length != heads) {
                    throw new ModelException("layer " + i + "'s head mask has " + mask.length + " entries, expected H = " + heads);
                }
                boolean any = false;
                for (boolean a : mask) {
                    any |= a;
                }
                if (!any) {
                    throw new ModelException("layer " + i + "'s head mask prunes every head; keep at least one");
                }
            }
            RouterConfig r = s.router();
            if (r != null && r.heads() != heads) {
                throw new ModelException("layer " + i + "'s routing has Hs + Hr = " + r.sharedHeads() + " + " + r.routedHeads()
                        + " = " + r.heads() + " heads, but the model has H = " + heads);
            }
        }
    }

    /**
     * {@code count} layers with the same spec, default theta and eps.
     *
     * @param dModel  d_model
     * @param heads   H
     * @param kvHeads Hkv
     * @param headDim D
     * @param dtype   f32, f16 or bf16
     * @param count   the layers, at least 1
     * @param spec    every layer's spec
     * @return the validated config
     * @throws ModelException when {@code count} is below 1 or the config is invalid
     */
    public static ModelConfig uniform(int dModel, int heads, int kvHeads, int headDim, DType dtype, int count, LayerSpec spec) {
        if (count <= 0) {
            throw new ModelException("a model needs at least one layer, got " + count);
        }
        return new ModelConfig(dModel, heads, kvHeads, headDim, dtype, DEFAULT_ROPE_THETA, DEFAULT_NORM_EPS,
                Collections.nCopies(count, spec));
    }

    /** {@return the number of layers, at least 1} */
    public int layerCount() {
        return layers.size();
    }

    /**
     * {@return layer i's spec}
     *
     * @param i the layer, in [0, {@link #layerCount()})
     */
    public LayerSpec layer(int i) {
        return layers.get(i);
    }

    /** {@return the query heads per key/value head, H / Hkv} */
    public int group() {
        return heads / kvHeads;
    }

    /**
     * {@return this config with layer i's spec replaced}
     *
     * @param i    the layer, in [0, {@link #layerCount()})
     * @param spec the new spec, validated with the rest
     */
    public ModelConfig withLayer(int i, LayerSpec spec) {
        List<LayerSpec> l = new ArrayList<>(layers);
        l.set(i, spec);
        return new ModelConfig(dModel, heads, kvHeads, headDim, dtype, ropeTheta, normEps, l);
    }

    /**
     * {@return this config with one head mask per layer} (a pruning plan; a null entry keeps every head).
     *
     * @param masks one mask of H entries, or null, per layer
     * @throws ModelException when there is not one entry per layer, or a mask is invalid
     */
    public ModelConfig withHeadMasks(List<boolean[]> masks) {
        if (masks.size() != layers.size()) {
            throw new ModelException(masks.size() + " head masks for " + layers.size() + " layers");
        }
        List<LayerSpec> l = new ArrayList<>();
        for (int i = 0; i < layers.size(); i++) {
            l.add(layers.get(i).withHeadMask(masks.get(i)));
        }
        return new ModelConfig(dModel, heads, kvHeads, headDim, dtype, ropeTheta, normEps, l);
    }

    /** {@return whether any layer is routed} */
    public boolean routed() {
        for (LayerSpec s : layers) {
            if (s.routed()) {
                return true;
            }
        }
        return false;
    }

    /**
     * {@return this config with {@code router} on every layer}
     *
     * @param router the routing (Hs + Hr = H), or null for no routed layer
     */
    public ModelConfig withRouter(RouterConfig router) {
        List<LayerSpec> l = new ArrayList<>();
        for (LayerSpec s : layers) {
            l.add(s.withRouter(router));
        }
        return new ModelConfig(dModel, heads, kvHeads, headDim, dtype, ropeTheta, normEps, l);
    }

    /**
     * {@return this config with another dtype} (the weights must then be converted: {@link ModelWeights#toDType}).
     *
     * @param d f32, f16 or bf16
     */
    public ModelConfig withDType(DType d) {
        return new ModelConfig(dModel, heads, kvHeads, headDim, d, ropeTheta, normEps, layers);
    }

    /**
     * {@return the config as one line of JSON (the form stored in a weight file's metadata)}: d_model, heads,
     * kv_heads, head_dim, dtype, rope_theta, norm_eps and per layer its pattern, causal, algorithm, and head_mask and
     * router where set.
     */
    public String toJson() {
        ObjectNode root = JSON.createObjectNode();
        root.put("d_model", dModel).put("heads", heads).put("kv_heads", kvHeads).put("head_dim", headDim)
                .put("dtype", dtype.cliName()).put("rope_theta", ropeTheta).put("norm_eps", normEps);
        ArrayNode arr = root.putArray("layers");
        for (LayerSpec s : layers) {
            ObjectNode l = arr.addObject();
            Pattern p = s.pattern();
            boolean causal = s.causal();
            if (p instanceof Pattern.CausalOf c) {
                p = c.inner();
                causal = true;
            }
            l.put("pattern", p.spec()).put("causal", causal).put("algorithm", s.algorithm().cliName());
            if (s.headMask() != null) {
                l.put("head_mask", s.maskString());
            }
            if (s.router() != null) {
                RouterConfig r = s.router();
                l.putObject("router").put("shared_heads", r.sharedHeads()).put("routed_heads", r.routedHeads()).put("k", r.k())
                        .put("block", r.block());
            }
        }
        try {
            return JSON.writeValueAsString(root);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot write the model config as JSON", e);
        }
    }

    /**
     * Parses {@link #toJson()}'s form; layout patterns re-read their files. Unknown fields, duplicate keys and
     * trailing text are refused; rope_theta, norm_eps, causal, head_mask, router and a router's block are optional.
     *
     * @param json the config
     * @return the validated config
     * @throws ModelException with a one-line message for malformed JSON, an invalid config, or a layout pattern's file
     *     that cannot be read (naming the layer)
     */
    public static ModelConfig fromJson(String json) {
        JsonNode root;
        try {
            root = JSON.readTree(json);
        } catch (JsonProcessingException e) {
            throw new ModelException("model config is not valid JSON: " + JsonProblem.of(e));
        }
        if (root == null || !root.isObject()) {
            throw new ModelException("model config must be a JSON object");
        }
        onlyFields(root, "model config", "d_model", "heads", "kv_heads", "head_dim", "dtype", "rope_theta", "norm_eps", "layers");
        JsonNode ls = root.get("layers");
        if (ls == null || !ls.isArray()) {
            throw new ModelException("model config has no 'layers' array");
        }
        List<LayerSpec> specs = new ArrayList<>();
        for (int i = 0; i < ls.size(); i++) {
            JsonNode l = ls.get(i);
            if (!l.isObject()) {
                throw new ModelException("model config layer " + i + " must be a JSON object, got " + l);
            }
            onlyFields(l, "model config layer " + i, "pattern", "causal", "algorithm", "head_mask", "router");
            Pattern p;
            try {
                p = Patterns.parse(text(l, "pattern", "layer " + i));
            } catch (PatternException | io.headroute.tensor.TensorFileException e) {
                // A layout file that cannot be read, too: its message says which layer asked for it.
                throw new ModelException("model config layer " + i + ": " + e.getMessage());
            }
            Algorithm a;
            try {
                a = Algorithm.parse(text(l, "algorithm", "layer " + i));
            } catch (IllegalArgumentException e) {
                throw new ModelException("model config layer " + i + ": " + e.getMessage());
            }
            boolean[] mask = null;
            if (l.hasNonNull("head_mask")) {
                if (!l.get("head_mask").isTextual()) {
                    throw new ModelException("model config layer " + i + ": head_mask must be a string of 0 and 1, got "
                            + l.get("head_mask"));
                }
                String m = l.get("head_mask").asText();
                mask = new boolean[m.length()];
                for (int h = 0; h < m.length(); h++) {
                    char c = m.charAt(h);
                    if (c != '0' && c != '1') {
                        throw new ModelException("model config layer " + i + ": head_mask must be a string of 0 and 1, got '" + m + "'");
                    }
                    mask[h] = c == '1';
                }
            }
            RouterConfig router = null;
            if (l.hasNonNull("router")) {
                JsonNode r = l.get("router");
                String where = "model config layer " + i + " router";
                if (!r.isObject()) {
                    throw new ModelException(where + " must be a JSON object, got " + r);
                }
                onlyFields(r, where, "shared_heads", "routed_heads", "k", "block");
                try {
                    router = new RouterConfig(integer(r, "shared_heads", where), integer(r, "routed_heads", where),
                            integer(r, "k", where), r.has("block") ? integer(r, "block", where) : 1);
                } catch (IllegalArgumentException e) {
                    throw new ModelException(where + ": " + e.getMessage());
                }
            }
            JsonNode causal = l.get("causal");
            if (causal != null && !causal.isBoolean()) {
                throw new ModelException("model config layer " + i + ": 'causal' must be true or false, got " + causal);
            }
            specs.add(new LayerSpec(p, causal != null && causal.asBoolean(), a, mask, router));
        }
        DType dt;
        try {
            dt = DType.parse(text(root, "dtype", "model config"));
        } catch (IllegalArgumentException e) {
            throw new ModelException("model config: " + e.getMessage());
        }
        return new ModelConfig(integer(root, "d_model"), integer(root, "heads"), integer(root, "kv_heads"),
                integer(root, "head_dim"), dt, number(root, "rope_theta", DEFAULT_ROPE_THETA),
                number(root, "norm_eps", DEFAULT_NORM_EPS), specs);
    }

    /** Refuses a field of {@code n} not in {@code allowed}: a typo ("casual") would otherwise be a default silently. */
    private static void onlyFields(JsonNode n, String where, String... allowed) {
        String problem = JsonProblem.unknownField(n, allowed);
        if (problem != null) {
            throw new ModelException(where + ": " + problem);
        }
    }

    /** An optional number field: {@code dflt} when absent; a string or other non-number is refused. */
    private static double number(JsonNode n, String field, double dflt) {
        JsonNode v = n.get(field);
        if (v == null) {
            return dflt;
        }
        if (!v.isNumber()) {
            throw new ModelException("model config: '" + field + "' must be a number, got " + v);
        }
        return v.asDouble();
    }

    private static String text(JsonNode n, String field, String where) {
        JsonNode v = n.get(field);
        if (v == null || !v.isTextual()) {
            throw new ModelException(where + ": missing text field '" + field + "'");
        }
        return v.asText();
    }

    private static int integer(JsonNode n, String field) {
        return integer(n, field, "model config");
    }

    private static int integer(JsonNode n, String field, String where) {
        JsonNode v = n.get(field);
        if (v == null) {
            throw new ModelException(where + ": missing integer field '" + field + "'");
        }
        if (!v.isIntegralNumber() || !v.canConvertToInt()) {
            throw new ModelException(where + ": '" + field + "' must be an integer, got " + v);
        }
        return v.asInt();
    }
}
