package io.headroute.engine.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.headroute.tensor.DType;
import io.headroute.tensor.HalfFloats;
import io.headroute.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.Test;

class RowReaderTest {
    /** toFloatArray, then each value rounded to {@code as} unless the tensor already holds that dtype: the old conversion. */
    private static float expected(Tensor t, DType as, int i) {
        float x = t.toFloatArray()[i];
        if (as == DType.BF16 && t.dtype() != as) {
            return HalfFloats.roundToBf16(x);
        }
        if (as == DType.F16 && t.dtype() != as) {
            return HalfFloats.roundToF16(x);
        }
        return x;
    }

    @Test
    void rowsAreTheTensorsValuesRoundedToTheRequestDtype() {
        Random rnd = new Random(5);
        DType[] floating = {DType.F32, DType.F16, DType.BF16};
        for (DType source : floating) {
            for (DType as : floating) {
                for (int d : new int[] {1, 7, 64}) {
                    int rows = 13;
                    float[] v = new float[rows * d];
                    for (int i = 0; i < v.length; i++) {
                        // Wide magnitudes: f16 overflows, bf16 and f16 subnormals, and values between representable ones.
                        v[i] = (float) (rnd.nextGaussian() * Math.pow(2, rnd.nextInt(60) - 30));
                    }
                    v[0] = Float.NaN;
                    v[v.length - 1] = Float.NEGATIVE_INFINITY;
                    Tensor t = Tensor.ofFloats(source, v, rows, d);
                    RowReader reader = new RowReader(t, as, d);
                    float[] out = new float[rows * d + 3];
                    for (int r = rows - 1; r >= 0; r--) {
                        reader.read(r, out, 3 + r * d);
                    }
                    for (int i = 0; i < rows * d; i++) {
                        int at = i;
                        assertEquals(Float.floatToIntBits(expected(t, as, i)), Float.floatToIntBits(out[3 + i]),
                                () -> source + " as " + as + ", d = " + d + ", element " + at);
                    }
                }
            }
        }
    }

    @Test
    void anIntegerTensorIsRefused() {
        Tensor t = Tensor.ofInts(new int[] {1, 2}, 1, 2);
        assertEquals("expected a floating tensor, got i32",
                assertThrows(IllegalArgumentException.class, () -> new RowReader(t, DType.F32, 2)).getMessage());
    }
}
