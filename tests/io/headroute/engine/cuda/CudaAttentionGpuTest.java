package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.bench.AttentionBenchmark;
import io.headroute.cuda.Resources;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.OutputAssertions;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cpu.ReferenceAttention;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The GPU engine against the CPU engine on fresh random inputs, outputs poisoned with NaN before every
 * run. Tolerances by dtype: the relative L2 error of o within 1e-5 (f32), 2e-3 (f16), 1e-2 (bf16); the
 * CPU reference for f16/bf16 runs on the same rounded inputs. Skips itself without a usable GPU.
 */
@Tag("gpu")
class CudaAttentionGpuTest {
    private static CudaAttentionEngine gpu;
    private static CpuAttentionEngine cpu;

    @BeforeAll
    static void open() {
        gpu = GpuTests.openEngine(true);
        cpu = new CpuAttentionEngine();
    }

    @AfterAll
    static void close() {
        Resources.closeAll(cpu, gpu); // the engine's close throws if any device buffer leaked
    }

    @AfterEach
    void nothingLeftAllocated() {
        GpuTests.assertNothingAllocated(gpu); // the sparse cases' layouts stay cached per pattern until cleared
    }

    static double tolerance(DType t) {
        return t.tolerance();
    }

    static Tensor gaussian(Random r, DType t, long... shape) {
        float[] x = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return Tensor.ofFloats(t, x, shape);
    }

    /** A gate with about a third of its entries zero, and the first 64 rows of head 0 all zero (a skipped tile). */
    static Tensor gate(Random r, int b, int l, int h) {
        float[] g = new float[b * l * h];
        for (int i = 0; i < g.length; i++) {
            g[i] = r.nextInt(3) == 0 ? 0f : 0.25f + r.nextFloat();
        }
        for (int bb = 0; bb < b; bb++) {
            for (int i = 0; i < Math.min(64, l); i++) {
                g[(bb * l + i) * h] = 0f;
            }
        }
        return Tensor.ofFloats(g, b, l, h);
    }

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        int[][] shapes = {{1, 4, 4, 77, 77}, {2, 4, 2, 77, 300}, {1, 4, 1, 1, 1000}, {1, 2, 2, 1000, 1000}, {1, 8, 2, 130, 130}};
        for (Algorithm a : new Algorithm[] {Algorithm.FLASH, Algorithm.MATERIALIZED}) {
            for (DType t : new DType[] {DType.F32, DType.F16, DType.BF16}) {
                for (int d : new int[] {64, 128}) {
                    for (int[] s : shapes) {
                        for (boolean causal : new boolean[] {false, true}) {
                            out.add(Arguments.of(a, t, d, s[0], s[1], s[2], s[3], s[4], causal, false));
                        }
                    }
                    out.add(Arguments.of(a, t, d, 2, 4, 2, 300, 300, true, true));
                    if (a == Algorithm.MATERIALIZED) {
                        // MQA past L = 1 (the flash kernels' MQA at L > 1: the scale and tiling cases).
                        for (boolean causal : new boolean[] {false, true}) {
                            out.add(Arguments.of(a, t, d, 1, 4, 1, 77, 150, causal, causal));
                        }
                    }
                }
            }
        }
        // The other head dims each kernel takes.
        for (int d : new int[] {32, 96}) {
            out.add(Arguments.of(Algorithm.FLASH, DType.BF16, d, 1, 2, 1, 200, 333, true, false));
            out.add(Arguments.of(Algorithm.FLASH, DType.F16, d, 1, 2, 2, 200, 200, false, true));
        }
        for (int d : new int[] {16, 100, 256}) {
            out.add(Arguments.of(Algorithm.FLASH, DType.F32, d, 1, 2, 1, 150, 150, true, true));
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} {1} D={2} B={3} H={4} Hkv={5} L={6} S={7} causal={8} gate={9}")
    @MethodSource("cases")
    void matchesTheCpuEngine(Algorithm algo, DType dtype, int d, int b, int h, int hkv, int l, int s, boolean causal,
            boolean gated) {
        Random r = new Random(31L * l + 7L * s + d + (causal ? 1 : 0) + dtype.ordinal());
        Tensor q = gaussian(r, DType.F32, b, h, l, d);
        Tensor k = gaussian(r, DType.F32, b, hkv, s, d);
        Tensor v = gaussian(r, DType.F32, b, hkv, s, d);
        AttentionRequest.Builder rb = AttentionRequest.builder(q, k, v).causal(causal).dtype(dtype).algorithm(algo).wantLse(true);
        if (gated) {
            rb.gate(gate(r, b, l, h));
        }
        AttentionRequest req = rb.build();
        AttentionResult got = gpu.run(req);
        String what = algo.cliName() + " " + dtype.cliName() + " D=" + d + " B=" + b + " H=" + h + " Hkv=" + hkv + " L=" + l
                + " S=" + s + (causal ? " causal" : "") + (gated ? " gated" : "");
        if (dtype == DType.F32) {
            // The float64 reference: the f32 CPU engine is itself only held to 1e-5 of it.
            compare(got, ReferenceAttention.compute(req, causal ? ReferenceAttention.Rule.causalRule() : ReferenceAttention.Rule.dense()),
                    tolerance(dtype), what);
            return;
        }
        AttentionResult want = cpu.run(AttentionRequest.builder(q, k, v).causal(causal).dtype(dtype)
                .algorithm(Algorithm.FLASH).wantLse(true).gate(req.gate()).build());
        boolean bf16Scores = algo == Algorithm.MATERIALIZED && dtype == DType.BF16;
        compare(got, want, tolerance(dtype), what, !bf16Scores);
        if (bf16Scores) {
            // Row by row against a reference that rounds scores and P to bf16 as the kernels do.
            OutputAssertions.assertOutputClose(got.o().toFloatArray(), bf16ScoresReference(req, causal), d, tolerance(dtype),
                    what + " vs bf16 scores");
        }
    }

    static Stream<Arguments> tilingCases() {
        List<Arguments> out = new ArrayList<>();
        for (FlashPlan.Tiling tiling : new FlashPlan.Tiling[] {FlashPlan.Tiling.W2, FlashPlan.Tiling.W4X2, FlashPlan.Tiling.WG,
            FlashPlan.Tiling.WGP, FlashPlan.Tiling.WGX2, FlashPlan.Tiling.WGPX2}) {
            for (DType t : new DType[] {DType.F16, DType.BF16}) {
                for (int d : new int[] {64, 96, 128}) {
                    if (tiling.appliesTo(t, d, false)) {
                        out.add(Arguments.of(tiling, t, d, 1, 4, 2, 77, 300, true, true));
                        out.add(Arguments.of(tiling, t, d, 1, 2, 2, 130, 130, false, false));
                    }
                }
            }
            for (int d : new int[] {64, 128}) {
                out.add(Arguments.of(tiling, DType.BF16, d, 1, 4, 1, 1, 1000, true, false));
                out.add(Arguments.of(tiling, DType.BF16, d, 1, 2, 2, 1000, 1000, true, true));
                out.add(Arguments.of(tiling, DType.F16, d, 2, 4, 4, 200, 200, false, true));
            }
        }
        return out.stream();
    }

    /**
     * The other tilings of the f16/bf16 flash kernels against the CPU engine: W2 (2 warps × 32 rows,
     * single-buffered), W4X2 (4 warps × 32 rows, 128-row blocks, so gates give 128-row work lists), WG
     * (wgmma), WGP (wgmma, P·V overlapping the next softmax), WGX2 and WGPX2 (WG and WGP with two warpgroups on
     * 128-row blocks); the wgmma tilings need compute capability 9.0 (skipped on other GPUs).
     */
    @ParameterizedTest(name = "{0} {1} D={2} B={3} H={4} Hkv={5} L={6} S={7} causal={8} gate={9}")
    @MethodSource("tilingCases")
    void otherTilingsMatchTheCpuEngine(FlashPlan.Tiling tiling, DType dtype, int d, int b, int h, int hkv, int l, int s,
            boolean causal, boolean gated) {
        Random r = new Random(17L * l + 5L * s + d + (causal ? 1 : 0) + dtype.ordinal());
        Tensor q = gaussian(r, DType.F32, b, h, l, d);
        Tensor k = gaussian(r, DType.F32, b, hkv, s, d);
        Tensor v = gaussian(r, DType.F32, b, hkv, s, d);
        AttentionRequest.Builder rb = AttentionRequest.builder(q, k, v).causal(causal).dtype(dtype).wantLse(true);
        if (gated) {
            rb.gate(gate(r, b, l, h));
        }
        AttentionRequest req = rb.build();
        compare(runIn(tiling, req), cpu.run(req), tolerance(dtype), tiling.cliName() + " " + dtype.cliName() + " D=" + d + " B=" + b + " H=" + h
                + " Hkv=" + hkv + " L=" + l + " S=" + s + (causal ? " causal" : "") + (gated ? " gated" : ""));
    }

    static Stream<Arguments> diagonalCases() {
        List<Arguments> out = new ArrayList<>();
        for (FlashPlan.Tiling tiling : FlashPlan.Tiling.values()) {
            for (int[] ls : new int[][] {{129, 129}, {193, 193}, {129, 321}}) {
                out.add(Arguments.of(tiling, ls[0], ls[1]));
            }
        }
        return out.stream();
    }

    /**
     * Causal rows whose last allowed key is the first of a key tile (a position ≡ 0 mod 64 as the last row of a
     * block or, in the two-warpgroup tilings, of a warpgroup: L = S = 129 and 193, and L = 129 under S = 321), each
     * row's own key carrying nearly all of its weight (that key is 3× the row's query): a key tile skipped, or a
     * mask cut, one key too early changes that row's output wholesale, which a comparison of the whole output
     * would average away; compared row by row, in every tiling.
     */
    @ParameterizedTest(name = "{0} L={1} S={2}")
    @MethodSource("diagonalCases")
    void causalRowsKeepTheirOwnKeyInEveryTiling(FlashPlan.Tiling tiling, int l, int s) {
        int d = 64;
        int h = 2;
        Random r = new Random(41L * l + s + tiling.ordinal());
        float[] q = gaussian(r, DType.F32, 1, h, l, d).toFloatArray();
        float[] k = gaussian(r, DType.F32, 1, h, s, d).toFloatArray();
        for (int hh = 0; hh < h; hh++) {
            for (int i = 0; i < l; i++) {
                for (int x = 0; x < d; x++) {
                    k[(hh * s + i + s - l) * d + x] = 3f * q[(hh * l + i) * d + x];
                }
            }
        }
        AttentionRequest req = AttentionRequest.builder(Tensor.ofFloats(q, 1, h, l, d), Tensor.ofFloats(k, 1, h, s, d),
                gaussian(r, DType.F32, 1, h, s, d)).causal(true).dtype(DType.BF16).build();
        float[] got = (tiling == FlashPlan.Tiling.W4 ? gpu.run(req) : runIn(tiling, req)).o().toFloatArray();
        float[] want = cpu.run(req).o().toFloatArray();
        for (int row = 0; row < h * l; row++) {
            float[] g = java.util.Arrays.copyOfRange(got, row * d, row * d + d);
            float[] e = java.util.Arrays.copyOfRange(want, row * d, row * d + d);
            double rel = AttentionBenchmark.relativeL2(g, e);
            assertTrue(rel <= tolerance(DType.BF16), tiling.cliName() + " L=" + l + " S=" + s + ": row " + row % l + " of head "
                    + row / l + ": relative L2 error " + rel);
        }
    }

    static Stream<Arguments> scaleCases() {
        List<Arguments> out = new ArrayList<>();
        // kernel: a tensor-core tiling (W4, W2, W4X2, WG, WGP, WGX2, WGPX2), "f32", or "sparse" (W4 over a window layout)
        String[][] kernels = {{"W4", "bf16"}, {"W4", "f16"}, {"W2", "bf16"}, {"W4X2", "f16"}, {"WG", "bf16"}, {"WG", "f16"},
            {"WGP", "bf16"}, {"WGP", "f16"}, {"WGX2", "bf16"}, {"WGPX2", "f16"}, {"f32", "f32"}, {"sparse", "bf16"},
            {"sparse", "f16"}};
        int n = 0;
        for (String[] kern : kernels) {
            for (float scale : new float[] {-0.3f, 0f, 0.9f}) {
                for (int d : new int[] {64, 128}) {
                    out.add(Arguments.of(kern[0], DType.parse(kern[1]), scale, d, n++ % 2 == 0));
                }
            }
        }
        return out.stream();
    }

    /**
     * Any finite scale, on scores whose row maxima keep growing along the keys (key j's row scaled by
     * 1 + 9j/S): a negative or zero scale takes the kernels' scale-first path; at 0.9 a row's max (log2
     * units) grows by more than 8 between key tiles and by more than 128 along the row, so the tensor-core
     * loop must rescale O and l (it skips that while the max grows by at most 8) or P overflows, whatever
     * the dtype (with the rescale disabled, 20 of the 42 cases without the wgmma tilings read NaN or inf). L = 130 and S = 300 leave a ragged last
     * key tile (its rows zero-filled) and, causal, diagonal tiles.
     */
    @ParameterizedTest(name = "{0} {1} scale={2} D={3} causal={4}")
    @MethodSource("scaleCases")
    void anyScaleAndGrowingScoresMatchTheCpuEngine(String kernel, DType dtype, float scale, int d, boolean causal) {
        int b = 1;
        int h = 2;
        int l = 130;
        int s = 300;
        Random r = new Random(1000L * d + Float.floatToIntBits(scale) + kernel.hashCode() + dtype.ordinal());
        Tensor q = gaussian(r, DType.F32, b, h, l, d);
        float[] kx = gaussian(r, DType.F32, b, 1, s, d).toFloatArray();
        for (int j = 0; j < s; j++) {
            for (int x = 0; x < d; x++) {
                kx[j * d + x] *= 1f + 9f * j / s;
            }
        }
        Tensor k = Tensor.ofFloats(kx, b, 1, s, d);
        Tensor v = gaussian(r, DType.F32, b, 1, s, d);
        Pattern p = kernel.equals("sparse") ? Patterns.parse("window:150") : Patterns.parse("dense");
        AttentionRequest req = AttentionRequest.builder(q, k, v).pattern(p).causal(causal).scale(scale).dtype(dtype)
                .algorithm(kernel.equals("sparse") ? Algorithm.SPARSE : Algorithm.FLASH).wantLse(true).build();
        AttentionResult got = switch (kernel) {
            case "W4", "f32", "sparse" -> gpu.run(req);
            default -> runIn(FlashPlan.Tiling.valueOf(kernel), req);
        };
        String what = kernel + " " + dtype.cliName() + " scale=" + scale + " D=" + d + (causal ? " causal" : "");
        if (dtype == DType.F32) {
            // Against the float64 reference (the f32 CPU engine is itself only held to 1e-5 of it), over the whole output
            // only: scores of magnitude ~100 carry ~1e-5 absolute fp32 rounding, which each probability inherits as
            // relative error, in any fp32 implementation. Measured row by row against float64 on these inputs: this
            // kernel's worst rows 1.15e-5 to 1.38e-5 (scale -0.3 and 0.9), the f32 CPU engine's 5.7e-6 to 2.6e-5;
            // their whole outputs 1e-6 to 2e-6.
            compare(got, ReferenceAttention.compute(req, ReferenceAttention.Rule.parse(req.pattern().spec())), tolerance(dtype), what,
                    false);
        } else {
            compare(got, cpu.run(AttentionRequest.builder(q, k, v).pattern(p).causal(causal).scale(scale).dtype(dtype)
                    .algorithm(Algorithm.FLASH).wantLse(true).build()), tolerance(dtype), what);
        }
        assertEquals(kernel.equals("sparse") ? Algorithm.SPARSE : Algorithm.FLASH, got.stats().algorithm(), what);
    }

    /** {@code req} on the shared engine in {@code tiling} (back to W4 after); skipped where the GPU cannot run it. */
    static AttentionResult runIn(FlashPlan.Tiling tiling, AttentionRequest req) {
        String why = gpu.tilingUnavailable(tiling);
        org.junit.jupiter.api.Assumptions.assumeTrue(why == null, () -> tiling.cliName() + ": " + why);
        gpu.setMmaTiling(tiling);
        try {
            return gpu.run(req);
        } finally {
            gpu.setMmaTiling(FlashPlan.Tiling.W4);
        }
    }

    /** {@link #compare(AttentionResult, AttentionResult, double, String, boolean)} row by row. */
    static void compare(AttentionResult got, AttentionResult want, double tol, String what) {
        compare(got, want, tol, what, true);
    }

    /**
     * o within {@code tol} relative L2 of the reference's, over the whole output and, {@code rowByRow}, in each row
     * (one wrong row of n = B·H·L moves the whole output's error by only 1/sqrt(n) of its own); each lse within
     * {@code tol} relative (absolute below 1); −∞ exactly where the reference's is. Whole output only where the
     * kernel's arithmetic departs from the reference's by design and a row can inherit more than {@code tol} of
     * that departure: scores rounded to bf16 before the softmax (each probability moves by up to |s|·2⁻⁹, which
     * the reference, in fp32, does not; those cases are also checked row by row against {@link #bf16ScoresReference},
     * which rounds as the kernels do), or fp32 scores of magnitude ~100 (each probability then carries the
     * exponent's rounding, |s|·2⁻²⁴, in both implementations).
     */
    static void compare(AttentionResult got, AttentionResult want, double tol, String what, boolean rowByRow) {
        compare(got, want.o().toFloatArray(), want.lse().toFloatArray(), tol, what, rowByRow);
    }

    /** {@code got} against the float64 {@link ReferenceAttention} output, row by row (for f32: the CPU engine is itself 1e-5 off it). */
    static void compare(AttentionResult got, ReferenceAttention.Output want, double tol, String what) {
        compare(got, want, tol, what, true);
    }

    /** {@code got} against the float64 {@link ReferenceAttention} output; row by row where {@code rowByRow}. */
    static void compare(AttentionResult got, ReferenceAttention.Output want, double tol, String what, boolean rowByRow) {
        compare(got, want.oFloats(), want.lseFloats(), tol, what, rowByRow);
    }

    private static void compare(AttentionResult got, float[] wantO, float[] wantLse, double tol, String what, boolean rowByRow) {
        OutputAssertions.assertOutputClose(got.o().toFloatArray(), wantO, (int) got.o().shape()[3], tol, what, rowByRow);
        OutputAssertions.assertLseClose(got.lse().toFloatArray(), wantLse, tol, what);
    }

    @Test
    void materializedEvaluatesTokenPatterns() {
        Random r = new Random(5);
        Tensor q = gaussian(r, DType.F32, 1, 2, 150, 64);
        Tensor k = gaussian(r, DType.F32, 1, 2, 300, 64);
        Tensor v = gaussian(r, DType.F32, 1, 2, 300, 64);
        for (String spec : new String[] {"window:7", "longformer:5:3"}) {
            for (boolean causal : new boolean[] {false, true}) {
                Pattern p = Patterns.parse(spec);
                AttentionRequest req = AttentionRequest.builder(q, k, v).pattern(p).causal(causal)
                        .algorithm(Algorithm.MATERIALIZED).wantLse(true).build();
                AttentionResult want = cpu.run(req);
                compare(gpu.run(req), want, 1e-5, spec + (causal ? "+causal" : ""));
            }
        }
    }

    @Test
    void materializedScoresInFp32OrTheInputDTypeAndSaysWhich() {
        Random r = new Random(7);
        int b = 2;
        int h = 4;
        int l = 77;
        int s = 300;
        Tensor q = gaussian(r, DType.F32, b, h, l, 64);
        Tensor k = gaussian(r, DType.F32, b, 2, s, 64);
        Tensor v = gaussian(r, DType.F32, b, 2, s, 64);
        Tensor g = gate(r, b, l, h);
        for (DType dt : new DType[] {DType.F16, DType.BF16}) {
            AttentionResult want = cpu.run(AttentionRequest.builder(q, k, v).causal(true).gate(g).dtype(dt)
                    .algorithm(Algorithm.FLASH).wantLse(true).build());
            for (boolean fp32 : new boolean[] {false, true}) {
                AttentionResult got = gpu.run(AttentionRequest.builder(q, k, v).causal(true).gate(g).dtype(dt)
                        .algorithm(Algorithm.MATERIALIZED).fp32Scores(fp32).wantLse(true).build());
                String what = "materialized " + dt.cliName() + (fp32 ? " fp32 scores" : " input-dtype scores");
                compare(got, want, tolerance(dt), what, fp32 || dt != DType.BF16);
                if (!fp32 && dt == DType.BF16) {
                    // Row by row against a reference that rounds scores and P to bf16 as the kernels do.
                    OutputAssertions.assertOutputClose(got.o().toFloatArray(), bf16ScoresReference(AttentionRequest.builder(q, k, v)
                            .causal(true).gate(g).dtype(dt).build(), true), 64, tolerance(dt), what + " vs bf16 scores");
                }
                assertEquals(fp32 ? DType.F32 : dt, got.stats().scoreDType(), what);
                long cells = (long) b * h * l * s;
                assertEquals(fp32 ? cells * (4 + dt.byteSize()) : cells * dt.byteSize(), got.stats().workspaceBytes(), what);
            }
        }
    }

    /**
     * o (B, H, L, D) of the materialized kernels with bf16 scores, in float64 otherwise: inputs rounded to bf16, S =
     * scale·Q·Kᵀ rounded to bf16 (the GEMM's output), the row softmax of those scores times the gate, P rounded to bf16
     * (the P·V GEMM's input), o = P·V unrounded. Dense, or causal when {@code causal}; GQA; the request's gate.
     * Measured on the emulator (B=2, H=4, Hkv=2, L=77, S=300, gated, D=64 and 128, with and without causal): the
     * kernels' worst row is 2.0e-3 to 2.3e-3 off this reference, 8.3e-3 to 1.02e-2 off the CPU engine's (fp32 scores).
     */
    static float[] bf16ScoresReference(AttentionRequest req, boolean causal) {
        AttentionShape sh = req.shape();
        int b = sh.batch();
        int h = sh.heads();
        int hkv = sh.kvHeads();
        int l = sh.qLen();
        int s = sh.kvLen();
        int d = sh.headDim();
        float[] q = req.q().toDType(DType.BF16).toFloatArray();
        float[] k = req.k().toDType(DType.BF16).toFloatArray();
        float[] v = req.v().toDType(DType.BF16).toFloatArray();
        float[] g = req.gate() == null ? null : req.gate().toFloatArray();
        float[] o = new float[b * h * l * d];
        double[] sc = new double[s];
        double[] acc = new double[d];
        for (int bb = 0; bb < b; bb++) {
            for (int hh = 0; hh < h; hh++) {
                int kv = (bb * hkv + hh / (h / hkv)) * s;
                for (int i = 0; i < l; i++) {
                    int row = (bb * h + hh) * l + i;
                    double gate = g == null ? 1 : g[(bb * l + i) * h + hh];
                    int last = causal ? Math.min(s - 1, i + s - l) : s - 1;
                    if (gate == 0 || last < 0) {
                        continue;
                    }
                    double m = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= last; j++) {
                        double dot = 0;
                        for (int x = 0; x < d; x++) {
                            dot += (double) q[row * d + x] * k[(kv + j) * d + x];
                        }
                        sc[j] = io.headroute.tensor.HalfFloats.roundToBf16((float) (req.scale() * dot));
                        m = Math.max(m, sc[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= last; j++) {
                        sum += Math.exp(sc[j] - m);
                    }
                    java.util.Arrays.fill(acc, 0);
                    for (int j = 0; j <= last; j++) {
                        double pj = io.headroute.tensor.HalfFloats.roundToBf16((float) (Math.exp(sc[j] - m) * gate / sum));
                        for (int x = 0; x < d; x++) {
                            acc[x] += pj * v[(kv + j) * d + x];
                        }
                    }
                    for (int x = 0; x < d; x++) {
                        o[row * d + x] = (float) acc[x];
                    }
                }
            }
        }
        return o;
    }

    @Test
    void whatNoKernelTakesIsRefusedBeforeAnyWork() {
        Random r = new Random(6);
        Tensor q = gaussian(r, DType.F32, 1, 1, 64, 256);
        AttentionRequest req = AttentionRequest.builder(q, q, q).pattern(Patterns.parse("bigbird:64:1:1:1:1"))
                .dtype(DType.BF16).build();
        long before = gpu.pool().stats().allocations();
        assertThrows(UnsupportedOperationException.class, () -> gpu.run(req));
        assertEquals(before, gpu.pool().stats().allocations(), "nothing was allocated for a refused request");
    }

    @Test
    void flashHoldsOnlyInputsAndOutputs() {
        Random r = new Random(8);
        int l = 2048;
        Tensor q = gaussian(r, DType.F32, 1, 8, l, 128);
        AttentionRequest req = AttentionRequest.builder(q, q, q).dtype(DType.BF16).causal(true).build();
        AttentionResult res = gpu.run(req);
        long io = 4L * 8 * l * 128 * 2 + 4L * 8 * l;
        assertTrue(res.stats().peakDeviceBytes() <= io * 105 / 100,
                "flash peak " + res.stats().peakDeviceBytes() + " B vs q+k+v+o+lse " + io + " B");
        AttentionResult mat = gpu.run(AttentionRequest.builder(q, q, q).dtype(DType.BF16).causal(true)
                .algorithm(Algorithm.MATERIALIZED).build());
        assertTrue(mat.stats().workspaceBytes() >= 8L * l * l * 2, "materialized scores are tagged and counted");
    }

    /**
     * A gated call holds its inputs, outputs, gate and the work list built from the gate, and nothing else:
     * the peak of a fresh engine (no cached blocks) is the sum of those buffers, each rounded up by the pool,
     * and {@link CudaAttentionEngine#gateWorkBytes} predicts the work list's part. L = 300, H = 2, bf16, in each
     * tiling this GPU runs (64-row tiles: 5 per head; W4X2's 128-row tiles: 3).
     */
    @Test
    void gatedCallHoldsTheWorkListItPredicts() {
        int l = 300;
        int h = 2;
        int d = 64;
        Random r = new Random(12);
        Tensor q = gaussian(r, DType.F32, 1, h, l, d);
        Tensor k = gaussian(r, DType.F32, 1, h, l, d);
        Tensor v = gaussian(r, DType.F32, 1, h, l, d);
        float[] token = new float[l * h]; // head 0 every row; head 1 every 7th row: compaction, 5 + 1 tiles
        float[] block = new float[l * h]; // head 1 off on rows 64…191 (tiles 1 and 2): a list of 8 of 10 tiles
        float[] none = new float[l * h]; // no row off: the whole grid, no list
        for (int i = 0; i < l; i++) {
            token[i * h] = 1f;
            token[i * h + 1] = i % 7 == 0 ? 0.5f : 0f;
            block[i * h] = 1f;
            block[i * h + 1] = i >= 64 && i < 192 ? 0f : 0.25f;
            none[i * h] = 1f;
            none[i * h + 1] = i % 2 == 0 ? 0.5f : 1f;
        }
        long io = 3 * round(2L * h * l * d) + round(4L * l * h) + round(2L * h * l * d) + round(4L * h * l);
        for (FlashPlan.Tiling tiling : FlashPlan.Tiling.values()) {
            // 64-row tiles: 5 per head; W4X2's 128-row tiles: 3 per head. Then head 1's 43 routed rows of the
            // token gate compact into 1 tile (5 + 1, or 3 + 1); the block gate's off rows 64…191 switch off
            // tiles 1 and 2 of 64 rows but no tile of 128 (and compacting its 172 rows into 2 tiles saves only
            // 1 of 6 tiles' key tiles: not enough to pay), so W4X2 runs the whole grid there.
            boolean big = tiling.blockRows() == 128;
            long grid = big ? 6 : 10;
            // counts, compacted rows, room for every tile's triple, their total.
            long compactWork = 4L * h + 4L * h * l + 12 * grid + 4;
            long compactRounded = round(4L * h) + round(4L * h * l) + round(12 * grid) + round(4);
            long tileWork = 4 * grid + 12 * grid + 4;
            long tileRounded = round(4 * grid) + round(12 * grid) + round(4);
            Object[][] cases = big ? new Object[][] {{token, compactWork, compactRounded, 4L}, {block, 0L, 0L, 6L}, {none, 0L, 0L, 6L}}
                    : new Object[][] {{token, compactWork, compactRounded, 6L}, {block, tileWork, tileRounded, 8L}, {none, 0L, 0L, 10L}};
            for (Object[] c : cases) {
                Tensor g = Tensor.ofFloats(DType.F32, (float[]) c[0], 1, l, h);
                AttentionRequest req = AttentionRequest.builder(q, k, v).gate(g).dtype(DType.BF16).wantLse(true).build();
                assertEquals((long) c[1], CudaAttentionEngine.gateWorkBytes(req, tiling), "predicted work-list bytes, " + tiling);
                if (tiling == FlashPlan.Tiling.W4) {
                    assertEquals((long) c[1], CudaAttentionEngine.gateWorkBytes(req), "predicted work-list bytes, default tiling");
                }
                try (CudaAttentionEngine fresh = CudaAttentionEngine.open(0)) {
                    if (fresh.tilingUnavailable(tiling) != null) {
                        continue; // WG needs compute capability 9.0
                    }
                    // Poisoned like the shared engine's: gated rows no launched block writes must still come out 0, not
                    // whatever a fresh allocation held (the fill writes into o and lse, allocating nothing).
                    fresh.setPoisonOutputs(true);
                    fresh.setMmaTiling(tiling);
                    AttentionResult res = fresh.run(req);
                    assertEquals((long) c[3], res.stats().queryTiles(), "query tiles launched, " + tiling);
                    assertEquals(io + (long) c[2], res.stats().peakDeviceBytes(),
                            "peak = q, k, v, gate, o, lse and the work list, each rounded to the pool's 512 bytes, " + tiling);
                    compare(res, cpu.run(AttentionRequest.builder(q, k, v).gate(g).dtype(DType.BF16).wantLse(true).build()),
                            tolerance(DType.BF16), "gated bf16 " + tiling + ", L=300, work " + c[1]);
                }
            }
        }
    }

    /**
     * W4X2's gate work list counts 128-row tiles: head 1 off on rows 128…255 switches off its tile 1 of 3
     * (5 of 6 launched); the same gate in W4 switches off 64-row tiles 2 and 3 (8 of 10). Compacting head
     * 1's 172 live rows would launch 2 tiles, no fewer, so both run the tile list.
     */
    @Test
    void w4x2ListsOnlyIts128RowTilesWithALiveRow() {
        int l = 300;
        int h = 2;
        int d = 128;
        Random r = new Random(41);
        Tensor q = gaussian(r, DType.F32, 1, h, l, d);
        Tensor k = gaussian(r, DType.F32, 1, h, l, d);
        Tensor v = gaussian(r, DType.F32, 1, h, l, d);
        float[] g = new float[l * h];
        for (int i = 0; i < l; i++) {
            g[i * h] = 0.5f + r.nextFloat();
            g[i * h + 1] = i >= 128 && i < 256 ? 0f : 0.5f + r.nextFloat();
        }
        AttentionRequest req = AttentionRequest.builder(q, k, v).gate(Tensor.ofFloats(g, 1, l, h)).causal(true)
                .dtype(DType.BF16).wantLse(true).build();
        AttentionResult want = cpu.run(req);
        for (Object[] c : new Object[][] {{FlashPlan.Tiling.W4X2, 5L, 6L}, {FlashPlan.Tiling.W4, 8L, 10L}}) {
            FlashPlan.Tiling tiling = (FlashPlan.Tiling) c[0];
            AttentionResult got = runIn(tiling, req);
            assertEquals((long) c[1], got.stats().queryTiles(), tiling + ": query tiles launched of " + c[2]);
            compare(got, want, tolerance(DType.BF16), tiling + " block-gated causal bf16 L=300");
        }
    }

    private static long round(long bytes) {
        return (bytes + 511) / 512 * 512;
    }
}
