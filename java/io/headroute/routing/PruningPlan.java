package io.headroute.routing;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.headroute.tensor.AtomicFiles;
import io.headroute.tensor.JsonProblem;
import io.headroute.tensor.TensorFileException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collection;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * Static head pruning: for a model of {@code layers} layers of {@code heads} heads each, the heads
 * removed from each layer (their projections and attention are not computed). Immutable and validated
 * on construction: layers and heads in range, no duplicates, at least one head left per layer. Saved
 * and loaded as JSON:
 * <pre>{"format": "headroute-pruning-plan", "version": 1, "layers": 12, "heads": 16,
 *  "removed": [{"layer": 0, "heads": [3, 5]}, {"layer": 7, "heads": [1]}]}</pre>
 * Layers without removed heads are omitted; heads are listed in increasing order.
 */
public final class PruningPlan {
    static final String FORMAT = "headroute-pruning-plan";
    static final int VERSION = 1;
    /** Duplicate keys are an error, not "the last one wins". */
    private static final ObjectMapper MAPPER =
            JsonMapper.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
                    .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS).build();

    private final int layers;
    private final int heads;
    private final TreeMap<Integer, int[]> removed;

    private PruningPlan(int layers, int heads, TreeMap<Integer, int[]> removed) {
        this.layers = layers;
        this.heads = heads;
        this.removed = removed;
    }

    /**
     * A plan removing {@code removed.get(layer)} from each listed layer; throws PruningPlanException when invalid.
     *
     * @param layers  the model's layers, at least 1
     * @param heads   the heads per layer, at least 1
     * @param removed layer → its removed heads (any order, no duplicates, not all of a layer's heads); layers
     *                absent or mapped to an empty collection lose nothing; copied
     * @return the validated plan
     * @throws PruningPlanException naming the layer or head that does not fit
     */
    public static PruningPlan of(int layers, int heads, Map<Integer, ? extends Collection<Integer>> removed) {
        checkSizes(layers, heads);
        TreeMap<Integer, int[]> m = new TreeMap<>();
        for (Map.Entry<Integer, ? extends Collection<Integer>> e : removed.entrySet()) {
            int layer = e.getKey();
            int[] hs = e.getValue().stream().mapToInt(Integer::intValue).toArray();
            m.put(layer, checkLayer(layers, heads, layer, hs));
        }
        m.values().removeIf(a -> a.length == 0);
        return new PruningPlan(layers, heads, m);
    }

    /**
     * {@return a plan that removes nothing}
     *
     * @param layers the model's layers, at least 1
     * @param heads  the heads per layer, at least 1
     * @throws PruningPlanException when a size is below 1
     */
    public static PruningPlan none(int layers, int heads) {
        return of(layers, heads, Map.of());
    }

    private static void checkSizes(int layers, int heads) {
        if (layers < 1) {
            throw new PruningPlanException("pruning plan: layers must be ≥ 1, got " + layers);
        }
        if (heads < 1) {
            throw new PruningPlanException("pruning plan: heads must be ≥ 1, got " + heads);
        }
    }

    private static int[] checkLayer(int layers, int heads, int layer, int[] hs) {
        if (layer < 0 || layer >= layers) {
            throw new PruningPlanException("pruning plan: unknown layer " + layer + " (the model has layers 0.." + (layers - 1) + ")");
        }
        int[] sorted = hs.clone();
        Arrays.sort(sorted);
        for (int i = 0; i < sorted.length; i++) {
            if (sorted[i] < 0 || sorted[i] >= heads) {
                throw new PruningPlanException("pruning plan: layer " + layer + ": head " + sorted[i]
                        + " is out of range (heads 0.." + (heads - 1) + ")");
            }
            if (i > 0 && sorted[i] == sorted[i - 1]) {
                throw new PruningPlanException("pruning plan: layer " + layer + ": head " + sorted[i] + " is listed twice");
            }
        }
        if (sorted.length == heads) {
            throw new PruningPlanException("pruning plan: layer " + layer + ": all " + heads
                    + " heads removed (at least one must remain)");
        }
        return sorted;
    }

    /** {@return the model's layers, at least 1} */
    public int layers() {
        return layers;
    }

    /** {@return the heads of every layer before pruning, at least 1} */
    public int heads() {
        return heads;
    }

    private void checkLayerIndex(int layer) {
        if (layer < 0 || layer >= layers) {
            throw new IndexOutOfBoundsException("layer " + layer + " of a pruning plan for " + layers + " layers");
        }
    }

    /**
     * {@return the removed heads of {@code layer}, increasing}; empty for a layer that loses none. A new array.
     *
     * @param layer the layer, in [0, {@link #layers()})
     * @throws IndexOutOfBoundsException for a layer outside that range
     */
    public int[] removedHeads(int layer) {
        checkLayerIndex(layer);
        return removed.getOrDefault(layer, new int[0]).clone();
    }

    /**
     * Which heads of {@code layer} remain active: {@code mask[h]} is false for a removed head.
     *
     * @param layer the layer, in [0, {@link #layers()})
     * @return a new mask of {@link #heads()} entries
     * @throws IndexOutOfBoundsException for a layer outside that range
     */
    public boolean[] headMask(int layer) {
        checkLayerIndex(layer);
        boolean[] mask = new boolean[heads];
        Arrays.fill(mask, true);
        for (int h : removed.getOrDefault(layer, new int[0])) {
            mask[h] = false;
        }
        return mask;
    }

    /**
     * {@return the heads left in {@code layer}, at least 1}
     *
     * @param layer the layer, in [0, {@link #layers()})
     * @throws IndexOutOfBoundsException for a layer outside that range
     */
    public int activeHeads(int layer) {
        return heads - removedHeads(layer).length;
    }

    /** {@return the removed heads over all layers × heads, in [0, 1)} */
    public double removedFraction() {
        long n = 0;
        for (int[] a : removed.values()) {
            n += a.length;
        }
        return n / ((double) layers * heads);
    }

    /** {@return the layers that lose at least one head, increasing, as an unmodifiable view} */
    public Set<Integer> prunedLayers() {
        return java.util.Collections.unmodifiableSet(removed.keySet());
    }

    /** {@return the plan as indented JSON (the format in the class comment), ending in a newline} */
    public String toJson() {
        ObjectNode root = MAPPER.createObjectNode();
        root.put("format", FORMAT);
        root.put("version", VERSION);
        root.put("layers", layers);
        root.put("heads", heads);
        ArrayNode arr = root.putArray("removed");
        for (Map.Entry<Integer, int[]> e : removed.entrySet()) {
            ObjectNode n = arr.addObject();
            n.put("layer", e.getKey());
            ArrayNode hs = n.putArray("heads");
            for (int h : e.getValue()) {
                hs.add(h);
            }
        }
        try {
            return MAPPER.writer().with(SerializationFeature.INDENT_OUTPUT).writeValueAsString(root) + "\n";
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * Writes the plan atomically, as {@link #toJson()} in UTF-8.
     *
     * @param file the target; an existing file is replaced only once the new one is complete
     * @throws TensorFileException when the file cannot be written
     */
    public void save(Path file) {
        byte[] bytes = toJson().getBytes(StandardCharsets.UTF_8);
        AtomicFiles.write(file, os -> os.write(bytes));
    }

    /**
     * Reads and validates a plan file; errors name the file.
     *
     * @param file a JSON plan in UTF-8
     * @return the validated plan
     * @throws TensorFileException  when the file is missing, unreadable or not UTF-8 text
     * @throws PruningPlanException when the JSON is malformed or the plan is invalid
     */
    public static PruningPlan load(Path file) {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new TensorFileException(file, "no such file");
        } catch (java.nio.charset.CharacterCodingException e) {
            throw new TensorFileException(file, "not a text file (a pruning plan is JSON in UTF-8)");
        } catch (IOException e) {
            throw new TensorFileException(file, "cannot read: " + e.getMessage());
        }
        try {
            return fromJson(text);
        } catch (PruningPlanException e) {
            throw new PruningPlanException(file + ": " + e.getMessage());
        }
    }

    /**
     * Parses and validates a plan: every field required, no unknown fields, integers only. Duplicate keys, trailing
     * tokens and a layer listed twice are refused.
     *
     * @param json the plan in the format of the class comment
     * @return the validated plan
     * @throws PruningPlanException with a one-line message for anything malformed or out of range
     */
    public static PruningPlan fromJson(String json) {
        JsonNode root;
        try {
            root = MAPPER.readTree(json);
        } catch (JsonProcessingException e) {
            throw new PruningPlanException("pruning plan: not valid JSON: " + JsonProblem.of(e));
        }
        if (root == null || !root.isObject()) {
            throw new PruningPlanException("pruning plan: expected a JSON object");
        }
        onlyFields(root, "pruning plan", "format", "version", "layers", "heads", "removed");
        JsonNode format = required(root, "format", "pruning plan");
        if (!format.isTextual() || !FORMAT.equals(format.asText())) {
            throw new PruningPlanException("pruning plan: \"format\" must be \"" + FORMAT + "\", got " + format);
        }
        int version = integer(root, "version", "pruning plan");
        if (version != VERSION) {
            throw new PruningPlanException("pruning plan: version " + version + " is not supported (expected " + VERSION + ")");
        }
        int layers = integer(root, "layers", "pruning plan");
        int heads = integer(root, "heads", "pruning plan");
        checkSizes(layers, heads);
        JsonNode rem = required(root, "removed", "pruning plan");
        if (!rem.isArray()) {
            throw new PruningPlanException("pruning plan: \"removed\" must be an array of {\"layer\", \"heads\"} objects");
        }
        TreeMap<Integer, int[]> m = new TreeMap<>();
        for (int i = 0; i < rem.size(); i++) {
            JsonNode e = rem.get(i);
            String where = "pruning plan: removed[" + i + "]";
            if (!e.isObject()) {
                throw new PruningPlanException(where + " must be an object {\"layer\": N, \"heads\": [...]}");
            }
            onlyFields(e, where, "layer", "heads");
            int layer = integer(e, "layer", where);
            JsonNode hs = required(e, "heads", where);
            if (!hs.isArray()) {
                throw new PruningPlanException(where + ": \"heads\" must be an array of head indices");
            }
            int[] a = new int[hs.size()];
            for (int j = 0; j < a.length; j++) {
                if (!hs.get(j).canConvertToInt() || !hs.get(j).isIntegralNumber()) {
                    throw new PruningPlanException(where + ": heads[" + j + "] must be an integer, got " + hs.get(j));
                }
                a[j] = hs.get(j).intValue();
            }
            int[] checked = checkLayer(layers, heads, layer, a);
            if (m.put(layer, checked) != null) {
                throw new PruningPlanException("pruning plan: layer " + layer + " is listed twice");
            }
        }
        m.values().removeIf(a -> a.length == 0);
        return new PruningPlan(layers, heads, m);
    }

    private static void onlyFields(JsonNode node, String where, String... allowed) {
        String problem = JsonProblem.unknownField(node, allowed);
        if (problem != null) {
            throw new PruningPlanException(where + ": " + problem);
        }
    }

    private static JsonNode required(JsonNode node, String field, String where) {
        JsonNode v = node.get(field);
        if (v == null || v.isNull()) {
            throw new PruningPlanException(where + ": missing \"" + field + "\"");
        }
        return v;
    }

    private static int integer(JsonNode node, String field, String where) {
        JsonNode v = required(node, field, where);
        if (!v.isIntegralNumber() || !v.canConvertToInt()) {
            throw new PruningPlanException(where + ": \"" + field + "\" must be an integer, got " + v);
        }
        return v.intValue();
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof PruningPlan p) || p.layers != layers || p.heads != heads || !p.removed.keySet().equals(removed.keySet())) {
            return false;
        }
        for (Map.Entry<Integer, int[]> e : removed.entrySet()) {
            if (!Arrays.equals(e.getValue(), p.removed.get(e.getKey()))) {
                return false;
            }
        }
        return true;
    }

    @Override
    public int hashCode() {
        int h = layers * 31 + heads;
        for (Map.Entry<Integer, int[]> e : removed.entrySet()) {
            h = h * 31 + e.getKey() * 17 + Arrays.hashCode(e.getValue());
        }
        return h;
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("PruningPlan[" + layers + " layers × " + heads + " heads");
        removed.forEach((l, a) -> sb.append(", layer ").append(l).append(" −").append(Arrays.toString(a)));
        return sb.append(']').toString();
    }
}
