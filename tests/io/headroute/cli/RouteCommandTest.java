package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.headroute.routing.CpuHeadRouter;
import io.headroute.routing.RouterConfig;
import io.headroute.routing.RouterOutput;
import io.headroute.tensor.DType;
import io.headroute.tensor.Safetensors;
import io.headroute.tensor.Tensor;
import io.headroute.tensor.TensorFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RouteCommandTest {
    @TempDir
    Path dir;

    private Path write(String name, Tensor t) {
        Path p = dir.resolve(name);
        TensorFiles.write(p, t);
        return p;
    }

    private static Tensor random(Random r, long... shape) {
        float[] v = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return Tensor.ofFloats(v, shape);
    }

    @Test
    void writesTheGateAndStatistics() throws IOException {
        Random r = new Random(1);
        Tensor x = random(r, 2, 19, 8);
        Tensor wr = random(r, 8, 6);
        Path xf = write("x.npy", x);
        Path wf = write("wr.npy", wr);
        Path out = dir.resolve("gate.safetensors");
        Path stats = dir.resolve("stats.json");
        Cli c = Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "2", "--k", "2", "--block", "4",
                "--backend", "cpu", "--threads", "2", "--out", out.toString(), "--stats", stats.toString()).assertOk();
        assertTrue(c.out().contains("Hs=2, Hr=6, k=2, block 4 on cpu"), c.out());
        assertTrue(c.out().contains("load balance Hr·Σ f·P = "), c.out());
        assertEquals(6 + 4, c.out().lines().count(), c.out()); // summary, header, 6 heads, totals, legend

        RouterOutput expected;
        try (CpuHeadRouter cpu = new CpuHeadRouter(1)) {
            expected = cpu.route(x, wr, new RouterConfig(2, 6, 2, 4), DType.F32);
        }
        var file = Safetensors.read(out);
        Tensor gate = file.tensor("gate");
        assertEquals("(2, 19, 8)", gate.shapeString());
        assertArrayEquals(expected.gate().toFloatArray(), gate.toFloatArray());
        assertEquals("Hs=2, Hr=6, k=2, block 4", file.metadata().get("router"));

        JsonNode j = new ObjectMapper().readTree(stats.toFile());
        assertEquals("f32", j.get("dtype").asText());
        assertEquals(38, j.at("/stats/tokens").asLong());
        assertEquals(expected.stats().loadBalance(), j.at("/stats/load_balance").asDouble(), 1e-12);
        assertEquals(6, j.at("/stats/routed_heads").size());
        assertEquals(2, j.at("/stats/routed_heads/0/head").asInt());
        double sumF = 0;
        for (JsonNode h : j.at("/stats/routed_heads")) {
            sumF += h.get("f").asDouble();
        }
        assertEquals(1.0, sumF, 1e-12);
        assertEquals(4.0 / 8, j.at("/stats/active_head_fraction").asDouble(), 1e-12);

        // .npy and bf16 too.
        Path npy = dir.resolve("gate.npy");
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "0", "--k", "1", "--dtype", "bf16",
                "--backend", "cpu", "--out", npy.toString()).assertOk();
        assertEquals("(2, 19, 6)", TensorFiles.read(npy).shapeString());
    }

    @Test
    void cudaWithoutAUsableGpuIsAUserError() {
        String why = io.headroute.routing.HeadRouters.cudaUnavailableReason();
        org.junit.jupiter.api.Assumptions.assumeTrue(why != null, "a GPU router is available here");
        Random r = new Random(4);
        Path xf = write("x.npy", random(r, 1, 5, 4));
        Path wf = write("wr.npy", random(r, 4, 3));
        Path out = dir.resolve("g.npy");
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "1", "--k", "1", "--backend", "cuda",
                "--out", out.toString()).assertBadInput("headroute route", "the CUDA backend cannot run: ", out);
        // auto falls back to the CPU.
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "1", "--k", "1", "--out", out.toString())
                .assertOk();
        assertTrue(Files.exists(out));
    }

    @Test
    void badInputIsRefusedWithOneLine() {
        Random r = new Random(2);
        Path xf = write("x.npy", random(r, 1, 5, 4));
        Path wf = write("wr.npy", random(r, 4, 3));
        Path w5 = write("wr5.npy", random(r, 5, 3));
        Path w1 = write("wr1.npy", random(r, 12));
        Path out = dir.resolve("g.npy");
        Path stats = dir.resolve("s.json");
        String cmd = "headroute route";
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "1", "--k", "4", "--backend", "cpu",
                "--out", out.toString(), "--stats", stats.toString()).assertBadInput(cmd, "k must be between 1 and the 3", out, stats);
        Cli.run("route", "--x", xf.toString(), "--wr", w5.toString(), "--shared", "1", "--k", "1", "--backend", "cpu",
                "--out", out.toString()).assertBadInput(cmd, "must have d_model = 4 rows", out);
        Cli.run("route", "--x", xf.toString(), "--wr", w1.toString(), "--shared", "1", "--k", "1", "--backend", "cpu",
                "--out", out.toString()).assertBadInput(cmd, "(d_model, Hr)", out);
        Cli.run("route", "--x", wf.toString(), "--wr", wf.toString(), "--shared", "1", "--k", "1", "--backend", "cpu",
                "--out", out.toString()).assertBadInput(cmd, "(B, L, d_model)", out);
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "-1", "--k", "1", "--backend", "cpu",
                "--out", out.toString()).assertBadInput(cmd, "shared heads must be ≥ 0", out);
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "1", "--k", "1", "--block", "0",
                "--backend", "cpu", "--out", out.toString()).assertBadInput(cmd, "block must be ≥ 1", out);
        Cli.run("route", "--x", dir.resolve("none.npy").toString(), "--wr", wf.toString(), "--shared", "1", "--k", "1",
                "--backend", "cpu", "--out", out.toString()).assertBadInput(cmd, "none.npy", out);
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "1", "--k", "1", "--backend", "cpu",
                "--out", dir.resolve("g.txt").toString()).assertBadInput(cmd, "extension");
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "1", "--k", "1", "--backend", "cpu",
                "--out", out.toString(), "--stats", out.toString()).assertBadInput(cmd, "same file", out);
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "1", "--k", "1", "--backend", "cpu",
                "--out", out.toString(), "--stats", xf.toString()).assertBadInput(cmd, "--stats names the input file of --x", out);
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "1", "--k", "1", "--backend", "cpu",
                "--out", wf.toString()).assertBadInput(cmd, "--out names the input file of --wr");
        assertTrue(Files.exists(xf) && Files.exists(wf));
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--k", "1", "--out", out.toString())
                .assertBadInput(cmd, "--shared", out);
        Cli.run("route", "--x", xf.toString(), "--wr", wf.toString(), "--shared", "1", "--k", "1", "--dtype", "i32",
                "--out", out.toString()).assertBadInput(cmd, "i32", out);
        assertTrue(!Files.exists(out) && !Files.exists(stats));
    }
}
