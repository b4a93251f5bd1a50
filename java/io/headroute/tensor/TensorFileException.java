package io.headroute.tensor;

import java.nio.file.Path;
import java.util.Objects;

/**
 * A tensor file could not be read or written. The message is one line, {@code "<path>: <problem>"}
 * ({@code "empty path: <problem>"} for an empty path), fit to show a user as is.
 */
public class TensorFileException extends RuntimeException {
    private final transient Path file;

    /**
     * A failure with {@code problem} (one line) in {@code file}.
     *
     * @param file    the file; not null (an empty path reads "empty path" in the message)
     * @param problem what went wrong; line breaks are folded into spaces
     */
    public TensorFileException(Path file, String problem) {
        super(format(file, problem));
        this.file = file;
    }

    /**
     * A failure with {@code problem} (one line) in {@code file}, caused by {@code cause}.
     *
     * @param file    the file; not null
     * @param problem what went wrong; line breaks are folded into spaces
     * @param cause   the underlying failure
     */
    public TensorFileException(Path file, String problem, Throwable cause) {
        super(format(file, problem), cause);
        this.file = file;
    }

    /** {@return the file the problem is about}, or null after deserialization (the path is not serialized). */
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
