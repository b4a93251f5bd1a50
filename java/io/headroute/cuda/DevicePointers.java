package io.headroute.cuda;

import jcuda.driver.CUdeviceptr;

/**
 * Conversions between raw device addresses (longs, as the pool and other frameworks hand them over)
 * and JCuda's {@link CUdeviceptr}.
 */
public final class DevicePointers {
    private DevicePointers() {}

    /**
     * A CUdeviceptr for a raw address: JCuda passes base + byte offset to the driver.
     *
     * @param address the device address
     * @return a new pointer with a null base and {@code address} as its byte offset
     */
    public static CUdeviceptr of(long address) {
        return new CUdeviceptr().withByteOffset(address);
    }

    /** A CUdeviceptr that a driver call (cuMemAlloc) fills in and whose address can then be read. */
    static final class Out extends CUdeviceptr {
        long address() {
            return getNativePointer() + getByteOffset();
        }
    }
}
