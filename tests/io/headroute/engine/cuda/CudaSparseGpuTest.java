package io.headroute.engine.cuda;

import static io.headroute.engine.cuda.CudaAttentionGpuTest.compare;
import static io.headroute.engine.cuda.CudaAttentionGpuTest.gaussian;
import static io.headroute.engine.cuda.CudaAttentionGpuTest.tolerance;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.cuda.DeviceTensor;
import io.headroute.cuda.Resources;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cpu.ReferenceAttention;
import io.headroute.engine.cpu.ReferenceAttention.Rule;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The block-sparse kernels and head skipping against the CPU engine on fresh random inputs, outputs
 * poisoned with NaN: every pattern of the contract with and without --causal, layout blocks 64 and 128,
 * f32/f16/bf16, D 64 and 128, GQA/MQA, odd lengths with L < S, empty rows, gates with wholly gated
 * tiles (work lists) and sparse gates (compaction); the device work lists against their host mirror,
 * and the executed-tile counts against brute force. Skips itself without a usable GPU.
 */
@Tag("gpu")
class CudaSparseGpuTest {
    private static CudaAttentionEngine gpu;
    private static CpuAttentionEngine cpu;

    @TempDir
    static Path dir;

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

    static Rule randomLayout(long seed, int heads, int kvLen, int bs, double keep) {
        return SparseTilesTest.randomLayout(seed, heads, kvLen, bs, keep);
    }

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        // B, H, Hkv, L, S
        int[][] shapes = {{1, 4, 4, 77, 77}, {2, 4, 2, 77, 300}, {1, 4, 1, 300, 300}, {1, 2, 2, 1000, 1000}, {1, 4, 2, 130, 1000}};
        int n = 0;
        // Each pattern (8) runs at block sizes 64 and 128 alike: 5 of its 10 (shape, causal) cases each, and within
        // each (pattern, block size) the k-th case takes dtype (k + pattern) mod 3 and D = 64 for even k, 128 for odd k,
        // so that every dtype and both head dims run at least once per (pattern, block size).
        DType[] dts = {DType.F32, DType.F16, DType.BF16};
        int[][] seen = new int[8][2];
        for (int si = 0; si < shapes.length; si++) {
            int[] s = shapes[si];
            List<Rule> rules = List.of(Rule.dense(), Rule.causalRule(), Rule.window(37), Rule.longformer(20, 5),
                    Rule.bigbird(48, 1, 1, 2, 7), Rule.bigbird(64, 1, 1, 1, 3), randomLayout(s[4], 1, s[4], 64, 0.4),
                    randomLayout(s[4] + 1, s[1], s[4], 20, 0.3));
            for (int ri = 0; ri < rules.size(); ri++) {
                for (boolean causal : new boolean[] {false, true}) {
                    int bsi = (si + ri + (causal ? 1 : 0)) % 2;
                    int k = seen[ri][bsi]++;
                    DType t = dts[(k + ri) % 3];
                    int d = k % 2 == 0 ? 64 : 128;
                    int bs = bsi == 0 ? 64 : 128;
                    out.add(Arguments.of(rules.get(ri).withCausal(causal), t, d, bs, s[0], s[1], s[2], s[3], s[4], n % 5 == 0));
                    n++;
                }
            }
        }
        return out.stream();
    }

    /**
     * The f16/bf16 cases of {@link #cases}, which the wgmma block-sparse kernels also take, each twice: alternately
     * in WG and WGP (64-row blocks), and alternately in WGX2 and WGPX2 (128-row blocks: a kernel tile spans two
     * layout rows where BS = 64).
     */
    static Stream<Arguments> wgCases() {
        int[] n = {0};
        return cases().filter(a -> a.get()[1] != DType.F32).flatMap(a -> {
            boolean even = n[0]++ % 2 == 0;
            List<Arguments> both = new ArrayList<>();
            for (FlashPlan.Tiling t : even ? new FlashPlan.Tiling[] {FlashPlan.Tiling.WG, FlashPlan.Tiling.WGX2}
                    : new FlashPlan.Tiling[] {FlashPlan.Tiling.WGP, FlashPlan.Tiling.WGPX2}) {
                List<Object> x = new ArrayList<>(List.of(a.get()));
                x.add(0, t);
                both.add(Arguments.of(x.toArray()));
            }
            return both.stream();
        });
    }

    /**
     * The block-sparse kernels in the WG, WGP, WGX2 and WGPX2 tilings (wgmma; compute capability 9.0 only) against
     * the CPU engine.
     */
    @ParameterizedTest(name = "{0} {1} {2} D={3} BS={4} B={5} H={6} Hkv={7} L={8} S={9} gate={10}")
    @MethodSource("wgCases")
    void sparseInWgMatchesTheCpuEngine(FlashPlan.Tiling tiling, Rule rule, DType dtype, int d, int bs, int b, int h, int hkv, int l,
            int s, boolean gated) {
        String why = gpu.tilingUnavailable(tiling);
        org.junit.jupiter.api.Assumptions.assumeTrue(why == null, () -> tiling.cliName() + ": " + why);
        gpu.setMmaTiling(tiling);
        try {
            sparseMatchesTheCpuEngine(rule, dtype, d, bs, b, h, hkv, l, s, gated);
        } finally {
            gpu.setMmaTiling(FlashPlan.Tiling.W4);
        }
    }

    @ParameterizedTest(name = "{0} {1} D={2} BS={3} B={4} H={5} Hkv={6} L={7} S={8} gate={9}")
    @MethodSource("cases")
    void sparseMatchesTheCpuEngine(Rule rule, DType dtype, int d, int bs, int b, int h, int hkv, int l, int s, boolean gated) {
        Random r = new Random(31L * l + 7L * s + d + bs + dtype.ordinal() + rule.hashCode());
        Pattern p = rule.toEffectivePattern(dir, "gpu-" + rule + "-" + s + "-" + h);
        Tensor q = gaussian(r, DType.F32, b, h, l, d);
        Tensor k = gaussian(r, DType.F32, b, hkv, s, d);
        Tensor v = gaussian(r, DType.F32, b, hkv, s, d);
        AttentionRequest.Builder rb = AttentionRequest.builder(q, k, v).pattern(p).dtype(dtype).algorithm(Algorithm.SPARSE)
                .blockSize(bs).wantLse(true);
        if (gated) {
            rb.gate(CudaAttentionGpuTest.gate(r, b, l, h));
        }
        AttentionRequest req = rb.build();
        AttentionResult got = gpu.run(req);
        String what = "sparse[" + gpu.mmaTiling().cliName() + "] " + rule + " " + dtype.cliName() + " D=" + d + " BS=" + bs + " B=" + b + " H=" + h + " Hkv=" + hkv
                + " L=" + l + " S=" + s + (gated ? " gated" : "");
        compareWithReference(got, req, rule, what);
        assertEquals(Algorithm.SPARSE, got.stats().algorithm(), what);
        FlashPlan plan = FlashPlan.sparse(new io.headroute.engine.AttentionShape(b, h, hkv, l, s, d), dtype, gpu.mmaTiling());
        long[][] expected = bruteForceCounts(p, req.gate() == null ? null : req.gate().toFloatArray(), b, h, l, s,
                plan.blockRows(), plan.tileKeys());
        long[] counted = {got.stats().queryTiles(), got.stats().keyTilesVisited()};
        // The mode the engine plans for this gate pins which brute-force count must hold (not either of the two).
        SparseTiles st = SparseTiles.build(p, io.headroute.pattern.BlockLayout.build(p, h, l, s, bs), l, s, plan.blockRows(),
                plan.tileKeys());
        CudaAttentionEngine.GateMode mode = CudaAttentionEngine.GatePlan.of(req, plan, st).mode();
        assertArrayEquals(expected[mode == CudaAttentionEngine.GateMode.COMPACT ? 1 : 0], counted,
                what + ": (query tiles, key tiles visited) in mode " + mode + ", brute force: " + java.util.Arrays.toString(expected[0])
                        + " as tiles, " + java.util.Arrays.toString(expected[1]) + " as compacted rows");
        assertEquals(counted[0] * ((s + plan.tileKeys() - 1) / plan.tileKeys()) - counted[1], got.stats().keyTilesSkipped(),
                what + ": key tiles skipped");
    }

    /**
     * {@code got} for {@code req} under {@code rule}: f32 against the float64 {@link ReferenceAttention} (the f32 CPU engine
     * is itself only held to 1e-5 of it), f16/bf16 against the CPU engine's flash on the same rounded inputs.
     */
    static void compareWithReference(AttentionResult got, AttentionRequest req, Rule rule, String what) {
        if (req.dtype() == DType.F32) {
            compare(got, ReferenceAttention.compute(req, rule), tolerance(DType.F32), what);
        } else {
            compare(got, cpu.run(AttentionRequest.builder(req.q(), req.k(), req.v()).pattern(req.pattern()).dtype(req.dtype())
                    .scale(req.scale()).gate(req.gate()).algorithm(Algorithm.FLASH).wantLse(true).build()), tolerance(req.dtype()), what);
        }
    }

    /**
     * (query tiles, key tiles visited) by brute force over the token rule, for the two ways a launch may take a
     * gate: [0] tiles of {@code br} rows, every tile with a non-zero gate row (all of them without a gate), each
     * visiting the key tiles of {@code bc} keys holding an allowed (row, key) pair of its rows; [1] each (b, h)'s
     * rows with a non-zero gate, in order, cut into tiles of {@code br}, each visiting the key tiles with an allowed
     * pair of its own rows. Without a gate both are the first.
     */
    static long[][] bruteForceCounts(Pattern p, float[] gate, int b, int h, int l, int s, int br, int bc) {
        long[] tiles = new long[2];
        long[] compacted = new long[2];
        for (int bb = 0; bb < b; bb++) {
            for (int hh = 0; hh < h; hh++) {
                List<Integer> live = new ArrayList<>();
                for (int t = 0; t * br < l; t++) {
                    int[] rows = new int[Math.min(br, l - t * br)];
                    boolean any = gate == null;
                    for (int x = 0; x < rows.length; x++) {
                        rows[x] = t * br + x;
                        if (gate != null && gate[(bb * l + rows[x]) * h + hh] != 0f) {
                            any = true;
                            live.add(rows[x]);
                        }
                    }
                    if (any) {
                        tiles[0]++;
                        tiles[1] += GateWorkTest.keyTilesWithAPair(p, hh, rows, l, s, bc);
                    }
                }
                for (int x = 0; x < live.size(); x += br) {
                    int[] rows = live.subList(x, Math.min(live.size(), x + br)).stream().mapToInt(Integer::intValue).toArray();
                    compacted[0]++;
                    compacted[1] += GateWorkTest.keyTilesWithAPair(p, hh, rows, l, s, bc);
                }
            }
        }
        return new long[][] {tiles, gate == null ? tiles : compacted};
    }

    /**
     * Shards at positions of a longer sequence (ring attention and split-KV with position-dependent patterns): the GPU
     * runs them on the block-sparse kernel, whose partial tiles carry the positioned rule's exact bits, and agrees
     * with the CPU engine on the same request; the materialized path, whose kernel evaluates rules at the call's own
     * positions, refuses them in one line.
     */
    @Test
    void positionedShardsMatchTheCpuEngine() {
        Random r = new Random(23);
        int n = 700;
        String[] specs = {"window:40", "longformer:30:9", "bigbird:64:1:1:2:7", "causal"};
        for (String spec : specs) {
            for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
                // Query block 300 … 399 against key shards 0 … 249 and 250 … 699 (S ≥ L in each call).
                Tensor q = gaussian(r, DType.F32, 1, 4, 100, 64);
                for (int[] keys : new int[][] {{0, 250}, {250, 700}}) {
                    int s = keys[1] - keys[0];
                    Tensor k = gaussian(r, DType.F32, 1, 2, s, 64);
                    Tensor v = gaussian(r, DType.F32, 1, 2, s, 64);
                    for (boolean causal : new boolean[] {false, true}) {
                        AttentionRequest req = AttentionRequest.builder(q, k, v).pattern(io.headroute.pattern.Patterns.parse(spec))
                                .causal(causal).positions(300, keys[0], n).dtype(dtype).algorithm(Algorithm.FLASH).wantLse(true)
                                .build();
                        AttentionResult got = gpu.run(req);
                        String what = spec + (causal ? "+causal" : "") + " " + dtype.cliName() + " keys " + keys[0] + " … "
                                + (keys[1] - 1);
                        assertEquals(Algorithm.SPARSE, got.stats().algorithm(), what);
                        compare(got, cpu.run(req), tolerance(dtype), what);
                    }
                }
            }
        }
        Tensor q = gaussian(r, DType.F32, 1, 2, 64, 64);
        Tensor k = gaussian(r, DType.F32, 1, 2, 128, 64);
        AttentionRequest materialized = AttentionRequest.builder(q, k, k).pattern(io.headroute.pattern.Patterns.parse("window:8"))
                .positions(64, 128, 512).algorithm(Algorithm.MATERIALIZED).build();
        UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class, () -> gpu.run(materialized));
        assertTrue(e.getMessage().startsWith("pattern window:8@q64,k128/512 is evaluated at positions of a longer sequence"),
                e.getMessage());
    }

    @Test
    void flashRoutesSparsePatternsAndCountsExactly() {
        Random r = new Random(11);
        int b = 1;
        int h = 2;
        int l = 200;
        int s = 333;
        Tensor q = gaussian(r, DType.F32, b, h, l, 64);
        Tensor k = gaussian(r, DType.F32, b, h, s, 64);
        Tensor v = gaussian(r, DType.F32, b, h, s, 64);
        Pattern p = Rule.window(50).withCausal(true).toEffectivePattern(dir, "route");
        AttentionRequest req = AttentionRequest.builder(q, k, v).pattern(p).dtype(DType.BF16).algorithm(Algorithm.FLASH)
                .wantLse(true).build();
        AttentionResult got = gpu.run(req);
        assertEquals(Algorithm.SPARSE, got.stats().algorithm(), "flash on a window runs the block-sparse kernel");
        compare(got, cpu.run(req), tolerance(DType.BF16), "routed window:50+causal");
        long visited = 0;
        for (int hh = 0; hh < h; hh++) {
            for (int t = 0; t * 64 < l; t++) {
                int[] rows = new int[Math.min(64, l - t * 64)];
                for (int x = 0; x < rows.length; x++) {
                    rows[x] = t * 64 + x;
                }
                visited += GateWorkTest.keyTilesWithAPair(p, hh, rows, l, s, 64);
            }
        }
        long tiles = (long) b * h * ((l + 63) / 64);
        assertEquals(tiles, got.stats().queryTiles());
        assertEquals(visited, got.stats().keyTilesVisited(), "key tiles the kernel visits = tiles with an allowed pair");
        assertEquals(tiles * ((s + 63) / 64) - visited, got.stats().keyTilesSkipped());
    }

    /**
     * Sparse gates on the block-sparse kernels: compacted rows, each block merging its rows' original
     * tiles' key lists (hr_flash_sparse_merge_*), against the CPU engine; executed tiles and key tiles
     * equal the host's plan and brute force over the compacted rows; the pool holds nothing after each
     * call but the cached layouts (checked after each test).
     */
    /**
     * In W4, and in WG, WGP, WGX2 and WGPX2 (f16/bf16: hr_flash_sparse_merge_wg_*, ..., _wgpx2_*; compute capability 9.0
     * only).
     */
    @ParameterizedTest(name = "{0}")
    @org.junit.jupiter.params.provider.ValueSource(strings = {"w4", "wg", "wgp", "wgx2", "wgpx2"})
    void gatedSparseRunsCompactedTilesWithMergedLists(String tilingName) {
        FlashPlan.Tiling tiling = FlashPlan.Tiling.parse(tilingName);
        String why = gpu.tilingUnavailable(tiling);
        org.junit.jupiter.api.Assumptions.assumeTrue(why == null, () -> tilingName + ": " + why);
        gpu.setMmaTiling(tiling);
        try {
            gatedSparseRunsCompactedTilesWithMergedLists(tiling);
        } finally {
            gpu.setMmaTiling(FlashPlan.Tiling.W4);
        }
    }

    private void gatedSparseRunsCompactedTilesWithMergedLists(FlashPlan.Tiling tiling) {
        Random r = new Random(16);
        int b = 2;
        int h = 3;
        int l = 301;
        int s = 333;
        List<Rule> rules = List.of(Rule.window(37).withCausal(true), Rule.window(20), Rule.longformer(20, 5),
                Rule.bigbird(48, 1, 1, 2, 7).withCausal(true), randomLayout(s + 2, h, s, 20, 0.3));
        int n = 0;
        for (Rule rule : rules) {
            for (DType dt : new DType[] {DType.F32, DType.BF16, DType.F16}) {
                int bs = n++ % 2 == 0 ? 64 : 128;
                if (!tiling.appliesTo(dt, 64, true)) {
                    continue;
                }
                Pattern p = rule.toEffectivePattern(dir, "compact-" + rule + "-" + s);
                Tensor q = gaussian(r, DType.F32, b, h, l, 64);
                Tensor k = gaussian(r, DType.F32, b, 1, s, 64);
                Tensor v = gaussian(r, DType.F32, b, 1, s, 64);
                String what = "compacted sparse[" + tiling.cliName() + "] " + rule + " " + dt.cliName() + " BS=" + bs;
                // Compaction must pay in key tiles visited (GateWork.compactionPays): a compacted tile's merged list
                // covers the key tiles of every original tile its rows come from, so the sparser the gate, the
                // likelier it pays. The first of these gates that the engine compacts is the case.
                FlashPlan plan = FlashPlan.sparse(new io.headroute.engine.AttentionShape(b, h, 1, l, s, 64), dt, tiling);
                SparseTiles st = SparseTiles.build(p, io.headroute.pattern.BlockLayout.build(p, h, l, s, bs), l, s, plan.blockRows(),
                        plan.tileKeys());
                float[] g = null;
                AttentionRequest req = null;
                CudaAttentionEngine.GatePlan gp = null;
                for (double[] zeros : new double[][] {{0.6, 0.8}, {0.85, 0.9}, {0.93, 0.96}, {0.97, 0.98}}) {
                    g = CompactedSparseTilesTest.gate(r, b, l, h, zeros[0], zeros[1]);
                    req = AttentionRequest.builder(q, k, v).pattern(p).dtype(dt).gate(Tensor.ofFloats(g, b, l, h))
                            .algorithm(Algorithm.SPARSE).blockSize(bs).wantLse(true).build();
                    gp = CudaAttentionEngine.GatePlan.of(req, plan, st);
                    if (gp.mode() == CudaAttentionEngine.GateMode.COMPACT) {
                        break;
                    }
                }
                assertEquals(CudaAttentionEngine.GateMode.COMPACT, gp.mode(), what + ": no gate of the list is compacted");
                AttentionResult got = gpu.run(req);
                compareWithReference(got, req, rule, what);
                assertEquals(gp.tiles(), got.stats().queryTiles(), what + ": executed tiles");
                assertEquals(gp.keyTilesVisited(), got.stats().keyTilesVisited(), what + ": key tiles visited");
                GateWork.Compaction c = GateWork.compact(g, b, l, h);
                long visited = 0;
                int br = plan.blockRows();
                for (int bh = 0; bh < b * h; bh++) {
                    for (int x = 0; x < c.counts()[bh]; x += br) {
                        int[] rows = java.util.Arrays.copyOfRange(c.rows(), bh * l + x, bh * l + Math.min(c.counts()[bh], x + br));
                        visited += GateWorkTest.keyTilesWithAPair(p, bh % h, rows, l, s, plan.tileKeys());
                    }
                }
                assertEquals(visited, got.stats().keyTilesVisited(), what + ": key tiles with an allowed pair for the compacted rows");
            }
        }
    }

    /** Gates that switch whole tiles off (work list) and most rows off (compaction) on the dense/causal kernels. */
    @Test
    void gatedFlashUsesWorkListsAndCompaction() {
        Random r = new Random(12);
        java.util.Set<CudaAttentionEngine.GateMode> modes = java.util.EnumSet.noneOf(CudaAttentionEngine.GateMode.class);
        for (DType dt : new DType[] {DType.F32, DType.BF16, DType.F16}) {
            for (boolean causal : new boolean[] {false, true}) {
                for (double zeros : new double[] {0.9, 0.3}) {
                    int b = 2;
                    int h = 3;
                    int l = 301;
                    int s = 333;
                    Tensor q = gaussian(r, DType.F32, b, h, l, 64);
                    Tensor k = gaussian(r, DType.F32, b, 1, s, 64);
                    Tensor v = gaussian(r, DType.F32, b, 1, s, 64);
                    float[] g = new float[b * l * h];
                    for (int i = 0; i < g.length; i++) {
                        g[i] = r.nextDouble() < zeros ? 0f : 0.5f + r.nextFloat();
                    }
                    for (int i = 0; i < 130; i++) {
                        g[i * h + 2] = 0f; // head 2 of batch 0: the first two tiles gated whole
                    }
                    AttentionRequest req = AttentionRequest.builder(q, k, v).causal(causal).dtype(dt).gate(Tensor.ofFloats(g, b, l, h))
                            .algorithm(Algorithm.FLASH).wantLse(true).build();
                    AttentionResult got = gpu.run(req);
                    String what = dt.cliName() + (causal ? " causal" : "") + " zeros " + zeros;
                    compareWithReference(got, req, causal ? Rule.causalRule() : Rule.dense(), what);
                    FlashPlan plan = FlashPlan.of(req.shape(), dt, req.pattern());
                    // The counts by brute force over the token rule, not the engine's own planner; the mode by the
                    // documented rule on them: compaction where its key tiles are at most 3/4 of the tile list's
                    // (GateWork.compactionPays), else the tile list (head 2 of batch 0's first 130 rows gate whole
                    // tiles off, so never the whole grid).
                    long[][] bf = bruteForceCounts(req.pattern(), g, b, h, l, s, plan.blockRows(), plan.tileKeys());
                    CudaAttentionEngine.GateMode mode = bf[1][1] * 4 <= bf[0][1] * 3 ? CudaAttentionEngine.GateMode.COMPACT
                            : CudaAttentionEngine.GateMode.TILES;
                    if (zeros > 0.5) {
                        assertEquals(CudaAttentionEngine.GateMode.COMPACT, mode, what + ": 90% of rows off must compact");
                    }
                    modes.add(mode);
                    assertEquals(mode, CudaAttentionEngine.GatePlan.of(req, plan, null).mode(), what + ": gate mode, brute force "
                            + java.util.Arrays.toString(bf[0]) + " as tiles, " + java.util.Arrays.toString(bf[1]) + " compacted");
                    long[] want = bf[mode == CudaAttentionEngine.GateMode.COMPACT ? 1 : 0];
                    assertEquals(want[0], got.stats().queryTiles(), what + ": executed tiles");
                    assertEquals(want[1], got.stats().keyTilesVisited(), what + ": key tiles visited");
                }
            }
        }
        assertEquals(java.util.EnumSet.of(CudaAttentionEngine.GateMode.COMPACT, CudaAttentionEngine.GateMode.TILES), modes,
                "both the tile list and compaction ran");
    }

    /** Small and large (several 1024-wide scan chunks over groups and rows), and an all-zero gate. */
    @ParameterizedTest(name = "B={0} L={1} H={2} zero={3}")
    @CsvSource({"2, 1000, 5, false", "1, 3000, 16, false", "2, 2500, 3, true"})
    void deviceWorkListsEqualTheirHostMirror(int b, int l, int h, boolean allZero) {
        Random r = new Random(13L + l);
        float[] g = allZero ? new float[b * l * h] : GateWorkTest.gate(r, b, l, h);
        try (DeviceTensor dg = gpu.upload(Tensor.ofFloats(g, b, l, h), DType.F32, "gate")) {
            for (int br : new int[] {32, 64}) {
                try (GateWork.DeviceWork w = gpu.workList(dg.address(), b, l, h, br, false)) {
                    int[] want = GateWork.activeTiles(g, b, l, h, br);
                    assertEquals(want.length / 3, w.count(), "tile count, Br=" + br);
                    assertArrayEquals(want, w.downloadList(gpu.stream()), "tile list, Br=" + br);
                }
                try (GateWork.DeviceWork w = gpu.workList(dg.address(), b, l, h, br, true)) {
                    GateWork.Compaction c = GateWork.compact(g, b, l, h);
                    assertArrayEquals(c.counts(), w.downloadCounts(gpu.stream()), "row counts, Br=" + br);
                    assertArrayEquals(GateWork.compactedTiles(c.counts(), b, h, br), w.downloadList(gpu.stream()),
                            "compacted tile list, Br=" + br);
                    int[] rows = w.downloadRows(gpu.stream());
                    for (int bh = 0; bh < b * h; bh++) {
                        for (int x = 0; x < c.counts()[bh]; x++) {
                            assertEquals(c.rows()[bh * l + x], rows[bh * l + x], "compacted row " + x + " of (b, h) " + bh);
                        }
                    }
                }
            }
        }
    }

    /** Query blocks whose layout row is empty: o = 0 and lse = −inf, from tiles with no key tile at all. */
    @Test
    void emptyRowsGiveZerosAndMinusInfinity() {
        Random r = new Random(15);
        int l = 300;
        int bs = 64;
        int n = (l + bs - 1) / bs;
        boolean[] bits = new boolean[n * n];
        for (int qb = 0; qb < n; qb++) {
            for (int kb = 0; kb < n; kb++) {
                bits[qb * n + kb] = qb % 2 == 0 && (kb == qb || kb == 0); // odd query blocks attend nothing
            }
        }
        Pattern p = Rule.layout(bs, 1, n, bits).toEffectivePattern(dir, "empty-rows");
        Tensor q = gaussian(r, DType.F32, 1, 2, l, 64);
        Tensor k = gaussian(r, DType.F32, 1, 2, l, 64);
        Tensor v = gaussian(r, DType.F32, 1, 2, l, 64);
        for (DType dt : new DType[] {DType.F32, DType.BF16}) {
            AttentionRequest req = AttentionRequest.builder(q, k, v).pattern(p).dtype(dt).algorithm(Algorithm.SPARSE)
                    .wantLse(true).build();
            AttentionResult got = gpu.run(req);
            compareWithReference(got, req, Rule.layout(bs, 1, n, bits), "empty rows " + dt.cliName());
            float[] lse = got.lse().toFloatArray();
            float[] o = got.o().toFloatArray();
            for (int h = 0; h < 2; h++) {
                for (int i = 0; i < l; i++) {
                    boolean empty = (i / bs) % 2 == 1;
                    assertEquals(empty, lse[h * l + i] == Float.NEGATIVE_INFINITY, "lse of row " + i + " head " + h);
                    if (empty) {
                        for (int d = 0; d < 64; d++) {
                            assertEquals(0f, o[(h * l + i) * 64 + d], "o of empty row " + i);
                        }
                    }
                }
            }
        }
    }

    @Test
    void layoutMemoryIsCachedTaggedAndFreed() {
        Random r = new Random(14);
        Tensor q = gaussian(r, DType.F32, 1, 2, 500, 64);
        Pattern p = Rule.window(30).toEffectivePattern(dir, "cache");
        AttentionRequest req = AttentionRequest.builder(q, q, q).pattern(p).dtype(DType.BF16).algorithm(Algorithm.SPARSE)
                .blockSize(128).build();
        gpu.run(req);
        long held = gpu.pool().stats().allocatedBytes();
        assertTrue(held > 0, "the layout stays cached on the device");
        long allocations = gpu.pool().stats().allocations();
        gpu.run(req);
        assertEquals(held, gpu.pool().stats().allocatedBytes(), "the second call reuses the cached layout");
        assertTrue(gpu.pool().stats().allocations() - allocations <= 6, "only inputs and outputs are allocated again");
        gpu.clearLayoutCache();
        assertEquals(0, gpu.pool().stats().allocatedBytes());
    }
}
