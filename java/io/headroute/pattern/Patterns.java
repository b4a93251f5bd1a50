package io.headroute.pattern;

import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import io.headroute.tensor.TensorFiles;
import java.nio.file.Path;

/** Parses pattern specs: the grammar of {@code --pattern}. */
public final class Patterns {
    /** The grammar, for error messages and help. */
    public static final String GRAMMAR =
            "dense, causal, window:W, longformer:W:G, bigbird:BS:W:G:R:SEED, layout:BS:FILE";

    private Patterns() {}

    /**
     * Parses a spec; layout files are read from disk. Throws {@link PatternException} on bad input.
     *
     * @param spec one of {@link #GRAMMAR}; fields may be surrounded by blanks
     * @return the pattern (without the causal rule: that is {@link Pattern#withCausal()})
     * @throws PatternException for a null, empty or malformed spec, or a layout file of the wrong shape or dtype
     * @throws io.headroute.tensor.TensorFileException when a layout file cannot be read
     */
    public static Pattern parse(String spec) {
        if (spec == null || spec.isBlank()) {
            throw new PatternException("empty pattern spec (expected one of " + GRAMMAR + ")");
        }
        String s = spec.trim();
        String[] parts = s.split(":", -1);
        String kind = parts[0];
        switch (kind) {
            case "dense" -> {
                arity(s, parts, 1);
                return new Pattern.Dense();
            }
            case "causal" -> {
                arity(s, parts, 1);
                return new Pattern.Causal();
            }
            case "window" -> {
                arity(s, parts, 2);
                return new Pattern.Window(nonNegative(s, "W", parts[1]));
            }
            case "longformer" -> {
                arity(s, parts, 3);
                return new Pattern.Longformer(nonNegative(s, "W", parts[1]), nonNegative(s, "G", parts[2]));
            }
            case "bigbird" -> {
                arity(s, parts, 6);
                int bs = positive(s, "BS", parts[1]);
                long seed;
                try {
                    seed = Long.parseLong(parts[5].trim()); // trimmed like the other fields
                } catch (NumberFormatException e) {
                    throw new PatternException("pattern " + quote(s) + ": SEED must be a decimal integer from " + Long.MIN_VALUE
                            + " to " + Long.MAX_VALUE + ", got " + quote(parts[5]));
                }
                return new Pattern.BigBird(bs, nonNegative(s, "W", parts[2]), nonNegative(s, "G", parts[3]),
                        nonNegative(s, "R", parts[4]), seed);
            }
            case "layout" -> {
                int colon = s.indexOf(':', "layout:".length());
                if (parts.length < 3 || colon < 0 || colon == s.length() - 1) {
                    throw new PatternException("pattern " + quote(s) + ": expected layout:BS:FILE");
                }
                int bs = positive(s, "BS", s.substring("layout:".length(), colon));
                return layout(bs, Path.of(s.substring(colon + 1)));
            }
            default -> throw new PatternException("unknown pattern " + quote(s) + " (expected one of " + GRAMMAR + ")");
        }
    }

    /**
     * Reads a block layout file: bool or integer, shape (1 or H, n, n).
     *
     * @param bs   BS, the tokens per block, positive
     * @param file a tensor file (.npy or safetensors, see {@link TensorFiles#read}); a non-zero entry
     *             [h, qb, kb] lets query block qb of head h attend key block kb
     * @return the layout pattern, its source the file's path
     * @throws PatternException    when the file is not a rank-3 (1 or H, n, n) bool or integer array
     * @throws io.headroute.tensor.TensorFileException when the file cannot be read
     */
    public static Pattern.Layout layout(int bs, Path file) {
        Tensor t = TensorFiles.read(file);
        if (t.rank() != 3 || t.dim(1) != t.dim(2) || t.dim(0) < 1 || t.dim(1) < 1) {
            throw new PatternException("layout " + file + ": expected shape (1 or H, n, n), got " + t.shapeString());
        }
        if (t.dtype() == DType.F32 || t.dtype() == DType.F16 || t.dtype() == DType.BF16) {
            throw new PatternException("layout " + file + ": expected a bool or integer array, got " + t.dtype().cliName());
        }
        return new Pattern.Layout(bs, (int) t.dim(0), (int) t.dim(1), t.toBooleanArray(), file.toString());
    }

    /**
     * The text as it may appear inside a one-line message.
     *
     * @param text a user's text (a spec, an option's value)
     * @return the text in single quotes, line breaks, tabs and other control characters escaped
     */
    public static String quote(String text) {
        StringBuilder sb = new StringBuilder(text.length() + 2).append('\'');
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c == '\n') {
                sb.append("\\n");
            } else if (c == '\r') {
                sb.append("\\r");
            } else if (c == '\t') {
                sb.append("\\t");
            } else if (Character.isISOControl(c)) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.append('\'').toString();
    }

    private static void arity(String spec, String[] parts, int n) {
        if (parts.length != n) {
            String expected = switch (parts[0]) {
                case "window" -> "window:W";
                case "longformer" -> "longformer:W:G";
                case "bigbird" -> "bigbird:BS:W:G:R:SEED";
                default -> parts[0];
            };
            throw new PatternException("pattern " + quote(spec) + ": expected " + expected);
        }
    }

    private static int nonNegative(String spec, String name, String value) {
        int v = integer(spec, name, value);
        if (v < 0) {
            throw new PatternException("pattern " + quote(spec) + ": " + name + " must be >= 0, got " + v);
        }
        return v;
    }

    private static int positive(String spec, String name, String value) {
        int v = integer(spec, name, value);
        if (v <= 0) {
            throw new PatternException("pattern " + quote(spec) + ": " + name + " must be > 0, got " + v);
        }
        return v;
    }

    private static int integer(String spec, String name, String value) {
        try {
            return Integer.parseInt(value.trim());
        } catch (NumberFormatException e) {
            boolean digits = value.trim().matches("[+-]?\\d+");
            throw new PatternException("pattern " + quote(spec) + ": " + name + " must be an integer"
                    + (digits ? " of at most " + Integer.MAX_VALUE + " in magnitude" : "") + ", got " + quote(value));
        }
    }
}
