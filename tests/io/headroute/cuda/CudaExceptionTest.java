package io.headroute.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;

import org.junit.jupiter.api.Test;

class CudaExceptionTest {
    /** An asynchronous fault surfaces at a wait; the call it happened in is added to the wait's message, code kept. */
    @Test
    void duringNamesTheCallAndKeepsTheCode() {
        CudaException wait = new CudaException("cuEventSynchronize", "GPU 0 (NVIDIA H200, sm_90)", 700);
        CudaException e = wait.during("attention flash (hr_flash_fwd_wgpx2_bf16_d128, B=1 H=16, bf16)");
        assertEquals("cuEventSynchronize on GPU 0 (NVIDIA H200, sm_90) failed: CUDA_ERROR_ILLEGAL_ADDRESS (700) (during"
                + " attention flash (hr_flash_fwd_wgpx2_bf16_d128, B=1 H=16, bf16))", e.getMessage());
        assertEquals(700, e.code());
        assertSame(wait, e.getCause());
    }
}
