package io.headroute.experiment;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.headroute.bench.AttentionBenchmark;
import io.headroute.cuda.memory.Bytes;
import io.headroute.tensor.AtomicFiles;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * The output folder of an experiment: report.md (context, table, notes, charts, seed claims), runs.csv
 * and runs.json (the same rows), and the PNG charts vram.png, time.png and speedup-density.png.
 */
public final class ExperimentReport {
    /** File name of the Markdown report: context, table, notes, charts and seed claims. */
    public static final String REPORT = "report.md";
    /** File name of the rows as CSV, columns {@link Run#COLUMNS}. */
    public static final String CSV = "runs.csv";
    /** File name of the rows as JSON, keys {@link Run#COLUMNS}. */
    public static final String JSON = "runs.json";
    /** File name of the peak-memory chart. */
    public static final String VRAM_CHART = "vram.png";
    /** File name of the time chart. */
    public static final String TIME_CHART = "time.png";
    /** File name of the speed-up against token-density chart. */
    public static final String SPEEDUP_CHART = "speedup-density.png";
    /** Every file an experiment writes. */
    public static final List<String> FILES = List.of(REPORT, CSV, JSON, VRAM_CHART, TIME_CHART, SPEEDUP_CHART);
    /** A speed-up above this many times 1 / work density gets a note: more than the work skipped explains. */
    static final double ABOVE_IDEAL = 1.25;

    private static final Logger LOG = LogManager.getLogger(ExperimentReport.class);
    private static final String NA = "n/a";

    /**
     * Where and how the rows were made.
     *
     * @param commandLine the exact command line
     * @param date        when it ran, as the report shows it
     * @param device      the engine's device, for reports
     * @param engine      the engine's name, "cpu" or "cuda"
     * @param commit      the build's git commit
     * @param preset      the preset's name, or null
     * @param gpu         whether the engine was a GPU's (measured VRAM) or the CPU's (predicted VRAM)
     * @param sweep       what was measured
     * @param claims      seed-claim rows, or an empty list
     * @param limits      the run's limits (its first length's warm-up time)
     */
    public record Context(String commandLine, String date, String device, String engine, String commit, String preset,
            boolean gpu, Sweep sweep, List<SeedClaims.Row> claims, Experiment.Limits limits) {}

    private ExperimentReport() {}

    /**
     * Refuses an output folder that exists and is not an empty directory, or that cannot be created.
     *
     * @param out the folder given as {@code --out}
     * @throws IllegalArgumentException with a one-line message naming {@code --out}
     */
    public static void checkOutFolder(Path out) {
        AtomicFiles.checkNewFolder(out, "--out");
    }

    /**
     * Writes every file into {@code out}. A new folder is filled beside it under a temporary name and
     * renamed into place; an existing empty one gets each file atomically and loses them all again if
     * one fails.
     *
     * @param out  the output folder: new, or existing and empty
     * @param rows the experiment's rows
     * @param ctx  where and how they were made
     * @throws io.headroute.tensor.TensorFileException when the folder or a file cannot be written
     */
    public static void write(Path out, List<Run> rows, Context ctx) {
        AtomicFiles.writeFolder(out, render(rows, ctx), "the experiment's folder");
    }

    /** The files' contents by name, in {@link #FILES} order. */
    static Map<String, byte[]> render(List<Run> rows, Context ctx) {
        Map<String, byte[]> files = new LinkedHashMap<>();
        Map<String, byte[]> charts = new LinkedHashMap<>();
        String chartFailure = null;
        try {
            charts.put(VRAM_CHART, Charts.vram(rows, ctx.gpu()).png());
            charts.put(TIME_CHART, Charts.time(rows).png());
            charts.put(SPEEDUP_CHART, Charts.speedup(rows).png());
        } catch (RuntimeException | Error e) {
            // Java2D needs fonts from the host (fontconfig); without them the tables are still worth having.
            if (e instanceof VirtualMachineError v) {
                throw v;
            }
            chartFailure = e.getClass().getSimpleName() + ": " + e.getMessage();
            charts.clear();
            LOG.warn("experiment: charts not drawn ({})", chartFailure);
        }
        files.put(REPORT, markdown(rows, ctx, chartFailure).getBytes(StandardCharsets.UTF_8));
        files.put(CSV, csv(rows).getBytes(StandardCharsets.UTF_8));
        files.put(JSON, json(rows, ctx));
        files.putAll(charts);
        return files;
    }

    static String csv(List<Run> rows) {
        StringBuilder sb = new StringBuilder(String.join(",", Run.COLUMNS)).append('\n');
        for (Run r : rows) {
            List<String> cells = new ArrayList<>();
            for (Object v : r.values()) {
                cells.add(csvCell(v));
            }
            sb.append(String.join(",", cells)).append('\n');
        }
        return sb.toString();
    }

    /** RFC 4180 quoting; null is "n/a"; numbers as Java prints them (what JSON holds, digit for digit). */
    private static String csvCell(Object v) {
        String s = v == null ? NA : v.toString();
        if (s.contains(",") || s.contains("\"") || s.contains("\n") || s.contains("\r")) {
            return '"' + s.replace("\"", "\"\"") + '"';
        }
        return s;
    }

    static byte[] json(List<Run> rows, Context ctx) {
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode root = mapper.createObjectNode();
        root.put("command_line", ctx.commandLine());
        root.put("date", ctx.date());
        root.put("device", ctx.device());
        root.put("engine", ctx.engine());
        root.put("commit", ctx.commit());
        root.put("preset", ctx.preset());
        root.put("vram", ctx.gpu() ? "measured" : "predicted");
        root.put("flop_formula", AttentionBenchmark.FLOP_FORMULA);
        ArrayNode runs = root.putArray("runs");
        for (Run r : rows) {
            ObjectNode n = runs.addObject();
            List<Object> values = r.values();
            for (int i = 0; i < values.size(); i++) {
                Object v = values.get(i);
                String k = Run.COLUMNS.get(i);
                if (v == null) {
                    n.putNull(k);
                } else if (v instanceof Integer x) {
                    n.put(k, x);
                } else if (v instanceof Long x) {
                    n.put(k, x);
                } else if (v instanceof Double x) {
                    n.put(k, x);
                } else if (v instanceof Boolean x) {
                    n.put(k, x);
                } else {
                    n.put(k, v.toString());
                }
            }
        }
        ArrayNode claims = root.putArray("claims");
        for (SeedClaims.Row c : ctx.claims()) {
            ObjectNode n = claims.addObject();
            n.put("claim", c.claim());
            n.put("configuration", c.configuration());
            n.put("found", c.found());
            n.put("verdict", c.verdict());
        }
        try {
            byte[] b = mapper.writeValueAsBytes(root);
            byte[] withNewline = new byte[b.length + 1];
            System.arraycopy(b, 0, withNewline, 0, b.length);
            withNewline[b.length] = '\n';
            return withNewline;
        } catch (IOException e) {
            throw new IllegalStateException("JSON of the experiment: " + e.getMessage(), e);
        }
    }

    /** The report's header of the runs table. */
    static final String TABLE_HEADER = "| variant | pattern | dtype | H | L | status | median ms | eff. TFLOP/s | density "
            + "| peak VRAM measured | peak VRAM predicted | VRAM saved vs materialized | speed-up vs full | rel. error "
            + "| mass recall |";

    /** The header of the routed and pruned runs' table. */
    static final String HEAD_TABLE_HEADER = "| variant | dtype | H | L | median ms | time vs full | router ms | router overhead % "
            + "| active heads (measured) | load balance | heads removed | query tiles | rows skipped |";

    static String markdown(List<Run> rows, Context ctx, String chartFailure) {
        Sweep s = ctx.sweep();
        StringBuilder md = new StringBuilder("# headroute experiment\n\n");
        md.append("- command: `").append(ctx.commandLine()).append("`\n");
        md.append("- date: ").append(ctx.date()).append('\n');
        md.append("- device: ").append(ctx.device()).append(" (engine ").append(ctx.engine()).append(")\n");
        md.append("- commit: ").append(ctx.commit()).append('\n');
        if (ctx.preset() != null) {
            md.append("- preset: ").append(ctx.preset()).append('\n');
        }
        md.append(String.format(Locale.ROOT, "- sweep: B=%d, H=%s, Hkv=%s, D=%d, L=S in %s, dtypes %s, %s; %d warm-up and "
                + "the median of %d timed calls per run; inputs: seeded Gaussian (seed %d), the same for every variant of a "
                + "shape%n", s.batch(), s.heads(), s.kvHeads() == 0 ? "H" : Integer.toString(s.kvHeads()), s.dim(), s.lens(),
                s.dtypes().stream().map(d -> d.cliName()).toList(), s.causal() ? "causal" : "not causal", s.warmup(),
                s.repeats(), s.seed()));
        if (s.warmup() > 0 && ctx.limits().firstWarmupNanos() > 0) {
            md.append(String.format(Locale.ROOT, "- warm-up: the runs of the first length of each dtype and head count go on "
                    + "warming up for %.1f s and then until the just-in-time compiler has been quiet for %.1f s and the last "
                    + "%d calls' times agree within %.0f%% (at most %.1f s and %d calls): the JVM compiles the engine's code "
                    + "paths there%n", ctx.limits().firstWarmupNanos() / 1e9, WarmUp.QUIET_NANOS / 1e9, WarmUp.SETTLED_CALLS,
                    100 * WarmUp.SETTLED_SPREAD, 2 * ctx.limits().firstWarmupNanos() / 1e9, Experiment.FIRST_LENGTH_MAX_WARMUP));
        }
        md.append("- time: compute only, inputs in place").append(ctx.gpu() ? " (CUDA events)" : "").append('\n');
        md.append("- ").append(AttentionBenchmark.FLOP_FORMULA).append(". Effective TFLOP/s = that nominal count / median "
                + "time, so a sparse pattern's effective rate rises with the work it skips, and so does a routed or pruned "
                + "row's (counted at the full shape's H heads).\n");
        md.append(ctx.gpu() ? "- peak VRAM: measured from the device pool's accounting (inputs, outputs, workspace of one "
                + "call); predicted from the memory plans alongside.\n"
                : "- peak VRAM: **measured n/a on the CPU**; the predicted column is what the GPU engine's memory plans say "
                        + "one call would hold (before the pool's 512-byte rounding).\n");
        md.append("- VRAM saved: 1 − peak / peak of materialized attention at the same shape (measured when both were "
                + "measured on the GPU, else predicted).\n");
        md.append("- fidelity: against full attention (dense, or causal for causal patterns; flash) on the same inputs: "
                + "output relative error ‖O − O_full‖ / ‖O_full‖ and attention-mass recall (share of the full softmax mass "
                + "the pattern keeps). Random inputs have no locality, so sparse patterns keep little mass here; trained "
                + "models differ. The reference is the flash call in the run's dtype, so the flash rows' error is 0 by "
                + "construction, and in f16/bf16 the reference carries the same rounding: the columns measure what a pattern "
                + "gives up, not precision.\n\n");

        md.append("## Runs\n\n").append(TABLE_HEADER).append('\n');
        md.append("|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        List<String> notes = new ArrayList<>();
        for (Run r : rows) {
            String status = r.ok() ? "ok" : r.status().startsWith("does not fit") ? "does not fit" : r.status().startsWith(
                    "unsupported") ? "unsupported" : r.status().startsWith(Experiment.FAILED) ? "failed" : "not run";
            if (!r.ok()) {
                notes.add(String.format(Locale.ROOT, "%s, %s, H=%d, L=%d: %s", r.variant().spec(), r.dtype().cliName(),
                        r.heads(), r.len(), r.status()));
                status += " [" + notes.size() + "]";
            } else if (r.fidelityNote() != null) {
                notes.add(String.format(Locale.ROOT, "%s, %s, H=%d, L=%d: fidelity %s", r.variant().spec(),
                        r.dtype().cliName(), r.heads(), r.len(), r.fidelityNote()));
                status += " [" + notes.size() + "]";
            }
            String speedup = Double.isNaN(r.speedup()) ? NA
                    : String.format(Locale.ROOT, "%.2fx vs %s", r.speedup(), r.speedupBaseline());
            double work = r.ok() ? Charts.workDensity(r) : Double.NaN;
            if (!Double.isNaN(r.speedup()) && work > 0 && r.speedup() > ABOVE_IDEAL / work) {
                notes.add(String.format(Locale.ROOT, "%s, %s, H=%d, L=%d: speed-up %.2fx is more than %.2f × 1 / work density "
                        + "(%.2fx): faster than its share of the work allows; suspect timing noise in this row or in its "
                        + "baseline (rerun with more --repeats), or a smaller working set's cache effects",
                        r.variant().spec(), r.dtype().cliName(), r.heads(), r.len(), r.speedup(), ABOVE_IDEAL, 1 / work));
                speedup += " [" + notes.size() + "]";
            }
            md.append(String.format(Locale.ROOT, "| %s | %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |%n",
                    cell(r.variant().spec()), cell(r.patternSpec()), r.dtype().cliName(), r.heads(), r.len(), status,
                    num(r.medianMs(), "%.3f"), num(r.tflops(), "%.4g"), num(r.tokenDensity(), "%.4f"),
                    r.measuredPeakBytes() < 0 ? NA : Bytes.format(r.measuredPeakBytes()),
                    Bytes.format(r.predictedPeakBytes()) + " (predicted)",
                    Double.isNaN(r.vramSaved()) ? NA : SeedClaims.pct(r.vramSaved()) + " (" + r.vramBasis() + ")",
                    speedup, num(r.relError(), "%.2e"), num(r.recall(), "%.4f")));
        }
        if (!notes.isEmpty()) {
            md.append("\nNotes:\n\n");
            for (int i = 0; i < notes.size(); i++) {
                md.append(i + 1).append(". ").append(cell(notes.get(i))).append('\n');
            }
        }
        List<Run> headRows = rows.stream().filter(r -> r.ok() && r.headVariant()).toList();
        if (!headRows.isEmpty()) {
            md.append("\n## Routed and pruned runs\n\n");
            md.append("Routed: the router's gate (seeded X (B, L, H·D) and Wr, as `bench --route`) drives the attention "
                    + "(dense flash, or the block-sparse kernel on the variant's pattern); the router is timed separately "
                    + "(overhead = router time / attention time). Its rel. error is against the gate times the ungated "
                    + "output of the same pattern: routing changes only which work is skipped. Pruned: the "
                    + "removed heads' q (and the key/value heads no kept head reads) are sliced out before the call; the "
                    + "kept heads equal dense attention's by construction. Time ratio = median / median of ")
                    .append(headRows.get(0).speedupBaseline() == null ? "full attention" : headRows.get(0).speedupBaseline())
                    .append("; the work counts are the engine's (`ExecutionStats`, last timed call).\n\n");
            md.append(HEAD_TABLE_HEADER).append('\n');
            md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for (Run r : headRows) {
                Run.Details d = r.details();
                md.append(String.format(Locale.ROOT, "| %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |%n",
                        cell(r.variant().spec()), r.dtype().cliName(), r.heads(), r.len(), num(r.medianMs(), "%.3f"),
                        num(r.timeRatio(), "%.3f"), num(d.routerMs(), "%.3f"), num(r.routerOverheadPercent(), "%.2f"),
                        num(d.activeHeadFraction(), "%.4f"), num(d.loadBalance(), "%.4f"), num(d.headsRemoved(), "%.4f"),
                        d.queryTiles() < 0 ? NA : Long.toString(d.queryTiles()),
                        d.rowsSkipped() < 0 ? NA : Long.toString(d.rowsSkipped())));
            }
        }
        md.append("\n## Charts\n\n");
        if (chartFailure != null) {
            md.append("Charts not drawn: ").append(chartFailure).append(" (Java2D needs fonts through fontconfig on this "
                    + "host).\n");
        } else {
            md.append("Peak VRAM vs sequence length (log–log, ").append(ctx.gpu() ? "measured" : "predicted from the memory "
                    + "plans").append(")\n\n![peak VRAM](").append(VRAM_CHART).append(")\n\n");
            md.append("Median time vs sequence length (log–log)\n\n![time](").append(TIME_CHART).append(")\n\n");
            md.append("Speed-up against full attention vs work density (patterned variants by token density, routed and "
                    + "pruned ones by the share of heads computed)\n\n![speed-up](")
                    .append(SPEEDUP_CHART).append(")\n");
        }
        if (!ctx.claims().isEmpty()) {
            md.append("\n## Seed claims\n\n| claim | configuration | found | agrees? |\n|---|---|---|---|\n");
            for (SeedClaims.Row c : ctx.claims()) {
                md.append("| ").append(cell(c.claim())).append(" | ").append(cell(c.configuration())).append(" | ")
                        .append(cell(c.found())).append(" | ").append(cell(c.verdict())).append(" |\n");
            }
        }
        return md.toString();
    }

    private static String num(double v, String fmt) {
        return Double.isNaN(v) ? NA : String.format(Locale.ROOT, fmt, v);
    }

    /** A table cell: pipes escaped, one line. */
    private static String cell(String s) {
        return s.replace("|", "\\|").replaceAll("\\s*\\R\\s*", " ");
    }
}
