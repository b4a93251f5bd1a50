package io.headroute.tensor;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Objects;

/**
 * A dense, C-ordered host tensor: a dtype, a shape and little-endian bytes. The bytes may be a heap
 * buffer or a slice of a memory-mapped file; a tensor never changes after construction.
 */
public final class Tensor {
    private final DType dtype;
    private final long[] shape;
    private final ByteBuffer data;

    private Tensor(DType dtype, long[] shape, ByteBuffer data) {
        this.dtype = dtype;
        this.shape = shape;
        this.data = data;
    }

    /**
     * Wraps bytes as a tensor. The buffer's remaining bytes must equal numel × element size; they are
     * not copied, so the caller must not change them afterwards. They are read as little-endian whatever
     * {@code bytes.order()} says: a new {@link ByteBuffer} is big-endian, so order it
     * {@link ByteOrder#LITTLE_ENDIAN} before putting floats into it (or use {@link #ofFloats}).
     *
     * @param dtype the element type
     * @param shape the dimensions, outermost first (copied)
     * @param bytes the elements, C-ordered, from the buffer's position to its limit
     * @return a tensor over those bytes, read-only
     * @throws IllegalArgumentException if the bytes are not numel × element size, or a dimension is negative
     */
    public static Tensor of(DType dtype, long[] shape, ByteBuffer bytes) {
        Objects.requireNonNull(dtype, "dtype");
        long[] s = shape.clone();
        long n = numel(s);
        long need = Math.multiplyExact(n, (long) dtype.byteSize());
        if (bytes.remaining() != need) {
            throw new IllegalArgumentException("tensor of dtype " + dtype.cliName() + " and shape " + Arrays.toString(s)
                    + " needs " + need + " bytes, got " + bytes.remaining());
        }
        ByteBuffer view = bytes.slice().order(ByteOrder.LITTLE_ENDIAN).asReadOnlyBuffer();
        return new Tensor(dtype, s, view);
    }

    /**
     * A float32 tensor holding a copy of {@code values}.
     *
     * @param values the elements, C-ordered
     * @param shape the dimensions; their product must be values.length
     * @return the tensor
     * @throws IllegalArgumentException if the shape holds another number of elements
     */
    public static Tensor ofFloats(float[] values, long... shape) {
        checkCount(values.length, shape);
        ByteBuffer b = ByteBuffer.allocate(Math.multiplyExact(values.length, 4)).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(values);
        return of(DType.F32, shape, b);
    }

    /**
     * Converts float values to {@code dtype} (F32, F16 or BF16, rounding to nearest even).
     *
     * @param dtype F32, F16 or BF16
     * @param values the elements, C-ordered
     * @param shape the dimensions; their product must be values.length
     * @return the tensor, its values rounded to dtype
     * @throws IllegalArgumentException for another dtype, or a shape holding another number of elements
     */
    public static Tensor ofFloats(DType dtype, float[] values, long... shape) {
        checkCount(values.length, shape);
        ByteBuffer b = ByteBuffer.allocate(Math.multiplyExact(values.length, dtype.byteSize())).order(ByteOrder.LITTLE_ENDIAN);
        switch (dtype) {
            case F32 -> b.asFloatBuffer().put(values);
            case F16 -> {
                for (float v : values) {
                    b.putShort(HalfFloats.floatToF16(v));
                }
            }
            case BF16 -> {
                for (float v : values) {
                    b.putShort(HalfFloats.floatToBf16(v));
                }
            }
            default -> throw new IllegalArgumentException("ofFloats needs a floating dtype, got " + dtype.cliName());
        }
        b.rewind();
        return of(dtype, shape, b);
    }

    /**
     * An int32 tensor holding a copy of {@code values}.
     *
     * @param values the elements, C-ordered
     * @param shape the dimensions; their product must be values.length
     * @return the tensor
     * @throws IllegalArgumentException if the shape holds another number of elements
     */
    public static Tensor ofInts(int[] values, long... shape) {
        checkCount(values.length, shape);
        ByteBuffer b = ByteBuffer.allocate(Math.multiplyExact(values.length, 4)).order(ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(values);
        return of(DType.I32, shape, b);
    }

    /**
     * A uint8 (or bool, with values 0/1) tensor holding a copy of {@code values}.
     *
     * @param dtype U8 or BOOL
     * @param values the elements, C-ordered
     * @param shape the dimensions; their product must be values.length
     * @return the tensor
     * @throws IllegalArgumentException for another dtype, or a shape holding another number of elements
     */
    public static Tensor ofBytes(DType dtype, byte[] values, long... shape) {
        if (dtype != DType.U8 && dtype != DType.BOOL) {
            throw new IllegalArgumentException("ofBytes needs u8 or bool, got " + dtype.cliName());
        }
        checkCount(values.length, shape);
        return of(dtype, shape, ByteBuffer.wrap(values.clone()));
    }

    private static void checkCount(long count, long[] shape) {
        long n = numel(shape);
        if (n != count) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " holds " + n + " elements, got " + count);
        }
    }

    /**
     * Product of the dimensions; every dimension must be non-negative.
     *
     * @param shape the dimensions
     * @return their product (1 for no dimension)
     * @throws IllegalArgumentException for a negative dimension
     * @throws ArithmeticException if the product overflows a long
     */
    public static long numel(long[] shape) {
        long n = 1;
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
            }
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    /** {@return the element type} */
    public DType dtype() {
        return dtype;
    }

    /** {@return the dimensions, outermost first (a copy: changing it changes nothing here); empty for a scalar} */
    public long[] shape() {
        return shape.clone();
    }

    /** {@return the number of dimensions (0 for a scalar)} */
    public int rank() {
        return shape.length;
    }

    /**
     * One dimension.
     *
     * @param axis 0 … rank − 1
     * @return dimension {@code axis}
     * @throws ArrayIndexOutOfBoundsException for an axis outside 0 … rank − 1
     */
    public long dim(int axis) {
        return shape[axis];
    }

    /** {@return the number of elements: the product of the dimensions (1 for a scalar)} */
    public long numel() {
        return numel(shape);
    }

    /** {@return bytes of the elements: numel × the dtype's element size} */
    public long byteSize() {
        return data.capacity();
    }

    /** {@return the bytes, little-endian, read-only, positioned at 0 (a new buffer over the same bytes each call)} */
    public ByteBuffer bytes() {
        return data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * Refuses (an {@link IllegalArgumentException} of one line naming {@code name}, the value and its flat index) a
     * NaN or infinity here, or one made by rounding to {@code as} (f16 overflows above 65504).
     *
     * @param name what the tensor is, for the message (e.g. "q")
     * @param as the dtype its values will be rounded to
     * @return the largest magnitude once rounded
     * @throws IllegalArgumentException at the first value that is or rounds to NaN or an infinity
     */
    public double requireFinite(String name, DType as) {
        return requireFinite(name, toFloatArray(), as);
    }

    /**
     * {@link #requireFinite(String, DType)} of values already read into {@code x}.
     *
     * @param name what the values are, for the message
     * @param x the values before rounding (the message shows them)
     * @param as the dtype they will be rounded to
     * @return the largest magnitude once rounded
     * @throws IllegalArgumentException at the first value that is or rounds to NaN or an infinity
     */
    public static double requireFinite(String name, float[] x, DType as) {
        double max = 0;
        for (int i = 0; i < x.length; i++) {
            float r = switch (as) {
                case F16 -> HalfFloats.roundToF16(x[i]);
                case BF16 -> HalfFloats.roundToBf16(x[i]);
                default -> x[i];
            };
            if (!Float.isFinite(r)) {
                // "(70000.0 -> Infinity in f16)" where rounding made it non-finite, else just the value.
                throw new IllegalArgumentException(name + " holds a non-finite value" + (Float.isFinite(x[i])
                        ? " in " + as.cliName() + " (" + x[i] + " -> " + r + ")" : " (" + x[i] + ")") + " at flat index " + i);
            }
            max = Math.max(max, Math.abs(r));
        }
        return max;
    }

    /**
     * Elements converted to float (integers and bools by value).
     *
     * @return a new array, C-ordered
     * @throws IllegalArgumentException above 2^31 − 9 elements (a Java array's limit)
     */
    public float[] toFloatArray() {
        int n = intCount();
        float[] out = new float[n];
        ByteBuffer b = bytes();
        switch (dtype) {
            case F32 -> b.asFloatBuffer().get(out);
            case F16 -> {
                for (int i = 0; i < n; i++) {
                    out[i] = HalfFloats.f16ToFloat(b.getShort(2 * i));
                }
            }
            case BF16 -> {
                for (int i = 0; i < n; i++) {
                    out[i] = HalfFloats.bf16ToFloat(b.getShort(2 * i));
                }
            }
            case I32 -> {
                for (int i = 0; i < n; i++) {
                    out[i] = b.getInt(4 * i);
                }
            }
            case I64 -> {
                for (int i = 0; i < n; i++) {
                    out[i] = b.getLong(8 * i);
                }
            }
            case U8 -> {
                for (int i = 0; i < n; i++) {
                    out[i] = b.get(i) & 0xff;
                }
            }
            case BOOL -> {
                for (int i = 0; i < n; i++) {
                    out[i] = b.get(i) != 0 ? 1f : 0f;
                }
            }
        }
        return out;
    }

    /**
     * Elements as booleans (non-zero is true); for bool, u8 and integer tensors.
     *
     * @return a new array, C-ordered
     * @throws IllegalArgumentException for a floating tensor
     */
    public boolean[] toBooleanArray() {
        if (dtype.isFloating()) {
            throw new IllegalArgumentException("expected a bool or integer tensor, got " + dtype.cliName());
        }
        float[] v = toFloatArray();
        boolean[] out = new boolean[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i] != 0f;
        }
        return out;
    }

    private int intCount() {
        long n = numel();
        if (n > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("tensor of shape " + Arrays.toString(shape) + " has " + n
                    + " elements, more than a Java array holds");
        }
        return (int) n;
    }

    /**
     * Elements {@code from} … {@code to − 1} along {@code axis} (negative counts from the end), every other axis
     * whole: a tensor of the same dtype whose shape has {@code to − from} at {@code axis}, e.g. keys 1000 … 1999 of
     * (B, Hkv, S, D) keys as {@code k.slice(2, 1000, 2000)}. When the range is one run of bytes (every axis before
     * {@code axis} has size 1) the slice shares this tensor's bytes, a memory-mapped file's included; otherwise
     * it holds a copy.
     *
     * @param axis the axis, 0 … rank − 1, or −rank … −1 counting from the end
     * @param from the first index taken, 0 … dim(axis)
     * @param to one past the last index taken, from … dim(axis)
     * @return the slice
     * @throws IllegalArgumentException for an axis or range outside the shape
     */
    public Tensor slice(int axis, long from, long to) {
        int a = axis < 0 ? axis + shape.length : axis;
        if (a < 0 || a >= shape.length) {
            throw new IllegalArgumentException("slice: axis " + axis + " is outside a rank-" + shape.length + " tensor "
                    + shapeString());
        }
        if (from < 0 || from > to || to > shape[a]) {
            throw new IllegalArgumentException("slice: range [" + from + ", " + to + ") of axis " + axis + " needs 0 <= from <= to <= "
                    + shape[a] + " (tensor " + shapeString() + ")");
        }
        long[] out = shape.clone();
        out[a] = to - from;
        long outer = 1;
        for (int i = 0; i < a; i++) {
            outer *= shape[i];
        }
        // Bytes of one index along the axis (the axes after it, whole); every count fits an int as the bytes do.
        long inner = (long) dtype.byteSize();
        for (int i = a + 1; i < shape.length; i++) {
            inner *= shape[i];
        }
        int run = Math.toIntExact((to - from) * inner);
        ByteBuffer src = data.duplicate();
        if (outer == 1 || run == 0) {
            int start = Math.toIntExact(outer == 1 ? from * inner : 0);
            return new Tensor(dtype, out, src.position(start).limit(start + (outer == 1 ? run : 0)).slice().asReadOnlyBuffer()
                    .order(ByteOrder.LITTLE_ENDIAN));
        }
        ByteBuffer dst = ByteBuffer.allocate(Math.toIntExact(outer * run)).order(ByteOrder.LITTLE_ENDIAN);
        for (long r = 0; r < outer; r++) {
            int start = Math.toIntExact((r * shape[a] + from) * inner);
            dst.put(src.limit(start + run).position(start));
        }
        return new Tensor(dtype, out, dst.rewind().asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN));
    }

    /**
     * This tensor's values rounded to {@code target}.
     *
     * @param target F32, F16 or BF16
     * @return this tensor if it already has that dtype, else a converted copy
     * @throws IllegalArgumentException for a target that is not floating
     */
    public Tensor toDType(DType target) {
        if (target == dtype) {
            return this;
        }
        return ofFloats(target, toFloatArray(), shape);
    }

    /** {@return the shape as a string like (2, 8, 77, 64)} */
    public String shapeString() {
        StringBuilder sb = new StringBuilder("(");
        for (int i = 0; i < shape.length; i++) {
            if (i > 0) {
                sb.append(", ");
            }
            sb.append(shape[i]);
        }
        return sb.append(')').toString();
    }

    /** Dtype and shape, e.g. {@code Tensor[bf16 (1, 8, 1024, 64)]}; never the values. */
    @Override
    public String toString() {
        return "Tensor[" + dtype.cliName() + " " + shapeString() + "]";
    }
}
