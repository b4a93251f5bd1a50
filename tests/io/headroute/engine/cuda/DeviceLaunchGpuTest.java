package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.cuda.DeviceTensor;
import io.headroute.cuda.Resources;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.OutputAssertions;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cpu.ReferenceAttention;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@link CudaAttentionEngine#launch} with a device-built work list, as GPU models call it: Q and O are
 * heads 2 … 2+H−1 of (B, L, 7, D) buffers, K and V (B, S, Hkv, D), the gate a router's (per token or per
 * block). Sparse patterns ("+causal": with the causal rule) routed per token run the kernel that merges
 * the compacted rows' key lists on the device. The call's heads must equal the CPU engine, the other heads' elements (poisoned with NaN) must
 * stay untouched by the o memset, and the launched tiles read back must equal the host mirror's count.
 */
@Tag("gpu")
class DeviceLaunchGpuTest {
    private static CudaAttentionEngine gpu;
    private static CpuAttentionEngine cpu;

    @BeforeAll
    static void open() {
        gpu = GpuTests.openEngine(false);
        cpu = new CpuAttentionEngine();
    }

    @AfterAll
    static void close() {
        Resources.closeAll(cpu, gpu); // the engine's close throws if any device buffer leaked
    }

    @ParameterizedTest(name = "{0} {1} L={2} S={3} Bq={4} {5}")
    @CsvSource({"f32, causal, 301, 301, 1, w4", "f32, dense, 77, 300, 32, w4", "f32, window:37, 257, 257, 1, w4",
        "bf16, causal, 1000, 1000, 1, w4", "bf16, causal, 1000, 1000, 64, w4", "bf16, dense, 333, 400, 48, w4",
        "bf16, window:37, 700, 700, 128, w4", "f16, causal, 513, 513, 0, w4", "bf16, causal, 1000, 1000, 1, w2",
        "f16, dense, 333, 400, 48, w2", "bf16, causal, 1000, 1000, 64, w4x2", "f16, dense, 333, 400, 128, w4x2",
        "bf16, causal, 300, 300, 0, w4x2", "bf16, window:37, 700, 700, 1, w4", "f16, longformer:20:3, 333, 400, 1, w4",
        "bf16, bigbird:16:1:1:2:9+causal, 513, 513, 16, w4", "f32, bigbird:16:1:1:2:9, 301, 301, 1, w4",
        "f32, window:37+causal, 257, 300, 8, w4", "f16, window:37, 700, 700, 1, w4x2", "bf16, causal, 1000, 1000, 1, wg",
        "f16, dense, 333, 400, 48, wg", "bf16, causal, 300, 300, 0, wg", "f16, causal, 1000, 1000, 1, wgp",
        "bf16, dense, 333, 400, 64, wgp", "bf16, causal, 1000, 1000, 64, wgx2", "f16, dense, 333, 400, 128, wgx2",
        "bf16, causal, 300, 300, 0, wgpx2", "f16, causal, 1000, 1000, 1, wgpx2", "bf16, window:37, 700, 700, 1, wgx2",
        "f16, bigbird:16:1:1:2:9+causal, 513, 513, 128, wgpx2", "bf16, window:37+causal, 257, 300, 0, wgx2",
        "f16, longformer:20:3, 333, 400, 48, wgpx2"})
    void deviceGatedLaunchesMatchTheCpuEngineAndCountTheirTiles(String dtype, String spec, int l, int s, int bq, String tiling) {
        DType dt = DType.parse(dtype);
        int b = 2;
        int hTot = 7;
        int h = 4;
        int h0 = 2;
        int hkv = 2;
        int d = 64;
        Pattern p = spec.endsWith("+causal") ? Patterns.parse(spec.substring(0, spec.length() - 7)).withCausal()
                : Patterns.parse(spec);
        Random r = new Random(l * 31L + s + bq);
        float[] qAll = Tensor.ofFloats(dt, gaussian(r, b * l * hTot * d), b, l, hTot, d).toFloatArray();
        float[] kAll = Tensor.ofFloats(dt, gaussian(r, b * s * hkv * d), b, s, hkv, d).toFloatArray();
        float[] vAll = Tensor.ofFloats(dt, gaussian(r, b * s * hkv * d), b, s, hkv, d).toFloatArray();
        // Bq = 0 builds no work list: the gate then switches whole 128-row blocks, so that whole kernel tiles
        // (64 or 128 rows) are gated off and exit early.
        float[] gate = KernelTwinTest.routedGate(r, b, l, h, 1, 1, bq == 0 ? 128 : bq);
        AttentionShape sh = new AttentionShape(b, h, hkv, l, s, d);
        long es = dt.byteSize();
        FlashPlan.Tiling t = FlashPlan.Tiling.parse(tiling);
        String why = gpu.tilingUnavailable(t);
        org.junit.jupiter.api.Assumptions.assumeTrue(why == null, () -> tiling + ": " + why);
        gpu.setMmaTiling(t);
        long ws;
        try {
            ws = gpu.launchWorkspaceBytes(sh, dt, Algorithm.FLASH, p, 64, bq);
        } finally {
            gpu.setMmaTiling(FlashPlan.Tiling.W4);
        }
        assertEquals(ws, CudaAttentionEngine.deviceWorkspaceBytes(sh, dt, Algorithm.FLASH, p, 64, bq, t), "workspace, engine vs plan");
        float[] nan = new float[b * l * hTot * d];
        Arrays.fill(nan, Float.NaN);
        float[] got;
        long launched;
        try (DeviceTensor q = gpu.upload(Tensor.ofFloats(dt, qAll, b, l, hTot, d), dt, "qkv");
                DeviceTensor k = gpu.upload(Tensor.ofFloats(dt, kAll, b, s, hkv, d), dt, "qkv");
                DeviceTensor v = gpu.upload(Tensor.ofFloats(dt, vAll, b, s, hkv, d), dt, "qkv");
                DeviceTensor o = gpu.upload(Tensor.ofFloats(dt, nan, b, l, hTot, d), dt, "out");
                DeviceTensor g = gpu.upload(Tensor.ofFloats(gate, b, l, h), DType.F32, "gate");
                DeviceTensor w = ws == 0 ? null : gpu.upload(Tensor.ofInts(new int[(int) ((ws + 3) / 4)], (ws + 3) / 4), DType.I32,
                        "work")) {
            long[] qs = {(long) l * hTot * d, d, (long) hTot * d};
            long[] kvs = {(long) s * hkv * d, d, (long) hkv * d};
            CudaAttentionEngine.DeviceCall call = new CudaAttentionEngine.DeviceCall(q.address() + h0 * d * es, k.address(),
                    v.address(), o.address() + h0 * d * es, g.address(), w == null ? 0 : w.address(), ws,
                    new AttentionParams.Strides(qs, kvs, kvs.clone(), qs.clone()), sh, p, (float) (1 / Math.sqrt(d)), dt,
                    Algorithm.FLASH, 64, bq);
            gpu.setMmaTiling(t);
            try {
                gpu.launch(call, gpu.stream());
                launched = gpu.launchedTiles(call, gpu.stream());
            } finally {
                gpu.setMmaTiling(FlashPlan.Tiling.W4);
            }
            got = o.download(gpu.stream(), null).toFloatArray();
        }
        String what = dtype + " " + spec + " L=" + l + " S=" + s + " Bq=" + bq + " " + tiling;
        int[] list = CudaAttentionEngine.deviceWorkList(gate, sh, dt, Algorithm.FLASH, p, bq, t);
        long grid = CudaAttentionEngine.gridTiles(sh, dt, Algorithm.FLASH, p, t);
        assertEquals(list == null ? grid : list.length / 3, launched, what + ": launched tiles, device vs host mirror");

        float[] qc = new float[b * h * l * d];
        float[] kc = new float[b * hkv * s * d];
        float[] vc = new float[b * hkv * s * d];
        for (int bb = 0; bb < b; bb++) {
            for (int i = 0; i < l; i++) {
                for (int hh = 0; hh < h; hh++) {
                    System.arraycopy(qAll, ((bb * l + i) * hTot + h0 + hh) * d, qc, ((bb * h + hh) * l + i) * d, d);
                }
            }
            for (int j = 0; j < s; j++) {
                for (int hh = 0; hh < hkv; hh++) {
                    System.arraycopy(kAll, ((bb * s + j) * hkv + hh) * d, kc, ((bb * hkv + hh) * s + j) * d, d);
                    System.arraycopy(vAll, ((bb * s + j) * hkv + hh) * d, vc, ((bb * hkv + hh) * s + j) * d, d);
                }
            }
        }
        AttentionRequest req = AttentionRequest.builder(Tensor.ofFloats(dt, qc, b, h, l, d), Tensor.ofFloats(dt, kc, b, hkv, s, d),
                Tensor.ofFloats(dt, vc, b, hkv, s, d)).gate(Tensor.ofFloats(gate, b, l, h)).pattern(p).dtype(dt).build();
        // f32 against the float64 reference (the f32 CPU engine is itself only within 1e-5 of it); f16/bf16 against
        // the CPU engine on the same rounded inputs.
        float[] want = dt == DType.F32 ? ReferenceAttention.compute(req, ReferenceAttention.Rule.parse(spec)).oFloats()
                : cpu.run(req).o().toFloatArray();
        float[] mine = new float[b * h * l * d];
        for (int bb = 0; bb < b; bb++) {
            for (int i = 0; i < l; i++) {
                for (int hh = 0; hh < hTot; hh++) {
                    for (int e = 0; e < d; e++) {
                        float x = got[((bb * l + i) * hTot + hh) * d + e];
                        if (hh < h0 || hh >= h0 + h) {
                            assertTrue(Float.isNaN(x), what + ": head " + hh + " is not the call's and must stay untouched");
                        } else {
                            mine[((bb * h + hh - h0) * l + i) * d + e] = x;
                        }
                    }
                }
            }
        }
        OutputAssertions.assertOutputClose(mine, want, d, CudaAttentionGpuTest.tolerance(dt), what);
    }

    /**
     * A sparse call copies its layout into the workspace from a page-locked copy the engine caches per layout
     * (eight at most): eleven layouts in turn, then the first again (its copy evicted and made anew), each into
     * the same workspace, which holds the previous layout until the copy lands.
     */
    @Test
    void sparseLayoutCopiesStayRightAcrossEvictions() {
        DType dt = DType.BF16;
        int b = 1;
        int h = 2;
        int l = 150;
        int d = 64;
        AttentionShape sh = new AttentionShape(b, h, h, l, l, d);
        Random r = new Random(11);
        Tensor qh = Tensor.ofFloats(dt, gaussian(r, b * h * l * d), b, h, l, d);
        Tensor kh = Tensor.ofFloats(dt, gaussian(r, b * h * l * d), b, h, l, d);
        Tensor vh = Tensor.ofFloats(dt, gaussian(r, b * h * l * d), b, h, l, d);
        int[] windows = {3, 9, 17, 25, 33, 41, 49, 57, 65, 97, 129, 3};
        long ws = 0;
        for (int w : windows) {
            ws = Math.max(ws, gpu.launchWorkspaceBytes(sh, dt, Algorithm.SPARSE, Patterns.parse("window:" + w), 64));
        }
        try (DeviceTensor q = gpu.upload(qh, dt, "qkv");
                DeviceTensor k = gpu.upload(kh, dt, "qkv");
                DeviceTensor v = gpu.upload(vh, dt, "qkv");
                DeviceTensor o = gpu.upload(Tensor.ofFloats(dt, new float[b * h * l * d], b, h, l, d), dt, "out");
                DeviceTensor work = gpu.upload(Tensor.ofInts(new int[(int) ((ws + 3) / 4)], (ws + 3) / 4), DType.I32, "work")) {
            AttentionParams.Strides st = AttentionParams.Strides.contiguous(h, h, l, l, d);
            for (int w : windows) {
                Pattern p = Patterns.parse("window:" + w);
                o.fillBits(0x7FC0, gpu.stream()); // bf16 NaN: a row the launch skips cannot keep the previous window's output
                gpu.launch(new CudaAttentionEngine.DeviceCall(q.address(), k.address(), v.address(), o.address(), 0,
                        work.address(), ws, st, sh, p, (float) (1 / Math.sqrt(d)), dt, Algorithm.SPARSE, 64), gpu.stream());
                float[] got = o.download(gpu.stream(), null).toFloatArray();
                float[] want = cpu.run(AttentionRequest.builder(qh, kh, vh).pattern(p).dtype(dt).build()).o().toFloatArray();
                OutputAssertions.assertOutputClose(got, want, d, CudaAttentionGpuTest.tolerance(dt), "window:" + w);
                // An evicted copy is freed by the next lookup once its copy has landed (the download waited for it).
                assertTrue(gpu.retiredLayoutCopies() <= 1, "retired layout copies: " + gpu.retiredLayoutCopies());
            }
        }
        assertEquals(1, gpu.retiredLayoutCopies(), "the last call evicted a copy (window:25's), kept until the next lookup");
        gpu.launchWorkspaceBytes(sh, dt, Algorithm.SPARSE, Patterns.parse("window:3"), 64);
        assertEquals(0, gpu.retiredLayoutCopies(), "freed by the next call, its copy done");
    }

    private static float[] gaussian(Random r, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return x;
    }
}
