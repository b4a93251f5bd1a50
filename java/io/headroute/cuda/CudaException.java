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

    /**
     * A driver call that returned {@code code}.
     *
     * @param operation the call with its sizes, e.g. "cuMemAlloc(4.00 GiB)"
     * @param device    the device, as {@link CudaDevice#describe()} writes it
     * @param code      the CUresult the driver returned
     */
    public CudaException(String operation, String device, int code) {
        super(operation + " on " + device + " failed: " + CUresult.stringFor(code) + " (" + code + ")");
        this.code = code;
    }

    /**
     * A failure that did not come from a driver call's result (a missing kernel, a driver binding that cannot load);
     * {@link #code()} is −1.
     *
     * @param message one line for the user
     */
    public CudaException(String message) {
        super(message);
        this.code = -1;
    }

    private CudaException(String message, int code, CudaException cause) {
        super(message, cause);
        this.code = code;
    }

    /**
     * This failure with the call it happened in named (e.g. "attention flash hr_flash_fwd_bf16_d128, B=1 ..."): an
     * asynchronous kernel fault is reported by the next driver call that waits (cuEventSynchronize, a copy back),
     * whose own message names only itself. Same code; this exception is the cause.
     *
     * @param call what was running, appended as " (during CALL)"
     * @return a new exception to throw in place of this one
     */
    public CudaException during(String call) {
        return new CudaException(getMessage() + " (during " + call + ")", code, this);
    }

    /** {@return the CUresult code, or −1 when the failure did not come from the driver} */
    public int code() {
        return code;
    }

    /**
     * Throws a {@link CudaException} unless {@code code} is CUDA_SUCCESS.
     *
     * @param code      the CUresult a driver call returned
     * @param operation the call, for the message
     * @param device    the device, for the message
     */
    public static void check(int code, String operation, String device) {
        if (code != CUresult.CUDA_SUCCESS) {
            throw new CudaException(operation, device, code);
        }
    }
}
