package io.headroute.experiment;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.pattern.Pattern;
import java.util.List;
import org.junit.jupiter.api.Test;

class VariantTest {
    @Test
    void grammar() {
        Variant m = Variant.parse("materialized");
        assertInstanceOf(Variant.Materialized.class, m);
        assertEquals(new Pattern.Dense(), m.pattern());
        assertEquals(Algorithm.MATERIALIZED, m.algorithm());
        assertEquals("materialized", m.spec());

        Variant f = Variant.parse(" flash ");
        assertEquals(new Variant.Flash(new Pattern.Dense()), f);
        assertEquals("flash", f.spec());
        assertTrue(f.full());

        Variant fw = Variant.parse("flash:window:64");
        assertEquals(new Variant.Flash(new Pattern.Window(64)), fw);
        assertEquals("flash:window:64", fw.spec());
        assertFalse(fw.full());

        Variant s = Variant.parse("sparse:window:256");
        assertEquals(new Variant.Sparse(new Pattern.Window(256)), s);
        assertEquals(Algorithm.SPARSE, s.algorithm());
        assertEquals("sparse:window:256", s.spec());

        Variant b = Variant.parse("sparse:bigbird:64:1:1:2:7");
        assertEquals(new Pattern.BigBird(64, 1, 1, 2, 7), b.pattern());
        assertEquals("sparse:bigbird:64:1:1:2:7", b.spec());

        assertEquals(new Variant.Materialized(new Pattern.Causal()), Variant.parse("materialized:causal"));
        assertTrue(Variant.parse("flash:causal").full());
        // Canonical specs parse back to the same variant.
        for (String spec : List.of("materialized", "flash", "flash:longformer:32:2", "sparse:causal", "materialized:window:8")) {
            assertEquals(spec, Variant.parse(spec).spec());
            assertEquals(Variant.parse(spec), Variant.parse(Variant.parse(spec).spec()));
        }
    }

    @Test
    void errorsAreOneLineAndSayWhatIsExpected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("quick"));
        assertTrue(e.getMessage().contains("unknown variant 'quick'"), e.getMessage());
        assertTrue(e.getMessage().contains("sparse:PATTERN"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("sparse"));
        assertTrue(e.getMessage().contains("needs a pattern"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("sparse:"));
        assertTrue(e.getMessage().contains("a pattern is expected"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("sparse:window:-3"));
        assertTrue(e.getMessage().startsWith("variant 'sparse:window:-3': pattern"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("flash:nope"));
        assertTrue(e.getMessage().contains("unknown pattern"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Variant.parse(""));
        for (String bad : List.of("quick", "sparse", "sparse:window:x", "")) {
            IllegalArgumentException x = assertThrows(IllegalArgumentException.class, () -> Variant.parse(bad));
            assertFalse(x.getMessage().contains("\n"), x.getMessage());
        }
    }

    @Test
    void routedAndPrunedGrammar(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) {
        Variant r = Variant.parse("routed:2:4");
        assertEquals(new Variant.Routed(2, 4, 1), r);
        assertEquals("routed:2:4", r.spec());
        assertEquals(Algorithm.FLASH, r.algorithm());
        assertEquals(new Pattern.Dense(), r.pattern());
        assertEquals(new io.headroute.routing.RouterConfig(2, 14, 4, 1), ((Variant.Routed) r).router(16));
        Variant rb = Variant.parse(" routed:2:4:64 ");
        assertEquals(new Variant.Routed(2, 4, 64), rb);
        assertEquals("routed:2:4:64", rb.spec());
        assertEquals(rb, Variant.parse(rb.spec()));
        assertEquals("routed:2:4", Variant.parse("routed:2:4:1").spec(), "block 1 is per token, the default");
        // A pattern after HS:K or HS:K:BQ: the block-sparse kernel under the router's gate.
        Variant rw = Variant.parse("routed:2:4:window:256");
        assertEquals(new Variant.Routed(2, 4, 1, new Pattern.Window(256)), rw);
        assertEquals("routed:2:4:window:256", rw.spec());
        assertEquals(Algorithm.SPARSE, rw.algorithm());
        assertFalse(rw.full());
        Variant rbw = Variant.parse("routed:2:4:64:bigbird:64:1:1:2:7");
        assertEquals(new Variant.Routed(2, 4, 64, new Pattern.BigBird(64, 1, 1, 2, 7)), rbw);
        assertEquals(rbw, Variant.parse(rbw.spec()));
        assertEquals(rw, Variant.parse(rw.spec()));
        assertEquals(Algorithm.FLASH, Variant.parse("routed:2:4:causal").algorithm(), "causal runs flash");
        assertEquals("routed:2:4", Variant.parse("routed:2:4:dense").spec(), "dense is the default");
        // The bound before routing adds the layout to dense routing's.
        io.headroute.engine.AttentionShape sh = new io.headroute.engine.AttentionShape(1, 16, 16, 4096, 4096, 64);
        assertEquals(r.predictMemory(sh, io.headroute.tensor.DType.BF16, true).bytes()
                + io.headroute.engine.cuda.CudaAttentionEngine.sparseLayoutBytes(sh, io.headroute.tensor.DType.BF16,
                        new Pattern.Window(256).withCausal(), MemoryPrediction.SPARSE_BLOCK),
                rw.predictMemory(sh, io.headroute.tensor.DType.BF16, true).bytes());
        // In a 128-row tiling the bound sizes the layout and the work list in 128-row tiles (the list was sized in 64-row
        // tiles), and is still a bound on the list of a gate that compacts (one row of each 128 live).
        io.headroute.engine.cuda.FlashPlan.Tiling wgx2 = io.headroute.engine.cuda.FlashPlan.Tiling.WGX2;
        for (Variant.Routed v : new Variant.Routed[] {(Variant.Routed) r, (Variant.Routed) rw}) {
            long x2 = v.predictMemory(sh, io.headroute.tensor.DType.BF16, true, wgx2).bytes();
            float[] g = new float[sh.qLen() * sh.heads()];
            for (int t = 0; t < sh.qLen(); t += 128) {
                java.util.Arrays.fill(g, t * sh.heads(), t * sh.heads() + sh.heads(), 1f);
            }
            io.headroute.tensor.Tensor q = io.headroute.tensor.Tensor.ofFloats(new float[sh.qLen() * sh.heads() * 64], 1, 16, 4096, 64);
            io.headroute.engine.AttentionRequest req = io.headroute.engine.AttentionRequest.builder(q, q, q).pattern(v.pattern())
                    .causal(true).dtype(io.headroute.tensor.DType.BF16).algorithm(v.algorithm())
                    .gate(io.headroute.tensor.Tensor.ofFloats(g, 1, 4096, 16)).build();
            long work = io.headroute.engine.cuda.CudaAttentionEngine.gateWorkBytes(req, wgx2);
            assertTrue(work > 0, v.spec() + ": the gate is compacted");
            long io16 = io.headroute.engine.cuda.MaterializedPlan.of(sh, io.headroute.tensor.DType.BF16, true).ioBytes();
            long layout = v.full() ? 0 : io.headroute.engine.cuda.CudaAttentionEngine.sparseLayoutBytes(sh, io.headroute.tensor.DType.BF16,
                    v.pattern().withCausal(), MemoryPrediction.SPARSE_BLOCK, wgx2);
            assertEquals(io16 + layout + io.headroute.engine.cuda.GateWork.buildBytes(1, 4096, 16, 128, true), x2, v.spec());
            assertTrue(x2 >= io16 + layout + work, v.spec() + ": bound " + x2 + " < " + (io16 + layout + work));
        }

        Variant p = Variant.parse("pruned:0.375");
        assertInstanceOf(Variant.Pruned.class, p);
        assertEquals("pruned:0.375", p.spec());
        assertEquals(p, Variant.parse(p.spec()));
        Variant.Pruned pp = (Variant.Pruned) p;
        // MHA: 6 of 16 heads, the last ones (each head is its own group).
        assertEquals(List.of(10, 11, 12, 13, 14, 15), java.util.Arrays.stream(pp.removedHeads(16, 16)).boxed().toList());
        assertEquals(new io.headroute.engine.AttentionShape(1, 10, 10, 64, 64, 32),
                pp.prunedShape(new io.headroute.engine.AttentionShape(1, 16, 16, 64, 64, 32)));
        // GQA, Hkv = 2 divides 6: three from each group of 8, the key/value heads both stay.
        assertEquals(List.of(5, 6, 7, 13, 14, 15), java.util.Arrays.stream(pp.removedHeads(16, 2)).boxed().toList());
        assertEquals(new io.headroute.engine.AttentionShape(1, 10, 2, 64, 64, 32),
                pp.prunedShape(new io.headroute.engine.AttentionShape(1, 16, 2, 64, 64, 32)));
        // GQA, Hkv = 8 (groups of 2): 0.25 · 16 = 4 is a multiple of 8? no; of the group size 2: two whole groups go.
        Variant.Pruned quarter = (Variant.Pruned) Variant.parse("pruned:0.25");
        assertEquals(List.of(12, 13, 14, 15), java.util.Arrays.stream(quarter.removedHeads(16, 8)).boxed().toList());
        assertEquals(new io.headroute.engine.AttentionShape(1, 12, 6, 64, 64, 32),
                quarter.prunedShape(new io.headroute.engine.AttentionShape(1, 16, 8, 64, 64, 32)));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> pp.check(16, 4, 64));
        assertTrue(e.getMessage().contains("leaves key/value groups of unequal size"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("pruned:0.1").check(4, 4, 64));
        assertTrue(e.getMessage().contains("is 0 heads"), e.getMessage());

        java.nio.file.Path plan = dir.resolve("plan.json");
        io.headroute.routing.PruningPlan.of(2, 4, java.util.Map.of(0, List.of(1, 3))).save(plan);
        Variant.Pruned fromPlan = (Variant.Pruned) Variant.parse("pruned:" + plan);
        assertEquals("pruned:" + plan, fromPlan.spec());
        assertEquals(List.of(1, 3), java.util.Arrays.stream(fromPlan.removedHeads(4, 4)).boxed().toList());
        assertEquals(List.of(1, 3), java.util.Arrays.stream(fromPlan.removedHeads(4, 2)).boxed().toList(),
                "one head from each group of two: still uniform");
        e = assertThrows(IllegalArgumentException.class, () -> fromPlan.check(8, 8, 64));
        assertTrue(e.getMessage().endsWith("the plan is for 4 heads, the sweep has H = 8"), e.getMessage());
        io.headroute.routing.PruningPlan.of(1, 4, java.util.Map.of(0, List.of(0, 1))).save(plan);
        Variant.Pruned wholeGroup = (Variant.Pruned) Variant.parse("pruned:" + plan);
        assertEquals(new io.headroute.engine.AttentionShape(1, 2, 1, 64, 64, 32),
                wholeGroup.prunedShape(new io.headroute.engine.AttentionShape(1, 4, 2, 64, 64, 32)),
                "a whole group removed takes its key/value head with it");
        io.headroute.routing.PruningPlan.of(1, 4, java.util.Map.of(0, List.of(0))).save(plan);
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("pruned:" + plan).check(4, 2, 64));
        assertTrue(e.getMessage().endsWith("leaves key/value groups of unequal size [1, 2] (Hkv = 2); the attention "
                + "contract's grouping is uniform"), e.getMessage());
    }

    @Test
    void routedAndPrunedErrorsAreOneLine() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("routed:2"));
        assertTrue(e.getMessage().contains("expected routed:HS:K[:BQ][:PATTERN]"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("routed"));
        assertTrue(e.getMessage().contains("expected routed:HS:K"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("routed:2:x"));
        assertTrue(e.getMessage().contains("'x' is not an integer"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("routed:2:4:window:x"));
        assertTrue(e.getMessage().startsWith("variant 'routed:2:4:window:x': "), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("routed:2:4:64:nope"));
        assertTrue(e.getMessage().contains("unknown pattern"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("routed:2:4:"));
        assertTrue(e.getMessage().startsWith("variant 'routed:2:4:': "), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("routed:2:0"));
        assertTrue(e.getMessage().contains("k ≥ 1"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("routed:4:1").check(4, 4, 64));
        assertTrue(e.getMessage().startsWith("variant 'routed:4:1' at H = 4: bad routing"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("routed:1:4").check(4, 4, 64));
        assertTrue(e.getMessage().contains("k must be between 1 and the 3 routed heads"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new Sweep(List.of(64), List.of(Variant.parse("routed:4:1")),
                List.of(io.headroute.tensor.DType.F32), List.of(4), 0, 16, 1, false, 0, 1, 1));
        assertTrue(e.getMessage().contains("shared heads must be between 0 and H − 1 = 3"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("pruned"));
        assertTrue(e.getMessage().contains("needs a plan or a fraction"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("pruned:1.5"));
        assertTrue(e.getMessage().contains("between 0 and 1"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("pruned:/nonexistent/plan.json"));
        assertTrue(e.getMessage().startsWith("variant 'pruned:/nonexistent/plan.json': "), e.getMessage());
        assertTrue(e.getMessage().contains("no such file"), e.getMessage());
        IllegalArgumentException layout = assertThrows(IllegalArgumentException.class,
                () -> Variant.parse("sparse:layout:64:/nonexistent/l.npy"));
        assertTrue(layout.getMessage().startsWith("variant 'sparse:layout:64:/nonexistent/l.npy': "), layout.getMessage());
        for (IllegalArgumentException x : List.of(e, layout)) {
            assertFalse(x.getMessage().contains("\n"));
        }
    }
}
