package io.headroute.engine.cpu;

import io.headroute.tensor.DType;
import io.headroute.tensor.HalfFloats;
import io.headroute.tensor.Tensor;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;

/**
 * Rows of D elements of a floating tensor, read straight from its bytes as floats rounded to the request's
 * dtype (as {@link Tensor#toFloatArray} followed by rounding gives them, value for value), so that K and V go
 * from the tensor into the engine's tile layouts in one pass, with no float copy of the whole tensor between.
 * One reader per thread: it keeps a row of scratch.
 */
final class RowReader {
    private final FloatBuffer floats;
    private final ShortBuffer halves;
    private final boolean bf16Source;
    private final DType round;
    private final int d;
    private final short[] bits;

    /** Rows of {@code d} elements of {@code t}, rounded to {@code as} where t's dtype is another. */
    RowReader(Tensor t, DType as, int d) {
        this.d = d;
        switch (t.dtype()) {
            case F32 -> {
                floats = t.bytes().asFloatBuffer();
                halves = null;
            }
            case F16, BF16 -> {
                floats = null;
                halves = t.bytes().asShortBuffer();
            }
            default -> throw new IllegalArgumentException("expected a floating tensor, got " + t.dtype().cliName());
        }
        bf16Source = t.dtype() == DType.BF16;
        round = as == t.dtype() || as == DType.F32 ? null : as;
        bits = halves == null ? null : new short[d];
    }

    /** Row {@code row} (elements row·d … row·d + d − 1) into dst[off … off + d). */
    void read(int row, float[] dst, int off) {
        int at = Math.multiplyExact(row, d);
        if (floats != null) {
            floats.get(at, dst, off, d);
        } else {
            halves.get(at, bits, 0, d);
            if (bf16Source) {
                for (int i = 0; i < d; i++) {
                    dst[off + i] = HalfFloats.bf16ToFloat(bits[i]);
                }
            } else {
                for (int i = 0; i < d; i++) {
                    dst[off + i] = HalfFloats.f16ToFloat(bits[i]);
                }
            }
        }
        if (round == DType.BF16) {
            for (int i = 0; i < d; i++) {
                dst[off + i] = HalfFloats.roundToBf16(dst[off + i]);
            }
        } else if (round == DType.F16) {
            for (int i = 0; i < d; i++) {
                dst[off + i] = HalfFloats.roundToF16(dst[off + i]);
            }
        }
    }
}
