package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * What the GPU test classes do first and last: skip without a usable GPU or without kernels in the build,
 * open the engine and check that nothing stayed allocated (closing: {@link io.headroute.cuda.Resources#closeAll}).
 */
public final class GpuTests {
    private GpuTests() {}

    /** Skips the calling test (an assumption) unless a GPU, or the emulator, is usable and the build has kernels. */
    public static void assumeGpu() {
        CudaProbe.Result probe = CudaProbe.result();
        assumeTrue(probe.usable(), "no usable GPU: " + probe.reason());
        assumeTrue(CudaAttentionEngine.kernelsPackaged(), "the build has no CUDA kernels (built without nvcc)");
    }

    /** {@link #assumeGpu}, then the engine on device 0; with {@code poisonOutputs} outputs are NaN before every run. */
    public static CudaAttentionEngine openEngine(boolean poisonOutputs) {
        assumeGpu();
        CudaAttentionEngine gpu = CudaAttentionEngine.open(0);
        gpu.setPoisonOutputs(poisonOutputs);
        return gpu;
    }

    /** Drops the cached sparse layouts, then asserts that the engine's pool holds no device memory. */
    public static void assertNothingAllocated(CudaAttentionEngine gpu) {
        if (gpu != null) {
            gpu.clearLayoutCache();
            assertEquals(0, gpu.pool().stats().allocatedBytes(), "device memory still allocated: " + gpu.pool().stats());
        }
    }
}
