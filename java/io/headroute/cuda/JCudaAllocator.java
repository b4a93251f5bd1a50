package io.headroute.cuda;

import static jcuda.driver.JCudaDriver.cuMemAlloc;
import static jcuda.driver.JCudaDriver.cuMemFree;
import static jcuda.driver.JCudaDriver.cuMemsetD8Async;

import io.headroute.cuda.memory.Bytes;
import io.headroute.cuda.memory.RawAllocator;
import io.headroute.cuda.memory.RawOutOfMemoryException;
import jcuda.driver.CUresult;
import jcuda.driver.CUstream;

/** {@link RawAllocator} on a real GPU: cuMemAlloc / cuMemFree / cuMemGetInfo in the device's primary context. */
public final class JCudaAllocator implements RawAllocator {
    private final CudaDevice device;

    /**
     * An allocator on {@code device}'s primary context; it does not own the device.
     *
     * @param device the open device
     */
    public JCudaAllocator(CudaDevice device) {
        this.device = device;
    }

    @Override
    public long allocate(long bytes) throws RawOutOfMemoryException {
        device.makeCurrent();
        DevicePointers.Out p = new DevicePointers.Out();
        int rc = cuMemAlloc(p, bytes);
        if (rc == CUresult.CUDA_ERROR_OUT_OF_MEMORY) {
            throw new RawOutOfMemoryException("cuMemAlloc(" + Bytes.format(bytes) + ") on " + device.describe()
                    + ": CUDA_ERROR_OUT_OF_MEMORY");
        }
        CudaException.check(rc, "cuMemAlloc(" + Bytes.format(bytes) + ")", device.describe());
        return p.address();
    }

    @Override
    public void free(long address) {
        device.makeCurrent();
        CudaException.check(cuMemFree(DevicePointers.of(address)), "cuMemFree(0x" + Long.toHexString(address) + ")",
                device.describe());
    }

    /** Waits for the whole context (work on any stream may still use the block), fills, and waits for the fill. */
    @Override
    public void poison(long address, long bytes) {
        device.synchronize();
        CudaException.check(cuMemsetD8Async(DevicePointers.of(address), (byte) 0xFF, bytes, new CUstream()),
                "cuMemsetD8Async(0x" + Long.toHexString(address) + ", 0xFF, " + Bytes.format(bytes) + ", poison)",
                device.describe());
        device.synchronize();
    }

    @Override
    public long totalBytes() {
        return device.totalBytes();
    }

    @Override
    public long freeBytes() {
        return device.memoryInfo()[0];
    }

    @Override
    public String deviceDescription() {
        return device.describe();
    }
}
