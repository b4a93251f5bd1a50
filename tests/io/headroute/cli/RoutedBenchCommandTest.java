package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** {@code headroute bench --route} end to end on the CPU engine (which skips gate-0 rows). */
class RoutedBenchCommandTest {
    @TempDir
    Path dir;

    @ParameterizedTest(name = "--route {0}")
    @ValueSource(strings = {"2:2", "2:2:16"})
    void routedAgainstDense(String route) throws IOException {
        Path json = dir.resolve("routed.json");
        // B = 2, H = 8 (Hs = 2, Hr = 6, k = 2), L = 70: 4 of 8 heads active per token.
        Cli r = Cli.run("bench", "--backend", "cpu", "--batch", "2", "--heads", "8", "--len", "70", "--dim", "16", "--causal",
                "--route", route, "--warmup", "0", "--repeats", "2", "--threads", "2", "--seed", "3", "--json",
                json.toString()).assertOk();
        assertTrue(r.out().contains("routed / dense: "), r.out());
        assertTrue(r.out().contains("goal ≤ (Hs + k)/H + 0.05 = 0.5500"), r.out());
        assertTrue(r.out().contains("router overhead: "), r.out());
        assertTrue(r.out().contains("(f32 tolerance 1e-05): within"), r.out());
        assertTrue(r.out().contains("load balance"), r.out());

        JsonNode j = new ObjectMapper().readTree(json.toFile());
        assertEquals("0.1.0", j.get("headroute_version").asText());
        assertEquals(2, j.at("/config/route/shared_heads").asInt());
        assertEquals(6, j.at("/config/route/routed_heads").asInt());
        assertEquals(2, j.at("/config/route/k").asInt());
        assertEquals(route.endsWith(":16") ? 16 : 1, j.at("/config/route/block").asInt());
        assertEquals(route.endsWith(":16") ? "block" : "token", j.at("/config/route/granularity").asText());
        assertEquals(8 * 16, j.at("/config/route/d_model").asInt(), "d_model defaults to H·D");
        assertEquals("flash", j.at("/config/algorithm").asText());
        assertEquals("cpu", j.at("/config/router_engine").asText());
        for (String part : new String[] {"router", "routed", "dense"}) {
            assertEquals(2, j.at("/" + part + "/times_ms").size(), part);
            assertTrue(j.at("/" + part + "/median_ms").asDouble() > 0, part);
        }
        // Every token keeps k of the Hr routed heads: (Hr − k) zero gates per token are skipped rows.
        long tokens = 2 * 70;
        assertEquals(tokens * 4, j.at("/routed/rows_skipped").asLong());
        assertEquals(0, j.at("/dense/rows_skipped").asLong());
        assertTrue(j.at("/routed/query_tiles").asLong() < j.at("/dense/query_tiles").asLong(), j.toString());
        assertTrue(j.at("/routed/key_tiles_visited").asLong() < j.at("/dense/key_tiles_visited").asLong(), j.toString());
        assertEquals(0.5, j.at("/router/stats/active_head_fraction").asDouble(), 1e-12);
        assertEquals(0.55, j.at("/target_routed_over_dense").asDouble(), 1e-12);
        double ratio = j.at("/routed/median_ms").asDouble() / j.at("/dense/median_ms").asDouble();
        assertEquals(ratio, j.at("/routed_over_dense").asDouble(), 1e-12);
        assertTrue(j.at("/within_tolerance").asBoolean(), j.toString());
        assertEquals(ratio <= 0.55, j.at("/meets_target").asBoolean());
        double overhead = 100 * j.at("/router/median_ms").asDouble() / j.at("/routed/median_ms").asDouble();
        assertEquals(overhead, j.at("/router_overhead_percent").asDouble(), 1e-9);
        // The contract: routed output = gate × dense output, row by row (f32: within 1e-5).
        assertTrue(j.at("/rel_l2_routed_vs_gated_dense").asDouble() <= 1e-5, j.toString());
    }

    @Test
    void badInputIsRefused() {
        Path json = dir.resolve("b.json");
        String cmd = "headroute bench";
        Cli.run("bench", "--backend", "cpu", "--heads", "16", "--len", "64", "--route", "16:1", "--json", json.toString())
                .assertBadInput(cmd, "shared heads must be between 0 and H − 1 = 15", json);
        Cli.run("bench", "--backend", "cpu", "--heads", "16", "--len", "64", "--route", "2:15")
                .assertBadInput(cmd, "k must be between 1 and the 14");
        Cli.run("bench", "--backend", "cpu", "--heads", "16", "--len", "64", "--route", "2")
                .assertBadInput(cmd, "HS:K");
        Cli.run("bench", "--backend", "cpu", "--heads", "16", "--len", "64", "--route", "2:4:0")
                .assertBadInput(cmd, "block must be ≥ 1");
        Cli.run("bench", "--backend", "cpu", "--heads", "16", "--len", "64", "--route", "2:4", "--algos", "flash,materialized")
                .assertBadInput(cmd, "one algorithm");
        Cli.run("bench", "--backend", "cpu", "--heads", "16", "--len", "64", "--d-model", "32")
                .assertBadInput(cmd, "--d-model needs --route");
        Cli.run("bench", "--backend", "cpu", "--heads", "16", "--len", "64", "--route", "2:4", "--d-model", "0")
                .assertBadInput(cmd, "--d-model must be positive");
    }
}
