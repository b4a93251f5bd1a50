package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.headroute.attention.Backends;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BenchCommandTest {
    @TempDir
    Path dir;

    @Test
    void tinyBenchWritesJsonWithBothAlgorithms() throws IOException {
        Path json = dir.resolve("bench.json");
        Cli r = Cli.run("bench", "--backend", "cpu", "--heads", "2", "--len", "64", "--kv-len", "96", "--dim", "16", "--causal",
                "--warmup", "0", "--repeats", "1", "--threads", "2", "--json", json.toString()).assertOk();
        assertTrue(r.out().contains("4·B·H·L·S·D"), r.out());
        assertTrue(r.out().contains("with --causal 4·B·H·D·(L·S − L²/2) (half at L = S)"), r.out());
        assertTrue(r.out().contains("speed flash / materialized: "), r.out());

        JsonNode root = new ObjectMapper().readTree(json.toFile());
        assertEquals(Runtime.getRuntime().availableProcessors(), root.at("/machine/cores").asInt());
        assertTrue(root.at("/machine/jvm").asText().contains(System.getProperty("java.version").split("\\.")[0]));
        assertEquals(System.getProperty("os.arch"), root.at("/machine/os_arch").asText());
        assertEquals("0.1.0", root.get("headroute_version").asText());
        assertEquals(64, root.at("/config/q_len").asInt());
        assertEquals(96, root.at("/config/kv_len").asInt());
        assertEquals("causal", root.at("/config/pattern").asText());
        assertEquals(64, root.at("/config/block_size").asInt());
        assertEquals(false, root.at("/config/fp32_scores").asBoolean(true));
        assertEquals("f32", root.at("/measurements/1/score_dtype").asText(), "the CPU's materialized scores are fp32");
        assertTrue(root.at("/measurements/0/score_dtype").isMissingNode(), "flash stores no scores");
        // L = 64 < S = 96, causal aligned bottom-right: 64 × 32 pairs in full, then a 64-row triangle (not half of 64 × 96).
        assertEquals(4.0 * 2 * 16 * (64 * 96 - 64 * 64 / 2), root.get("flops_per_call").asDouble());
        List<String> algos = new ArrayList<>();
        for (JsonNode m : root.get("measurements")) {
            algos.add(m.get("algorithm").asText());
            assertEquals(1, m.get("times_ms").size());
            assertTrue(m.get("median_ms").asDouble() > 0);
            assertTrue(m.get("gflops").asDouble() > 0);
            assertTrue(m.get("workspace_bytes").asLong() > 0);
            assertTrue(m.get("rel_l2_vs_first").asDouble() <= 1e-5, m.toString());
        }
        assertEquals(List.of("flash", "materialized"), algos);
        JsonNode mat = root.get("measurements").get(1);
        assertTrue(mat.get("workspace_bytes").asLong() >= 4L * 64 * 96, "materialized holds an L x S score matrix");
        assertTrue(root.get("flash_over_materialized_speed").asDouble() > 0);
    }

    /** Without a GPU, --tilings under --backend auto said "--backend cuda: ...", an option the user did not pass. */
    @Test
    void tilingsUnderAutoWithoutAGpuNameAuto() {
        String why = Backends.cudaUnavailableReason();
        assumeTrue(why != null, "a GPU is usable here");
        Path json = dir.resolve("t.json");
        Cli r = Cli.run("bench", "--backend", "auto", "--heads", "2", "--len", "256", "--tilings", "w2", "--json", json.toString())
                .assertBadInput("headroute bench", "--tilings needs the CUDA backend, which --backend auto cannot use here: " + why,
                        json);
        assertFalse(r.err().contains("--backend cuda"), r::toString);
    }

    @Test
    void badInputIsRefused() {
        Path json = dir.resolve("b.json");
        Cli.run("bench", "--backend", "cpu", "--len", "0", "--json", json.toString()).assertBadInput("headroute bench",
                "--len must be positive", json);
        Cli.run("bench", "--backend", "cpu", "--len", "64", "--kv-len", "32", "--json", json.toString())
                .assertBadInput("headroute bench", "exceed", json);
        Cli.run("bench", "--backend", "cpu", "--len", "64", "--algos", "flash,quick").assertBadInput("headroute bench",
                "unknown algorithm");
        Cli.run("bench", "--backend", "cpu", "--len", "64", "--algos", "flash,sparse", "--fp32-scores", "--json", json.toString())
                .assertBadInput("headroute bench", "--fp32-scores applies to the materialized algorithm only (flash and sparse "
                        + "never store the L x S scores): --algos flash,sparse has no materialized (or auto)", json);
        Cli.run("bench", "--backend", "cpu", "--len", "64", "--algos", "flash,flash").assertBadInput("headroute bench",
                "twice");
        Cli.run("bench", "--backend", "cpu", "--heads", "6", "--kv-heads", "4", "--len", "64").assertBadInput("headroute bench",
                "not divisible");
        // Every timed call's time is kept: a count no run needs is refused, not an out-of-memory error.
        Cli.run("bench", "--backend", "cpu", "--len", "64", "--repeats", "2000000000").assertBadInput("headroute bench",
                "repeats must be in 1..100000");
        Cli.run("bench", "--backend", "cpu", "--len", "64", "--json", dir.resolve("no/dir/b.json").toString())
                .assertBadInput("headroute bench", "does not exist");
        Cli.run("bench", "--backend", "cpu", "--len", "64", "--block-size", "32").assertBadInput("headroute bench",
                "--block-size must be 64 or 128, got 32");
        Cli.run("bench", "--backend", "cpu", "--len", "64", "--tilings", "w2", "--json", json.toString())
                .assertBadInput("headroute bench", "--tilings times the CUDA flash and sparse kernels of the plain bench: not with --backend cpu",
                        json);
        Cli.run("bench", "--backend", "cuda", "--len", "64", "--tilings", "w8").assertBadInput("headroute bench",
                "unknown tiling 'w8' (expected w4, w2, w4x2, wg, wgp, wgx2 or wgpx2)");
        Cli.run("bench", "--len", "64", "--tilings", "w2", "--route", "2:4").assertBadInput("headroute bench",
                "not with --route");
    }

    @Test
    void sparseAtBlockSize128ReportsItAndAgreesWithFlash() throws IOException {
        Path json = dir.resolve("sparse.json");
        Cli.run("bench", "--backend", "cpu", "--heads", "2", "--len", "300", "--dim", "16", "--pattern", "window:40",
                "--algos", "flash,sparse", "--block-size", "128", "--warmup", "0", "--repeats", "1", "--threads", "2",
                "--json", json.toString()).assertOk();
        JsonNode root = new ObjectMapper().readTree(json.toFile());
        assertEquals(128, root.at("/config/block_size").asInt());
        JsonNode sparse = root.get("measurements").get(1);
        assertEquals("sparse", sparse.get("algorithm_used").asText());
        assertTrue(sparse.get("rel_l2_vs_first").asDouble() <= 1e-5, sparse.toString());
    }
}
