package io.headroute.cli;

import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.KeyRanges;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code headroute pattern}: a pattern's block layout as a file, and its densities. */
@Command(name = "pattern", mixinStandardHelpOptions = true, versionProvider = Main.VersionProvider.class,
        header = "A pattern's block layout file, block and token densities.",
        sortOptions = false,
        description = {"Writes a pattern's block layout over absolute positions as uint8 (H, n, n) with n = ceil(S / BS): "
                    + "entry [h, qb, kb] is 1 when some position of block qb may attend some key of block kb.",
            "Prints the block density, the full, partial and empty block counts, and the exact token density of the "
                    + "L queries (at positions S − L … S − 1) over the S keys."},
        footer = {"", "Example:", "  headroute pattern --spec bigbird:64:1:1:2:7 --len 4096 --heads 8 \\",
            "      --out layout.npy"})
final class PatternCommand implements Callable<Integer> {
    static final int DEFAULT_BLOCK = 64;

    @Mixin
    VerboseMixin verboseMixin;

    @Spec
    CommandSpec spec;

    @Option(names = {"--spec", "--pattern"}, paramLabel = "SPEC", required = true, description = "Pattern: " + Patterns.GRAMMAR + ".")
    String patternSpec;

    @Option(names = "--causal", description = "Add the causal rule j ≤ p.")
    boolean causal;

    @Option(names = "--len", paramLabel = "L", required = true, description = "Number of queries.")
    int qLen;

    @Option(names = "--kv-len", paramLabel = "S", description = "Number of keys (default: L).")
    Integer kvLen;

    @Option(names = "--heads", paramLabel = "H", defaultValue = "1", description = "Heads in the file (default: ${DEFAULT-VALUE}).")
    int heads;

    @Option(names = {"--block-size", "--block"}, paramLabel = "BS",
            description = "Block size for token-level patterns (default: " + DEFAULT_BLOCK + "; bigbird and layout use their own).")
    Integer block;

    @Option(names = "--out", paramLabel = "FILE", required = true, description = "Layout file: .npy (or .safetensors).")
    Path out;

    @Override
    public Integer call() {
        int s = kvLen == null ? qLen : kvLen;
        positive("--len", qLen);
        positive("--kv-len", s);
        positive("--heads", heads);
        if (block != null) {
            positive("--block-size", block);
        }
        if (qLen > s) {
            throw new ParameterException(spec.commandLine(), "--len L = " + qLen + " exceeds --kv-len S = " + s
                    + " (queries sit at the last L of the S key positions)");
        }
        TensorOutputs.checkTensorTarget(out);
        Pattern p = Patterns.parse(patternSpec);
        TensorOutputs.checkDistinct(spec.commandLine(), TensorOutputs.files("--out", out),
                TensorOutputs.files("--spec", TensorOutputs.patternFile(p)));
        if (causal) {
            p = p.withCausal();
        }
        int bs = p.blockSize() != 0 ? p.blockSize() : block == null ? DEFAULT_BLOCK : block;
        if (block != null && p.blockSize() != 0 && block != p.blockSize()) {
            throw new ParameterException(spec.commandLine(), "--block-size " + block + " conflicts with the block size "
                    + p.blockSize() + " of pattern '" + p.spec() + "'");
        }
        p.check(heads, qLen, s);
        long n = (s + (long) bs - 1) / bs;
        long cells = heads * n * n;
        if (cells > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("a layout of " + heads + " x " + n + " x " + n + " = " + cells
                    + " blocks is too large for one file; use a larger block size");
        }

        // Rows by absolute block: a layout over all S positions (L = S), whatever L is.
        BlockLayout layout = BlockLayout.build(p, heads, s, s, bs);
        Tensor dense = expandHeads(layout.toDense(), heads);
        long perStored = heads / layout.heads();
        long full = layout.fullBlockCount() * perStored;
        long partial = layout.partialBlockCount() * perStored;
        long empty = layout.emptyBlockCount() * perStored;
        long allowed = allowedPairs(p, heads, qLen, s);
        long pairs = (long) heads * qLen * s;

        TensorOutputs.write(out, "layout", dense, Map.of("pattern", p.spec(), "block_size", Integer.toString(bs),
                "producer", "headroute " + Main.VERSION));
        PrintWriter o = spec.commandLine().getOut();
        o.println(Units.fmt("pattern %s, H=%d, L=%d, S=%d, block %d: %d x %d blocks per head", p.spec(), heads, qLen, s, bs, n, n));
        o.println(Units.fmt("block density %.6f: %d full, %d partial, %d empty of %d blocks", layout.density(), full, partial,
                empty, cells));
        o.println(Units.fmt("token density %.6f (%d of %d query-key pairs allowed)", allowed / (double) pairs, allowed, pairs));
        o.println("wrote " + out + ": " + dense.dtype().cliName() + " " + dense.shapeString());
        return Main.OK;
    }

    /** Σ over heads and queries i of the keys position i + (S − L) may attend. */
    static long allowedPairs(Pattern p, int heads, int qLen, int kvLen) {
        KeyRanges r = new KeyRanges();
        long total = 0;
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < qLen; i++) {
                p.allowedKeys(h, i + (kvLen - qLen), kvLen, r);
                total += r.keyCount();
            }
        }
        return total;
    }

    /** A shared (1, n, n) layout repeated to H heads, so the file always has exactly H heads. */
    private static Tensor expandHeads(Tensor t, int heads) {
        if (t.dim(0) == heads) {
            return t;
        }
        ByteBuffer one = t.bytes();
        int cells = one.remaining();
        byte[] all = new byte[Math.multiplyExact(cells, heads)];
        for (int h = 0; h < heads; h++) {
            one.duplicate().get(all, h * cells, cells);
        }
        return Tensor.ofBytes(DType.U8, all, heads, t.dim(1), t.dim(2));
    }

    private void positive(String option, int value) {
        if (value <= 0) {
            throw new ParameterException(spec.commandLine(), option + " must be positive, got " + value);
        }
    }
}
