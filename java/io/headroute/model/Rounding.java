package io.headroute.model;

import io.headroute.tensor.DType;
import io.headroute.tensor.HalfFloats;

/** Rounding of float32 results to a model's storage dtype (nearest even; nothing for f32). */
enum Rounding {
    F32, F16, BF16;

    static Rounding of(DType d) {
        return switch (d) {
            case F32 -> F32;
            case F16 -> F16;
            case BF16 -> BF16;
            default -> throw new IllegalArgumentException("no rounding to " + d.cliName());
        };
    }

    float apply(float x) {
        return switch (this) {
            case F32 -> x;
            case F16 -> HalfFloats.roundToF16(x);
            case BF16 -> HalfFloats.roundToBf16(x);
        };
    }

    void applyAll(float[] a) {
        if (this != F32) {
            for (int i = 0; i < a.length; i++) {
                a[i] = apply(a[i]);
            }
        }
    }
}
