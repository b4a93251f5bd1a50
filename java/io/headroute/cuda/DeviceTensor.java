package io.headroute.cuda;

import io.headroute.cuda.memory.DeviceBuffer;
import io.headroute.cuda.memory.DevicePool;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A dense, C-ordered tensor in device memory. <em>Owned</em> tensors hold a {@link DeviceBuffer} from a
 * pool and return it on {@link #close()}; <em>borrowed</em> ones wrap an address handed over by another
 * framework and are never freed by headroute. Close is idempotent.
 */
public final class DeviceTensor implements AutoCloseable {
    private final CudaDevice device;
    private final DType dtype;
    private final long[] shape;
    private final long address;
    private final DeviceBuffer owned;

    private DeviceTensor(CudaDevice device, DType dtype, long[] shape, long address, DeviceBuffer owned) {
        this.device = device;
        this.dtype = dtype;
        this.shape = shape.clone();
        this.address = address;
        this.owned = owned;
    }

    /**
     * Uninitialized device memory for a tensor, accounted under {@code tag}.
     *
     * @param device the device the memory is on
     * @param pool   the pool to allocate from (a pool of that device)
     * @param dtype  the element type
     * @param tag    the pool's accounting tag, e.g. "router"
     * @param shape  the dimensions, C order
     * @return an owned tensor; closing it returns the memory to the pool
     * @throws ArithmeticException                                  when the byte size overflows a long
     * @throws io.headroute.cuda.memory.DeviceOutOfMemoryException when the pool cannot provide the memory
     */
    public static DeviceTensor allocate(CudaDevice device, DevicePool pool, DType dtype, String tag, long... shape) {
        long bytes = Math.multiplyExact(Tensor.numel(shape), (long) dtype.byteSize());
        DeviceBuffer b = pool.allocate(bytes, tag);
        return new DeviceTensor(device, dtype, shape, b.address(), b);
    }

    /**
     * Wraps memory owned elsewhere (e.g. a PyTorch tensor's data pointer); never freed here.
     *
     * @param device  the device the memory is on
     * @param address the device address of element 0, not 0; the memory must hold the whole dense C-ordered tensor
     * @param dtype   the element type
     * @param shape   the dimensions, C order
     * @return a borrowed tensor; closing it does nothing
     * @throws IllegalArgumentException when {@code address} is 0
     */
    public static DeviceTensor borrow(CudaDevice device, long address, DType dtype, long... shape) {
        if (address == 0) {
            throw new IllegalArgumentException("cannot borrow a null device pointer");
        }
        return new DeviceTensor(device, dtype, shape, address, null);
    }

    /**
     * Uploads {@code host} converted to {@code dtype} (f32 ↔ f16/bf16 rounding to nearest even happens
     * on the host), through {@code staging} when given, else a synchronous copy.
     *
     * @param device  the device to upload to
     * @param pool    the pool to allocate from
     * @param stream  the stream the copy is ordered on; it has finished when this returns
     * @param staging pinned buffers for a large copy, or null
     * @param host    the host tensor, any dtype convertible to {@code dtype}
     * @param dtype   the device tensor's dtype
     * @param tag     the pool's accounting tag
     * @return an owned device tensor holding the values; closed again if the copy fails
     */
    public static DeviceTensor upload(CudaDevice device, DevicePool pool, CudaStream stream, PinnedStaging staging,
            Tensor host, DType dtype, String tag) {
        Tensor t = host.dtype() == dtype ? host : host.toDType(dtype);
        DeviceTensor d = allocate(device, pool, dtype, tag, t.shape());
        try {
            d.copyFrom(t, stream, staging);
            return d;
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
    }

    /**
     * Copies a host tensor of the same dtype and element count into this one; the copy has finished when this returns.
     *
     * @param host    the values; its shape may differ, its element count may not
     * @param stream  the stream the copy is ordered on (synchronized before returning)
     * @param staging pinned buffers for a large copy, or null for one copy from (direct) host memory
     * @throws IllegalArgumentException when the dtype or element count differs
     */
    public void copyFrom(Tensor host, CudaStream stream, PinnedStaging staging) {
        if (host.dtype() != dtype || host.numel() != numel()) {
            throw new IllegalArgumentException("copy of " + host + " into device tensor " + this + ": dtype or size differs");
        }
        if (byteSize() == 0) {
            return;
        }
        ByteBuffer src = host.bytes();
        if (staging != null) {
            staging.upload(src, address(), stream);
        } else {
            // Ordered on the stream: a synchronous cuMemcpyHtoD from pageable memory may return before its
            // DMA lands, and a non-blocking stream does not wait for the legacy stream it runs on. CUDA does not
            // promise that an async copy from pageable memory has read it when the call returns ("may synchronize
            // with the stream and stage the copy"): the stream is synchronized before `direct` (a temporary the
            // collector may free, or the caller's buffer, which it may reuse) is let go.
            ByteBuffer direct = src.isDirect() ? src : ByteBuffer.allocateDirect(src.remaining()).put(src).flip();
            device.makeCurrent();
            CudaException.check(jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync(DevicePointers.of(address()), jcuda.Pointer.to(direct),
                    byteSize(), stream.handle()), "cuMemcpyHtoDAsync(" + byteSize() + " bytes, " + this + ")", device.describe());
            stream.synchronize();
            java.lang.ref.Reference.reachabilityFence(direct);
        }
    }

    /**
     * Copies this tensor back to the host (same dtype). Waits for the work queued on {@code stream} first.
     *
     * @param stream  the stream whose work produced the values
     * @param staging pinned buffers for a large copy, or null
     * @return a host tensor of this dtype and shape, backed by a direct buffer
     * @throws IllegalArgumentException when the tensor is larger than one host buffer holds (about 2 GiB)
     */
    public Tensor download(CudaStream stream, PinnedStaging staging) {
        long bytes = byteSize();
        if (bytes > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("device tensor " + this + " is larger than one host buffer holds");
        }
        ByteBuffer dst = ByteBuffer.allocateDirect((int) bytes).order(ByteOrder.LITTLE_ENDIAN);
        if (bytes > 0) {
            if (staging != null) {
                staging.download(address(), dst, bytes, stream);
            } else {
                stream.synchronize();
                device.makeCurrent();
                CudaException.check(jcuda.driver.JCudaDriver.cuMemcpyDtoH(jcuda.Pointer.to(dst), DevicePointers.of(address()),
                        bytes), "cuMemcpyDtoH(" + bytes + " bytes, " + this + ")", device.describe());
            }
        }
        dst.rewind();
        return Tensor.of(dtype, shape, dst);
    }

    /**
     * Fills every element with the bit pattern {@code bits} (the low 16 bits for 2-byte dtypes, 8 for
     * 1-byte ones), e.g. a NaN, to poison outputs before a kernel runs.
     *
     * @param bits   the element's bit pattern
     * @param stream the stream the fill is enqueued on; not waited for
     * @throws IllegalArgumentException for an 8-byte dtype (i64)
     */
    public void fillBits(int bits, CudaStream stream) {
        device.makeCurrent();
        long n = numel();
        jcuda.driver.CUdeviceptr p = DevicePointers.of(address());
        int rc = switch (dtype.byteSize()) {
            case 4 -> jcuda.driver.JCudaDriver.cuMemsetD32Async(p, bits, n, stream.handle());
            case 2 -> jcuda.driver.JCudaDriver.cuMemsetD16Async(p, (short) bits, n, stream.handle());
            case 1 -> jcuda.driver.JCudaDriver.cuMemsetD8Async(p, (byte) bits, n, stream.handle());
            default -> throw new IllegalArgumentException("fillBits does not take " + dtype.cliName() + " (" + this + ")");
        };
        CudaException.check(rc, "cuMemsetD" + 8 * dtype.byteSize() + "Async(" + this + ")", device.describe());
    }

    /** {@return the bytes the pool reserved for this tensor (its size rounded up by the pool), 0 when borrowed} */
    public long poolBytes() {
        return owned == null ? 0 : owned.size();
    }

    /**
     * {@return the device address of element 0}
     *
     * @throws IllegalStateException when an owned tensor was closed
     */
    public long address() {
        return owned != null ? owned.address() : address;
    }

    /** {@return the element type} */
    public DType dtype() {
        return dtype;
    }

    /** {@return the dimensions, C order, a copy} */
    public long[] shape() {
        return shape.clone();
    }

    /**
     * {@return the size of dimension {@code axis}}
     *
     * @param axis the dimension, in [0, rank)
     */
    public long dim(int axis) {
        return shape[axis];
    }

    /** {@return the number of elements, the product of the dimensions} */
    public long numel() {
        return Tensor.numel(shape);
    }

    /** {@return the bytes the elements take: numel · the dtype's size (without the pool's rounding)} */
    public long byteSize() {
        return numel() * dtype.byteSize();
    }

    /** {@return whether the memory belongs to someone else (made by {@link #borrow}) and is never freed here} */
    public boolean isBorrowed() {
        return owned == null;
    }

    @Override
    public void close() {
        if (owned != null) {
            owned.close();
        }
    }

    @Override
    public String toString() {
        return "DeviceTensor[" + dtype.cliName() + " " + Arrays.toString(shape) + (owned == null ? ", borrowed" : "") + "]";
    }
}
