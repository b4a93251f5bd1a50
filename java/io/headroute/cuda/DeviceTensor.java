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

    /** Uninitialized device memory for a tensor, accounted under {@code tag}. */
    public static DeviceTensor allocate(CudaDevice device, DevicePool pool, DType dtype, String tag, long... shape) {
        long bytes = Math.multiplyExact(Tensor.numel(shape), (long) dtype.byteSize());
        DeviceBuffer b = pool.allocate(bytes, tag);
        return new DeviceTensor(device, dtype, shape, b.address(), b);
    }

    /** Wraps memory owned elsewhere (e.g. a PyTorch tensor's data pointer); never freed here. */
    public static DeviceTensor borrow(CudaDevice device, long address, DType dtype, long... shape) {
        if (address == 0) {
            throw new IllegalArgumentException("cannot borrow a null device pointer");
        }
        return new DeviceTensor(device, dtype, shape, address, null);
    }

    /**
     * Uploads {@code host} converted to {@code dtype} (f32 ↔ f16/bf16 rounding to nearest even happens
     * on the host), through {@code staging} when given, else a synchronous copy.
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

    /** Copies a host tensor of the same dtype and element count into this one. */
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

    /** Copies this tensor back to the host (same dtype). */
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

    /** Bytes the pool reserved for this tensor (its size rounded up by the pool), 0 when borrowed. */
    public long poolBytes() {
        return owned == null ? 0 : owned.size();
    }

    public long address() {
        return owned != null ? owned.address() : address;
    }

    public DType dtype() {
        return dtype;
    }

    public long[] shape() {
        return shape.clone();
    }

    public long dim(int axis) {
        return shape[axis];
    }

    public long numel() {
        return Tensor.numel(shape);
    }

    public long byteSize() {
        return numel() * dtype.byteSize();
    }

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
