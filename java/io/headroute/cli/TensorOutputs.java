package io.headroute.cli;

import io.headroute.tensor.Npy;
import io.headroute.tensor.Safetensors;
import io.headroute.tensor.Tensor;
import io.headroute.tensor.TensorFileException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;

/** Output files of the commands: checked before any work, written atomically after it. */
final class TensorOutputs {
    private TensorOutputs() {}

    static boolean isSafetensors(Path file) {
        Path name = file.getFileName();
        return name != null && name.toString().toLowerCase(Locale.ROOT).endsWith(".safetensors");
    }

    private static boolean isNpy(Path file) {
        Path name = file.getFileName();
        return name != null && name.toString().toLowerCase(Locale.ROOT).endsWith(".npy");
    }

    /** Fails now if {@code file} could not be written later: unknown extension, no such directory, a directory. */
    static void checkTensorTarget(Path file) {
        if (!isNpy(file) && !isSafetensors(file)) {
            throw new TensorFileException(file, "unknown tensor file extension; expected .npy or .safetensors");
        }
        checkTarget(file);
    }

    /** Fails now if the directory of {@code file} is missing or not writable, or if {@code file} is a directory. */
    static void checkTarget(Path file) {
        Path abs = file.toAbsolutePath();
        Path dir = abs.getParent();
        if (dir == null || !Files.isDirectory(dir)) {
            throw new TensorFileException(file, "cannot write: directory " + dir + " does not exist");
        }
        if (!Files.isWritable(dir)) {
            throw new TensorFileException(file, "cannot write: directory " + dir + " is not writable");
        }
        if (Files.isDirectory(abs)) {
            throw new TensorFileException(file, "cannot write: is a directory");
        }
    }

    /**
     * Writes one tensor atomically: a {@code .npy} file, or a {@code .safetensors} file holding it as
     * {@code name} with {@code metadata}.
     */
    static void write(Path file, String name, Tensor t, Map<String, String> metadata) {
        if (isSafetensors(file)) {
            Safetensors.write(file, Map.of(name, t), metadata);
        } else if (isNpy(file)) {
            Npy.write(file, t);
        } else {
            throw new TensorFileException(file, "unknown tensor file extension; expected .npy or .safetensors");
        }
    }

    /** Both paths name the same file (before either exists). */
    static boolean sameFile(Path a, Path b) {
        return a.toAbsolutePath().normalize().equals(b.toAbsolutePath().normalize());
    }
}
