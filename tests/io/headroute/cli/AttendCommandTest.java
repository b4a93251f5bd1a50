package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.ShardMerge;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cuda.CudaProbe;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Npy;
import io.headroute.tensor.Safetensors;
import io.headroute.tensor.SafetensorsFile;
import io.headroute.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AttendCommandTest {
    @TempDir
    Path dir;

    private final Random rnd = new Random(7);

    private Tensor random(long... shape) {
        float[] x = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        return Tensor.ofFloats(x, shape);
    }

    private Path npy(String name, Tensor t) {
        Path p = dir.resolve(name + ".npy");
        Npy.write(p, t);
        return p;
    }

    private static AttentionResult direct(AttentionRequest.Builder b) {
        try (CpuAttentionEngine e = new CpuAttentionEngine(2)) {
            return e.run(b.build());
        }
    }

    /**
     * Returns {@code a} after checking every element is finite: JUnit's assertArrayEquals(float[]...) counts NaN equal to
     * NaN, so a comparison of two NaN-filled outputs (an engine that wrote nothing into poisoned memory) would pass.
     */
    private static float[] finite(float[] a, String what) {
        assertTrue(a.length > 0, what + " is empty");
        for (int i = 0; i < a.length; i++) {
            assertTrue(Float.isFinite(a[i]), what + "[" + i + "] = " + a[i]);
        }
        return a;
    }

    /** attend with --backend cpu --threads 2 and the given files; {@code more} adds options or replaces those two. */
    private List<String> args(Path q, Path k, Path v, Path out, String... more) {
        List<String> a = new ArrayList<>(List.of("attend", "--backend", "cpu", "--threads", "2", "--q", q.toString(), "--k",
                k.toString(), "--v", v.toString(), "--out", out.toString()));
        for (int i = 0; i < more.length; i++) {
            int at = (more[i].equals("--threads") || more[i].equals("--backend")) && i + 1 < more.length ? a.indexOf(more[i]) : -1;
            if (at >= 0) {
                a.set(at + 1, more[++i]);
            } else {
                a.add(more[i]);
            }
        }
        return a;
    }

    @Test
    void npyInputsGiveExactlyTheEnginesOutput() {
        Tensor q = random(2, 4, 37, 16);
        Tensor k = random(2, 2, 53, 16);
        Tensor v = random(2, 2, 53, 16);
        Path out = dir.resolve("o.npy");
        Cli r = Cli.run(args(npy("q", q), npy("k", k), npy("v", v), out, "--pattern", "window:9", "--causal", "--scale",
                "0.3", "--algo", "flash")).assertOk();
        assertTrue(r.out().startsWith("attend: cpu flash, B=2 H=4 Hkv=2 L=37 S=53 D=16, pattern window:9+causal, f32"), r.out());
        assertEquals(1, r.out().lines().count(), r.out());
        assertTrue(r.out().contains("workspace") && r.out().contains("key tiles skipped") && r.out().contains("rows skipped"),
                r.out());

        AttentionResult want = direct(AttentionRequest.builder(q, k, v).pattern(Patterns.parse("window:9")).causal(true)
                .scale(0.3f).algorithm(Algorithm.FLASH));
        Tensor got = Npy.read(out);
        assertEquals(DType.F32, got.dtype());
        assertArrayEquals(new long[] {2, 4, 37, 16}, got.shape());
        assertArrayEquals(want.o().toFloatArray(), finite(got.toFloatArray(), "o"));
    }

    @Test
    void materializedAlgorithmIsSelectable() {
        Tensor q = random(1, 2, 20, 8);
        Tensor k = random(1, 2, 20, 8);
        Tensor v = random(1, 2, 20, 8);
        Path out = dir.resolve("o.npy");
        Cli r = Cli.run(args(npy("q", q), npy("k", k), npy("v", v), out, "--algo", "materialized")).assertOk();
        // The CPU stores its scores in fp32, whatever the dtype, and says so.
        assertTrue(r.out().startsWith("attend: cpu materialized (scores f32),"), r.out());
        AttentionResult want = direct(AttentionRequest.builder(q, k, v).algorithm(Algorithm.MATERIALIZED));
        assertArrayEquals(want.o().toFloatArray(), finite(Npy.read(out).toFloatArray(), "materialized o"));
        Cli bf = Cli.run(args(npy("q", q), npy("k", k), npy("v", v), dir.resolve("o2.npy"), "--algo", "materialized", "--dtype",
                "bf16", "--fp32-scores")).assertOk();
        assertTrue(bf.out().startsWith("attend: cpu materialized (scores f32),"), bf.out());
        Cli flash = Cli.run(args(npy("q", q), npy("k", k), npy("v", v), dir.resolve("o3.npy"), "--algo", "flash")).assertOk();
        assertTrue(flash.out().startsWith("attend: cpu flash,"), "flash stores no scores: " + flash.out());
    }

    @Test
    void sparseAlgorithmWithBlockSizes() {
        Tensor q = random(1, 2, 77, 16);
        Tensor k = random(1, 1, 300, 16);
        Tensor v = random(1, 1, 300, 16);
        Path qf = npy("q", q);
        Path kf = npy("k", k);
        Path vf = npy("v", v);
        for (String bs : new String[] {"64", "128"}) {
            Path out = dir.resolve("o" + bs + ".npy");
            Cli r = Cli.run(args(qf, kf, vf, out, "--pattern", "window:20", "--causal", "--algo", "sparse", "--block-size", bs))
                    .assertOk();
            assertTrue(r.out().startsWith("attend: cpu sparse, B=1 H=2 Hkv=1 L=77 S=300 D=16"), r.out());
            AttentionResult want = direct(AttentionRequest.builder(q, k, v).pattern(Patterns.parse("window:20")).causal(true)
                    .algorithm(Algorithm.SPARSE).blockSize(Integer.parseInt(bs)));
            assertArrayEquals(want.o().toFloatArray(), finite(Npy.read(out).toFloatArray(), "block size " + bs + " o"),
                    "block size " + bs);
        }
        Path out = dir.resolve("bad.npy");
        Cli.run(args(qf, kf, vf, out, "--algo", "sparse", "--block-size", "32"))
                .assertBadInput("headroute attend", "--block-size must be 64 or 128, got 32", out);
        // --tiling picks a CUDA flash or sparse kernel: refused on the CPU, with another algorithm, or by an unknown name.
        String needs = "--tiling picks the CUDA flash or sparse kernel: needs --backend cuda and --algo flash or sparse";
        Cli.run(args(qf, kf, vf, out, "--algo", "flash", "--tiling", "w2")).assertBadInput("headroute attend", needs, out);
        Cli.run(args(qf, kf, vf, out, "--algo", "materialized", "--tiling", "w4")).assertBadInput("headroute attend", needs, out);
        Cli.run(args(qf, kf, vf, out, "--algo", "flash", "--tiling", "w3"))
                .assertBadInput("headroute attend", "unknown tiling 'w3' (expected w4, w2, w4x2, wg, wgp, wgx2 or wgpx2)", out);
    }

    @Test
    void safetensorsInputWithGateAndSafetensorsOutputs() {
        Tensor q = random(1, 4, 24, 8);
        Tensor k = random(1, 1, 30, 8);
        Tensor v = random(1, 1, 30, 8);
        float[] g = new float[24 * 4];
        for (int i = 0; i < g.length; i++) {
            g[i] = i % 5 == 0 ? 0f : (float) rnd.nextDouble();
        }
        Tensor gate = Tensor.ofFloats(g, 1, 24, 4);
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("q", q);
        m.put("k", k);
        m.put("v", v);
        m.put("gate", gate);
        Path in = dir.resolve("qkv.safetensors");
        Safetensors.write(in, m, Map.of());
        Path out = dir.resolve("o.safetensors");
        Path lse = dir.resolve("lse.safetensors");
        Cli r = Cli.run("attend", "--backend", "cpu", "--input", in.toString(), "--pattern", "longformer:3:2", "--out",
                out.toString(), "--lse", lse.toString()).assertOk();
        assertTrue(r.out().contains("rows skipped 20"), r.out());

        AttentionResult want = direct(AttentionRequest.builder(q, k, v).gate(gate).pattern(Patterns.parse("longformer:3:2"))
                .wantLse(true));
        SafetensorsFile o = Safetensors.read(out);
        assertEquals(List.of("o"), o.names());
        assertEquals("longformer:3:2", o.metadata().get("pattern"));
        assertArrayEquals(want.o().toFloatArray(), finite(o.tensor("o").toFloatArray(), "o"));
        SafetensorsFile l = Safetensors.read(lse);
        assertEquals(List.of("lse"), l.names());
        assertArrayEquals(new long[] {1, 4, 24}, l.tensor("lse").shape());
        float[] lv = l.tensor("lse").toFloatArray();
        assertArrayEquals(want.lse().toFloatArray(), lv);
        assertEquals(Float.NEGATIVE_INFINITY, lv[0], "a zero gate skips the row and reports lse -inf");
        // lse is [B, H, L], the gate [B, L, H]: -inf exactly where the gate is zero, finite (never NaN) everywhere else.
        for (int h = 0; h < 4; h++) {
            for (int t = 0; t < 24; t++) {
                float x = lv[h * 24 + t];
                if (g[t * 4 + h] == 0f) {
                    assertEquals(Float.NEGATIVE_INFINITY, x, "lse of the skipped row h=" + h + " t=" + t);
                } else {
                    assertTrue(Float.isFinite(x), "lse of row h=" + h + " t=" + t + " = " + x);
                }
            }
        }
    }

    @Test
    void lseNpyHasShapeBHL() {
        Tensor q = random(2, 3, 10, 4);
        Tensor k = random(2, 3, 12, 4);
        Tensor v = random(2, 3, 12, 4);
        Path out = dir.resolve("o.npy");
        Path lse = dir.resolve("lse.npy");
        Cli.run(args(npy("q", q), npy("k", k), npy("v", v), out, "--lse", lse.toString(), "--causal")).assertOk();
        Tensor l = Npy.read(lse);
        assertEquals(DType.F32, l.dtype());
        assertArrayEquals(new long[] {2, 3, 10}, l.shape());
        AttentionResult want = direct(AttentionRequest.builder(q, k, v).causal(true).wantLse(true));
        assertArrayEquals(want.lse().toFloatArray(), finite(l.toFloatArray(), "lse"));
    }

    @Test
    void bf16IsComputedInBf16AndWrittenAsFloat32() {
        Tensor q = random(1, 2, 16, 8);
        Tensor k = random(1, 2, 16, 8);
        Tensor v = random(1, 2, 16, 8);
        Path out = dir.resolve("o.npy");
        Cli r = Cli.run(args(npy("q", q), npy("k", k), npy("v", v), out, "--dtype", "bf16")).assertOk();
        assertTrue(r.out().contains(", bf16,"), r.out());
        Tensor got = Npy.read(out);
        assertEquals(DType.F32, got.dtype());
        AttentionResult want = direct(AttentionRequest.builder(q, k, v).dtype(DType.BF16));
        assertEquals(DType.BF16, want.o().dtype());
        float[] g = finite(got.toFloatArray(), "bf16 o");
        assertArrayEquals(want.o().toFloatArray(), g);
        for (float x : g) {
            assertEquals(0, Float.floatToRawIntBits(x) & 0xffff, "value " + x + " is not a bf16 value");
        }
    }

    // ------------------------------------------------------------------ bad input

    private record Inputs(Path q, Path k, Path v) {}

    private Inputs inputs(long[] qs, long[] ks, long[] vs) {
        return new Inputs(npy("q", random(qs)), npy("k", random(ks)), npy("v", random(vs)));
    }

    private Inputs good() {
        return inputs(new long[] {1, 2, 8, 4}, new long[] {1, 2, 8, 4}, new long[] {1, 2, 8, 4});
    }

    /**
     * Finite inputs whose gate × v passes the dtype's range: refused with one line, no file written (the f16 output
     * held infinities, exit 0); a gate that stays in range is fine.
     */
    @Test
    void anOutputThatOverflowsItsDtypeIsRefused() {
        Tensor q = random(1, 2, 40, 8);
        Tensor k = random(1, 2, 40, 8);
        float[] vs = new float[2 * 40 * 8];
        java.util.Arrays.fill(vs, 10f);
        Path v = npy("v", Tensor.ofFloats(vs, 1, 2, 40, 8));
        float[] gs = new float[40 * 2];
        java.util.Arrays.fill(gs, 1e5f);
        Path g = npy("g", Tensor.ofFloats(gs, 1, 40, 2));
        Path out = dir.resolve("o.npy");
        Path lse = dir.resolve("lse.npy");
        Cli.run(args(npy("q", q), npy("k", k), v, out, "--gate", g.toString(), "--dtype", "f16", "--lse", lse.toString()))
                .assertBadInput("headroute attend", "the output overflows f16: o holds Infinity at flat index 0 "
                        + "(|o| <= max|gate| * max|v| = 1.000e+05 * 10.00); nothing was written", out);
        assertFalse(java.nio.file.Files.exists(lse), "no lse either");
        java.util.Arrays.fill(gs, 6000f);
        Cli.run(args(npy("q", q), npy("k", k), v, out, "--gate", npy("g", Tensor.ofFloats(gs, 1, 40, 2)).toString(), "--dtype",
                "f16")).assertOk();
    }

    /**
     * v near f32's largest value: o (a weighted mean of v's rows, ~2e38) is finite, but the weighted sum formed before the
     * division overflows fp32. Refused, nothing written, and the message says so (it said the output overflows f32).
     */
    @Test
    void anIntermediateThatOverflowsFp32IsNamedAsSuch() {
        Tensor v = random(1, 1, 8, 4);
        float[] vs = v.toFloatArray();
        for (int j = 0; j < 8; j++) {
            vs[j * 4] = 2e38f; // v[0, 0, :, 0]
        }
        Path out = dir.resolve("o.npy");
        Path q = npy("q", random(1, 1, 8, 4));
        Cli r = Cli.run(args(q, npy("k", random(1, 1, 8, 4)), npy("v", Tensor.ofFloats(vs, 1, 1, 8, 4)), out))
                .assertBadInput("headroute attend", "the computation overflowed fp32: an intermediate (the weighted sum of "
                        + "v's rows, up to S * max|v| = 8 * 2.000e+38, before it is divided by the weights' sum)", out);
        assertTrue(r.err().contains("though o itself is within f32 (|o| <= max|gate| * max|v| = 1.000 * 2.000e+38)"), r::toString);
        assertTrue(r.err().contains("scale v down"), r::toString);
        assertTrue(r.err().contains("nothing was written"), r::toString);
        assertFalse(r.err().contains("the output overflows"), r::toString);
    }

    /** --fp32-scores with an algorithm that stores no scores was ignored (exit 0); auto may pick materialized: kept. */
    @Test
    void fp32ScoresWithFlashOrSparseIsRefused() {
        Inputs in = good();
        Path out = dir.resolve("o.npy");
        for (String algo : new String[] {"flash", "sparse"}) {
            Cli.run(args(in.q(), in.k(), in.v(), out, "--algo", algo, "--fp32-scores")).assertBadInput("headroute attend",
                    "--fp32-scores applies to --algo materialized only (flash and sparse never store the L x S scores), not "
                            + "--algo " + algo, out);
        }
        Cli.run(args(in.q(), in.k(), in.v(), out, "--algo", "auto", "--fp32-scores")).assertOk();
        Cli.run(args(in.q(), in.k(), in.v(), out, "--algo", "materialized", "--fp32-scores")).assertOk();
    }

    @Test
    void mismatchedShapesAreRefused() {
        Inputs in = inputs(new long[] {1, 2, 8, 4}, new long[] {1, 2, 8, 4}, new long[] {1, 2, 9, 4});
        Path out = dir.resolve("o.npy");
        Cli.run(args(in.q(), in.k(), in.v(), out)).assertBadInput("headroute attend", "same shape", out);
        Inputs d = inputs(new long[] {1, 2, 8, 4}, new long[] {1, 2, 8, 5}, new long[] {1, 2, 8, 5});
        Cli.run(args(d.q(), d.k(), d.v(), out)).assertBadInput("headroute attend", "head dim differs", out);
    }

    @Test
    void headsMustBeDivisibleByKvHeads() {
        Inputs in = inputs(new long[] {1, 3, 8, 4}, new long[] {1, 2, 8, 4}, new long[] {1, 2, 8, 4});
        Path out = dir.resolve("o.npy");
        Cli.run(args(in.q(), in.k(), in.v(), out)).assertBadInput("headroute attend", "not divisible", out);
    }

    @Test
    void moreQueriesThanKeysIsRefused() {
        Inputs in = inputs(new long[] {1, 2, 16, 4}, new long[] {1, 2, 8, 4}, new long[] {1, 2, 8, 4});
        Path out = dir.resolve("o.npy");
        Cli.run(args(in.q(), in.k(), in.v(), out)).assertBadInput("headroute attend", "exceed", out);
    }

    @Test
    void unknownPatternIsRefused() {
        Inputs in = good();
        Path out = dir.resolve("o.npy");
        Path lse = dir.resolve("lse.npy");
        Cli.run(args(in.q(), in.k(), in.v(), out, "--pattern", "diagonal:3", "--lse", lse.toString()))
                .assertBadInput("headroute attend", "unknown pattern", out, lse);
        Cli.run(args(in.q(), in.k(), in.v(), out, "--pattern", "window:-1")).assertBadInput("headroute attend", "W", out);
    }

    @Test
    void missingFileIsRefused() {
        Inputs in = good();
        Path out = dir.resolve("o.npy");
        Path missing = dir.resolve("nope.npy");
        Cli.run(args(in.q(), missing, in.v(), out)).assertBadInput("headroute attend", "no such file", out);
        Cli.run("attend", "--input", dir.resolve("nope.safetensors").toString(), "--out", out.toString())
                .assertBadInput("headroute attend", "no such file", out);
    }

    @Test
    void corruptNpyIsRefused() throws IOException {
        Inputs in = good();
        Path bad = Files.write(dir.resolve("bad.npy"), new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
        Path out = dir.resolve("o.npy");
        Cli.run(args(bad, in.k(), in.v(), out)).assertBadInput("headroute attend", "not a .npy file", out);
        byte[] good = Files.readAllBytes(in.k());
        Path truncated = Files.write(dir.resolve("truncated.npy"), java.util.Arrays.copyOf(good, good.length - 3));
        Cli.run(args(in.q(), truncated, in.v(), out)).assertBadInput("headroute attend", "truncated", out);
    }

    @Test
    void cudaBackendWithoutAGpuIsRefused() {
        Inputs in = good();
        Path out = dir.resolve("o.npy");
        List<String> a = args(in.q(), in.k(), in.v(), out);
        a.set(a.indexOf("cpu"), "cuda");
        Cli r = Cli.run(a);
        if (CudaProbe.result().usable()) {
            r.assertBadInput("headroute attend", "not part of this build yet", out);
        } else {
            r.assertBadInput("headroute attend", "the CUDA backend cannot run: no usable GPU: ", out);
        }
    }

    @Test
    void bothInputStylesAreRefused() {
        Inputs in = good();
        Path out = dir.resolve("o.npy");
        Path st = dir.resolve("qkv.safetensors");
        Safetensors.write(st, Map.of("q", random(1, 2, 8, 4), "k", random(1, 2, 8, 4), "v", random(1, 2, 8, 4)), Map.of());
        List<String> a = args(in.q(), in.k(), in.v(), out, "--input", st.toString());
        Cli.run(a).assertBadInput("headroute attend", "not both", out);
        Cli.run("attend", "--q", in.q().toString(), "--out", out.toString()).assertBadInput("headroute attend", "missing --k, --v",
                out);
    }

    @Test
    void inputFileMustHoldQkv() {
        Path out = dir.resolve("o.npy");
        Path st = dir.resolve("qk.safetensors");
        Safetensors.write(st, Map.of("q", random(1, 2, 8, 4), "k", random(1, 2, 8, 4)), Map.of());
        Cli.run("attend", "--input", st.toString(), "--out", out.toString()).assertBadInput("headroute attend",
                "no tensor named 'v'", out);
        Cli.run("attend", "--input", good().q().toString(), "--out", out.toString()).assertBadInput("headroute attend",
                ".safetensors", out);
    }

    @Test
    void badOptionValuesAreUsageErrors() {
        Inputs in = good();
        Path out = dir.resolve("o.npy");
        Cli.run(args(in.q(), in.k(), in.v(), out, "--dtype", "i32")).assertBadInput("headroute attend", "compute dtype", out);
        Cli.run(args(in.q(), in.k(), in.v(), out, "--algo", "fast")).assertBadInput("headroute attend", "unknown algorithm", out);
        Cli.run(args(in.q(), in.k(), in.v(), out, "--scale", "big")).assertBadInput("headroute attend", "--scale", out);
        Cli.run(args(in.q(), in.k(), in.v(), out, "--scale", "NaN")).assertBadInput("headroute attend", "finite", out);
        Cli.run(args(in.q(), in.k(), in.v(), out, "--threads", "0")).assertBadInput("headroute attend",
                "--threads must be positive, got 0", out);
        Cli.run(args(in.q(), in.k(), in.v(), out, "--threads", "40000")).assertBadInput("headroute attend",
                "threads must be in 1..4096, got 40000", out);
        Cli.run(args(in.q(), in.k(), in.v(), out, "--bogus")).assertBadInput("headroute attend", "--bogus", out);
        Cli.run("attend", "--q", in.q().toString()).assertBadInput("headroute attend", "--out", out);
    }

    @Test
    void badOutputsAreRefusedBeforeComputing() throws IOException {
        Inputs in = good();
        Path txt = dir.resolve("o.txt");
        Cli.run(args(in.q(), in.k(), in.v(), txt)).assertBadInput("headroute attend", "extension", txt);
        Path nodir = dir.resolve("no/such/dir/o.npy");
        Cli.run(args(in.q(), in.k(), in.v(), nodir)).assertBadInput("headroute attend", "does not exist", nodir);
        Path afile = Files.writeString(dir.resolve("afile"), "hi");
        for (Path under : List.of(afile.resolve("o.npy"), afile.resolve("deeper/o.npy"))) {
            Cli.run(args(in.q(), in.k(), in.v(), under)).assertBadInput("headroute attend",
                    "cannot write: " + afile.toAbsolutePath() + " is not a directory", under);
        }
        Path out = dir.resolve("o.npy");
        Path tooLong = dir.resolve("o".repeat(300) + ".npy");
        Cli.run(args(in.q(), in.k(), in.v(), tooLong)).assertBadInput("headroute attend", "the name is 304 bytes long");
        Cli.run(args(in.q(), in.k(), in.v(), Path.of(""))).assertBadInput("headroute attend",
                "error: empty path: expected a .npy or .safetensors file");
        Cli.run(args(in.q(), in.k(), in.v(), out, "--lse", dir.resolve("l.pt").toString())).assertBadInput("headroute attend",
                "extension", out);
        Cli.run(args(in.q(), in.k(), in.v(), out, "--lse", out.toString())).assertBadInput("headroute attend", "same file", out);
    }

    /** An output that is a link is written through (the link stays), and a replaced output keeps its permissions. */
    @Test
    void anOutputLinkIsWrittenThroughAndKeepsThePermissions() throws IOException {
        Inputs in = good();
        Path real = Files.createDirectory(dir.resolve("results")).resolve("o.npy");
        Files.writeString(real, "old");
        boolean posix = Files.getFileStore(dir).supportsFileAttributeView("posix");
        if (posix) {
            Files.setPosixFilePermissions(real, java.nio.file.attribute.PosixFilePermissions.fromString("rw-------"));
        }
        Path link = Files.createSymbolicLink(dir.resolve("o.npy"), real);
        Cli.run(args(in.q(), in.k(), in.v(), link)).assertOk();
        assertTrue(Files.isSymbolicLink(link));
        assertEquals(4, Npy.read(real).rank());
        if (posix) {
            assertEquals("rw-------", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(real)));
        }
    }

    @Test
    void aBadGateIsRefused() {
        Inputs in = good();
        Path out = dir.resolve("o.npy");
        Path gate = npy("gate", random(1, 8, 3));
        Cli.run(args(in.q(), in.k(), in.v(), out, "--gate", gate.toString())).assertBadInput("headroute attend", "gate", out);
        assertFalse(Files.exists(out));
    }

    @Test
    void anOutputNamingAnInputIsRefusedAndTheInputKept() throws IOException {
        Inputs in = good();
        byte[] q = Files.readAllBytes(in.q());
        byte[] k = Files.readAllBytes(in.k());
        Cli.run(args(in.q(), in.k(), in.v(), in.q())).assertBadInput("headroute attend", "--out names the input file of --q");
        Path out = dir.resolve("o.npy");
        Cli.run(args(in.q(), in.k(), in.v(), out, "--lse", in.k().toString())).assertBadInput("headroute attend",
                "--lse names the input file of --k", out);
        Path link = Files.createSymbolicLink(dir.resolve("link.npy"), in.q());
        Cli.run(args(in.q(), in.k(), in.v(), link)).assertBadInput("headroute attend", "--out names the input file of --q");
        // A link to a file not yet written names that file: --out and --lse would both write lse.npy.
        Path lse = dir.resolve("lse.npy");
        Path toLse = Files.createSymbolicLink(dir.resolve("to-lse.npy"), lse);
        Cli.run(args(in.q(), in.k(), in.v(), toLse, "--lse", lse.toString())).assertBadInput("headroute attend",
                "--out and --lse name the same file", lse);
        Path layout = npy("layout", Tensor.ofInts(new int[] {1}, 1, 1, 1));
        byte[] lay = Files.readAllBytes(layout);
        Cli.run(args(in.q(), in.k(), in.v(), layout, "--pattern", "layout:64:" + layout, "--causal")).assertBadInput(
                "headroute attend", "--out names the input file of --pattern", out);
        assertArrayEquals(q, Files.readAllBytes(in.q()));
        assertArrayEquals(k, Files.readAllBytes(in.k()));
        assertArrayEquals(lay, Files.readAllBytes(layout));
    }

    @Test
    void nonFiniteInputsAndOverflowingScoresAreRefused() {
        Inputs in = good();
        Path out = dir.resolve("o.npy");
        Tensor bad = random(1, 2, 8, 4);
        float[] x = bad.toFloatArray();
        x[5] = Float.NaN;
        Path nanQ = npy("nanq", Tensor.ofFloats(x, 1, 2, 8, 4));
        Cli.run(args(nanQ, in.k(), in.v(), out)).assertBadInput("headroute attend", "q holds a non-finite value (NaN) at flat index 5",
                out);
        x[5] = Float.POSITIVE_INFINITY;
        Path infV = npy("infv", Tensor.ofFloats(x, 1, 2, 8, 4));
        Cli.run(args(in.q(), in.k(), infV, out)).assertBadInput("headroute attend", "v holds a non-finite value", out);
        x[5] = 70000f; // finite in f32, infinite once rounded to f16
        Path bigK = npy("bigk", Tensor.ofFloats(x, 1, 2, 8, 4));
        Cli.run(args(in.q(), bigK, in.v(), out, "--dtype", "f16")).assertBadInput("headroute attend",
                "k holds a non-finite value in f16 (70000.0 -> Infinity)", out);
        Cli.run(args(in.q(), in.k(), in.v(), out, "--scale", "1e38")).assertBadInput("headroute attend", "can overflow the scores",
                out);
    }

    /** --positions: two key shards of a windowed causal attention, merged, are the whole; bad values are refused. */
    @Test
    void positionsShardAWindowedAttention() {
        Tensor q = random(1, 2, 40, 16);
        Tensor k = random(1, 2, 200, 16);
        Tensor v = random(1, 2, 200, 16);
        Path qf = npy("q", q);
        Path whole = dir.resolve("whole.npy");
        Path wholeLse = dir.resolve("whole-lse.npy");
        Cli.run(args(qf, npy("k", k), npy("v", v), whole, "--pattern", "window:30", "--causal", "--lse", wholeLse.toString()))
                .assertOk();
        List<ShardMerge.Part> parts = new ArrayList<>();
        for (int[] shard : new int[][] {{0, 120}, {120, 200}}) {
            Path o = dir.resolve("o" + shard[0] + ".npy");
            Path l = dir.resolve("l" + shard[0] + ".npy");
            Cli.run(args(qf, npy("k" + shard[0], k.slice(2, shard[0], shard[1])), npy("v" + shard[0], v.slice(2, shard[0], shard[1])),
                    o, "--pattern", "window:30", "--causal", "--positions", "160," + shard[0] + ",200", "--lse", l.toString()))
                    .assertOk();
            parts.add(new ShardMerge.Part(Npy.read(o), Npy.read(l)));
        }
        ShardMerge.Part merged = ShardMerge.merge(parts);
        float[] want = finite(Npy.read(whole).toFloatArray(), "whole o");
        float[] got = merged.o().toFloatArray();
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], 1e-5 * Math.max(1, Math.abs(want[i])), "o[" + i + "]");
        }
        Path out = dir.resolve("bad.npy");
        Cli.run(args(qf, npy("k", k), npy("v", v), out, "--positions", "1,2"))
                .assertBadInput("headroute attend", "--positions needs QSTART,KSTART,N: three integers >= 0, got '1,2'", out);
        Cli.run(args(qf, npy("k", k), npy("v", v), out, "--pattern", "window:3", "--positions", "0,10,205"))
                .assertBadInput("headroute attend", "positions: queries 0 … 39 and keys 10 … 209 must lie in the sequence's 205 keys", out);
    }
}
