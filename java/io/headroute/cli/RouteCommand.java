package io.headroute.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.headroute.attention.Backend;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.routing.HeadRouter;
import io.headroute.routing.HeadRouters;
import io.headroute.routing.RouterConfig;
import io.headroute.routing.RouterOutput;
import io.headroute.routing.RouterStats;
import io.headroute.tensor.AtomicFiles;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import io.headroute.tensor.TensorFiles;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code headroute route}: the head router's gate from token representations and router weights. */
@Command(name = "route", mixinStandardHelpOptions = true, versionProvider = Main.VersionProvider.class,
        header = "Route tokens to heads: the gate (B, L, H) from X and Wr.",
        sortOptions = false,
        description = {"Mixture-of-heads routing: per token P = softmax(X·Wr) over the Hr routed heads; per token (or per "
                + "block of BQ tokens, P averaged over the block) the top K heads (ties to the lower index), renormalized "
                + "to sum 1 and multiplied by K; the other routed heads get 0. Heads 0..HS−1 are shared: always gate 1.",
            "Inputs: X (B, L, d_model) and Wr (d_model, Hr), .npy or .safetensors (one tensor each); H = HS + Hr.",
            "Writes the gate (B, L, H) float32 and prints per-head statistics."},
        footer = {"", "Example:", "  headroute route --x x.npy --wr wr.npy --shared 2 --k 4 --block 64 \\",
            "      --out gate.npy --stats stats.json"})
final class RouteCommand implements Callable<Integer> {
    @Mixin
    VerboseMixin verboseMixin;

    @Spec
    CommandSpec spec;

    @Option(names = "--x", paramLabel = "FILE", required = true, description = "Token representations X (B, L, d_model).")
    Path x;

    @Option(names = "--wr", paramLabel = "FILE", required = true, description = "Router weights Wr (d_model, Hr).")
    Path wr;

    @Option(names = "--shared", paramLabel = "HS", required = true, description = "Shared heads, always active (heads 0..HS−1).")
    int shared;

    @Option(names = "--k", paramLabel = "K", required = true, description = "Routed heads kept per token or block.")
    int k;

    @Option(names = "--block", paramLabel = "BQ", defaultValue = "1",
            description = "Tokens per routing decision: 1 routes each token; BQ > 1 routes blocks of BQ query positions (default: ${DEFAULT-VALUE}).")
    int block;

    @Option(names = "--dtype", paramLabel = "f32|f16|bf16", defaultValue = "f32", converter = Converters.ComputeDTypeConverter.class,
            description = "X and Wr are rounded to this dtype; the arithmetic is fp32 (default: ${DEFAULT-VALUE}).")
    DType dtype;

    @Option(names = "--backend", paramLabel = "auto|cpu|cuda", defaultValue = "auto", converter = Converters.BackendConverter.class,
            description = "Where to route (default: ${DEFAULT-VALUE}: the GPU when usable, else the CPU).")
    Backend backend;

    @Option(names = "--threads", paramLabel = "N", description = "CPU worker threads (default: all cores).")
    Integer threads;

    @Option(names = "--out", paramLabel = "FILE", required = true, description = "The gate (B, L, H): .npy or .safetensors (float32).")
    Path out;

    @Option(names = "--stats", paramLabel = "FILE", description = "Also write the statistics as JSON.")
    Path stats;

    @Override
    public Integer call() {
        int nThreads = threads == null ? CpuAttentionEngine.defaultThreads() : threads;
        if (nThreads <= 0) {
            throw new ParameterException(spec.commandLine(), "--threads must be positive, got " + nThreads);
        }
        TensorOutputs.checkTensorTarget(out);
        if (stats != null) {
            TensorOutputs.checkTarget(stats);
        }
        TensorOutputs.checkDistinct(spec.commandLine(), TensorOutputs.files("--out", out, "--stats", stats),
                TensorOutputs.files("--x", x, "--wr", wr));
        Tensor xt = TensorFiles.read(x);
        Tensor wt = TensorFiles.read(wr);
        if (wt.rank() != 2) {
            throw new IllegalArgumentException("Wr must have shape (d_model, Hr), got " + wt.shapeString() + " in " + wr);
        }
        RouterConfig config = new RouterConfig(shared, (int) Math.min(Integer.MAX_VALUE, wt.dim(1)), k, block);
        HeadRouter.checkInputs(xt, wt, config, dtype);

        RouterOutput result;
        try (HeadRouter router = HeadRouters.open(backend, nThreads, config)) {
            result = router.route(xt, wt, config, dtype);
        }
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("producer", "headroute " + Main.VERSION + " route");
        meta.put("router", config.toString());
        meta.put("engine", result.engine());
        meta.put("dtype", dtype.cliName());
        // Both outputs or neither (half an answer is worse than none), and files already there stay as they were.
        try (AtomicFiles.Batch batch = AtomicFiles.batch()) {
            TensorOutputs.write(out, "gate", result.gate(), meta);
            if (stats != null) {
                writeStats(stats, result, xt, dtype);
            }
            batch.commit();
        }
        PrintWriter o = spec.commandLine().getOut();
        o.println(Units.fmt("headroute route: %s on %s, X %s, %s, %s, %.3f ms", config, result.engine(), xt.shapeString(),
                dtype.cliName(), "gate " + result.gate().shapeString(), result.elapsedNanos() / 1e6));
        printStats(o, result.stats());
        return Main.OK;
    }

    /** The statistics table: one line per routed head, then load balance and active heads. */
    static void printStats(PrintWriter o, RouterStats s) {
        RouterConfig c = s.config();
        o.println(Units.fmt("%-6s %14s %10s %10s %10s", "head", "tokens routed", "f", "mean gate", "mean P"));
        for (int i = 0; i < c.routedHeads(); i++) {
            o.println(Units.fmt("%-6d %14.4f %10.4f %10.4f %10.4f", c.sharedHeads() + i, s.tokenShare()[i], s.f()[i],
                    s.meanGate()[i], s.meanProbability()[i]));
        }
        o.println(Units.fmt("load balance Hr·Σ f·P = %.4f (1 = balanced); active heads %.4f of %d (nominal (Hs + k)/H = %.4f); %d tokens",
                s.loadBalance(), s.activeHeadFraction(), c.heads(), c.activeFraction(), s.tokens()));
        String shared = switch (c.sharedHeads()) {
            case 0 -> "no shared heads";
            case 1 -> "head 0 shared, gate 1";
            default -> "heads 0.." + (c.sharedHeads() - 1) + " shared, gate 1";
        };
        o.println("  (" + shared + "; tokens routed = share of tokens with a non-zero gate; f = that share / k; mean gate over"
                + " all tokens; mean P = mean router probability)");
    }

    private static void writeStats(Path file, RouterOutput r, Tensor xt, DType dtype) {
        ObjectNode root = new ObjectMapper().createObjectNode();
        root.put("headroute_version", Main.VERSION);
        root.put("engine", r.engine());
        root.put("x_shape", xt.shapeString());
        root.put("dtype", dtype.cliName());
        RouterConfig c = r.stats().config();
        root.put("shared_heads", c.sharedHeads());
        root.put("routed_heads", c.routedHeads());
        root.put("k", c.k());
        root.put("block", c.block());
        root.put("elapsed_ms", r.elapsedNanos() / 1e6);
        r.stats().writeJson(root.putObject("stats"));
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        AtomicFiles.write(file, os -> {
            os.write(mapper.writeValueAsBytes(root));
            os.write('\n');
        });
    }
}
