package io.headroute.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.cuda.blas.Cublas;
import io.headroute.cuda.blas.CublasLoader;
import io.headroute.cuda.memory.DeviceBuffer;
import io.headroute.cuda.memory.DevicePool;
import io.headroute.cuda.memory.MemoryStats;
import io.headroute.engine.cuda.CudaProbe;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;
import jcuda.Pointer;
import jcuda.driver.CUDA_MEMCPY2D;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmemorytype;
import jcuda.driver.CUmodule;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * headroute's unchanged JCuda/JCublas2 code against the CPU emulator's fake driver and cuBLAS
 * (native/emu/driver). Runs only with {@code -Dheadroute.emulator=true} and the fake libcuda.so.1 first
 * on LD_LIBRARY_PATH ({@code make -C native/emu/driver jvm-test}); skips otherwise.
 */
@Tag("emu")
class EmulatedDriverTest {
    static final String EMULATOR_PROPERTY = "headroute.emulator";
    static final String DEVICE_NAME = "headroute CPU emulator";

    private CudaDevice device;
    private DevicePool pool;
    private CudaStream stream;

    @BeforeEach
    void open() {
        assumeTrue(Boolean.parseBoolean(System.getProperty(EMULATOR_PROPERTY, "false")),
                "not running against the CPU emulator (-D" + EMULATOR_PROPERTY + "=true)");
        device = CudaDevice.open(0);
        pool = DevicePool.create(new JCudaAllocator(device), "emulator test", false);
        stream = CudaStream.create(device);
    }

    @AfterEach
    void close() {
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

    @Test
    void probeSeesTheEmulatedDevice() {
        CudaProbe.Result r = CudaProbe.result();
        assertTrue(r.usable(), r.reason());
        assertEquals(1, r.devices().size());
        CudaProbe.DeviceInfo d = r.devices().get(0);
        assertEquals(DEVICE_NAME, d.name());
        assertEquals("9.0", d.computeCapability());
        assertEquals(expectedTotalBytes(), d.totalMemoryBytes());

        assertEquals(DEVICE_NAME, device.name());
        assertEquals("sm_90", device.smName());
        assertEquals(132, device.multiprocessors());
        assertEquals(227 * 1024, device.maxSharedMemoryPerBlockOptin());
        assertEquals(expectedTotalBytes(), device.totalBytes());
    }

    @Test
    void tensorsRoundTripThroughDeviceMemory() {
        Random rnd = new Random(42);
        float[] x = new float[1037];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        long freeBefore = device.memoryInfo()[0];
        for (DType t : new DType[] {DType.F32, DType.F16, DType.BF16}) {
            Tensor host = Tensor.ofFloats(t, x, 17, 61);
            try (PinnedStaging staging = new PinnedStaging(device, 1024);
                    DeviceTensor direct = DeviceTensor.upload(device, pool, stream, null, host, t, "direct");
                    DeviceTensor staged = DeviceTensor.upload(device, pool, stream, staging, host, t, "staged")) {
                assertTrue(device.memoryInfo()[0] < freeBefore, "cuMemGetInfo's free bytes did not drop");
                assertArrayEquals(host.toFloatArray(), direct.download(stream, null).toFloatArray(), t.cliName());
                assertArrayEquals(host.toFloatArray(), staged.download(stream, staging).toFloatArray(), t.cliName());

                direct.fillBits(t == DType.F32 ? 0x7fc00000 : 0x7fc0, stream); // a NaN in f16 and bf16 alike
                for (float v : direct.download(stream, null).toFloatArray()) {
                    assertTrue(Float.isNaN(v), t.cliName() + " fill left " + v);
                }
            }
        }
        pool.emptyCache();
        assertEquals(freeBefore, device.memoryInfo()[0], "device memory not returned after the pool emptied its cache");
    }

    /** A device-to-device 2-D copy filled in as CudaBlockOps.gatherColumns does: JCuda's struct reaches the driver intact. */
    @Test
    void closedStagingBuffersRefuseUse() {
        PinnedStaging staging = new PinnedStaging(device, 1 << 16);
        staging.close();
        staging.close(); // idempotent
        org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> staging.download(0, ByteBuffer.allocate(16), 16, stream));
        org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> staging.upload(ByteBuffer.allocate(16), 0, stream));
    }

    @Test
    void copy2dGathersColumns() {
        int rows = 5;
        int srcCols = 7;
        float[] x = new float[rows * srcCols];
        for (int i = 0; i < x.length; i++) {
            x[i] = i;
        }
        try (DeviceTensor src = DeviceTensor.upload(device, pool, stream, null, Tensor.ofFloats(x, rows, srcCols), DType.F32, "src");
                DeviceTensor dst = DeviceTensor.allocate(device, pool, DType.F32, "dst", rows, 2)) {
            CUDA_MEMCPY2D c = new CUDA_MEMCPY2D();
            c.srcMemoryType = CUmemorytype.CU_MEMORYTYPE_DEVICE;
            c.srcDevice = DevicePointers.of(src.address() + 4L * 3);
            c.srcPitch = 4L * srcCols;
            c.dstMemoryType = CUmemorytype.CU_MEMORYTYPE_DEVICE;
            c.dstDevice = DevicePointers.of(dst.address());
            c.dstPitch = 4L * 2;
            c.WidthInBytes = 4L * 2;
            c.Height = rows;
            device.makeCurrent();
            CudaException.check(JCudaDriver.cuMemcpy2DAsync(c, stream.handle()), "cuMemcpy2DAsync", device.describe());
            float[] got = dst.download(stream, null).toFloatArray();
            for (int r = 0; r < rows; r++) {
                assertEquals(x[r * srcCols + 3], got[r * 2], "row " + r);
                assertEquals(x[r * srcCols + 4], got[r * 2 + 1], "row " + r);
            }
        }
    }

    @Test
    void eventsMeasureHostTime() throws InterruptedException {
        try (CudaEvent start = new CudaEvent(device); CudaEvent end = new CudaEvent(device)) {
            start.record(stream);
            Thread.sleep(20);
            end.record(stream);
            end.synchronize();
            float ms = end.millisSince(start);
            assertTrue(ms >= 19 && ms < 10_000, "elapsed " + ms + " ms for a 20 ms sleep");
        }
    }

    /**
     * The pool's poison mode through the driver (set for test runs in pom.xml): a block handed out again from the
     * cache reads NaN everywhere, not the values its last buffer held.
     */
    @Test
    void poisonedPoolHandsOutNanFromTheCacheToo() {
        assertTrue(pool.isPoisoning(), "pom.xml sets " + DevicePool.POISON_PROPERTY + " for test runs");
        float[] x = new float[1000];
        java.util.Arrays.fill(x, 1.5f);
        long addr;
        try (DeviceTensor t = DeviceTensor.upload(device, pool, stream, null, Tensor.ofFloats(DType.F32, x, 1000), DType.F32,
                "p")) {
            assertArrayEquals(x, t.download(stream, null).toFloatArray());
            addr = t.address();
        }
        try (DeviceTensor again = DeviceTensor.allocate(device, pool, DType.F32, "p", 1000)) {
            assertEquals(addr, again.address(), "the same block, from the cache");
            for (float v : again.download(stream, null).toFloatArray()) {
                assertTrue(Float.isNaN(v), "a cached block kept " + v);
            }
        }
    }

    /**
     * A stream's fence through the driver (an untimed event, cuEventQuery): the pool takes back a buffer closed
     * after it at the next allocation (the emulator runs work when it is queued, so the fence is complete) and
     * destroys the event; an untimed event refuses timing.
     */
    @Test
    void streamFenceReturnsABufferClosedAfterIt() {
        DeviceBuffer a = pool.allocate(4096, "fenced");
        long addr = a.address();
        CudaEvent fence = stream.fence();
        assertTrue(fence.isComplete());
        fence.await();
        a.closeAfter(fence);
        MemoryStats s = pool.stats(); // takes back the completed fence's buffer
        assertEquals(0, s.pendingBuffers(), s.toString());
        assertEquals(0, s.allocatedBytes(), s.toString());
        try (DeviceBuffer b = pool.allocate(4096, "fenced")) {
            assertEquals(addr, b.address(), "the block came back to the cache");
        }
        assertThrows(IllegalStateException.class, fence::isComplete, "the pool closed the fence");
        try (CudaEvent untimed = new CudaEvent(device, false); CudaEvent timed = new CudaEvent(device)) {
            timed.record(stream);
            untimed.record(stream);
            CudaException e = assertThrows(CudaException.class, () -> untimed.millisSince(timed));
            assertTrue(e.getMessage().contains("cuEventElapsedTime"), e.getMessage());
        }
    }

    /**
     * A launch with KernelModule's argument marshalling (one by-value struct as {@code Pointer.to(Pointer.to(bytes))})
     * of the test stub's kernel hr_emu_test_fill(struct {float* out; int n; float value;}). Skips when the linked
     * runtime is the real one, which has no such kernel.
     */
    @Test
    void launchPassesTheParameterStruct() {
        CUmodule module = new CUmodule();
        CudaException.check(JCudaDriver.cuModuleLoadData(module, new byte[] {1, 2, 3, 4}), "cuModuleLoadData", device.describe());
        try (DeviceTensor out = DeviceTensor.allocate(device, pool, DType.F32, "out", 300)) {
            CUfunction f = new CUfunction();
            int rc = JCudaDriver.cuModuleGetFunction(f, module, "hr_emu_test_fill");
            assumeTrue(rc != CUresult.CUDA_ERROR_NOT_FOUND, "the linked emulator runtime has no hr_emu_test_fill");
            CudaException.check(rc, "cuModuleGetFunction(hr_emu_test_fill)", device.describe());
            byte[] params = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(out.address()).putInt(250)
                    .putFloat(-3.25f).array();
            CudaException.check(JCudaDriver.cuLaunchKernel(f, 2, 1, 1, 128, 1, 1, 0, stream.handle(),
                    Pointer.to(Pointer.to(params)), null), "cuLaunchKernel(hr_emu_test_fill)", device.describe());
            float[] got = out.download(stream, null).toFloatArray();
            for (int i = 0; i < got.length; i++) {
                if (i < 250) {
                    assertEquals(-3.25f, got[i], "out[" + i + "]");
                } else {
                    assertTrue(Float.isNaN(got[i]), "out[" + i + "] = " + got[i] + " should still hold the allocation's poison");
                }
            }
        } finally {
            CudaException.check(JCudaDriver.cuModuleUnload(module), "cuModuleUnload", device.describe());
        }
    }

    /**
     * GEMMs through JCublas2, the cuBLAS 12 shim and the fake cuBLAS 13 (f32 plain, bf16 → f32 strided batched with
     * transposed A), against a double reference on the same rounded inputs.
     */
    @Test
    void gemmThroughJCublas() {
        CublasLoader.Resolution r = CublasLoader.resolve();
        assumeTrue(r.source() != CublasLoader.Source.ABSENT, "no cuBLAS: " + r.detail());
        try (Cublas blas = Cublas.create(device)) {
            assertNotEquals(0, blas.version());
            checkGemm(blas, DType.F32, false, 37, 23, 19, 1);
            checkGemm(blas, DType.BF16, true, 21, 17, 33, 3);
        }
    }

    /** C[b] = 1.5 · op(A[b]) · B[b] (column-major, batch b), C poisoned with NaN first: beta = 0 must not read it. */
    private void checkGemm(Cublas blas, DType ab, boolean transA, int m, int n, int k, int batch) {
        Random rnd = new Random(7);
        float[] a = new float[batch * m * k]; // per batch: m × k, or k × m when transposed
        float[] b = new float[batch * k * n];
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) rnd.nextGaussian();
        }
        for (int i = 0; i < b.length; i++) {
            b[i] = (float) rnd.nextGaussian();
        }
        try (DeviceTensor da = DeviceTensor.upload(device, pool, stream, null, Tensor.ofFloats(a, a.length), ab, "a");
                DeviceTensor db = DeviceTensor.upload(device, pool, stream, null, Tensor.ofFloats(b, b.length), ab, "b");
                DeviceTensor dc = DeviceTensor.allocate(device, pool, DType.F32, "c", (long) batch * m * n)) {
            float[] ar = da.download(stream, null).toFloatArray(); // the rounded inputs the GEMM sees
            float[] br = db.download(stream, null).toFloatArray();
            dc.fillBits(0x7fc00000, stream);
            int lda = transA ? k : m;
            if (batch == 1) {
                blas.gemm(stream, transA, false, m, n, k, 1.5f, da.address(), lda, db.address(), k, 0f, dc.address(), m, ab,
                        DType.F32);
            } else {
                blas.gemmStridedBatched(stream, transA, false, m, n, k, 1.5f, da.address(), lda, (long) m * k, db.address(), k,
                        (long) k * n, 0f, dc.address(), m, (long) m * n, batch, ab, DType.F32);
            }
            float[] c = dc.download(stream, null).toFloatArray();
            for (int q = 0; q < batch; q++) {
                for (int j = 0; j < n; j++) {
                    for (int i = 0; i < m; i++) {
                        double want = 0;
                        for (int p = 0; p < k; p++) {
                            double av = ar[q * m * k + (transA ? i * lda + p : p * lda + i)];
                            want += av * br[q * k * n + j * k + p];
                        }
                        want *= 1.5;
                        double got = c[q * m * n + j * m + i];
                        assertTrue(Math.abs(got - want) <= 1e-5 * Math.max(1, Math.abs(want)),
                                ab.cliName() + " batch " + q + ": C(" + i + ", " + j + ") = " + got + ", want " + want);
                    }
                }
            }
        }
    }

    private static long expectedTotalBytes() {
        String env = System.getenv("HR_EMU_MEMORY_BYTES");
        return env == null || env.isBlank() ? 16L << 30 : Long.parseLong(env.strip());
    }
}
