package io.headroute.cuda.memory;

/** The raw allocator found no room on the device; the pool turns this into a {@link DeviceOutOfMemoryException}. */
public final class RawOutOfMemoryException extends Exception {
    private static final long serialVersionUID = 1L;

    /**
     * A failed device allocation.
     *
     * @param message the call and device, e.g. "cuMemAlloc(4.00 GiB) on GPU 0 (…): CUDA_ERROR_OUT_OF_MEMORY"
     */
    public RawOutOfMemoryException(String message) {
        super(message);
    }
}
