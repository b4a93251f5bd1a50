package io.headroute.cuda.memory;

/**
 * Device memory owned by a {@link DevicePool}. {@link #close()} returns it to the pool's cache; it is
 * idempotent, and the address may not be used afterwards.
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

    long rawAddress() {
        return address;
    }

    @Override
    public String toString() {
        return "DeviceBuffer[" + Bytes.format(requested) + ", tag " + tag + (closed ? ", closed" : "") + "]";
    }
}
