package io.headroute.cuda.memory;

/**
 * The device allocator under {@link DevicePool}: {@code cuMemAlloc}/{@code cuMemFree} on a GPU, a
 * plain-Java fake in tests. Implementations need not be thread-safe; the pool serializes calls.
 */
public interface RawAllocator {
    /**
     * Allocates {@code bytes} (a multiple of the pool's rounding) and returns a non-zero device address.
     *
     * @param bytes the size, positive
     * @return the device address of the new block
     * @throws RawOutOfMemoryException when the device has no room (CUDA_ERROR_OUT_OF_MEMORY); any other
     *     failure is an unchecked exception naming the operation
     */
    long allocate(long bytes) throws RawOutOfMemoryException;

    /**
     * Frees an address returned by {@link #allocate}.
     *
     * @param address the block's address, freed once
     */
    void free(long address);

    /** {@return the total device memory in bytes} */
    long totalBytes();

    /** {@return the free device memory in bytes right now (all processes)} */
    long freeBytes();

    /** {@return which device, for messages, e.g. "GPU 0 (NVIDIA H100 80GB HBM3, sm_90)"} */
    String deviceDescription();

    /**
     * Fills [address, address + bytes) of an allocation with the byte 0xFF (NaN in f32, f16 and bf16, -1 in int32)
     * after all work queued on the device so far, and returns once the fill has landed: the pool's poison mode
     * ({@link DevicePool#POISON_PROPERTY}), a testing aid that makes a read of memory nothing wrote show as NaN.
     *
     * @param address the start of the range, inside one allocation
     * @param bytes   the length of the range in bytes
     * @throws UnsupportedOperationException where the device cannot
     */
    default void poison(long address, long bytes) {
        throw new UnsupportedOperationException(deviceDescription() + " cannot poison memory");
    }
}
