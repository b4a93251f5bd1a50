package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.ExecutionStats;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * What the tensor-core kernels really execute, counted by the CPU emulator (HR_EMU_STATS: mma.sync warp
 * instructions per launch), against the engine's own account of the work (query tiles launched, key tiles
 * visited): each (query tile, key tile) pair costs 4 warps × (D/2 for S = Qi·Kjᵀ + D/2 for O += P·Vj) = 4·D
 * mma.sync, so a kernel that computed skipped heads and threw the result away would fail here. Issue 6's
 * routing (2 shared heads, 4 of 14 routed per token) then shows its executed share of the dense work.
 * Instruction counts, not time: runs only on the emulator (make emu-test).
 */
@Tag("emu")
class EmulatedWorkTest {
    private static final int B = 1;
    private static final int H = 16;
    private static final int D = 64;
    private static final int L = 512;
    private static CudaAttentionEngine gpu;
    private static Path stats;

    @BeforeAll
    static void open() {
        assumeTrue(Boolean.getBoolean("headroute.emulator"), "runs on the CPU emulator only (make emu-test)");
        String file = System.getenv("HR_EMU_STATS");
        assumeTrue(file != null && !file.isEmpty(), "HR_EMU_STATS is not set (make emu-test sets it)");
        stats = Path.of(file);
        CudaProbe.Result probe = CudaProbe.result();
        assumeTrue(probe.usable(), "no usable (emulated) GPU: " + probe.reason());
        assumeTrue(CudaAttentionEngine.kernelsPackaged(), "the build has no CUDA kernels (built without nvcc)");
        gpu = CudaAttentionEngine.open(0);
        gpu.setPoisonOutputs(true);
    }

    @AfterAll
    static void close() {
        if (gpu != null) {
            gpu.close();
        }
    }

    /**
     * One line of HR_EMU_STATS; {@code wavefronts}: the shared-memory wavefronts its ldmatrix took (4 each,
     * conflict-free); {@code votes}: its warps' __any_sync, {@code votesTrue} those that came out true;
     * {@code wgmma}: its warpgroup wgmma.mma_async (m64n64k16) instructions; {@code wgmmaOverlaps}: its
     * warpgroups' wgmma.wait_group that left a committed group running.
     */
    record Launch(String kernel, long blocks, long mma, long ldmatrix, long cpAsyncBytes, long wavefronts, long votes,
            long votesTrue, long wgmma, long wgmmaOverlaps) {}

    /** Runs the request and returns the attention kernel's launch as the emulator counted it. */
    /** {@link #run} with the engine in {@code tiling} (back to W4 after). */
    private static Launch runIn(FlashPlan.Tiling tiling, AttentionRequest req, ExecutionStats[] out) throws IOException {
        gpu.setMmaTiling(tiling);
        try {
            return run(req, out);
        } finally {
            gpu.setMmaTiling(FlashPlan.Tiling.W4);
        }
    }

    private static Launch run(AttentionRequest req, ExecutionStats[] out) throws IOException {
        long before = Files.exists(stats) ? Files.size(stats) : 0;
        AttentionResult r = gpu.run(req);
        out[0] = r.stats();
        return flashLaunchSince(before);
    }

    private static Tensor gaussian(Random r, long... shape) {
        float[] x = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return Tensor.ofFloats(x, shape);
    }

    /**
     * Issue 6's gate: heads 0 and 1 shared (gate 1), 4 of the 14 others per token (or per block of
     * {@code block} tokens) with gate 1; the rest 0.
     */
    private static Tensor routedGate(Random r, int block) {
        float[] g = new float[B * L * H];
        int[] chosen = new int[4];
        for (int i = 0; i < L; i++) {
            if (i % block == 0) {
                List<Integer> heads = new ArrayList<>();
                for (int h = 2; h < H; h++) {
                    heads.add(h);
                }
                Collections.shuffle(heads, r);
                for (int k = 0; k < 4; k++) {
                    chosen[k] = heads.get(k);
                }
            }
            g[i * H] = 1f;
            g[i * H + 1] = 1f;
            for (int h : chosen) {
                g[i * H + h] = 1f;
            }
        }
        return Tensor.ofFloats(g, B, L, H);
    }

    @Test
    void kernelsExecuteExactlyThePlannedTilePairs() throws IOException {
        Random r = new Random(606);
        Tensor q = gaussian(r, B, H, L, D);
        Tensor k = gaussian(r, B, H, L, D);
        Tensor v = gaussian(r, B, H, L, D);
        ExecutionStats[] st = new ExecutionStats[1];
        long perPair = 4L * D;

        Launch dense = run(AttentionRequest.builder(q, k, v).dtype(DType.BF16).algorithm(Algorithm.FLASH).build(), st);
        long tiles = L / 64;
        assertEquals((long) B * H * tiles * tiles, st[0].keyTilesVisited());
        assertEquals(perPair * st[0].keyTilesVisited(), dense.mma(), "dense: " + dense);
        assertEquals((long) B * H * tiles, dense.blocks());

        Launch causal = run(AttentionRequest.builder(q, k, v).causal(true).dtype(DType.BF16).algorithm(Algorithm.FLASH)
                .build(), st);
        assertEquals(perPair * st[0].keyTilesVisited(), causal.mma(), "causal: " + causal);
        assertEquals((long) B * H * tiles * (tiles + 1) / 2, st[0].keyTilesVisited(), "causal visits the lower triangle");

        Launch window = run(AttentionRequest.builder(q, k, v).pattern(Patterns.parse("window:30")).dtype(DType.BF16)
                .algorithm(Algorithm.SPARSE).build(), st);
        assertEquals(perPair * st[0].keyTilesVisited(), window.mma(), "window: " + window);
        assertTrue(window.mma() < dense.mma() / 2, "a 61-key window over 512 keys skips most tile pairs: " + window);

        for (int block : new int[] {1, 64}) {
            Tensor gate = routedGate(r, block);
            Launch routed = run(AttentionRequest.builder(q, k, v).gate(gate).dtype(DType.BF16).algorithm(Algorithm.FLASH)
                    .build(), st);
            assertEquals(perPair * st[0].keyTilesVisited(), routed.mma(), "routed per " + block + ": " + routed);
            assertEquals(st[0].queryTiles(), routed.blocks(), "one block per planned query tile");
            double share = routed.mma() / (double) dense.mma();
            // 6 of 16 heads active per token: compacted rows fill ceil(count / 64) tiles per head, so the share is
            // 6/16 plus at most one partial tile per head.
            double bound = 6.0 / 16 + (double) H / (H * tiles);
            assertTrue(share >= 6.0 / 16 - 1e-9 && share <= bound, "routed per " + block + " executes " + share
                    + " of dense mma.sync (6/16 = 0.375, at most " + bound + ")");
            System.out.printf("emulated mma.sync, routed 2+4 of 16 heads per %d token(s), L=%d: %d of %d dense = %.4f%n",
                    block, L, routed.mma(), dense.mma(), share);
            // And it still computes the right thing.
            try (CpuAttentionEngine cpu = new CpuAttentionEngine()) {
                AttentionResult want = cpu.run(AttentionRequest.builder(q, k, v).gate(gate).dtype(DType.BF16).wantLse(true)
                        .build());
                AttentionResult got = gpu.run(AttentionRequest.builder(q, k, v).gate(gate).dtype(DType.BF16)
                        .algorithm(Algorithm.FLASH).wantLse(true).build());
                CudaAttentionGpuTest.compare(got, want, 1e-2, "routed per " + block);
            }
        }
    }

    /** The attention launch of the newest lines of HR_EMU_STATS, from {@code before} bytes on. */
    private static Launch flashLaunchSince(long before) throws IOException {
        List<Launch> flash = new ArrayList<>();
        try (RandomAccessFile f = new RandomAccessFile(stats.toFile(), "r")) {
            f.seek(before);
            byte[] b = new byte[(int) (f.length() - before)];
            f.readFully(b);
            for (String line : new String(b, StandardCharsets.UTF_8).split("\n")) {
                String[] c = line.split("\t");
                if (c.length == 10 && c[0].startsWith("hr_flash_")) {
                    flash.add(new Launch(c[0], Long.parseLong(c[1]), Long.parseLong(c[2]), Long.parseLong(c[3]),
                            Long.parseLong(c[4]), Long.parseLong(c[5]), Long.parseLong(c[6]), Long.parseLong(c[7]),
                            Long.parseLong(c[8]), Long.parseLong(c[9])));
                }
            }
        }
        assertEquals(1, flash.size(), "attention launches of one call: " + flash);
        return flash.get(0);
    }

    /**
     * A sparse layer routed per token on device memory (as GPU models call it): the work list of compacted
     * rows is built on the device and the kernel merges the rows' original tiles' key lists itself. It executes
     * exactly the pairs of the host's merge of the same gate (CompactedSparseTiles: 4·D mma.sync per pair;
     * blocks past the device-sized list exit at once), less than a tile list of the same gate would, and the
     * right answer. The same gate given to {@code run} (on the host) runs the same kernel and pairs.
     */
    @Test
    void sparseLayersRoutedPerTokenOnTheDeviceComputeOnlyTheMergedLists() throws IOException {
        Random r = new Random(608);
        io.headroute.pattern.Pattern window = Patterns.parse("window:30");
        io.headroute.engine.AttentionShape sh = new io.headroute.engine.AttentionShape(B, H, H, L, L, D);
        Tensor q = Tensor.ofFloats(DType.BF16, gaussian(r, B, H, L, D).toFloatArray(), B, H, L, D);
        Tensor k = Tensor.ofFloats(DType.BF16, gaussian(r, B, H, L, D).toFloatArray(), B, H, L, D);
        Tensor v = Tensor.ofFloats(DType.BF16, gaussian(r, B, H, L, D).toFloatArray(), B, H, L, D);
        Tensor gate = routedGate(r, 1);
        long[] st = {(long) H * L * D, (long) L * D, D};
        long[] mma = new long[2];
        float[] got = null;
        float[] poison = new float[(int) q.numel()];
        java.util.Arrays.fill(poison, Float.NaN); // every output element must be written (or zeroed by the launch)
        for (int routed = 0; routed < 2; routed++) {
            int bq = routed == 1 ? 1 : 0;
            long ws = gpu.launchWorkspaceBytes(sh, DType.BF16, Algorithm.SPARSE, window, 64, bq);
            try (io.headroute.cuda.DeviceTensor dq = gpu.upload(q, DType.BF16, "qkv");
                    io.headroute.cuda.DeviceTensor dk = gpu.upload(k, DType.BF16, "qkv");
                    io.headroute.cuda.DeviceTensor dv = gpu.upload(v, DType.BF16, "qkv");
                    io.headroute.cuda.DeviceTensor o = gpu.upload(Tensor.ofFloats(DType.BF16, poison, B, H, L, D),
                            DType.BF16, "out");
                    io.headroute.cuda.DeviceTensor g = gpu.upload(gate, DType.F32, "gate");
                    io.headroute.cuda.DeviceTensor w = gpu.upload(Tensor.ofInts(new int[(int) ((ws + 3) / 4)], (ws + 3) / 4),
                            DType.I32, "work")) {
                CudaAttentionEngine.DeviceCall call = new CudaAttentionEngine.DeviceCall(dq.address(), dk.address(), dv.address(),
                        o.address(), routed == 1 ? g.address() : 0, w.address(), ws,
                        new AttentionParams.Strides(st, st.clone(), st.clone(), st.clone()), sh, window, (float) (1 / Math.sqrt(D)),
                        DType.BF16, Algorithm.SPARSE, 64, bq);
                long before = Files.exists(stats) ? Files.size(stats) : 0;
                gpu.launch(call, gpu.stream());
                o.download(gpu.stream(), null); // waits for the launch
                Launch l = flashLaunchSince(before);
                mma[routed] = l.mma();
                if (routed == 1) {
                    assertTrue(l.kernel().startsWith("hr_flash_sparse_merge_"), l.kernel());
                    got = o.download(gpu.stream(), null).toFloatArray();
                } else {
                    assertTrue(l.kernel().startsWith("hr_flash_sparse_bf16"), l.kernel());
                }
            }
        }
        float[] gf = gate.toFloatArray();
        GateWork.Compaction c = GateWork.compact(gf, B, L, H);
        int[] work = GateWork.compactedTiles(c.counts(), B, H, 64);
        SparseTiles tiles = SparseTiles.build(window, io.headroute.pattern.BlockLayout.build(window, H, L, L, 64), L, L, 64, 64);
        long pairs = CompactedSparseTiles.build(tiles, work, c.rows(), c.counts(), H, L, L).listedTiles();
        assertEquals(4L * D * pairs, mma[1], "routed: the pairs of the host's merged lists");
        ExecutionStats[] viaRun = new ExecutionStats[1];
        Launch ran = run(AttentionRequest.builder(q, k, v).gate(gate).pattern(window).dtype(DType.BF16).algorithm(Algorithm.SPARSE)
                .build(), viaRun);
        assertTrue(ran.kernel().startsWith("hr_flash_sparse_merge_"), "run() with the gate on the host: " + ran.kernel());
        assertEquals(mma[1], ran.mma(), "run(): the pairs launch() executed");
        assertEquals(pairs, viaRun[0].keyTilesVisited(), "run()'s account of its pairs");
        assertEquals(work.length / 3, viaRun[0].queryTiles(), "run(): the compacted tiles");
        int perHead = tiles.layoutHeads() == 1 ? H : 1;
        assertEquals(4L * D * B * perHead * tiles.listedTiles(), mma[0], "unrouted: the layout's pairs");
        // What a tile list (the previous plan: every 64-row tile with a routed row) would have run.
        int[] active = GateWork.activeTiles(gf, B, L, H, 64);
        long tileListPairs = 0;
        for (int e = 0; e < active.length; e += 3) {
            tileListPairs += tiles.listed(active[e + 1], active[e + 2]);
        }
        double share = mma[1] / (double) mma[0];
        System.out.printf("emulated mma.sync, %s routed 2+4 of 16 heads per token on the device, L=%d: %d of %d = %.4f"
                + " (a tile list: %.4f)%n", window.spec(), L, mma[1], mma[0], share, tileListPairs / (double) (mma[0] / (4L * D)));
        assertTrue(pairs < tileListPairs, "compaction beats the tile list: " + pairs + " vs " + tileListPairs + " pairs");
        try (CpuAttentionEngine cpu = new CpuAttentionEngine()) {
            float[] want = cpu.run(AttentionRequest.builder(q, k, v).gate(gate).pattern(window).dtype(DType.BF16).build()).o()
                    .toFloatArray();
            io.headroute.engine.OutputAssertions.assertOutputClose(got, want, D, DType.BF16.tolerance(), "routed sparse window:30 bf16");
        }
    }

    /** Flash attention on Gaussian bf16 inputs, B × 4 heads × L rows, head dim d. */
    private static AttentionRequest bf16Flash(Random r, int d, boolean causal) {
        Tensor q = gaussian(r, B, 4, L, d);
        Tensor k = gaussian(r, B, 4, L, d);
        Tensor v = gaussian(r, B, 4, L, d);
        return AttentionRequest.builder(q, k, v).dtype(DType.BF16).algorithm(Algorithm.FLASH).causal(causal).build();
    }

    /**
     * The W2 tiling does the same tensor-core work as W4 with fewer shared-memory reads: per (query tile,
     * key tile) pair 4·D mma.sync in both; ldmatrix (512 bytes each) K and V 4·D/16 per warp and, at
     * D = 128, Qi 2·D/16 per warp (re-read from shared memory), so 2 warps issue 160 against W4's 4 warps'
     * 256 (plus W4's one-time Qi loads): 0.625 of W4's ldmatrix bytes. At D = 64 W2 keeps Qi in registers.
     * W4X2 (two W2 warp pairs over 128 rows) reads shared memory exactly as W2 and copies K and V half as often.
     */
    @Test
    void w2AndW4x2ReadLessSharedMemoryPerTilePair() throws IOException {
        Random r = new Random(607);
        for (int d : new int[] {64, 128}) {
            AttentionRequest req = bf16Flash(r, d, false);
            ExecutionStats[] st = new ExecutionStats[1];
            Launch w4 = run(req, st);
            long pairs = st[0].keyTilesVisited();
            long blocks = st[0].queryTiles();
            Launch w2 = runIn(FlashPlan.Tiling.W2, req, st);
            assertTrue(w2.kernel().startsWith("hr_flash_fwd_w2_"), w2.kernel());
            assertEquals(pairs, st[0].keyTilesVisited());
            assertEquals(4L * d * pairs, w4.mma(), "W4 " + w4);
            assertEquals(4L * d * pairs, w2.mma(), "W2 does the same mma.sync: " + w2);
            long qOnce = 4L * (d / 16); // W4 and W2 at D = 64: Qi into registers once per block (one ldmatrix per k step and m-tile)
            assertEquals(4 * (d / 16 * 4 + 4 * (d / 16)) * pairs + qOnce * blocks, w4.ldmatrix(), "W4 " + w4);
            long w2PerPair = 2 * (d / 16 * 4 + 4 * (d / 16) + (d > 64 ? 2 * (d / 16) : 0));
            assertEquals(w2PerPair * pairs + (d > 64 ? 0 : qOnce * blocks), w2.ldmatrix(), "W2 " + w2);
            assertEquals(w4.cpAsyncBytes(), w2.cpAsyncBytes(), "the same tiles are copied in");
            System.out.printf("emulated ldmatrix, bf16 D=%d, %d tile pairs: W4 %d, W2 %d = %.3f of W4%n", d, pairs, w4.ldmatrix(),
                    w2.ldmatrix(), w2.ldmatrix() / (double) w4.ldmatrix());

            // W4X2: 128-row blocks of 4 W2-shaped warps. The same mma.sync and ldmatrix as W2 (each warp's work per
            // 64-key tile is W2's), but each K/V tile is copied into shared memory once per 128 query rows.
            Launch w4x2 = runIn(FlashPlan.Tiling.W4X2, req, st);
            assertTrue(w4x2.kernel().startsWith("hr_flash_fwd_w4x2_"), w4x2.kernel());
            assertEquals(pairs / 2, st[0].keyTilesVisited(), "128-row query tiles: half the (query tile, key tile) pairs");
            assertEquals(blocks / 2, w4x2.blocks(), "half the blocks");
            assertEquals(4L * d * pairs, w4x2.mma(), "W4X2 does the same mma.sync: " + w4x2);
            assertEquals(w2.ldmatrix(), w4x2.ldmatrix(), "W4X2 reads shared memory as W2 does: " + w4x2);
            long qBytes = 2L * req.q().numel();
            long kvBytes = pairs * 2 * 64 * d * 2; // K and V tiles of 64 keys, once per 64-row query tile
            assertEquals(qBytes + kvBytes, w4.cpAsyncBytes(), "W4 copies Q once and K, V per tile pair");
            assertEquals(qBytes + kvBytes / 2, w4x2.cpAsyncBytes(), "W4X2 copies K and V once per 128 query rows");
            System.out.printf("emulated cp.async, bf16 D=%d: W4 %d bytes, W4X2 %d = %.3f of W4%n", d, w4.cpAsyncBytes(),
                    w4x2.cpAsyncBytes(), w4x2.cpAsyncBytes() / (double) w4.cpAsyncBytes());
        }
    }

    /**
     * WG (wgmma) does W4's work with warpgroup instructions: per (query tile, key tile) pair D/16 wgmma
     * m64n64k16 for S = Qi·Kjᵀ and 4·D/64 for O += P·Vj (one m64n64k16 is the work of 32 m16n8k16: 32·D/8 =
     * W4's 4·D mma.sync), no mma.sync, and no ldmatrix but Qi's, once per block; the same tiles copied in, the
     * same pairs visited, the same votes of the softmax. WGP, which overlaps each tile's P·V with the next
     * tile's softmax, issues exactly what WG does, and leaves a P·V running at the S wait of every tile but
     * each block's first (WG never).
     */
    @Test
    void wgIssuesWgmmaInPlaceOfMmaSyncAndLdmatrix() throws IOException {
        Random r = new Random(611);
        for (int d : new int[] {64, 128}) {
            AttentionRequest req = bf16Flash(r, d, true);
            ExecutionStats[] st = new ExecutionStats[1];
            Launch w4 = run(req, st);
            long pairs = st[0].keyTilesVisited();
            long blocks = st[0].queryTiles();
            Launch wg = runIn(FlashPlan.Tiling.WG, req, st);
            assertTrue(wg.kernel().startsWith("hr_flash_fwd_wg_"), wg.kernel());
            assertEquals(pairs, st[0].keyTilesVisited(), "the same key tiles");
            assertEquals(blocks, wg.blocks());
            assertEquals(0, wg.mma(), "no mma.sync: " + wg);
            assertEquals((d / 16 + 4 * d / 64) * pairs, wg.wgmma(), "WG " + wg);
            assertEquals(32 * wg.wgmma(), w4.mma(), "one m64n64k16 does the work of 32 m16n8k16");
            assertEquals(4L * (d / 16) * blocks, wg.ldmatrix(), "ldmatrix for Qi only, once per block: " + wg);
            assertEquals(4L * (d / 16) * blocks, wg.wavefronts() / 4, "Qi's loads conflict-free");
            assertEquals(w4.cpAsyncBytes(), wg.cpAsyncBytes(), "the same tiles are copied in");
            assertEquals(w4.votes(), wg.votes(), "the same softmax steps");
            System.out.printf("emulated WG, bf16 D=%d causal, %d tile pairs: %d wgmma (W4: %d mma.sync, %d ldmatrix)%n", d, pairs,
                    wg.wgmma(), w4.mma(), w4.ldmatrix());
            Launch wgp = runIn(FlashPlan.Tiling.WGP, req, st);
            assertTrue(wgp.kernel().startsWith("hr_flash_fwd_wgp_"), wgp.kernel());
            assertEquals(pairs, st[0].keyTilesVisited(), "WGP: the same key tiles");
            assertEquals(List.of(wg.blocks(), 0L, wg.wgmma(), wg.ldmatrix(), wg.cpAsyncBytes(), wg.votes()),
                    List.of(wgp.blocks(), wgp.mma(), wgp.wgmma(), wgp.ldmatrix(), wgp.cpAsyncBytes(), wgp.votes()), "WGP issues what WG does");
            assertEquals(0, wg.wgmmaOverlaps(), "WG waits for every group at once");
            assertEquals(pairs - blocks, wgp.wgmmaOverlaps(), "WGP: a P·V running through each tile's softmax but the first");
        }
    }

    /**
     * WGX2 and WGPX2 (two warpgroups on 128-row blocks) visit W4X2's tile pairs and copy what W4X2 copies (each key
     * and value tile once per 128 query rows: half of WG's), with WG's wgmma per warpgroup and pair (D/16 + 4·D/64,
     * twice per 128-row pair) but for the block's last (diagonal) tile, which the first warpgroup's rows cannot use
     * and it skips; Qi's ldmatrix once per block, a vote per warp and tile it computes; WGPX2 issues what WGX2 does
     * and leaves a warpgroup's P·V running at the S wait of every tile it computes but its first (the first
     * warpgroup issues its last P·V at the skipped tile, and waits for it there).
     */
    @Test
    void twoWarpgroupTilingsCopyEachKeyTileOncePer128Rows() throws IOException {
        Random r = new Random(613);
        for (int d : new int[] {64, 128}) {
            AttentionRequest req = bf16Flash(r, d, true);
            ExecutionStats[] st = new ExecutionStats[1];
            Launch wg = runIn(FlashPlan.Tiling.WG, req, st);
            Launch w4x2 = runIn(FlashPlan.Tiling.W4X2, req, st);
            long pairs = st[0].keyTilesVisited();
            long blocks = st[0].queryTiles();
            Launch wgx2 = runIn(FlashPlan.Tiling.WGX2, req, st);
            assertTrue(wgx2.kernel().startsWith("hr_flash_fwd_wgx2_"), wgx2.kernel());
            assertEquals(List.of(pairs, blocks), List.of(st[0].keyTilesVisited(), wgx2.blocks()), "W4X2's tiles and blocks");
            assertEquals(0, wgx2.mma(), "no mma.sync: " + wgx2);
            assertEquals((d / 16 + 4 * d / 64) * (2 * pairs - blocks), wgx2.wgmma(), "WGX2 " + wgx2);
            assertEquals(8L * (d / 16) * blocks, wgx2.ldmatrix(), "ldmatrix for Qi only, once per block: " + wgx2);
            assertEquals(w4x2.cpAsyncBytes(), wgx2.cpAsyncBytes(), "K and V copied once per 128 query rows, as in W4X2");
            assertTrue(wgx2.cpAsyncBytes() < wg.cpAsyncBytes(), wgx2 + " vs WG " + wg);
            assertEquals(4 * (2 * pairs - blocks), wgx2.votes(), "one vote per warp and tile computed");
            System.out.printf("emulated WGX2, bf16 D=%d causal: cp.async %d bytes = %.3f of WG's, %d wgmma (WG %d)%n", d,
                    wgx2.cpAsyncBytes(), wgx2.cpAsyncBytes() / (double) wg.cpAsyncBytes(), wgx2.wgmma(), wg.wgmma());
            Launch wgpx2 = runIn(FlashPlan.Tiling.WGPX2, req, st);
            assertTrue(wgpx2.kernel().startsWith("hr_flash_fwd_wgpx2_"), wgpx2.kernel());
            assertEquals(List.of(wgx2.blocks(), 0L, wgx2.wgmma(), wgx2.ldmatrix(), wgx2.cpAsyncBytes(), wgx2.votes()),
                    List.of(wgpx2.blocks(), wgpx2.mma(), wgpx2.wgmma(), wgpx2.ldmatrix(), wgpx2.cpAsyncBytes(), wgpx2.votes()),
                    "WGPX2 issues what WGX2 does");
            assertEquals(0, wgx2.wgmmaOverlaps(), "WGX2 waits for every group at once");
            assertEquals(2 * (pairs - blocks) - blocks, wgpx2.wgmmaOverlaps(), "WGPX2: each warpgroup's P·V running but the first");
        }
    }

    /**
     * The block-sparse kernels of WGX2 and WGPX2 run 128-row tiles over a layout of 64-row blocks: each tile lists
     * the key tiles either of its two layout rows lists (at least half of WG's pairs, fewer than all) and copies
     * each once for 128 rows (fewer K/V bytes than WG); a warpgroup multiplies a listed tile only where one of its
     * 64 rows may use it (D/16 + 4·D/64 wgmma, a vote per warp): a full tile in both (where both have rows), a
     * partial one where its mask words are not all zero — as many as the host's lists say. WGPX2 issues what WGX2
     * does.
     */
    @Test
    void twoWarpgroupSparseKernelsVisitTheListedTilesOncePer128Rows() throws IOException {
        Random r = new Random(617);
        int d = 64;
        int heads = 2;
        // A window (the two layout rows of a tile list nearly the same blocks) and BigBird with 4 random blocks per
        // layout row (they differ: a tile's list holds both rows' random blocks, each only one warpgroup's).
        for (Object[] c : new Object[][] {{"window:70", 300}, {"bigbird:64:1:1:4:9", 640}}) {
            String spec = (String) c[0];
            int l = (Integer) c[1];
            Tensor q = gaussian(r, B, heads, l, d);
            Tensor k = gaussian(r, B, heads, l, d);
            Tensor v = gaussian(r, B, heads, l, d);
            Pattern p = Patterns.parse(spec);
            AttentionRequest sparse = AttentionRequest.builder(q, k, v).dtype(DType.F16).algorithm(Algorithm.SPARSE).pattern(p)
                    .blockSize(64).build();
            ExecutionStats[] st = new ExecutionStats[1];
            Launch wg = runIn(FlashPlan.Tiling.WG, sparse, st);
            long wgPairs = st[0].keyTilesVisited();
            Launch wgx2 = runIn(FlashPlan.Tiling.WGX2, sparse, st);
            long pairs = st[0].keyTilesVisited();
            assertTrue(wgx2.kernel().startsWith("hr_flash_sparse_wgx2_f16_"), wgx2.kernel());
            assertEquals((long) B * heads * ((l + 127) / 128), wgx2.blocks(), spec + ": ceil(L / 128) tiles per (b, h)");
            assertTrue(pairs < wgPairs && 2 * pairs >= wgPairs, spec + ": " + pairs + " pairs of 128-row tiles, WG " + wgPairs);
            SparseTiles st128 = SparseTiles.build(p, BlockLayout.build(p, heads, l, l, 64), l, l, 128, 64);
            long computed = 0; // (128-row tile, key tile, warpgroup) with a row of the warpgroup that may use the tile
            long partials = 0;
            for (int h = 0; h < heads; h++) {
                for (int qt = 0; qt < st128.queryTiles(); qt++) {
                    int groups = l - 128 * qt > 64 ? 2 : 1;
                    computed += (long) groups * st128.full(h, qt).length;
                    partials += st128.partial(h, qt).length;
                    for (int x = 0; x < st128.partial(h, qt).length; x++) {
                        computed += warpgroupsUsing(st128.mask(h, qt, x));
                    }
                }
            }
            long layoutHeads = st128.layoutHeads() == 1 ? heads : 1;
            assertEquals(pairs, st128.listedTiles() * layoutHeads, spec + ": the host's pairs are the lists'");
            assertTrue(computed < 2 * pairs, spec + ": " + computed + " warpgroup tiles of " + pairs + " pairs: some serve one warpgroup");
            assertEquals((d / 16 + 4 * d / 64) * computed, wgx2.wgmma(), spec + ": each warpgroup on the tiles its rows use: " + wgx2);
            assertEquals(4 * computed + 8 * partials, wgx2.votes(), spec + ": a vote per warp and tile computed, and on partial tiles' words");
            assertTrue(wgx2.cpAsyncBytes() < wg.cpAsyncBytes(), wgx2 + " vs WG " + wg);
            Launch wgpx2 = runIn(FlashPlan.Tiling.WGPX2, sparse, st);
            assertTrue(wgpx2.kernel().startsWith("hr_flash_sparse_wgpx2_f16_"), wgpx2.kernel());
            assertEquals(List.of(wgx2.blocks(), wgx2.wgmma(), wgx2.cpAsyncBytes(), wgx2.votes()),
                    List.of(wgpx2.blocks(), wgpx2.wgmma(), wgpx2.cpAsyncBytes(), wgpx2.votes()), spec + ": WGPX2 issues what WGX2 does");
            System.out.printf("emulated sparse %s f16 D=%d L=%d: WGX2 %d pairs (WG %d), wgmma %.3f of WG's (both warpgroups on every"
                    + " pair: %.3f), cp.async %.3f of WG's%n", spec, d, l, pairs, wgPairs, wgx2.wgmma() / (double) wg.wgmma(),
                    2.0 * pairs / wgPairs, wgx2.cpAsyncBytes() / (double) wg.cpAsyncBytes());
        }
    }

    /** Of a partial tile's 128 row words, how many 64-row halves (warpgroups) have a row that may use a key. */
    private static int warpgroupsUsing(long[] words) {
        int n = 0;
        for (int g = 0; g < 2; g++) {
            long any = 0;
            for (int row = 64 * g; row < 64 * g + 64; row++) {
                any |= words[row];
            }
            n += any != 0 ? 1 : 0;
        }
        return n;
    }

    /**
     * The merging kernel of WGX2 (compacted rows over a block-sparse layout, lists merged on the device): a
     * compacted 128-row tile's rows come from several original tiles, so its merged list holds key tiles only
     * some rows use; each warpgroup multiplies those of the tiles its own valid rows may use (HrMergedKeys' votes
     * per 32 rows), as many as the host's model of the merge says (CompactedSparseTiles' per-row words).
     */
    @Test
    void twoWarpgroupMergingKernelSkipsWhatItsRowsCannotUse() throws IOException {
        Random r = new Random(619);
        int d = 64;
        int heads = 2;
        int l = 640;
        Pattern p = Patterns.parse("bigbird:64:1:1:4:9");
        Tensor q = gaussian(r, B, heads, l, d);
        Tensor k = gaussian(r, B, heads, l, d);
        Tensor v = gaussian(r, B, heads, l, d);
        FlashPlan plan = FlashPlan.sparse(new io.headroute.engine.AttentionShape(B, heads, heads, l, l, d), DType.F16,
                FlashPlan.Tiling.WGX2);
        SparseTiles st128 = SparseTiles.build(p, BlockLayout.build(p, heads, l, l, 64), l, l, 128, 64);
        // The first of these gates that the engine compacts (compaction must pay in key tiles visited).
        float[] g = null;
        AttentionRequest req = null;
        for (double[] zeros : new double[][] {{0.6, 0.8}, {0.85, 0.9}, {0.93, 0.96}}) {
            g = CompactedSparseTilesTest.gate(r, B, l, heads, zeros[0], zeros[1]);
            req = AttentionRequest.builder(q, k, v).dtype(DType.F16).algorithm(Algorithm.SPARSE).pattern(p).blockSize(64)
                    .gate(Tensor.ofFloats(g, B, l, heads)).build();
            if (CudaAttentionEngine.GatePlan.of(req, plan, st128).mode() == CudaAttentionEngine.GateMode.COMPACT) {
                break;
            }
        }
        ExecutionStats[] st = new ExecutionStats[1];
        Launch wgx2 = runIn(FlashPlan.Tiling.WGX2, req, st);
        assertTrue(wgx2.kernel().startsWith("hr_flash_sparse_merge_wgx2_f16_"), wgx2.kernel());
        GateWork.Compaction c = GateWork.compact(g, B, l, heads);
        int[] work = GateWork.compactedTiles(c.counts(), B, heads, 128);
        CompactedSparseTiles merged = CompactedSparseTiles.build(st128, work, c.rows(), c.counts(), heads, l, l);
        long computed = 0; // (compacted tile, key tile, warpgroup) with a row of the warpgroup that may use the tile
        for (int e = 0; e < merged.blocks(); e++) {
            int n = Math.min(128, c.counts()[work[3 * e] * heads + work[3 * e + 1]] - 128 * work[3 * e + 2]);
            computed += (long) (n > 64 ? 2 : 1) * merged.full(e).length;
            for (int x = 0; x < merged.partial(e).length; x++) {
                computed += warpgroupsUsing(merged.mask(e, x));
            }
        }
        long pairs = merged.listedTiles();
        assertEquals(pairs, st[0].keyTilesVisited(), "the engine's count is the model's");
        assertTrue(computed < 2 * pairs, computed + " warpgroup tiles of " + pairs + " pairs: some serve one warpgroup");
        assertEquals((d / 16 + 4 * d / 64) * computed, wgx2.wgmma(), "each warpgroup on the tiles its rows use: " + wgx2);
        Launch wgpx2 = runIn(FlashPlan.Tiling.WGPX2, req, st);
        assertTrue(wgpx2.kernel().startsWith("hr_flash_sparse_merge_wgpx2_f16_"), wgpx2.kernel());
        assertEquals(wgx2.wgmma(), wgpx2.wgmma(), "WGPX2 issues what WGX2 does");
        System.out.printf("emulated merging sparse %s f16 D=%d L=%d, compacted rows: WGX2 %d pairs, wgmma %.3f of both warpgroups"
                + " on every pair%n", p.spec(), d, l, pairs, computed / (2.0 * pairs));
    }

    /**
     * Every ldmatrix of the tensor-core kernels is free of shared-memory bank conflicts (4 wavefronts per
     * .x4: each 8x8 matrix's 8 rows of 16 bytes land in 8 distinct groups of 4 banks, which the rows'
     * padding by 8 elements gives): every head dim, the W4, W2 and W4X2 tilings, the sparse and the merging
     * sparse kernels, with an odd length (tails zero-filled in place). The emulator counts the wavefronts
     * from the lanes' addresses as the hardware serves them (one phase per matrix).
     */
    @Test
    void ldmatrixIsFreeOfBankConflicts() throws IOException {
        Random r = new Random(609);
        int l = 200;
        int h = 2;
        for (int d : new int[] {32, 64, 96, 128}) {
            Tensor q = gaussian(r, 1, h, l, d);
            Tensor k = gaussian(r, 1, h, l, d);
            Tensor v = gaussian(r, 1, h, l, d);
            List<Launch> launches = new ArrayList<>();
            ExecutionStats[] st = new ExecutionStats[1];
            AttentionRequest dense = AttentionRequest.builder(q, k, v).dtype(DType.BF16).algorithm(Algorithm.FLASH).build();
            launches.add(run(dense, st));
            if (d >= 64) {
                launches.add(runIn(FlashPlan.Tiling.W2, dense, st));
            }
            if (d == 64 || d == 128) {
                launches.add(runIn(FlashPlan.Tiling.W4X2, dense, st));
            }
            io.headroute.pattern.Pattern window = Patterns.parse("window:40");
            launches.add(run(AttentionRequest.builder(q, k, v).pattern(window).dtype(DType.F16).algorithm(Algorithm.SPARSE).build(),
                    st));
            // Most rows gated off: compacted rows on the window run the merging kernel.
            float[] g = new float[l * h];
            for (int i = 0; i < g.length; i++) {
                g[i] = r.nextDouble() < 0.8 ? 0f : 1f;
            }
            launches.add(run(AttentionRequest.builder(q, k, v).pattern(window).gate(Tensor.ofFloats(g, 1, l, h))
                    .dtype(DType.BF16).algorithm(Algorithm.SPARSE).build(), st));
            assertTrue(launches.get(launches.size() - 1).kernel().startsWith("hr_flash_sparse_merge_"),
                    launches.get(launches.size() - 1).kernel());
            for (Launch x : launches) {
                assertTrue(x.ldmatrix() > 0, x.toString());
                assertEquals(4 * x.ldmatrix(), x.wavefronts(), "D=" + d + ": bank conflicts in " + x);
            }
        }
    }

    /**
     * The tensor-core loop rescales O and l only when a row's max grows by more than 2^8 (log2 units): each
     * warp votes once per key tile (__any_sync), and a true vote is a rescale. On Gaussian scores
     * (bf16, H = 4, D = 64, L = S = 1024, scale 1/√D) only each warp's first tile rescales: every later
     * tile skips the D/2 multiplies of O per thread. With key j's row scaled by 1 + 9j/S and scale 0.9 the
     * row maxima keep growing and later tiles rescale too (the output checked against the CPU engine).
     */
    @Test
    void rescalesOnlyWhenARowMaxGrowsBy256() throws IOException {
        Random r = new Random(77);
        int h = 4;
        int d = 64;
        int l = 1024;
        Tensor q = gaussian(r, 1, h, l, d);
        Tensor k = gaussian(r, 1, h, l, d);
        Tensor v = gaussian(r, 1, h, l, d);
        ExecutionStats[] st = new ExecutionStats[1];
        Launch plain = run(AttentionRequest.builder(q, k, v).dtype(DType.BF16).algorithm(Algorithm.FLASH).build(), st);
        long warps = 4 * plain.blocks();
        assertEquals(h * (l / 64), plain.blocks(), plain.toString());
        assertEquals(warps * (l / 64), plain.votes(), "one vote per warp and key tile: " + plain);
        assertEquals(warps, plain.votesTrue(), "only the first key tile rescales: " + plain);

        float[] kx = k.toFloatArray();
        for (int j = 0; j < h * l; j++) {
            for (int x = 0; x < d; x++) {
                kx[j * d + x] *= 1f + 9f * (j % l) / l;
            }
        }
        Tensor grown = Tensor.ofFloats(kx, 1, h, l, d);
        AttentionRequest req = AttentionRequest.builder(q, grown, v).scale(0.9f).dtype(DType.BF16).algorithm(Algorithm.FLASH)
                .build();
        long before = Files.exists(stats) ? Files.size(stats) : 0;
        AttentionResult got = gpu.run(req);
        Launch growing = flashLaunchSince(before);
        assertEquals(plain.votes(), growing.votes(), growing.toString());
        assertTrue(growing.votesTrue() > 2 * warps, "growing maxima rescale later tiles too: " + growing);
        try (CpuAttentionEngine cpu = new CpuAttentionEngine()) {
            io.headroute.engine.OutputAssertions.assertOutputClose(got.o().toFloatArray(), cpu.run(req).o().toFloatArray(), d,
                    DType.BF16.tolerance(), "bf16 growing maxima, scale 0.9");
        }
        System.out.printf("emulated rescales, bf16 D=%d L=S=%d: Gaussian scores %d of %d warp-tiles (%.3f), growing maxima %d (%.3f)%n",
                d, l, plain.votesTrue(), plain.votes(), plain.votesTrue() / (double) plain.votes(), growing.votesTrue(),
                growing.votesTrue() / (double) growing.votes());
    }
}
