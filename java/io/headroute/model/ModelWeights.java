package io.headroute.model;

import io.headroute.tensor.DType;
import io.headroute.tensor.Safetensors;
import io.headroute.tensor.SafetensorsFile;
import io.headroute.tensor.Tensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * The weights of every layer of a {@link ModelConfig}, in the config's dtype, validated against it.
 *
 * <p>Tensor names (README, "Models and weights"): {@code layers.{i}.attn_norm.weight} (d_model),
 * {@code layers.{i}.attn.wq} (d_model, H·D), {@code layers.{i}.attn.wk} and {@code layers.{i}.attn.wv}
 * (d_model, Hkv·D), {@code layers.{i}.attn.wo} (H·D, d_model), and for routed layers only
 * {@code layers.{i}.attn.router} (d_model, Hr). Pruned heads keep their (unused) weights, so one file
 * serves every pruning plan.
 */
public final class ModelWeights {
    static final String ATTN_NORM = "attn_norm.weight";
    static final String WQ = "attn.wq";
    static final String WK = "attn.wk";
    static final String WV = "attn.wv";
    static final String WO = "attn.wo";
    static final String ROUTER = "attn.router";
    /** Short names in file order (every layer). */
    public static final List<String> SHORT_NAMES = List.of(ATTN_NORM, WQ, WK, WV, WO);

    private final ModelConfig config;
    private final List<LayerWeights> layers;

    private ModelWeights(ModelConfig config, List<LayerWeights> layers) {
        this.config = config;
        this.layers = Collections.unmodifiableList(new ArrayList<>(layers));
    }

    /**
     * {@return the full name of a layer's tensor: {@code layers.3.attn.wq}}
     *
     * @param layer     the layer index
     * @param shortName the name within the layer, e.g. "attn.wq"
     */
    public static String name(int layer, String shortName) {
        return "layers." + layer + "." + shortName;
    }

    /**
     * The shape the config demands for a layer tensor.
     *
     * @param c         the config
     * @param shortName one of {@link #SHORT_NAMES}
     * @return a new array: (d_model) for the norm, (d_model, H·D) for wq, (d_model, Hkv·D) for wk and wv, (H·D,
     *         d_model) for wo
     * @throws IllegalArgumentException for another name (the router's shape is {@link #expectedRouterShape})
     */
    public static long[] expectedShape(ModelConfig c, String shortName) {
        long hd = (long) c.heads() * c.headDim();
        long kvd = (long) c.kvHeads() * c.headDim();
        return switch (shortName) {
            case ATTN_NORM -> new long[] {c.dModel()};
            case WQ -> new long[] {c.dModel(), hd};
            case WK, WV -> new long[] {c.dModel(), kvd};
            case WO -> new long[] {hd, c.dModel()};
            default -> throw new IllegalArgumentException("no weight '" + shortName + "'");
        };
    }

    /**
     * {@return the shape of layer {@code layer}'s router weights (d_model, Hr), or null for an unrouted layer}
     *
     * @param c     the config
     * @param layer the layer, in [0, layers)
     */
    public static long[] expectedRouterShape(ModelConfig c, int layer) {
        LayerSpec s = c.layer(layer);
        return s.routed() ? new long[] {c.dModel(), s.router().routedHeads()} : null;
    }

    /**
     * {@return the short names layer {@code layer} holds: {@link #SHORT_NAMES}, plus the router for a routed layer}
     * The list is unmodifiable.
     *
     * @param c     the config
     * @param layer the layer, in [0, layers)
     */
    public static List<String> shortNames(ModelConfig c, int layer) {
        if (!c.layer(layer).routed()) {
            return SHORT_NAMES;
        }
        List<String> l = new ArrayList<>(SHORT_NAMES);
        l.add(ROUTER);
        return List.copyOf(l);
    }

    private static long[] shapeOf(ModelConfig c, int layer, String shortName) {
        return ROUTER.equals(shortName) ? expectedRouterShape(c, layer) : expectedShape(c, shortName);
    }

    /**
     * Weights checked against {@code config}: every tensor present with the expected shape and the
     * config's dtype, and no other tensor. Errors name the tensor, what was expected and what was found.
     * Values must also be finite.
     *
     * @param config  the config to check against
     * @param tensors full name → tensor (e.g. a safetensors file's tensors); not changed
     * @return the weights, holding the given tensors (not copies)
     * @throws ModelException for a missing, misshapen, wrongly typed, non-finite or unexpected tensor
     */
    public static ModelWeights of(ModelConfig config, Map<String, Tensor> tensors) {
        Map<String, Tensor> left = new LinkedHashMap<>(tensors);
        List<LayerWeights> ls = new ArrayList<>();
        for (int i = 0; i < config.layerCount(); i++) {
            List<String> names = shortNames(config, i);
            Tensor[] t = new Tensor[SHORT_NAMES.size() + 1];
            for (int k = 0; k < names.size(); k++) {
                String sn = names.get(k);
                String n = name(i, sn);
                long[] shape = shapeOf(config, i, sn);
                Tensor x = left.remove(n);
                String expected = config.dtype().cliName() + " " + shapeString(shape);
                if (x == null) {
                    throw new ModelException("missing tensor " + n + " (expected " + expected + ")");
                }
                if (x.dtype() != config.dtype() || !Arrays.equals(x.shape(), shape)) {
                    throw new ModelException("tensor " + n + ": expected " + expected + ", found " + x.dtype().cliName() + " "
                            + x.shapeString());
                }
                try {
                    x.requireFinite("tensor " + n, config.dtype());
                } catch (IllegalArgumentException e) {
                    throw new ModelException(e.getMessage());
                }
                t[k] = x;
            }
            ls.add(new LayerWeights(t[0], t[1], t[2], t[3], t[4], t[5]));
        }
        if (!left.isEmpty()) {
            String extra = left.keySet().iterator().next();
            String why = " for a model of " + config.layerCount() + " layer(s)";
            for (int i = 0; i < config.layerCount(); i++) {
                if (extra.equals(name(i, ROUTER))) {
                    why = ": layer " + i + " is not routed";
                }
            }
            throw new ModelException("unexpected tensor " + extra + why
                    + (left.size() > 1 ? " (and " + (left.size() - 1) + " more)" : ""));
        }
        return new ModelWeights(config, ls);
    }

    /**
     * Random weights, the same for a seed on every machine: γ = 1, and every matrix element drawn from
     * a normal distribution with standard deviation 1/√fan_in (fan_in = d_model for wq, wk, wv; H·D for
     * wo), so projections keep the activations' scale. Matrix m of layer i (m = 0 … 3 for wq, wk, wv,
     * wo) draws its elements in row-major order from {@code java.util.Random(seed + 1000003·(4·i + m))}
     * with {@code nextGaussian()}, then rounds them to the dtype. A routed layer's router weights Wr
     * (standard deviation 1/√d_model) come from {@code java.util.Random(seed − 1000003·(i + 1))}: negative
     * offsets, so they never share a generator with a projection matrix.
     *
     * @param config the config; its dtype is the weights'
     * @param seed   the seed
     * @return the weights
     */
    public static ModelWeights random(ModelConfig config, long seed) {
        List<LayerWeights> ls = new ArrayList<>();
        for (int i = 0; i < config.layerCount(); i++) {
            Tensor[] t = new Tensor[SHORT_NAMES.size()];
            float[] gamma = new float[config.dModel()];
            Arrays.fill(gamma, 1f);
            t[0] = Tensor.ofFloats(config.dtype(), gamma, config.dModel());
            for (int m = 0; m < 4; m++) {
                long[] shape = expectedShape(config, SHORT_NAMES.get(m + 1));
                double std = 1.0 / Math.sqrt(shape[0]);
                float[] v = gaussian(seed + 1000003L * (4L * i + m), shape, std);
                t[m + 1] = Tensor.ofFloats(config.dtype(), v, shape);
            }
            Tensor router = null;
            long[] rs = expectedRouterShape(config, i);
            if (rs != null) {
                router = Tensor.ofFloats(config.dtype(), gaussian(seed - 1000003L * (i + 1), rs, 1.0 / Math.sqrt(rs[0])), rs);
            }
            ls.add(new LayerWeights(t[0], t[1], t[2], t[3], t[4], router));
        }
        return new ModelWeights(config, ls);
    }

    private static float[] gaussian(long seed, long[] shape, double std) {
        Random r = new Random(seed);
        float[] v = new float[Math.toIntExact(Tensor.numel(shape))];
        for (int e = 0; e < v.length; e++) {
            v[e] = (float) (r.nextGaussian() * std);
        }
        return v;
    }

    /**
     * Reads weights and checks them against {@code config} (the file's stored config is not consulted).
     *
     * @param file   a safetensors file
     * @param config the config the weights must fit
     * @return the weights, read-only views of the file's memory map
     * @throws io.headroute.tensor.TensorFileException when the file cannot be read
     * @throws ModelException                          when the tensors do not fit {@code config}
     */
    public static ModelWeights load(Path file, ModelConfig config) {
        return of(config, Safetensors.read(file).tensors());
    }

    /**
     * Reads weights together with the config stored in the file's metadata.
     *
     * @param file a safetensors file written by {@link #save}
     * @return the weights and their config
     * @throws io.headroute.tensor.TensorFileException when the file cannot be read
     * @throws ModelException                          when the file holds no config, or the tensors do not fit it
     */
    public static ModelWeights load(Path file) {
        SafetensorsFile f = Safetensors.read(file);
        String json = f.metadata().get(ModelConfig.METADATA_KEY);
        if (json == null) {
            throw new ModelException(file + " holds no model config (no '" + ModelConfig.METADATA_KEY
                    + "' metadata); give the config explicitly");
        }
        return of(ModelConfig.fromJson(json), f.tensors());
    }

    /**
     * Writes every tensor, and the config as JSON metadata, atomically.
     *
     * @param file the safetensors file to write; metadata "producer" = "headroute" and {@link ModelConfig#METADATA_KEY}
     * @throws io.headroute.tensor.TensorFileException when the file cannot be written
     */
    public void save(Path file) {
        Map<String, Tensor> out = asMap();
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("producer", "headroute");
        meta.put(ModelConfig.METADATA_KEY, config.toJson());
        Safetensors.write(file, out, meta);
    }

    /**
     * {@return the same weights under another config of the same shapes} (e.g. a new pruning plan or patterns).
     *
     * @param other the config; its dtype and shapes must match the weights
     * @throws ModelException when the weights do not fit {@code other}
     */
    public ModelWeights withConfig(ModelConfig other) {
        return of(other, asMap());
    }

    /**
     * {@return these weights rounded to {@code dtype}, with the config's dtype changed to match}
     *
     * @param dtype f32, f16 or bf16
     */
    public ModelWeights toDType(DType dtype) {
        List<LayerWeights> ls = new ArrayList<>();
        for (LayerWeights w : layers) {
            ls.add(new LayerWeights(w.attnNorm().toDType(dtype), w.wq().toDType(dtype), w.wk().toDType(dtype),
                    w.wv().toDType(dtype), w.wo().toDType(dtype), w.router() == null ? null : w.router().toDType(dtype)));
        }
        return new ModelWeights(config.withDType(dtype), ls);
    }

    /** {@return every tensor by full name, layer by layer in file order; a new mutable map} */
    public Map<String, Tensor> asMap() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (int i = 0; i < layers.size(); i++) {
            for (String sn : shortNames(config, i)) {
                out.put(name(i, sn), layers.get(i).get(sn));
            }
        }
        return out;
    }

    /** {@return the config the weights were checked against} */
    public ModelConfig config() {
        return config;
    }

    /**
     * {@return layer i's weights}
     *
     * @param i the layer, in [0, layers)
     */
    public LayerWeights layer(int i) {
        return layers.get(i);
    }

    /** {@return the bytes of all weights, pruned heads included} */
    public long byteSize() {
        long n = 0;
        for (Tensor t : asMap().values()) {
            n += t.byteSize();
        }
        return n;
    }

    private static String shapeString(long[] s) {
        StringBuilder sb = new StringBuilder("(");
        for (int i = 0; i < s.length; i++) {
            sb.append(i > 0 ? ", " : "").append(s[i]);
        }
        return sb.append(')').toString();
    }
}
