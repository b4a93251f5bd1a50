package io.headroute.cuda.memory;

import java.util.Objects;

/**
 * Device memory owned by a {@link DevicePool}. {@link #close()} returns it to the pool's cache; it is
 * idempotent, and the address may not be used afterwards. The pool hands a cached block to the next
 * request at once, whichever stream that request's work goes to: close a buffer that queued work may
 * still use with {@link #closeAfter} (or after synchronizing).
 */
public final class DeviceBuffer implements AutoCloseable {
    private final DevicePool pool;
    private final long address;
    private final long size;
    private final long requested;
    private final String tag;
    private boolean closed;

    DeviceBuffer(DevicePool pool, long address, long size, long requested, String tag) {
        this.pool = pool;
        this.address = address;
        this.size = size;
        this.requested = requested;
        this.tag = tag;
    }

    /**
     * {@return the device address}; fails after {@link #close()}.
     *
     * @throws IllegalStateException when the buffer is closed
     */
    public long address() {
        synchronized (pool) {
            if (closed) {
                throw new IllegalStateException("device buffer (" + Bytes.format(requested) + ", tag " + tag
                        + ") used after close");
            }
            return address;
        }
    }

    /** {@return the bytes reserved for this buffer: the request rounded up, or a cached block up to an eighth larger} */
    public long size() {
        return size;
    }

    /** {@return the bytes asked for} */
    public long requestedBytes() {
        return requested;
    }

    /** {@return the accounting tag the buffer was allocated under} */
    public String tag() {
        return tag;
    }

    /** {@return whether {@link #close()} or {@link #closeAfter} has been called} */
    public boolean isClosed() {
        synchronized (pool) {
            return closed;
        }
    }

    @Override
    public void close() {
        synchronized (pool) {
            if (closed) {
                return;
            }
            closed = true;
            pool.release(this);
        }
    }

    /**
     * Closes this buffer now and returns its memory to the pool once {@code fence} has completed, so that
     * no later request reuses it while work queued before the fence (a kernel or copy on any stream) may
     * still read or write it. Until then its bytes stay counted as allocated (under its tag); the pool
     * takes the fence and closes it. On a buffer closed already, only closes the fence.
     *
     * @param fence the point after the last queued work that uses the buffer (e.g. {@code CudaStream.fence()});
     *              not null; owned by the pool from now on
     */
    public void closeAfter(Fence fence) {
        Objects.requireNonNull(fence, "fence");
        synchronized (pool) {
            if (closed) {
                fence.close();
                return;
            }
            closed = true;
            pool.releaseAfter(this, fence);
        }
    }

    long rawAddress() {
        return address;
    }

    @Override
    public String toString() {
        return "DeviceBuffer[" + Bytes.format(requested) + ", tag " + tag + (closed ? ", closed" : "") + "]";
    }
}
