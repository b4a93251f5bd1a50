package io.headroute.cli;

import io.headroute.pattern.Pattern;
import io.headroute.tensor.AtomicFiles;
import io.headroute.tensor.Npy;
import io.headroute.tensor.Safetensors;
import io.headroute.tensor.Tensor;
import io.headroute.tensor.TensorFileException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import picocli.CommandLine;
import picocli.CommandLine.ParameterException;

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
        if (file.toString().isEmpty()) {
            throw new TensorFileException(file, "expected a .npy or .safetensors file");
        }
        if (!isNpy(file) && !isSafetensors(file)) {
            throw new TensorFileException(file, "unknown tensor file extension; expected .npy or .safetensors");
        }
        checkTarget(file);
    }

    /**
     * Fails now if {@code file} could not be written later: its directory is missing (or a file) or does not take a new
     * file (tried: a temporary file is created there and deleted), or {@code file} is a directory.
     */
    static void checkTarget(Path file) {
        AtomicFiles.checkWritable(file);
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

    /**
     * Both paths name the same file: the same file where both exist (links included), else the same path once
     * links are followed (a link to a file not yet written names that file).
     */
    static boolean sameFile(Path a, Path b) {
        if (Files.exists(a) && Files.exists(b)) {
            try {
                return Files.isSameFile(a, b);
            } catch (IOException e) {
                // Not comparable as files: compared as paths below.
            }
        }
        return AtomicFiles.writtenPath(a).normalize().equals(AtomicFiles.writtenPath(b).normalize());
    }

    /**
     * Refuses, before any work, an output that names an input file or another output (each keyed by its option,
     * e.g. "--out"; null paths ignored): written after the work, it would replace the input, or the other output.
     */
    static void checkDistinct(CommandLine cl, Map<String, Path> outputs, Map<String, Path> inputs) {
        List<Map.Entry<String, Path>> outs = new ArrayList<>();
        for (Map.Entry<String, Path> o : outputs.entrySet()) {
            if (o.getValue() == null) {
                continue;
            }
            for (Map.Entry<String, Path> i : inputs.entrySet()) {
                if (i.getValue() != null && sameFile(o.getValue(), i.getValue())) {
                    throw new ParameterException(cl, o.getKey() + " names the input file of " + i.getKey() + ": " + o.getValue());
                }
            }
            for (Map.Entry<String, Path> earlier : outs) {
                if (sameFile(o.getValue(), earlier.getValue())) {
                    throw new ParameterException(cl, earlier.getKey() + " and " + o.getKey() + " name the same file: " + o.getValue());
                }
            }
            outs.add(o);
        }
    }

    /** The option → file map of {@link #checkDistinct}: name, path, name, path, ... (paths may be null). */
    static Map<String, Path> files(Object... namesAndPaths) {
        Map<String, Path> m = new LinkedHashMap<>();
        for (int i = 0; i < namesAndPaths.length; i += 2) {
            m.put((String) namesAndPaths[i], (Path) namesAndPaths[i + 1]);
        }
        return m;
    }

    /** The file a pattern reads (a layout file, possibly under --causal), or null. */
    static Path patternFile(Pattern p) {
        if (p instanceof Pattern.Layout l) {
            return Path.of(l.source());
        }
        return p instanceof Pattern.CausalOf c ? patternFile(c.inner()) : null;
    }
}
