package io.headroute.cuda.memory;

/** The raw allocator found no room on the device; the pool turns this into a {@link DeviceOutOfMemoryException}. */
public final class RawOutOfMemoryException extends Exception {
    private static final long serialVersionUID = 1L;

    public RawOutOfMemoryException(String message) {
        super(message);
    }
}
