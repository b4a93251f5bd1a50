package io.headroute.model.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.cuda.memory.DevicePool;
import io.headroute.cuda.memory.MemoryStats;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.model.LayerSpec;
import io.headroute.model.Model;
import io.headroute.model.ModelConfig;
import io.headroute.model.ModelWeights;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import io.headroute.routing.RouterConfig;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The memory plan, computed without running, against the peak the pool measures while the real
 * scheduler runs with no-op operations over a simulated allocator: equal in total and per tag.
 */
class MemoryPlanTest {
    record Measured(long peak, Map<String, Long> byTag) {}

    static ModelConfig config(int layers, int h, int hkv, DType dt, String mask, Algorithm algo) {
        LayerSpec spec = LayerSpec.of(new Pattern.Causal(), false, algo);
        List<LayerSpec> specs = new ArrayList<>(Collections.nCopies(layers, spec));
        if (mask != null && !mask.isEmpty()) {
            specs.set(0, spec.withHeadMask(LayerSchedulerTest.mask(mask)));
        }
        return new ModelConfig(48, h, hkv, 16, dt, 1e4, 1e-5, specs);
    }

    /** Runs the scheduler with no-op operations on a fresh pool and returns the pool's peaks. */
    static Measured measure(ModelConfig c, WeightPlacement placement, int b, int len, boolean gates) {
        return measure(c, placement, b, len, gates, false);
    }

    /** With {@code deviceWork}: attention workspaces as the GPU engine sizes them (layouts, device work lists). */
    static Measured measure(ModelConfig c, WeightPlacement placement, int b, int len, boolean gates, boolean deviceWork) {
        Model model = new Model(ModelWeights.random(c, 1));
        SimulatedDevice dev = new SimulatedDevice(1L << 40);
        SimulatedOps ops = new SimulatedOps(dev, null, SimulatedOps.Policy.COPY_FIRST);
        ops.deviceWork = deviceWork;
        try (DevicePool pool = DevicePool.create(dev, "plan", true)) {
            MemoryStats st;
            try (LayerScheduler s = new LayerScheduler(model, placement, pool, ops)) {
                Tensor x = Tensor.ofFloats(c.dtype(), new float[b * len * c.dModel()], b, len, c.dModel());
                List<Tensor> g = null;
                if (gates) {
                    g = new ArrayList<>();
                    for (int i = 0; i < c.layerCount(); i++) {
                        g.add(c.layer(i).routed() ? null : Tensor.ofFloats(new float[b * len * c.heads()], b, len, c.heads()));
                    }
                }
                st = s.forward(x, g).memory();
                long again = s.forward(x, g).peakBytes();
                assertEquals(st.peakAllocatedBytes(), again, "a second pass (cached blocks) peaks the same");
            }
            assertEquals(0, pool.stats().allocatedBytes());
            Map<String, Long> tags = new LinkedHashMap<>();
            st.byTag().forEach((t, s) -> tags.put(t, s.peakBytes()));
            return new Measured(st.peakAllocatedBytes(), tags);
        }
    }

    @ParameterizedTest(name = "layers={0} H={1} Hkv={2} {3} mask={4} {5} {6} B={7} L={8} gates={9}")
    @CsvSource({
        "1, 4, 4, f32, , flash, JUST_IN_TIME, 1, 100, false",
        "3, 4, 4, f32, , flash, JUST_IN_TIME, 1, 100, false",
        "8, 4, 4, f32, , flash, JUST_IN_TIME, 1, 100, false",
        "8, 4, 4, f32, , flash, RESIDENT, 1, 100, false",
        "3, 8, 2, bf16, , flash, JUST_IN_TIME, 2, 77, true",
        "3, 8, 2, f16, 10010011, materialized, RESIDENT, 2, 77, true",
        "5, 6, 3, f32, 110100, materialized, JUST_IN_TIME, 3, 33, false",
    })
    void predictedPeakEqualsMeasuredPeak(int layers, int h, int hkv, String dtype, String mask, String algo,
            WeightPlacement placement, int b, int len, boolean gates) {
        ModelConfig c = config(layers, h, hkv, DType.parse(dtype), mask, Algorithm.parse(algo));
        MemoryPlan plan = MemoryPlan.of(c, b, len, placement, gates);
        Measured m = measure(c, placement, b, len, gates);
        assertEquals(plan.totalBytes(), m.peak(), "total peak: " + plan);
        for (Map.Entry<String, Long> e : plan.bytesByTag().entrySet()) {
            assertEquals(e.getValue(), m.byTag().get(e.getKey()), "tag " + e.getKey() + ": " + plan);
        }
        assertEquals(plan.bytesByTag().keySet(), m.byTag().keySet(), "no buffer outside the plan");
    }

    @Test
    void peakDoesNotGrowWithLayersUnderJustInTimeWeights() {
        long one = MemoryPlan.of(config(1, 4, 2, DType.BF16, null, Algorithm.FLASH), 1, 256, WeightPlacement.JUST_IN_TIME,
                false).totalBytes();
        MemoryPlan three = MemoryPlan.of(config(3, 4, 2, DType.BF16, null, Algorithm.FLASH), 1, 256,
                WeightPlacement.JUST_IN_TIME, false);
        MemoryPlan eight = MemoryPlan.of(config(8, 4, 2, DType.BF16, null, Algorithm.FLASH), 1, 256,
                WeightPlacement.JUST_IN_TIME, false);
        assertEquals(three.totalBytes(), eight.totalBytes(), "3 and 8 layers: two weight slots either way");
        MemoryPlan.Buffer slot = three.buffers().get(0);
        assertEquals(one + slot.accountedBytes(), three.totalBytes(), "one layer needs only one slot");
        MemoryPlan resident = MemoryPlan.of(config(8, 4, 2, DType.BF16, null, Algorithm.FLASH), 1, 256,
                WeightPlacement.RESIDENT, false);
        assertEquals(8 * slot.accountedBytes(), resident.weightBytes());
        assertEquals(6 * slot.accountedBytes(), eight.savedByJustInTime(), "just in time saves six of eight layers");
        Map<String, Long> a = new LinkedHashMap<>(resident.bytesByTag());
        Map<String, Long> j = new LinkedHashMap<>(eight.bytesByTag());
        a.remove(MemoryPlan.WEIGHTS);
        j.remove(MemoryPlan.WEIGHTS);
        assertEquals(a, j, "scratch is the same whatever the placement");
    }

    @Test
    void tagsFollowTheirFormulas() {
        // d_model 48, H 8, Hkv 2, D 16, bf16, B 2, L 77; layer 0 keeps heads 0, 3, 6, 7, layer 1 all.
        ModelConfig c = config(2, 8, 2, DType.BF16, "10010011", Algorithm.MATERIALIZED);
        MemoryPlan p = MemoryPlan.of(c, 2, 77, WeightPlacement.RESIDENT, true);
        Map<String, Long> t = p.bytesByTag();
        long rows = 2 * 77;
        assertEquals(round(rows * 48 * 2), t.get(MemoryPlan.RESIDUAL));
        assertEquals(round(77L * 16 * 4), t.get(MemoryPlan.ROPE));
        assertEquals(round(rows * 48 * 2), t.get(MemoryPlan.NORM));
        assertEquals(round(rows * 8 * 16 * 2), t.get(MemoryPlan.Q), "the unpruned layer 1 sets the size");
        assertEquals(round(rows * 2 * 16 * 2), t.get(MemoryPlan.K));
        assertEquals(round(rows * 8 * 4), t.get(MemoryPlan.GATE), "one float per (b, t, active head)");
        // Materialized scores of the largest call: layer 1, all 8 heads, 77 × 77 bf16 per head and batch.
        assertEquals(round(2L * 8 * 77 * 77 * 2), t.get(MemoryPlan.WORKSPACE));
        // Layer 0 keeps 4 query heads over both kv heads (group 4: heads 0, 3 → kv 0; 6, 7 → kv 1).
        long l0 = align(48 * 2) + align(48L * 64 * 2) + 2 * align(48L * 32 * 2) + align(64L * 48 * 2);
        long l1 = align(48 * 2) + align(48L * 128 * 2) + 2 * align(48L * 32 * 2) + align(128L * 48 * 2);
        assertEquals(round(l0) + round(l1), t.get(MemoryPlan.WEIGHTS));
        long sum = 0;
        for (long v : t.values()) {
            sum += v;
        }
        assertEquals(sum, p.totalBytes());
    }

    @ParameterizedTest(name = "{0} gates={1}")
    @CsvSource({"JUST_IN_TIME, false", "RESIDENT, true"})
    void routedLayersAddTheRouterBuffersAndTheirWeights(WeightPlacement placement, boolean gates) {
        // Layer 0 routed (Hs 2, Hr 6) and pruned to 4 heads, layer 1 unrouted, layer 2 routed with Hr 3.
        ModelConfig base = config(3, 8, 2, DType.BF16, "10010011", Algorithm.FLASH);
        ModelConfig c = base.withLayer(0, base.layer(0).withRouter(new RouterConfig(2, 6, 2, 1)))
                .withLayer(2, base.layer(2).withRouter(new RouterConfig(5, 3, 1, 64)));
        int b = 2;
        int len = 77;
        MemoryPlan plan = MemoryPlan.of(c, b, len, placement, gates);
        Measured m = measure(c, placement, b, len, gates);
        assertEquals(plan.totalBytes(), m.peak(), "total peak: " + plan);
        assertEquals(plan.bytesByTag(), m.byTag(), "every tag as predicted");
        long rows = 2 * 77;
        assertEquals(round(rows * 6 * 4) + round(rows * 8 * 4), plan.bytesByTag().get(MemoryPlan.ROUTER),
                "logits for the widest router and one gate over all H heads");
        assertEquals(round(rows * 8 * 4), plan.bytesByTag().get(MemoryPlan.GATE), "routed layers need the compacted gate");
        ModelConfig unrouted = base;
        long extraWeights = MemoryPlan.of(c, b, len, WeightPlacement.RESIDENT, gates).weightBytes()
                - MemoryPlan.of(unrouted, b, len, WeightPlacement.RESIDENT, gates).weightBytes();
        assertEquals(round(align(48 * 2) + align(48L * 64 * 2) + 2 * align(48L * 32 * 2) + align(64L * 48 * 2)
                + align(48L * 6 * 2)) - round(align(48 * 2) + align(48L * 64 * 2) + 2 * align(48L * 32 * 2)
                + align(64L * 48 * 2)) + round(align(48 * 2) + align(48L * 128 * 2) + 2 * align(48L * 32 * 2)
                + align(128L * 48 * 2) + align(48L * 3 * 2)) - round(align(48 * 2) + align(48L * 128 * 2)
                + 2 * align(48L * 32 * 2) + align(128L * 48 * 2)), extraWeights, "Wr (d_model, Hr) packed with its layer");
    }

    /** The GPU engine's workspace for a call on caller-owned memory (EngineAttentionProvider's answer). */
    static final MemoryPlan.Workspace ENGINE = (s, d, a, p, g) -> CudaAttentionEngine.deviceWorkspaceBytes(s, d, a, p,
            EngineAttentionProvider.BLOCK_SIZE, g);

    /**
     * Routed layers (per token, per block of whole kernel tiles, pruned), a sparse routed layer and a
     * gated one, with the GPU engine's workspaces: the device work lists are in the plan, exactly.
     */
    @ParameterizedTest(name = "{0} {1} gates={2}")
    @CsvSource({"bf16, JUST_IN_TIME, false", "f32, RESIDENT, true", "f16, JUST_IN_TIME, true", "bf16, RESIDENT, true"})
    void deviceWorkListsAreInThePlanExactly(String dtype, WeightPlacement placement, boolean gates) {
        DType dt = DType.parse(dtype);
        int tile = dt == DType.F32 ? 32 : 64;
        ModelConfig base = config(4, 8, 2, dt, null, Algorithm.FLASH);
        ModelConfig c = base.withLayer(0, base.layer(0).withRouter(new RouterConfig(2, 6, 2, 1)))
                .withLayer(1, LayerSpec.of(Patterns.parse("window:20"), true, Algorithm.FLASH).withRouter(new RouterConfig(2, 6, 3, 64)))
                .withLayer(2, LayerSpec.of(new Pattern.Dense(), false, Algorithm.FLASH))
                .withLayer(3, base.layer(3).withHeadMask(LayerSchedulerTest.mask("10010011")).withRouter(new RouterConfig(1, 7, 2, 128)));
        int b = 2;
        int len = 300;
        MemoryPlan plan = MemoryPlan.of(c, b, len, placement, gates, ENGINE);
        Measured m = measure(c, placement, b, len, gates, true);
        assertEquals(plan.totalBytes(), m.peak(), "total peak: " + plan);
        assertEquals(plan.bytesByTag(), m.byTag(), "every tag as predicted");
        // The widest call compacts all 8 heads' rows (layer 0, per token): counts, rows, the list and its length.
        io.headroute.engine.cuda.GateWork.Layout rows = io.headroute.engine.cuda.GateWork.Layout.of(b, len, 8, tile, true);
        assertEquals(round(Math.max(rows.bytes(), ENGINE.bytes(new AttentionShape(b, 8, 2, len, len, 16), dt, Algorithm.FLASH,
                Patterns.parse("window:20").withCausal(), 64))), plan.bytesByTag().get(MemoryPlan.WORKSPACE));
        MemoryPlan ungated = MemoryPlan.of(c, b, len, placement, gates, (s, d, a, p, g) -> ENGINE.bytes(s, d, a, p, 0));
        assertTrue(plan.totalBytes() > ungated.totalBytes(), "the work lists take room: " + plan + " vs " + ungated);
    }

    private static long round(long bytes) {
        return (bytes + 511) / 512 * 512;
    }

    private static long align(long bytes) {
        return (bytes + 255) / 256 * 256;
    }

    @Test
    void fitsSaysWhatItNeedsAndWhatIsFree() {
        MemoryPlan p = MemoryPlan.of(config(4, 16, 16, DType.F16, null, Algorithm.MATERIALIZED), 1, 32768,
                WeightPlacement.RESIDENT, false);
        long scores = 16L * 32768 * 32768 * 2;
        assertTrue(p.totalBytes() > scores, "the materialized plan holds 16 heads × 2 GiB of fp16 scores");
        assertFalse(p.fits(scores));
        assertTrue(p.fits(p.totalBytes()));
        String msg = p.fitMessage(10L << 30);
        assertTrue(msg.matches("needs 32\\.\\d\\d GiB, card has 10\\.00 GiB free"), msg);
    }
}
