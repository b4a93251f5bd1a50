package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.OutputAssertions;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cpu.ReferenceAttention;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.engine.cuda.GpuTests;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Npy;
import io.headroute.tensor.Tensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code headroute attend --backend cuda} end to end, the way the device check's compare and sanitizer
 * steps call it: every algorithm, a gate, a sparse pattern; the file it writes against the CPU engine, and
 * its one-line summary.
 */
@Tag("gpu")
class AttendCudaGpuTest {
    @TempDir
    Path dir;

    @BeforeAll
    static void gpu() {
        GpuTests.assumeGpu();
    }

    private static Tensor random(Random r, long... shape) {
        float[] x = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return Tensor.ofFloats(x, shape);
    }

    @Test
    void everyAlgorithmMatchesTheCpuEngineFromTheCommandLine() {
        Random r = new Random(77);
        Tensor q = random(r, 1, 2, 77, 64);
        Tensor k = random(r, 1, 2, 77, 64);
        Tensor v = random(r, 1, 2, 77, 64);
        float[] g = new float[77 * 2];
        for (int i = 0; i < g.length; i++) {
            g[i] = r.nextInt(3) == 0 ? 0f : 0.5f + r.nextFloat();
        }
        Tensor gate = Tensor.ofFloats(g, 1, 77, 2);
        Path qp = dir.resolve("q.npy");
        Path kp = dir.resolve("k.npy");
        Path vp = dir.resolve("v.npy");
        Path gp = dir.resolve("gate.npy");
        Npy.write(qp, q);
        Npy.write(kp, k);
        Npy.write(vp, v);
        Npy.write(gp, gate);
        String[][] cases = {{"flash", "f32", ""}, {"flash", "bf16", ""}, {"materialized", "f32", ""},
            {"materialized", "f16", ""}, {"sparse", "bf16", "window:9"}, {"flash", "f32", "gate"}, {"flash", "bf16", "w2"},
            {"flash", "f16", "w2+gate"}, {"flash", "bf16", "w4x2"}, {"flash", "f16", "w4x2+gate"}, {"flash", "bf16", "wg"},
            {"flash", "f16", "wg+gate"}, {"flash", "bf16", "wgp+gate"}, {"flash", "bf16", "wgx2"}, {"flash", "f16", "wgpx2+gate"},
            {"sparse", "bf16", "wgx2+window:9"}, {"sparse", "f16", "wgpx2+window:9+gate"}};
        boolean wg = wgRuns();
        for (String[] c : cases) {
            if (c[2].startsWith("wg") && !wg) {
                continue; // the wgmma kernels need compute capability 9.0
            }
            Path out = dir.resolve("o-" + String.join("-", c) + ".npy");
            List<String> a = new ArrayList<>(List.of("attend", "--backend", "cuda", "--q", qp.toString(), "--k", kp.toString(),
                    "--v", vp.toString(), "--algo", c[0], "--dtype", c[1], "--causal", "--out", out.toString()));
            AttentionRequest.Builder want = AttentionRequest.builder(q, k, v).causal(true).dtype(DType.parse(c[1]))
                    .algorithm(Algorithm.FLASH);
            ReferenceAttention.Rule rule = ReferenceAttention.Rule.causalRule();
            // c[2]: '+'-separated options: a tiling (w2, w4x2, wg, wgp, wgx2, wgpx2), "gate", or a pattern.
            for (String opt : c[2].isEmpty() ? new String[0] : c[2].split("\\+")) {
                if (opt.equals("gate")) {
                    a.addAll(List.of("--gate", gp.toString()));
                    want.gate(gate);
                } else if (opt.startsWith("w2") || opt.startsWith("w4x2") || opt.startsWith("wg")) {
                    a.addAll(List.of("--tiling", opt));
                } else {
                    a.addAll(List.of("--pattern", opt));
                    want.pattern(Patterns.parse(opt));
                    rule = ReferenceAttention.Rule.parse(opt).withCausal(true);
                }
            }
            Cli res = Cli.run(a).assertOk();
            String what = String.join(" ", c) + ": " + res.out();
            assertTrue(res.out().startsWith("attend: cuda " + c[0]), what);
            assertFalse(res.out().contains("skipped -1") || res.out().contains("of -"), "no placeholder counts: " + what);
            assertTrue(res.out().contains(c[0].equals("materialized") ? "no key tiles" : "key tiles skipped"), what);
            float[] got = Npy.read(out).toFloatArray();
            float[] ref;
            if (c[1].equals("f32")) {
                ref = ReferenceAttention.compute(want.build(), rule).oFloats(); // float64: the f32 CPU engine is 1e-5 off it
            } else {
                try (CpuAttentionEngine cpu = new CpuAttentionEngine(2)) {
                    ref = cpu.run(want.build()).o().toFloatArray();
                }
            }
            double tol = c[1].equals("f32") ? 1e-5 : c[1].equals("f16") ? 2e-3 : 1e-2;
            OutputAssertions.assertOutputClose(got, ref, 64, tol, what);
        }
    }

    /** Whether this GPU runs the WG tiling's wgmma kernels (compute capability 9.0; the emulator reports 9.0). */
    private static boolean wgRuns() {
        try (io.headroute.engine.cuda.CudaAttentionEngine e = io.headroute.engine.cuda.CudaAttentionEngine.open(0)) {
            return e.tilingUnavailable(io.headroute.engine.cuda.FlashPlan.Tiling.WG) == null;
        }
    }

    /**
     * HR_EMU_STATS, the CPU emulator's log of every kernel launch by name (make emu-test sets it), or null on a GPU or
     * without it: there the kernel each bench row ran is read back, not only the tiling the row is labelled with.
     */
    private static Path launchLog() {
        String f = System.getenv("HR_EMU_STATS");
        return Boolean.getBoolean("headroute.emulator") && f != null && !f.isEmpty() ? Path.of(f) : null;
    }

    private static long logSize(Path log) throws java.io.IOException {
        return log == null || !java.nio.file.Files.exists(log) ? 0 : java.nio.file.Files.size(log);
    }

    /** The attention kernels (hr_flash_*) launched since {@code before} bytes of the launch log, in order. */
    private static List<String> attentionLaunchesSince(Path log, long before) throws java.io.IOException {
        byte[] all = java.nio.file.Files.readAllBytes(log);
        List<String> names = new ArrayList<>();
        for (String line : new String(all, (int) before, all.length - (int) before, java.nio.charset.StandardCharsets.UTF_8)
                .split("\n")) {
            String name = line.split("\t")[0];
            if (name.startsWith("hr_flash_")) {
                names.add(name);
            }
        }
        return names;
    }

    /**
     * Every row of a bench report either ran ("ok") in a tiling its kernel has, which therefore ran in that tiling and
     * not W4 under another name ({@link io.headroute.engine.cuda.FlashPlan.Tiling#resolve}), or says it did not run
     * ("unsupported: ..."), with no numbers.
     */
    private static void assertRowsRanTheirTiling(com.fasterxml.jackson.databind.JsonNode ms, DType dt, int d, boolean[] sparse) {
        for (int i = 0; i < ms.size(); i++) {
            com.fasterxml.jackson.databind.JsonNode m = ms.get(i);
            String status = m.get("status").asText();
            if (status.equals("ok")) {
                if (m.has("tiling")) {
                    io.headroute.engine.cuda.FlashPlan.Tiling t = io.headroute.engine.cuda.FlashPlan.Tiling.parse(m.get("tiling").asText());
                    assertTrue(t.appliesTo(dt, d, sparse[i]), "a row that ran in a tiling its kernel lacks ran W4: " + m);
                }
                double rel = m.get("rel_l2_vs_first").asDouble(Double.NaN);
                assertTrue(Double.isFinite(rel), "an ok row has its error against the first: " + m);
            } else {
                assertTrue(status.startsWith("unsupported: "), m.toString());
                assertEquals(-1, m.get("key_tiles_visited").asLong(), "a row not run has no counts: " + m);
            }
        }
    }

    /**
     * bench --tilings w2,w4x2,wg,wgp,wgx2,wgpx2: flash (and sparse) again in each tiling on the same inputs, labelled,
     * in the JSON with its tiling; a tiling the kernel lacks (or this GPU cannot run) is a row not run, not W4 under
     * another name. On the emulator with HR_EMU_STATS (make emu-test), the kernels launched are read back and must be
     * the rows' tilings' own, in order.
     */
    /**
     * {@code bench --backend auto} (the default) keeps every row on the GPU: an algorithm the GPU refuses (materialized
     * on a BigBird pattern) is reported as unsupported, not timed on the CPU engine beside the GPU rows with a
     * flash / materialized speed ratio across the two devices.
     */
    @Test
    void benchAutoTimesEveryRowOnTheGpu() throws Exception {
        Path json = dir.resolve("auto.json");
        Cli res = Cli.run("bench", "--backend", "auto", "--heads", "2", "--len", "128", "--algos", "flash,materialized",
                "--pattern", "bigbird:64:1:1:2:7", "--warmup", "0", "--repeats", "1", "--json", json.toString()).assertOk();
        com.fasterxml.jackson.databind.JsonNode ms = new com.fasterxml.jackson.databind.ObjectMapper().readTree(json.toFile())
                .get("measurements");
        assertEquals(2, ms.size(), ms.toString());
        assertEquals("ok", ms.get(0).get("status").asText(), ms.toString());
        assertEquals("cuda", ms.get(0).get("engine").asText(), ms.toString());
        assertTrue(ms.get(1).get("status").asText().startsWith("unsupported: "), ms.toString());
        assertFalse(res.out().contains("speed flash / materialized"), res.out());

        Cli demo = Cli.run("demo", "--backend", "auto", "--len", "64").assertOk();
        assertTrue(demo.out().contains("backend cuda"), demo.out());
    }

    @Test
    void benchTimesTheOtherTilingsBesideTheDefault() throws Exception {
        Path json = dir.resolve("b.json");
        Path log = launchLog();
        long mark = logSize(log);
        Cli res = Cli.run("bench", "--backend", "cuda", "--dtype", "bf16", "--heads", "2", "--dim", "64", "--len", "130",
                "--causal", "--algos", "flash", "--tilings", "w2,w4x2,wg,wgp,wgx2,wgpx2", "--warmup", "0", "--repeats", "1",
                "--json", json.toString()).assertOk();
        for (String t : new String[] {"w2", "w4x2", "wg", "wgp", "wgx2", "wgpx2"}) {
            assertTrue(res.out().contains("\nflash[" + t + "] "), res.out());
        }
        com.fasterxml.jackson.databind.ObjectMapper mapper = new com.fasterxml.jackson.databind.ObjectMapper();
        com.fasterxml.jackson.databind.JsonNode ms = mapper.readTree(json.toFile()).get("measurements");
        assertEquals(7, ms.size(), ms.toString());
        assertFalse(ms.get(0).has("tiling"), "the configured flash measurement runs the default tiling");
        assertEquals("w4", mapper.readTree(json.toFile()).at("/config/flash_tiling").asText(), "and the JSON says which");
        assertTrue(res.out().contains(", flash kernel tiling w4\n"), res.out());
        assertEquals("w2", ms.get(1).get("tiling").asText());
        assertEquals("w4x2", ms.get(2).get("tiling").asText());
        assertEquals("wg", ms.get(3).get("tiling").asText());
        assertEquals("wgp", ms.get(4).get("tiling").asText());
        assertEquals("wgx2", ms.get(5).get("tiling").asText());
        assertEquals("wgpx2", ms.get(6).get("tiling").asText());
        for (int i = 3; i <= 6 && !wgRuns(); i++) {
            assertTrue(ms.get(i).get("status").asText().startsWith("unsupported: the wgmma kernels run on compute capability 9.0"),
                    ms.get(i).toString());
        }
        for (int i = 1; i <= (wgRuns() ? 6 : 2); i++) {
            assertEquals("ok", ms.get(i).get("status").asText());
            assertTrue(ms.get(i).get("rel_l2_vs_first").asDouble() <= 1e-2, "the tiling computes what W4 does: " + ms.get(i));
        }
        // An error of 0 against W4 is also what W4 run again gives: each row must have run in its own tiling.
        assertRowsRanTheirTiling(ms, DType.BF16, 64, new boolean[7]);
        if (log != null) {
            List<String> kernels = new ArrayList<>(List.of("hr_flash_fwd_bf16_d64", "hr_flash_fwd_w2_bf16_d64",
                    "hr_flash_fwd_w4x2_bf16_d64"));
            if (wgRuns()) {
                kernels.addAll(List.of("hr_flash_fwd_wg_bf16_d64", "hr_flash_fwd_wgp_bf16_d64", "hr_flash_fwd_wgx2_bf16_d64",
                        "hr_flash_fwd_wgpx2_bf16_d64"));
            }
            assertEquals(kernels, attentionLaunchesSince(log, mark), "the kernel each row ran, in order, by the emulator's log");
        }
        // Causal, L = 130: 64-row tiles visit 1 + 2 + 3 key tiles; the 128-row tiles of W4X2, WGX2, WGPX2 2 + 3.
        assertEquals(6, ms.get(0).get("key_tiles_visited").asLong() / 2);
        assertEquals(ms.get(0).get("key_tiles_visited").asLong(), ms.get(1).get("key_tiles_visited").asLong());
        assertEquals(5, ms.get(2).get("key_tiles_visited").asLong() / 2);
        if (wgRuns()) {
            assertEquals(ms.get(0).get("key_tiles_visited").asLong(), ms.get(3).get("key_tiles_visited").asLong(), "WG: W4's tiles");
            assertEquals(ms.get(0).get("key_tiles_visited").asLong(), ms.get(4).get("key_tiles_visited").asLong(), "WGP: W4's tiles");
            assertEquals(ms.get(2).get("key_tiles_visited").asLong(), ms.get(5).get("key_tiles_visited").asLong(), "WGX2: W4X2's");
            assertEquals(ms.get(2).get("key_tiles_visited").asLong(), ms.get(6).get("key_tiles_visited").asLong(), "WGPX2: W4X2's");
        }

        mark = logSize(log);
        Cli.run("bench", "--backend", "cuda", "--dtype", "bf16", "--heads", "2", "--dim", "96", "--len", "70", "--algos", "flash",
                "--tilings", "w4x2", "--warmup", "0", "--repeats", "1", "--json", json.toString()).assertOk();
        com.fasterxml.jackson.databind.JsonNode d96 = mapper.readTree(json.toFile()).get("measurements");
        assertEquals(2, d96.size(), d96.toString());
        assertEquals("ok", d96.get(0).get("status").asText(), d96.get(0).toString());
        assertTrue(d96.get(1).get("status").asText().startsWith("unsupported: the bf16 flash kernel for D = 96 has no w4x2 tiling"),
                d96.get(1).toString());
        assertRowsRanTheirTiling(d96, DType.BF16, 96, new boolean[2]);
        if (log != null) {
            assertEquals(List.of("hr_flash_fwd_bf16_d96"), attentionLaunchesSince(log, mark), "the w4x2 row launched nothing");
        }

        // The block-sparse kernel: in W4X2 it has no kernel (a row not run), in WGX2 and WGPX2 128-row tiles; flash on a
        // window pattern runs the block-sparse kernel too, and is labelled by its tilings.
        mark = logSize(log);
        Cli sp = Cli.run("bench", "--backend", "cuda", "--dtype", "f16", "--heads", "2", "--dim", "64", "--len", "300", "--pattern",
                "window:40", "--algos", "sparse,flash", "--tilings", "w4x2,wgx2,wgpx2", "--warmup", "0", "--repeats", "1", "--json",
                json.toString()).assertOk();
        assertTrue(sp.out().contains(", sparse kernel tiling w4\n"), sp.out());
        assertFalse(sp.out().contains("flash kernel tiling"), "no configured algorithm runs the dense kernel: " + sp.out());
        com.fasterxml.jackson.databind.JsonNode sj = mapper.readTree(json.toFile());
        assertEquals("w4", sj.at("/config/sparse_tiling").asText());
        assertTrue(sj.at("/config/flash_tiling").isMissingNode(), sj.get("config").toString());
        com.fasterxml.jackson.databind.JsonNode sm = sj.get("measurements");
        assertEquals(8, sm.size(), sm.toString());
        String[] algo = {"sparse", "flash", "sparse", "sparse", "sparse", "flash", "flash", "flash"};
        String[] tiling = {null, null, "w4x2", "wgx2", "wgpx2", "w4x2", "wgx2", "wgpx2"};
        for (int i = 0; i < 8; i++) {
            assertEquals(algo[i], sm.get(i).get("algorithm").asText(), sm.get(i).toString());
            assertEquals(tiling[i], sm.get(i).has("tiling") ? sm.get(i).get("tiling").asText() : null, sm.get(i).toString());
            boolean ran = tiling[i] == null || (!tiling[i].equals("w4x2") && wgRuns());
            if (ran) {
                assertEquals("ok", sm.get(i).get("status").asText(), sm.get(i).toString());
                assertTrue(sm.get(i).get("rel_l2_vs_first").asDouble() <= 2e-3, "the same attention: " + sm.get(i));
            }
        }
        for (int i : new int[] {2, 5}) {
            assertTrue(sm.get(i).get("status").asText().startsWith("unsupported: the f16 block-sparse kernel for D = 64 has no w4x2"),
                    sm.get(i).toString());
        }
        boolean[] sparseRows = new boolean[8];
        java.util.Arrays.fill(sparseRows, true); // flash on a window pattern runs the block-sparse kernel too
        assertRowsRanTheirTiling(sm, DType.F16, 64, sparseRows);
        if (log != null) {
            List<String> kernels = new ArrayList<>(List.of("hr_flash_sparse_f16_d64", "hr_flash_sparse_f16_d64"));
            if (wgRuns()) {
                kernels.addAll(List.of("hr_flash_sparse_wgx2_f16_d64", "hr_flash_sparse_wgpx2_f16_d64", "hr_flash_sparse_wgx2_f16_d64",
                        "hr_flash_sparse_wgpx2_f16_d64"));
            }
            assertEquals(kernels, attentionLaunchesSince(log, mark), "the kernel each row ran, in order, by the emulator's log");
        }
        if (wgRuns()) {
            // 300 rows: 3 tiles of 128 rows against 5 of 64, each listing the key tiles within ±40 of its rows.
            long w4 = sm.get(0).get("key_tiles_visited").asLong();
            long x2 = sm.get(3).get("key_tiles_visited").asLong();
            assertTrue(x2 < w4, x2 + " pairs of 128-row tiles vs W4's " + w4);
            assertEquals(x2, sm.get(4).get("key_tiles_visited").asLong(), "WGPX2: WGX2's tiles");
            assertEquals(x2, sm.get(6).get("key_tiles_visited").asLong(), "flash on a window runs the same sparse kernel");
        }
    }

    /** --tiling w2 where the planned kernel has no W2 tiling is refused, not silently run as W4. */
    @Test
    void aTilingTheKernelLacksIsRefused() {
        Random r = new Random(78);
        Path qp = dir.resolve("q.npy");
        Npy.write(qp, random(r, 1, 2, 40, 32));
        Path out = dir.resolve("o.npy");
        Cli.run("attend", "--backend", "cuda", "--q", qp.toString(), "--k", qp.toString(), "--v", qp.toString(), "--algo", "flash",
                "--dtype", "bf16", "--tiling", "w2", "--out", out.toString())
                .assertBadInput("headroute attend", "--tiling w2: the hr_flash_fwd_bf16_d32 kernel has no w2 tiling", out);
        Cli.run("attend", "--backend", "cuda", "--q", qp.toString(), "--k", qp.toString(), "--v", qp.toString(), "--algo", "flash",
                "--dtype", "f32", "--tiling", "w2", "--out", out.toString())
                .assertBadInput("headroute attend", "--tiling w2: the hr_flash_fwd_f32_d64 kernel has no w2 tiling", out);
        Path q96 = dir.resolve("q96.npy");
        Npy.write(q96, random(r, 1, 2, 40, 96));
        Cli.run("attend", "--backend", "cuda", "--q", q96.toString(), "--k", q96.toString(), "--v", q96.toString(), "--algo",
                "flash", "--dtype", "bf16", "--tiling", "w4x2", "--out", out.toString())
                .assertBadInput("headroute attend", "--tiling w4x2: the hr_flash_fwd_bf16_d96 kernel has no w4x2 tiling", out);
        // The block-sparse kernels have the wgmma tilings but not W4X2 (an engine set to w4x2 runs them in W4).
        Path q64 = dir.resolve("q64.npy");
        Npy.write(q64, random(r, 1, 2, 40, 64));
        Cli.run("attend", "--backend", "cuda", "--q", q64.toString(), "--k", q64.toString(), "--v", q64.toString(), "--algo",
                "sparse", "--pattern", "window:9", "--dtype", "bf16", "--tiling", "w4x2", "--out", out.toString())
                .assertBadInput("headroute attend", "--tiling w4x2: the hr_flash_sparse_bf16_d64 kernel has no w4x2 tiling", out);
    }
}
