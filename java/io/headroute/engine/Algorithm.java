package io.headroute.engine;

import java.util.Locale;

/** How attention is computed. */
public enum Algorithm {
    /** The engine picks (flash on every backend today). */
    AUTO,
    /** Scores, softmax and product in full: an L × S buffer per head (the standard algorithm). */
    MATERIALIZED,
    /** Tiled online softmax; never materializes scores; skips key blocks the pattern excludes. */
    FLASH,
    /** Block-sparse: only the pattern's listed key blocks are visited. */
    SPARSE;

    /**
     * {@return the lower-case name the command line, reports and {@link #parse} use: {@code auto},
     * {@code materialized}, {@code flash} or {@code sparse}}
     */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * Parses a {@link #cliName()} (case-insensitive, surrounding blanks ignored).
     *
     * @param s the name; not null
     * @return the algorithm named
     * @throws IllegalArgumentException for any other name
     */
    public static Algorithm parse(String s) {
        for (Algorithm a : values()) {
            if (a.cliName().equalsIgnoreCase(s.trim())) {
                return a;
            }
        }
        throw new IllegalArgumentException("unknown algorithm '" + s + "' (expected auto, materialized, flash or sparse)");
    }
}
