package io.headroute.engine.cpu;

import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Npy;
import io.headroute.tensor.Tensor;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * The attention contract written out as plainly as possible, in float64: a triple loop over (b, h, i),
 * a token rule evaluated key by key, and a row-wise stable softmax. It shares no code with the main
 * pattern layer (no Pattern.allowedKeys, KeyRanges or BigBirdRandom) so that it can judge it.
 */
public final class ReferenceAttention {
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;

    private ReferenceAttention() {}

    /** The pattern families of the contract. */
    public enum Kind { DENSE, CAUSAL, WINDOW, LONGFORMER, BIGBIRD, LAYOUT }

    /**
     * A pattern described independently of the main code: its kind, parameters, the bits of a block
     * layout (heads × blocks × blocks, row-major) and whether {@code causal=true} is added.
     */
    public record Rule(Kind kind, int bs, int w, int g, int r, long seed, int layoutHeads, int layoutBlocks,
            boolean[] bits, boolean causal) {

        public static Rule dense() {
            return new Rule(Kind.DENSE, 0, 0, 0, 0, 0, 0, 0, null, false);
        }

        public static Rule causalRule() {
            return new Rule(Kind.CAUSAL, 0, 0, 0, 0, 0, 0, 0, null, false);
        }

        public static Rule window(int w) {
            return new Rule(Kind.WINDOW, 0, w, 0, 0, 0, 0, 0, null, false);
        }

        public static Rule longformer(int w, int g) {
            return new Rule(Kind.LONGFORMER, 0, w, g, 0, 0, 0, 0, null, false);
        }

        public static Rule bigbird(int bs, int w, int g, int r, long seed) {
            return new Rule(Kind.BIGBIRD, bs, w, g, r, seed, 0, 0, null, false);
        }

        /** A layout of shape (heads, blocks, blocks); {@code bits} is copied. */
        public static Rule layout(int bs, int heads, int blocks, boolean[] bits) {
            if (bits.length != heads * blocks * blocks) {
                throw new IllegalArgumentException("bits do not match (" + heads + ", " + blocks + ", " + blocks + ")");
            }
            return new Rule(Kind.LAYOUT, bs, 0, 0, 0, 0, heads, blocks, bits.clone(), false);
        }

        /**
         * The rule of a spec the main parser takes (dense, causal, window:W, longformer:W:G, bigbird:BS:W:G:R:SEED),
         * with "+causal" as the causal flag; parsed here, not by the main parser, so that it can judge it.
         */
        public static Rule parse(String spec) {
            if (spec.endsWith("+causal")) {
                return parse(spec.substring(0, spec.length() - "+causal".length())).withCausal(true);
            }
            String[] f = spec.split(":");
            return switch (f[0]) {
                case "dense" -> dense();
                case "causal" -> causalRule();
                case "window" -> window(Integer.parseInt(f[1]));
                case "longformer" -> longformer(Integer.parseInt(f[1]), Integer.parseInt(f[2]));
                case "bigbird" -> bigbird(Integer.parseInt(f[1]), Integer.parseInt(f[2]), Integer.parseInt(f[3]),
                        Integer.parseInt(f[4]), Long.parseLong(f[5]));
                default -> throw new IllegalArgumentException("no reference rule for " + spec);
            };
        }

        public Rule withCausal(boolean c) {
            return new Rule(kind, bs, w, g, r, seed, layoutHeads, layoutBlocks, bits, c);
        }

        /** Whether query position p of head h may attend key j among S keys. */
        public boolean allowed(int h, int p, int j, int kvLen) {
            return ReferenceAttention.allowed(this, h, p, j, kvLen);
        }

        /** The spec string the main parser takes (not for layouts, whose spec names a file). */
        public String spec() {
            return switch (kind) {
                case DENSE -> "dense";
                case CAUSAL -> "causal";
                case WINDOW -> "window:" + w;
                case LONGFORMER -> "longformer:" + w + ":" + g;
                case BIGBIRD -> "bigbird:" + bs + ":" + w + ":" + g + ":" + r + ":" + seed;
                case LAYOUT -> throw new IllegalStateException("a layout spec needs a file; use toPattern(dir, name)");
            };
        }

        /**
         * The main code's pattern for this rule, without the causal flag (the engine adds that through
         * the request). Layouts are written to {@code dir/name.npy} with {@link Npy#write} and parsed back.
         */
        public Pattern toPattern(Path dir, String name) {
            if (kind != Kind.LAYOUT) {
                return Patterns.parse(spec());
            }
            byte[] bytes = new byte[bits.length];
            for (int t = 0; t < bits.length; t++) {
                bytes[t] = (byte) (bits[t] ? 1 : 0);
            }
            Path file = dir.resolve(name.replaceAll("[^A-Za-z0-9_.-]", "_") + ".npy");
            // Alternate bool and uint8 files: the contract accepts both.
            DType dt = (layoutHeads & 1) == 1 ? DType.BOOL : DType.U8;
            Npy.write(file, Tensor.ofBytes(dt, bytes, layoutHeads, layoutBlocks, layoutBlocks));
            return Patterns.parse("layout:" + bs + ":" + file);
        }

        /** The main code's pattern with the causal flag folded in, as the request does it. */
        public Pattern toEffectivePattern(Path dir, String name) {
            Pattern p = toPattern(dir, name);
            return causal ? p.withCausal() : p;
        }

        @Override
        public String toString() {
            String base = kind == Kind.LAYOUT
                    ? "layout:" + bs + "(" + layoutHeads + "x" + layoutBlocks + "x" + layoutBlocks + ")"
                    : spec();
            return causal ? base + "+causal" : base;
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Rule x && x.kind == kind && x.bs == bs && x.w == w && x.g == g && x.r == r
                    && x.seed == seed && x.layoutHeads == layoutHeads && x.layoutBlocks == layoutBlocks
                    && Arrays.equals(x.bits, bits) && x.causal == causal;
        }

        @Override
        public int hashCode() {
            return toString().hashCode() * 31 + Arrays.hashCode(bits);
        }
    }

    /** The contract's token rule "query at position p of head h may attend key j". */
    public static boolean allowed(Rule rule, int h, int p, int j, int kvLen) {
        if (rule.causal() && j > p) {
            return false;
        }
        switch (rule.kind()) {
            case DENSE:
                return true;
            case CAUSAL:
                return j <= p;
            case WINDOW:
                return Math.abs(p - j) <= rule.w();
            case LONGFORMER:
                return Math.abs(p - j) <= rule.w() || j < rule.g() || p < rule.g();
            case BIGBIRD: {
                int qb = p / rule.bs();
                int kb = j / rule.bs();
                if (Math.abs(qb - kb) <= rule.w() || qb < rule.g() || kb < rule.g()) {
                    return true;
                }
                int n = (kvLen + rule.bs() - 1) / rule.bs();
                return randomBlocks(rule.seed(), h, qb, n, rule.r())[kb];
            }
            case LAYOUT: {
                int hh = rule.layoutHeads() == 1 ? 0 : h;
                int n = rule.layoutBlocks();
                return rule.bits()[(hh * n + p / rule.bs()) * n + j / rule.bs()];
            }
            default:
                throw new AssertionError(rule.kind());
        }
    }

    /**
     * BigBird's random key blocks for (h, qb) out of n, as a membership array, reimplemented from the
     * contract text: SplitMix64 draws from state = SEED xor (golden · ((h << 32) | qb)), Floyd's sampling.
     */
    public static boolean[] randomBlocks(long seed, int h, int qb, int n, int r) {
        boolean[] taken = new boolean[n];
        if (r >= n) {
            Arrays.fill(taken, true);
            return taken;
        }
        long state = seed ^ (GOLDEN * ((((long) h) << 32) | (long) qb));
        for (int t = n - r; t <= n - 1; t++) {
            state += GOLDEN;
            long z = state;
            z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
            z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
            z = z ^ (z >>> 31);
            long m = t + 1L;
            int x = (int) (((z >>> 32) * m) >>> 32);
            if (taken[x]) {
                taken[t] = true;
            } else {
                taken[x] = true;
            }
        }
        return taken;
    }

    /** Reference output: o (B, H, L, D) and lse (B, H, L) in float64, and how many rows are empty. */
    public record Output(double[] o, double[] lse, int emptyRows) {
        /** o rounded to float (a relative change of at most 2⁻²⁴ per element). */
        public float[] oFloats() {
            return floats(o);
        }

        /** lse rounded to float, −∞ where a row is empty or gated. */
        public float[] lseFloats() {
            return floats(lse);
        }

        private static float[] floats(double[] x) {
            float[] f = new float[x.length];
            for (int i = 0; i < x.length; i++) {
                f[i] = (float) x[i];
            }
            return f;
        }
    }

    /** {@code req}'s q, k, v, gate, scale and dtype under {@code rule} (which must say what req's pattern says). */
    public static Output compute(io.headroute.engine.AttentionRequest req, Rule rule) {
        return compute(req.q(), req.k(), req.v(), req.gate(), rule, req.scale(), req.dtype());
    }

    /**
     * Attention under the contract. q, k, v are read as floats; for f16/bf16 they are first rounded to
     * that dtype (as the engine does), then everything is float64. {@code gate} may be null.
     */
    public static Output compute(Tensor q, Tensor k, Tensor v, Tensor gate, Rule rule, double scale, DType dtype) {
        int bsz = (int) q.dim(0);
        int heads = (int) q.dim(1);
        int qLen = (int) q.dim(2);
        int d = (int) q.dim(3);
        int kvHeads = (int) k.dim(1);
        int kvLen = (int) k.dim(2);
        int group = heads / kvHeads;
        float[] qf = roundedTo(q, dtype);
        float[] kf = roundedTo(k, dtype);
        float[] vf = roundedTo(v, dtype);
        float[] gf = gate == null ? null : gate.toFloatArray();

        double[] o = new double[bsz * heads * qLen * d];
        double[] lse = new double[bsz * heads * qLen];
        int empty = 0;
        double[] scores = new double[kvLen];
        boolean[] ok = new boolean[kvLen];
        for (int b = 0; b < bsz; b++) {
            for (int h = 0; h < heads; h++) {
                int kvh = h / group;
                for (int i = 0; i < qLen; i++) {
                    int row = (b * heads + h) * qLen + i;
                    int p = i + (kvLen - qLen);
                    double g = gf == null ? 1.0 : gf[(b * qLen + i) * heads + h];
                    double m = Double.NEGATIVE_INFINITY;
                    if (g != 0.0) {
                        for (int j = 0; j < kvLen; j++) {
                            ok[j] = allowed(rule, h, p, j, kvLen);
                            if (!ok[j]) {
                                continue;
                            }
                            double s = 0;
                            int qo = row * d;
                            int ko = ((b * kvHeads + kvh) * kvLen + j) * d;
                            for (int t = 0; t < d; t++) {
                                s += (double) qf[qo + t] * kf[ko + t];
                            }
                            scores[j] = scale * s;
                            m = Math.max(m, scores[j]);
                        }
                    }
                    if (m == Double.NEGATIVE_INFINITY) {
                        lse[row] = Double.NEGATIVE_INFINITY;
                        empty++;
                        continue;
                    }
                    double sum = 0;
                    for (int j = 0; j < kvLen; j++) {
                        if (!ok[j]) {
                            continue;
                        }
                        double e = Math.exp(scores[j] - m);
                        sum += e;
                        int vo = ((b * kvHeads + kvh) * kvLen + j) * d;
                        for (int t = 0; t < d; t++) {
                            o[row * d + t] += e * vf[vo + t];
                        }
                    }
                    for (int t = 0; t < d; t++) {
                        o[row * d + t] = o[row * d + t] / sum * g;
                    }
                    lse[row] = m + Math.log(sum);
                }
            }
        }
        return new Output(o, lse, empty);
    }

    private static float[] roundedTo(Tensor t, DType dtype) {
        return dtype == DType.F32 ? t.toFloatArray() : t.toDType(dtype).toFloatArray();
    }
}
