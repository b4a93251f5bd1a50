package io.headroute.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.headroute.attention.Backend;
import io.headroute.attention.Backends;
import io.headroute.bench.AttentionBenchmark;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.quality.AttentionQuality;
import io.headroute.quality.AttentionQuality.Report;
import io.headroute.tensor.AtomicFiles;
import io.headroute.tensor.DType;
import io.headroute.tensor.Safetensors;
import io.headroute.tensor.SafetensorsFile;
import io.headroute.tensor.Tensor;
import io.headroute.tensor.TensorFileException;
import io.headroute.tensor.TensorFiles;
import java.io.PrintWriter;
import java.nio.file.Path;
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

/** {@code headroute quality}: what a pattern gives up against full attention, per head and overall. */
@Command(name = "quality", mixinStandardHelpOptions = true, versionProvider = Main.VersionProvider.class,
        header = "Attention-mass recall and output error of a pattern against full attention.",
        sortOptions = false,
        description = {"Runs the pattern and its full reference (causal when the pattern is causal, else dense) on the "
                    + "same inputs and prints, per query head and overall, the attention-mass recall (the share of the "
                    + "reference softmax mass on the pattern's keys, exp(lse_pattern − lse_ref), averaged over rows) and "
                    + "the output's relative error ‖O_pattern − O_ref‖ / ‖O_ref‖.",
            "Inputs: --q, --k, --v files, or one --input .safetensors file holding q, k, v (a gate there is ignored: "
                    + "both runs are ungated); or, without files, seeded Gaussian inputs of the sizes given."},
        footer = {"", "Examples:",
            "  headroute quality --heads 4 --len 2048 --pattern window:128 --causal",
            "  headroute quality --q q.npy --k k.npy --v v.npy --pattern bigbird:64:1:1:2:7 --json quality.json"})
final class QualityCommand implements Callable<Integer> {
    private static final Logger LOG = LogManager.getLogger(QualityCommand.class);

    @Mixin
    VerboseMixin verboseMixin;

    @Spec
    CommandSpec spec;

    @Option(names = "--q", paramLabel = "FILE", description = "Queries (B, H, L, D).")
    Path q;

    @Option(names = "--k", paramLabel = "FILE", description = "Keys (B, Hkv, S, D).")
    Path k;

    @Option(names = "--v", paramLabel = "FILE", description = "Values (B, Hkv, S, D).")
    Path v;

    @Option(names = "--input", paramLabel = "FILE", description = "One .safetensors file with tensors q, k, v (instead of --q/--k/--v).")
    Path input;

    @Option(names = "--batch", paramLabel = "B", description = "Random inputs: batch (default: 1).")
    Integer batch;

    @Option(names = "--heads", paramLabel = "H", description = "Random inputs: query heads (default: 8).")
    Integer heads;

    @Option(names = "--kv-heads", paramLabel = "HKV", description = "Random inputs: key/value heads (default: H).")
    Integer kvHeads;

    @Option(names = "--len", paramLabel = "L", description = "Random inputs: queries (default: 1024).")
    Integer qLen;

    @Option(names = "--kv-len", paramLabel = "S", description = "Random inputs: keys (default: L).")
    Integer kvLen;

    @Option(names = "--dim", paramLabel = "D", description = "Random inputs: head dimension (default: 64).")
    Integer dim;

    @Option(names = "--seed", paramLabel = "N", description = "Random inputs: seed (default: 42; the same inputs as bench's).")
    Long seed;

    @Option(names = "--pattern", paramLabel = "SPEC", defaultValue = "dense",
            description = "Sparsity pattern: " + Patterns.GRAMMAR + " (default: ${DEFAULT-VALUE}).")
    String pattern;

    @Option(names = "--causal", description = "Add the causal rule j ≤ i + (S − L) to the pattern (the reference is then causal).")
    boolean causal;

    @Option(names = "--scale", paramLabel = "X", description = "Softmax scale (default: 1/sqrt(D)).")
    Float scale;

    @Option(names = "--dtype", paramLabel = "f32|f16|bf16", defaultValue = "f32", converter = Converters.ComputeDTypeConverter.class,
            description = "Compute dtype (default: ${DEFAULT-VALUE}).")
    DType dtype;

    @Option(names = "--backend", paramLabel = "auto|cpu|cuda", defaultValue = "auto", converter = Converters.BackendConverter.class,
            description = "Where to compute (default: ${DEFAULT-VALUE}).")
    Backend backend;

    @Option(names = "--algo", paramLabel = "auto|materialized|flash|sparse", defaultValue = "auto",
            converter = Converters.AlgorithmConverter.class,
            description = "Algorithm of the pattern's run; the reference runs flash (default: ${DEFAULT-VALUE}).")
    Algorithm algorithm;

    @Option(names = "--block-size", paramLabel = "64|128", defaultValue = "64",
            description = "Block size of the sparse algorithm's layout (default: ${DEFAULT-VALUE}).")
    int blockSize;

    @Option(names = "--threads", paramLabel = "N", description = "CPU worker threads (default: all cores).")
    Integer threads;

    @Option(names = "--json", paramLabel = "FILE", description = "Also write the per-head and overall numbers as JSON.")
    Path json;

    @Override
    public Integer call() {
        boolean files = q != null || k != null || v != null || input != null;
        List<String> sizes = new ArrayList<>();
        for (Object[] o : new Object[][] {{"--batch", batch}, {"--heads", heads}, {"--kv-heads", kvHeads}, {"--len", qLen},
            {"--kv-len", kvLen}, {"--dim", dim}, {"--seed", seed}}) {
            if (o[1] != null) {
                sizes.add((String) o[0]);
            }
        }
        if (files && !sizes.isEmpty()) {
            throw new ParameterException(spec.commandLine(), "give input files or random-input sizes, not both ("
                    + String.join(", ", sizes) + " with input files)");
        }
        if (input != null && (q != null || k != null || v != null)) {
            throw new ParameterException(spec.commandLine(),
                    "give the inputs either as --q/--k/--v files or as one --input .safetensors file, not both");
        }
        if (input == null && files && (q == null || k == null || v == null)) {
            throw new ParameterException(spec.commandLine(), "give all of --q, --k and --v (or --input FILE.safetensors)");
        }
        if (blockSize != 64 && blockSize != 128) {
            throw new ParameterException(spec.commandLine(), "--block-size must be 64 or 128, got " + blockSize);
        }
        int nThreads = threads == null ? CpuAttentionEngine.defaultThreads() : threads;
        if (nThreads <= 0) {
            throw new ParameterException(spec.commandLine(), "--threads must be positive, got " + nThreads);
        }
        if (json != null) {
            TensorOutputs.checkTarget(json);
        }
        Pattern p = Patterns.parse(pattern);
        TensorOutputs.checkDistinct(spec.commandLine(), TensorOutputs.files("--json", json), TensorOutputs.files("--q", q, "--k", k,
                "--v", v, "--input", input, "--pattern", TensorOutputs.patternFile(p)));
        if (causal) {
            p = p.withCausal();
        }
        Tensor[] qkv = files ? readFiles() : randomInputs(p);
        // Validates shapes, pattern fit and block size before any work.
        AttentionShape shape = AttentionRequest.builder(qkv[0], qkv[1], qkv[2]).pattern(p).scale(scale).dtype(dtype)
                .algorithm(algorithm).blockSize(blockSize).build().shape();

        Report report;
        String device;
        try (AttentionEngine engine = Backends.open(backend, nThreads)) {
            device = engine.name();
            report = AttentionQuality.measure(engine, qkv[0], qkv[1], qkv[2], p, scale, dtype, algorithm, blockSize);
        }
        if (json != null) {
            writeJson(json, p, shape, device, report); // first: a failed write prints no results
        }
        print(spec.commandLine().getOut(), p, shape, dtype, device, report);
        return Main.OK;
    }

    private Tensor[] readFiles() {
        if (input != null) {
            if (!TensorOutputs.isSafetensors(input)) {
                throw new TensorFileException(input, "--input needs a .safetensors file holding q, k and v");
            }
            SafetensorsFile f = Safetensors.read(input);
            if (f.tensors().containsKey("gate")) {
                LOG.warn("{}: ignoring the gate: quality compares ungated runs", input);
            }
            return new Tensor[] {f.tensor("q"), f.tensor("k"), f.tensor("v")};
        }
        return new Tensor[] {TensorFiles.read(q), TensorFiles.read(k), TensorFiles.read(v)};
    }

    private Tensor[] randomInputs(Pattern p) {
        int b = batch == null ? 1 : batch;
        int h = heads == null ? 8 : heads;
        int hkv = kvHeads == null ? h : kvHeads;
        int l = qLen == null ? 1024 : qLen;
        int s = kvLen == null ? l : kvLen;
        int d = dim == null ? 64 : dim;
        // The benchmark's config checks the sizes (positive, L ≤ S, H divisible by Hkv, array limits).
        var config = new AttentionBenchmark.Config(b, h, hkv, l, s, d, false, p, DType.F32, List.of(Algorithm.FLASH), 0, 1,
                seed == null ? 42 : seed);
        AttentionBenchmark.Inputs in = AttentionBenchmark.randomInputs(config);
        return new Tensor[] {in.q(), in.k(), in.v()};
    }

    static void print(PrintWriter o, Pattern p, AttentionShape sh, DType dtype, String device, Report r) {
        o.println(Units.fmt("quality of %s (%s) against %s on %s, %s, %s", p.spec(), r.algorithmUsed().cliName(),
                r.reference().spec(), device, sh, dtype.cliName()));
        o.println(Units.fmt("%-8s %12s %16s", "head", "mass recall", "relative error"));
        for (int h = 0; h < r.recallPerHead().length; h++) {
            o.println(Units.fmt("%-8d %12.6f %16.6e", h, r.recallPerHead()[h], r.relErrorPerHead()[h]));
        }
        o.println(Units.fmt("%-8s %12.6f %16.6e", "all", r.recall(), r.relError()));
    }

    private void writeJson(Path file, Pattern p, AttentionShape sh, String device, Report r) {
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode root = mapper.createObjectNode();
        root.put("headroute_version", Main.VERSION);
        root.put("pattern", p.spec());
        root.put("reference", r.reference().spec());
        root.put("engine", device);
        root.put("algorithm", algorithm.cliName());
        root.put("algorithm_used", r.algorithmUsed().cliName());
        root.put("block_size", blockSize);
        root.put("dtype", dtype.cliName());
        ObjectNode shape = root.putObject("shape");
        shape.put("batch", sh.batch());
        shape.put("heads", sh.heads());
        shape.put("kv_heads", sh.kvHeads());
        shape.put("q_len", sh.qLen());
        shape.put("kv_len", sh.kvLen());
        shape.put("head_dim", sh.headDim());
        ArrayNode perHead = root.putArray("heads");
        for (int h = 0; h < r.recallPerHead().length; h++) {
            perHead.addObject().put("head", h).put("recall", r.recallPerHead()[h]).put("relative_error", r.relErrorPerHead()[h]);
        }
        root.put("recall", r.recall());
        root.put("relative_error", r.relError());
        AtomicFiles.write(file, os -> {
            os.write(mapper.writeValueAsBytes(root));
            os.write('\n');
        });
    }
}
