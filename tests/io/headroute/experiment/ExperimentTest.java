package io.headroute.experiment;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.bench.AttentionBenchmark;
import io.headroute.cuda.memory.Bytes;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.ExecutionStats;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cuda.MaterializedPlan;
import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.Pattern;
import io.headroute.quality.AttentionQuality;
import io.headroute.tensor.DType;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import org.junit.jupiter.api.Test;

class ExperimentTest {
    private static final Progress QUIET = new Progress() {
        @Override
        public void starting(int index, int total, String what) {}

        @Override
        public void finished(int total) {}
    };

    /** The CPU engine, but each timed call reports the next scripted time and a scripted device peak. */
    private static class ScriptedEngine implements AttentionEngine {
        final CpuAttentionEngine cpu = new CpuAttentionEngine(2);
        final Deque<Long> nanos = new ArrayDeque<>();
        final long peak;
        int calls;

        ScriptedEngine(long peak, long... times) {
            this.peak = peak;
            for (long t : times) {
                nanos.add(t);
            }
        }

        @Override
        public String name() {
            return "scripted";
        }

        @Override
        public AttentionResult run(AttentionRequest request) {
            calls++;
            AttentionResult r = cpu.run(request);
            ExecutionStats s = r.stats();
            long t = nanos.isEmpty() ? s.elapsedNanos() : nanos.poll();
            return new AttentionResult(r.o(), r.lse(), new ExecutionStats(name(), s.algorithm(), t, s.workspaceBytes(),
                    s.queryTiles(), s.keyTilesVisited(), s.keyTilesSkipped(), s.rowsSkipped(), peak));
        }

        @Override
        public void close() {
            cpu.close();
        }
    }

    private static Sweep sweep(List<Variant> variants, int warmup, int repeats) {
        return new Sweep(List.of(96), variants, List.of(DType.F32), List.of(2), 0, 16, 1, false, warmup, repeats, 5);
    }

    @Test
    void medianAndMinOfTheTimedCallsAfterWarmup() {
        // One warm-up (its time is consumed and ignored), then 4 timed calls: 9, 1, 5, 3 ms → median 4, min 1.
        try (ScriptedEngine e = new ScriptedEngine(12345, 77_000_000L, 9_000_000L, 1_000_000L, 5_000_000L, 3_000_000L)) {
            List<Run> rows = Experiment.run(e, sweep(List.of(new Variant.Flash(new Pattern.Dense())), 1, 4),
                    new Experiment.Limits(0, Double.MAX_VALUE), QUIET);
            Run r = rows.get(0);
            assertTrue(r.ok(), r.status());
            assertEquals(4.0, r.medianMs(), 1e-12);
            assertEquals(1.0, r.minMs(), 1e-12);
            double flops = 4.0 * 1 * 2 * 96 * 96 * 16;
            assertEquals(flops / 4e-3 / 1e12, r.tflops(), 1e-12);
            assertEquals(12345, r.measuredPeakBytes());
            assertEquals("flash", r.algorithmUsed());
            assertEquals("scripted", r.engine());
            assertEquals(1 + 4 + 1, e.calls, "warm-up, timed calls and the full-attention reference");
        }
        assertEquals(3.0, AttentionBenchmark.median(new double[] {5, 1, 3}));
        assertEquals(2.5, AttentionBenchmark.median(new double[] {4, 1, 3, 2}));
    }

    @Test
    void variantsOverTheDeviceMemoryAreNotRun() {
        AttentionShape sh = new AttentionShape(1, 2, 2, 96, 96, 16);
        long flashBytes = MaterializedPlan.of(sh, DType.F32, false).ioBytes();
        long matBytes = MaterializedPlan.of(sh, DType.F32, false).totalBytes();
        // A fake card between the two: flash fits, materialized does not.
        long card = (flashBytes + matBytes) / 2;
        try (ScriptedEngine e = new ScriptedEngine(-1)) {
            List<Run> rows = Experiment.run(e, sweep(List.of(new Variant.Materialized(new Pattern.Dense()),
                    new Variant.Flash(new Pattern.Dense())), 0, 1), new Experiment.Limits(card, Double.MAX_VALUE), QUIET);
            Run mat = rows.get(0);
            assertFalse(mat.ok());
            assertEquals("does not fit: needs " + Bytes.format(matBytes) + " (predicted), has " + Bytes.format(card)
                    + " (--device-memory)", mat.status());
            assertTrue(Double.isNaN(mat.medianMs()));
            assertEquals(matBytes, mat.predictedPeakBytes());
            assertEquals(0.0, mat.vramSaved(), 0);
            Run flash = rows.get(1);
            assertTrue(flash.ok(), flash.status());
            assertEquals(1 - (double) flashBytes / matBytes, flash.vramSaved(), 1e-12);
            assertEquals("predicted", flash.vramBasis());
            assertEquals(1 + 1, e.calls, "materialized never ran: the flash call and its reference");
        }
    }

    @Test
    void aFailingCallIsAFailedRowAndTheOthersAreKept() {
        try (ScriptedEngine e = new ScriptedEngine(-1) {
            @Override
            public AttentionResult run(AttentionRequest request) {
                if (request.algorithm() == Algorithm.MATERIALIZED) {
                    throw new IllegalStateException("boom");
                }
                return super.run(request);
            }
        }) {
            List<Run> rows = Experiment.run(e, sweep(List.of(new Variant.Materialized(new Pattern.Dense()),
                    new Variant.Flash(new Pattern.Dense())), 0, 1), new Experiment.Limits(0, Double.MAX_VALUE), QUIET);
            assertEquals("failed: IllegalStateException: boom", rows.get(0).status());
            assertFalse(rows.get(0).ok());
            assertTrue(rows.get(1).ok(), rows.get(1).status());
        }
    }

    @Test
    void predictedMemoryFollowsThePlans() {
        AttentionShape sh = new AttentionShape(2, 4, 2, 100, 100, 32);
        MaterializedPlan plan = MaterializedPlan.of(sh, DType.BF16, false);
        assertEquals(plan.totalBytes(), new Variant.Materialized(new Pattern.Dense()).predictMemory(sh, DType.BF16, true).bytes());
        assertEquals(2L * 4 * 100 * 100 * 2, new Variant.Materialized(new Pattern.Dense()).predictMemory(sh, DType.BF16, false)
                .scoreBytes());
        assertEquals(plan.ioBytes(), new Variant.Flash(new Pattern.Dense()).predictMemory(sh, DType.BF16, false).bytes());
        // The CUDA engine's upload: the layout at block 64 cut into the bf16 kernel's 64 x 64 tiles.
        Pattern wc = new Pattern.Window(16).withCausal();
        long layout = io.headroute.engine.cuda.SparseTiles.build(wc,
                BlockLayout.build(wc, 4, 100, 100, MemoryPrediction.SPARSE_BLOCK), 100, 100, 64, 64).deviceBytes();
        assertTrue(layout > 0);
        assertEquals(layout, io.headroute.engine.cuda.CudaAttentionEngine.sparseLayoutBytes(sh, DType.BF16, wc, 64));
        assertEquals(plan.ioBytes() + layout, new Variant.Sparse(new Pattern.Window(16)).predictMemory(sh, DType.BF16, true)
                .bytes());
        // Flash on a window runs the block-sparse kernel, layout and all (it was predicted as flash's inputs and outputs).
        assertEquals(plan.ioBytes() + layout, new Variant.Flash(new Pattern.Window(16)).predictMemory(sh, DType.BF16, true)
                .bytes());
        assertEquals(plan.ioBytes(), new Variant.Flash(new Pattern.Dense()).predictMemory(sh, DType.BF16, true).bytes());
    }

    @Test
    void tokenDensityCountsAllowedPairs() {
        for (Pattern p : List.of(new Pattern.Dense(), new Pattern.Causal(), new Pattern.Window(5), new Pattern.BigBird(8, 1, 1, 1, 3),
                new Pattern.Window(3).withCausal())) {
            int h = 3;
            int l = 37;
            int s = 50;
            long allowed = 0;
            for (int hh = 0; hh < h; hh++) {
                for (int i = 0; i < l; i++) {
                    for (int j = 0; j < s; j++) {
                        allowed += p.allows(hh, i + s - l, j, s) ? 1 : 0;
                    }
                }
            }
            assertEquals(allowed / (double) (h * l * s), Experiment.tokenDensity(p, h, l, s), 1e-12, p.spec());
        }
    }

    @Test
    void fidelityIsTheQualityPackagesOnTheSameInputs() {
        Variant v = new Variant.Sparse(new Pattern.Window(8));
        Sweep s = sweep(List.of(new Variant.Flash(new Pattern.Dense()), v), 0, 1);
        try (CpuAttentionEngine cpu = new CpuAttentionEngine(2)) {
            List<Run> rows = Experiment.run(cpu, s, new Experiment.Limits(0, Double.MAX_VALUE), QUIET);
            Run dense = rows.get(0);
            assertEquals(0.0, dense.relError(), 0);
            assertEquals(1.0, dense.recall(), 1e-6);
            Run sparse = rows.get(1);
            assertEquals("sparse", sparse.algorithmUsed(), "the CPU has its own sparse path");
            AttentionBenchmark.Inputs in = AttentionBenchmark.randomInputs(new AttentionBenchmark.Config(1, 2, 2, 96, 96, 16,
                    false, new Pattern.Dense(), DType.F32, List.of(Algorithm.FLASH), 0, 1, 5));
            AttentionQuality.Report q = AttentionQuality.measure(cpu, in.q(), in.k(), in.v(), new Pattern.Window(8), null,
                    DType.F32, Algorithm.SPARSE);
            assertEquals(q.recall(), sparse.recall(), 1e-12);
            assertEquals(q.relError(), sparse.relError(), 1e-12);
            assertTrue(sparse.recall() < 1 && sparse.recall() > 0);
            assertEquals(dense.medianMs() / sparse.medianMs(), sparse.speedup(), 1e-12);
            assertEquals("flash", sparse.speedupBaseline());
            assertNull(sparse.fidelityNote());
        }
    }

    @Test
    void referenceOverTheLimitLeavesFidelityNa() {
        try (CpuAttentionEngine cpu = new CpuAttentionEngine(2)) {
            List<Run> rows = Experiment.run(cpu, sweep(List.of(new Variant.Sparse(new Pattern.Window(8))), 0, 1),
                    new Experiment.Limits(0, 1e5), QUIET);
            Run r = rows.get(0);
            assertTrue(r.ok());
            assertTrue(Double.isNaN(r.recall()) && Double.isNaN(r.relError()));
            assertTrue(r.fidelityNote().startsWith("n/a: the dense reference costs 0.00118 GFLOP, above the 0.000100 GFLOP limit"),
                    r.fidelityNote());
        }
    }

    @Test
    void vramSavedUsesMeasuredPeaksWhenBothAreMeasured() {
        AttentionShape sh = new AttentionShape(1, 2, 2, 64, 64, 16);
        List<Run> group = new ArrayList<>();
        group.add(row(new Variant.Materialized(new Pattern.Dense()), 1000, 4.0));
        group.add(row(new Variant.Flash(new Pattern.Dense()), 250, 2.0));
        group.add(row(new Variant.Sparse(new Pattern.Window(4)), 100, 0.5));
        List<Run> out = Experiment.compare(group, false, DType.F32, sh);
        assertEquals(0.0, out.get(0).vramSaved(), 0);
        assertEquals(0.75, out.get(1).vramSaved(), 1e-12);
        assertEquals(0.9, out.get(2).vramSaved(), 1e-12);
        assertEquals("measured", out.get(2).vramBasis());
        assertEquals(4.0, out.get(2).speedup(), 1e-12);
        assertEquals(0.5, out.get(0).speedup(), 1e-12);
        assertEquals("flash", out.get(0).speedupBaseline());
    }

    @Test
    void theFirstLengthWarmsUpForItsTimeBudget() {
        // 40 ms of warm-up per run at the first length (by the clock, not the calls' reported times), beyond the one
        // counted call; at the second length the counted call only: 1 + 2 calls there, and one reference call at each.
        try (ScriptedEngine e = new ScriptedEngine(1)) {
            Sweep s = new Sweep(List.of(96, 128), List.of(new Variant.Flash(new Pattern.Dense())), List.of(DType.F32), List.of(2), 0,
                    16, 1, false, 1, 2, 5);
            List<Run> rows = Experiment.run(e, s, new Experiment.Limits(0, Double.MAX_VALUE, 40_000_000L), QUIET);
            assertEquals(2, rows.size());
            assertTrue(e.calls > (1 + 2 + 1) + (1 + 2 + 1), "the first length warmed up beyond its one counted call: " + e.calls);
        }
        try (ScriptedEngine e = new ScriptedEngine(1)) {
            Sweep s = new Sweep(List.of(96, 128), List.of(new Variant.Flash(new Pattern.Dense())), List.of(DType.F32), List.of(2), 0,
                    16, 1, false, 0, 2, 5);
            Experiment.run(e, s, new Experiment.Limits(0, Double.MAX_VALUE, 40_000_000L), QUIET);
            assertEquals(2 * (2 + 1), e.calls, "no warm-up asked, none given: the timed calls and the references only");
        }
    }

    @Test
    void aRoutedRunAtAHeadDimNoGpuKernelTakesStillRunsOnTheCpu() {
        // f16 at D = 16: no tensor-core kernel, so no exact GPU work-list prediction; the CPU runs it, and the row keeps
        // the bound made before routing (it threw, and the whole experiment with it).
        try (CpuAttentionEngine cpu = new CpuAttentionEngine(2)) {
            Variant routed = Variant.parse("routed:1:1");
            Sweep s = new Sweep(List.of(64), List.of(routed), List.of(DType.F16), List.of(2), 0, 16, 1, false, 0, 1, 5);
            Run r = Experiment.run(cpu, s, new Experiment.Limits(0, Double.MAX_VALUE), QUIET).get(0);
            assertTrue(r.ok(), r.status());
            assertEquals(routed.predictMemory(new io.headroute.engine.AttentionShape(1, 2, 2, 64, 64, 16), DType.F16, false).bytes(),
                    r.predictedPeakBytes());
        }
    }

    @Test
    void workDensityIsTheShareOfTheBaselinesWorkUnderCausalToo() {
        // L = S = 64 causal: full (causal) attention keeps 65/128 of the L·S pairs.
        double causal = 65 / 128.0;
        Run.Details half = new Run.Details(1, 1, 1, 1, 1, 0.5, 0.5);
        Variant window = Variant.parse("sparse:window:8");
        Variant routed = Variant.parse("routed:1:1");
        Variant routedWindow = Variant.parse("routed:1:1:window:8");
        Variant pruned = Variant.parse("pruned:0.5");
        for (boolean c : new boolean[] {false, true}) {
            double full = c ? causal : 1.0;
            assertEquals(0.2 / full, Charts.workDensity(causalRow(window, c, 0.2, Run.Details.NONE)), 1e-12);
            assertEquals(0.5, Charts.workDensity(causalRow(routed, c, full, half)), 1e-12);
            assertEquals(0.5 * 0.2 / full, Charts.workDensity(causalRow(routedWindow, c, 0.2, half)), 1e-12);
            assertEquals(0.5, Charts.workDensity(causalRow(pruned, c, full, half)), 1e-12);
            assertTrue(Double.isNaN(Charts.workDensity(causalRow(Variant.parse("flash"), c, full, Run.Details.NONE))));
        }
    }

    /**
     * The speed-up chart: one series per kind of variant and length (so a routed point is not read as a pattern's),
     * and its 1x line and ideal 1 / work density in view even where every point lies between them.
     */
    @Test
    void speedupChartSeriesByKindWithItsReferenceLines() throws Exception {
        Run.Details half = new Run.Details(1, 1, 1, 1, 1, 0.5, 0.5);
        List<Run> rows = List.of(causalRow(Variant.parse("routed:1:1"), false, 1, half),
                causalRow(Variant.parse("sparse:window:8"), false, 0.2, Run.Details.NONE),
                causalRow(Variant.parse("pruned:0.5"), false, 1, half),
                causalRow(Variant.parse("flash"), false, 1, Run.Details.NONE));
        Chart c = Charts.speedup(rows);
        assertEquals(List.of("pattern L=64", "routed L=64", "pruned L=64", "1x: full attention", "ideal: 1 / work density"),
                c.legend());
        double[] y = c.yRange(); // points at 2x; the references at 1x and 1 / 0.2 = 5x
        assertTrue(y[0] < 1 && y[1] > 5, java.util.Arrays.toString(y));
        c.png();
        Chart none = Charts.speedup(List.of(causalRow(Variant.parse("flash"), false, 1, Run.Details.NONE)));
        assertTrue(none.isEmpty() && none.legend().isEmpty(), none.legend().toString());
        none.png();
    }

    /** A speed-up beyond what the work skipped explains gets a note; one within it does not. */
    @Test
    void reportNotesSpeedupsAboveTheIdeal() {
        Run.Details half = new Run.Details(1, 1, 1, 1, 1, 0.5, 0.5);
        Variant pruned = Variant.parse("pruned:0.5");
        Variant window = Variant.parse("sparse:window:8");
        List<Run> rows = List.of(causalRow(Variant.parse("flash"), false, 1, Run.Details.NONE).compared(0, "predicted", 1, "flash"),
                causalRow(pruned, false, 1, half).compared(0, "predicted", 3.40, "flash"), // ideal 2x: 3.4 > 1.25 × 2
                causalRow(window, false, 0.2, Run.Details.NONE).compared(0, "predicted", 6.0, "flash")); // 6 < 1.25 × 5
        Sweep s = new Sweep(List.of(64), List.of(Variant.parse("flash"), pruned, window), List.of(DType.F32), List.of(2), 0, 16,
                1, false, 0, 1, 5);
        String md = ExperimentReport.markdown(rows, new ExperimentReport.Context("headroute experiment", "today", "CPU", "cpu",
                "abc", "cpu", false, s, List.of(), new Experiment.Limits(0, 1e12)), null);
        assertTrue(md.contains("| 3.40x vs flash [1] |"), md);
        assertTrue(md.contains("1. pruned:0.5, f32, H=2, L=64: speed-up 3.40x is more than 1.25 × 1 / work density (2.00x)"),
                md);
        assertTrue(md.contains("| 6.00x vs flash |") && !md.contains("\n2. "), md);
    }

    private static Run causalRow(Variant v, boolean causal, double density, Run.Details d) {
        return new Run(v, DType.F32, 1, 2, 2, 64, 16, causal, "ok", "cpu", v.algorithm().cliName(), 1, 1, 1, density, -1, 1,
                Double.NaN, null, 2, "flash", 0, 1, null, d);
    }

    private static Run row(Variant v, long peak, double ms) {
        return new Run(v, DType.F32, 1, 2, 2, 64, 16, false, "ok", "cuda", v.algorithm().cliName(), ms, ms, 1, 1, peak, peak * 2,
                Double.NaN, null, Double.NaN, null, 0, 1, null);
    }

    /**
     * Routed rows: the router's gate drives the attention; the row's work counts are the engine's for that
     * gated call, its skipped rows are the gate's zeros, and its error is against gate × dense. Pruned rows:
     * the removed heads are not computed (half the heads, half the tiles).
     */
    @Test
    void routedAndPrunedRowsAgreeWithTheEngineAndTheRouter() {
        int h = 4;
        int len = 130;
        Variant flash = new Variant.Flash(new Pattern.Dense());
        Variant.Routed token = new Variant.Routed(1, 1, 1);
        Variant.Routed block = new Variant.Routed(1, 2, 64);
        Variant pruned = Variant.parse("pruned:0.5");
        Sweep s = new Sweep(List.of(len), List.of(flash, token, block, pruned), List.of(DType.F32), List.of(h), 2, 16, 1, false,
                0, 2, 11);
        try (CpuAttentionEngine cpu = new CpuAttentionEngine(2);
                io.headroute.routing.CpuHeadRouter router = new io.headroute.routing.CpuHeadRouter(1)) {
            List<Run> rows = Experiment.run(cpu, s, new Experiment.Limits(0, Double.MAX_VALUE), QUIET);
            assertEquals(4, rows.size());
            Run dense = rows.get(0);
            AttentionShape shape = new AttentionShape(1, h, 2, len, len, 16);
            AttentionBenchmark.Config ac = new AttentionBenchmark.Config(1, h, 2, len, len, 16, false, new Pattern.Dense(),
                    DType.F32, List.of(Algorithm.FLASH), 0, 2, 11);
            AttentionBenchmark.Inputs in = AttentionBenchmark.randomInputs(ac);
            for (Variant.Routed v : List.of(token, block)) {
                Run r = rows.get(v == token ? 1 : 2);
                assertTrue(r.ok(), r.status());
                io.headroute.routing.RouterConfig rc = v.router(h);
                io.headroute.bench.RoutedBenchmark.Config bc = new io.headroute.bench.RoutedBenchmark.Config(ac, rc, h * 16);
                io.headroute.tensor.Tensor[] xw = io.headroute.bench.RoutedBenchmark.randomRouterInputs(bc);
                io.headroute.routing.RouterOutput ro = router.route(xw[0], xw[1], rc, DType.F32);
                long zeros = 0;
                for (float g : ro.gate().toFloatArray()) {
                    zeros += g == 0f ? 1 : 0;
                }
                ExecutionStats st = cpu.run(AttentionRequest.builder(in.q(), in.k(), in.v()).gate(ro.gate())
                        .algorithm(Algorithm.FLASH).build()).stats();
                assertEquals(zeros, r.details().rowsSkipped(), v.spec() + ": skipped rows = the gate's zeros");
                assertEquals(st.rowsSkipped(), r.details().rowsSkipped(), v.spec());
                assertEquals(st.queryTiles(), r.details().queryTiles(), v.spec() + ": query tiles as the engine reports");
                assertEquals(st.keyTilesVisited(), r.details().keyTilesVisited(), v.spec());
                assertTrue(r.details().queryTiles() < dense.details().queryTiles(), v.spec() + ": routing skipped tiles");
                assertEquals(ro.stats().loadBalance(), r.details().loadBalance(), 0, v.spec());
                assertEquals(ro.stats().activeHeadFraction(), r.details().activeHeadFraction(), 0, v.spec());
                assertEquals(1.0 - (double) zeros / (len * h), r.details().activeHeadFraction(), 1e-12);
                assertTrue(r.relError() <= 1e-5, v.spec() + ": rel. error vs gate × dense " + r.relError());
                assertTrue(Double.isNaN(r.recall()));
                assertTrue(r.fidelityNote().startsWith("routed: rel. error against gate × dense output"), r.fidelityNote());
                assertTrue(r.details().routerMs() > 0);
                assertEquals(100 * r.details().routerMs() / r.medianMs(), r.routerOverheadPercent(), 1e-9);
                assertEquals(r.medianMs() / dense.medianMs(), r.timeRatio(), 1e-9);
                AttentionRequest gated = AttentionRequest.builder(in.q(), in.k(), in.v()).gate(ro.gate()).dtype(DType.F32)
                        .algorithm(Algorithm.FLASH).build();
                long work = io.headroute.engine.cuda.CudaAttentionEngine.gateWorkBytes(gated);
                assertTrue(work > 0, v.spec() + ": the router switches tiles off, so the GPU builds a work list");
                assertEquals(MaterializedPlan.of(shape, DType.F32, true).ioBytes() + work, r.predictedPeakBytes(),
                        "flash's inputs and outputs, the gate, and the work list built from this gate");
                assertTrue(v.predictMemory(shape, DType.F32, false).bytes() >= r.predictedPeakBytes(),
                        v.spec() + ": the bound before routing covers the exact prediction");
            }
            Run p = rows.get(3);
            assertTrue(p.ok(), p.status());
            assertEquals(0.5, p.details().headsRemoved(), 0);
            assertEquals(dense.details().queryTiles() / 2, p.details().queryTiles(), "half the heads, half the query tiles");
            assertEquals(dense.details().keyTilesVisited() / 2, p.details().keyTilesVisited());
            assertEquals(0, p.details().rowsSkipped(), "nothing gated: the heads are gone, not zeroed");
            assertTrue(Double.isNaN(p.relError()) && Double.isNaN(p.recall()));
            assertTrue(p.fidelityNote().startsWith("pruned: the kept heads are computed exactly"), p.fidelityNote());
            // Heads 1 and 3 go (one of each group of two); both key/value heads stay.
            assertEquals(MaterializedPlan.of(new AttentionShape(1, 2, 2, len, len, 16), DType.F32, false).ioBytes(),
                    p.predictedPeakBytes());
            assertTrue(Double.isNaN(dense.details().routerMs()) && Double.isNaN(dense.timeRatio()),
                    "router and head columns only where meaningful");
            assertTrue(Double.isNaN(dense.details().headsRemoved()));
        }
    }
    /**
     * A routed variant on a sparse pattern runs the block-sparse algorithm under the router's gate: the
     * engine's counts for that gated sparse call, fewer key tiles than the pattern alone, its error against
     * gate × the pattern's output, the layout in its predicted peak, and gate share × token density as its
     * work density.
     */
    @Test
    void routedSparseRowsSkipWorkOnTopOfThePattern() {
        int h = 4;
        int len = 200;
        Pattern window = new Pattern.Window(20);
        Variant sparse = new Variant.Sparse(window);
        Variant.Routed routed = new Variant.Routed(1, 1, 64, window); // per 64-token block: whole query tiles switch off
        Sweep s = new Sweep(List.of(len), List.of(new Variant.Flash(new Pattern.Dense()), sparse, routed), List.of(DType.F32),
                List.of(h), 2, 16, 1, false, 0, 2, 11);
        try (CpuAttentionEngine cpu = new CpuAttentionEngine(2);
                io.headroute.routing.CpuHeadRouter router = new io.headroute.routing.CpuHeadRouter(1)) {
            List<Run> rows = Experiment.run(cpu, s, new Experiment.Limits(0, Double.MAX_VALUE), QUIET);
            Run sp = rows.get(1);
            Run r = rows.get(2);
            assertTrue(sp.ok() && r.ok(), sp.status() + " / " + r.status());
            assertEquals("sparse", r.algorithmUsed());
            assertEquals(sp.tokenDensity(), r.tokenDensity(), 0);
            AttentionShape shape = new AttentionShape(1, h, 2, len, len, 16);
            AttentionBenchmark.Config ac = new AttentionBenchmark.Config(1, h, 2, len, len, 16, false, new Pattern.Dense(),
                    DType.F32, List.of(Algorithm.FLASH), 0, 2, 11);
            AttentionBenchmark.Inputs in = AttentionBenchmark.randomInputs(ac);
            io.headroute.routing.RouterConfig rc = routed.router(h);
            io.headroute.tensor.Tensor[] xw = io.headroute.bench.RoutedBenchmark.randomRouterInputs(
                    new io.headroute.bench.RoutedBenchmark.Config(ac, rc, h * 16));
            io.headroute.routing.RouterOutput ro = router.route(xw[0], xw[1], rc, DType.F32);
            AttentionRequest gated = AttentionRequest.builder(in.q(), in.k(), in.v()).gate(ro.gate()).pattern(window)
                    .dtype(DType.F32).algorithm(Algorithm.SPARSE).build();
            ExecutionStats st = cpu.run(gated).stats();
            assertEquals(st.queryTiles(), r.details().queryTiles());
            assertEquals(st.keyTilesVisited(), r.details().keyTilesVisited());
            assertEquals(st.rowsSkipped(), r.details().rowsSkipped());
            assertTrue(r.details().queryTiles() < sp.details().queryTiles()
                    && r.details().keyTilesVisited() < sp.details().keyTilesVisited(),
                    "routing skips work on top of the pattern: " + r.details() + " vs " + sp.details());
            long zeros = 0;
            for (float g : ro.gate().toFloatArray()) {
                zeros += g == 0f ? 1 : 0;
            }
            assertEquals(zeros, r.details().rowsSkipped(), "skipped rows = the gate's zeros");
            assertTrue(r.relError() <= 1e-5, "rel. error vs gate × window output " + r.relError());
            assertTrue(r.fidelityNote().startsWith("routed: rel. error against gate × window:20 output"), r.fidelityNote());
            assertEquals(MaterializedPlan.of(shape, DType.F32, true).ioBytes()
                    + io.headroute.engine.cuda.CudaAttentionEngine.sparseLayoutBytes(shape, DType.F32, window,
                            MemoryPrediction.SPARSE_BLOCK)
                    + io.headroute.engine.cuda.CudaAttentionEngine.gateWorkBytes(gated), r.predictedPeakBytes(),
                    "inputs, outputs and gate, the layout, and the work list built from this gate");
            assertTrue(routed.predictMemory(shape, DType.F32, false).bytes() >= r.predictedPeakBytes());
            assertEquals(r.details().activeHeadFraction() * r.tokenDensity(), Charts.workDensity(r), 1e-12);
        }
    }
}
