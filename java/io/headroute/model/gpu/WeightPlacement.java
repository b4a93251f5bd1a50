package io.headroute.model.gpu;

import java.util.Locale;

/** Where a GPU model keeps its layer weights. */
public enum WeightPlacement {
    /** Every layer's weights stay in device memory. */
    RESIDENT,
    /**
     * Weights stay in pinned host memory; each layer's are uploaded on a second stream while the
     * previous layer computes, into one of two device slots (at most two layers' weights on the device).
     */
    JUST_IN_TIME;

    /** {@return the command line's name: "resident" or "jit"} */
    public String cliName() {
        return this == RESIDENT ? "resident" : "jit";
    }

    /**
     * Parses "resident", "jit" or "just-in-time" (case-insensitive, surrounding blanks ignored).
     *
     * @param s the name; not null
     * @return the placement
     * @throws IllegalArgumentException for any other name
     */
    public static WeightPlacement parse(String s) {
        return switch (s.trim().toLowerCase(Locale.ROOT)) {
            case "resident" -> RESIDENT;
            case "jit", "just-in-time" -> JUST_IN_TIME;
            default -> throw new IllegalArgumentException("unknown weight placement '" + s + "' (expected resident or jit)");
        };
    }
}
