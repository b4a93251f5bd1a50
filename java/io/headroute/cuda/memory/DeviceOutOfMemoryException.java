package io.headroute.cuda.memory;

/**
 * An allocation that cannot be satisfied even after the pool freed its cache and retried. The message
 * says what was requested, what the device has in total and free, what headroute has allocated, and
 * what it holds reserved but unused.
 */
public final class DeviceOutOfMemoryException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final long requestedBytes;

    /**
     * An allocation the pool could not satisfy.
     *
     * @param message        one line describing the request and the memory state
     * @param requestedBytes the bytes asked for (before rounding)
     */
    public DeviceOutOfMemoryException(String message, long requestedBytes) {
        super(message);
        this.requestedBytes = requestedBytes;
    }

    /** {@return the bytes the failed allocation asked for, before rounding} */
    public long requestedBytes() {
        return requestedBytes;
    }
}
