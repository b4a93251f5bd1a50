package io.headroute.attention;

import java.util.Locale;

/** Where attention runs: {@code auto} picks the GPU when one is usable, else the CPU. */
public enum Backend {
    /**
     * The GPU when one is usable ({@link Backends#cudaUnavailableReason()} is null), else the CPU;
     * {@link Backends#open} then sends a call the GPU refuses up front (a pattern, head dim or algorithm it lacks) to
     * the CPU engine.
     */
    AUTO,
    /** The pure-Java CPU engine. */
    CPU,
    /** The CUDA engine on GPU 0; opening fails with {@link BackendUnavailableException} where it cannot run. */
    CUDA;

    /** {@return the lower-case name the command line and {@link #parse} use: {@code auto}, {@code cpu} or {@code cuda}} */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * Parses {@code auto}, {@code cpu} or {@code cuda} (case-insensitive, surrounding blanks ignored).
     *
     * @param s the name; not null
     * @return the backend named
     * @throws IllegalArgumentException for any other name
     */
    public static Backend parse(String s) {
        for (Backend b : values()) {
            if (b.cliName().equalsIgnoreCase(s.trim())) {
                return b;
            }
        }
        throw new IllegalArgumentException("unknown backend '" + s + "' (expected auto, cpu or cuda)");
    }
}
