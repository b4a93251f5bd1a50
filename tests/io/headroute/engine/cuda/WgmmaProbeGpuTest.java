package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.CudaStream;
import io.headroute.cuda.DeviceTensor;
import io.headroute.cuda.JCudaAllocator;
import io.headroute.cuda.KernelModule;
import io.headroute.cuda.memory.DevicePool;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The wgmma operand layouts of the WG and WGP kernels on their own (hr_wgmma_probe_k, hr_wgmma_probe_mn in
 * flash_fwd_wgmma.cu): one m64n64k16 product with B stored as a K tile (K-major) or a V tile (MN-major)
 * through the kernels' own tile offsets and descriptors, against a plain product of the same bf16 values. On
 * a GPU this separates a misread descriptor from a bug in the attention loop; on the emulator it checks the
 * probes against the emulator's reading. Needs compute capability 9.0 (skips elsewhere).
 */
@Tag("gpu")
class WgmmaProbeGpuTest {
    private static CudaDevice device;
    private static DevicePool pool;
    private static CudaStream stream;
    private static KernelModule module;

    @BeforeAll
    static void open() {
        CudaProbe.Result probe = CudaProbe.result();
        assumeTrue(probe.usable(), "no usable GPU: " + probe.reason());
        assumeTrue(KernelModule.packaged(FlashPlan.WGMMA_MODULE), "the build has no wgmma kernels (built without nvcc)");
        device = CudaDevice.open(0);
        if (device.computeCapabilityMajor() != 9 || device.computeCapabilityMinor() != 0) {
            String sm = device.smName();
            device.close();
            device = null;
            assumeTrue(false, "the wgmma kernels need compute capability 9.0; this GPU is " + sm);
        }
        pool = DevicePool.create(new JCudaAllocator(device), "wgmma-probe-test", true);
        stream = CudaStream.create(device);
        module = KernelModule.load(device, FlashPlan.WGMMA_MODULE);
    }

    @AfterAll
    static void close() {
        if (module != null) {
            module.close();
        }
        if (stream != null) {
            stream.close();
        }
        if (pool != null) {
            pool.close(); // throws if a buffer leaked
        }
        if (device != null) {
            device.close();
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"hr_wgmma_probe_k", "hr_wgmma_probe_mn"})
    void probeComputesTheProductOfItsOperands(String kernel) {
        Random r = new Random(kernel.hashCode());
        float[] a = new float[64 * 16];
        float[] b = new float[16 * 64];
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) r.nextGaussian();
        }
        for (int i = 0; i < b.length; i++) {
            b[i] = (float) r.nextGaussian();
        }
        Tensor at = Tensor.ofFloats(a, 64, 16).toDType(DType.BF16);
        Tensor bt = Tensor.ofFloats(b, 16, 64).toDType(DType.BF16);
        float[] ar = at.toFloatArray();
        float[] br = bt.toFloatArray();
        float[] nan = new float[64 * 64];
        Arrays.fill(nan, Float.NaN);
        float[] got;
        try (DeviceTensor ad = DeviceTensor.upload(device, pool, stream, null, at, DType.BF16, "probe");
                DeviceTensor bd = DeviceTensor.upload(device, pool, stream, null, bt, DType.BF16, "probe");
                DeviceTensor dd = DeviceTensor.upload(device, pool, stream, null, Tensor.ofFloats(nan, 64, 64), DType.F32, "probe")) {
            ByteBuffer p = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN);
            p.putLong(ad.address()).putLong(bd.address()).putLong(dd.address());
            // B's 64-key tile: 64 × 64 bf16 of dynamic shared memory.
            module.launch(kernel, 1, 1, 1, 128, 64 * 64 * 2, stream, p.array());
            got = dd.download(stream, null).toFloatArray();
        }
        double num = 0;
        double den = 0;
        for (int i = 0; i < 64; i++) {
            for (int n = 0; n < 64; n++) {
                double s = 0;
                for (int k = 0; k < 16; k++) {
                    s += (double) ar[i * 16 + k] * br[k * 64 + n];
                }
                float g = got[i * 64 + n];
                assertTrue(Float.isFinite(g), kernel + ": D[" + i + "][" + n + "] = " + g + " (unwritten or NaN)");
                num += (g - s) * (g - s);
                den += s * s;
            }
        }
        double rel = Math.sqrt(num / den);
        // fp32 accumulation of 16 exact bf16 products: only the sum's rounding differs.
        assertTrue(rel <= 1e-5, kernel + ": relative L2 error " + rel + " of D = A·B");
        assertEquals(0, pool.stats().allocatedBytes(), "device memory still allocated: " + pool.stats());
    }
}
