package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.headroute.bench.AttentionBenchmark;
import io.headroute.engine.Algorithm;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.quality.AttentionQuality;
import io.headroute.quality.AttentionQuality.Report;
import io.headroute.tensor.DType;
import io.headroute.tensor.Npy;
import io.headroute.tensor.Safetensors;
import io.headroute.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.regex.Matcher;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class QualityCommandTest {
    @TempDir
    Path dir;

    private static final java.util.regex.Pattern ROW =
            java.util.regex.Pattern.compile("(?m)^(\\d+|all)\\s+([0-9.]+)\\s+([0-9.e+-]+)$");

    private static Report direct(Tensor q, Tensor k, Tensor v, Pattern p, Algorithm a) {
        try (CpuAttentionEngine e = new CpuAttentionEngine(2)) {
            return AttentionQuality.measure(e, q, k, v, p, null, DType.F32, a);
        }
    }

    /** The printed table's rows: per head, then "all"; each {recall, relative error}. */
    private static List<double[]> table(String out) {
        List<double[]> rows = new ArrayList<>();
        Matcher m = ROW.matcher(out);
        while (m.find()) {
            rows.add(new double[] {Double.parseDouble(m.group(2)), Double.parseDouble(m.group(3))});
        }
        return rows;
    }

    private static double finite(double x, String what) {
        assertTrue(Double.isFinite(x), what + " = " + x);
        return x;
    }

    private static void assertTableMatches(Report want, String out) {
        List<double[]> rows = table(out);
        int h = want.recallPerHead().length;
        assertEquals(h + 1, rows.size(), out);
        for (int i = 0; i < h; i++) {
            assertEquals(want.recallPerHead()[i], rows.get(i)[0], 1e-6, "head " + i + " recall\n" + out);
            assertEquals(want.relErrorPerHead()[i], rows.get(i)[1], 1e-6 * Math.max(1, want.relErrorPerHead()[i]),
                    "head " + i + " error\n" + out);
        }
        assertEquals(want.recall(), rows.get(h)[0], 1e-6, out);
        assertEquals(want.relError(), rows.get(h)[1], 1e-6, out);
    }

    @Test
    void randomInputsPrintPerHeadAndTotalsAndWriteJson() throws IOException {
        Path json = dir.resolve("q.json");
        Cli r = Cli.run("quality", "--backend", "cpu", "--threads", "2", "--batch", "2", "--heads", "3", "--kv-heads", "1",
                "--len", "77", "--kv-len", "150", "--dim", "16", "--seed", "5", "--pattern", "window:12", "--causal",
                "--algo", "sparse", "--json", json.toString()).assertOk();
        assertTrue(r.out().startsWith("quality of window:12+causal (sparse) against causal on cpu, B=2 H=3 Hkv=1 L=77 S=150 D=16, f32\n"),
                r.out());
        // The header names the dtype, as the JSON does.
        Cli b = Cli.run("quality", "--backend", "cpu", "--threads", "2", "--heads", "1", "--len", "16", "--dim", "8", "--dtype",
                "bf16").assertOk();
        assertTrue(b.out().startsWith("quality of dense (") && b.out().lines().findFirst().orElseThrow().endsWith(" D=8, bf16"),
                b.out());

        // The same seeded inputs as the benchmark's, measured directly.
        Pattern p = Patterns.parse("window:12").withCausal();
        var in = AttentionBenchmark.randomInputs(new AttentionBenchmark.Config(2, 3, 1, 77, 150, 16, false, p, DType.F32,
                List.of(Algorithm.FLASH), 0, 1, 5));
        Report want = direct(in.q(), in.k(), in.v(), p, Algorithm.SPARSE);
        assertTableMatches(want, r.out());
        assertTrue(want.recall() > 0 && want.recall() < 1, "a window keeps some mass, not all: " + want.recall());

        JsonNode root = new ObjectMapper().readTree(json.toFile());
        assertEquals("window:12+causal", root.get("pattern").asText());
        assertEquals("causal", root.get("reference").asText());
        assertEquals("sparse", root.get("algorithm").asText());
        assertEquals("sparse", root.get("algorithm_used").asText());
        // auto names what it chose: a 12-wide window at L = 77 lists most blocks, so the CPU runs flash.
        Path auto = dir.resolve("auto.json");
        Cli a = Cli.run("quality", "--backend", "cpu", "--threads", "2", "--len", "77", "--heads", "2", "--dim", "16",
                "--pattern", "window:12", "--json", auto.toString()).assertOk();
        JsonNode ar = new ObjectMapper().readTree(auto.toFile());
        assertEquals("auto", ar.get("algorithm").asText());
        assertTrue(a.out().startsWith("quality of window:12 (" + ar.get("algorithm_used").asText() + ") against dense"), a.out());
        assertTrue(!ar.get("algorithm_used").asText().equals("auto"), ar.toString());
        assertEquals(3, root.get("heads").size());
        assertEquals(150, root.get("shape").get("kv_len").asInt());
        // assertEquals(double, double, delta) passes NaN against NaN: the expected values must be real numbers.
        for (int h = 0; h < 3; h++) {
            assertEquals(finite(want.recallPerHead()[h], "head " + h + " recall"),
                    root.get("heads").get(h).get("recall").asDouble(), 0.0);
            assertEquals(finite(want.relErrorPerHead()[h], "head " + h + " relative error"),
                    root.get("heads").get(h).get("relative_error").asDouble(), 0.0);
        }
        assertEquals(finite(want.recall(), "recall"), root.get("recall").asDouble(), 0.0);
        assertEquals(finite(want.relError(), "relative error"), root.get("relative_error").asDouble(), 0.0);
    }

    @Test
    void fileInputsAndDenseIsExact() {
        Random rnd = new Random(3);
        float[] x = new float[2 * 40 * 8];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        Tensor q = Tensor.ofFloats(x, 1, 2, 40, 8);
        Path qf = dir.resolve("q.npy");
        Npy.write(qf, q);
        Cli r = Cli.run("quality", "--backend", "cpu", "--q", qf.toString(), "--k", qf.toString(), "--v", qf.toString())
                .assertOk();
        List<double[]> rows = table(r.out());
        assertEquals(3, rows.size(), r.out());
        for (double[] row : rows) {
            assertEquals(1.0, row[0], 0.0, "dense keeps all the mass\n" + r.out());
            assertEquals(0.0, row[1], 0.0, "dense against dense: no error\n" + r.out());
        }

        Path st = dir.resolve("qkv.safetensors");
        Safetensors.write(st, Map.of("q", q, "k", q, "v", q), Map.of());
        Cli s = Cli.run("quality", "--backend", "cpu", "--input", st.toString(), "--pattern", "bigbird:8:0:1:1:3").assertOk();
        assertTableMatches(direct(q, q, q, Patterns.parse("bigbird:8:0:1:1:3"), Algorithm.AUTO), s.out());
    }

    @Test
    void badInputIsOneLineAndExitTwo() throws IOException {
        Path json = dir.resolve("bad.json");
        Path q = dir.resolve("q.npy");
        Npy.write(q, Tensor.ofFloats(new float[2 * 8 * 4], 1, 2, 8, 4));
        Cli.run("quality", "--backend", "cpu", "--len", "10", "--pattern", "windoww:3", "--json", json.toString())
                .assertBadInput("headroute quality", "unknown pattern", json);
        Cli.run("quality", "--backend", "cpu", "--len", "10", "--kv-len", "5", "--json", json.toString())
                .assertBadInput("headroute quality", "exceed", json);
        Cli.run("quality", "--backend", "cpu", "--heads", "3", "--kv-heads", "2", "--len", "8")
                .assertBadInput("headroute quality", "divisible");
        if (Files.isDirectory(Path.of("/proc"))) {
            // A --json that passes the checks but cannot be written (/proc takes no new files): no table printed first.
            Cli.run("quality", "--backend", "cpu", "--heads", "1", "--len", "16", "--json", "/proc/headroute-quality.json")
                    .assertBadInput("headroute quality", "cannot write: directory /proc does not take new files");
        }
        Cli.run("quality", "--backend", "cpu", "--q", q.toString(), "--k", q.toString(), "--v", q.toString(), "--len", "8")
                .assertBadInput("headroute quality", "not both");
        Cli.run("quality", "--backend", "cpu", "--q", q.toString(), "--k", q.toString())
                .assertBadInput("headroute quality", "--v");
        Cli.run("quality", "--backend", "cpu", "--len", "8", "--block-size", "96")
                .assertBadInput("headroute quality", "--block-size must be 64 or 128");
        Cli.run("quality", "--backend", "cpu", "--q", dir.resolve("missing.npy").toString(), "--k", q.toString(), "--v",
                q.toString(), "--json", json.toString()).assertBadInput("headroute quality", "missing.npy", json);
        Cli.run("quality", "--backend", "cpu", "--len", "8", "--json", dir.resolve("no/such/dir.json").toString())
                .assertBadInput("headroute quality", "does not exist");
        Files.createDirectory(dir.resolve("adir.json"));
        Cli.run("quality", "--backend", "cpu", "--len", "8", "--json", dir.resolve("adir.json").toString())
                .assertBadInput("headroute quality", "directory");
        // Non-finite inputs: a NaN in q, and a value that overflows f16 once rounded.
        float[] x = new float[2 * 8 * 4];
        x[5] = Float.NaN;
        Path nan = dir.resolve("nan.npy");
        Npy.write(nan, Tensor.ofFloats(x, 1, 2, 8, 4));
        Cli.run("quality", "--backend", "cpu", "--q", nan.toString(), "--k", q.toString(), "--v", q.toString(), "--json",
                json.toString()).assertBadInput("headroute quality", "q holds a non-finite value (NaN) at flat index 5", json);
        x[5] = 70000f;
        Path big = dir.resolve("big.npy");
        Npy.write(big, Tensor.ofFloats(x, 1, 2, 8, 4));
        Cli.run("quality", "--backend", "cpu", "--q", q.toString(), "--k", big.toString(), "--v", q.toString(), "--dtype", "f16")
                .assertBadInput("headroute quality", "k holds a non-finite value in f16 (70000.0 -> Infinity)");
        // Scores that can overflow fp32, and a JSON output naming an input (kept as it was).
        Npy.write(q, Tensor.ofFloats(new float[] {0.5f, -2f, 1f, 3f}, 1, 1, 1, 4));
        byte[] qBytes = Files.readAllBytes(q);
        Cli.run("quality", "--backend", "cpu", "--q", q.toString(), "--k", q.toString(), "--v", q.toString(), "--scale", "1e38")
                .assertBadInput("headroute quality", "can overflow the scores");
        Cli.run("quality", "--backend", "cpu", "--q", q.toString(), "--k", q.toString(), "--v", q.toString(), "--json", q.toString())
                .assertBadInput("headroute quality", "--json names the input file of --q");
        org.junit.jupiter.api.Assertions.assertArrayEquals(qBytes, Files.readAllBytes(q));
    }
}
