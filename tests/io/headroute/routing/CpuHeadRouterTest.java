package io.headroute.routing;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class CpuHeadRouterTest {
    private static CpuHeadRouter router;

    @BeforeAll
    static void open() {
        router = new CpuHeadRouter(2);
    }

    @AfterAll
    static void close() {
        router.close();
    }

    /** Same zero pattern, and every gate within 1e-5 relative (fp32) of the reference. */
    static void assertGateMatches(double[] expected, float[] actual, String what) {
        assertEquals(expected.length, actual.length, what);
        for (int i = 0; i < expected.length; i++) {
            int at = i;
            assertEquals(expected[i] == 0, actual[i] == 0f, () -> what + ": zero pattern differs at flat index " + at
                    + ": expected " + expected[at] + ", got " + actual[at]);
            assertEquals(expected[i], actual[i], 1e-5 * Math.abs(expected[i]), () -> what + ": gate at flat index " + at);
        }
    }

    @ParameterizedTest(name = "B={0} L={1} d={2} Hs={3} Hr={4} k={5} Bq={6} {7}")
    @CsvSource({
        "1, 1, 1, 0, 1, 1, 1, f32",
        "2, 37, 13, 2, 6, 2, 1, f32",      // per token, B > 1
        "2, 37, 13, 2, 6, 2, 8, f32",      // blocks of 8, the last one 5 tokens
        "1, 37, 13, 1, 5, 3, 64, f32",     // one block longer than the sequence
        "3, 50, 7, 0, 14, 4, 16, f32",     // no shared heads, last block 2 tokens
        "1, 29, 9, 2, 7, 7, 1, f32",       // k = Hr: every routed head kept, gates k·p
        "1, 33, 40, 3, 40, 5, 4, f32",     // Hr > 32
        "2, 21, 11, 2, 6, 2, 1, f16",
        "2, 21, 11, 2, 6, 2, 5, bf16"})
    void matchesTheReference(int b, int l, int d, int hs, int hr, int k, int bq, String dtype) {
        DType dt = DType.parse(dtype);
        Random r = new Random(1000L * l + 31L * hr + bq);
        Tensor x = ReferenceRouter.grid(r, DType.F32, b, l, d);
        Tensor wr = ReferenceRouter.grid(r, DType.F32, d, hr);
        RouterConfig c = new RouterConfig(hs, hr, k, bq);
        RouterOutput out = router.route(x, wr, c, dt);
        assertEquals("(" + b + ", " + l + ", " + (hs + hr) + ")", out.gate().shapeString());
        assertEquals("(" + b + ", " + l + ", " + hr + ")", out.probs().shapeString());
        float[] g = out.gate().toFloatArray();
        assertGateMatches(ReferenceRouter.gate(x, wr, c, dt), g, c.toString());
        // Per token or block: the routed gates sum to k, k of them are non-zero, shared heads are 1.
        for (int t = 0; t < b * l; t++) {
            double sum = 0;
            int nonZero = 0;
            for (int h = 0; h < hs + hr; h++) {
                float v = g[t * (hs + hr) + h];
                if (h < hs) {
                    assertEquals(1f, v);
                } else {
                    sum += v;
                    nonZero += v != 0f ? 1 : 0;
                }
            }
            assertEquals(k, sum, 1e-5 * k, "routed gates of token " + t);
            assertEquals(k, nonZero, "non-zero routed gates of token " + t);
        }
    }

    @Test
    void gaussianInputsInHalfPrecisionAreRoundedFirst() {
        // Off-grid inputs: the reference rounds X and Wr to bf16 itself; the router must use the same rounded values.
        Random r = new Random(7);
        float[] xv = new float[2 * 45 * 24];
        float[] wv = new float[24 * 9];
        for (int i = 0; i < xv.length; i++) {
            xv[i] = (float) r.nextGaussian();
        }
        for (int i = 0; i < wv.length; i++) {
            wv[i] = (float) r.nextGaussian();
        }
        Tensor x = Tensor.ofFloats(xv, 2, 45, 24);
        Tensor wr = Tensor.ofFloats(wv, 24, 9);
        for (DType dt : new DType[] {DType.F32, DType.F16, DType.BF16}) {
            RouterConfig c = new RouterConfig(1, 9, 3, 4);
            assertGateMatches(ReferenceRouter.gate(x, wr, c, dt), router.route(x, wr, c, dt).gate().toFloatArray(),
                    dt.cliName());
        }
    }

    @Test
    void exactTiesGoToTheLowerHeadIndex() {
        // One token, d_model 1: logits = Wr's row. Heads 1 and 2 tie for the largest probability.
        Tensor x = Tensor.ofFloats(new float[] {1f}, 1, 1, 1);
        Tensor wr = Tensor.ofFloats(new float[] {0f, 1f, 1f, 0.5f}, 1, 4);
        assertArrayEquals(new float[] {1f, 0f, 1f, 0f, 0f}, route(x, wr, new RouterConfig(1, 4, 1, 1)));
        // k = 2: both tied heads, each half of the kept mass, times 2.
        assertArrayEquals(new float[] {1f, 0f, 1f, 1f, 0f}, route(x, wr, new RouterConfig(1, 4, 2, 1)));
        // All four equal: the lowest indices win, gates k · (1/4) / (k/4) = 1.
        Tensor flat = Tensor.ofFloats(new float[] {0.25f, 0.25f, 0.25f, 0.25f}, 1, 4);
        assertArrayEquals(new float[] {1f, 1f, 1f, 0f}, route(x, flat, new RouterConfig(0, 4, 3, 1)));
        // Tie at the k-th place only: heads 0 and 3 tie behind head 1; head 0 is kept.
        Tensor second = Tensor.ofFloats(new float[] {0f, 2f, -1f, 0f}, 1, 4);
        float[] g = route(x, second, new RouterConfig(0, 4, 2, 1));
        assertTrue(g[0] > 0 && g[1] > 0 && g[2] == 0 && g[3] == 0, java.util.Arrays.toString(g));
        double e = Math.exp(-2);
        assertEquals(2 * e / (1 + e), g[0], 1e-6);
        assertEquals(2 / (1 + e), g[1], 1e-6);
    }

    @Test
    void blockTiesGoToTheLowerHeadIndexToo() {
        // Two tokens prefer opposite heads equally strongly: the block average ties, head 0 wins for both tokens.
        Tensor x = Tensor.ofFloats(new float[] {1f, -1f, 1f}, 1, 3, 1);
        Tensor wr = Tensor.ofFloats(new float[] {-1f, 1f}, 1, 2);
        float[] g = route(x, wr, new RouterConfig(0, 2, 1, 2));
        assertArrayEquals(new float[] {1f, 0f, 1f, 0f, 0f, 1f}, g, "block {0, 1} ties -> head 0; the short block {2} -> head 1");
    }

    private static float[] route(Tensor x, Tensor wr, RouterConfig c) {
        return router.route(x, wr, c, DType.F32).gate().toFloatArray();
    }

    @Test
    void probabilitiesAndStatisticsComeWithTheGate() {
        Random r = new Random(3);
        Tensor x = ReferenceRouter.grid(r, DType.F32, 2, 30, 6);
        Tensor wr = ReferenceRouter.grid(r, DType.F32, 6, 5);
        RouterConfig c = new RouterConfig(2, 5, 2, 1);
        RouterOutput out = router.route(x, wr, c, DType.F32);
        float[] p = out.probs().toFloatArray();
        float[] xs = x.toFloatArray();
        float[] ws = wr.toFloatArray();
        for (int t = 0; t < 60; t++) {
            double[] z = new double[5];
            for (int j = 0; j < 5; j++) {
                for (int i = 0; i < 6; i++) {
                    z[j] += xs[t * 6 + i] * ws[i * 5 + j];
                }
            }
            double[] ref = ReferenceRouter.softmax(z);
            for (int j = 0; j < 5; j++) {
                assertEquals(ref[j], p[t * 5 + j], 1e-6 * Math.max(ref[j], 1e-3), "P[" + t + ", " + j + "]");
            }
        }
        assertEquals(RouterStats.of(c, out.gate().toFloatArray(), p), out.stats());
        assertEquals(1.0, java.util.Arrays.stream(out.stats().f()).sum(), 1e-12);
        assertEquals(4.0 / 7, out.stats().activeHeadFraction(), 1e-12);
        assertEquals("cpu", out.engine());
    }

    /** A block of at least L tokens is one group per sequence, up to Bq = 2^31 − 1 (whose ceil(L / Bq) overflowed). */
    @Test
    void aBlockLongerThanTheSequenceIsTheWholeSequence() {
        ReferenceRouter.assertBlocksBeyondTheSequenceAreTheWholeSequence(router, router, 0f);
    }

    @Test
    void badInputsAreRefusedWithOneLine() {
        Tensor x = Tensor.ofFloats(new float[2 * 3 * 4], 2, 3, 4);
        Tensor wr = Tensor.ofFloats(new float[4 * 5], 4, 5);
        RouterConfig c = new RouterConfig(1, 5, 2, 1);
        assertMessage("must have d_model = 4 rows", () -> router.route(x, Tensor.ofFloats(new float[15], 3, 5), c, DType.F32));
        assertMessage("routes 6 heads", () -> router.route(x, wr, new RouterConfig(1, 6, 2, 1), DType.F32));
        assertMessage("(B, L, d_model)", () -> router.route(Tensor.ofFloats(new float[12], 3, 4), wr, c, DType.F32));
        assertMessage("(d_model, Hr)", () -> router.route(x, Tensor.ofFloats(new float[20], 20), c, DType.F32));
        assertMessage("f32, f16 or bf16", () -> router.route(x, wr, c, DType.I32));
        assertMessage("empty", () -> router.route(Tensor.ofFloats(new float[0], 1, 0, 4), wr, c, DType.F32));
        float[] inf = new float[24];
        inf[5] = Float.POSITIVE_INFINITY;
        assertMessage("non-finite", () -> router.route(Tensor.ofFloats(inf, 2, 3, 4), wr, c, DType.F32));
        float[] big = new float[24];
        big[7] = 1e6f; // finite in f32, infinite in f16
        assertMessage("non-finite value in f16", () -> router.route(Tensor.ofFloats(big, 2, 3, 4), wr, c, DType.F16));
        // Finite X and Wr whose logits could overflow fp32 (here 4 · 1e20 · 1e19): refused, not NaN gates.
        float[] huge = new float[24];
        huge[0] = 1e20f;
        float[] hugeW = new float[20];
        hugeW[0] = 1e19f;
        assertMessage("could overflow the fp32 logits", () -> router.route(Tensor.ofFloats(huge, 2, 3, 4),
                Tensor.ofFloats(hugeW, 4, 5), c, DType.F32));
        assertMessage("k must be between 1 and the 5", () -> new RouterConfig(1, 5, 6, 1));
        assertMessage("k must be between", () -> new RouterConfig(1, 5, 0, 1));
        assertMessage("block", () -> new RouterConfig(1, 5, 2, 0));
        assertMessage("shared heads", () -> new RouterConfig(-1, 5, 2, 1));
        assertMessage("routed heads", () -> new RouterConfig(1, 0, 1, 1));
    }

    /** A closed router says so, as the engines do (it threw its pool's RejectedExecutionException). */
    @Test
    void aClosedRouterSaysSo() {
        CpuHeadRouter closed = new CpuHeadRouter(1);
        closed.close();
        closed.close(); // idempotent
        Tensor x = Tensor.ofFloats(new float[8], 1, 2, 4);
        Tensor wr = Tensor.ofFloats(new float[8], 4, 2);
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> closed.route(x, wr, new RouterConfig(0, 2, 1, 1), DType.F32));
        assertEquals("CPU head router is closed", e.getMessage());
    }

    static void assertMessage(String keyword, org.junit.jupiter.api.function.Executable call) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(keyword), () -> "expected '" + keyword + "' in: " + e.getMessage());
        assertTrue(!e.getMessage().contains("\n"), e.getMessage());
    }

    @Test
    void parsesTheCommandLineSpec() {
        assertEquals(new RouterConfig(2, 14, 4, 1), RouterConfig.parse("2:4", 16));
        assertEquals(new RouterConfig(2, 14, 4, 64), RouterConfig.parse(" 2:4:64 ", 16));
        assertEquals(new RouterConfig(0, 8, 1, 1), RouterConfig.parse("0:1", 8));
        assertEquals(6.0 / 16, RouterConfig.parse("2:4", 16).activeFraction(), 1e-15);
        assertMessage("HS:K", () -> RouterConfig.parse("2", 16));
        assertMessage("HS:K", () -> RouterConfig.parse("2:4:1:1", 16));
        assertMessage("not an integer", () -> RouterConfig.parse("2:x", 16));
        assertMessage("between 0 and H − 1 = 15", () -> RouterConfig.parse("16:1", 16));
        assertMessage("k must be between 1 and the 14", () -> RouterConfig.parse("2:15", 16));
    }
}
