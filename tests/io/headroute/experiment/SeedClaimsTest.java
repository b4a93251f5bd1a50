package io.headroute.experiment;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.analysis.HeadImportance;
import io.headroute.analysis.ModelAnalysis;
import io.headroute.engine.Algorithm;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.model.LayerSpec;
import io.headroute.model.ModelConfig;
import io.headroute.model.ModelWeights;
import io.headroute.pattern.Pattern;
import io.headroute.routing.PruningPlan;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class SeedClaimsTest {
    /** A small version of the preset's pruning model, measured once for these tests. */
    private static final SeedClaims.PruningSetup TINY_SETUP = new SeedClaims.PruningSetup(ModelConfig.uniform(32, 4, 4, 8,
            DType.F32, 2, LayerSpec.of(new Pattern.Dense(), true, Algorithm.FLASH)), 1, 40, 5, 0.37, 0, 3);
    private static final SeedClaims.PruningMeasurement TINY = SeedClaims.PruningMeasurement.run(TINY_SETUP);

    private static Run run(Variant v, String status, long measured, double density, double saved, double recall, double err) {
        return new Run(v, DType.F16, 1, 8, 8, 32768, 64, false, status, "cuda", "ok".equals(status) ? "x" : null, 1, 1, 1, density,
                measured, 1, saved, Double.isNaN(saved) ? null : "measured", Double.NaN, null, err, recall, null);
    }

    @Test
    void measuredOnTheGpu() {
        long scores = 8L * 32768 * 32768 * 2;
        List<Run> rows = List.of(run(new Variant.Materialized(new Pattern.Dense()), "ok", scores + 100_000_000L, 1, 0, 1, 0),
                run(new Variant.Flash(new Pattern.Dense()), "ok", 130_000_000L, 1, 0.99, 1, 0),
                run(new Variant.Sparse(new Pattern.Window(2100)), "ok", 131_000_000L, 0.1262, 0.992, 0.985, 0.05));
        List<SeedClaims.Row> c = SeedClaims.evaluate(rows, true, () -> TINY);
        assertEquals(4, c.size());
        assertTrue(c.get(0).found().startsWith("measured peak 16.09 GiB"), c.get(0).found());
        assertTrue(c.get(0).found().contains("flash at the same shape: measured peak 123.98 MiB"), c.get(0).found());
        assertEquals("agrees (16 GiB, binary gigabytes; measured)", c.get(0).verdict());
        assertTrue(c.get(1).configuration().startsWith("sparse:window:2100, token density 0.1262"), c.get(1).configuration());
        assertTrue(c.get(1).found().contains("VRAM saved 99.2% (measured)"), c.get(1).found());
        assertEquals("agrees", c.get(1).verdict());
    }

    @Test
    void sparseRowsThatDidNotRunOrLackFidelity() {
        Run unsupported = run(new Variant.Sparse(new Pattern.Window(2100)), "unsupported: no GPU sparse kernel", -1, 0.126, 0.99,
                Double.NaN, Double.NaN);
        SeedClaims.Row r = SeedClaims.evaluate(List.of(unsupported), true, () -> TINY).get(1);
        assertEquals("not measured", r.verdict());
        assertTrue(r.found().contains("quality not measured: unsupported: no GPU sparse kernel"), r.found());

        Run lowRecall = run(new Variant.Sparse(new Pattern.Window(2100)), "ok", 1, 0.126, 0.9, 0.2, 2.0);
        assertEquals("partly agrees: memory yes, quality no (recall < 0.98)",
                SeedClaims.evaluate(List.of(lowRecall), true, () -> TINY).get(1).verdict());
        assertEquals("not measured", SeedClaims.evaluate(List.of(), true, () -> TINY).get(1).verdict());
        SeedClaims.Row none = SeedClaims.evaluate(List.of(), false, () -> TINY).get(0);
        assertEquals("agrees by arithmetic (16 GiB, binary gigabytes); not measured", none.verdict());
        assertTrue(none.found().contains("17179869184 bytes = 16.00 GiB (17.18 GB)"), none.found());
    }

    @Test
    void pruningRowsReportTheMeasurement() {
        AtomicInteger calls = new AtomicInteger();
        List<SeedClaims.Row> c = SeedClaims.evaluate(List.of(), false, () -> {
            calls.incrementAndGet();
            return TINY;
        });
        assertEquals(1, calls.get(), "both pruning rows share one measurement");
        SeedClaims.Row loss = c.get(2);
        SeedClaims.Row latency = c.get(3);
        assertEquals("37% of heads can be pruned with under 0.5% loss", loss.claim());
        assertEquals("pruning cuts inference latency by up to 42%", latency.claim());
        assertTrue(loss.configuration().startsWith("2 layers, d_model = 32, H = 4, Hkv = 4, D = 8, dense attention + causal, "
                + "f32; seeded random weights (seed 5) and Gaussian X (B = 1, L = 40); greedy plan removing round(0.37 · 8) heads"),
                loss.configuration());
        assertEquals(loss.configuration(), latency.configuration());

        // The row's error is the relative change of the unpruned and pruned models' outputs, measured again here.
        ModelWeights w = ModelWeights.random(TINY_SETUP.config(), 5);
        Tensor x = ModelAnalysis.randomInput(1, 40, 32, 5);
        PruningPlan plan = TINY.pruning().plan();
        double err;
        try (CpuAttentionEngine engine = new CpuAttentionEngine(2)) {
            assertEquals(ModelAnalysis.plan(ModelAnalysis.importance(w, x, engine), 0.37), plan);
            err = HeadImportance.relativeChange(ModelAnalysis.unpruned(w).forward(x, engine).toFloatArray(),
                    ModelAnalysis.pruned(w, plan).forward(x, engine).toFloatArray());
        }
        assertEquals(err, TINY.pruning().relativeError());
        assertTrue(loss.found().startsWith(String.format(Locale.ROOT, "removed 3 of 8 heads (37.5%%); the whole model's output "
                + "changed by ‖Y − Y_pruned‖ / ‖Y‖ = %.3f%% (random weights", 100 * err)), loss.found());
        assertEquals(err < 0.005 ? "agrees on this random-weight model (output change under 0.5%)"
                : "disagrees on this random-weight model (output change 0.5% or more)", loss.verdict());
        assertTrue(latency.found().contains(String.format(Locale.ROOT, "median forward %.2f ms unpruned, %.2f ms pruned, latency "
                + "cut by %.1f%%", TINY.pruning().unprunedMedianMs(), TINY.pruning().prunedMedianMs(),
                100 * TINY.pruning().latencyReduction())), latency.found());
        assertTrue(latency.found().contains(String.format(Locale.ROOT, "removes %.1f%% of the nominal FLOPs",
                100 * (1 - TINY.pruning().flopRatio()))), latency.found());
    }

    @Test
    void pruningVerdictsFollowTheMeasuredNumbers() {
        PruningPlan plan = TINY.pruning().plan();
        SeedClaims.PruningMeasurement good = new SeedClaims.PruningMeasurement(TINY_SETUP,
                new ModelAnalysis.Pruning(plan, 0.004, new double[] {10, 12, 11}, new double[] {5, 6, 7}, 0.6), 0.01, 1);
        List<SeedClaims.Row> c = SeedClaims.evaluate(List.of(), false, () -> good);
        assertEquals("agrees on this random-weight model (output change under 0.5%)", c.get(2).verdict());
        assertTrue(c.get(2).found().contains("= 0.400% (random weights"), c.get(2).found());
        assertTrue(c.get(2).found().endsWith("; the pruning measurement took 1.0 s"), c.get(2).found());
        assertEquals("agrees (a cut of 42% or more measured)", c.get(3).verdict());
        assertTrue(c.get(3).found().contains("median forward 11.00 ms unpruned, 6.00 ms pruned, latency cut by 45.5%; the plan "
                + "removes 40.0% of the nominal FLOPs"), c.get(3).found());

        SeedClaims.PruningMeasurement small = new SeedClaims.PruningMeasurement(TINY_SETUP,
                new ModelAnalysis.Pruning(plan, 0.3, new double[] {10}, new double[] {9}, 0.6), 0.9, 1);
        c = SeedClaims.evaluate(List.of(), false, () -> small);
        assertEquals("disagrees on this random-weight model (output change 0.5% or more)", c.get(2).verdict());
        assertEquals("partly agrees: latency falls, by less than 42% at this plan", c.get(3).verdict());

        SeedClaims.PruningMeasurement slower = new SeedClaims.PruningMeasurement(TINY_SETUP,
                new ModelAnalysis.Pruning(plan, 0.3, new double[] {10}, new double[] {10.5}, 0.6), 0.9, 1);
        assertEquals("disagrees: no latency cut measured", SeedClaims.evaluate(List.of(), false, () -> slower).get(3).verdict());
    }
}
