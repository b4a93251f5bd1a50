package io.headroute.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.JCudaAllocator;
import io.headroute.cuda.KernelModule;
import io.headroute.cuda.memory.DeviceBuffer;
import io.headroute.cuda.memory.DevicePool;
import io.headroute.engine.cuda.CudaProbe;
import io.headroute.model.gpu.BlockOps;
import io.headroute.model.gpu.CudaBlockOps;
import io.headroute.tensor.DType;
import io.headroute.tensor.HalfFloats;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The block kernels (block_ops.cu) and the projections' GEMM mapping against their CPU twins
 * ({@link BlockMath}, {@link RotaryTable}) on fresh random inputs with odd sizes, outputs poisoned with
 * NaN first. Tolerances by dtype (relative L2: 1e-5 f32, 2e-3 f16, 1e-2 bf16). Needs no attention.
 * Skips itself without a usable GPU.
 */
@Tag("gpu")
class BlockOpsGpuTest {
    private static CudaDevice device;
    private static DevicePool pool;
    private static CudaBlockOps ops;

    @BeforeAll
    static void open() {
        CudaProbe.Result probe = CudaProbe.result();
        assumeTrue(probe.usable(), "no usable GPU: " + probe.reason());
        assumeTrue(KernelModule.packaged(CudaBlockOps.MODULE), "the build has no block_ops kernels (built without nvcc)");
        device = CudaDevice.open(0);
        pool = DevicePool.create(new JCudaAllocator(device), "block-ops-test", true);
        ops = new CudaBlockOps(device, null);
    }

    @AfterAll
    static void close() {
        if (ops != null) {
            ops.close();
        }
        if (pool != null) {
            pool.close(); // throws if a buffer leaked
        }
        if (device != null) {
            device.close();
        }
    }

    @AfterEach
    void nothingLeft() {
        if (pool != null) {
            assertEquals(0, pool.stats().allocatedBytes(), "device memory still allocated: " + pool.stats());
        }
    }

    static double tolerance(DType t) {
        return t.tolerance();
    }

    /** Values rounded to dtype, so CPU and GPU start from the same numbers. */
    static float[] gaussian(Random r, int n, DType dt, double scale) {
        float[] x = new float[n];
        Rounding round = Rounding.of(dt);
        for (int i = 0; i < n; i++) {
            x[i] = round.apply((float) (r.nextGaussian() * scale));
        }
        return x;
    }

    static ByteBuffer bytes(float[] v, DType dt) {
        ByteBuffer b = ByteBuffer.allocateDirect(v.length * dt.byteSize()).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) {
            switch (dt) {
                case F32 -> b.putFloat(f);
                case F16 -> b.putShort(HalfFloats.floatToF16(f));
                default -> b.putShort(HalfFloats.floatToBf16(f));
            }
        }
        return b.flip();
    }

    static float[] floats(ByteBuffer b, int n, DType dt) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = switch (dt) {
                case F32 -> b.getFloat(4 * i);
                case F16 -> HalfFloats.f16ToFloat(b.getShort(2 * i));
                default -> HalfFloats.bf16ToFloat(b.getShort(2 * i));
            };
        }
        return v;
    }

    static DeviceBuffer upload(float[] v, DType dt) {
        DeviceBuffer d = pool.allocate((long) v.length * dt.byteSize(), "test");
        ops.upload(bytes(v, dt), d.address(), BlockOps.Lane.COMPUTE);
        return d;
    }

    static DeviceBuffer poisoned(int n, DType dt) {
        float[] nan = new float[n];
        java.util.Arrays.fill(nan, Float.NaN);
        return upload(nan, dt);
    }

    static float[] download(DeviceBuffer d, int n, DType dt) {
        ByteBuffer b = ByteBuffer.allocateDirect(n * dt.byteSize()).order(ByteOrder.LITTLE_ENDIAN);
        ops.download(d.address(), b);
        return floats(b, n, dt);
    }

    static void assertClose(float[] got, float[] want, DType dt, String what) {
        double num = 0;
        double den = 0;
        for (int i = 0; i < want.length; i++) {
            assertTrue(Float.isFinite(got[i]), what + ": element " + i + " = " + got[i]);
            num += (double) (got[i] - want[i]) * (got[i] - want[i]);
            den += (double) want[i] * want[i];
        }
        double rel = Math.sqrt(num / den);
        assertTrue(rel <= tolerance(dt), what + ": relative error " + rel + " > " + tolerance(dt));
    }

    /** Scale 1e20 and 1e30: x² overflows fp32, the rows are normalized by their largest |x| first. */
    @ParameterizedTest(name = "rmsnorm {0} rows={1} d={2} scale={3}")
    @CsvSource({"f32, 37, 1000, 3", "f16, 5, 64, 3", "bf16, 130, 4096, 3", "f32, 1, 7, 3", "bf16, 3, 257, 3",
            "f32, 9, 1000, 1e20", "bf16, 4, 257, 1e30"})
    void rmsNormMatchesItsTwin(String dtype, int rows, int d, double scale) {
        DType dt = DType.parse(dtype);
        Random r = new Random(rows * 31L + d);
        float[] x = gaussian(r, rows * d, dt, scale);
        float[] gamma = gaussian(r, d, dt, 1.0);
        float[] want = BlockMath.rmsNorm(x, rows, d, gamma, 1e-5, Rounding.of(dt));
        try (DeviceBuffer xd = upload(x, dt); DeviceBuffer gd = upload(gamma, dt); DeviceBuffer od = poisoned(rows * d, dt)) {
            ops.rmsNorm(xd.address(), gd.address(), od.address(), rows, d, 1e-5f, dt);
            assertClose(download(od, rows * d, dt), want, dt, "rmsnorm " + dtype);
        }
    }

    @ParameterizedTest(name = "rope {0} B={1} L={2} heads={3} D={4}")
    @CsvSource({"f32, 2, 45, 3, 6", "f16, 1, 300, 4, 64", "bf16, 2, 77, 2, 128", "f32, 1, 5000, 1, 128"})
    void ropeMatchesItsTwin(String dtype, int b, int len, int heads, int hd) {
        DType dt = DType.parse(dtype);
        Random r = new Random(len * 7L + hd);
        float[] x = gaussian(r, b * len * heads * hd, dt, 1.0);
        RotaryTable table = RotaryTable.of(len, hd, 10000.0);
        float[] want = x.clone();
        table.apply(want, b, heads, hd, Rounding.of(dt));
        float[] cs = table.cosSin();
        try (DeviceBuffer xd = upload(x, dt); DeviceBuffer td = upload(cs, DType.F32)) {
            ops.rope(xd.address(), td.address(), (long) heads * hd, b, len, heads, hd, dt);
            assertClose(download(xd, x.length, dt), want, dt, "rope " + dtype);
        }
    }

    @ParameterizedTest(name = "gemm {0} {1}x{2}x{3} beta={4}")
    @CsvSource({"f32, 77, 45, 33, 0", "f32, 77, 45, 33, 1", "f16, 130, 64, 96, 0", "bf16, 19, 128, 48, 1"})
    void projectionGemmIsRowMajorXTimesW(String dtype, int rows, int k, int n, int beta) {
        DType dt = DType.parse(dtype);
        assumeTrue(io.headroute.cuda.blas.CublasLoader.resolve().source() != io.headroute.cuda.blas.CublasLoader.Source.ABSENT,
                () -> "no cuBLAS: " + io.headroute.cuda.blas.CublasLoader.resolve().detail());
        Random r = new Random(rows + 13L * k + n);
        float[] a = gaussian(r, rows * k, dt, 1.0);
        float[] w = gaussian(r, k * n, dt, 1.0 / Math.sqrt(k));
        float[] c = gaussian(r, rows * n, dt, 1.0);
        float[] want = BlockMath.matmul(a, rows, k, w, n);
        Rounding round = Rounding.of(dt);
        for (int i = 0; i < want.length; i++) {
            want[i] = round.apply(beta * c[i] + want[i]);
        }
        try (DeviceBuffer ad = upload(a, dt); DeviceBuffer wd = upload(w, dt);
                DeviceBuffer cd = beta == 0 ? poisoned(rows * n, dt) : upload(c, dt)) {
            ops.gemm(ad.address(), wd.address(), cd.address(), rows, k, n, beta, dt);
            assertClose(download(cd, rows * n, dt), want, dt, "gemm " + dtype);
        }
    }
}
