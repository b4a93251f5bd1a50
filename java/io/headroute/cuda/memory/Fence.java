package io.headroute.cuda.memory;

/**
 * A point in a device's queued work (on the GPU: an event recorded on a stream): complete once everything
 * queued before it has finished. {@link DeviceBuffer#closeAfter} hands one to the pool, which keeps the
 * buffer's memory from reuse until it completes.
 */
public interface Fence extends AutoCloseable {
    /** {@return whether the work before the fence has finished}; does not block. */
    boolean isComplete();

    /** Blocks until the work before the fence has finished. */
    void await();

    /** Releases the fence (its event); once. */
    @Override
    void close();
}
