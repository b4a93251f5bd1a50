package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.headroute.attention.Backends;
import io.headroute.cuda.memory.Bytes;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.cuda.MaterializedPlan;
import io.headroute.experiment.ExperimentReport;
import io.headroute.experiment.Run;
import io.headroute.tensor.DType;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.stream.Stream;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ExperimentCommandTest {
    private static final List<String> TINY = List.of("experiment", "--backend", "cpu", "--threads", "2", "--lens", "64..128",
            "--heads", "2", "--dim", "16", "--variants", "materialized,flash,sparse:window:8,flash:bigbird:16:1:1:1:3",
            "--warmup", "0", "--repeats", "1");

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

    @Test
    void tinySweepWritesEveryFileAndTheyAgree() throws IOException {
        Path out = dir.resolve("exp");
        Cli r = Cli.run(args(TINY, "--out", out.toString())).assertOk();
        assertTrue(r.out().contains("8 runs (8 measured, 0 not run)"), r.out());
        assertTrue(r.out().contains("report: " + out.resolve("report.md")), r.out());
        try (Stream<Path> s = Files.list(out)) {
            assertEquals(ExperimentReport.FILES.stream().sorted().toList(), s.map(p -> p.getFileName().toString()).sorted().toList(),
                    "exactly the report files, no temporaries");
        }
        for (String png : List.of(ExperimentReport.VRAM_CHART, ExperimentReport.TIME_CHART, ExperimentReport.SPEEDUP_CHART)) {
            BufferedImage img = ImageIO.read(out.resolve(png).toFile());
            assertNotNull(img, png + " decodes");
            assertEquals(960, img.getWidth(), png);
            assertEquals(600, img.getHeight(), png);
            assertTrue(distinctColours(img) > 5, png + " has more than a background");
        }

        JsonNode json = new ObjectMapper().readTree(out.resolve("runs.json").toFile());
        JsonNode runs = json.get("runs");
        assertEquals(8, runs.size());
        assertCsvAgreesWithJson(out);
        for (JsonNode row : runs) {
            assertEquals("ok", row.get("status").asText());
            assertTrue(row.get("median_ms").asDouble() > 0);
            assertTrue(row.get("peak_vram_measured_bytes").isNull(), "no measured VRAM on the CPU");
            assertTrue(row.get("peak_vram_predicted_bytes").asLong() > 0);
            assertEquals("predicted", row.get("vram_basis").asText());
            assertTrue(row.get("mass_recall").asDouble() > 0 && row.get("mass_recall").asDouble() <= 1);
        }
        JsonNode mat = runs.get(0);
        assertEquals("materialized", mat.get("variant").asText());
        assertEquals(MaterializedPlan.of(new AttentionShape(1, 2, 2, 64, 64, 16), DType.F32, false).totalBytes(),
                mat.get("peak_vram_predicted_bytes").asLong());
        assertEquals(0.0, mat.get("vram_saved_vs_materialized").asDouble(), 0);
        assertTrue(runs.get(2).get("token_density").asDouble() < 0.5, "window:8 of 64");
        assertTrue(json.get("flop_formula").asText().contains("4·B·H·L·S·D"));
        assertEquals("predicted", json.get("vram").asText());

        String md = Files.readString(out.resolve("report.md"));
        assertTrue(md.contains("- command: `headroute experiment --backend cpu"), md);
        assertTrue(md.contains("- date: "), md);
        assertTrue(md.contains("- device: CPU, 2 threads"), md);
        assertTrue(md.contains("- commit: "), md);
        assertTrue(md.contains("| variant | pattern | dtype | H | L | status | median ms"), md);
        assertTrue(md.contains("| sparse:window:8 | window:8 | f32 | 2 | 128 | ok |"), md);
        assertTrue(md.contains("| flash:bigbird:16:1:1:1:3 |"), md);
        assertTrue(md.contains("measured n/a on the CPU"), md);
        assertTrue(md.contains("(predicted)"), md);
        assertTrue(md.contains("![peak VRAM](vram.png)"), md);
        assertFalse(md.contains("## Seed claims"), md);
    }

    @Test
    void deviceMemoryTooSmallReportsDoesNotFit() throws IOException {
        Path out = dir.resolve("small-card");
        long mat = MaterializedPlan.of(new AttentionShape(1, 2, 2, 128, 128, 16), DType.F32, false).totalBytes();
        Cli.run(args(TINY, "--device-memory", "150KiB", "--out", out.toString())).assertOk();
        JsonNode runs = new ObjectMapper().readTree(out.resolve("runs.json").toFile()).get("runs");
        JsonNode big = runs.get(4);
        assertEquals("materialized", big.get("variant").asText());
        assertEquals(128, big.get("len").asInt());
        assertEquals("does not fit: needs " + Bytes.format(mat) + " (predicted), has 150.00 KiB (--device-memory)",
                big.get("status").asText());
        assertTrue(big.get("median_ms").isNull());
        assertCsvAgreesWithJson(out);
        assertTrue(Files.readString(out.resolve("runs.csv")).contains(",\"does not fit: needs "), "quoted: it holds a comma");
        assertEquals("ok", runs.get(5).get("status").asText(), "flash fits");
        String md = Files.readString(out.resolve("report.md"));
        // The note's number depends on the notes before it (a timing note on a noisy speed-up may come first).
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("\\| does not fit \\[(\\d+)\\] \\|").matcher(md);
        assertTrue(m.find(), md);
        assertTrue(md.contains("\n" + m.group(1) + ". materialized, f32, H=2, L=128: does not fit: needs "), md);
    }

    @Test
    void seedClaimsPresetSaysWhatWasMeasuredAndWhatWasNot() throws IOException {
        Path out = dir.resolve("claims");
        Cli.run("experiment", "--backend", "cpu", "--threads", "2", "--preset", "seed-claims", "--lens", "256", "--heads", "2",
                "--dim", "16", "--warmup", "0", "--repeats", "1", "--out", out.toString()).assertOk();
        String md = Files.readString(out.resolve("report.md"));
        assertTrue(md.contains("## Seed claims"), md);
        assertTrue(md.contains("B·H·L·S·2 = 1·8·32768·32768·2 = 17179869184 bytes = 16.00 GiB (17.18 GB)"), md);
        assertTrue(md.contains("predicted by the memory plan (no GPU here)"), md);
        assertTrue(md.contains("agrees by arithmetic (16 GiB, binary gigabytes); not measured"), md);
        // The pruning claims are measured on the preset's own small model, whatever the sweep's sizes.
        assertTrue(md.contains("| 37% of heads can be pruned with under 0.5% loss | 4 layers, d_model = 256, H = 8, Hkv = 8, D = 32, "
                + "dense attention + causal, f32; seeded random weights"), md);
        assertTrue(md.contains("| removed 12 of 32 heads (37.5%); the whole model's output changed by ‖Y − Y_pruned‖ / ‖Y‖ = "), md);
        assertTrue(md.contains("| pruning cuts inference latency by up to 42% | 4 layers, d_model = 256"), md);
        assertFalse(md.contains("needs head pruning"), md);
        JsonNode claims = new ObjectMapper().readTree(out.resolve("runs.json").toFile()).get("claims");
        assertEquals(4, claims.size());
        assertTrue(claims.get(1).get("found").asText().contains("attention-mass recall"), claims.get(1).toString());
        assertTrue(claims.get(3).get("found").asText().contains("ms pruned, latency cut by "), claims.get(3).toString());
        assertTrue(claims.get(3).get("verdict").asText().matches("agrees .*|partly agrees: .*|disagrees: .*"),
                claims.get(3).toString());
    }

    @Test
    void badInputIsOneLineExitTwoAndWritesNothing() throws IOException {
        Path out = dir.resolve("never");
        Cli.run(args(TINY, "--variants", "flash,quick", "--out", out.toString())).assertBadInput("headroute experiment",
                "unknown variant 'quick'", out);
        Cli.run(args(TINY, "--variants", "sparse", "--out", out.toString())).assertBadInput("headroute experiment",
                "needs a pattern", out);
        Cli.run(args(TINY, "--lens", "64,abc", "--out", out.toString())).assertBadInput("headroute experiment",
                "--lens '64,abc': 'abc' is not a length", out);
        Cli.run(args(TINY, "--lens", "128..64", "--out", out.toString())).assertBadInput("headroute experiment",
                "ends below its start", out);
        Cli.run(args(TINY, "--dtypes", "f64", "--out", out.toString())).assertBadInput("headroute experiment",
                "unknown compute dtype", out);
        Cli.run(args(TINY, "--heads", "3", "--kv-heads", "2", "--out", out.toString())).assertBadInput("headroute experiment",
                "not divisible", out);
        // Shapes are checked before a pruned variant divides heads by key/value heads (it divided by zero).
        for (String[] hk : new String[][] {{"2", "4"}, {"2,3", "2"}}) {
            Cli.run("experiment", "--backend", "cpu", "--lens", "64", "--heads", hk[0], "--kv-heads", hk[1], "--dim", "16",
                    "--variants", "flash,pruned:0.5", "--warmup", "0", "--repeats", "1", "--out", out.toString())
                    .assertBadInput("headroute experiment", "not divisible", out);
        }
        Cli.run(args(TINY, "--repeats", "2000000000", "--out", out.toString())).assertBadInput("headroute experiment",
                "--repeats must be in 1..100000", out);
        Cli.run(args(TINY, "--preset", "fast", "--out", out.toString())).assertBadInput("headroute experiment",
                "unknown preset 'fast'", out);
        Cli.run(args(TINY, "--device-memory", "lots", "--out", out.toString())).assertBadInput("headroute experiment",
                "--device-memory 'lots'", out);
        Cli.run(args(TINY, "--variants", "sparse:layout:16:/nonexistent.npy", "--out", out.toString()))
                .assertBadInput("headroute experiment", "nonexistent.npy", out);
        Cli.run(TINY).assertBadInput("headroute experiment", "--out");

        Path full = Files.createDirectories(dir.resolve("full"));
        Path old = Files.writeString(full.resolve("old.txt"), "keep me");
        Cli.run(args(TINY, "--out", full.toString())).assertBadInput("headroute experiment", "is not empty");
        assertEquals("keep me", Files.readString(old));
        try (Stream<Path> s = Files.list(full)) {
            assertEquals(1, s.count());
        }

        Path file = Files.writeString(dir.resolve("a-file"), "x");
        Path under = file.resolve("exp");
        Cli.run(args(TINY, "--out", under.toString())).assertBadInput("headroute experiment", "cannot be created", under);
        Cli.run(args(TINY, "--out", file.toString())).assertBadInput("headroute experiment", "not a directory");
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of("a-file", "full"), s.map(p -> p.getFileName().toString()).sorted().toList(),
                    "no folder or temporary left behind");
        }
    }

    @Test
    void cudaWithoutAGpuIsRefused() {
        assumeTrue(Backends.cudaUnavailableReason() != null, "a GPU is usable here");
        Path out = dir.resolve("gpu");
        Cli.run(args(TINY, "--backend", "cuda", "--out", out.toString())).assertBadInput("headroute experiment",
                "the CUDA backend cannot run: ", out);
    }

    @Test
    void aFolderThatCannotBeWrittenIsRefused() throws IOException {
        Path locked = Files.createDirectories(dir.resolve("locked"));
        assumeTrue(locked.toFile().setWritable(false, false), "cannot change permissions here");
        try {
            assumeFalse(Files.isWritable(locked), "permissions are not enforced for this user (root)");
            Path out = locked.resolve("exp");
            Cli.run(args(TINY, "--out", out.toString())).assertBadInput("headroute experiment", "is not writable", out);
            Cli.run(args(TINY, "--out", locked.toString())).assertBadInput("headroute experiment", "is not writable");
        } finally {
            locked.toFile().setWritable(true, false);
        }
    }

    /** The refusal above for every user, root included (CI): /proc takes no new folders whatever the permissions. */
    @Test
    void aFolderWhereNothingCanBeCreatedIsRefused() {
        assumeTrue(Files.isDirectory(Path.of("/proc/self")), "no /proc here");
        Path out = Path.of("/proc/headroute-test-" + ProcessHandle.current().pid(), "exp");
        Cli.run(args(TINY, "--out", out.toString())).assertBadInput("headroute experiment", "--out " + out
                + " cannot be created in /proc: ");
        assertFalse(Files.exists(out.getParent()));
    }

    @Test
    void anEmptyExistingFolderIsFilled() throws IOException {
        Path out = Files.createDirectories(dir.resolve("empty"));
        Cli.run("experiment", "--backend", "cpu", "--threads", "1", "--lens", "32", "--heads", "1", "--dim", "8", "--variants",
                "flash", "--warmup", "0", "--repeats", "1", "--out", out.toString()).assertOk();
        for (String f : ExperimentReport.FILES) {
            assertTrue(Files.size(out.resolve(f)) > 0, f);
        }
        String md = Files.readString(out.resolve("report.md"), StandardCharsets.UTF_8);
        assertTrue(md.contains("no patterned variant") || md.contains("![speed-up]"), md);
    }

    @Test
    void routedAndPrunedVariantsEndToEnd() throws IOException {
        Path plan = dir.resolve("plan.json");
        io.headroute.routing.PruningPlan.of(1, 4, java.util.Map.of(0, List.of(2, 3))).save(plan);
        Path out = dir.resolve("heads");
        Cli r = Cli.run("experiment", "--backend", "cpu", "--threads", "2", "--lens", "64,96", "--heads", "4", "--kv-heads", "2",
                "--dim", "16", "--variants", "flash,routed:1:1,routed:2:1:32,pruned:0.5,pruned:" + plan, "--warmup", "0",
                "--repeats", "1", "--out", out.toString()).assertOk();
        assertTrue(r.out().contains("10 runs (10 measured, 0 not run)"), r.out());
        assertCsvAgreesWithJson(out);
        JsonNode runs = new ObjectMapper().readTree(out.resolve("runs.json").toFile()).get("runs");
        for (JsonNode row : runs) {
            String v = row.get("variant").asText();
            assertEquals("ok", row.get("status").asText(), v);
            assertTrue(row.get("query_tiles").asLong() > 0, v);
            if (v.startsWith("routed:")) {
                assertTrue(row.get("router_ms").asDouble() > 0, v);
                assertTrue(row.get("router_overhead_percent").asDouble() > 0, v);
                assertTrue(row.get("load_balance").asDouble() > 0, v);
                assertTrue(row.get("rows_skipped").asLong() > 0, v);
                assertTrue(row.get("rel_error_vs_full").asDouble() <= 1e-5, v);
                assertTrue(row.get("heads_removed").isNull(), v);
                assertTrue(row.get("time_ratio_vs_full").isNumber(), v);
            } else if (v.startsWith("pruned:")) {
                assertEquals(0.5, row.get("heads_removed").asDouble(), 0, v);
                assertTrue(row.get("router_ms").isNull() && row.get("load_balance").isNull(), v);
                assertTrue(row.get("rel_error_vs_full").isNull(), v);
                assertTrue(row.get("time_ratio_vs_full").isNumber(), v);
            } else {
                for (String c : List.of("router_ms", "router_overhead_percent", "load_balance", "active_head_fraction",
                        "heads_removed", "time_ratio_vs_full")) {
                    assertTrue(row.get(c).isNull(), v + " " + c);
                }
            }
        }
        String md = Files.readString(out.resolve("report.md"), StandardCharsets.UTF_8);
        assertTrue(md.contains("## Routed and pruned runs"), md);
        assertTrue(md.contains("| variant | dtype | H | L | median ms | time vs full | router ms | router overhead % "), md);
        assertTrue(md.contains("| routed:2:1:32 | f32 | 4 | 96 |"), md);
        assertTrue(md.contains("| pruned:" + plan + " | f32 | 4 | 64 |"), md);

        Path never = dir.resolve("never");
        Cli.run("experiment", "--backend", "cpu", "--lens", "64", "--heads", "4", "--variants", "routed:4:1", "--out",
                never.toString()).assertBadInput("headroute experiment", "shared heads must be between 0 and H − 1 = 3", never);
        Cli.run("experiment", "--backend", "cpu", "--lens", "64", "--heads", "4", "--kv-heads", "2", "--variants",
                "pruned:0.25", "--out", never.toString()).assertBadInput("headroute experiment", "unequal size; choose a fraction "
                        + "that removes a multiple of 2 heads", never);
        Cli.run("experiment", "--backend", "cpu", "--lens", "64", "--heads", "6", "--kv-heads", "2", "--variants",
                "pruned:0.17", "--out", never.toString()).assertBadInput("headroute experiment", "unequal size; choose a fraction "
                        + "that removes a multiple of 2 or of 3 heads", never);
        // A repeated variant is named as written, not as the record it parses to ("[Flash[pattern=Dense[]], ...]").
        Cli.run("experiment", "--backend", "cpu", "--lens", "64", "--variants", "flash,sparse:window:8,flash", "--out",
                never.toString()).assertBadInput("headroute experiment", "--variants lists flash twice: flash,sparse:window:8,flash",
                        never);
        Cli.run("experiment", "--backend", "cpu", "--lens", "64", "--variants", "pruned:" + dir.resolve("none.json"), "--out",
                never.toString()).assertBadInput("headroute experiment", "no such file", never);
    }

    /** runs.csv and runs.json hold the same rows: same columns, same values, n/a where JSON has null. */
    private static void assertCsvAgreesWithJson(Path out) throws IOException {
        List<List<String>> csv = parseCsv(Files.readString(out.resolve("runs.csv")));
        assertEquals(Run.COLUMNS, csv.get(0));
        JsonNode runs = new ObjectMapper().readTree(out.resolve("runs.json").toFile()).get("runs");
        assertEquals(csv.size() - 1, runs.size());
        for (int i = 1; i < csv.size(); i++) {
            JsonNode row = runs.get(i - 1);
            assertEquals(Run.COLUMNS.size(), csv.get(i).size(), "row " + i);
            for (int c = 0; c < Run.COLUMNS.size(); c++) {
                String col = Run.COLUMNS.get(c);
                JsonNode v = row.get(col);
                assertNotNull(v, col);
                String cell = csv.get(i).get(c);
                if (v.isNull()) {
                    assertEquals("n/a", cell, col + " row " + i);
                } else if (v.isNumber() && !v.isIntegralNumber()) {
                    assertEquals(v.asDouble(), Double.parseDouble(cell), 0, col + " row " + i);
                } else {
                    assertEquals(v.asText(), cell, col + " row " + i);
                }
            }
        }
    }

    private static int distinctColours(BufferedImage img) {
        java.util.Set<Integer> c = new java.util.HashSet<>();
        for (int y = 0; y < img.getHeight(); y += 3) {
            for (int x = 0; x < img.getWidth(); x += 3) {
                c.add(img.getRGB(x, y));
            }
        }
        return c.size();
    }

    /** RFC 4180: fields separated by commas, quoted fields may hold commas and doubled quotes. */
    static List<List<String>> parseCsv(String text) {
        List<List<String>> rows = new ArrayList<>();
        List<String> row = new ArrayList<>();
        StringBuilder cell = new StringBuilder();
        boolean quoted = false;
        Iterator<Integer> it = text.chars().iterator();
        while (it.hasNext()) {
            char ch = (char) (int) it.next();
            if (quoted) {
                if (ch == '"') {
                    quoted = false;
                } else {
                    cell.append(ch);
                }
            } else if (ch == '"') {
                if (cell.length() > 0 && cell.charAt(cell.length() - 1) != '"') {
                    cell.append('"');
                }
                quoted = true;
            } else if (ch == ',') {
                row.add(cell.toString());
                cell.setLength(0);
            } else if (ch == '\n') {
                row.add(cell.toString());
                cell.setLength(0);
                rows.add(row);
                row = new ArrayList<>();
            } else {
                cell.append(ch);
            }
        }
        return rows;
    }
}
