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
 * probes against the emulator's reading. Then the loop's own steps at D = 128 (hr_wgmma_probe_s_*,
 * hr_wgmma_probe_pv_*): chained accumulating products, descriptor steps, f16, the cp.async loader. Needs compute
 * capability 9.0 (skips elsewhere).
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
        // fp32 accumulation of 16 exact bf16 products: only the sum's rounding differs.
        assertProduct(kernel + ": D = A·B", got, 64, (i, n) -> {
            double s = 0;
            for (int k = 0; k < 16; k++) {
                s += (double) ar[i * 16 + k] * br[k * 64 + n];
            }
            return s;
        });
    }

    /** The exact value of D[i][j]. */
    private interface Element {
        double at(int i, int j);
    }

    /** D (64 × n, row-major) finite everywhere and within 1e-5 relative L2 of {@code want}; no device memory left. */
    private static void assertProduct(String what, float[] got, int n, Element want) {
        double num = 0;
        double den = 0;
        for (int i = 0; i < 64; i++) {
            for (int j = 0; j < n; j++) {
                double s = want.at(i, j);
                float g = got[i * n + j];
                assertTrue(Float.isFinite(g), what + ": D[" + i + "][" + j + "] = " + g + " (unwritten or NaN)");
                num += (g - s) * (g - s);
                den += s * s;
            }
        }
        double rel = Math.sqrt(num / den);
        assertTrue(rel <= 1e-5, what + ": relative L2 error " + rel);
        assertEquals(0, pool.stats().allocatedBytes(), "device memory still allocated: " + pool.stats());
    }

    /**
     * The attention loop's own wgmma steps at D = 128 (hr_wgmma_probe_s_*, hr_wgmma_probe_pv_*): the tile loaded by the
     * kernels' cp.async loader into the second buffer, the kernels' issue functions stepping their descriptors through
     * k (and O's two 64-column halves), every product accumulating onto a random C. Each mistake the single products
     * cannot show (scale-d inverted, a descriptor step or a non-zero start misread, f16, the cp.async-to-wgmma path, P's
     * packing) gives an error of order 1 here.
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"hr_wgmma_probe_s_bf16", "hr_wgmma_probe_s_f16", "hr_wgmma_probe_pv_bf16", "hr_wgmma_probe_pv_f16"})
    void chainedProductsAccumulate(String kernel) {
        boolean pv = kernel.contains("_pv_");
        DType dt = kernel.endsWith("f16") && !kernel.endsWith("bf16") ? DType.F16 : DType.BF16;
        int d = 128;
        int keys = 64;
        int n = pv ? d : keys; // D's columns
        int kDim = pv ? keys : d; // the products' k
        Random r = new Random(kernel.hashCode());
        // A: Q (64 x 128) or P (64 x 64, non-negative like softmax weights); B: K or V (64 keys x 128).
        float[] a = new float[64 * kDim];
        for (int i = 0; i < a.length; i++) {
            a[i] = pv ? r.nextFloat() : (float) r.nextGaussian();
        }
        float[] b = new float[keys * d];
        for (int i = 0; i < b.length; i++) {
            b[i] = (float) r.nextGaussian();
        }
        float[] c = new float[64 * n];
        for (int i = 0; i < c.length; i++) {
            c[i] = (float) r.nextGaussian();
        }
        Tensor at = Tensor.ofFloats(a, 64, kDim).toDType(dt);
        Tensor bt = Tensor.ofFloats(b, keys, d).toDType(dt);
        float[] ar = at.toFloatArray();
        float[] br = bt.toFloatArray();
        float[] nan = new float[64 * n];
        Arrays.fill(nan, Float.NaN);
        float[] got;
        // P goes in as fp32 holding its rounded values (the kernel packs it); Q as the dtype.
        try (DeviceTensor ad = pv ? DeviceTensor.upload(device, pool, stream, null, Tensor.ofFloats(ar, 64, kDim), DType.F32, "probe")
                        : DeviceTensor.upload(device, pool, stream, null, at, dt, "probe");
                DeviceTensor bd = DeviceTensor.upload(device, pool, stream, null, bt, dt, "probe");
                DeviceTensor cd = DeviceTensor.upload(device, pool, stream, null, Tensor.ofFloats(c, 64, n), DType.F32, "probe");
                DeviceTensor dd = DeviceTensor.upload(device, pool, stream, null, Tensor.ofFloats(nan, 64, n), DType.F32, "probe")) {
            ByteBuffer p = ByteBuffer.allocate(32).order(ByteOrder.LITTLE_ENDIAN);
            p.putLong(ad.address()).putLong(bd.address()).putLong(cd.address()).putLong(dd.address());
            // Two D = 128 key tiles of dynamic shared memory; the probe uses the second.
            module.launch(kernel, 1, 1, 1, 128, 2 * keys * d * 2, stream, p.array());
            got = dd.download(stream, null).toFloatArray();
        }
        // fp32 accumulation of exact f16/bf16 products onto C: only the sums' rounding differs.
        assertProduct(kernel + ": D = C + A·B", got, n, (i, j) -> {
            double s = c[i * n + j];
            for (int k = 0; k < kDim; k++) {
                // S = Q·Kᵀ: K's row j; P·V: V's row k.
                s += pv ? (double) ar[i * kDim + k] * br[k * d + j] : (double) ar[i * kDim + k] * br[j * d + k];
            }
            return s;
        });
    }
}
