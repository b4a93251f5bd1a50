package io.headroute.cuda.memory;

/** A pool was closed while blocks were still live; the message lists each one. */
public final class MemoryLeakException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    public MemoryLeakException(String message) {
        super(message);
    }
}
