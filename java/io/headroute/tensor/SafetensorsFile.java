package io.headroute.tensor;

import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The contents of a {@code .safetensors} file: tensors by name in file order, and the string metadata
 * from its {@code __metadata__} entry (empty when there is none).
 *
 * @param file the file the tensors came from, used in error messages
 * @param tensors tensors by name, in the order the file lists them (unmodifiable)
 * @param metadata the {@code __metadata__} entries (unmodifiable, possibly empty)
 */
public record SafetensorsFile(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) {
    /**
     * Copies both maps, keeping their iteration order.
     *
     * @param file     the file the tensors came from; not null
     * @param tensors  tensors by name; copied
     * @param metadata metadata entries; copied
     */
    public SafetensorsFile {
        Objects.requireNonNull(file, "file");
        tensors = Collections.unmodifiableMap(new LinkedHashMap<>(tensors));
        metadata = Collections.unmodifiableMap(new LinkedHashMap<>(metadata));
    }

    /**
     * The tensor called {@code name}; if there is none, the error lists the names there are.
     *
     * @param name the tensor's name in the file
     * @return the tensor
     * @throws TensorFileException naming the file when there is no such tensor
     */
    public Tensor tensor(String name) {
        Tensor t = tensors.get(name);
        if (t == null) {
            throw new TensorFileException(file, "no tensor named '" + name + "'; available: " + describeNames());
        }
        return t;
    }

    /** {@return the tensor names in file order, an unmodifiable copy} */
    public List<String> names() {
        return List.copyOf(tensors.keySet());
    }

    /** The names for an error message, cut short for files with thousands of tensors. */
    String describeNames() {
        if (tensors.isEmpty()) {
            return "none (the file holds no tensors)";
        }
        int limit = 20;
        StringBuilder sb = new StringBuilder();
        int i = 0;
        for (String n : tensors.keySet()) {
            if (i == limit) {
                sb.append(", ... (").append(tensors.size() - limit).append(" more)");
                break;
            }
            if (i++ > 0) {
                sb.append(", ");
            }
            sb.append(n);
        }
        return sb.toString();
    }
}
