package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.headroute.analysis.AnalysisReport;
import io.headroute.analysis.ModelAnalysis;
import io.headroute.engine.Algorithm;
import io.headroute.model.LayerSpec;
import io.headroute.model.ModelConfig;
import io.headroute.model.ModelWeights;
import io.headroute.pattern.Pattern;
import io.headroute.routing.PruningPlan;
import io.headroute.tensor.DType;
import io.headroute.tensor.Npy;
import io.headroute.tensor.Tensor;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AnalyzeCommandTest {
    private static final List<String> TINY = List.of("analyze", "--backend", "cpu", "--threads", "2", "--layers", "2", "--heads",
            "4", "--dim", "8", "--len", "24", "--causal", "--repeats", "2", "--warmup", "0", "--map-size", "12");

    @TempDir
    Path dir;

    /** {@code base} with each option of {@code more} (name, value pairs) replaced or appended. */
    private static List<String> args(List<String> base, String... more) {
        List<String> a = new ArrayList<>(base);
        for (int i = 0; i < more.length; i += 2) {
            int at = a.indexOf(more[i]);
            if (at >= 0) {
                a.set(at + 1, more[i + 1]);
            } else {
                a.add(more[i]);
                a.add(more[i + 1]);
            }
        }
        return a;
    }

    private static List<String> files(Path out) throws IOException {
        try (Stream<Path> s = Files.list(out)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void writesEveryFileAndTheMarkdownAgreesWithTheJson() throws IOException {
        Path out = dir.resolve("a");
        Path planOut = dir.resolve("plan-copy.json");
        Cli r = Cli.run(args(TINY, "--plot-heads", "1:3,0:0", "--plan-out", planOut.toString(), "--out", out.toString()))
                .assertOk();
        assertTrue(r.out().startsWith("headroute analyze: 2 layers × 4 heads, X (1, 24, 32), on CPU"), r.out());
        assertTrue(r.out().contains("report: " + out.resolve("analysis.md")), r.out());
        assertEquals(List.of("analysis.json", "analysis.md", "attention-l0-h0.png", "attention-l1-h3.png", "importance.png",
                "plan.json"), files(out), "exactly the report files, no temporaries");

        BufferedImage grid = ImageIO.read(out.resolve("importance.png").toFile());
        assertNotNull(grid);
        assertEquals(4 * 24, grid.getWidth(), "4 heads of 24 pixels");
        assertEquals(2 * 24, grid.getHeight(), "2 layers");
        BufferedImage map = ImageIO.read(out.resolve("attention-l1-h3.png").toFile());
        assertNotNull(map);
        assertEquals(12 * (256 / 12), map.getWidth());
        assertEquals(map.getWidth(), map.getHeight());

        JsonNode json = new ObjectMapper().readTree(out.resolve("analysis.json").toFile());
        assertEquals("headroute-analysis", json.get("format").asText());
        assertEquals(4, json.get("model").get("heads").asInt());
        assertEquals("[1,24,32]", json.get("input").get("shape").toString());
        assertEquals(24, json.get("probe").get("rows").asInt());
        String md = Files.readString(out.resolve("analysis.md"));
        int removed = 0;
        for (JsonNode layer : json.get("layers")) {
            assertEquals(4, layer.get("heads").size());
            assertEquals(4, layer.get("output_similarity").size());
            for (JsonNode h : layer.get("heads")) {
                String labels = h.get("labels").asText();
                String row = "| " + layer.get("layer").asInt() + " | " + h.get("head").asInt() + " | "
                        + AnalysisReport.importance(h.get("importance").asDouble()) + " | "
                        + AnalysisReport.mass(h.get("previous_token").asDouble()) + " | "
                        + AnalysisReport.mass(h.get("first_token").asDouble()) + " | "
                        + AnalysisReport.mass(h.get("diagonal").asDouble()) + " | "
                        + AnalysisReport.mass(h.get("entropy").asDouble()) + " | " + h.get("local_width").asInt() + " | "
                        + h.get("probed_rows").asInt() + " | " + (labels.isEmpty() ? "-" : labels) + " | " + (h.get("pruned").asBoolean() ? "yes" : "no") + " |";
                assertTrue(md.contains(row + "\n"), () -> "missing row " + row + " in\n" + md);
                assertTrue(h.get("importance").asDouble() > 0);
                assertEquals(24, h.get("probed_rows").asInt(), "every row of B = 1, L = 24 counts (dense)");
                removed += h.get("pruned").asBoolean() ? 1 : 0;
            }
        }
        JsonNode pruning = json.get("pruning");
        assertEquals(3, removed, "round(0.37 · 8)");
        assertEquals(3, pruning.get("removed_heads").asInt());
        assertEquals(2, pruning.get("unpruned_ms").size());
        PruningPlan plan = PruningPlan.load(out.resolve("plan.json"));
        assertEquals(plan, PruningPlan.load(planOut));
        assertEquals(plan, PruningPlan.fromJson(pruning.get("plan").toString()));
        for (JsonNode layer : json.get("layers")) {
            boolean[] mask = plan.headMask(layer.get("layer").asInt());
            for (JsonNode h : layer.get("heads")) {
                assertEquals(!mask[h.get("head").asInt()], h.get("pruned").asBoolean());
            }
        }
        assertTrue(md.contains("output relative error of the whole model ‖Y − Y_pruned‖ / ‖Y‖ = "
                + AnalysisReport.importance(pruning.get("relative_error").asDouble()) + ";"), md);
        assertTrue(md.contains("![layer 1 head 3](attention-l1-h3.png)"), md);
        assertEquals(2, json.get("plots").get("attention").size());
    }

    @Test
    void weightsAndInputFromFilesGiveTheSameAnalysisAsTheSeed() throws IOException {
        ModelConfig c = ModelConfig.uniform(32, 4, 2, 8, DType.F32, 2, LayerSpec.of(new Pattern.Window(5), false,
                Algorithm.AUTO));
        Path weights = dir.resolve("w.safetensors");
        ModelWeights.random(c, 42).save(weights);
        Path x = dir.resolve("x.npy");
        Npy.write(x, ModelAnalysis.randomInput(2, 20, 32, 42));
        Path fromFiles = dir.resolve("files");
        Cli.run("analyze", "--backend", "cpu", "--threads", "2", "--weights", weights.toString(), "--x", x.toString(),
                "--repeats", "1", "--warmup", "0", "--out", fromFiles.toString()).assertOk();
        Path fromSeed = dir.resolve("seed");
        Cli.run("analyze", "--backend", "cpu", "--threads", "2", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--dim", "8",
                "--pattern", "window:5", "--batch", "2", "--len", "20", "--repeats", "1", "--warmup", "0", "--out",
                fromSeed.toString()).assertOk();
        JsonNode a = new ObjectMapper().readTree(fromFiles.resolve("analysis.json").toFile());
        JsonNode b = new ObjectMapper().readTree(fromSeed.resolve("analysis.json").toFile());
        assertEquals(b.get("layers"), a.get("layers"));
        assertEquals(b.get("pruning").get("plan"), a.get("pruning").get("plan"));
        assertEquals(b.get("pruning").get("relative_error"), a.get("pruning").get("relative_error"));
        assertEquals(weights.toString(), a.get("weights").asText());
        assertEquals("random, seed 42", b.get("weights").asText());
        // One config option replaces the stored config as a whole; the error says so.
        Cli.run("analyze", "--backend", "cpu", "--weights", weights.toString(), "--x", x.toString(), "--causal", "--out",
                dir.resolve("never").toString()).assertBadInput("headroute analyze",
                "config options replace the file's stored config as a whole", dir.resolve("never"));
        // Nothing to prune (one head per layer): said so; singular counts.
        Cli one = Cli.run("analyze", "--backend", "cpu", "--threads", "2", "--layers", "1", "--heads", "1", "--dim", "8", "--len",
                "12", "--repeats", "1", "--warmup", "0", "--prune", "0.9", "--out", dir.resolve("one").toString()).assertOk();
        assertTrue(one.out().startsWith("headroute analyze: 1 layer × 1 head, X (1, 12, 8)"), one.out());
        assertTrue(one.out().contains("note: nothing was pruned"), one.out());
    }

    @Test
    void aDuplicatedHeadInAWeightFileIsReportedRedundantInBothFiles() throws IOException {
        ModelConfig c = ModelConfig.uniform(32, 4, 4, 8, DType.F32, 1, LayerSpec.of(new Pattern.Dense(), true, Algorithm.AUTO));
        Map<String, Tensor> m = new LinkedHashMap<>(ModelWeights.random(c, 8).asMap());
        for (String name : List.of("layers.0.attn.wq", "layers.0.attn.wk", "layers.0.attn.wv")) {
            float[] a = m.get(name).toFloatArray();
            for (int r = 0; r < 32; r++) {
                System.arraycopy(a, r * 32 + 3 * 8, a, r * 32 + 0, 8); // head 0 := head 3
            }
            m.put(name, Tensor.ofFloats(a, 32, 32));
        }
        float[] wo = m.get("layers.0.attn.wo").toFloatArray();
        System.arraycopy(wo, 3 * 8 * 32, wo, 0, 8 * 32);
        m.put("layers.0.attn.wo", Tensor.ofFloats(wo, 32, 32));
        Path weights = dir.resolve("dup.safetensors");
        ModelWeights.of(c, m).save(weights);
        Path out = dir.resolve("dup");
        Cli r = Cli.run("analyze", "--backend", "cpu", "--threads", "2", "--weights", weights.toString(), "--len", "30",
                "--repeats", "1", "--out", out.toString()).assertOk();
        assertTrue(r.out().contains("redundant pairs: 1;"), r.out());
        JsonNode pairs = new ObjectMapper().readTree(out.resolve("analysis.json").toFile()).get("layers").get(0)
                .get("redundant_pairs");
        assertEquals(1, pairs.size());
        assertEquals(0, pairs.get(0).get("a").asInt());
        assertEquals(3, pairs.get(0).get("b").asInt());
        assertEquals(1.0, pairs.get(0).get("output_cosine").asDouble(), 1e-9);
        assertTrue(Files.readString(out.resolve("analysis.md")).contains("| 0 | 0, 3 | 1.0000 | 1.0000 |\n"));
        // Default pictures: the four heads of the only layer, strongest detector first.
        JsonNode plots = new ObjectMapper().readTree(out.resolve("analysis.json").toFile()).get("plots").get("attention");
        assertEquals(4, plots.size());
        for (JsonNode p : plots) {
            assertNotNull(ImageIO.read(out.resolve(p.get("file").asText()).toFile()), p.toString());
        }
    }

    @Test
    void badInputIsOneLineExitTwoAndWritesNothing() throws IOException {
        Path out = dir.resolve("never");
        Path planOut = dir.resolve("never-plan.json");
        String cmd = "headroute analyze";
        Cli.run(args(TINY, "--prune", "1.5", "--plan-out", planOut.toString(), "--out", out.toString())).assertBadInput(cmd,
                "pruning fraction must be in [0, 1)", out, planOut);
        Cli.run(args(TINY, "--plot-heads", "2:0", "--out", out.toString())).assertBadInput(cmd, "2:0 is out of range", out);
        Cli.run(args(TINY, "--plot-heads", "0:1,0:1", "--out", out.toString())).assertBadInput(cmd, "listed twice", out);
        Cli.run(args(TINY, "--plot-heads", "x", "--out", out.toString())).assertBadInput(cmd, "is not LAYER:HEAD", out);
        Cli.run(args(TINY, "--heads", "3", "--kv-heads", "2", "--out", out.toString())).assertBadInput(cmd, "not divisible", out);
        Cli.run(args(TINY, "--dim", "7", "--out", out.toString())).assertBadInput(cmd, "must be even", out);
        Cli.run(args(TINY, "--pattern", "wobble", "--out", out.toString())).assertBadInput(cmd, "unknown pattern", out);
        Cli.run(args(TINY, "--repeats", "0", "--out", out.toString())).assertBadInput(cmd, "repeats", out);
        Cli.run(args(TINY, "--weights", dir.resolve("missing.safetensors").toString(), "--out", out.toString()))
                .assertBadInput(cmd, "missing.safetensors", out);
        Path x = dir.resolve("x.npy");
        Npy.write(x, ModelAnalysis.randomInput(1, 10, 16, 1));
        Cli.run(args(TINY, "--x", x.toString(), "--out", out.toString())).assertBadInput(cmd, "--x or random-input sizes", out);
        Cli.run("analyze", "--backend", "cpu", "--heads", "4", "--dim", "8", "--x", x.toString(), "--out", out.toString())
                .assertBadInput(cmd, "X must have shape (B, L, d_model = 32), got (1, 10, 16)", out);
        float[] xs = ModelAnalysis.randomInput(1, 10, 32, 1).toFloatArray();
        xs[3] = Float.POSITIVE_INFINITY;
        Path inf = dir.resolve("xinf.npy");
        Npy.write(inf, io.headroute.tensor.Tensor.ofFloats(xs, 1, 10, 32));
        Cli.run("analyze", "--backend", "cpu", "--heads", "4", "--dim", "8", "--x", inf.toString(), "--out", out.toString())
                .assertBadInput(cmd, "X holds a non-finite value (Infinity) at flat index 3", out);
        Cli.run(args(TINY, "--plan-out", dir.resolve("no/such/dir/p.json").toString(), "--out", out.toString()))
                .assertBadInput(cmd, "does not exist", out);
        Cli.run(args(TINY, "--plan-out", out.resolve("p.json").toString(), "--out", out.toString()))
                .assertBadInput(cmd, "lies inside --out", out);
        byte[] xBytes = Files.readAllBytes(x);
        Cli.run("analyze", "--backend", "cpu", "--heads", "4", "--dim", "4", "--x", x.toString(), "--plan-out", x.toString(), "--out",
                out.toString()).assertBadInput(cmd, "--plan-out names the input file of --x", out);
        org.junit.jupiter.api.Assertions.assertArrayEquals(xBytes, Files.readAllBytes(x));
        Cli.run(TINY).assertBadInput(cmd, "--out");

        Path full = Files.createDirectories(dir.resolve("full"));
        Files.writeString(full.resolve("old.txt"), "keep me");
        Cli.run(args(TINY, "--out", full.toString())).assertBadInput(cmd, "is not empty");
        assertEquals(List.of("old.txt"), files(full));
        Cli.run(args(TINY, "--out", "")).assertBadInput(cmd, "--out needs a folder name");
        Cli.run(args(TINY, "--probe-rows", "0", "--out", out.toString())).assertBadInput(cmd,
                "--probe-rows and --map-size must be positive, got 0 and 12", out);
        Path xi = dir.resolve("xint.npy");
        Npy.write(xi, io.headroute.tensor.Tensor.ofInts(new int[10 * 32], 1, 10, 32));
        Cli.run("analyze", "--backend", "cpu", "--heads", "4", "--dim", "8", "--x", xi.toString(), "--out", out.toString())
                .assertBadInput(cmd, "holds i32 values; activations must be f32, f16 or bf16", out);

        // A layout file named in a weight file's stored config is an input too.
        Path lay = dir.resolve("lay.npy");
        Cli.run("pattern", "--spec", "window:4", "--len", "24", "--block", "4", "--out", lay.toString()).assertOk();
        byte[] layBytes = Files.readAllBytes(lay);
        Path wf = dir.resolve("w.safetensors");
        io.headroute.model.ModelWeights.random(io.headroute.model.ModelConfig.uniform(16, 2, 2, 8, io.headroute.tensor.DType.F32,
                1, io.headroute.model.LayerSpec.of(io.headroute.pattern.Patterns.parse("layout:4:" + lay),
                        false, io.headroute.engine.Algorithm.AUTO)), 3).save(wf);
        Cli.run("analyze", "--backend", "cpu", "--weights", wf.toString(), "--len", "24", "--plan-out", lay.toString(), "--out",
                out.toString()).assertBadInput(cmd, "--plan-out names the input file of the layout of layer 0", out);
        org.junit.jupiter.api.Assertions.assertArrayEquals(layBytes, Files.readAllBytes(lay));
        // A --plan-out file that was there stays as it was when --out cannot be written; that is found before any work.
        Path oldPlan = dir.resolve("old-plan.json");
        Files.writeString(oldPlan, "precious");
        Path blocked = dir.resolve("a-file");
        Files.writeString(blocked, "not a folder");
        Cli.run(args(TINY, "--plan-out", oldPlan.toString(), "--out", blocked.resolve("out").toString()))
                .assertBadInput(cmd, "cannot be created");
        assertEquals("precious", Files.readString(oldPlan));
        try (Stream<Path> s = Files.list(dir)) {
            assertFalse(s.anyMatch(p -> p.getFileName().toString().startsWith(".never")), "no staging folder left");
        }
    }
}
