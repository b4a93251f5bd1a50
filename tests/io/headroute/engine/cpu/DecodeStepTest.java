package io.headroute.engine.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** Decode-shaped calls, which read their key tiles from K and V without a repack, give the bits a repack gives. */
class DecodeStepTest {
    private static final int S = 1100;
    private static final String[][] CASES = {{"dense", "FLASH"}, {"window:300", "FLASH"}, {"window:300", "SPARSE"},
        {"longformer:200:5", "SPARSE"}, {"bigbird:64:1:1:2:4", "SPARSE"}};

    private static Tensor gaussian(Random rnd, DType dtype, long... shape) {
        float[] v = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) rnd.nextGaussian();
        }
        return Tensor.ofFloats(dtype, v, shape);
    }

    private static void assertSameBits(float[] want, int wantAt, float[] got, int gotAt, int n, String what) {
        for (int e = 0; e < n; e++) {
            assertEquals(Float.floatToRawIntBits(want[wantAt + e]), Float.floatToRawIntBits(got[gotAt + e]), what + " [" + e + "]");
        }
    }

    /** One to three query rows against the whole cache, with and without a repack. */
    @Test
    void withoutARepackTheBitsAreTheRepacksBits() {
        Random rnd = new Random(99);
        java.util.Map<String, Integer> streamed = new java.util.TreeMap<>();
        try (CpuAttentionEngine streaming = new CpuAttentionEngine(2); CpuAttentionEngine repacking = new CpuAttentionEngine(2)) {
            repacking.alwaysRepack = true;
            for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
                for (int hkv : new int[] {1, 2, 8}) {
                    int l = 1 + rnd.nextInt(3);
                    Tensor q = gaussian(rnd, dtype, 1, 8, l, 64);
                    Tensor k = gaussian(rnd, dtype, 1, hkv, S, 64);
                    Tensor v = gaussian(rnd, dtype, 1, hkv, S, 64);
                    for (String[] c : CASES) {
                        for (int bs : new int[] {64, 128}) {
                            AttentionRequest req = AttentionRequest.builder(q, k, v).pattern(Patterns.parse(c[0])).causal(true)
                                    .dtype(dtype).algorithm(Algorithm.valueOf(c[1])).blockSize(bs).wantLse(true).build();
                            AttentionResult a = streaming.run(req);
                            AttentionResult b = repacking.run(req);
                            String what = c[0] + " " + c[1] + " " + dtype.cliName() + " Hkv=" + hkv + " L=" + l + " BS=" + bs;
                            // Where the call made no repack, its workspace is the scratch alone.
                            if (a.stats().workspaceBytes() < b.stats().workspaceBytes()) {
                                streamed.merge(c[1], 1, Integer::sum);
                            }
                            float[] oa = a.o().toFloatArray();
                            assertSameBits(b.o().toFloatArray(), 0, oa, 0, oa.length, what + " o");
                            assertSameBits(b.lse().toFloatArray(), 0, a.lse().toFloatArray(), 0, 8 * l, what + " lse");
                        }
                    }
                }
            }
        }
        // Both algorithms read without a repack in most of these cases (not all: sparse repacks where its items read more
        // key blocks than there are).
        assertTrue(streamed.getOrDefault("FLASH", 0) >= 12 && streamed.getOrDefault("SPARSE", 0) >= 12, streamed::toString);
    }

    /**
     * Flash visits key tiles in order whatever the rows beside a row, so a decode step is, bit for bit, the last row
     * of the call over every query (sparse is not held to this: a query block's full key blocks come before its
     * partial ones, and which are which depends on the block's rows).
     */
    @Test
    void aFlashDecodeStepIsTheLastRowOfTheFullCall() {
        Random rnd = new Random(7);
        try (CpuAttentionEngine engine = new CpuAttentionEngine(2)) {
            for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
                Tensor q = gaussian(rnd, dtype, 1, 8, S, 64);
                Tensor k = gaussian(rnd, dtype, 1, 2, S, 64);
                Tensor v = gaussian(rnd, dtype, 1, 2, S, 64);
                for (String p : new String[] {"dense", "window:300", "longformer:200:5"}) {
                    AttentionResult all = engine.run(AttentionRequest.builder(q, k, v).pattern(Patterns.parse(p)).causal(true)
                            .dtype(dtype).algorithm(Algorithm.FLASH).wantLse(true).build());
                    AttentionResult last = engine.run(AttentionRequest.builder(q.slice(2, S - 1, S), k, v).pattern(Patterns.parse(p))
                            .causal(true).dtype(dtype).algorithm(Algorithm.FLASH).wantLse(true).build());
                    float[] o = all.o().toFloatArray();
                    float[] lse = all.lse().toFloatArray();
                    for (int h = 0; h < 8; h++) {
                        String what = p + " " + dtype.cliName() + " head " + h;
                        assertSameBits(o, (h * S + S - 1) * 64, last.o().toFloatArray(), h * 64, 64, what + " o");
                        assertSameBits(lse, h * S + S - 1, last.lse().toFloatArray(), h, 1, what + " lse");
                    }
                }
            }
        }
    }
}
