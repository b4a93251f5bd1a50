package io.headroute.cuda.memory;

/**
 * The device allocator under {@link DevicePool}: {@code cuMemAlloc}/{@code cuMemFree} on a GPU, a
 * plain-Java fake in tests. Implementations need not be thread-safe; the pool serializes calls.
 */
public interface RawAllocator {
    /**
     * Allocates {@code bytes} (a multiple of the pool's rounding) and returns a non-zero device address.
     *
     * @throws RawOutOfMemoryException when the device has no room (CUDA_ERROR_OUT_OF_MEMORY); any other
     *     failure is an unchecked exception naming the operation
     */
    long allocate(long bytes) throws RawOutOfMemoryException;

    /** Frees an address returned by {@link #allocate}. */
    void free(long address);

    /** Total device memory in bytes. */
    long totalBytes();

    /** Free device memory in bytes right now (all processes). */
    long freeBytes();

    /** For messages: which device, e.g. "GPU 0 (NVIDIA H100 80GB HBM3, sm_90)". */
    String deviceDescription();
}
