package io.headroute.cuda;

import jcuda.driver.CUresult;

/**
 * A failed CUDA driver call. The message names the operation with its sizes, the device, and the
 * driver's error name and code, e.g. "cuMemAlloc(4.00 GiB) on GPU 0 (NVIDIA H100, sm_90) failed:
 * CUDA_ERROR_OUT_OF_MEMORY (2)".
 */
public final class CudaException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final int code;

    public CudaException(String operation, String device, int code) {
        super(operation + " on " + device + " failed: " + CUresult.stringFor(code) + " (" + code + ")");
        this.code = code;
    }

    public CudaException(String message) {
        super(message);
        this.code = -1;
    }

    /** The CUresult code, or −1 when the failure did not come from the driver. */
    public int code() {
        return code;
    }

    /** Throws a {@link CudaException} unless {@code code} is CUDA_SUCCESS. */
    public static void check(int code, String operation, String device) {
        if (code != CUresult.CUDA_SUCCESS) {
            throw new CudaException(operation, device, code);
        }
    }
}
