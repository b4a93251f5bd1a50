package io.headroute.cli;

import io.headroute.attention.Backend;
import io.headroute.attention.Backends;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.experiment.Experiment;
import io.headroute.experiment.ExperimentReport;
import io.headroute.experiment.Preset;
import io.headroute.experiment.Progress;
import io.headroute.experiment.Run;
import io.headroute.experiment.SeedClaims;
import io.headroute.experiment.Sweep;
import io.headroute.experiment.Variant;
import io.headroute.tensor.DType;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code headroute experiment}: a sweep of variants and sizes, written up as tables and charts. */
@Command(name = "experiment", mixinStandardHelpOptions = true, versionProvider = Main.VersionProvider.class,
        header = "Sweep attention variants over sequence lengths: time, memory, fidelity; report, CSV, JSON, charts.",
        sortOptions = false,
        description = {"Runs every variant at every sequence length (L = S), dtype and head count on seeded Gaussian "
                + "inputs: median time, effective TFLOP/s, peak VRAM (measured on a GPU, predicted from the memory plans "
                + "on the CPU), VRAM saved against materialized attention, and fidelity against full attention (output "
                + "relative error, attention-mass recall). Configurations that do not fit or are unsupported are reported, "
                + "not run. Writes report.md, runs.csv, runs.json and PNG charts into --out (new or empty).",
            "Options given explicitly override the preset's; the default preset is cpu on the CPU and gpu-32k on a GPU."},
        footer = {"", "Examples:", "  headroute experiment --out out/exp",
            "  headroute experiment --backend cpu --lens 1024..8192 --variants flash,sparse:window:256 --out out/win",
            "  headroute experiment --preset seed-claims --out out/claims"})
final class ExperimentCommand implements Callable<Integer> {
    private static final Logger LOG = LogManager.getLogger(ExperimentCommand.class);
    /** Default limit on the cost of the CPU's full-attention reference (about 10 s on 2 cores). */
    static final double CPU_REFERENCE_GFLOP = 200;

    @Mixin
    VerboseMixin verboseMixin;

    @Spec
    CommandSpec spec;

    @Option(names = "--out", paramLabel = "DIR", required = true, description = "Output folder: created, or empty.")
    Path out;

    @Option(names = "--preset", paramLabel = "NAME", description = "cpu, gpu-32k or seed-claims (default: cpu on the CPU, "
            + "gpu-32k on a GPU).")
    String preset;

    @Option(names = "--backend", paramLabel = "auto|cpu|cuda", defaultValue = "auto", converter = Converters.BackendConverter.class,
            description = "Where to run (default: ${DEFAULT-VALUE}; auto runs everything on the GPU when there is one, "
                    + "and reports what it cannot run as unsupported).")
    Backend backend;

    @Option(names = "--lens", paramLabel = "LIST", description = "Sequence lengths L = S: 1024,2048,... or 1024..32768 (doubling).")
    String lens;

    @Option(names = "--variants", paramLabel = "LIST", description = "Comma-separated: " + Variant.GRAMMAR + ".")
    String variants;

    @Option(names = "--dtypes", paramLabel = "DTYPE", split = ",", converter = Converters.ComputeDTypeConverter.class,
            description = "Compute dtypes, comma-separated: f32, f16, bf16.")
    List<DType> dtypes;

    @Option(names = "--heads", paramLabel = "H", split = ",", description = "Query head counts, comma-separated.")
    List<Integer> heads;

    @Option(names = "--kv-heads", paramLabel = "HKV", description = "Key/value heads (default: H).")
    Integer kvHeads;

    @Option(names = "--dim", paramLabel = "D", description = "Head dimension.")
    Integer dim;

    @Option(names = "--batch", paramLabel = "B", description = "Batch.")
    Integer batch;

    @Option(names = "--causal", description = "Causal attention for every variant (halves the FLOP count).")
    Boolean causal;

    @Option(names = "--warmup", paramLabel = "N", description = "Untimed calls per run.")
    Integer warmup;

    @Option(names = "--repeats", paramLabel = "N", description = "Timed calls per run; the median is reported.")
    Integer repeats;

    @Option(names = "--seed", paramLabel = "N", description = "Seed of the random inputs.")
    Long seed;

    @Option(names = "--threads", paramLabel = "N", description = "CPU worker threads (default: all cores).")
    Integer threads;

    @Option(names = "--device-memory", paramLabel = "SIZE", description = "Report variants whose predicted GPU peak exceeds "
            + "SIZE (e.g. 80GiB, 512MiB) as not fitting, without running them: a smaller card, or a check on the CPU.")
    String deviceMemory;

    @Option(names = "--max-reference-gflop", paramLabel = "X", description = "Skip the full-attention reference (fidelity "
            + "n/a) when it costs more than X GFLOP (default: " + CPU_REFERENCE_GFLOP + " on the CPU, no limit on a GPU).")
    Double maxReferenceGflop;

    @Override
    public Integer call() {
        ExperimentReport.checkOutFolder(out);
        int nThreads = threads == null ? CpuAttentionEngine.defaultThreads() : threads;
        if (nThreads <= 0) {
            throw new ParameterException(spec.commandLine(), "--threads must be positive, got " + nThreads);
        }
        long deviceBytes = deviceMemory == null ? 0 : parseSize(deviceMemory);
        if (maxReferenceGflop != null && !(maxReferenceGflop >= 0)) {
            throw new ParameterException(spec.commandLine(), "--max-reference-gflop must be ≥ 0, got " + maxReferenceGflop);
        }
        Preset chosen = preset == null ? null : Preset.parse(preset);
        List<Integer> lensList = lens == null ? null : Sweep.parseLens(lens);
        List<Variant> variantList = variants == null ? null : parseVariants(variants);
        if (kvHeads != null && kvHeads <= 0) {
            throw new ParameterException(spec.commandLine(), "--kv-heads must be positive, got " + kvHeads);
        }

        PrintWriter err = spec.commandLine().getErr();
        Progress progress = System.console() != null ? Progress.bar(err) : Progress.log();
        List<Run> rows;
        Experiment.Limits limits;
        String device;
        String engineName;
        boolean gpu;
        Preset base;
        Sweep sweep;
        long started = System.nanoTime();
        try (AttentionEngine engine = openEngine(nThreads)) {
            // The engine decides the default preset: gpu-32k on a GPU, cpu otherwise.
            gpu = !"cpu".equals(engine.name());
            base = chosen != null ? chosen : gpu ? Preset.GPU_32K : Preset.CPU;
            Sweep p = base.sweep(gpu);
            sweep = new Sweep(lensList != null ? lensList : p.lens(), variantList != null ? variantList : p.variants(),
                    dtypes != null ? dtypes : p.dtypes(), heads != null ? heads : p.heads(),
                    kvHeads != null ? kvHeads : p.kvHeads(), dim != null ? dim : p.dim(), batch != null ? batch : p.batch(),
                    causal != null ? causal : p.causal(), warmup != null ? warmup : p.warmup(),
                    repeats != null ? repeats : p.repeats(), seed != null ? seed : p.seed());
            for (Variant v : sweep.variants()) {
                for (int h : sweep.heads()) {
                    for (int l : sweep.lens()) {
                        (sweep.causal() ? v.pattern().withCausal() : v.pattern()).check(h, l, l);
                    }
                }
            }
            double refLimit = maxReferenceGflop != null ? maxReferenceGflop * 1e9
                    : gpu ? Double.MAX_VALUE : CPU_REFERENCE_GFLOP * 1e9;
            LOG.info("experiment: {} runs on {} (preset {})", sweep.runCount(), engine.device(), base.cliName());
            limits = new Experiment.Limits(deviceBytes, refLimit, Experiment.FIRST_LENGTH_WARMUP_NANOS);
            rows = Experiment.run(engine, sweep, limits, progress);
            device = engine.device();
            engineName = engine.name();
        }
        double seconds = (System.nanoTime() - started) / 1e9;
        boolean claims = base == Preset.SEED_CLAIMS;
        ExperimentReport.Context ctx = new ExperimentReport.Context(commandLine(), Instant.now().truncatedTo(ChronoUnit.SECONDS)
                .toString(), device, engineName, GitCommit.describe(), chosen == null ? base.cliName() + " (default)"
                        : base.cliName(), gpu, sweep, claims ? SeedClaims.evaluate(rows, gpu) : List.of(), limits);
        ExperimentReport.write(out, rows, ctx);
        long ok = rows.stream().filter(Run::ok).count();
        PrintWriter o = spec.commandLine().getOut();
        o.println(Units.fmt("headroute experiment: %d runs (%d measured, %d not run) on %s in %.1f s", rows.size(), ok,
                rows.size() - ok, device, seconds));
        o.println("report: " + out.resolve(ExperimentReport.REPORT));
        long failed = rows.stream().filter(r -> r.status().startsWith(Experiment.FAILED)).count();
        if (failed > 0) {
            err.println("headroute experiment: error: " + failed + " run(s) failed; their rows in the report say why "
                    + "(--verbose logs the stack traces)");
            return Main.INTERNAL_ERROR;
        }
        return Main.OK;
    }

    private AttentionEngine openEngine(int threads) {
        // Not Backends' auto engine: its per-call CPU fallback would run a 32K sparse variant on the CPU for
        // minutes and mix two devices in one table; here what the GPU cannot run is reported as unsupported.
        return Backends.openWhole(backend, threads);
    }

    private String commandLine() {
        // The root's original arguments: the subcommand's name is among them.
        List<String> words = new ArrayList<>(List.of("headroute"));
        for (String a : spec.commandLine().getParseResult().originalArgs()) {
            words.add(a.isEmpty() || a.matches(".*[\\s'\"$`\\\\|;&<>()*?].*") ? "'" + a.replace("'", "'\\''") + "'" : a);
        }
        return String.join(" ", words);
    }

    static List<Variant> parseVariants(String text) {
        List<Variant> out = new ArrayList<>();
        for (String part : text.split(",", -1)) {
            if (part.isBlank()) {
                throw new IllegalArgumentException("--variants '" + text + "': empty entry (expected " + Variant.GRAMMAR + ")");
            }
            out.add(Variant.parse(part));
        }
        return out;
    }

    /** "80GiB", "512MiB", "4096" (bytes); binary units KiB, MiB, GiB, TiB, or K, M, G, T. */
    static long parseSize(String text) {
        String s = text.strip();
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("(?i)(\\d+(?:\\.\\d+)?)\\s*([kmgt]?)(i?b?)").matcher(s);
        if (!m.matches() || (!m.group(3).isEmpty() && m.group(2).isEmpty())) {
            throw new IllegalArgumentException("--device-memory '" + text + "': expected a size such as 80GiB, 512MiB or 4096");
        }
        int shift = switch (m.group(2).toLowerCase(java.util.Locale.ROOT)) {
            case "k" -> 10;
            case "m" -> 20;
            case "g" -> 30;
            case "t" -> 40;
            default -> 0;
        };
        double bytes = Double.parseDouble(m.group(1)) * (1L << shift);
        if (!(bytes >= 1) || bytes > Long.MAX_VALUE / 2) {
            throw new IllegalArgumentException("--device-memory '" + text + "': must be at least 1 byte and finite");
        }
        return (long) bytes;
    }
}
