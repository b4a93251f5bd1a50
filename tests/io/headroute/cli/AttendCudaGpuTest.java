package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.bench.AttentionBenchmark;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.engine.cuda.CudaProbe;
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
        CudaProbe.Result probe = CudaProbe.result();
        assumeTrue(probe.usable(), "no usable GPU: " + probe.reason());
        assumeTrue(CudaAttentionEngine.kernelsPackaged(), "the build has no CUDA kernels (built without nvcc)");
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
            {"flash", "f16", "wg+gate"}, {"flash", "bf16", "wgp+gate"}, {"flash", "bf16", "wgx2"}, {"flash", "f16", "wgpx2+gate"}};
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
            boolean tiled = c[2].startsWith("w2") || c[2].startsWith("w4x2") || c[2].startsWith("wg"); // wg, wgp, wgx2, wgpx2
            if (tiled) {
                a.addAll(List.of("--tiling", c[2].split("\\+")[0]));
            }
            if (c[2].endsWith("gate")) {
                a.addAll(List.of("--gate", gp.toString()));
                want.gate(gate);
            } else if (!c[2].isEmpty() && !tiled) {
                a.addAll(List.of("--pattern", c[2]));
                want.pattern(Patterns.parse(c[2]));
            }
            Cli res = Cli.run(a).assertOk();
            String what = String.join(" ", c) + ": " + res.out();
            assertTrue(res.out().startsWith("attend: cuda " + c[0]), what);
            assertFalse(res.out().contains("skipped -1") || res.out().contains("of -"), "no placeholder counts: " + what);
            assertTrue(res.out().contains(c[0].equals("materialized") ? "no key tiles" : "key tiles skipped"), what);
            float[] got = Npy.read(out).toFloatArray();
            float[] ref;
            try (CpuAttentionEngine cpu = new CpuAttentionEngine(2)) {
                ref = cpu.run(want.build()).o().toFloatArray();
            }
            double tol = c[1].equals("f32") ? 1e-5 : c[1].equals("f16") ? 2e-3 : 1e-2;
            double rel = AttentionBenchmark.relativeL2(got, ref);
            assertTrue(rel <= tol, what + ": relative L2 error " + rel + " > " + tol);
        }
    }

    /** Whether this GPU runs the WG tiling's wgmma kernels (compute capability 9.0; the emulator reports 9.0). */
    private static boolean wgRuns() {
        try (io.headroute.engine.cuda.CudaAttentionEngine e = io.headroute.engine.cuda.CudaAttentionEngine.open(0)) {
            return e.tilingUnavailable(io.headroute.engine.cuda.FlashPlan.Tiling.WG) == null;
        }
    }

    /**
     * bench --tilings w2,w4x2,wg,wgp,wgx2,wgpx2: flash again in each tiling on the same inputs, labelled, in the JSON with its
     * tiling; a tiling the head dim's kernel lacks (or this GPU cannot run) is a row not run, not W4 under
     * another name.
     */
    @Test
    void benchTimesTheOtherTilingsBesideTheDefault() throws Exception {
        Path json = dir.resolve("b.json");
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

        Cli.run("bench", "--backend", "cuda", "--dtype", "bf16", "--heads", "2", "--dim", "96", "--len", "70", "--algos", "flash",
                "--tilings", "w4x2", "--warmup", "0", "--repeats", "1", "--json", json.toString()).assertOk();
        com.fasterxml.jackson.databind.JsonNode d96 = mapper.readTree(json.toFile()).get("measurements");
        assertEquals(2, d96.size(), d96.toString());
        assertTrue(d96.get(1).get("status").asText().startsWith("unsupported: the bf16 flash kernel for D = 96 has no w4x2 tiling"),
                d96.get(1).toString());
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
        // The block-sparse kernels have WG and WGP but no two-warpgroup tiling (an engine set to wgx2 runs them in WG).
        Path q64 = dir.resolve("q64.npy");
        Npy.write(q64, random(r, 1, 2, 40, 64));
        Cli.run("attend", "--backend", "cuda", "--q", q64.toString(), "--k", q64.toString(), "--v", q64.toString(), "--algo",
                "sparse", "--pattern", "window:9", "--dtype", "bf16", "--tiling", "wgx2", "--out", out.toString())
                .assertBadInput("headroute attend", "--tiling wgx2: the hr_flash_sparse_bf16_d64 kernel has no wgx2 tiling", out);
    }
}
