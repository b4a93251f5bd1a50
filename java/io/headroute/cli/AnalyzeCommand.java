package io.headroute.cli;

import io.headroute.analysis.AnalysisReport;
import io.headroute.analysis.ModelAnalysis;
import io.headroute.attention.Backend;
import io.headroute.attention.Backends;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.experiment.ExperimentReport;
import io.headroute.model.LayerSpec;
import io.headroute.model.ModelConfig;
import io.headroute.model.ModelException;
import io.headroute.model.ModelWeights;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.AtomicFiles;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import io.headroute.tensor.TensorFiles;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code headroute analyze}: what each head of a model does, which heads are redundant, and what pruning costs. */
@Command(name = "analyze", mixinStandardHelpOptions = true, versionProvider = Main.VersionProvider.class,
        header = "Head analysis: importance, redundancy, pattern detectors, a measured pruning plan, heatmaps.",
        sortOptions = false,
        description = {"Runs the model layer by layer on X and, per layer and head: the importance by ablation (relative "
                + "change of the layer's output when the head alone is removed), the similarity of head outputs and of "
                + "attention maps (redundant pairs flagged), and the pattern detectors (previous-token, first-token, "
                + "diagonal, entropy, local width) on the layer's post-RoPE Q and K. Then a greedy pruning plan at --prune "
                + "with the pruned model's measured output error and speed.",
            "Weights from a .safetensors file (its stored config, or the config options given) or random from --seed; "
                + "X from a file (B, L, d_model) or seeded Gaussian of --batch × --len.",
            "Writes analysis.json, analysis.md, plan.json, importance.png and attention-map PNGs into --out (new or empty)."},
        footer = {"", "Examples:", "  headroute analyze --layers 2 --heads 8 --dim 32 --len 512 --causal --out out/analysis",
            "  headroute analyze --weights model.safetensors --x x.npy --prune 0.37 --plan-out plan.json --out out/a"})
final class AnalyzeCommand implements Callable<Integer> {
    /** Heads plotted when --plot-heads is not given. */
    static final int DEFAULT_PLOTS = 4;

    @Mixin
    VerboseMixin verboseMixin;

    @Spec
    CommandSpec spec;

    @Option(names = "--out", paramLabel = "DIR", required = true, description = "Output folder: created, or empty.")
    Path out;

    @Option(names = "--weights", paramLabel = "FILE", description = "Model weights (.safetensors). Without config options "
            + "the file's stored config is used; with them, the options are the config (defaults as for random weights).")
    Path weightsFile;

    @Option(names = "--seed", paramLabel = "N", description = "Random weights (without --weights) and random X (without --x) "
            + "from this seed (default: 42).")
    Long seed;

    @Option(names = "--layers", paramLabel = "N", description = "Config: layers (default: 2).")
    Integer layers;

    @Option(names = "--d-model", paramLabel = "N", description = "Config: d_model (default: H·D).")
    Integer dModel;

    @Option(names = "--heads", paramLabel = "H", description = "Config: query heads (default: 4).")
    Integer heads;

    @Option(names = "--kv-heads", paramLabel = "HKV", description = "Config: key/value heads (default: H).")
    Integer kvHeads;

    @Option(names = "--dim", paramLabel = "D", description = "Config: head dimension, even (default: 64).")
    Integer dim;

    @Option(names = "--pattern", paramLabel = "SPEC", description = "Config: every layer's pattern: " + Patterns.GRAMMAR
            + " (default: dense).")
    String pattern;

    @Option(names = "--causal", description = "Config: add the causal rule to every layer.")
    Boolean causal;

    @Option(names = "--dtype", paramLabel = "f32|f16|bf16", converter = Converters.ComputeDTypeConverter.class,
            description = "Config: dtype (default: f32).")
    DType dtype;

    @Option(names = "--x", paramLabel = "FILE", description = "Input X (B, L, d_model), .npy or .safetensors (one tensor).")
    Path xFile;

    @Option(names = "--batch", paramLabel = "B", description = "Random X: batch (default: 1).")
    Integer batch;

    @Option(names = "--len", paramLabel = "L", description = "Random X: tokens (default: 256).")
    Integer len;

    @Option(names = "--prune", paramLabel = "FRACTION", defaultValue = "0.37",
            description = "Share of all heads the pruning plan removes, in [0, 1) (default: ${DEFAULT-VALUE}).")
    double prune;

    @Option(names = "--plan-out", paramLabel = "FILE", description = "Also write the pruning plan (JSON) here.")
    Path planOut;

    @Option(names = "--warmup", paramLabel = "N", defaultValue = "1",
            description = "Untimed forwards of each model before timing (default: ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--repeats", paramLabel = "N", defaultValue = "5",
            description = "Timed forwards of each model, alternating; medians compared (default: ${DEFAULT-VALUE}).")
    int repeats;

    @Option(names = "--probe-rows", paramLabel = "N", defaultValue = "256",
            description = "Query rows per (batch, head) the detectors probe, evenly spaced (default: ${DEFAULT-VALUE}).")
    int probeRows;

    @Option(names = "--map-size", paramLabel = "N", defaultValue = "64",
            description = "Side of the downsampled attention maps (default: ${DEFAULT-VALUE}).")
    int mapSize;

    @Option(names = "--plot-heads", paramLabel = "L:H,...", description = "Heads whose attention maps are drawn (default: "
            + "the " + DEFAULT_PLOTS + " with the strongest previous-token, first-token or diagonal mass).")
    String plotHeads;

    @Option(names = "--backend", paramLabel = "auto|cpu|cuda", defaultValue = "cpu", converter = Converters.BackendConverter.class,
            description = "Where attention runs (default: ${DEFAULT-VALUE}); projections run on the CPU.")
    Backend backend;

    @Option(names = "--threads", paramLabel = "N", description = "CPU worker threads (default: all cores).")
    Integer threads;

    @Override
    public Integer call() {
        ExperimentReport.checkOutFolder(out);
        int nThreads = threads == null ? Runtime.getRuntime().availableProcessors() : threads;
        if (nThreads <= 0) {
            throw new ParameterException(spec.commandLine(), "--threads must be positive, got " + nThreads);
        }
        if (planOut != null) {
            if (planOut.toAbsolutePath().normalize().startsWith(out.toAbsolutePath().normalize())) {
                throw new ParameterException(spec.commandLine(), "--plan-out " + planOut + " lies inside --out; the folder "
                        + "gets plan.json anyway");
            }
            TensorOutputs.checkTarget(planOut);
            TensorOutputs.checkDistinct(spec.commandLine(), TensorOutputs.files("--plan-out", planOut),
                    TensorOutputs.files("--x", xFile, "--weights", weightsFile, "--pattern",
                            pattern == null ? null : TensorOutputs.patternFile(Patterns.parse(pattern))));
        }
        if (xFile != null && (batch != null || len != null)) {
            throw new ParameterException(spec.commandLine(), "give --x or random-input sizes (--batch, --len), not both");
        }
        ModelAnalysis.Options opt = new ModelAnalysis.Options(probeRows, mapSize, prune, warmup, repeats);
        long s = seed == null ? 42 : seed;

        ModelWeights weights;
        String weightsSource;
        if (weightsFile != null) {
            if (configGiven()) {
                try {
                    weights = ModelWeights.load(weightsFile, config());
                } catch (ModelException e) {
                    throw new ModelException(e.getMessage() + " (config options replace the file's stored config as a whole: "
                            + "give all of it, or none to use the stored one)");
                }
            } else {
                weights = ModelWeights.load(weightsFile);
            }
            weightsSource = weightsFile.toString();
        } else {
            weights = ModelWeights.random(config(), s);
            weightsSource = "random, seed " + s;
        }
        ModelConfig c = weights.config();
        if (planOut != null) {
            // The weights' stored config may name layout files of its own.
            List<Object> layouts = new ArrayList<>();
            for (int i = 0; i < c.layerCount(); i++) {
                Path f = TensorOutputs.patternFile(c.layer(i).pattern());
                if (f != null) {
                    layouts.add("the layout of layer " + i);
                    layouts.add(f);
                }
            }
            TensorOutputs.checkDistinct(spec.commandLine(), TensorOutputs.files("--plan-out", planOut),
                    TensorOutputs.files(layouts.toArray()));
        }
        Tensor x;
        String inputSource;
        if (xFile != null) {
            x = TensorFiles.read(xFile);
            if (!x.dtype().isFloating()) {
                throw new IllegalArgumentException("X in " + xFile + " holds " + x.dtype().cliName() + " values; activations must "
                        + "be f32, f16 or bf16");
            }
            x.requireFinite("X", c.dtype());
            inputSource = xFile.toString();
        } else {
            int b = batch == null ? 1 : batch;
            int l = len == null ? 256 : len;
            if (b <= 0 || l <= 0) {
                throw new ParameterException(spec.commandLine(), "--batch and --len must be positive, got " + b + " and " + l);
            }
            x = ModelAnalysis.randomInput(b, l, c.dModel(), s);
            inputSource = "standard Gaussian from java.util.Random(" + (s - 1) + ")";
        }
        if (x.rank() != 3 || x.dim(2) != c.dModel()) {
            throw new IllegalArgumentException("X must have shape (B, L, d_model = " + c.dModel() + "), got " + x.shapeString()
                    + (xFile == null ? "" : " in " + xFile));
        }
        for (int i = 0; i < c.layerCount(); i++) {
            LayerSpec ls = c.layer(i);
            (ls.causal() ? ls.pattern().withCausal() : ls.pattern()).check(c.heads(), (int) x.dim(1), (int) x.dim(1));
        }
        List<int[]> plots = plotHeads == null ? null : parsePlotHeads(plotHeads, c.layerCount(), c.heads());

        long started = System.nanoTime();
        ModelAnalysis.Report report;
        String device;
        try (AttentionEngine engine = Backends.open(backend, nThreads)) {
            device = engine.device();
            report = ModelAnalysis.analyze(weights, x, engine, opt);
        }
        double seconds = (System.nanoTime() - started) / 1e9;
        if (plots == null) {
            plots = ModelAnalysis.strongestHeads(report.layers(), DEFAULT_PLOTS);
        }
        AnalysisReport.Context ctx = new AnalysisReport.Context(commandLine(), Instant.now().truncatedTo(ChronoUnit.SECONDS)
                .toString(), device, GitCommit.describe(), weightsSource, inputSource, opt, plots);
        Map<String, byte[]> files = AnalysisReport.render(report, ctx);
        // The folder first: should the plan's write then fail, the folder goes again (half an answer is worse than
        // none), and a plan file that was there before is left as it was.
        boolean outExisted = Files.isDirectory(out);
        AnalysisReport.write(out, files);
        if (planOut != null) {
            byte[] plan = report.pruning().plan().toJson().getBytes(StandardCharsets.UTF_8);
            try {
                AtomicFiles.write(planOut, os -> os.write(plan));
            } catch (RuntimeException e) {
                AtomicFiles.removeWritten(out, files.keySet(), !outExisted);
                throw e;
            }
        }
        ModelAnalysis.Pruning p = report.pruning();
        PrintWriter o = spec.commandLine().getOut();
        o.println(Units.fmt("headroute analyze: %s × %s, X %s, on %s in %.1f s", plural(c.layerCount(), "layer"),
                plural(c.heads(), "head"), x.shapeString(), device, seconds));
        long redundant = report.layers().stream().mapToLong(l -> l.redundant().size()).sum();
        o.println(Units.fmt("redundant pairs: %d; pruning %d of %d heads: output relative error %.4e, median %.3f ms -> %.3f ms "
                + "(time ratio %.4f; nominal FLOP ratio %.4f)", redundant, Math.round(p.plan().removedFraction() * c.layerCount()
                * c.heads()), c.layerCount() * c.heads(), p.relativeError(), p.unprunedMedianMs(), p.prunedMedianMs(),
                p.timeRatio(), p.flopRatio()));
        long asked = Math.round(prune * c.layerCount() * c.heads());
        long removed = Math.round(p.plan().removedFraction() * c.layerCount() * c.heads());
        if (removed == 0) {
            o.println("note: nothing was pruned, so both timed models are the same model: the time ratio is timing noise");
        } else if (removed < asked) {
            o.println(Units.fmt("note: %d of %d heads asked for were pruned: every layer keeps at least one head", removed, asked));
        }
        o.println("report: " + out.resolve(AnalysisReport.MARKDOWN));
        return Main.OK;
    }

    private static String plural(int n, String word) {
        return n + " " + word + (n == 1 ? "" : "s");
    }

    private boolean configGiven() {
        return Stream.of(layers, dModel, heads, kvHeads, dim, pattern, causal, dtype).anyMatch(v -> v != null);
    }

    private ModelConfig config() {
        int h = heads == null ? 4 : heads;
        int d = dim == null ? 64 : dim;
        int n = layers == null ? 2 : layers;
        if (h <= 0 || d <= 0 || n <= 0 || (kvHeads != null && kvHeads <= 0) || (dModel != null && dModel <= 0)) {
            throw new ParameterException(spec.commandLine(), "--layers, --heads, --kv-heads, --dim and --d-model must be positive");
        }
        Pattern p = Patterns.parse(pattern == null ? "dense" : pattern);
        return ModelConfig.uniform(dModel == null ? h * d : dModel, h, kvHeads == null ? h : kvHeads, d,
                dtype == null ? DType.F32 : dtype, n, LayerSpec.of(p, Boolean.TRUE.equals(causal), Algorithm.AUTO));
    }

    /** "2:3,0:1" → {{0, 1}, {2, 3}}: each in range, no duplicates, sorted by layer then head. */
    static List<int[]> parsePlotHeads(String text, int layerCount, int headCount) {
        List<int[]> out = new ArrayList<>();
        for (String part : text.split(",", -1)) {
            String[] lh = part.strip().split(":", -1);
            int l;
            int h;
            try {
                if (lh.length != 2) {
                    throw new NumberFormatException();
                }
                l = Integer.parseInt(lh[0].strip());
                h = Integer.parseInt(lh[1].strip());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("--plot-heads '" + text + "': '" + part + "' is not LAYER:HEAD");
            }
            if (l < 0 || l >= layerCount || h < 0 || h >= headCount) {
                throw new IllegalArgumentException("--plot-heads '" + text + "': " + l + ":" + h + " is out of range (layers 0.."
                        + (layerCount - 1) + ", heads 0.." + (headCount - 1) + ")");
            }
            for (int[] e : out) {
                if (e[0] == l && e[1] == h) {
                    throw new IllegalArgumentException("--plot-heads '" + text + "': " + l + ":" + h + " is listed twice");
                }
            }
            out.add(new int[] {l, h});
        }
        out.sort(Comparator.comparingInt((int[] a) -> a[0]).thenComparingInt(a -> a[1]));
        return out;
    }

    private String commandLine() {
        List<String> words = new ArrayList<>(List.of("headroute"));
        for (String a : spec.commandLine().getParseResult().originalArgs()) {
            words.add(a.isEmpty() || a.matches(".*[\\s'\"$`\\\\|;&<>()*?].*") ? "'" + a.replace("'", "'\\''") + "'" : a);
        }
        return String.join(" ", words);
    }
}
