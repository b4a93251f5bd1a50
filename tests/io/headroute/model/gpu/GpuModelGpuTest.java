package io.headroute.model.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.model.BlockReference;
import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.CudaStream;
import io.headroute.cuda.DevicePointers;
import io.headroute.cuda.KernelModule;
import io.headroute.cuda.Resources;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.model.HeadSelection;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cuda.CudaProbe;
import io.headroute.model.LayerSpec;
import io.headroute.model.Model;
import io.headroute.model.ModelConfig;
import io.headroute.model.ModelWeights;
import io.headroute.pattern.Pattern;
import io.headroute.routing.CpuHeadRouter;
import io.headroute.routing.RouterConfig;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import jcuda.driver.JCudaDriver;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The GPU model against the CPU model on the same weights and inputs (relative L2 within 1e-5 f32,
 * 2e-3 f16, 1e-2 bf16), and the pool's measured peak against the memory plan. Needs a GPU and a bound
 * GPU attention ({@link DeviceAttentionProvider}); skips itself, saying which is missing, otherwise.
 */
@Tag("gpu")
class GpuModelGpuTest {
    private static CpuAttentionEngine cpu;

    @BeforeAll
    static void open() {
        CudaProbe.Result probe = CudaProbe.result();
        assumeTrue(probe.usable(), "no usable GPU: " + probe.reason());
        assumeTrue(KernelModule.packaged(CudaBlockOps.MODULE), "the build has no block_ops kernels (built without nvcc)");
        assumeTrue(DeviceAttentionProvider.find().isPresent(),
                "no GPU attention is bound to GPU models (no DeviceAttentionProvider service): nothing to compare yet");
        cpu = new CpuAttentionEngine();
    }

    @AfterAll
    static void close() {
        if (cpu != null) {
            cpu.close();
        }
    }

    /**
     * The bound GPU attention with each call's output poisoned first: every (b, h, t) row of the call's o, D elements at
     * its strides, filled with NaN on the call's stream before the launch, so that a row the kernels (or the engine's
     * zeroing of gated rows) leave unwritten shows up as NaN instead of passing on what the scheduler's buffer held
     * (fresh device memory is often all zero: exactly a gated row's output). Only the call's own elements: the other
     * heads' rows of a shared (B, L, H', D) buffer stay as they are.
     */
    private static final class PoisonedAttention implements DeviceAttention {
        private final CudaDevice device;
        private final DeviceAttention inner;
        int poisonedCalls;

        PoisonedAttention(CudaDevice device, DeviceAttention inner) {
            this.device = device;
            this.inner = inner;
        }

        @Override
        public String describe() {
            return inner.describe() + " (outputs poisoned)";
        }

        @Override
        public long workspaceBytes(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, int gateBlock) {
            return inner.workspaceBytes(shape, dtype, algorithm, pattern, gateBlock);
        }

        @Override
        public void check(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern) {
            inner.check(shape, dtype, algorithm, pattern);
        }

        @Override
        public void run(DeviceAttentionCall c, CudaStream stream) {
            device.makeCurrent();
            long es = c.dtype().byteSize();
            long[] st = c.oStrides();
            for (int b = 0; b < c.batch(); b++) {
                for (int h = 0; h < c.heads(); h++) {
                    // qLen rows of D elements, st[2] elements apart.
                    jcuda.driver.CUdeviceptr p = DevicePointers.of(c.o() + (b * st[0] + h * st[1]) * es);
                    int rc = switch (c.dtype()) {
                        case F32 -> JCudaDriver.cuMemsetD2D32Async(p, st[2] * es, 0x7FC00000, c.headDim(), c.qLen(),
                                stream.handle());
                        case F16 -> JCudaDriver.cuMemsetD2D16Async(p, st[2] * es, (short) 0x7E00, c.headDim(), c.qLen(),
                                stream.handle());
                        case BF16 -> JCudaDriver.cuMemsetD2D16Async(p, st[2] * es, (short) 0x7FC0, c.headDim(), c.qLen(),
                                stream.handle());
                        default -> throw new AssertionError("no NaN to poison " + c.dtype() + " with");
                    };
                    assertEquals(0, rc, "poisoning o of " + c.dtype() + " call, b " + b + " h " + h);
                }
            }
            poisonedCalls++;
            inner.run(c, stream);
        }

        @Override
        public AttentionWork work(DeviceAttentionCall c, CudaStream stream) {
            return inner.work(c, stream);
        }

        @Override
        public void close() {
            inner.close();
        }
    }

    /** {@link GpuModel#open(int, Model, WeightPlacement)} with the bound attention's outputs poisoned. */
    private static GpuModel openPoisoned(Model model, WeightPlacement placement, PoisonedAttention[] out) {
        CudaDevice d = CudaDevice.open(0);
        DeviceAttention attention = null;
        try {
            attention = new PoisonedAttention(d, DeviceAttentionProvider.find().orElseThrow().open(d));
            out[0] = (PoisonedAttention) attention;
            return GpuModel.open(d, attention, model, placement);
        } catch (RuntimeException e) {
            throw Resources.closeAfter(e, attention, d);
        }
    }

    static boolean[] mask(String m) {
        if (m == null || m.isEmpty()) {
            return null;
        }
        boolean[] a = new boolean[m.length()];
        for (int i = 0; i < a.length; i++) {
            a[i] = m.charAt(i) == '1';
        }
        return a;
    }

    @ParameterizedTest(name = "{0} layers={1} H={2} Hkv={3} D={4} L={5} {6} mask={7} gates={8} route={9}")
    @CsvSource({
        "f32, 3, 4, 4, 64, 300, RESIDENT, , false, ",
        "f32, 4, 8, 2, 64, 257, JUST_IN_TIME, 11011001, true, ",
        "f16, 4, 8, 4, 64, 1000, JUST_IN_TIME, , false, ",
        "bf16, 3, 16, 4, 128, 777, JUST_IN_TIME, 1111000011110011, true, ",
        "bf16, 2, 8, 8, 128, 2048, RESIDENT, 10101010, false, ",
        // Routed layers in f32 only: the GPU routes on its own activations, the CPU on its own, and a top-k
        // near-tie would pick different heads on the two; bf16 activations differ enough between the two
        // for that to be likely, f32 ones (~1e-6) not.
        "f32, 3, 8, 2, 64, 301, JUST_IN_TIME, 11011001, true, 2:2",
        "f32, 3, 16, 4, 128, 777, RESIDENT, 1111000011110011, false, 2:4:64",
    })
    void gpuModelMatchesTheCpuModel(String dtype, int layers, int h, int hkv, int hd, int len, WeightPlacement placement,
            String m, boolean withGates, String route) {
        DType dt = DType.parse(dtype);
        List<LayerSpec> specs = new ArrayList<>();
        for (int i = 0; i < layers; i++) {
            // Dense and causal run the flash kernels; the window runs the block-sparse kernel with its layout
            // in the layer's workspace.
            Pattern p = switch (i % 3) {
                case 0 -> new Pattern.Causal();
                case 1 -> new Pattern.Dense();
                default -> new Pattern.Window(37);
            };
            LayerSpec s = LayerSpec.of(p, i % 3 == 2, Algorithm.FLASH);
            s = i == 1 ? s.withHeadMask(mask(m)) : s;
            // Routed layers 1 (pruned too) and 2; layer 0 stays unrouted.
            specs.add(route != null && i >= 1 ? s.withRouter(RouterConfig.parse(route, h)) : s);
        }
        int dModel = h * hd / 2 + 8;
        ModelConfig c = new ModelConfig(dModel, h, hkv, hd, dt, 1e4, 1e-5, specs);
        Model model = new Model(BlockReference.weights(c, 77));
        Random r = new Random(len);
        int b = 2;
        float[] xs = new float[b * len * dModel];
        for (int i = 0; i < xs.length; i++) {
            xs[i] = (float) r.nextGaussian();
        }
        Tensor x = Tensor.ofFloats(dt, xs, b, len, dModel);
        List<Tensor> gates = null;
        if (withGates) {
            gates = new ArrayList<>();
            for (int l = 0; l < layers; l++) {
                if (c.layer(l).routed()) {
                    gates.add(null);
                    continue;
                }
                float[] g = new float[b * len * h];
                for (int i = 0; i < g.length; i++) {
                    g[i] = r.nextInt(4) == 0 ? 0f : 0.5f + r.nextFloat();
                }
                gates.add(Tensor.ofFloats(g, b, len, h));
            }
        }
        Tensor want = model.forward(x, gates, cpu);
        PoisonedAttention[] poisoned = new PoisonedAttention[1];
        try (GpuModel gpu = openPoisoned(model, placement, poisoned)) {
            MemoryPlan plan = gpu.plan(b, len, withGates);
            LayerScheduler.Result res = gpu.forward(x, gates);
            assertTrue(poisoned[0].poisonedCalls >= layers, "every layer's attention ran poisoned: " + poisoned[0].poisonedCalls);
            // In f32 the residual updates are compared (x's share of the output would dilute their error). In f16 and
            // bf16 each side rounds its residual stream x + update to the dtype after every layer, on values that
            // differ by its GEMMs' and kernels' rounding: a difference of the order of |x + update|·2⁻⁹ (bf16) that is
            // the stream's and no layer's, so there the output itself is held to the dtype's tolerance.
            double err = dt == DType.F32
                    ? BlockReference.updateError(res.output().toFloatArray(), want.toFloatArray(), x.toFloatArray())
                    : BlockReference.relError(res.output().toFloatArray(), want.toFloatArray());
            double tol = dt == DType.F32 ? 1e-5 : dt == DType.F16 ? 2e-3 : 1e-2;
            assertTrue(err <= tol, "GPU vs CPU model: relative error " + err + " > " + tol);
            assertEquals(plan.totalBytes(), res.peakBytes(), "predicted == measured peak on the device: " + plan);
            for (float ms : res.layerMillis()) {
                assertTrue(ms > 0 && Float.isFinite(ms), "layer time " + ms + " ms");
            }
        }
    }

    /**
     * Routed layers skip their inactive heads' work on the device: the GPU model equals the CPU model, and
     * each layer's launched query tiles (read back from the device work lists) equal the CPU twin's count
     * ({@link CudaAttentionEngine#deviceWorkList} on the CPU model's own router gates, column by call).
     * f32 only, for the reason above (near-ties of the top-k). Per token on the dense and causal kernels
     * (compaction), per block of whole tiles on the sparse and causal kernels (tile lists), and per token on
     * the sparse kernel (compaction, the key lists merged in the kernel: hr_flash_sparse_merge_f32_*).
     */
    @ParameterizedTest(name = "{0} L={1} {2}")
    @CsvSource({"f32, 301, JUST_IN_TIME", "f32, 1000, RESIDENT"})
    void routedGpuModelSkipsTheRoutedHeadsWork(String dtype, int len, WeightPlacement placement) {
        DType dt = DType.parse(dtype);
        int h = 16;
        int hd = 64;
        ModelConfig c = new ModelConfig(h * hd / 2 + 8, h, 4, hd, dt, 1e4, 1e-5, List.of(
                LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH).withRouter(new RouterConfig(2, 14, 4, 1)),
                LayerSpec.of(new Pattern.Dense(), false, Algorithm.FLASH).withRouter(new RouterConfig(2, 14, 4, 1)),
                LayerSpec.of(new Pattern.Window(37), true, Algorithm.FLASH).withRouter(new RouterConfig(2, 14, 4, 64)),
                LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH).withHeadMask(mask("1111000011110011"))
                        .withRouter(new RouterConfig(2, 14, 4, 64)),
                LayerSpec.of(new Pattern.Window(37), false, Algorithm.FLASH).withRouter(new RouterConfig(2, 14, 4, 1))));
        Model model = new Model(BlockReference.weights(c, 78));
        Random r = new Random(len + 1);
        int b = 2;
        float[] xs = new float[b * len * c.dModel()];
        for (int i = 0; i < xs.length; i++) {
            xs[i] = (float) r.nextGaussian();
        }
        Tensor x = Tensor.ofFloats(dt, xs, b, len, c.dModel());
        Model.Pass pass;
        try (CpuHeadRouter router = new CpuHeadRouter(2)) {
            pass = model.run(x, null, cpu, router);
        }
        PoisonedAttention[] poisoned = new PoisonedAttention[1];
        try (GpuModel gpu = openPoisoned(model, placement, poisoned)) {
            gpu.setCountWork(true);
            MemoryPlan plan = gpu.plan(b, len, false);
            LayerScheduler.Result res = gpu.forward(x, null);
            double err = BlockReference.updateError(res.output().toFloatArray(), pass.output().toFloatArray(), x.toFloatArray());
            assertTrue(err <= 1e-5, "GPU vs CPU routed model: relative error of the residual updates " + err);
            assertEquals(plan.totalBytes(), res.peakBytes(), "predicted == measured peak with the device work lists: " + plan);
            for (int l = 0; l < c.layerCount(); l++) {
                float[] g = pass.routing().get(l).gate().toFloatArray();
                long want = 0;
                long grid = 0;
                LayerSpec s = c.layer(l);
                for (HeadSelection.Call call : model.blocks().get(l).selection().calls()) {
                    float[] cols = new float[b * len * call.qCount()];
                    for (int row = 0; row < b * len; row++) {
                        for (int j = 0; j < call.qCount(); j++) {
                            cols[row * call.qCount() + j] = g[row * h + call.heads()[j]];
                        }
                    }
                    AttentionShape sh = new AttentionShape(b, call.qCount(), call.kvCount(), len, len, hd);
                    Pattern p = model.blocks().get(l).selection().pattern(s.pattern(), call, len);
                    p = s.causal() ? p.withCausal() : p;
                    want += CudaAttentionEngine.deviceWorkList(cols, sh, dt, s.algorithm(), p, s.router().block()).length / 3;
                    grid += CudaAttentionEngine.gridTiles(sh, dt, s.algorithm(), p);
                }
                AttentionWork w = res.layerWork()[l];
                assertEquals(grid, w.gridTiles(), "layer " + l + ": grid");
                assertEquals(want, w.launchedTiles(), "layer " + l + ": launched query tiles, device vs CPU twin");
                assertTrue(w.launchedTiles() < w.gridTiles(), "layer " + l + " skips routed heads' tiles: " + w);
            }
        }
    }

    /**
     * Layers whose pattern is a layout file: the GPU model opens (it planned a pass at L = S = 1 to weigh its weights,
     * which no layout of more than one block passed) and equals the CPU model, its measured peak the plan's. A
     * materialized layer (which GPU models do not run) opens too, and its pass is refused before any device work,
     * naming the pass's shape (it was refused at open, naming L = S = 1).
     */
    @org.junit.jupiter.api.Test
    void layoutLayersRunOnTheGpu() {
        boolean[] bits = {true, false, true, true}; // 2 x 2 blocks of 64: lower triangle
        List<LayerSpec> specs = List.of(LayerSpec.of(new Pattern.Layout(64, 1, 2, bits, "test"), false, Algorithm.FLASH),
                LayerSpec.of(new Pattern.Window(9), true, Algorithm.FLASH),
                LayerSpec.of(new Pattern.Layout(64, 1, 2, bits, "test"), true, Algorithm.SPARSE));
        ModelConfig c = new ModelConfig(40, 2, 2, 32, DType.F32, 1e4, 1e-5, specs);
        Model model = new Model(BlockReference.weights(c, 79));
        int b = 1;
        int len = 128;
        Tensor x = randomInput(c, b, len, 80);
        Tensor want = model.forward(x, null, cpu);
        PoisonedAttention[] poisoned = new PoisonedAttention[1];
        try (GpuModel gpu = openPoisoned(model, WeightPlacement.RESIDENT, poisoned)) {
            MemoryPlan plan = gpu.plan(b, len, false);
            LayerScheduler.Result res = gpu.forward(x, null);
            double err = BlockReference.updateError(res.output().toFloatArray(), want.toFloatArray(), x.toFloatArray());
            assertTrue(err <= 1e-5, "GPU vs CPU model: relative error of the residual updates " + err);
            assertEquals(plan.totalBytes(), res.peakBytes(), "predicted == measured peak: " + plan);
        }

        ModelConfig m = new ModelConfig(40, 2, 2, 32, DType.F32, 1e4, 1e-5,
                List.of(LayerSpec.of(new Pattern.Layout(64, 1, 2, bits, "test"), false, Algorithm.MATERIALIZED)));
        Model materialized = new Model(BlockReference.weights(m, 83));
        try (GpuModel gpu = openPoisoned(materialized, WeightPlacement.RESIDENT, poisoned)) {
            long weights = gpu.pool().stats().allocatedBytes();
            var e = org.junit.jupiter.api.Assertions.assertThrows(UnsupportedOperationException.class,
                    () -> gpu.forward(randomInput(m, b, len, 84), null));
            assertTrue(e.getMessage().contains("not materialized (B=1 H=2 Hkv=2 L=128 S=128 D=32)"), e.getMessage());
            assertEquals(0, poisoned[0].poisonedCalls, "no attention ran");
            assertEquals(weights, gpu.pool().stats().peakAllocatedBytes(), "nothing beyond the weights was allocated");
        }
    }

    /**
     * Input the CPU model refuses is refused by the GPU model too, before any scratch is allocated and before its size
     * is weighed: a gate holding NaN or infinity (it was uploaded, and 80 outputs came back non-finite), an input of
     * the wrong rank (an ArrayIndexOutOfBoundsException) or width (an out-of-memory message for 8M rows of width 1).
     */
    @org.junit.jupiter.api.Test
    void badInputIsRefusedBeforeAnyDeviceWork() {
        ModelConfig c = new ModelConfig(40, 2, 2, 32, DType.F32, 1e4, 1e-5,
                List.of(LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH)));
        Model model = new Model(BlockReference.weights(c, 81));
        Tensor x = randomInput(c, 1, 64, 82);
        PoisonedAttention[] poisoned = new PoisonedAttention[1];
        try (GpuModel gpu = openPoisoned(model, WeightPlacement.RESIDENT, poisoned)) {
            long weights = gpu.pool().stats().allocatedBytes();
            for (float bad : new float[] {Float.NaN, Float.POSITIVE_INFINITY}) {
                float[] g = new float[64 * 2];
                java.util.Arrays.fill(g, 1f);
                g[5] = bad;
                List<Tensor> gates = List.of(Tensor.ofFloats(g, 1, 64, 2));
                var cpuError = org.junit.jupiter.api.Assertions.assertThrows(io.headroute.engine.ShapeException.class,
                        () -> model.forward(x, gates, cpu));
                var e = org.junit.jupiter.api.Assertions.assertThrows(io.headroute.engine.ShapeException.class,
                        () -> gpu.forward(x, gates));
                assertEquals("gate of layer 0 holds a non-finite value (" + bad + ") at flat index 5", e.getMessage(),
                        "the CPU model says: " + cpuError.getMessage());
            }
            for (long[] shape : new long[][] {{1, 8_000_000, 1}, {72}, {1, 64, 5}}) {
                Tensor bad = Tensor.ofFloats(new float[Math.toIntExact(Tensor.numel(shape))], shape);
                var e = org.junit.jupiter.api.Assertions.assertThrows(io.headroute.engine.ShapeException.class,
                        () -> gpu.forward(bad, null), java.util.Arrays.toString(shape));
                assertTrue(e.getMessage().startsWith("model input must have shape (B, L, d_model = 40)"), e.getMessage());
            }
            assertEquals(0, poisoned[0].poisonedCalls, "no attention ran");
            assertEquals(weights, gpu.pool().stats().peakAllocatedBytes(), "nothing beyond the weights was allocated");
        }
    }

    private static Tensor randomInput(ModelConfig c, int b, int len, long seed) {
        Random r = new Random(seed);
        float[] xs = new float[b * len * c.dModel()];
        for (int i = 0; i < xs.length; i++) {
            xs[i] = (float) r.nextGaussian();
        }
        return Tensor.ofFloats(c.dtype(), xs, b, len, c.dModel());
    }
}
