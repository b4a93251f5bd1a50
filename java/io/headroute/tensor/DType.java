package io.headroute.tensor;

import java.util.Locale;

/** Element types headroute reads, writes and computes with. */
public enum DType {
    F32(4, true),
    F16(2, true),
    BF16(2, true),
    I32(4, false),
    I64(8, false),
    U8(1, false),
    BOOL(1, false);

    private final int byteSize;
    private final boolean floating;

    DType(int byteSize, boolean floating) {
        this.byteSize = byteSize;
        this.floating = floating;
    }

    /** Bytes per element. */
    public int byteSize() {
        return byteSize;
    }

    public boolean isFloating() {
        return floating;
    }

    /** Lower-case name used on the command line and in reports (f32, f16, bf16, i32, ...). */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * The relative L2 error a computed output of this dtype may have against an exact one (or one from equally
     * rounded inputs): 1e-5 in f32, 2e-3 in f16, 1e-2 in bf16 — the project's tolerances by dtype, for the GPU tests,
     * the bench's checks and the device check's compare step alike.
     */
    public double tolerance() {
        return switch (this) {
            case F32 -> 1e-5;
            case F16 -> 2e-3;
            case BF16 -> 1e-2;
            default -> throw new IllegalArgumentException(cliName() + " is not a compute dtype");
        };
    }

    /** Parses a command-line dtype name (case-insensitive: f32, f16, bf16, ...). */
    public static DType parse(String name) {
        for (DType t : values()) {
            if (t.cliName().equalsIgnoreCase(name.trim())) {
                return t;
            }
        }
        throw new IllegalArgumentException("unknown dtype '" + name + "' (expected one of f32, f16, bf16, i32, i64, u8, bool)");
    }
}
