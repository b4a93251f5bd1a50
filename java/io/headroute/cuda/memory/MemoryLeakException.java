package io.headroute.cuda.memory;

/** A pool was closed while blocks were still live; the message lists each one. */
public final class MemoryLeakException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    /**
     * A leak found on closing a pool.
     *
     * @param message one line naming the pool and each live buffer (size, tag, where allocated in debug mode)
     */
    public MemoryLeakException(String message) {
        super(message);
    }
}
