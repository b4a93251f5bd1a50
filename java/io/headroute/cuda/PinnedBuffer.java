package io.headroute.cuda;

import static jcuda.driver.JCudaDriver.cuMemAllocHost;
import static jcuda.driver.JCudaDriver.cuMemFreeHost;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync;

import io.headroute.cuda.memory.Bytes;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import jcuda.Pointer;

/**
 * A page-locked host buffer ({@code cuMemAllocHost}): host memory that an asynchronous copy reads without
 * staging it, so the call that queues the copy need not wait for it. Freed once on close; whoever closes it
 * makes sure that no copy from it is still queued.
 */
public final class PinnedBuffer implements AutoCloseable {
    private final CudaDevice device;
    private final Pointer pointer = new Pointer();
    private final long bytes;
    private final ByteBuffer view;
    private boolean closed;

    /**
     * Allocates {@code bytes} (at least one byte is allocated, so that an empty buffer still has an address).
     *
     * @param device the device whose context the pinned memory is registered with
     * @param bytes  the size, 0 … {@code Integer.MAX_VALUE}
     * @throws IllegalArgumentException for a size out of that range
     * @throws CudaException            when the driver cannot allocate it
     */
    public PinnedBuffer(CudaDevice device, long bytes) {
        if (bytes < 0 || bytes > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("a pinned host buffer of " + bytes + " bytes: must be 0 to " + Integer.MAX_VALUE);
        }
        this.device = device;
        this.bytes = bytes;
        device.makeCurrent();
        CudaException.check(cuMemAllocHost(pointer, Math.max(bytes, 1)), "cuMemAllocHost(" + Bytes.format(bytes) + ")",
                device.describe());
        this.view = pointer.getByteBuffer(0, bytes).order(ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * {@return a little-endian view of all of it, position 0}; a new view each call, valid until close.
     *
     * @throws IllegalStateException when the buffer is closed
     */
    public ByteBuffer buffer() {
        ensureOpen();
        return view.duplicate().order(ByteOrder.LITTLE_ENDIAN).clear();
    }

    /** {@return the buffer's size in bytes, as asked for} */
    public long bytes() {
        return bytes;
    }

    /**
     * Queues the copy of its first {@code n} bytes to device address {@code dst} on {@code stream}; waits for nothing.
     * The buffer must not be changed or closed until the copy has finished.
     *
     * @param dst    the device address to copy to
     * @param n      the bytes to copy, 0 … {@link #bytes()}
     * @param stream the stream to enqueue on
     * @throws IllegalArgumentException for {@code n} out of range
     */
    public void copyToDevice(long dst, long n, CudaStream stream) {
        ensureOpen();
        if (n < 0 || n > bytes) {
            throw new IllegalArgumentException("copy of " + n + " bytes from a pinned buffer of " + bytes);
        }
        if (n == 0) {
            return;
        }
        device.makeCurrent();
        CudaException.check(cuMemcpyHtoDAsync(DevicePointers.of(dst), pointer, n, stream.handle()),
                "cuMemcpyHtoDAsync(" + Bytes.format(n) + " from pinned memory to 0x" + Long.toHexString(dst) + ")",
                device.describe());
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("pinned host buffer of " + Bytes.format(bytes) + " on " + device.describe()
                    + " is closed");
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        device.makeCurrent();
        CudaException.check(cuMemFreeHost(pointer), "cuMemFreeHost(" + Bytes.format(bytes) + ")", device.describe());
    }
}
