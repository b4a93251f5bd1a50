package io.headroute.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import java.util.List;
import org.junit.jupiter.api.Test;

class AttentionBenchmarkTest {
    private static AttentionBenchmark.Config config(List<Algorithm> algos, int warmup, int repeats) {
        return new AttentionBenchmark.Config(1, 4, 2, 48, 80, 16, true, new Pattern.Window(20), DType.F32, algos, warmup,
                repeats, 3);
    }

    @Test
    void aFailingAlgorithmIsARowAndTheOthersAreKept() {
        // An engine whose flash calls fail (as a kernel never run on a card may): materialized before it and sparse after
        // it are measured; flash's row says why; bad input still refuses the whole bench.
        try (CpuAttentionEngine cpu = new CpuAttentionEngine(2)) {
            io.headroute.engine.AttentionEngine failing = new io.headroute.engine.AttentionEngine() {
                @Override
                public String name() {
                    return "failing";
                }

                @Override
                public io.headroute.engine.AttentionResult run(io.headroute.engine.AttentionRequest request) {
                    if (request.algorithm() == Algorithm.FLASH) {
                        throw new IllegalStateException("CUDA_ERROR_ILLEGAL_ADDRESS in hr_flash_fwd\nsecond line");
                    }
                    return cpu.run(request);
                }

                @Override
                public void close() {}
            };
            AttentionBenchmark.Report r = AttentionBenchmark.run(failing,
                    config(List.of(Algorithm.MATERIALIZED, Algorithm.FLASH, Algorithm.SPARSE), 0, 2));
            assertEquals(List.of("ok", "error: IllegalStateException: CUDA_ERROR_ILLEGAL_ADDRESS in hr_flash_fwd second line", "ok"),
                    r.measurements().stream().map(AttentionBenchmark.Measurement::status).toList());
            assertTrue(r.measurements().get(2).relL2VsFirst() < 1e-5, "sparse still compared with the first row");
        }
    }

    /** An engine that runs on the CPU, except that {@code poisoned}'s output gets a NaN and {@code throwing} throws. */
    private static io.headroute.engine.AttentionEngine doctored(CpuAttentionEngine cpu, Algorithm poisoned, Algorithm throwing,
            RuntimeException thrown) {
        return new io.headroute.engine.AttentionEngine() {
            @Override
            public String name() {
                return "doctored";
            }

            @Override
            public io.headroute.engine.AttentionResult run(io.headroute.engine.AttentionRequest request) {
                if (request.algorithm() == throwing) {
                    throw thrown;
                }
                io.headroute.engine.AttentionResult r = cpu.run(request);
                if (request.algorithm() != poisoned) {
                    return r;
                }
                float[] o = r.o().toFloatArray();
                o[o.length / 2] = Float.NaN;
                o[0] = Float.POSITIVE_INFINITY;
                return new io.headroute.engine.AttentionResult(io.headroute.tensor.Tensor.ofFloats(r.o().dtype(), o, r.o().shape()),
                        r.lse(), r.stats());
            }

            @Override
            public void close() {}
        };
    }

    /**
     * The first algorithm is checked too: an output with NaN or infinite values is a row "wrong: ..." (its times
     * kept, never the reference, never ok), the next finite output becomes the reference, and the JSON says which.
     */
    @Test
    void aNonFiniteOutputIsWrongEvenFirstAndNeverTheReference() {
        try (CpuAttentionEngine cpu = new CpuAttentionEngine(2)) {
            AttentionBenchmark.Report r = AttentionBenchmark.run(doctored(cpu, Algorithm.MATERIALIZED, null, null),
                    config(List.of(Algorithm.MATERIALIZED, Algorithm.FLASH, Algorithm.SPARSE), 0, 2));
            AttentionBenchmark.Measurement mat = r.measurements().get(0);
            AttentionBenchmark.Measurement flash = r.measurements().get(1);
            AttentionBenchmark.Measurement sparse = r.measurements().get(2);
            assertEquals("wrong: 2 of " + 4 * 48 * 16 + " output values are NaN or infinite", mat.status());
            assertTrue(mat.failed() && !mat.ok() && !mat.reference(), mat.toString());
            assertEquals(2, mat.timesMs().size(), "its times are kept");
            assertTrue(Double.isNaN(mat.relL2VsFirst()));
            assertEquals(2, mat.nonFiniteValues());
            assertTrue(flash.ok() && flash.reference(), "the first finite output is the reference: " + flash);
            assertEquals(0.0, flash.relL2VsFirst());
            assertEquals(0, flash.nonFiniteValues());
            assertTrue(sparse.ok() && !sparse.reference());
            assertTrue(sparse.relL2VsFirst() < 1e-5, "sparse compared with flash: " + sparse.relL2VsFirst());
            assertTrue(r.speedup(Algorithm.FLASH, Algorithm.MATERIALIZED).isEmpty(), "no speed ratio against a wrong row");
            com.fasterxml.jackson.databind.JsonNode ms = r.toJson().get("measurements");
            assertEquals(false, ms.get(0).get("output_finite").asBoolean(true));
            assertEquals(2, ms.get(0).get("non_finite_values").asLong());
            assertEquals(false, ms.get(0).get("reference").asBoolean(true));
            assertEquals(true, ms.get(1).get("output_finite").asBoolean(false));
            assertEquals(true, ms.get(1).get("reference").asBoolean(false));
            assertEquals(false, ms.get(2).get("reference").asBoolean(true));
        }
    }

    /**
     * The memory plan's refusal (before any allocation, with what it needs and what the card has) and the pool's
     * out-of-memory during a call are different rows: the DevicePool's own message is recognized as the second.
     */
    @Test
    void aPlanRefusalIsNotAnOutOfMemoryAtRun() {
        io.headroute.cuda.memory.RawAllocator full = new io.headroute.cuda.memory.RawAllocator() {
            @Override
            public long allocate(long bytes) throws io.headroute.cuda.memory.RawOutOfMemoryException {
                throw new io.headroute.cuda.memory.RawOutOfMemoryException("CUDA_ERROR_OUT_OF_MEMORY");
            }

            @Override
            public void free(long address) {}

            @Override
            public long totalBytes() {
                return 1L << 30;
            }

            @Override
            public long freeBytes() {
                return 0;
            }

            @Override
            public String deviceDescription() {
                return "GPU 0 (fake)";
            }
        };
        io.headroute.cuda.memory.DeviceOutOfMemoryException pool;
        try (io.headroute.cuda.memory.DevicePool p = io.headroute.cuda.memory.DevicePool.create(full, "test", false)) {
            pool = assertThrows(io.headroute.cuda.memory.DeviceOutOfMemoryException.class, () -> p.allocate(4096, "scores"));
        }
        var plan = new io.headroute.cuda.memory.DeviceOutOfMemoryException("the materialized path needs 32.00 GiB (32.00 GiB of"
                + " bf16 scores), but GPU 0 (fake) has 10.00 GiB available (10.00 GiB free of 80.00 GiB)", 1L << 35);
        try (CpuAttentionEngine cpu = new CpuAttentionEngine(2)) {
            for (var e : List.of(pool, plan)) {
                AttentionBenchmark.Report r = AttentionBenchmark.run(doctored(cpu, null, Algorithm.MATERIALIZED, e),
                        config(List.of(Algorithm.FLASH, Algorithm.MATERIALIZED), 0, 1));
                String status = r.measurements().get(1).status();
                if (e == plan) {
                    assertEquals("does not fit (memory plan): " + plan.getMessage(), status);
                } else {
                    assertTrue(status.startsWith("out of memory at run: out of device memory on GPU 0 (fake)"), status);
                }
                assertTrue(!r.measurements().get(1).failed(), "not a failure of the code: " + status);
                assertTrue(r.measurements().get(0).ok() && r.measurements().get(0).reference());
            }
        }
    }

    @Test
    void measuresEveryAlgorithmOnTheSameInputs() {
        AttentionBenchmark.Report r;
        try (CpuAttentionEngine e = new CpuAttentionEngine(2)) {
            r = AttentionBenchmark.run(e, config(List.of(Algorithm.MATERIALIZED, Algorithm.FLASH), 1, 3));
        }
        assertEquals("cpu", r.engine());
        assertEquals(2, r.measurements().size());
        AttentionBenchmark.Measurement mat = r.measurements().get(0);
        AttentionBenchmark.Measurement flash = r.measurements().get(1);
        assertEquals(Algorithm.MATERIALIZED, mat.used());
        assertEquals(3, mat.timesMs().size());
        assertEquals(0.0, mat.relL2VsFirst());
        assertTrue(mat.reference() && !flash.reference(), "the first finite output is the reference");
        assertTrue(flash.relL2VsFirst() < 1e-6, "flash vs materialized: " + flash.relL2VsFirst());
        // Causal at L = 48 < S = 80 (bottom-right aligned): L·S − L²/2 pairs, not half of L·S.
        assertEquals(4.0 * 4 * 16 * (48 * 80 - 48 * 48 / 2), r.config().flops());
        assertEquals(r.config().flops() / (flash.medianMs() * 1e6), flash.gflops(), 1e-9);
        assertEquals(mat.medianMs() / flash.medianMs(), r.speedup(Algorithm.FLASH, Algorithm.MATERIALIZED).getAsDouble(), 1e-12);
        assertTrue(r.speedup(Algorithm.SPARSE, Algorithm.FLASH).isEmpty());
        assertEquals("window:20+causal", r.toJson().at("/config/pattern").asText());
        assertTrue(r.toJson().at("/config/flash_tiling").isMissingNode(), "the CPU engine has no tensor-core tilings");
    }

    @Test
    void sameSeedSameInputs() {
        var c = config(List.of(Algorithm.FLASH), 0, 1);
        AttentionBenchmark.Inputs a = AttentionBenchmark.randomInputs(c);
        AttentionBenchmark.Inputs b = AttentionBenchmark.randomInputs(c);
        String[] names = {"q", "k", "v"};
        float[][] first = {a.q().toFloatArray(), a.k().toFloatArray(), a.v().toFloatArray()};
        float[][] again = {b.q().toFloatArray(), b.k().toFloatArray(), b.v().toFloatArray()};
        for (int t = 0; t < 3; t++) {
            // relativeL2(x, x) is 0 for all-zero inputs too, and a NaN would hide in it: real, non-zero values first.
            int nonZero = 0;
            for (int i = 0; i < first[t].length; i++) {
                assertTrue(Float.isFinite(first[t][i]), names[t] + "[" + i + "] = " + first[t][i]);
                nonZero += first[t][i] != 0f ? 1 : 0;
            }
            assertTrue(nonZero > first[t].length * 0.99, names[t] + ": only " + nonZero + " of " + first[t].length + " non-zero");
            assertEquals(0.0, AttentionBenchmark.relativeL2(again[t], first[t]), "the same seed draws the same " + names[t]);
        }
        // Each tensor its own draw: K and V (B, Hkv, S, D) differ from each other and from Q's first elements.
        assertTrue(AttentionBenchmark.relativeL2(first[2], first[1]) > 0.5, "v is not a copy of k");
        float[] qHead = java.util.Arrays.copyOf(first[0], first[1].length);
        assertTrue(AttentionBenchmark.relativeL2(first[1], qHead) > 0.5, "k is not q's leading elements");
        assertTrue(AttentionBenchmark.relativeL2(first[2], qHead) > 0.5, "v is not q's leading elements");
        // Another seed, other inputs.
        var other = new AttentionBenchmark.Config(1, 4, 2, 48, 80, 16, true, new Pattern.Window(20), DType.F32,
                List.of(Algorithm.FLASH), 0, 1, 4);
        assertTrue(AttentionBenchmark.relativeL2(AttentionBenchmark.randomInputs(other).q().toFloatArray(), first[0]) > 0.5,
                "seed 4 draws another q than seed 3");
    }

    @Test
    void helpers() {
        assertEquals(2.0, AttentionBenchmark.median(new double[] {3, 1, 2}));
        assertEquals(2.5, AttentionBenchmark.median(new double[] {4, 1, 2, 3}));
        assertEquals(0.5, AttentionBenchmark.relativeL2(new float[] {1, 0}, new float[] {2, 0}), 1e-12);
        assertEquals(0.0, AttentionBenchmark.relativeL2(new float[] {0}, new float[] {0}));
        assertTrue(Double.isNaN(AttentionBenchmark.relativeL2(new float[] {Float.NaN}, new float[] {1})));
    }

    @Test
    void badConfigsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> config(List.of(), 0, 1));
        assertThrows(IllegalArgumentException.class, () -> config(List.of(Algorithm.FLASH, Algorithm.FLASH), 0, 1));
        assertThrows(IllegalArgumentException.class, () -> config(List.of(Algorithm.FLASH), -1, 1));
        assertThrows(IllegalArgumentException.class, () -> config(List.of(Algorithm.FLASH), 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new AttentionBenchmark.Config(1, 64, 64, 1 << 20, 1 << 20, 128, false,
                new Pattern.Dense(), DType.F32, List.of(Algorithm.FLASH), 0, 1, 0));
    }
}
