package io.headroute.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TensorTest {
    @TempDir
    Path dir;

    /** A tensor of random bytes (any bit pattern: slicing moves bytes, it never reads values). */
    private static Tensor random(DType dtype, Random rnd, boolean direct, long... shape) {
        int n = Math.toIntExact(Tensor.numel(shape) * dtype.byteSize());
        byte[] b = new byte[n];
        rnd.nextBytes(b);
        ByteBuffer buf = direct ? ByteBuffer.allocateDirect(n).put(b).flip() : ByteBuffer.wrap(b);
        return Tensor.of(dtype, shape, buf);
    }

    /** The element at a multi-index's bytes. */
    private static byte[] element(Tensor t, long[] index) {
        long flat = 0;
        for (int i = 0; i < index.length; i++) {
            flat = flat * t.dim(i) + index[i];
        }
        int size = t.dtype().byteSize();
        byte[] out = new byte[size];
        t.bytes().get(Math.toIntExact(flat * size), out);
        return out;
    }

    /** Every element of the slice against the source element it names, index by index. */
    private static void assertSliceOf(Tensor t, int axis, long from, long to, Tensor s) {
        long[] want = t.shape();
        want[axis] = to - from;
        assertArrayEquals(want, s.shape());
        assertEquals(t.dtype(), s.dtype());
        assertEquals(Tensor.numel(want) * t.dtype().byteSize(), s.byteSize());
        long[] idx = new long[want.length];
        for (long e = 0; e < Tensor.numel(want); e++) {
            long rest = e;
            for (int i = want.length - 1; i >= 0; i--) {
                idx[i] = rest % want[i];
                rest /= want[i];
            }
            long[] src = idx.clone();
            src[axis] += from;
            assertArrayEquals(element(t, src), element(s, idx), () -> "element " + java.util.Arrays.toString(idx));
        }
    }

    @Test
    void sliceTakesTheRangeOfEveryAxisInEveryDtype() {
        Random rnd = new Random(11);
        for (DType dtype : DType.values()) {
            Tensor t = random(dtype, rnd, false, 2, 3, 77, 5);
            for (int axis = 0; axis < 4; axis++) {
                long n = t.dim(axis);
                long[][] ranges = {{0, n}, {0, 1}, {n - 1, n}, {1, n}, {0, 0}, {n, n}, {n / 2, n / 2 + 1}, {1, Math.max(1, n - 1)}};
                for (long[] r : ranges) {
                    assertSliceOf(t, axis, r[0], r[1], t.slice(axis, r[0], r[1]));
                }
            }
            Tensor s = t.slice(2, 10, 60);
            assertSliceOf(s, 3, 1, 4, s.slice(-1, 1, 4));
        }
    }

    @Test
    void keysOfAKeyTensor() {
        Tensor k = Tensor.ofFloats(new float[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 1, 2, 3, 2);
        Tensor s = k.slice(2, 1, 3);
        assertEquals("Tensor[f32 (1, 2, 2, 2)]", s.toString());
        assertArrayEquals(new float[] {2, 3, 4, 5, 8, 9, 10, 11}, s.toFloatArray());
        assertArrayEquals(new float[] {6, 7, 8, 9, 10, 11}, k.slice(-3, 1, 2).toFloatArray());
    }

    @Test
    void aContiguousRangeSharesTheBytesAndTheRestIsCopied() throws Exception {
        Random rnd = new Random(3);
        Tensor t = random(DType.BF16, rnd, true, 1, 1, 9, 4);
        assertTrue(t.slice(2, 2, 7).bytes().isDirect(), "leading axes of size 1: a view");
        assertTrue(t.slice(0, 0, 1).bytes().isDirect());
        Tensor u = random(DType.BF16, rnd, true, 1, 2, 9, 4);
        assertFalse(u.slice(2, 2, 7).bytes().isDirect(), "two runs of bytes: a copy");
        assertSliceOf(u, 2, 2, 7, u.slice(2, 2, 7));
        // A memory-mapped file's tensor sliced along its first axis stays a view of the mapping.
        Safetensors.write(dir.resolve("t.safetensors"), Map.of("u", u), Map.of());
        Tensor mapped = Safetensors.read(dir.resolve("t.safetensors")).tensor("u");
        Tensor view = mapped.slice(1, 1, 2);
        assertTrue(view.bytes().isDirect());
        assertSliceOf(u, 1, 1, 2, view);
        assertTrue(view.bytes().isReadOnly());
        assertEquals(ByteOrder.LITTLE_ENDIAN, view.bytes().order());
    }

    @Test
    void aSliceOutsideTheShapeIsRefusedInOneLine() {
        Tensor t = Tensor.ofFloats(new float[24], 2, 3, 4);
        assertEquals("slice: axis 3 is outside a rank-3 tensor (2, 3, 4)",
                assertThrows(IllegalArgumentException.class, () -> t.slice(3, 0, 1)).getMessage());
        assertEquals("slice: axis -4 is outside a rank-3 tensor (2, 3, 4)",
                assertThrows(IllegalArgumentException.class, () -> t.slice(-4, 0, 1)).getMessage());
        assertEquals("slice: range [2, 5) of axis 2 needs 0 <= from <= to <= 4 (tensor (2, 3, 4))",
                assertThrows(IllegalArgumentException.class, () -> t.slice(2, 2, 5)).getMessage());
        assertEquals("slice: range [-1, 1) of axis 0 needs 0 <= from <= to <= 2 (tensor (2, 3, 4))",
                assertThrows(IllegalArgumentException.class, () -> t.slice(0, -1, 1)).getMessage());
        assertEquals("slice: range [2, 1) of axis -1 needs 0 <= from <= to <= 4 (tensor (2, 3, 4))",
                assertThrows(IllegalArgumentException.class, () -> t.slice(-1, 2, 1)).getMessage());
        Tensor scalar = Tensor.ofFloats(new float[] {1});
        assertThrows(IllegalArgumentException.class, () -> scalar.slice(0, 0, 1));
    }
}
