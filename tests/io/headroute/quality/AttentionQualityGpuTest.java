package io.headroute.quality;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.cuda.Resources;
import io.headroute.engine.Algorithm;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.engine.cuda.GpuTests;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@link AttentionQuality} on the GPU engine against the CPU engine on the same random inputs: each head's
 * attention-mass recall and output relative error within the dtype's tolerance of the CPU engine's (the experiment's
 * GPU rows are otherwise only range-checked). Odd lengths, L &lt; S, GQA. Skips itself without a usable GPU.
 */
@Tag("gpu")
class AttentionQualityGpuTest {
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

    private static Tensor gaussian(Random r, long... shape) {
        float[] x = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return Tensor.ofFloats(x, shape);
    }

    @ParameterizedTest(name = "{0} {1} {2} L={3} S={4}")
    @CsvSource({
        "f32, window:20, flash, 149, 149",
        "f16, window:20, sparse, 149, 149",
        "bf16, window:20+causal, flash, 131, 197",
        "f32, longformer:9:3+causal, sparse, 149, 149",
        "bf16, longformer:9:3, sparse, 131, 197",
        "f16, bigbird:32:1:1:1:5, flash, 131, 197",
        "bf16, bigbird:32:1:1:1:5, flash, 149, 149",
        "f32, bigbird:32:1:1:1:5+causal, flash, 131, 197",
    })
    void gpuRecallAndErrorMatchTheCpuEnginePerHead(String dtype, String spec, String algo, int l, int s) {
        DType dt = DType.parse(dtype);
        Pattern p = spec.endsWith("+causal") ? Patterns.parse(spec.substring(0, spec.length() - 7)).withCausal() : Patterns.parse(spec);
        int b = 2;
        int h = 4;
        int hkv = 2;
        int d = 64;
        Random r = new Random(97L * l + s + spec.hashCode() + dt.ordinal());
        Tensor q = gaussian(r, b, h, l, d);
        Tensor k = gaussian(r, b, hkv, s, d);
        Tensor v = gaussian(r, b, hkv, s, d);
        Algorithm a = Algorithm.parse(algo);
        AttentionQuality.Report want = AttentionQuality.measure(cpu, q, k, v, p, null, dt, a);
        AttentionQuality.Report got = AttentionQuality.measure(gpu, q, k, v, p, null, dt, a);
        String what = dtype + " " + spec + " " + algo + " L=" + l + " S=" + s;
        double tol = dt.tolerance();
        assertEquals(want.reference(), got.reference(), what);
        for (int hh = 0; hh < h; hh++) {
            double wr = want.recallPerHead()[hh];
            double we = want.relErrorPerHead()[hh];
            // The inputs must make the metrics mean something: some mass and some output lost, not all.
            assertTrue(wr > 0.05 && wr < 0.999, what + ": head " + hh + ": CPU recall " + wr);
            assertTrue(we > 10 * tol && we < 10, what + ": head " + hh + ": CPU relative error " + we);
            assertEquals(wr, got.recallPerHead()[hh], tol * wr, what + ": head " + hh + ": recall, GPU vs CPU");
            assertEquals(we, got.relErrorPerHead()[hh], tol * we, what + ": head " + hh + ": relative error, GPU vs CPU");
        }
        assertEquals(want.recall(), got.recall(), tol * want.recall(), what + ": recall");
        assertEquals(want.relError(), got.relError(), tol * want.relError(), what + ": relative error");
    }
}
