package io.headroute.tensor;

import java.util.Locale;

/** Element types headroute reads, writes and computes with. */
public enum DType {
    /** IEEE binary32, 4 bytes; a compute dtype. */
    F32(4, true),
    /** IEEE binary16 (half), 2 bytes; a compute dtype. */
    F16(2, true),
    /** bfloat16 (the upper half of a binary32), 2 bytes; a compute dtype. */
    BF16(2, true),
    /** Signed 32-bit integer, 4 bytes; read and written only. */
    I32(4, false),
    /** Signed 64-bit integer, 8 bytes; read and written only. */
    I64(8, false),
    /** Unsigned 8-bit integer, 1 byte (block layouts, masks); read and written only. */
    U8(1, false),
    /** Boolean, 1 byte (0 or 1); read and written only. */
    BOOL(1, false);

    private final int byteSize;
    private final boolean floating;

    DType(int byteSize, boolean floating) {
        this.byteSize = byteSize;
        this.floating = floating;
    }

    /** {@return the bytes per element: 1, 2, 4 or 8} */
    public int byteSize() {
        return byteSize;
    }

    /** {@return whether this is a floating dtype (f32, f16, bf16), the only ones attention computes in} */
    public boolean isFloating() {
        return floating;
    }

    /** {@return the lower-case name used on the command line and in reports (f32, f16, bf16, i32, ...)} */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * The relative L2 error a computed output of this dtype may have against an exact one (or one from equally
     * rounded inputs): 1e-5 in f32, 2e-3 in f16, 1e-2 in bf16 — the project's tolerances by dtype, for the GPU tests,
     * the bench's checks and the device check's compare step alike.
     *
     * @return the relative L2 tolerance
     * @throws IllegalArgumentException for a dtype that is not floating
     */
    public double tolerance() {
        return switch (this) {
            case F32 -> 1e-5;
            case F16 -> 2e-3;
            case BF16 -> 1e-2;
            default -> throw new IllegalArgumentException(cliName() + " is not a compute dtype");
        };
    }

    /**
     * Parses a command-line dtype name (case-insensitive: f32, f16, bf16, ...).
     *
     * @param name a {@link #cliName()}, surrounding blanks ignored; not null
     * @return the dtype named
     * @throws IllegalArgumentException for any other name
     */
    public static DType parse(String name) {
        for (DType t : values()) {
            if (t.cliName().equalsIgnoreCase(name.trim())) {
                return t;
            }
        }
        throw new IllegalArgumentException("unknown dtype '" + name + "' (expected one of f32, f16, bf16, i32, i64, u8, bool)");
    }
}
