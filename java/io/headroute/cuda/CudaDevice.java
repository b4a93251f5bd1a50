package io.headroute.cuda;

import static jcuda.driver.JCudaDriver.cuCtxSetCurrent;
import static jcuda.driver.JCudaDriver.cuCtxSynchronize;
import static jcuda.driver.JCudaDriver.cuDeviceGet;
import static jcuda.driver.JCudaDriver.cuDeviceGetAttribute;
import static jcuda.driver.JCudaDriver.cuDeviceGetName;
import static jcuda.driver.JCudaDriver.cuDevicePrimaryCtxRelease;
import static jcuda.driver.JCudaDriver.cuDevicePrimaryCtxRetain;
import static jcuda.driver.JCudaDriver.cuDeviceTotalMem;
import static jcuda.driver.JCudaDriver.cuInit;
import static jcuda.driver.JCudaDriver.cuMemGetInfo;

import java.nio.charset.StandardCharsets;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.JCudaDriver;

/**
 * One GPU and its primary context (the context the CUDA runtime and other frameworks share). Every
 * thread that touches the GPU calls {@link #makeCurrent()} first; headroute's GPU classes do so on
 * each public call. Closing releases the primary context once.
 */
public final class CudaDevice implements AutoCloseable {
    private final int ordinal;
    private final CUdevice device;
    private final CUcontext context;
    private final String name;
    private final int ccMajor;
    private final int ccMinor;
    private final int multiprocessors;
    private final long totalBytes;
    private final int maxSharedPerBlockOptin;
    private boolean closed;

    private CudaDevice(int ordinal) {
        String where = "GPU " + ordinal;
        try {
            JCudaDriver.setExceptionsEnabled(false);
        } catch (LinkageError e) {
            // JCuda's native binding failed to load (no driver): an Error of many lines, then NoClassDefFoundError on
            // every later call. A caller catching RuntimeException gets one line instead.
            throw new CudaException(where + ": JCuda's driver binding cannot be loaded (" + loadFailure(e)
                    + "); is the NVIDIA driver (libcuda.so.1) installed?");
        }
        CudaException.check(cuInit(0), "cuInit", where);
        this.ordinal = ordinal;
        this.device = new CUdevice();
        CudaException.check(cuDeviceGet(device, ordinal), "cuDeviceGet(" + ordinal + ")", where);
        byte[] nameBytes = new byte[256];
        CudaException.check(cuDeviceGetName(nameBytes, nameBytes.length, device), "cuDeviceGetName", where);
        int len = 0;
        while (len < nameBytes.length && nameBytes[len] != 0) {
            len++;
        }
        this.name = new String(nameBytes, 0, len, StandardCharsets.UTF_8);
        this.ccMajor = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, where);
        this.ccMinor = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, where);
        this.multiprocessors = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, where);
        this.maxSharedPerBlockOptin = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, where);
        long[] total = new long[1];
        CudaException.check(cuDeviceTotalMem(total, device), "cuDeviceTotalMem", where);
        this.totalBytes = total[0];
        this.context = new CUcontext();
        CudaException.check(cuDevicePrimaryCtxRetain(context, device), "cuDevicePrimaryCtxRetain", describe());
        makeCurrent();
    }

    /** The line of a failed native load that names what is missing, else its first line. */
    private static String loadFailure(LinkageError e) {
        String all = String.valueOf(e.getMessage());
        return all.lines().map(String::strip).filter(l -> l.contains("cannot open shared object file")).findFirst()
                .orElse(e.getClass().getSimpleName() + ": " + all.lines().findFirst().orElse("").strip());
    }

    /**
     * Opens GPU {@code ordinal}: initializes the driver and retains its primary context, which becomes current on
     * the calling thread.
     *
     * @param ordinal the CUDA device index, from 0
     * @return the open device; closing it releases the primary context
     * @throws CudaException when the driver cannot be loaded or initialized, or there is no such device
     */
    public static CudaDevice open(int ordinal) {
        return new CudaDevice(ordinal);
    }

    private int attribute(int attr, String where) {
        int[] v = new int[1];
        CudaException.check(cuDeviceGetAttribute(v, attr, device), "cuDeviceGetAttribute(" + attr + ")", where);
        return v[0];
    }

    /**
     * Makes this device's primary context current on the calling thread.
     *
     * @throws IllegalStateException when the device is closed
     * @throws CudaException         when the driver refuses
     */
    public void makeCurrent() {
        if (closed) {
            throw new IllegalStateException(describe() + " is closed");
        }
        CudaException.check(cuCtxSetCurrent(context), "cuCtxSetCurrent", describe());
    }

    /**
     * Waits for all work on the device's context, on every stream.
     *
     * @throws CudaException when the driver reports a failure, such as an earlier kernel's fault
     */
    public void synchronize() {
        makeCurrent();
        CudaException.check(cuCtxSynchronize(), "cuCtxSynchronize", describe());
    }

    /** {@return {free, total} device memory in bytes right now}; free counts what every process left. */
    public long[] memoryInfo() {
        makeCurrent();
        long[] free = new long[1];
        long[] total = new long[1];
        CudaException.check(cuMemGetInfo(free, total), "cuMemGetInfo", describe());
        return new long[] {free[0], total[0]};
    }

    /** {@return the CUDA device index this device was opened with} */
    public int ordinal() {
        return ordinal;
    }

    /** {@return the driver's product name, e.g. "NVIDIA H100 80GB HBM3"} */
    public String name() {
        return name;
    }

    /** {@return the compute capability's major version: 9 for sm_90} */
    public int computeCapabilityMajor() {
        return ccMajor;
    }

    /** {@return the compute capability's minor version: 0 for sm_90} */
    public int computeCapabilityMinor() {
        return ccMinor;
    }

    /** {@return the SM name, "sm_90" for compute capability 9.0} */
    public String smName() {
        return "sm_" + ccMajor + ccMinor;
    }

    /** {@return the streaming multiprocessors (SMs) on the device} */
    public int multiprocessors() {
        return multiprocessors;
    }

    /** {@return the device's total memory in bytes, as the driver reports it at open} */
    public long totalBytes() {
        return totalBytes;
    }

    /** {@return the most shared memory one block may opt in to, in bytes} */
    public int maxSharedMemoryPerBlockOptin() {
        return maxSharedPerBlockOptin;
    }

    CUdevice handle() {
        return device;
    }

    /** {@return the device for messages: "GPU 0 (NVIDIA H100 80GB HBM3, sm_90)"} */
    public String describe() {
        return "GPU " + ordinal + " (" + name + ", " + smName() + ")";
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        CudaException.check(cuDevicePrimaryCtxRelease(device), "cuDevicePrimaryCtxRelease", describe());
    }

    @Override
    public String toString() {
        return describe();
    }
}
