package io.headroute.experiment;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionShape;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.PatternException;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;

/**
 * One way of computing attention that an experiment compares: an algorithm and the pattern it runs.
 * Sealed, and what differs between kinds is an abstract method (the memory prediction), so a new kind
 * (routed heads, pruned plans) is one new record here that the compiler makes complete, plus its case
 * in {@link #parse}.
 *
 * <p>Grammar ({@link #GRAMMAR}): {@code materialized[:PATTERN]}, {@code flash[:PATTERN]},
 * {@code sparse:PATTERN}; PATTERN is any {@code --pattern} spec (e.g. {@code window:256},
 * {@code bigbird:64:1:1:2:7}). The sweep's {@code --causal} is added to every variant's pattern.
 */
public sealed interface Variant permits Variant.Materialized, Variant.Flash, Variant.Sparse {
    /** The variant grammar, for help and error messages. */
    String GRAMMAR = "materialized[:PATTERN], flash[:PATTERN], sparse:PATTERN (PATTERN: " + Patterns.GRAMMAR + ")";

    /** The spec in canonical form, as it appears in reports. */
    String spec();

    /** The algorithm requested from the engine. */
    Algorithm algorithm();

    /** The pattern before the sweep's causal rule. */
    Pattern pattern();

    /** The GPU peak predicted from the memory plans for one call; {@code causal} is the sweep's rule. */
    MemoryPrediction predictMemory(AttentionShape shape, DType dtype, boolean causal);

    /** Whether the variant computes every query-key pair of the (causal) reference: dense or causal pattern. */
    default boolean full() {
        return pattern() instanceof Pattern.Dense || pattern() instanceof Pattern.Causal;
    }

    /** The standard algorithm: the whole L × S score matrix. */
    record Materialized(Pattern pattern) implements Variant {
        @Override
        public String spec() {
            return pattern.isDense() ? "materialized" : "materialized:" + pattern.spec();
        }

        @Override
        public Algorithm algorithm() {
            return Algorithm.MATERIALIZED;
        }

        @Override
        public MemoryPrediction predictMemory(AttentionShape shape, DType dtype, boolean causal) {
            return MemoryPrediction.materialized(shape, dtype);
        }
    }

    /** The fused online-softmax algorithm, no L × S buffer. */
    record Flash(Pattern pattern) implements Variant {
        @Override
        public String spec() {
            return pattern.isDense() ? "flash" : "flash:" + pattern.spec();
        }

        @Override
        public Algorithm algorithm() {
            return Algorithm.FLASH;
        }

        @Override
        public MemoryPrediction predictMemory(AttentionShape shape, DType dtype, boolean causal) {
            return MemoryPrediction.flash(shape, dtype);
        }
    }

    /** The block-sparse algorithm: only the key blocks the pattern's layout lists. */
    record Sparse(Pattern pattern) implements Variant {
        @Override
        public String spec() {
            return "sparse:" + pattern.spec();
        }

        @Override
        public Algorithm algorithm() {
            return Algorithm.SPARSE;
        }

        @Override
        public MemoryPrediction predictMemory(AttentionShape shape, DType dtype, boolean causal) {
            return MemoryPrediction.sparse(shape, dtype, causal ? pattern.withCausal() : pattern);
        }
    }

    /** Parses one variant; throws {@link IllegalArgumentException} with a one-line message. */
    static Variant parse(String text) {
        String s = text == null ? "" : text.strip();
        int colon = s.indexOf(':');
        String kind = colon < 0 ? s : s.substring(0, colon);
        String rest = colon < 0 ? null : s.substring(colon + 1);
        if (rest != null && rest.isBlank()) {
            throw new IllegalArgumentException("variant '" + s + "': a pattern is expected after '" + kind + ":'");
        }
        try {
            return switch (kind) {
                case "materialized" -> new Materialized(rest == null ? new Pattern.Dense() : Patterns.parse(rest));
                case "flash" -> new Flash(rest == null ? new Pattern.Dense() : Patterns.parse(rest));
                case "sparse" -> {
                    if (rest == null) {
                        throw new IllegalArgumentException("variant 'sparse' needs a pattern, e.g. sparse:window:256");
                    }
                    yield new Sparse(Patterns.parse(rest));
                }
                default -> throw new IllegalArgumentException("unknown variant '" + s + "' (expected " + GRAMMAR + ")");
            };
        } catch (PatternException e) {
            throw new IllegalArgumentException("variant '" + s + "': " + e.getMessage(), e);
        }
    }
}
