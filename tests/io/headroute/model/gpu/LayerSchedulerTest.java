package io.headroute.model.gpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.cuda.memory.DevicePool;
import io.headroute.model.BlockReference;
import io.headroute.engine.Algorithm;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.model.LayerSpec;
import io.headroute.model.Model;
import io.headroute.model.ModelConfig;
import io.headroute.model.ModelWeights;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.routing.RouterConfig;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The scheduler's real code path on a simulated device: every operation computes its function on
 * simulated device memory (bounds-checked), lanes run in an order that exposes a missing wait, and the
 * result must equal the CPU model's. This checks the scheduler's buffers, offsets, strides, packing,
 * gate compaction and event ordering; the CUDA kernels and cuBLAS calls themselves need the GPU tests.
 */
class LayerSchedulerTest {
    private static CpuAttentionEngine engine;

    @BeforeAll
    static void open() {
        engine = new CpuAttentionEngine(2);
    }

    @AfterAll
    static void close() {
        engine.close();
    }

    static boolean[] mask(String m) {
        boolean[] a = new boolean[m.length()];
        for (int i = 0; i < a.length; i++) {
            a[i] = m.charAt(i) == '1';
        }
        return a;
    }

    /** Four layers exercising MHA/GQA, non-uniform pruning, per-head patterns and the materialized workspace. */
    static ModelConfig config(String variant, DType dt) {
        return switch (variant) {
            case "mha" -> new ModelConfig(24, 4, 4, 8, dt, 1e4, 1e-5, List.of(
                    LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH),
                    LayerSpec.of(new Pattern.Dense(), false, Algorithm.MATERIALIZED),
                    LayerSpec.of(Patterns.parse("window:3"), true, Algorithm.FLASH)));
            case "gqa-pruned" -> new ModelConfig(32, 6, 3, 8, dt, 500.0, 1e-6, List.of(
                    LayerSpec.of(new Pattern.Dense(), true, Algorithm.FLASH).withHeadMask(mask("110100")),
                    LayerSpec.of(Patterns.parse("bigbird:4:1:1:1:3"), false, Algorithm.FLASH).withHeadMask(mask("011011")),
                    LayerSpec.of(Patterns.parse("longformer:2:2"), false, Algorithm.MATERIALIZED).withHeadMask(mask("100000")),
                    LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH)));
            // Routed layers: per token on all heads; per block with a non-uniform pruning (one call per kv
            // head, so the router's gate columns are gathered call by call); an unrouted layer between.
            case "routed" -> new ModelConfig(32, 6, 3, 8, dt, 1e4, 1e-5, List.of(
                    LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH).withRouter(new RouterConfig(2, 4, 2, 1)),
                    LayerSpec.of(Patterns.parse("window:3"), false, Algorithm.MATERIALIZED),
                    LayerSpec.of(new Pattern.Dense(), true, Algorithm.FLASH).withHeadMask(mask("110100"))
                            .withRouter(new RouterConfig(1, 5, 3, 4)),
                    LayerSpec.of(new Pattern.Dense(), false, Algorithm.FLASH)));
            default -> throw new IllegalArgumentException(variant);
        };
    }

    /**
     * Given gates go to the device from one page-locked staging buffer the scheduler keeps across passes (grown when a
     * pass needs more): passes of growing and shrinking L on one scheduler each equal the CPU model, with one staging
     * buffer open besides the weights' and none after close.
     */
    @Test
    void gatesOfPassesOfDifferentLengthsShareOnePageLockedStaging() {
        ModelConfig c = config("gqa-pruned", DType.F32);
        Model model = new Model(BlockReference.weights(c, 23));
        Random r = new Random(13);
        SimulatedDevice dev = new SimulatedDevice(1L << 30);
        SimulatedOps ops = new SimulatedOps(dev, engine, SimulatedOps.Policy.COPY_FIRST);
        try (DevicePool pool = DevicePool.create(dev, "sim", true);
                LayerScheduler s = new LayerScheduler(model, WeightPlacement.JUST_IN_TIME, pool, ops)) {
            int weights = ops.pinnedOpen;
            for (int len : new int[] {11, 29, 7}) {
                int b = 2;
                float[] xs = new float[b * len * c.dModel()];
                for (int i = 0; i < xs.length; i++) {
                    xs[i] = (float) r.nextGaussian();
                }
                Tensor x = Tensor.ofFloats(xs, b, len, c.dModel());
                List<Tensor> gates = new ArrayList<>();
                for (int l = 0; l < c.layerCount(); l++) {
                    float[] g = new float[b * len * c.heads()];
                    for (int i = 0; i < g.length; i++) {
                        g[i] = r.nextInt(4) == 0 ? 0f : 0.5f + r.nextFloat();
                    }
                    gates.add(Tensor.ofFloats(g, b, len, c.heads()));
                }
                Tensor expected = model.forward(x, gates, engine);
                LayerScheduler.Result res = s.forward(x, gates);
                double err = BlockReference.updateError(res.output().toFloatArray(), expected.toFloatArray(), x.toFloatArray());
                assertTrue(err <= 1e-5, "L = " + len + ": relative error of the residual updates " + err);
                assertEquals(weights + 1, ops.pinnedOpen, "L = " + len + ": one gate staging buffer besides the weights'");
            }
        }
        assertEquals(0, ops.pinnedOpen, "pinned host memory freed");
    }

    @ParameterizedTest(name = "{0} {1} {2} {3} gates={4}")
    @CsvSource({
        "mha, f32, RESIDENT, COPY_FIRST, false",
        "mha, f32, JUST_IN_TIME, COPY_FIRST, false",
        "mha, f32, JUST_IN_TIME, COMPUTE_FIRST, true",
        "gqa-pruned, f32, JUST_IN_TIME, COPY_FIRST, true",
        "gqa-pruned, f32, JUST_IN_TIME, COMPUTE_FIRST, false",
        "gqa-pruned, f32, RESIDENT, COMPUTE_FIRST, true",
        "gqa-pruned, f16, JUST_IN_TIME, COPY_FIRST, true",
        "mha, bf16, JUST_IN_TIME, COMPUTE_FIRST, false",
        "routed, f32, RESIDENT, COPY_FIRST, false",
        "routed, f32, JUST_IN_TIME, COMPUTE_FIRST, true",
        "routed, f16, JUST_IN_TIME, COPY_FIRST, false",
        "routed, bf16, RESIDENT, COMPUTE_FIRST, true",
    })
    void scheduledModelEqualsTheCpuModel(String variant, String dtype, WeightPlacement placement, SimulatedOps.Policy policy,
            boolean withGates) {
        DType dt = DType.parse(dtype);
        ModelConfig c = config(variant, dt);
        Model model = new Model(BlockReference.weights(c, 21));
        Random r = new Random(9);
        int b = 2;
        int len = 19;
        float[] xs = new float[b * len * c.dModel()];
        for (int i = 0; i < xs.length; i++) {
            xs[i] = (float) r.nextGaussian();
        }
        Tensor x = Tensor.ofFloats(dt, xs, b, len, c.dModel());
        List<Tensor> gates = null;
        if (withGates) {
            gates = new ArrayList<>();
            for (int l = 0; l < c.layerCount(); l++) {
                if (l == 1 || c.layer(l).routed()) {
                    gates.add(null); // an ungated layer between gated ones; routed layers gate themselves
                    continue;
                }
                float[] g = new float[b * len * c.heads()];
                for (int i = 0; i < g.length; i++) {
                    g[i] = r.nextInt(5) == 0 ? 0f : 0.5f + r.nextFloat();
                }
                gates.add(Tensor.ofFloats(g, b, len, c.heads()));
            }
        }
        Tensor expected = model.forward(x, gates, engine);

        SimulatedDevice dev = new SimulatedDevice(1L << 30);
        SimulatedOps ops = new SimulatedOps(dev, engine, policy);
        try (DevicePool pool = DevicePool.create(dev, "sim", true)) {
            LayerScheduler.Result res;
            try (LayerScheduler s = new LayerScheduler(model, placement, pool, ops)) {
                res = s.forward(x, gates);
                assertEquals(s.plan(b, len, withGates).totalBytes(), res.peakBytes(), "predicted == measured peak");
            }
            assertEquals(0, pool.stats().allocatedBytes(), "everything returned to the pool");
            assertEquals(dt, res.output().dtype());
            assertArrayEquals(x.shape(), res.output().shape());
            double err = BlockReference.updateError(res.output().toFloatArray(), expected.toFloatArray(), x.toFloatArray());
            double tol = dt == DType.F32 ? 1e-5 : dt == DType.F16 ? 2e-3 : 1e-2;
            assertTrue(err <= tol, "scheduled vs CPU model: relative error of the residual updates " + err + " > " + tol);
            assertEquals(c.layerCount(), res.layerMillis().length);
        }
        assertEquals(0, ops.markersOpen, "every event closed");
        assertEquals(0, ops.pinnedOpen, "pinned host memory freed");
        int calls = 0;
        for (int l = 0; l < c.layerCount(); l++) {
            calls += model.blocks().get(l).selection().calls().size();
        }
        assertEquals(calls, ops.attentionCalls);
        assertEquals(c.layers().stream().filter(LayerSpec::routed).count(), ops.routerCalls, "one router call per routed layer");
        assertEquals(c.layerCount(), ops.copyUploads,
                "one weight upload per layer (ahead of time, or once at construction)");
    }

    /**
     * The GPU engine's path for routed layers, simulated: workspaces as the engine sizes them, each gated
     * call's work list length written where its kernels would read it, read back per layer when counted.
     * Per layer the launched tiles must equal those the gate calls for, counted here from the CPU model's
     * own router gates: compacted tiles (per token, a caller's gate), or active tiles (sparse kernels;
     * routing blocks of whole kernel tiles, where exactly (Hs + k) / H of the grid runs).
     */
    @ParameterizedTest(name = "gates={0}")
    @CsvSource({"false", "true"})
    void routedLayersLaunchOnlyTheirActiveHeadsTiles(boolean withGates) {
        DType dt = DType.F32; // kernel tiles of 32 rows
        int br = 32;
        ModelConfig c = new ModelConfig(32, 6, 3, 8, dt, 1e4, 1e-5, List.of(
                LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH).withRouter(new RouterConfig(2, 4, 2, 1)),
                LayerSpec.of(Patterns.parse("window:5"), false, Algorithm.FLASH).withRouter(new RouterConfig(1, 5, 2, 1)),
                LayerSpec.of(new Pattern.Dense(), true, Algorithm.FLASH).withRouter(new RouterConfig(1, 5, 3, 32)),
                LayerSpec.of(new Pattern.Dense(), false, Algorithm.FLASH).withHeadMask(mask("110100"))
                        .withRouter(new RouterConfig(1, 5, 3, 64)),
                LayerSpec.of(new Pattern.Causal(), false, Algorithm.FLASH)));
        Model model = new Model(BlockReference.weights(c, 5));
        Random r = new Random(17);
        int b = 2;
        int len = 70;
        float[] xs = new float[b * len * c.dModel()];
        for (int i = 0; i < xs.length; i++) {
            xs[i] = (float) r.nextGaussian();
        }
        Tensor x = Tensor.ofFloats(dt, xs, b, len, c.dModel());
        List<Tensor> gates = null;
        if (withGates) {
            gates = new ArrayList<>(java.util.Collections.nCopies(c.layerCount(), (Tensor) null));
            float[] g = new float[b * len * c.heads()];
            for (int i = 0; i < g.length; i++) {
                g[i] = r.nextInt(3) == 0 ? 0f : 0.5f + r.nextFloat();
            }
            gates.set(4, Tensor.ofFloats(g, b, len, c.heads()));
        }
        List<Tensor> given = gates;
        Model.Pass pass;
        try (io.headroute.routing.CpuHeadRouter router = new io.headroute.routing.CpuHeadRouter(1)) {
            pass = model.run(x, given == null ? null : (layer, in) -> given.get(layer), engine, router);
        }
        SimulatedDevice dev = new SimulatedDevice(1L << 30);
        SimulatedOps ops = new SimulatedOps(dev, engine, SimulatedOps.Policy.COMPUTE_FIRST);
        ops.deviceWork = true;
        LayerScheduler.Result res;
        try (DevicePool pool = DevicePool.create(dev, "sim", true);
                LayerScheduler s = new LayerScheduler(model, WeightPlacement.JUST_IN_TIME, pool, ops)) {
            s.setCountWork(true);
            res = s.forward(x, gates);
            assertEquals(MemoryPlan.of(c, b, len, WeightPlacement.JUST_IN_TIME, withGates, MemoryPlanTest.ENGINE).totalBytes(),
                    res.peakBytes(), "predicted == measured peak with the engine's work lists");
            s.setCountWork(false);
            assertEquals(null, s.forward(x, gates).layerWork(), "not counted unless asked");
        }
        double err = BlockReference.updateError(res.output().toFloatArray(), pass.output().toFloatArray(), x.toFloatArray());
        assertTrue(err <= 1e-5, "scheduled vs CPU model: relative error of the residual updates " + err);
        int qTiles = (len + br - 1) / br;
        for (int l = 0; l < c.layerCount(); l++) {
            float[] g = c.layer(l).routed() ? pass.routing().get(l).gate().toFloatArray()
                    : gates == null || gates.get(l) == null ? null : gates.get(l).toFloatArray();
            // Layers 0 (per token, dense kernel), 1 (per token, sparse kernel: lists merged in the kernel) and 4
            // (a caller's gate) compact; 2 and 3 (routing blocks of 32 and 64 rows: whole tiles) run tile lists;
            // ungated layers the grid.
            boolean compact = l == 0 || l == 1 || l == 4;
            long launched = 0;
            long grid = 0;
            for (io.headroute.model.HeadSelection.Call call : model.blocks().get(l).selection().calls()) {
                grid += (long) b * call.qCount() * qTiles;
                for (int bb = 0; bb < b; bb++) {
                    for (int head : call.heads()) {
                        int live = 0;
                        int liveTiles = 0;
                        for (int t = 0; t < qTiles; t++) {
                            boolean any = false;
                            for (int i = t * br; i < Math.min(len, t * br + br); i++) {
                                boolean on = g == null || g[(bb * len + i) * c.heads() + head] != 0f;
                                any |= on;
                                live += on ? 1 : 0;
                            }
                            liveTiles += any ? 1 : 0;
                        }
                        launched += g == null ? qTiles : compact ? (live + br - 1) / br : liveTiles;
                    }
                }
            }
            AttentionWork w = res.layerWork()[l];
            assertEquals(grid, w.gridTiles(), "layer " + l + ": grid");
            assertEquals(launched, w.launchedTiles(), "layer " + l + ": launched query tiles");
            if (c.layer(l).routed()) {
                assertTrue(w.launchedTiles() < w.gridTiles(), "layer " + l + " skips routed heads: " + w);
            }
        }
        RouterConfig block = c.layer(2).router();
        assertEquals((long) b * qTiles * (block.sharedHeads() + block.k()), res.layerWork()[2].launchedTiles(),
                "block routing over whole tiles: (Hs + k) / H of the grid");
    }

    @Test
    void attentionThatCannotRunIsRefusedBeforeAnyScratchIsAllocated() {
        ModelConfig c = config("mha", DType.F32);
        Model model = new Model(ModelWeights.random(c, 2));
        SimulatedDevice dev = new SimulatedDevice(1L << 30);
        SimulatedOps ops = new SimulatedOps(dev, engine, SimulatedOps.Policy.COPY_FIRST);
        ops.refuse = "pattern window:3+causal needs the block-sparse GPU kernel";
        try (DevicePool pool = DevicePool.create(dev, "sim", true);
                LayerScheduler s = new LayerScheduler(model, WeightPlacement.RESIDENT, pool, ops)) {
            long weights = pool.stats().allocatedBytes();
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                    () -> s.forward(Tensor.ofFloats(new float[7 * 24], 1, 7, 24), null));
            assertEquals(ops.refuse, e.getMessage());
            assertEquals(weights, pool.stats().peakAllocatedBytes(), "nothing but the weights was ever allocated");
            assertEquals(0, ops.attentionCalls);
        }
    }

    @Test
    void aRouterThatCannotRunIsRefusedBeforeAnyScratchIsAllocated() {
        ModelConfig c = config("routed", DType.F32);
        Model model = new Model(ModelWeights.random(c, 2));
        SimulatedDevice dev = new SimulatedDevice(1L << 30);
        SimulatedOps ops = new SimulatedOps(dev, engine, SimulatedOps.Policy.COPY_FIRST);
        ops.refuseRouter = "the GPU router takes at most 64 routed heads, got 65; run the model on the CPU engine";
        try (DevicePool pool = DevicePool.create(dev, "sim", true);
                LayerScheduler s = new LayerScheduler(model, WeightPlacement.RESIDENT, pool, ops)) {
            long weights = pool.stats().allocatedBytes();
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                    () -> s.forward(Tensor.ofFloats(new float[7 * 32], 1, 7, 32), null));
            assertEquals(ops.refuseRouter, e.getMessage());
            assertEquals(weights, pool.stats().peakAllocatedBytes(), "nothing but the weights was ever allocated");
            assertEquals(0, ops.routerCalls);
            IllegalArgumentException g = assertThrows(IllegalArgumentException.class, () -> s.forward(
                    Tensor.ofFloats(new float[7 * 32], 1, 7, 32), java.util.Arrays.asList(Tensor.ofFloats(new float[7 * 6], 1, 7, 6),
                            null, null, null)));
            assertEquals("layer 0 is routed: its gate comes from its router, not from the caller", g.getMessage());
        }
    }

    @Test
    void aPassThatFailsReturnsItsScratchAndReportsItsOwnError() {
        ModelConfig c = config("routed", DType.F32);
        Model model = new Model(BlockReference.weights(c, 2));
        SimulatedDevice dev = new SimulatedDevice(1L << 30);
        SimulatedOps ops = new SimulatedOps(dev, engine, SimulatedOps.Policy.COPY_FIRST);
        try (DevicePool pool = DevicePool.create(dev, "sim", true);
                LayerScheduler s = new LayerScheduler(model, WeightPlacement.JUST_IN_TIME, pool, ops)) {
            long weights = pool.stats().allocatedBytes();
            ops.failDownload = "copy to the host failed";
            ops.failSynchronize = "the device keeps the error";
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> s.forward(Tensor.ofFloats(new float[7 * 32], 1, 7, 32), null));
            assertEquals(ops.failDownload, e.getMessage(), "the pass's error, not the cleanup's");
            assertEquals(1, e.getSuppressed().length, "the failed wait rides along");
            assertEquals(weights, pool.stats().allocatedBytes(), "every scratch and router buffer back in the pool");
            assertEquals(0, ops.markersOpen, "every marker closed");
            ops.failDownload = null;
            ops.failSynchronize = null;
        }
    }

    @Test
    void theBuildBindsHeadroutesKernelsAndAModelWithoutAttentionIsRefused() {
        // META-INF/services names the binding; GpuModel.open(ordinal, …) finds it.
        assertEquals(EngineAttentionProvider.class, DeviceAttentionProvider.find().orElseThrow().getClass());
        Model model = new Model(ModelWeights.random(config("mha", DType.F32), 2));
        UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                () -> GpuModel.open(null, null, model, WeightPlacement.JUST_IN_TIME));
        assertTrue(e.getMessage().startsWith("no GPU attention is bound to the GPU model"), e.getMessage());
    }
}
