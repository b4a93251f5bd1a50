package io.headroute.routing;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.cuda.CudaStream;
import io.headroute.cuda.DeviceTensor;
import io.headroute.cuda.blas.CublasLoader;
import io.headroute.engine.cuda.CudaProbe;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The GPU router (cuBLAS GEMM + hr_router_topk) against its CPU twin. Grid inputs make the logits
 * exact on both sides, so the selections must agree exactly (ties included) and the gates within the
 * fp32 tolerance 1e-5 relative. Skips itself without a usable GPU, the router kernel or cuBLAS.
 */
@Tag("gpu")
class CudaHeadRouterGpuTest {
    private static CudaHeadRouter gpu;
    private static CpuHeadRouter cpu;

    @BeforeAll
    static void open() {
        CudaProbe.Result probe = CudaProbe.result();
        assumeTrue(probe.usable(), "no usable GPU: " + probe.reason());
        assumeTrue(CudaHeadRouter.kernelsPackaged(), "the build has no router kernel (built without nvcc)");
        assumeTrue(CublasLoader.resolve().source() != CublasLoader.Source.ABSENT, "no cuBLAS: " + CublasLoader.resolve().detail());
        gpu = CudaHeadRouter.open(0);
        cpu = new CpuHeadRouter(Runtime.getRuntime().availableProcessors());
    }

    @AfterAll
    static void close() {
        if (cpu != null) {
            cpu.close();
        }
        if (gpu != null) {
            gpu.close(); // throws if a device buffer leaked
        }
    }

    /** A closed router says so, before it touches its (closed) pool; a second close is harmless. */
    @Test
    void aClosedRouterSaysItIsClosed() {
        RouterConfig config = new RouterConfig(0, 2, 1, 1);
        Tensor x = Tensor.ofFloats(new float[] {1, 2, 3, 4}, 1, 2, 2);
        Tensor wr = Tensor.ofFloats(new float[] {1, 0, 0, 1}, 2, 2);
        CudaHeadRouter r = CudaHeadRouter.open(0);
        r.route(x, wr, config, DType.F32);
        r.close();
        assertEquals("CUDA head router is closed",
                assertThrows(IllegalStateException.class, () -> r.route(x, wr, config, DType.F32)).getMessage());
        r.close();
    }

    @AfterEach
    void nothingLeftAllocated() {
        if (gpu != null) {
            assertEquals(gpu.scratchBytes(), gpu.pool().stats().allocatedBytes(),
                    "device memory beyond the router's logits buffer still allocated: " + gpu.pool().stats());
        }
    }

    private static void assertClose(float[] expected, float[] actual, double rel, String what) {
        assertEquals(expected.length, actual.length, what);
        for (int i = 0; i < expected.length; i++) {
            int at = i;
            assertTrue(!Float.isNaN(actual[i]), () -> what + ": NaN at " + at);
            assertEquals(expected[i] == 0f, actual[i] == 0f, () -> what + ": zero pattern differs at flat index " + at
                    + " (expected " + expected[at] + ", got " + actual[at] + ")");
            assertEquals(expected[i], actual[i], rel * Math.abs(expected[i]), () -> what + ": flat index " + at);
        }
    }

    @ParameterizedTest(name = "B={0} L={1} d={2} Hs={3} Hr={4} k={5} Bq={6} {7}")
    @CsvSource({
        "1, 1, 1, 0, 1, 1, 1, f32",
        "1, 77, 33, 2, 14, 4, 1, f32",
        "1, 77, 33, 2, 14, 4, 64, f32",     // last block 13 tokens
        "2, 300, 129, 2, 14, 4, 64, bf16",
        "3, 45, 17, 1, 7, 7, 1, f16",       // k = Hr
        "2, 130, 64, 0, 33, 5, 16, f32",    // Hr > 32: two heads per lane
        "1, 70, 48, 3, 64, 8, 1, bf16",     // Hr = 64, the most the kernel takes
        "2, 50, 10, 40, 6, 2, 3, f32",      // Hs > 32: lanes loop over shared heads
        "1, 40, 8, 2, 5, 2, 1000, f32"})    // one block longer than the sequence
    void gridInputsMatchTheCpuRouter(int b, int l, int d, int hs, int hr, int k, int bq, String dtype) {
        DType dt = DType.parse(dtype);
        Random r = new Random(31L * l + 7L * hr + bq);
        Tensor x = ReferenceRouter.grid(r, dt, b, l, d);
        Tensor wr = ReferenceRouter.grid(r, dt, d, hr);
        RouterConfig c = new RouterConfig(hs, hr, k, bq);
        RouterOutput want = cpu.route(x, wr, c, dt);
        RouterOutput got = gpu.route(x, wr, c, dt);
        assertEquals(want.gate().shapeString(), got.gate().shapeString());
        assertClose(want.gate().toFloatArray(), got.gate().toFloatArray(), 1e-5, "gate " + c);
        float[] wp = want.probs().toFloatArray();
        float[] gp = got.probs().toFloatArray();
        assertProbsClose(wp, gp, "probabilities " + c);
        // assertEquals(double, double, delta) passes NaN against NaN: the CPU router's statistics must be real numbers.
        assertTrue(Double.isFinite(want.stats().activeHeadFraction()), "active head fraction " + want.stats().activeHeadFraction());
        assertEquals(want.stats().activeHeadFraction(), got.stats().activeHeadFraction(), 0.0);
        for (double f : want.stats().f()) {
            assertTrue(Double.isFinite(f), "f " + java.util.Arrays.toString(want.stats().f()));
        }
        assertArrayEquals(want.stats().f(), got.stats().f(), 0.0);
        assertTrue(Double.isFinite(want.stats().loadBalance()), "load balance " + want.stats().loadBalance());
        assertEquals(want.stats().loadBalance(), got.stats().loadBalance(), 1e-5 * want.stats().loadBalance());
        assertTrue(got.elapsedNanos() > 0);
        // The same routing into buffers poisoned with NaN: every gate entry (the unrouted heads' zeros included) and
        // every probability written by the kernel, the logits by the GEMM.
        float[][] poisoned = routePoisoned(x, wr, c, dt);
        assertClose(want.gate().toFloatArray(), poisoned[0], 1e-5, "gate into a poisoned buffer " + c);
        assertProbsClose(wp, poisoned[1], "probabilities into a poisoned buffer " + c);
    }

    /** Each probability within 1e-5 relative of the CPU's; neither side NaN (assertEquals would take NaN for NaN). */
    private static void assertProbsClose(float[] want, float[] got, String what) {
        assertEquals(want.length, got.length, what);
        for (int i = 0; i < want.length; i++) {
            int at = i;
            assertTrue(Float.isFinite(want[i]) && Float.isFinite(got[i]),
                    () -> what + ": flat index " + at + " CPU " + want[at] + ", GPU " + got[at]);
            assertEquals(want[i], got[i], 1e-5 * want[i], () -> what + ": flat index " + at);
        }
    }

    /**
     * The GPU router into buffers the caller owns ({@link CudaHeadRouter#routeInto}), the logits, the gate and the
     * probabilities each filled with NaN first, so that an entry the kernel leaves unwritten (an unrouted head's 0, a
     * shared head's 1) reads as NaN rather than as what fresh device memory held. Returns {gate, probabilities}.
     */
    private static float[][] routePoisoned(Tensor x, Tensor wr, RouterConfig c, DType dt) {
        int b = (int) x.dim(0);
        int l = (int) x.dim(1);
        int d = (int) x.dim(2);
        int nan = 0x7FC00000;
        try (var dev = io.headroute.cuda.CudaDevice.open(0);
                CudaStream s = CudaStream.create(dev);
                var pool = io.headroute.cuda.memory.DevicePool.create(new io.headroute.cuda.JCudaAllocator(dev), "poisoned", true);
                CudaHeadRouter router = CudaHeadRouter.on(dev, pool, s)) {
            try (DeviceTensor dx = DeviceTensor.upload(dev, pool, s, null, x, dt, "in");
                    DeviceTensor dw = DeviceTensor.upload(dev, pool, s, null, wr, dt, "in");
                    DeviceTensor logits = DeviceTensor.allocate(dev, pool, DType.F32, "out", (long) b * l * c.routedHeads());
                    DeviceTensor gate = DeviceTensor.allocate(dev, pool, DType.F32, "out", b, l, c.heads());
                    DeviceTensor probs = DeviceTensor.allocate(dev, pool, DType.F32, "out", b, l, c.routedHeads())) {
                logits.fillBits(nan, s);
                gate.fillBits(nan, s);
                probs.fillBits(nan, s);
                dev.synchronize(); // the uploads' DMA (the router's stream does not wait for the legacy stream) and the fills
                router.routeInto(dx.address(), dw.address(), logits.address(), gate.address(), probs.address(), b, l, d, c, dt);
                return new float[][] {gate.download(s, null).toFloatArray(), probs.download(s, null).toFloatArray()};
            }
        }
    }

    /** Bq ≥ L is one group per sequence on the GPU too, up to 2^31 − 1 (whose ceil(L / Bq) overflowed in the kernel). */
    @Test
    void aBlockLongerThanTheSequenceIsTheWholeSequence() {
        ReferenceRouter.assertBlocksBeyondTheSequenceAreTheWholeSequence(cpu, gpu, 1e-5f);
    }

    /** auto takes the GPU router where it can run the routing, else the CPU one (more routed heads than it takes). */
    @Test
    void autoTakesTheCpuForMoreRoutedHeadsThanTheKernelTakes() {
        try (HeadRouter r = HeadRouters.open(io.headroute.attention.Backend.AUTO, 2, new RouterConfig(1, 64, 2, 1))) {
            assertEquals("cuda", r.name());
        }
        try (HeadRouter r = HeadRouters.open(io.headroute.attention.Backend.AUTO, 2, new RouterConfig(1, 65, 2, 1))) {
            assertEquals("cpu", r.name());
        }
    }

    @Test
    void exactTiesAgree() {
        // Wr's columns come in identical pairs, so every token has tied logits: the GEMM computes both columns
        // of a pair from the same values, and both routers must then keep the lower index of a tie.
        Random r = new Random(11);
        int d = 24;
        int hr = 10;
        float[] w = new float[d * hr];
        for (int i = 0; i < d; i++) {
            for (int j = 0; j < hr; j += 2) {
                w[i * hr + j] = (r.nextInt(17) - 8) / 8f;
                w[i * hr + j + 1] = w[i * hr + j];
            }
        }
        Tensor wr = Tensor.ofFloats(w, d, hr);
        Tensor x = ReferenceRouter.grid(r, DType.F32, 2, 97, d);
        for (int k : new int[] {1, 3, 5}) {
            for (int bq : new int[] {1, 8}) {
                RouterConfig c = new RouterConfig(2, hr, k, bq);
                float[] want = cpu.route(x, wr, c, DType.F32).gate().toFloatArray();
                assertClose(want, gpu.route(x, wr, c, DType.F32).gate().toFloatArray(), 1e-5, "ties " + c);
            }
        }
        // All logits equal (X = 0): the k lowest heads, each gate 1.
        Tensor zeros = Tensor.ofFloats(new float[3 * 5 * d], 3, 5, d);
        float[] g = gpu.route(zeros, wr, new RouterConfig(1, hr, 3, 2), DType.F32).gate().toFloatArray();
        // Into a NaN-poisoned gate too: the seven zeros of each token are written, not left from fresh memory.
        float[] gp = routePoisoned(zeros, wr, new RouterConfig(1, hr, 3, 2), DType.F32)[0];
        for (int t = 0; t < 15; t++) {
            float[] row = Arrays.copyOfRange(g, t * (1 + hr), (t + 1) * (1 + hr));
            assertArrayEquals(new float[] {1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}, row, 1e-6f, "token " + t);
            assertArrayEquals(new float[] {1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}, Arrays.copyOfRange(gp, t * (1 + hr), (t + 1) * (1 + hr)),
                    1e-6f, "token " + t + ", poisoned gate");
        }
    }

    @Test
    void gaussianInputsAgreeWhereTheChoiceIsWellConditioned() {
        // Off-grid inputs: the GEMM's summation order differs from the CPU's, so groups whose k-th and (k+1)-th
        // averaged probabilities are closer than 1e-4 (relative) may legitimately choose differently; they are
        // counted and must be rare, every other group must agree to the fp32 tolerance (the inputs are the same
        // rounded values on both sides, the arithmetic fp32).
        Random r = new Random(5);
        int b = 2;
        int l = 257;
        int d = 96;
        int hr = 14;
        float[] xv = new float[b * l * d];
        float[] wv = new float[d * hr];
        for (int i = 0; i < xv.length; i++) {
            xv[i] = (float) r.nextGaussian();
        }
        for (int i = 0; i < wv.length; i++) {
            wv[i] = (float) (r.nextGaussian() / Math.sqrt(d));
        }
        Tensor x = Tensor.ofFloats(xv, b, l, d);
        Tensor wr = Tensor.ofFloats(wv, d, hr);
        for (DType dt : new DType[] {DType.F32, DType.BF16}) {
            for (int bq : new int[] {1, 64}) {
                RouterConfig c = new RouterConfig(2, hr, 4, bq);
                RouterOutput want = cpu.route(x, wr, c, dt);
                float[] wg = want.gate().toFloatArray();
                float[] gg = gpu.route(x, wr, c, dt).gate().toFloatArray();
                float[] p = want.probs().toFloatArray();
                int h = c.heads();
                int illConditioned = 0;
                int groups = 0;
                for (int bb = 0; bb < b; bb++) {
                    for (int t0 = 0; t0 < l; t0 += bq) {
                        int t1 = Math.min(l, t0 + bq);
                        groups++;
                        double[] avg = new double[hr];
                        for (int t = t0; t < t1; t++) {
                            for (int j = 0; j < hr; j++) {
                                avg[j] += p[(bb * l + t) * hr + j] / (t1 - t0);
                            }
                        }
                        double[] sorted = avg.clone();
                        Arrays.sort(sorted);
                        if (sorted[hr - 4] - sorted[hr - 5] < 1e-4 * sorted[hr - 1]) {
                            illConditioned++;
                            continue;
                        }
                        for (int t = t0; t < t1; t++) {
                            int row = (bb * l + t) * h;
                            assertClose(Arrays.copyOfRange(wg, row, row + h), Arrays.copyOfRange(gg, row, row + h), 1e-5,
                                    c + " " + dt.cliName() + " token " + t + " of batch " + bb);
                        }
                    }
                }
                assertTrue(illConditioned * 20 < groups, illConditioned + " of " + groups + " groups ill-conditioned");
            }
        }
    }

    /** Waits for the synchronous uploads' DMA (the router's stream does not wait for the legacy stream), then routes. */
    private static DeviceTensor route(io.headroute.cuda.CudaDevice dev, CudaHeadRouter router, DeviceTensor x, DeviceTensor wr,
            RouterConfig c) {
        dev.synchronize();
        return router.route(x, wr, c, null);
    }

    @Test
    void deviceTensorsInAndOut() {
        // The hot path: inputs already on the device, the gate stays there; only the test downloads it.
        Random r = new Random(9);
        Tensor x = ReferenceRouter.grid(r, DType.BF16, 1, 150, 40);
        Tensor wr = ReferenceRouter.grid(r, DType.BF16, 40, 6);
        RouterConfig c = new RouterConfig(2, 6, 2, 16);
        float[] want = cpu.route(x, wr, c, DType.BF16).gate().toFloatArray();
        try (var dev = io.headroute.cuda.CudaDevice.open(0);
                CudaStream s = CudaStream.create(dev);
                var pool = io.headroute.cuda.memory.DevicePool.create(new io.headroute.cuda.JCudaAllocator(dev), "test", true);
                CudaHeadRouter router = CudaHeadRouter.on(dev, pool, s)) {
            try (DeviceTensor dx = DeviceTensor.upload(dev, pool, s, null, x, DType.BF16, "in");
                    DeviceTensor dw = DeviceTensor.upload(dev, pool, s, null, wr, DType.BF16, "in");
                    DeviceTensor gate = route(dev, router, dx, dw, c)) {
                assertEquals("[1, 150, 8]", Arrays.toString(gate.shape()));
                assertTrue(router.scratchBytes() >= 150L * 6 * 4, "logits (N, Hr) float32: " + router.scratchBytes());
                long routerBytes = pool.stats().byTag().get("router").currentBytes();
                assertTrue(routerBytes >= 150L * (8 + 6) * 4, "the gate and the logits are tagged router: " + routerBytes);
                assertClose(want, gate.download(s, null).toFloatArray(), 1e-5, "device gate");
            }
            assertEquals(router.scratchBytes(), pool.stats().allocatedBytes(), "the gate was returned");
        } // closing the router frees its logits; closing the pool throws if anything leaked
    }
}
