package io.headroute.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.Pattern;
import io.headroute.routing.CpuHeadRouter;
import io.headroute.routing.RouterConfig;
import io.headroute.tensor.DType;
import java.util.List;
import org.junit.jupiter.api.Test;

class RoutedBenchmarkTest {
    private static AttentionBenchmark.Config attention(int heads, List<Algorithm> algos) {
        return new AttentionBenchmark.Config(1, heads, heads, 130, 130, 16, true, new Pattern.Dense(), DType.F32, algos, 0, 1, 9);
    }

    @Test
    void gatedDenseDistanceByHand() {
        // B = 1, H = 2, L = 2, D = 1: o_dense = [1, 2 | 3, 4], gate (L, H) = [[0.5, 0], [2, 1]].
        float[] dense = {1, 2, 3, 4};
        float[] gate = {0.5f, 0f, 2f, 1f};
        float[] exact = {0.5f, 4f, 0f, 4f};
        assertEquals(0.0, RoutedBenchmark.relL2VsGatedDense(exact, dense, gate, 1, 2, 2, 1), 0.0);
        float[] off = {0.5f, 4f, 1f, 4f};
        assertEquals(1 / Math.sqrt(0.25 + 16 + 16), RoutedBenchmark.relL2VsGatedDense(off, dense, gate, 1, 2, 2, 1), 1e-12);
    }

    @Test
    void blockRoutingSkipsWholeTilesOnTheCpu() {
        // Bq = 64 = the CPU engine's query tile: every routed-off (head, block) is whole tiles that never run.
        RoutedBenchmark.Config c = new RoutedBenchmark.Config(attention(6, List.of(Algorithm.FLASH)), new RouterConfig(1, 5, 2, 64), 24);
        RoutedBenchmark.Report r;
        try (CpuAttentionEngine engine = new CpuAttentionEngine(2); CpuHeadRouter router = new CpuHeadRouter(2)) {
            r = RoutedBenchmark.run(engine, router, c);
        }
        int tilesPerHead = (130 + 63) / 64; // 3 query tiles, the last of 2 rows
        assertEquals(6L * tilesPerHead, r.dense().stats().queryTiles());
        assertEquals(3L * tilesPerHead, r.routed().stats().queryTiles(), "1 shared + k = 2 routed heads per block");
        assertEquals(130L * 3, r.routed().stats().rowsSkipped());
        assertTrue(r.relL2VsGatedDense() <= 1e-5, "rel L2 " + r.relL2VsGatedDense());
        assertTrue(r.withinTolerance());
        assertEquals(1e-5, r.toJson().get("tolerance").asDouble());
        assertTrue(r.toJson().get("within_tolerance").asBoolean());
        assertEquals(0.5 + 0.05, c.target(), 1e-15);
        assertEquals(r.routed().medianMs() / r.dense().medianMs(), r.routedOverDense(), 1e-15);
        assertEquals(0.5, r.routerStats().activeHeadFraction(), 1e-15);
    }

    /**
     * Issue 6's goals count only with the routed output right: within the dtype's tolerance of gate × dense output
     * (bf16 1e-2, f16 2e-3, f32 1e-5); a NaN error meets nothing.
     */
    @Test
    void goalsNeedTheRoutedOutputWithinTheDtypesTolerance() {
        assertEquals(1e-5, DType.F32.tolerance());
        assertEquals(2e-3, DType.F16.tolerance());
        assertEquals(1e-2, DType.BF16.tolerance());
        AttentionBenchmark.Config bf16 = new AttentionBenchmark.Config(1, 16, 16, 130, 130, 16, false, new Pattern.Dense(), DType.BF16,
                List.of(Algorithm.FLASH), 0, 1, 9);
        RoutedBenchmark.Config c = new RoutedBenchmark.Config(bf16, new RouterConfig(2, 14, 4, 1), 24);
        assertEquals(6.0 / 16 + 0.05, c.target(), 1e-15);
        RoutedBenchmark.Timing router = new RoutedBenchmark.Timing(List.of(0.1), 0.1, 0.1, null);
        RoutedBenchmark.Timing routed = new RoutedBenchmark.Timing(List.of(4.0), 4.0, 4.0, null);
        RoutedBenchmark.Timing dense = new RoutedBenchmark.Timing(List.of(10.0), 10.0, 10.0, null);
        for (double rel : new double[] {5e-3, 1e-2, 1.01e-2, 0.3, Double.NaN}) {
            RoutedBenchmark.Report r = new RoutedBenchmark.Report(AttentionBenchmark.Machine.current(), c, "cuda", "GPU 0", "cuda",
                    "GPU 0", router, null, routed, dense, rel);
            boolean right = rel <= 1e-2;
            assertEquals(right, r.withinTolerance(), "rel " + rel);
            assertEquals(0.4, r.routedOverDense(), 1e-15);
            assertEquals(2.5, r.routerOverheadPercent(), 1e-12);
            assertEquals(right, r.meetsTarget(), "0.4 <= 0.425 counts only with the output right, rel " + rel);
            assertEquals(right, r.meetsOverheadTarget(), "2.5% <= 5% counts only with the output right, rel " + rel);
        }
    }

    @Test
    void configIsValidated() {
        assertThrows(IllegalArgumentException.class,
                () -> new RoutedBenchmark.Config(attention(8, List.of(Algorithm.FLASH)), new RouterConfig(2, 5, 2, 1), 16));
        assertThrows(IllegalArgumentException.class, () -> new RoutedBenchmark.Config(
                attention(8, List.of(Algorithm.FLASH, Algorithm.MATERIALIZED)), new RouterConfig(2, 6, 2, 1), 16));
        assertThrows(IllegalArgumentException.class,
                () -> new RoutedBenchmark.Config(attention(8, List.of(Algorithm.FLASH)), new RouterConfig(2, 6, 2, 1), 0));
    }
}
