package io.headroute.cli;

import io.headroute.attention.Backend;
import io.headroute.attention.Backends;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.ExecutionStats;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.engine.cuda.FlashPlan;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.AtomicFiles;
import io.headroute.tensor.DType;
import io.headroute.tensor.Safetensors;
import io.headroute.tensor.SafetensorsFile;
import io.headroute.tensor.Tensor;
import io.headroute.tensor.TensorFileException;
import io.headroute.tensor.TensorFiles;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code headroute attend}: attention over tensors read from files, written to files. */
@Command(name = "attend", mixinStandardHelpOptions = true, versionProvider = Main.VersionProvider.class,
        header = "Attention from tensor files to tensor files.",
        sortOptions = false,
        description = {"Computes o = softmax(scale·q·kᵀ + mask)·v, times the gate, from tensor files.",
            "Inputs: --q, --k, --v [--gate] files (.npy, or .safetensors holding one tensor each), or one --input "
                    + ".safetensors file holding tensors named q, k, v and optionally gate.",
            "Shapes: q (B, H, L, D); k and v (B, Hkv, S, D) with H divisible by Hkv and L ≤ S; gate (B, L, H).",
            "Outputs: o (B, H, L, D) and lse (B, H, L), written as float32."},
        footer = {"", "Example:",
            "  headroute attend --q q.npy --k k.npy --v v.npy \\",
            "      --pattern window:128 --causal --out o.npy --lse lse.npy"})
final class AttendCommand implements Callable<Integer> {
    private static final Logger LOG = LogManager.getLogger(AttendCommand.class);

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

    @Option(names = "--gate", paramLabel = "FILE", description = "Optional per-row gate (B, L, H); 0 skips the row.")
    Path gate;

    @Option(names = "--input", paramLabel = "FILE", description = "One .safetensors file with tensors q, k, v [, gate] (instead of --q/--k/--v).")
    Path input;

    @Option(names = "--pattern", paramLabel = "SPEC", defaultValue = "dense",
            description = "Sparsity pattern: " + Patterns.GRAMMAR + " (default: ${DEFAULT-VALUE}).")
    String pattern;

    @Option(names = "--causal", description = "Add the causal rule j ≤ i + (S − L) to the pattern.")
    boolean causal;

    @Option(names = "--positions", paramLabel = "QSTART,KSTART,N",
            description = "Where these queries and keys sit in a sequence of N keys: query i is the sequence's QSTART + i, key j its "
                    + "KSTART + j, and --pattern/--causal are the whole sequence's (a shard of ring attention or split-KV decoding; "
                    + "default: S - L,0,S).")
    String positions;

    @Option(names = "--scale", paramLabel = "X", description = "Softmax scale (default: 1/sqrt(D)).")
    Float scale;

    @Option(names = "--backend", paramLabel = "auto|cpu|cuda", defaultValue = "auto", converter = Converters.BackendConverter.class,
            description = "Where to compute (default: ${DEFAULT-VALUE}: the GPU when usable, else the CPU).")
    Backend backend;

    @Option(names = "--algo", paramLabel = "auto|materialized|flash|sparse", defaultValue = "auto",
            converter = Converters.AlgorithmConverter.class,
            description = "Algorithm (default: ${DEFAULT-VALUE}: on the CPU sparse when the pattern's block layout is sparse "
                    + "enough, else flash; on the GPU flash for dense/causal, sparse for every other pattern).")
    Algorithm algorithm;

    @Option(names = "--block-size", paramLabel = "64|128", defaultValue = "64",
            description = "Block size of the sparse algorithm's layout (default: ${DEFAULT-VALUE}).")
    int blockSize;

    @Option(names = "--fp32-scores", description = "Materialized: keep the L x S scores in fp32 for f16/bf16 inputs "
            + "(GPU; the CPU always does). Default: scores in the input dtype.")
    boolean fp32Scores;

    @Option(names = "--tiling", paramLabel = "w4|w2|w4x2|wg|wgp|wgx2|wgpx2", converter = Converters.TilingConverter.class,
            description = "Tensor-core tiling of the CUDA flash kernel (--backend cuda --algo flash, f16/bf16, dense or causal;"
                    + " w2: D = 64, 96 or 128; the others: D = 64 or 128) or sparse kernel (--algo sparse: w4, wg, wgp, wgx2 or wgpx2): w4 ="
                    + " 4 warps x 16 query rows (default), w2 = 2 warps x 32 rows, w4x2 = 4 warps x 32 rows (128-row blocks), wg = w4"
                    + " with Hopper's wgmma, wgp = wg with each tile's P.V overlapping the next softmax, wgx2 and wgpx2 = wg and wgp"
                    + " with two warpgroups on 128-row blocks (wg, wgp, wgx2, wgpx2: compute capability 9.0 only).")
    FlashPlan.Tiling tiling;

    @Option(names = "--dtype", paramLabel = "f32|f16|bf16", defaultValue = "f32", converter = Converters.ComputeDTypeConverter.class,
            description = "Compute dtype: inputs and output are rounded to it; arithmetic is fp32 (default: ${DEFAULT-VALUE}).")
    DType dtype;

    @Option(names = "--threads", paramLabel = "N", description = "CPU worker threads (default: all cores).")
    Integer threads;

    @Option(names = "--out", paramLabel = "FILE", required = true, description = "Output o: .npy or .safetensors (float32).")
    Path out;

    @Option(names = "--lse", paramLabel = "FILE", description = "Also write the log-sum-exp (B, H, L): .npy or .safetensors (float32).")
    Path lse;

    /** --positions QSTART,KSTART,N: three integers ≥ 0 (the request checks they fit the sequence). */
    private int[] parsePositions(String text) {
        String[] f = text.split(",", -1);
        int[] out = new int[3];
        boolean ok = f.length == 3;
        for (int i = 0; ok && i < 3; i++) {
            try {
                out[i] = Integer.parseInt(f[i].trim());
                ok = out[i] >= 0;
            } catch (NumberFormatException e) {
                ok = false;
            }
        }
        if (!ok) {
            throw new ParameterException(spec.commandLine(), "--positions needs QSTART,KSTART,N: three integers >= 0, got "
                    + Patterns.quote(text));
        }
        return out;
    }

    @Override
    public Integer call() {
        // Everything is checked before anything is computed or written.
        boolean separate = q != null || k != null || v != null || gate != null;
        if (input != null && separate) {
            throw new ParameterException(spec.commandLine(),
                    "give the inputs either as --q/--k/--v [--gate] files or as one --input .safetensors file, not both");
        }
        if (input == null) {
            List<String> missing = new ArrayList<>();
            if (q == null) {
                missing.add("--q");
            }
            if (k == null) {
                missing.add("--k");
            }
            if (v == null) {
                missing.add("--v");
            }
            if (!missing.isEmpty()) {
                throw new ParameterException(spec.commandLine(), "missing " + String.join(", ", missing)
                        + " (give --q, --k and --v files, or --input FILE.safetensors)");
            }
        }
        if (blockSize != 64 && blockSize != 128) {
            throw new ParameterException(spec.commandLine(), "--block-size must be 64 or 128, got " + blockSize);
        }
        int nThreads = threads == null ? CpuAttentionEngine.defaultThreads() : threads;
        if (nThreads <= 0) {
            throw new ParameterException(spec.commandLine(), "--threads must be positive, got " + nThreads);
        }
        TensorOutputs.checkTensorTarget(out);
        if (lse != null) {
            TensorOutputs.checkTensorTarget(lse);
        }
        int[] at = positions == null ? null : parsePositions(positions);
        Pattern p = Patterns.parse(pattern);
        TensorOutputs.checkDistinct(spec.commandLine(), TensorOutputs.files("--out", out, "--lse", lse),
                TensorOutputs.files("--q", q, "--k", k, "--v", v, "--gate", gate, "--input", input, "--pattern",
                        TensorOutputs.patternFile(p)));
        if (fp32Scores && algorithm != Algorithm.MATERIALIZED && algorithm != Algorithm.AUTO) {
            // auto may pick materialized, so it keeps the option; flash and sparse never store the scores.
            throw new ParameterException(spec.commandLine(), "--fp32-scores applies to --algo materialized only (flash and "
                    + "sparse never store the L x S scores), not --algo " + algorithm.cliName());
        }
        if (tiling != null && (backend != Backend.CUDA || (algorithm != Algorithm.FLASH && algorithm != Algorithm.SPARSE))) {
            throw new ParameterException(spec.commandLine(), "--tiling picks the CUDA flash or sparse kernel: needs --backend cuda and "
                    + "--algo flash or sparse");
        }

        Map<String, Tensor> in = input != null ? readInputFile(input) : readSeparateFiles();
        AttentionRequest.Builder rb = AttentionRequest.builder(in.get("q"), in.get("k"), in.get("v")).gate(in.get("gate"))
                .pattern(p).causal(causal).scale(scale).dtype(dtype).algorithm(algorithm).blockSize(blockSize).wantLse(lse != null)
                .fp32Scores(fp32Scores);
        if (at != null) {
            rb.positions(at[0], at[1], at[2]);
        }
        AttentionRequest req = rb.build();
        req.requireFiniteInputs();
        LOG.debug("attend: {}, pattern {}, scale {}, dtype {}, algorithm {}", req.shape(), req.pattern().spec(), req.scale(),
                dtype.cliName(), algorithm.cliName());

        if (tiling != null) {
            // A tiling the planned kernel does not have would silently run another one: refused instead (the kernel named
            // as planned by default, in W4).
            boolean sparse = algorithm == Algorithm.SPARSE;
            FlashPlan plan = sparse ? FlashPlan.sparse(req.shape(), dtype) : FlashPlan.of(req.shape(), dtype, req.pattern());
            if (!tiling.appliesTo(dtype, req.shape().headDim(), sparse)) {
                throw new ParameterException(spec.commandLine(), "--tiling " + tiling.cliName() + ": the " + plan.kernel()
                        + " kernel has no " + tiling.cliName() + " tiling (w2 takes f16/bf16 flash and D = 64, 96 or 128; w4x2 f16/bf16"
                        + " flash and D = 64 or 128; wg, wgp, wgx2 and wgpx2 f16/bf16 flash or sparse and D = 64 or 128)");
            }
        }
        AttentionResult result;
        try (AttentionEngine engine = Backends.open(backend, nThreads)) {
            if (tiling != null) {
                ((CudaAttentionEngine) engine).setMmaTiling(tiling);
            }
            result = engine.run(req);
        }
        Tensor o = result.o().toDType(DType.F32);
        refuseOverflow(o, req);
        Map<String, String> meta = metadata(req, result.stats());
        if (tiling != null) {
            meta.put("tiling", tiling.cliName());
        }
        // Both outputs or neither (half an answer is worse than none), and files already there stay as they were.
        try (AtomicFiles.Batch batch = AtomicFiles.batch()) {
            TensorOutputs.write(out, "o", o, meta);
            if (lse != null) {
                TensorOutputs.write(lse, "lse", result.lse(), meta);
            }
            batch.commit();
        }
        spec.commandLine().getOut().println(summary(req, result.stats()));
        return Main.OK;
    }

    /**
     * Finite inputs give a non-finite output where gate × v overflows the dtype (|o| ≤ |gate|·max|v|), or where an fp32
     * intermediate overflows although o would be finite: the weighted sum of v's rows, Σ p_j·v_j with weights p_j ≤ 1
     * (up to S·max|v|), is formed before it is divided by the weights' sum. Either way refused, and nothing written,
     * instead of files holding infinities; the message says which it is (or that it may be either).
     */
    private static void refuseOverflow(Tensor o, AttentionRequest req) {
        float[] x = o.toFloatArray();
        for (int i = 0; i < x.length; i++) {
            if (!Float.isFinite(x[i])) {
                double maxGate = 1;
                if (req.gate() != null) {
                    maxGate = 0;
                    for (float g : req.gate().toFloatArray()) {
                        maxGate = Math.max(maxGate, Math.abs(g));
                    }
                }
                double maxV = 0;
                for (float v : req.v().toDType(req.dtype()).toFloatArray()) {
                    maxV = Math.max(maxV, Math.abs(v));
                }
                throw new IllegalArgumentException(overflowMessage(req.dtype(), x[i], i, maxGate, maxV, req.shape().kvLen()));
            }
        }
    }

    /** The largest finite value of a floating dtype. */
    private static double maxFinite(DType dtype) {
        return switch (dtype) {
            case F16 -> 65504.0;
            case BF16 -> 3.3895313892515355e38; // (2 − 2^−7)·2^127
            default -> Float.MAX_VALUE;
        };
    }

    /** The one-line refusal of an output holding {@code value} at {@code index}; see {@link #refuseOverflow}. */
    static String overflowMessage(DType dtype, float value, int index, double maxGate, double maxV, int kvLen) {
        double bound = maxGate * maxV;
        double sumBound = kvLen * maxV * Math.max(1, maxGate);
        boolean outputMay = bound > maxFinite(dtype);
        boolean intermediateMay = sumBound > Float.MAX_VALUE;
        String at = String.format(Locale.ROOT, "o holds %s at flat index %d", value, index);
        String boundText = String.format(Locale.ROOT, "|o| <= max|gate| * max|v| = %.4g * %.4g", maxGate, maxV);
        String sumText = String.format(Locale.ROOT, "the weighted sum of v's rows, up to S * max|v| = %d * %.4g, before it is "
                + "divided by the weights' sum", kvLen, maxV);
        if (!outputMay) {
            return String.format(Locale.ROOT, "the computation overflowed fp32: an intermediate (%s) passed f32's largest value "
                    + "%.4g, though o itself is within %s (%s); %s; scale v down (divide it by a power of two, then multiply o "
                    + "by it); nothing was written", sumText, (double) Float.MAX_VALUE, dtype.cliName(), boundText, at);
        }
        if (!intermediateMay) {
            return String.format(Locale.ROOT, "the output overflows %s: %s (%s); nothing was written", dtype.cliName(), at,
                    boundText);
        }
        return String.format(Locale.ROOT, "%s: the output may overflow %s (%s), or the computation overflowed fp32 in an "
                + "intermediate (%s); scale v (or the gate) down; nothing was written", at, dtype.cliName(), boundText, sumText);
    }

    private static Map<String, Tensor> readInputFile(Path file) {
        if (!TensorOutputs.isSafetensors(file)) {
            throw new TensorFileException(file, "--input needs a .safetensors file holding q, k and v (use --q/--k/--v for .npy files)");
        }
        SafetensorsFile f = Safetensors.read(file);
        Map<String, Tensor> m = new LinkedHashMap<>();
        for (String name : List.of("q", "k", "v")) {
            m.put(name, f.tensor(name));
        }
        Tensor g = f.tensors().get("gate");
        if (g != null) {
            m.put("gate", g);
        }
        List<String> ignored = new ArrayList<>(f.names());
        ignored.removeAll(List.of("q", "k", "v", "gate"));
        if (!ignored.isEmpty()) {
            LOG.warn("{}: ignoring tensors other than q, k, v, gate: {}", file, ignored);
        }
        return m;
    }

    private Map<String, Tensor> readSeparateFiles() {
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("q", TensorFiles.read(q));
        m.put("k", TensorFiles.read(k));
        m.put("v", TensorFiles.read(v));
        if (gate != null) {
            m.put("gate", TensorFiles.read(gate));
        }
        return m;
    }

    private static Map<String, String> metadata(AttentionRequest req, ExecutionStats st) {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("producer", "headroute " + Main.VERSION);
        m.put("engine", st.engine());
        m.put("algorithm", st.algorithm().cliName());
        m.put("pattern", req.pattern().spec());
        m.put("scale", Float.toString(req.scale()));
        m.put("dtype", req.dtype().cliName());
        if (st.scoreDType() != null) {
            m.put("score_dtype", st.scoreDType().cliName());
        }
        return m;
    }

    private String summary(AttentionRequest req, ExecutionStats st) {
        AttentionShape sh = req.shape();
        // The GPU's materialized path runs no tiles (cuBLAS GEMMs over whole rows): it reports −1.
        String tiles = st.keyTilesVisited() < 0 ? "no key tiles (whole score rows)"
                : "key tiles skipped " + st.keyTilesSkipped() + " of " + (st.keyTilesVisited() + st.keyTilesSkipped());
        return Units.fmt("attend: %s %s%s, %s, pattern %s, %s, %s, workspace %s, %s, rows skipped %d -> %s%s",
                st.engine(), st.algorithm().cliName(), st.scoreDType() == null ? "" : " (scores " + st.scoreDType().cliName() + ")",
                sh, req.pattern().spec(), req.dtype().cliName(),
                Units.ms(st.elapsedNanos() / 1e6), Units.mib(st.workspaceBytes()), tiles,
                st.rowsSkipped(), out, lse == null ? "" : ", " + lse);
    }
}
