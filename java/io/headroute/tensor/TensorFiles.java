package io.headroute.tensor;

import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/** Reads and writes tensor files, choosing {@link Npy} or {@link Safetensors} by file extension. */
public final class TensorFiles {
    private TensorFiles() {}

    private enum Format { NPY, SAFETENSORS }

    /**
     * All tensors in {@code file}, in file order. A {@code .npy} file gives one tensor named after the
     * file without its extension ({@code q.npy} → {@code q}).
     *
     * @param file a {@code .npy} or {@code .safetensors} file (extension case-insensitive)
     * @return an unmodifiable map of name → tensor
     * @throws TensorFileException for another extension, or when the file cannot be read
     */
    public static Map<String, Tensor> readAll(Path file) {
        return switch (format(file)) {
            case NPY -> {
                Map<String, Tensor> one = new LinkedHashMap<>();
                one.put(stem(file), Npy.read(file));
                yield Collections.unmodifiableMap(one);
            }
            case SAFETENSORS -> Safetensors.read(file).tensors();
        };
    }

    /**
     * The single tensor in {@code file}; a {@code .safetensors} file must hold exactly one.
     *
     * @param file a {@code .npy} or {@code .safetensors} file
     * @return the tensor
     * @throws TensorFileException for another extension, a safetensors file with no or several tensors, or when
     *                             the file cannot be read
     */
    public static Tensor read(Path file) {
        return switch (format(file)) {
            case NPY -> Npy.read(file);
            case SAFETENSORS -> {
                SafetensorsFile f = Safetensors.read(file);
                if (f.tensors().size() != 1) {
                    throw new TensorFileException(file, "expected exactly one tensor, found " + f.tensors().size()
                            + (f.tensors().isEmpty() ? "" : " (" + f.describeNames() + ")"));
                }
                yield f.tensors().values().iterator().next();
            }
        };
    }

    /**
     * Writes one tensor, atomically; in a {@code .safetensors} file it is named after the file without
     * its extension.
     *
     * @param file   a {@code .npy} or {@code .safetensors} path
     * @param tensor the tensor (a {@code .npy} file refuses bf16)
     * @throws TensorFileException for another extension, or when the file cannot be written
     */
    public static void write(Path file, Tensor tensor) {
        switch (format(file)) {
            case NPY -> Npy.write(file, tensor);
            case SAFETENSORS -> Safetensors.write(file, Map.of(stem(file), tensor), Map.of());
        }
    }

    private static Format format(Path file) {
        if (file.toString().isEmpty()) {
            throw new TensorFileException(file, "expected a .npy or .safetensors file");
        }
        String name = fileName(file).toLowerCase(Locale.ROOT);
        if (name.endsWith(".npy")) {
            return Format.NPY;
        }
        if (name.endsWith(".safetensors")) {
            return Format.SAFETENSORS;
        }
        throw new TensorFileException(file, "unknown tensor file extension; expected .npy or .safetensors");
    }

    private static String fileName(Path file) {
        Path name = file.getFileName();
        return name == null ? "" : name.toString();
    }

    private static String stem(Path file) {
        String name = fileName(file);
        int dot = name.lastIndexOf('.');
        return dot > 0 ? name.substring(0, dot) : name;
    }
}
