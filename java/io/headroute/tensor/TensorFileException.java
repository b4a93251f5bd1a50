package io.headroute.tensor;

import java.nio.file.Path;
import java.util.Objects;

/**
 * A tensor file could not be read or written. The message is one line, {@code "<path>: <problem>"}
 * ({@code "empty path: <problem>"} for an empty path), fit to show a user as is.
 */
public class TensorFileException extends RuntimeException {
    private final transient Path file;

    /** A failure with {@code problem} (one line) in {@code file}. */
    public TensorFileException(Path file, String problem) {
        super(format(file, problem));
        this.file = file;
    }

    /** A failure with {@code problem} (one line) in {@code file}, caused by {@code cause}. */
    public TensorFileException(Path file, String problem, Throwable cause) {
        super(format(file, problem), cause);
        this.file = file;
    }

    /** The file the problem is about. */
    public Path file() {
        return file;
    }

    private static String format(Path file, String problem) {
        Objects.requireNonNull(file, "file");
        // An empty path (e.g. --out "") would make the message start with ": ".
        String where = file.toString().isEmpty() ? "empty path" : file.toString();
        // Problems may quote a library's message, which can span lines; the contract is one line.
        return where + ": " + String.valueOf(problem).replaceAll("\\s*\\R\\s*", " ").strip();
    }
}
