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
        assertEquals(0.5 + 0.05, c.target(), 1e-15);
        assertEquals(r.routed().medianMs() / r.dense().medianMs(), r.routedOverDense(), 1e-15);
        assertEquals(0.5, r.routerStats().activeHeadFraction(), 1e-15);
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
