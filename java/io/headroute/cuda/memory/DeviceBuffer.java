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

    /** The device address; fails after {@link #close()}. */
    public long address() {
        synchronized (pool) {
            if (closed) {
                throw new IllegalStateException("device buffer (" + Bytes.format(requested) + ", tag " + tag
                        + ") used after close");
            }
            return address;
        }
    }

    /** Bytes reserved for this buffer (the request rounded up). */
    public long size() {
        return size;
    }

    /** Bytes asked for. */
    public long requestedBytes() {
        return requested;
    }

    public String tag() {
        return tag;
    }

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
