package io.headroute.experiment;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import java.util.List;
import org.junit.jupiter.api.Test;

class SeedClaimsTest {
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
        List<SeedClaims.Row> c = SeedClaims.evaluate(rows, true);
        assertEquals(4, c.size());
        assertTrue(c.get(0).found().startsWith("measured peak 16.09 GiB"), c.get(0).found());
        assertTrue(c.get(0).found().contains("flash at the same shape: measured peak 123.98 MiB"), c.get(0).found());
        assertEquals("agrees (16 GiB, binary gigabytes; measured)", c.get(0).verdict());
        assertTrue(c.get(1).configuration().startsWith("sparse:window:2100, token density 0.1262"), c.get(1).configuration());
        assertTrue(c.get(1).found().contains("VRAM saved 99.2% (measured)"), c.get(1).found());
        assertEquals("agrees", c.get(1).verdict());
        for (SeedClaims.Row r : c.subList(2, 4)) {
            assertEquals("not measured: needs head pruning (issue 6)", r.found());
            assertEquals("not measured", r.verdict());
            assertFalse(r.found().matches(".*\\d+(\\.\\d+)?%.*"), "no invented numbers: " + r.found());
        }
    }

    @Test
    void sparseRowsThatDidNotRunOrLackFidelity() {
        Run unsupported = run(new Variant.Sparse(new Pattern.Window(2100)), "unsupported: no GPU sparse kernel", -1, 0.126, 0.99,
                Double.NaN, Double.NaN);
        SeedClaims.Row r = SeedClaims.evaluate(List.of(unsupported), true).get(1);
        assertEquals("not measured", r.verdict());
        assertTrue(r.found().contains("quality not measured: unsupported: no GPU sparse kernel"), r.found());

        Run lowRecall = run(new Variant.Sparse(new Pattern.Window(2100)), "ok", 1, 0.126, 0.9, 0.2, 2.0);
        assertEquals("partly agrees: memory yes, quality no (recall < 0.98)",
                SeedClaims.evaluate(List.of(lowRecall), true).get(1).verdict());
        assertEquals("not measured", SeedClaims.evaluate(List.of(), true).get(1).verdict());
        SeedClaims.Row none = SeedClaims.evaluate(List.of(), false).get(0);
        assertEquals("agrees by arithmetic (16 GiB, binary gigabytes); not measured", none.verdict());
        assertTrue(none.found().contains("17179869184 bytes = 16.00 GiB (17.18 GB)"), none.found());
    }
}
