package io.headroute.attention;

import java.util.Locale;

/** Where attention runs: {@code auto} picks the GPU when one is usable, else the CPU. */
public enum Backend {
    AUTO,
    CPU,
    CUDA;

    public String cliName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** Parses {@code auto}, {@code cpu} or {@code cuda} (case-insensitive). */
    public static Backend parse(String s) {
        for (Backend b : values()) {
            if (b.cliName().equalsIgnoreCase(s.trim())) {
                return b;
            }
        }
        throw new IllegalArgumentException("unknown backend '" + s + "' (expected auto, cpu or cuda)");
    }
}
