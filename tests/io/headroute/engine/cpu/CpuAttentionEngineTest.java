package io.headroute.engine.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.AutoPolicy;
import io.headroute.engine.ExecutionStats;
import io.headroute.engine.ShapeException;
import io.headroute.engine.cpu.ReferenceAttention.Output;
import io.headroute.engine.cpu.ReferenceAttention.Rule;
import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.PatternException;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

class CpuAttentionEngineTest {
    @TempDir
    static Path dir;

    private static CpuAttentionEngine one;
    private static CpuAttentionEngine three;

    @BeforeAll
    static void start() {
        one = new CpuAttentionEngine(1);
        three = new CpuAttentionEngine(3);
    }

    @AfterAll
    static void stop() {
        one.close();
        three.close();
    }

    private static CpuAttentionEngine engine(int threads) {
        return threads == 1 ? one : three;
    }

    // ------------------------------------------------------------------ cases and inputs

    /**
     * Gate kinds: none; random with about 30% zeros and values ≠ 1 elsewhere; or that plus whole query
     * tiles of zeros (head 1 rows 0…127 and head 0 rows 128…255: tiles of 64 and of 128 rows).
     */
    enum Gate { NONE, ZEROS, TILES }

    /** One problem: sizes, pattern, dtype, gate and scale; {@code halfInputs} hands the engine q, k, v already in the dtype. */
    record Case(String name, int b, int h, int hkv, int l, int s, int d, Rule rule, DType dtype, Gate gate, Float scale,
            long seed, boolean halfInputs) {
        @Override
        public String toString() {
            return name + " [" + rule + ", B=" + b + " H=" + h + " Hkv=" + hkv + " L=" + l + " S=" + s + " D=" + d + ", "
                    + dtype.cliName() + (halfInputs ? " inputs" : "") + (gate == Gate.NONE ? "" : gate == Gate.ZEROS
                    ? ", gate with zeros" : ", gate with zero tiles")
                    + (scale == null ? "" : ", scale=" + scale) + "]";
        }

        double tolerance() {
            return switch (dtype) {
                case F16 -> 2e-3;
                case BF16 -> 1e-2;
                default -> 1e-5;
            };
        }
    }

    record Inputs(Tensor q, Tensor k, Tensor v, Tensor gate) {}

    private static final Map<String, Inputs> INPUTS = new ConcurrentHashMap<>();
    private static final Map<String, Output> REFERENCES = new ConcurrentHashMap<>();

    static Tensor gaussian(Random rnd, int... shape) {
        long[] sh = new long[shape.length];
        int n = 1;
        for (int t = 0; t < shape.length; t++) {
            sh[t] = shape[t];
            n *= shape[t];
        }
        float[] x = new float[n];
        for (int t = 0; t < n; t++) {
            float g = (float) rnd.nextGaussian();
            x[t] = g == 0f ? 0.5f : g;
        }
        return Tensor.ofFloats(x, sh);
    }

    /** A (B, L, H) gate with about 30% zeros and values in [0.1, 1.9] \ {1} elsewhere. */
    static Tensor randomGate(Random rnd, int b, int l, int h) {
        float[] g = new float[b * l * h];
        for (int t = 0; t < g.length; t++) {
            if (rnd.nextDouble() < 0.3) {
                g[t] = 0f;
            } else {
                float x = (float) (0.1 + 1.8 * rnd.nextDouble());
                g[t] = x == 1f ? 0.75f : x;
            }
        }
        return Tensor.ofFloats(g, b, l, h);
    }

    static Inputs inputs(Case c) {
        return INPUTS.computeIfAbsent(c.name(), n -> {
            Random rnd = new Random(c.seed());
            Tensor q = gaussian(rnd, c.b(), c.h(), c.l(), c.d());
            Tensor k = gaussian(rnd, c.b(), c.hkv(), c.s(), c.d());
            Tensor v = gaussian(rnd, c.b(), c.hkv(), c.s(), c.d());
            if (c.halfInputs()) {
                q = q.toDType(c.dtype());
                k = k.toDType(c.dtype());
                v = v.toDType(c.dtype());
            }
            Tensor gate = c.gate() == Gate.NONE ? null : randomGate(rnd, c.b(), c.l(), c.h());
            if (c.gate() == Gate.TILES) {
                float[] g = gate.toFloatArray();
                for (int b = 0; b < c.b(); b++) {
                    for (int i = 0; i < c.l(); i++) {
                        if (i < 128) {
                            g[(b * c.l() + i) * c.h() + 1] = 0f;
                        } else if (i < 256) {
                            g[(b * c.l() + i) * c.h()] = 0f;
                        }
                    }
                }
                gate = Tensor.ofFloats(g, c.b(), c.l(), c.h());
            }
            return new Inputs(q, k, v, gate);
        });
    }

    static Output reference(Case c) {
        return REFERENCES.computeIfAbsent(c.name(), n -> {
            Inputs in = inputs(c);
            double scale = c.scale() == null ? 1.0 / Math.sqrt(c.d()) : c.scale();
            return ReferenceAttention.compute(in.q(), in.k(), in.v(), in.gate(), c.rule(), scale, c.dtype());
        });
    }

    static AttentionRequest request(Case c, Algorithm algo) {
        Inputs in = inputs(c);
        Pattern p = c.rule().toPattern(dir, c.name());
        return AttentionRequest.builder(in.q(), in.k(), in.v()).gate(in.gate()).pattern(p).causal(c.rule().causal())
                .scale(c.scale()).dtype(c.dtype()).algorithm(algo).wantLse(true).build();
    }

    // ------------------------------------------------------------------ layouts

    /** Random layout bits with density ~{@code keep}, every block on the diagonal kept. */
    static boolean[] randomBits(long seed, int heads, int n, double keep) {
        Random rnd = new Random(seed);
        boolean[] bits = new boolean[heads * n * n];
        for (int h = 0; h < heads; h++) {
            for (int qb = 0; qb < n; qb++) {
                for (int kb = 0; kb < n; kb++) {
                    bits[(h * n + qb) * n + kb] = qb == kb || rnd.nextDouble() < keep;
                }
            }
        }
        return bits;
    }

    /** One shared layout for S = 300, BS = 64 (n = 5): block row 4 (positions 256…299) is all false. */
    static Rule sharedLayoutWithEmptyRow() {
        int n = 5;
        boolean[] bits = randomBits(11, 1, n, 0.4);
        for (int kb = 0; kb < n; kb++) {
            bits[4 * n + kb] = false;
        }
        return Rule.layout(64, 1, n, bits);
    }

    /**
     * A per-head layout for S = 300, BS = 32 (n = 10), H heads: head 1's block row 8 (positions 256…287) is
     * all false, and head 0's block row 7 (positions 224…255) lists only blocks 8 and 9, above the diagonal,
     * so that causal=true empties it.
     */
    static Rule perHeadLayoutWithEmptyRows(int heads) {
        int n = 10;
        boolean[] bits = randomBits(12, heads, n, 0.3);
        for (int kb = 0; kb < n; kb++) {
            bits[(1 * n + 8) * n + kb] = false;
            bits[(0 * n + 7) * n + kb] = kb >= 8;
        }
        return Rule.layout(32, heads, n, bits);
    }

    // ------------------------------------------------------------------ the matrix

    static List<Case> cases() {
        List<Case> cs = new ArrayList<>();
        long seed = 1000;
        // Every pattern, with and without causal, on GQA (H=4, Hkv=2), L=77 < S=300, D=64.
        List<Rule> rules = List.of(Rule.dense(), Rule.causalRule(), Rule.window(0), Rule.window(5), Rule.window(200),
                Rule.longformer(16, 8), Rule.longformer(3, 250), Rule.bigbird(48, 1, 1, 2, 7),
                Rule.bigbird(64, 0, 0, 3, -123456789L), Rule.bigbird(32, 1, 0, 50, 3),
                sharedLayoutWithEmptyRow(), perHeadLayoutWithEmptyRows(4));
        for (Rule r : rules) {
            for (boolean causal : new boolean[] {false, true}) {
                Rule rc = r.withCausal(causal);
                cs.add(new Case("gqa-" + rc, 1, 4, 2, 77, 300, 64, rc, DType.F32, Gate.NONE, null, seed++, false));
            }
        }
        // MQA, B = 2, L = S = 300, D = 16.
        for (Rule r : List.of(Rule.bigbird(48, 1, 1, 2, 99).withCausal(true), Rule.longformer(7, 3),
                Rule.window(20).withCausal(true), perHeadLayoutWithEmptyRows(2).withCausal(true))) {
            cs.add(new Case("mqa-" + r, 2, 2, 1, 300, 300, 16, r, DType.F32, Gate.NONE, null, seed++, false));
        }
        // L = 1 (decoding), D = 128, plain multi-head.
        for (Rule r : List.of(Rule.dense(), Rule.causalRule(), Rule.window(3), Rule.bigbird(64, 0, 0, 2, 5),
                sharedLayoutWithEmptyRow(), sharedLayoutWithEmptyRow().withCausal(true))) {
            cs.add(new Case("decode-" + r, 2, 4, 4, 1, 300, 128, r, DType.F32, Gate.NONE, null, seed++, false));
        }
        // Tiny and odd sizes.
        cs.add(new Case("tiny-dense", 1, 1, 1, 1, 1, 16, Rule.dense(), DType.F32, Gate.NONE, null, seed++, false));
        cs.add(new Case("tiny-causal", 1, 3, 1, 1, 1, 16, Rule.causalRule(), DType.F32, Gate.NONE, null, seed++, false));
        cs.add(new Case("square-77", 1, 2, 2, 77, 77, 16, Rule.longformer(5, 2).withCausal(true), DType.F32, Gate.NONE,
                null, seed++, false));
        cs.add(new Case("odd-65-129", 1, 2, 1, 65, 129, 64, Rule.window(1), DType.F32, Gate.NONE, null, seed++, false));
        // Long context: S around 1000.
        cs.add(new Case("long-1000", 1, 2, 1, 300, 1000, 64, Rule.longformer(40, 16).withCausal(true), DType.F32,
                Gate.NONE, null, seed++, false));
        cs.add(new Case("long-1000-bigbird", 1, 2, 2, 77, 1000, 64, Rule.bigbird(100, 1, 1, 3, 42), DType.F32, Gate.NONE,
                null, seed++, false));
        // Gates with zeros.
        for (Rule r : List.of(Rule.dense(), Rule.window(8).withCausal(true), sharedLayoutWithEmptyRow(),
                Rule.bigbird(48, 1, 1, 2, 7).withCausal(true))) {
            cs.add(new Case("gate-" + r, 2, 4, 2, 77, 300, 64, r, DType.F32, Gate.ZEROS, null, seed++, false));
        }
        cs.add(new Case("gate-mqa-300", 1, 4, 1, 300, 300, 16, Rule.causalRule(), DType.F32, Gate.ZEROS, null, seed++,
                false));
        // Gates that zero whole query tiles (of 64 and of 128 rows).
        for (Rule r : List.of(Rule.window(40).withCausal(true), Rule.bigbird(32, 1, 1, 2, 5), sharedLayoutWithEmptyRow())) {
            cs.add(new Case("gate-tiles-" + r, 2, 2, 1, 300, 300, 32, r, DType.F32, Gate.TILES, null, seed++, false));
        }
        // Custom scales.
        cs.add(new Case("scale-0.5", 1, 4, 2, 77, 300, 64, Rule.window(30), DType.F32, Gate.NONE, 0.5f, seed++, false));
        cs.add(new Case("scale-0.02", 1, 2, 2, 77, 300, 128, Rule.dense().withCausal(true), DType.F32, Gate.ZEROS, 0.02f,
                seed++, false));
        cs.add(new Case("scale-neg", 1, 2, 1, 77, 300, 16, Rule.bigbird(64, 1, 0, 1, 1), DType.F32, Gate.NONE, -0.3f,
                seed++, false));
        // Half precision: inputs rounded by the engine, or already in the dtype.
        for (DType dt : new DType[] {DType.F16, DType.BF16}) {
            for (Rule r : List.of(Rule.dense(), Rule.bigbird(48, 1, 1, 2, 7).withCausal(true),
                    perHeadLayoutWithEmptyRows(4))) {
                cs.add(new Case(dt.cliName() + "-" + r, 1, 4, 2, 77, 300, 64, r, dt, Gate.NONE, null, seed++, false));
            }
            cs.add(new Case(dt.cliName() + "-inputs-gate", 2, 2, 1, 300, 300, 128, Rule.longformer(10, 4), dt, Gate.ZEROS,
                    null, seed++, true));
            cs.add(new Case(dt.cliName() + "-decode", 1, 4, 4, 1, 300, 128, Rule.window(50), dt, Gate.NONE, 0.1f, seed++,
                    false));
        }
        if (cs.stream().map(Case::name).distinct().count() != cs.size()) {
            throw new IllegalStateException("case names must be unique: they key the input cache");
        }
        return cs;
    }

    static Stream<Arguments> matrix() {
        List<Arguments> args = new ArrayList<>();
        for (Case c : cases()) {
            for (Algorithm a : new Algorithm[] {Algorithm.FLASH, Algorithm.MATERIALIZED}) {
                for (int threads : new int[] {1, 3}) {
                    args.add(Arguments.of(c, a, threads));
                }
            }
        }
        return args.stream();
    }

    // ------------------------------------------------------------------ comparisons

    /** Checks o and lse against the reference under the contract's tolerance; empty rows must be exact. */
    static void assertMatches(String what, Output ref, AttentionResult res, double tol, int d) {
        float[] o = res.o().toFloatArray();
        float[] lse = res.lse().toFloatArray();
        assertEquals(ref.o().length, o.length, what + ": o size");
        assertEquals(ref.lse().length, lse.length, what + ": lse size");
        double diff = 0;
        double norm = 0;
        for (int t = 0; t < o.length; t++) {
            if (Float.isNaN(o[t]) || Float.isInfinite(o[t])) {
                fail(what + ": o[" + t + "] = " + o[t]);
            }
            double e = o[t] - ref.o()[t];
            diff += e * e;
            norm += ref.o()[t] * ref.o()[t];
        }
        for (int row = 0; row < lse.length; row++) {
            double r = ref.lse()[row];
            float got = lse[row];
            if (Float.isNaN(got)) {
                fail(what + ": lse[" + row + "] is NaN");
            }
            if (r == Double.NEGATIVE_INFINITY) {
                assertEquals(Float.NEGATIVE_INFINITY, got, what + ": row " + row + " has no allowed key (or a zero gate): lse");
                for (int t = 0; t < d; t++) {
                    if (o[row * d + t] != 0f) {
                        fail(what + ": row " + row + " has no allowed key (or a zero gate) but o[" + t + "] = "
                                + o[row * d + t]);
                    }
                }
            } else {
                if (Double.isNaN(r) || Float.isInfinite(got) || Math.abs(got - r) > tol * Math.max(1, Math.abs(r))) {
                    fail(what + ": lse[" + row + "] = " + got + ", reference " + r + " (tolerance " + tol + ")");
                }
                // Row by row too: one wrong row moves the whole output's error by only 1/sqrt(rows) of its own.
                double rowDiff = 0;
                double rowNorm = 0;
                for (int t = row * d; t < row * d + d; t++) {
                    rowDiff += (o[t] - ref.o()[t]) * (o[t] - ref.o()[t]);
                    rowNorm += ref.o()[t] * ref.o()[t];
                }
                double rowRel = rowNorm == 0 ? Math.sqrt(rowDiff) : Math.sqrt(rowDiff / rowNorm);
                if (!(rowRel <= tol)) {
                    fail(what + ": row " + row + ": ||o - ref|| / ||ref|| = " + rowRel + " > " + tol);
                }
            }
        }
        double rel = norm == 0 ? Math.sqrt(diff) : Math.sqrt(diff / norm);
        assertTrue(rel <= tol, what + ": ||o - ref|| / ||ref|| = " + rel + " > " + tol);
    }

    // ------------------------------------------------------------------ the matrix test

    @ParameterizedTest(name = "{0} {1} threads={2}")
    @MethodSource("matrix")
    void matchesReference(Case c, Algorithm algo, int threads) {
        String what = c + " " + algo + " threads=" + threads;
        AttentionResult res = engine(threads).run(request(c, algo));
        assertEquals(c.dtype(), res.o().dtype(), what + ": output dtype");
        assertArrayEquals(new long[] {c.b(), c.h(), c.l(), c.d()}, res.o().shape(), what + ": o shape");
        assertArrayEquals(new long[] {c.b(), c.h(), c.l()}, res.lse().shape(), what + ": lse shape");
        assertEquals(DType.F32, res.lse().dtype(), what + ": lse dtype");
        assertEquals(algo, res.stats().algorithm(), what + ": stats algorithm");
        assertEquals("cpu", res.stats().engine(), what + ": stats engine");
        assertMatches(what, reference(c), res, c.tolerance(), c.d());
    }

    /** The matrix must really hold rows with no allowed key that are not caused by gates. */
    @Test
    void matrixExercisesEmptyRows() {
        int withEmpty = 0;
        for (Case c : cases()) {
            if (c.gate() == Gate.NONE && reference(c).emptyRows() > 0) {
                withEmpty++;
            }
        }
        assertTrue(withEmpty >= 4, "cases with pattern-empty rows: " + withEmpty);
    }

    /** Layout rows that are all false, or emptied by causal=true, give zeros and lse −∞ on both paths. */
    @ParameterizedTest
    @ValueSource(strings = {"FLASH", "MATERIALIZED", "SPARSE"})
    void emptyLayoutRowsGiveZerosAndMinusInfinity(String algoName) {
        Algorithm algo = Algorithm.valueOf(algoName);
        // Per-head layout on H=4, L=77, S=300: head 1 positions 256…287 are empty; with causal also head 0 positions 224…255.
        for (boolean causal : new boolean[] {false, true}) {
            Rule r = perHeadLayoutWithEmptyRows(4).withCausal(causal);
            Case c = new Case("empty-rows-" + causal, 1, 4, 2, 77, 300, 16, r, DType.F32, Gate.NONE, null, 77, false);
            AttentionResult res = one.run(request(c, algo));
            float[] lse = res.lse().toFloatArray();
            float[] o = res.o().toFloatArray();
            int empty = 0;
            for (int h = 0; h < 4; h++) {
                for (int i = 0; i < 77; i++) {
                    int p = i + 300 - 77;
                    boolean expectEmpty = (h == 1 && p >= 256 && p < 288) || (causal && h == 0 && p >= 224 && p < 256);
                    int row = h * 77 + i;
                    if (expectEmpty) {
                        empty++;
                        assertEquals(Float.NEGATIVE_INFINITY, lse[row], c + " " + algo + ": lse of empty row h=" + h + " p=" + p);
                        for (int t = 0; t < 16; t++) {
                            assertEquals(0f, o[row * 16 + t], c + " " + algo + ": o of empty row h=" + h + " p=" + p);
                        }
                    } else {
                        assertTrue(Float.isFinite(lse[row]), c + " " + algo + ": lse of row h=" + h + " p=" + p + " = " + lse[row]);
                    }
                }
            }
            assertEquals(causal ? 64 : 32, empty, c + ": expected empty rows");
        }
    }

    // ------------------------------------------------------------------ agreement and determinism

    static Stream<Case> agreementCases() {
        return cases().stream().filter(c -> c.name().startsWith("gate-") || c.name().startsWith("mqa-")
                || c.name().startsWith("long-") || c.name().startsWith("bf16-"));
    }

    /** Flash and materialized agree with each other, not only each with the reference. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("agreementCases")
    void flashAndMaterializedAgree(Case c) {
        AttentionResult f = three.run(request(c, Algorithm.FLASH));
        AttentionResult m = three.run(request(c, Algorithm.MATERIALIZED));
        float[] fo = f.o().toFloatArray();
        float[] mo = m.o().toFloatArray();
        double diff = 0;
        double norm = 0;
        for (int t = 0; t < fo.length; t++) {
            diff += (double) (fo[t] - mo[t]) * (fo[t] - mo[t]);
            norm += (double) mo[t] * mo[t];
        }
        double tol = c.tolerance();
        assertTrue(Math.sqrt(diff) <= tol * Math.sqrt(norm), c + ": flash vs materialized relative difference "
                + Math.sqrt(diff / norm));
        float[] fl = f.lse().toFloatArray();
        float[] ml = m.lse().toFloatArray();
        for (int row = 0; row < fl.length; row++) {
            if (ml[row] == Float.NEGATIVE_INFINITY || fl[row] == Float.NEGATIVE_INFINITY) {
                assertEquals(ml[row], fl[row], c + ": lse row " + row + " is −∞ on one path only");
            } else {
                assertTrue(Math.abs(fl[row] - ml[row]) <= tol * Math.max(1, Math.abs(ml[row])),
                        c + ": lse row " + row + " flash " + fl[row] + " materialized " + ml[row]);
            }
        }
    }

    /** Work is split into fixed items independent of the thread count, so results must be bit-identical. */
    @ParameterizedTest
    @ValueSource(strings = {"FLASH", "MATERIALIZED"})
    void threadCountDoesNotChangeBits(String algoName) {
        Algorithm algo = Algorithm.valueOf(algoName);
        for (Case c : agreementCases().toList()) {
            AttentionResult a = one.run(request(c, algo));
            AttentionResult b = three.run(request(c, algo));
            assertArrayEquals(a.o().toFloatArray(), b.o().toFloatArray(), c + " " + algo + ": o, 1 vs 3 threads");
            assertArrayEquals(a.lse().toFloatArray(), b.lse().toFloatArray(), c + " " + algo + ": lse, 1 vs 3 threads");
        }
    }

    // ------------------------------------------------------------------ the sparse path

    static AttentionRequest request(Case c, Algorithm algo, int blockSize) {
        Inputs in = inputs(c);
        Pattern p = c.rule().toPattern(dir, c.name());
        return AttentionRequest.builder(in.q(), in.k(), in.v()).gate(in.gate()).pattern(p).causal(c.rule().causal())
                .scale(c.scale()).dtype(c.dtype()).algorithm(algo).blockSize(blockSize).wantLse(true).build();
    }

    static Stream<Arguments> sparseMatrix() {
        List<Arguments> args = new ArrayList<>();
        for (Case c : cases()) {
            for (int bs : new int[] {64, 128}) {
                args.add(Arguments.of(c, bs, c.name().hashCode() % 2 == 0 ? 1 : 3));
            }
        }
        return args.stream();
    }

    /** The block layout's tile counts for the case: {query tiles, visited, skipped}, tiles with only zero-gate rows left out. */
    static long[] expectedSparseTiles(Case c, int bs) {
        Pattern p = c.rule().toPattern(dir, c.name());
        BlockLayout layout = BlockLayout.build(c.rule().causal() ? p.withCausal() : p, c.h(), c.l(), c.s(), bs);
        Tensor gate = inputs(c).gate();
        float[] g = gate == null ? null : gate.toFloatArray();
        long[] t = new long[3];
        for (int b = 0; b < c.b(); b++) {
            for (int h = 0; h < c.h(); h++) {
                for (int qb = 0; qb < layout.qBlocks(); qb++) {
                    boolean active = false;
                    for (int i = qb * bs; i < Math.min(c.l(), (qb + 1) * bs); i++) {
                        active |= g == null || g[(b * c.l() + i) * c.h() + h] != 0f;
                    }
                    if (active) {
                        int listed = layout.fullBlocks(h, qb).length + layout.partialBlocks(h, qb).length;
                        t[0]++;
                        t[1] += listed;
                        t[2] += layout.kBlocks() - listed;
                    }
                }
            }
        }
        return t;
    }

    /** Sparse equals the float64 reference for every case, at block sizes 64 and 128, and reports the layout's tile counts. */
    @ParameterizedTest(name = "{0} BS={1} threads={2}")
    @MethodSource("sparseMatrix")
    void sparseMatchesReference(Case c, int bs, int threads) {
        String what = c + " SPARSE BS=" + bs + " threads=" + threads;
        AttentionResult res = engine(threads).run(request(c, Algorithm.SPARSE, bs));
        assertEquals(c.dtype(), res.o().dtype(), what + ": output dtype");
        assertEquals(Algorithm.SPARSE, res.stats().algorithm(), what + ": stats algorithm");
        assertMatches(what, reference(c), res, c.tolerance(), c.d());
        long[] tiles = expectedSparseTiles(c, bs);
        assertEquals(tiles[0], res.stats().queryTiles(), what + ": query tiles");
        assertEquals(tiles[1], res.stats().keyTilesVisited(), what + ": key tiles visited");
        assertEquals(tiles[2], res.stats().keyTilesSkipped(), what + ": key tiles skipped");
        long zeros = 0;
        if (inputs(c).gate() != null) {
            for (float x : inputs(c).gate().toFloatArray()) {
                zeros += x == 0f ? 1 : 0;
            }
        }
        assertEquals(zeros, res.stats().rowsSkipped(), what + ": rows skipped");
    }

    /** Whole query tiles of zero gates are not executed at all. */
    @Test
    void sparseSkipsFullyGatedTiles() {
        for (Case c : cases().stream().filter(x -> x.gate() == Gate.TILES).toList()) {
            for (int bs : new int[] {64, 128}) {
                long all = (long) c.b() * c.h() * ((c.l() + bs - 1) / bs);
                // Head 1's rows 0…127 and head 0's rows 128…255 are gated off in each batch.
                long gatedTiles = (long) c.b() * (bs == 64 ? 4 : 2);
                assertEquals(all - gatedTiles, three.run(request(c, Algorithm.SPARSE, bs)).stats().queryTiles(),
                        c + " BS=" + bs + ": query tiles");
            }
        }
    }

    /** Work items do not depend on the thread count, so neither do the bits. */
    @Test
    void sparseThreadCountDoesNotChangeBits() {
        for (Case c : agreementCases().toList()) {
            AttentionResult a = one.run(request(c, Algorithm.SPARSE, 64));
            AttentionResult b = three.run(request(c, Algorithm.SPARSE, 64));
            assertArrayEquals(a.o().toFloatArray(), b.o().toFloatArray(), c + ": o, 1 vs 3 threads");
            assertArrayEquals(a.lse().toFloatArray(), b.lse().toFloatArray(), c + ": lse, 1 vs 3 threads");
        }
    }

    /** A narrow window is sparse enough for AUTO to pick sparse; dense and wide patterns run flash. */
    @Test
    void autoPicksByDensity() {
        Case narrow = new Case("auto-narrow", 1, 2, 1, 1500, 1500, 16, Rule.window(8), DType.F32, Gate.NONE, null, 31, false);
        Case dense = new Case("auto-dense", 1, 2, 1, 300, 300, 16, Rule.dense(), DType.F32, Gate.NONE, null, 32, false);
        Case wide = new Case("auto-wide", 1, 2, 1, 300, 300, 16, Rule.window(250), DType.F32, Gate.NONE, null, 33, false);
        for (Case c : List.of(narrow, dense, wide)) {
            Pattern p = c.rule().toPattern(dir, c.name());
            double density = BlockLayout.build(p, c.h(), c.l(), c.s(), 64).density();
            Algorithm want = AutoPolicy.choose(p, density);
            AttentionResult r = one.run(request(c, Algorithm.AUTO));
            assertEquals(want, r.stats().algorithm(), c + ": density " + density);
            assertMatches(c + " AUTO", reference(c), r, c.tolerance(), c.d());
        }
        Pattern narrowPattern = narrow.rule().toPattern(dir, narrow.name());
        assertEquals(Algorithm.SPARSE, AutoPolicy.choose(narrowPattern, BlockLayout.build(narrowPattern, 2, 1500, 1500, 64).density()),
                "window:8 over 1500 keys lists at most 3 of 24 blocks per tile");
        assertEquals(Algorithm.FLASH, AutoPolicy.choose(new Pattern.Dense(), 1.0), "dense");
        assertEquals(Algorithm.FLASH, AutoPolicy.choose(new Pattern.Window(10), AutoPolicy.SPARSE_BELOW), "at the threshold");
        assertEquals(Algorithm.SPARSE, AutoPolicy.choose(new Pattern.Window(10), Math.nextDown(AutoPolicy.SPARSE_BELOW)),
                "just below the threshold");
    }

    @Test
    void layoutsAreCachedAndTheCacheIsBounded() {
        try (CpuAttentionEngine e = new CpuAttentionEngine(1)) {
            Case c = new Case("cache", 1, 2, 1, 77, 300, 16, Rule.window(5), DType.F32, Gate.NONE, null, 41, false);
            e.run(request(c, Algorithm.SPARSE, 64));
            e.run(request(c, Algorithm.SPARSE, 64));
            assertEquals(1, e.cachedLayouts(), "the same pattern and sizes reuse one layout");
            e.run(request(c, Algorithm.SPARSE, 128));
            assertEquals(2, e.cachedLayouts(), "another block size is another layout");
            Inputs in = inputs(c);
            for (int w = 0; w < 40; w++) {
                e.run(AttentionRequest.builder(in.q(), in.k(), in.v()).pattern(new Pattern.Window(w + 100))
                        .algorithm(Algorithm.SPARSE).build());
            }
            assertTrue(e.cachedLayouts() <= 16, "cache holds " + e.cachedLayouts());
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 32, 65, 256})
    void otherBlockSizesAreRefused(int bs) {
        Tensor q = t(1, 2, 8, 16);
        ShapeException e = assertThrows(ShapeException.class,
                () -> AttentionRequest.builder(q, q, q).algorithm(Algorithm.SPARSE).blockSize(bs).build());
        assertEquals("block size must be 64 or 128, got " + bs, e.getMessage());
    }

    /** The engine rounds fp32 inputs to a half dtype itself: the same bits as inputs handed over already in it. */
    @ParameterizedTest
    @ValueSource(strings = {"f16", "bf16"})
    void roundsInputsAsTensorsInTheDtype(String dtypeName) {
        DType dt = DType.parse(dtypeName);
        Random rnd = new Random(11);
        Tensor q = gaussian(rnd, 1, 2, 150, 64);
        Tensor k = gaussian(rnd, 1, 2, 150, 64);
        Tensor v = gaussian(rnd, 1, 2, 150, 64);
        for (Algorithm algo : new Algorithm[] {Algorithm.FLASH, Algorithm.MATERIALIZED, Algorithm.SPARSE}) {
            AttentionResult fromF32 = three.run(AttentionRequest.builder(q, k, v).causal(true).dtype(dt).algorithm(algo).wantLse(true)
                    .build());
            AttentionResult fromHalf = three.run(AttentionRequest.builder(q.toDType(dt), k.toDType(dt), v.toDType(dt)).causal(true)
                    .dtype(dt).algorithm(algo).wantLse(true).build());
            assertArrayEquals(fromHalf.o().toFloatArray(), fromF32.o().toFloatArray(), dtypeName + " " + algo + ": o");
            assertArrayEquals(fromHalf.lse().toFloatArray(), fromF32.lse().toFloatArray(), dtypeName + " " + algo + ": lse");
        }
    }

    @Test
    void lseIsOnlyReturnedWhenAsked() {
        Case c = cases().get(0);
        Inputs in = inputs(c);
        AttentionResult r = one.run(AttentionRequest.builder(in.q(), in.k(), in.v()).algorithm(Algorithm.FLASH).build());
        assertNull(r.lse(), "lse without wantLse");
        assertEquals(DType.F32, r.o().dtype());
    }

    // ------------------------------------------------------------------ execution stats

    /** Number of (query tile, key tile) pairs with any allowed pair, tiles of BR active rows and BC keys. */
    static long expectedVisitedTiles(Case c, Tensor gate) {
        float[] g = gate == null ? null : gate.toFloatArray();
        long visited = 0;
        int kTiles = (c.s() + CpuAttentionEngine.BC - 1) / CpuAttentionEngine.BC;
        for (int b = 0; b < c.b(); b++) {
            for (int h = 0; h < c.h(); h++) {
                List<Integer> active = new ArrayList<>();
                for (int i = 0; i < c.l(); i++) {
                    if (g == null || g[(b * c.l() + i) * c.h() + h] != 0f) {
                        active.add(i);
                    }
                }
                for (int from = 0; from < active.size(); from += CpuAttentionEngine.BR) {
                    List<Integer> rows = active.subList(from, Math.min(active.size(), from + CpuAttentionEngine.BR));
                    for (int kt = 0; kt < kTiles; kt++) {
                        boolean any = false;
                        for (int i : rows) {
                            int p = i + c.s() - c.l();
                            for (int j = kt * CpuAttentionEngine.BC; j < Math.min(c.s(), (kt + 1) * CpuAttentionEngine.BC)
                                    && !any; j++) {
                                any = c.rule().allowed(h, p, j, c.s());
                            }
                            if (any) {
                                break;
                            }
                        }
                        if (any) {
                            visited++;
                        }
                    }
                }
            }
        }
        return visited;
    }

    static long activeQueryTiles(Case c, Tensor gate) {
        float[] g = gate == null ? null : gate.toFloatArray();
        long tiles = 0;
        for (int b = 0; b < c.b(); b++) {
            for (int h = 0; h < c.h(); h++) {
                int active = 0;
                for (int i = 0; i < c.l(); i++) {
                    if (g == null || g[(b * c.l() + i) * c.h() + h] != 0f) {
                        active++;
                    }
                }
                tiles += (active + CpuAttentionEngine.BR - 1) / CpuAttentionEngine.BR;
            }
        }
        return tiles;
    }

    static Stream<Case> narrowWindowCases() {
        return Stream.of(
                new Case("narrow-window-square", 1, 2, 2, 300, 300, 32, Rule.window(4), DType.F32, Gate.NONE, null, 5, false),
                new Case("narrow-window-long", 1, 2, 1, 300, 1000, 32, Rule.window(8).withCausal(true), DType.F32,
                        Gate.NONE, null, 6, false),
                new Case("narrow-longformer", 1, 2, 1, 300, 1000, 32, Rule.longformer(8, 4), DType.F32, Gate.NONE, null, 7,
                        false));
    }

    /** Flash skips the key tiles a narrow window excludes and says so: visited + skipped covers every pair. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("narrowWindowCases")
    void flashSkipsKeyTilesOutsideANarrowWindow(Case c) {
        ExecutionStats st = one.run(request(c, Algorithm.FLASH)).stats();
        long kTiles = (c.s() + CpuAttentionEngine.BC - 1) / CpuAttentionEngine.BC;
        long qTiles = activeQueryTiles(c, null);
        long visited = expectedVisitedTiles(c, null);
        assertEquals(qTiles, st.queryTiles(), c + ": query tiles");
        assertEquals(visited, st.keyTilesVisited(), c + ": key tiles visited");
        assertTrue(st.keyTilesSkipped() > 0, c + ": keyTilesSkipped = " + st.keyTilesSkipped() + " (visited "
                + st.keyTilesVisited() + " of " + qTiles * kTiles + " pairs)");
        assertEquals(qTiles * kTiles - visited, st.keyTilesSkipped(), c + ": key tiles skipped = all pairs − visited");
        assertEquals(0, st.rowsSkipped(), c + ": rows skipped without a gate");
    }

    /** Zero gates skip their rows on both paths; flash also leaves them out of its query tiles. */
    @ParameterizedTest
    @ValueSource(strings = {"FLASH", "MATERIALIZED"})
    void zeroGatesSkipRows(String algoName) {
        Algorithm algo = Algorithm.valueOf(algoName);
        for (Case c : cases().stream().filter(x -> x.gate() != Gate.NONE).toList()) {
            Tensor gate = inputs(c).gate();
            long zeros = 0;
            for (float x : gate.toFloatArray()) {
                if (x == 0f) {
                    zeros++;
                }
            }
            assertTrue(zeros > 0, c + ": the gate has zeros");
            ExecutionStats st = three.run(request(c, algo)).stats();
            assertEquals(zeros, st.rowsSkipped(), c + " " + algo + ": rowsSkipped");
            if (algo == Algorithm.FLASH) {
                assertEquals(activeQueryTiles(c, gate), st.queryTiles(), c + " " + algo + ": query tiles of active rows");
                assertEquals(expectedVisitedTiles(c, gate), st.keyTilesVisited(), c + " " + algo + ": key tiles visited");
            }
        }
    }

    /**
     * Long rows of peaked scores (std 3, S = 16384) against the float64 reference in f32: the materialized path summed
     * a row's 8192 exp values in one fp32 sum, its lse 3.7e-6 low and o 3.2e-5 off (2.7e-5 and 5.9e-5 at S = 32768).
     * And gates so small that gate / l is subnormal (1e-42): their outputs, subnormal too, within one ulp of the
     * reference's (they were 3 to 7 ulps off on every algorithm).
     */
    @ParameterizedTest
    @ValueSource(strings = {"FLASH", "MATERIALIZED", "SPARSE"})
    void longRowsAndTinyGatesKeepF32Precision(String algoName) {
        Algorithm algo = Algorithm.valueOf(algoName);
        int l = 32;
        int d = 64;
        for (int s : new int[] {16384, 300}) {
            boolean tiny = s == 300;
            Random r = new Random(8222 + s);
            float[] q = new float[2 * l * d];
            float[] k = new float[s * d];
            float[] v = new float[s * d];
            for (int i = 0; i < q.length; i++) {
                q[i] = 3f * (float) r.nextGaussian();
            }
            for (int i = 0; i < k.length; i++) {
                k[i] = (float) r.nextGaussian();
                v[i] = (float) r.nextGaussian();
            }
            float[] g = new float[l * 2];
            for (int i = 0; i < g.length; i++) {
                g[i] = tiny ? 1e-42f : i % 2 == 0 ? 1f : 0.37f;
            }
            Tensor qt = Tensor.ofFloats(q, 1, 2, l, d);
            Tensor kt = Tensor.ofFloats(k, 1, 1, s, d);
            Tensor vt = Tensor.ofFloats(v, 1, 1, s, d);
            Tensor gt = Tensor.ofFloats(g, 1, l, 2);
            ReferenceAttention.Output ref = ReferenceAttention.compute(qt, kt, vt, gt, ReferenceAttention.Rule.dense(),
                    1 / Math.sqrt(d), DType.F32);
            AttentionResult res = three.run(AttentionRequest.builder(qt, kt, vt).gate(gt).algorithm(algo).wantLse(true).build());
            if (!tiny) {
                assertMatches(algo + " S=" + s, ref, res, 1e-5, d);
                continue;
            }
            float[] o = res.o().toFloatArray();
            for (int t = 0; t < o.length; t++) {
                float want = (float) ref.o()[t];
                assertTrue(Math.abs(o[t] - want) <= Float.MIN_VALUE, algo + ": gate 1e-42, o[" + t + "] = " + o[t]
                        + ", reference " + ref.o()[t] + " (" + Math.round(Math.abs(o[t] - want) / Float.MIN_VALUE) + " ulps)");
            }
        }
    }

    /** Materialized holds the L × S float scores; flash never does. */
    @Test
    void workspaceReflectsTheAlgorithm() {
        for (Case c : cases().stream().filter(x -> x.name().startsWith("long-") || x.name().startsWith("gqa-")).toList()) {
            long scores = 4L * c.l() * c.s();
            ExecutionStats m = three.run(request(c, Algorithm.MATERIALIZED)).stats();
            assertTrue(m.workspaceBytes() >= scores, c + ": materialized workspace " + m.workspaceBytes() + " < 4·L·S = " + scores);
            if (c.l() >= 300) {
                ExecutionStats f = three.run(request(c, Algorithm.FLASH)).stats();
                assertTrue(f.workspaceBytes() > 0 && f.workspaceBytes() < scores,
                        c + ": flash workspace " + f.workspaceBytes() + " vs 4·L·S = " + scores);
            }
        }
    }

    // ------------------------------------------------------------------ bad input

    private static Tensor t(int... shape) {
        return gaussian(new Random(shape.length), shape);
    }

    static Stream<Arguments> badShapes() {
        return Stream.of(
                Arguments.of("H not divisible by Hkv", t(1, 3, 8, 16), t(1, 2, 8, 16), t(1, 2, 8, 16), null),
                Arguments.of("L > S", t(1, 2, 9, 16), t(1, 2, 8, 16), t(1, 2, 8, 16), null),
                Arguments.of("D differs", t(1, 2, 8, 16), t(1, 2, 8, 32), t(1, 2, 8, 32), null),
                Arguments.of("batch differs", t(2, 2, 8, 16), t(1, 2, 8, 16), t(1, 2, 8, 16), null),
                Arguments.of("k and v differ", t(1, 2, 8, 16), t(1, 2, 8, 16), t(1, 2, 9, 16), null),
                Arguments.of("v has another D", t(1, 2, 8, 16), t(1, 2, 8, 16), t(1, 2, 8, 8), null),
                Arguments.of("q rank 3", t(2, 8, 16), t(1, 2, 8, 16), t(1, 2, 8, 16), null),
                Arguments.of("gate (B, H, L)", t(1, 2, 8, 16), t(1, 2, 8, 16), t(1, 2, 8, 16), t(1, 2, 8)),
                Arguments.of("gate rank 2", t(1, 2, 8, 16), t(1, 2, 8, 16), t(1, 2, 8, 16), t(8, 2)),
                Arguments.of("gate batch", t(1, 2, 8, 16), t(1, 2, 8, 16), t(1, 2, 8, 16), t(2, 8, 2)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badShapes")
    void badShapesAreRejected(String what, Tensor q, Tensor k, Tensor v, Tensor gate) {
        ShapeException e = assertThrows(ShapeException.class,
                () -> one.run(AttentionRequest.builder(q, k, v).gate(gate).build()), what);
        assertFalse(e.getMessage().isBlank() || e.getMessage().contains("\n"), what + ": message '" + e.getMessage() + "'");
    }

    @ParameterizedTest
    @ValueSource(floats = {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY})
    void nonFiniteGateIsRejected(float bad) {
        Tensor q = t(1, 2, 8, 16);
        Tensor k = t(1, 2, 8, 16);
        float[] g = new float[8 * 2];
        java.util.Arrays.fill(g, 0.5f);
        g[5] = bad;
        Tensor gate = Tensor.ofFloats(g, 1, 8, 2);
        for (Algorithm a : new Algorithm[] {Algorithm.FLASH, Algorithm.MATERIALIZED}) {
            assertThrows(ShapeException.class,
                    () -> one.run(AttentionRequest.builder(q, k, k).gate(gate).algorithm(a).build()), "gate " + bad + " " + a);
        }
    }

    @Test
    void layoutThatDoesNotFitIsRejected() {
        Tensor q = t(1, 4, 77, 16);
        Tensor k = t(1, 2, 300, 16);
        // S = 300 at BS = 64 needs 5 × 5 blocks.
        Pattern threeBlocks = Rule.layout(64, 1, 3, new boolean[9]).toPattern(dir, "bad-blocks");
        PatternException e1 = assertThrows(PatternException.class,
                () -> AttentionRequest.builder(q, k, k).pattern(threeBlocks).build(), "3x3 layout for S=300, BS=64");
        assertFalse(e1.getMessage().contains("\n"), e1.getMessage());
        PatternException e1c = assertThrows(PatternException.class,
                () -> AttentionRequest.builder(q, k, k).pattern(threeBlocks).causal(true).build(), "3x3 layout + causal");
        assertFalse(e1c.getMessage().contains("\n"), e1c.getMessage());
        // Two heads for H = 4: neither 1 nor H.
        Pattern twoHeads = Rule.layout(64, 2, 5, new boolean[50]).toPattern(dir, "bad-heads");
        PatternException e2 = assertThrows(PatternException.class,
                () -> AttentionRequest.builder(q, k, k).pattern(twoHeads).build(), "2-head layout for H=4");
        assertFalse(e2.getMessage().contains("\n"), e2.getMessage());
    }

    @Test
    void closedEngineRefusesWork() {
        CpuAttentionEngine e = new CpuAttentionEngine(2);
        e.close();
        Tensor q = t(1, 1, 4, 16);
        assertThrows(IllegalStateException.class, () -> e.run(AttentionRequest.builder(q, q, q).build()));
        assertThrows(IllegalArgumentException.class, () -> new CpuAttentionEngine(0));
    }
}
