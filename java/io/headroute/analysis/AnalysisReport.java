package io.headroute.analysis;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.headroute.model.ModelConfig;
import io.headroute.routing.PruningPlan;
import io.headroute.tensor.AtomicFiles;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.imageio.ImageIO;

/**
 * The output folder of {@code headroute analyze}: analysis.json (every number), analysis.md (the same
 * numbers as tables), plan.json (the pruning plan), importance.png (layers × heads) and one
 * attention-l{L}-h{H}.png per plotted head. All files are rendered in memory first, then written
 * together: a new folder appears complete or not at all.
 */
public final class AnalysisReport {
    /** File name of every number, as JSON. */
    public static final String JSON = "analysis.json";
    /** File name of the numbers as Markdown tables, with the pictures. */
    public static final String MARKDOWN = "analysis.md";
    /** File name of the pruning plan ({@link PruningPlan#toJson()}). */
    public static final String PLAN = "plan.json";
    /** File name of the layers × heads importance heatmap. */
    public static final String IMPORTANCE_PNG = "importance.png";
    /** Pixels per cell of the importance grid. */
    static final int GRID_CELL = 24;
    /** Attention-map images are about this many pixels wide. */
    static final int MAP_PIXELS = 256;

    private AnalysisReport() {}

    /**
     * Where the analysis came from.
     *
     * @param commandLine the command as typed, for the report's header
     * @param date        when it ran, as the report shows it
     * @param device      the engine's device, e.g. "CPU, 2 threads"
     * @param commit      the build's git commit
     * @param weights     where the weights came from ("random, seed 42" or a file)
     * @param input       where X came from
     * @param options     what was measured (probe rows, map size, pruning budget, timing)
     * @param plotHeads   the heads drawn, as {layer, head}
     */
    public record Context(String commandLine, String date, String device, String commit, String weights, String input,
            ModelAnalysis.Options options, List<int[]> plotHeads) {}

    /**
     * {@return the file name of a head's attention-map picture: "attention-l{layer}-h{head}.png"}
     *
     * @param layer the layer
     * @param head  the head
     */
    public static String mapFile(int layer, int head) {
        return "attention-l" + layer + "-h" + head + ".png";
    }

    /**
     * Every file, by name, in writing order.
     *
     * @param r   the analysis
     * @param ctx where it came from, and which heads to draw
     * @return file name → content: the JSON, the Markdown, the plan, the importance PNG and one PNG per plotted head
     */
    public static Map<String, byte[]> render(ModelAnalysis.Report r, Context ctx) {
        Map<String, byte[]> files = new LinkedHashMap<>();
        files.put(JSON, json(r, ctx).getBytes(StandardCharsets.UTF_8));
        files.put(MARKDOWN, markdown(r, ctx).getBytes(StandardCharsets.UTF_8));
        files.put(PLAN, r.pruning().plan().toJson().getBytes(StandardCharsets.UTF_8));
        files.put(IMPORTANCE_PNG, png(r.importance(), GRID_CELL));
        for (int[] lh : ctx.plotHeads()) {
            double[][] map = r.layers().get(lh[0]).probe().maps()[lh[1]];
            files.put(mapFile(lh[0], lh[1]), png(map, Math.max(1, MAP_PIXELS / map.length)));
        }
        return files;
    }

    private static byte[] png(double[][] values, int cell) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try {
            if (!ImageIO.write(Heatmaps.render(values, cell), "png", out)) {
                throw new IllegalStateException("no PNG writer in this Java runtime");
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    /**
     * The numbers as indented JSON.
     *
     * @param r   the analysis
     * @param ctx where it came from
     * @return the JSON document ({@code "format": "headroute-analysis", "version": 1}), ending in a newline
     */
    public static String json(ModelAnalysis.Report r, Context ctx) {
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode root = mapper.createObjectNode();
        root.put("format", "headroute-analysis").put("version", 1);
        root.put("command", ctx.commandLine()).put("date", ctx.date()).put("device", ctx.device()).put("commit", ctx.commit());
        try {
            root.set("model", mapper.readTree(r.config().toJson()));
        } catch (IOException e) {
            throw new IllegalStateException("model config JSON: " + e.getMessage(), e);
        }
        root.put("weights", ctx.weights());
        ObjectNode in = root.putObject("input");
        ArrayNode shape = in.putArray("shape");
        Arrays.stream(r.inputShape()).forEach(shape::add);
        in.put("source", ctx.input());
        ObjectNode th = root.putObject("thresholds");
        th.put("label_mass", HeadProbe.LABEL_THRESHOLD).put("local_mass", HeadProbe.LOCAL_MASS)
                .put("redundant_output_cosine", ModelAnalysis.REDUNDANT_OUTPUT_COSINE)
                .put("redundant_map_cosine", ModelAnalysis.REDUNDANT_MAP_COSINE);
        ObjectNode probe = root.putObject("probe");
        probe.put("rows", r.layers().get(0).probe().probedRows()).put("map_size", r.layers().get(0).probe().maps()[0].length);
        PruningPlan plan = r.pruning().plan();
        ArrayNode layers = root.putArray("layers");
        for (ModelAnalysis.Layer l : r.layers()) {
            ObjectNode n = layers.addObject();
            n.put("layer", l.layer()).put("pattern", l.spec().pattern().spec()).put("causal", l.spec().causal());
            ArrayNode heads = n.putArray("heads");
            boolean[] mask = plan.headMask(l.layer());
            for (HeadProbe.HeadStats s : l.probe().heads()) {
                ObjectNode h = heads.addObject();
                h.put("head", s.head()).put("importance", l.importance()[s.head()]).put("previous_token", s.prevToken())
                        .put("first_token", s.firstToken()).put("diagonal", s.diagonal()).put("entropy", s.entropy())
                        .put("local_width", s.localWidth()).put("probed_rows", s.rows()).put("labels", s.labels())
                        .put("pruned", !mask[s.head()]);
            }
            matrix(n.putArray("output_similarity"), l.outputSimilarity());
            matrix(n.putArray("map_similarity"), l.mapSimilarity());
            ArrayNode red = n.putArray("redundant_pairs");
            for (ModelAnalysis.RedundantPair p : l.redundant()) {
                red.addObject().put("a", p.a()).put("b", p.b()).put("output_cosine", p.outputCosine())
                        .put("map_cosine", p.mapCosine());
            }
        }
        ModelAnalysis.Pruning p = r.pruning();
        ObjectNode pr = root.putObject("pruning");
        pr.put("fraction_requested", ctx.options().prune()).put("removed_fraction", plan.removedFraction())
                .put("removed_heads", removedCount(plan)).put("total_heads", plan.layers() * plan.heads());
        try {
            pr.set("plan", mapper.readTree(plan.toJson()));
        } catch (IOException e) {
            throw new IllegalStateException("plan JSON: " + e.getMessage(), e);
        }
        pr.put("relative_error", p.relativeError()).put("warmup", ctx.options().warmup()).put("repeats", ctx.options().repeats());
        ArrayNode um = pr.putArray("unpruned_ms");
        Arrays.stream(p.unprunedMs()).forEach(um::add);
        ArrayNode pm = pr.putArray("pruned_ms");
        Arrays.stream(p.prunedMs()).forEach(pm::add);
        pr.put("unpruned_median_ms", p.unprunedMedianMs()).put("pruned_median_ms", p.prunedMedianMs())
                .put("time_ratio", p.timeRatio()).put("latency_reduction", p.latencyReduction())
                .put("nominal_flop_ratio", p.flopRatio());
        ObjectNode plots = root.putObject("plots");
        plots.put("importance", IMPORTANCE_PNG);
        ArrayNode maps = plots.putArray("attention");
        for (int[] lh : ctx.plotHeads()) {
            maps.addObject().put("layer", lh[0]).put("head", lh[1]).put("file", mapFile(lh[0], lh[1]));
        }
        try {
            return mapper.writeValueAsString(root) + "\n";
        } catch (IOException e) {
            throw new IllegalStateException("analysis JSON: " + e.getMessage(), e);
        }
    }

    private static void matrix(ArrayNode a, double[][] m) {
        for (double[] row : m) {
            ArrayNode r = a.addArray();
            Arrays.stream(row).forEach(r::add);
        }
    }

    private static int removedCount(PruningPlan plan) {
        int n = 0;
        for (int l = 0; l < plan.layers(); l++) {
            n += plan.removedHeads(l).length;
        }
        return n;
    }

    /**
     * The heads table's number formats (the tests read the Markdown back against the JSON with them).
     *
     * @param v an importance or relative error
     * @return {@code v} with 6 decimals in scientific notation ("1.234568e-02")
     */
    public static String importance(double v) {
        return f("%.6e", v);
    }

    /**
     * {@return {@code v} with 4 decimals ("0.1235")}: the format of masses, entropies and cosines in the tables
     *
     * @param v the value
     */
    public static String mass(double v) {
        return f("%.4f", v);
    }

    /**
     * The same numbers as Markdown tables, with the pictures.
     *
     * @param r   the analysis
     * @param ctx where it came from, and which heads were drawn
     * @return the Markdown document
     */
    public static String markdown(ModelAnalysis.Report r, Context ctx) {
        ModelConfig c = r.config();
        PruningPlan plan = r.pruning().plan();
        StringBuilder md = new StringBuilder("# Head analysis\n\n");
        md.append("- command: `").append(ctx.commandLine()).append("`\n");
        md.append("- date ").append(ctx.date()).append(", device ").append(ctx.device()).append(", commit ").append(ctx.commit())
                .append('\n');
        md.append(f("- model: %d layers, d_model = %d, H = %d, Hkv = %d, D = %d, %s; weights: %s%n", c.layerCount(), c.dModel(),
                c.heads(), c.kvHeads(), c.headDim(), c.dtype().cliName(), ctx.weights()));
        md.append("- input X ").append(shape(r.inputShape())).append(": ").append(ctx.input()).append('\n');
        md.append(f("- detectors on %d probed query rows per (batch, head), attention maps %d × %d%n",
                r.layers().get(0).probe().probedRows(), r.layers().get(0).probe().maps()[0].length,
                r.layers().get(0).probe().maps()[0].length));
        md.append("\nImportance: relative change ‖y − y₋ₕ‖ / ‖y‖ of the layer's output y when the head alone is removed. "
                + "Masses: mean attention on the previous token, the first token and the query's own position; a head is "
                + "labelled when a mass is at least ").append(HeadProbe.LABEL_THRESHOLD).append(". Local width: median "
                + "smallest window |p − j| ≤ w holding ").append(HeadProbe.LOCAL_MASS).append(" of a row's mass. Rows: probed rows that "
                + "counted (rows with no allowed key, and rows a routed head's gate does not send to it, are left out).\n");
        md.append("\n## Heads\n\n| layer | head | importance | previous-token | first-token | diagonal | entropy (nats) "
                + "| local width | rows | labels | pruned |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (ModelAnalysis.Layer l : r.layers()) {
            boolean[] mask = plan.headMask(l.layer());
            for (HeadProbe.HeadStats s : l.probe().heads()) {
                md.append("| ").append(l.layer()).append(" | ").append(s.head()).append(" | ")
                        .append(importance(l.importance()[s.head()])).append(" | ").append(mass(s.prevToken())).append(" | ")
                        .append(mass(s.firstToken())).append(" | ").append(mass(s.diagonal())).append(" | ")
                        .append(mass(s.entropy())).append(" | ").append(s.localWidth()).append(" | ").append(s.rows()).append(" | ")
                        .append(s.labels().isEmpty() ? "-" : s.labels()).append(" | ").append(mask[s.head()] ? "no" : "yes")
                        .append(" |\n");
            }
        }
        md.append(f("%n## Redundant pairs%n%nPairs of heads of one layer whose outputs before Wo have |cosine| ≥ %.2f and "
                + "whose downsampled attention maps have cosine ≥ %.2f (one of the two can go, its Wo block folded into the "
                + "other's when the outputs are proportional, with either sign).%n%n", ModelAnalysis.REDUNDANT_OUTPUT_COSINE,
                ModelAnalysis.REDUNDANT_MAP_COSINE));
        boolean any = false;
        for (ModelAnalysis.Layer l : r.layers()) {
            for (ModelAnalysis.RedundantPair p : l.redundant()) {
                if (!any) {
                    md.append("| layer | heads | output cosine | map cosine |\n|---|---|---|---|\n");
                    any = true;
                }
                md.append(f("| %d | %d, %d | %s | %s |%n", l.layer(), p.a(), p.b(), mass(p.outputCosine()), mass(p.mapCosine())));
            }
        }
        if (!any) {
            md.append("None.\n");
        }
        ModelAnalysis.Pruning p = r.pruning();
        md.append(f("%n## Pruning plan%n%nRequested %.4f of all heads; removed %d of %d (%.4f), the least important first, at "
                + "least one head kept per layer (saved as `%s`):%n%n", ctx.options().prune(), removedCount(plan),
                plan.layers() * plan.heads(), plan.removedFraction(), PLAN));
        for (int l = 0; l < plan.layers(); l++) {
            int[] rem = plan.removedHeads(l);
            md.append("- layer ").append(l).append(": ").append(rem.length == 0 ? "none" : Arrays.toString(rem)).append('\n');
        }
        md.append(f("%nMeasured on %s: output relative error of the whole model ‖Y − Y_pruned‖ / ‖Y‖ = %s; median forward "
                + "time %.3f ms unpruned, %.3f ms pruned (%d timed forwards of each, alternating, after %d warm-up each): "
                + "time ratio %.4f, latency reduction %.2f%%. The plan keeps %.2f%% of the nominal FLOPs (projection "
                + "GEMMs and attention).%n", ctx.device(), importance(p.relativeError()), p.unprunedMedianMs(),
                p.prunedMedianMs(), ctx.options().repeats(), ctx.options().warmup(), p.timeRatio(), 100 * p.latencyReduction(),
                100 * p.flopRatio()));
        md.append("\n## Pictures\n\nImportance, layers (rows) × heads (columns), dark = low, yellow = high:\n\n![importance](")
                .append(IMPORTANCE_PNG).append(")\n");
        for (int[] lh : ctx.plotHeads()) {
            md.append(f("%nLayer %d head %d: attention map (rows: queries, columns: keys, downsampled)%n%n![layer %d head %d](%s)%n",
                    lh[0], lh[1], lh[0], lh[1], mapFile(lh[0], lh[1])));
        }
        return md.toString();
    }

    private static String shape(long[] s) {
        StringBuilder sb = new StringBuilder("(");
        for (int i = 0; i < s.length; i++) {
            sb.append(i > 0 ? ", " : "").append(s[i]);
        }
        return sb.append(')').toString();
    }

    private static String f(String fmt, Object... args) {
        return String.format(Locale.ROOT, fmt, args);
    }

    /**
     * Writes {@code files} into {@code out}. A new folder is filled beside it under a temporary name and
     * renamed into place; an existing empty one gets each file atomically and loses them all again if
     * one fails.
     *
     * @param out   the output folder: new, or existing and empty
     * @param files file name → content, as {@link #render} returns them
     * @throws io.headroute.tensor.TensorFileException when the folder or a file cannot be written
     */
    public static void write(Path out, Map<String, byte[]> files) {
        AtomicFiles.writeFolder(out, files, "the analysis folder");
    }
}
