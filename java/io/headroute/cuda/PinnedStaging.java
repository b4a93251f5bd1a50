package io.headroute.cuda;

import static jcuda.driver.JCudaDriver.cuMemAllocHost;
import static jcuda.driver.JCudaDriver.cuMemFreeHost;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoHAsync;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync;

import io.headroute.cuda.memory.Bytes;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import jcuda.Pointer;

/**
 * Two page-locked host buffers for large host↔device copies. Uploads alternate between them: while one
 * chunk is copied asynchronously on the stream, the next is filled from Java memory. Downloads go
 * through one buffer, chunk by chunk (copy, wait, drain). Closed once.
 */
public final class PinnedStaging implements AutoCloseable {
    private final CudaDevice device;
    private final long chunk;
    private final Pointer[] pinned = new Pointer[2];
    private final ByteBuffer[] views = new ByteBuffer[2];
    private final CudaEvent[] done = new CudaEvent[2];
    private boolean closed;

    /**
     * Allocates both buffers and their events; on a failure frees what it had made and rethrows.
     *
     * @param device     the device the copies go to and from
     * @param chunkBytes the size of each buffer, the largest copy queued at once; positive
     * @throws IllegalArgumentException when {@code chunkBytes} is not positive (the copy loops would never advance)
     * @throws CudaException when the driver cannot allocate the buffers or events
     */
    public PinnedStaging(CudaDevice device, long chunkBytes) {
        if (chunkBytes <= 0) {
            throw new IllegalArgumentException("pinned staging chunks must be positive, got " + chunkBytes + " bytes");
        }
        this.device = device;
        this.chunk = chunkBytes;
        try {
            device.makeCurrent();
            for (int i = 0; i < 2; i++) {
                Pointer p = new Pointer();
                CudaException.check(cuMemAllocHost(p, chunkBytes), "cuMemAllocHost(" + Bytes.format(chunkBytes) + ")",
                        device.describe());
                pinned[i] = p;
                views[i] = p.getByteBuffer(0, chunkBytes).order(ByteOrder.LITTLE_ENDIAN);
            }
            for (int i = 0; i < 2; i++) {
                done[i] = new CudaEvent(device);
            }
        } catch (RuntimeException e) {
            throw Resources.closeAfter(e, this);
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("pinned staging buffers on " + device.describe() + " are closed");
        }
    }

    /**
     * Copies {@code src} (all remaining bytes) to device address {@code dst} through the staging buffers. Returns once
     * the stream has finished the copies; {@code src}'s position is left as it was.
     *
     * @param src    the bytes to copy
     * @param dst    the device address to copy to
     * @param stream the stream the copies are ordered on
     */
    public void upload(ByteBuffer src, long dst, CudaStream stream) {
        ensureOpen();
        ByteBuffer in = src.duplicate();
        long off = 0;
        int slot = 0;
        boolean[] busy = new boolean[2];
        try {
            while (in.hasRemaining()) {
                int n = (int) Math.min(chunk, in.remaining());
                if (busy[slot]) {
                    done[slot].synchronize(); // the copy that last used this buffer has finished
                }
                ByteBuffer view = views[slot].duplicate();
                view.clear();
                ByteBuffer part = in.slice();
                part.limit(n);
                view.put(part);
                in.position(in.position() + n);
                device.makeCurrent();
                CudaException.check(cuMemcpyHtoDAsync(DevicePointers.of(dst + off), pinned[slot], n, stream.handle()),
                        "cuMemcpyHtoDAsync(" + Bytes.format(n) + " to offset " + off + ")", device.describe());
                done[slot].record(stream);
                busy[slot] = true;
                off += n;
                slot ^= 1;
            }
        } catch (RuntimeException e) {
            // A chunk queued before the failure may still read a staging buffer the next call would refill.
            throw Resources.closeAfter(e, stream::synchronize);
        }
        stream.synchronize();
    }

    /**
     * Copies {@code bytes} from device address {@code src} into {@code dst} (a writable buffer), chunk by chunk,
     * waiting for the stream after each.
     *
     * @param src    the device address to copy from
     * @param dst    receives the bytes at its position, which advances by {@code bytes}
     * @param bytes  the bytes to copy
     * @param stream the stream the copies are ordered on (after the work already queued there)
     */
    public void download(long src, ByteBuffer dst, long bytes, CudaStream stream) {
        ensureOpen();
        long off = 0;
        while (off < bytes) {
            int n = (int) Math.min(chunk, bytes - off);
            device.makeCurrent();
            CudaException.check(cuMemcpyDtoHAsync(pinned[0], DevicePointers.of(src + off), n, stream.handle()),
                    "cuMemcpyDtoHAsync(" + Bytes.format(n) + ")", device.describe());
            stream.synchronize();
            ByteBuffer view = views[0].duplicate();
            view.clear().limit(n);
            dst.put(view);
            off += n;
        }
    }

    /** Frees the events and both buffers, each attempted whatever failed before it; the first failure is thrown. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        Resources.closeAll(done[0], done[1], freeHost(pinned[0]), freeHost(pinned[1]));
    }

    private AutoCloseable freeHost(Pointer p) {
        return p == null ? null : () -> {
            device.makeCurrent();
            CudaException.check(cuMemFreeHost(p), "cuMemFreeHost(" + Bytes.format(chunk) + ")", device.describe());
        };
    }
}
