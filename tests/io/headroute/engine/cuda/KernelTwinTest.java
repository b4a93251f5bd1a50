package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.cpu.ReferenceAttention;
import io.headroute.engine.cpu.ReferenceAttention.Rule;
import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The CPU twin of the flash kernels' control flow: every block of a launch replayed in Java exactly as
 * the CUDA code indexes — its (b, h, tile) from the grid or the work list, its rows plain or through
 * q_rows/q_counts (HrRows; the plain sparse kernels ignore q_rows, hr_plain_rows), its key tiles from
 * HrDenseKeys or from the raw CSR arrays of a {@link SparseTiles} (cell per layout head and query tile)
 * with HrSparseKeys's offsets, full-before counts and mask base arithmetic, or (compacted rows: the
 * merging sparse kernels) HrMergedKeys's union of the tiles its rows may use and its per-row cursors,
 * each tile's
 * mask kind (none, rule, bits) over zero-filled keys past S, and the online softmax with exp2 —
 * against the float64 reference of the contract. What it proves is the host/device data contract and
 * the kernels' indexing; the kernels' arithmetic itself is covered by the GPU tests.
 */
class KernelTwinTest {
    @TempDir
    static Path dir;

    private static final int NONE = 0;
    private static final int RULE = 1;
    private static final int BITS = 2;

    /**
     * One launch as the engine encodes it. {@code tilesTotal}: the device int AttnParams.tiles_total
     * points at (a list built on the device), or null; with it the grid is the maximal one, B·H·ceil(L/Br),
     * and {@code tiles} has room for that many triples.
     */
    record Launch(int br, int bc, boolean causal, int[] tiles, int[] qRows, int[] qCounts, Lists sparse, Integer tilesTotal) {
        Launch(int br, int bc, boolean causal, int[] tiles, int[] qRows, int[] qCounts, Lists sparse) {
            this(br, bc, causal, tiles, qRows, qCounts, sparse, null);
        }
    }

    /**
     * The four block-sparse arrays and AttnParams.layout_heads; {@code merged}: read by the kernel that
     * merges compacted rows' lists (HrMergedKeys), else by HrSparseKeys.
     */
    record Lists(int[] offsets, int[] tiles, int[] fullBefore, long[] masks, int layoutHeads, boolean merged) {
        static Lists of(SparseTiles t) {
            return t == null ? null
                    : new Lists(t.lists().offsets(), t.lists().tiles(), t.lists().fullBefore(), t.lists().masks(), t.layoutHeads(), false);
        }

        /** {@code t} as hr_flash_sparse_merge_* reads it (compacted rows, lists merged in the kernel). */
        static Lists merged(SparseTiles t) {
            return new Lists(t.lists().offsets(), t.lists().tiles(), t.lists().fullBefore(), t.lists().masks(), t.layoutHeads(), true);
        }
    }

    /**
     * Replays the launch; returns {o (B, H, L, D), lse (B, H, L)} with NaN where nothing was written, and
     * {blocks launched, blocks that got past hr_block_tile, key tiles visited}.
     */
    static float[][] replay(Launch ln, float[] q, float[] k, float[] v, float[] gate, int b, int h, int hkv, int l, int s, int d,
            float scale) {
        float[] o = new float[b * h * l * d];
        float[] lse = new float[b * h * l];
        Arrays.fill(o, Float.NaN);
        Arrays.fill(lse, Float.NaN);
        if (ln.tiles() != null) { // the engine fills the rows a work list leaves out
            Arrays.fill(o, 0f);
            Arrays.fill(lse, Float.NEGATIVE_INFINITY);
        }
        float scaleLog2 = (float) (scale * (1.0 / Math.log(2.0)));
        int qTiles = (l + ln.br() - 1) / ln.br();
        int blocks = ln.tilesTotal() != null ? b * h * qTiles : ln.tiles() != null ? ln.tiles().length / 3 : b * h * qTiles;
        int worked = 0;
        long[] visited = {0};
        for (int blk = 0; blk < blocks; blk++) {
            int bb;
            int hh;
            int qt;
            if (ln.tiles() != null) {
                if (ln.tilesTotal() != null && blk >= ln.tilesTotal()) {
                    continue; // hr_block_tile: past the device-sized list, the whole block returns
                }
                bb = ln.tiles()[3 * blk];
                hh = ln.tiles()[3 * blk + 1];
                qt = ln.tiles()[3 * blk + 2];
            } else {
                qt = blk % qTiles;
                hh = (blk / qTiles) % h;
                bb = blk / (qTiles * h);
            }
            worked++;
            visited[0] += block(ln, q, k, v, gate, o, lse, bb, hh, qt, h, hkv, l, s, d, scaleLog2);
        }
        return new float[][] {o, lse, {blocks, worked, visited[0]}};
    }

    /** One block; returns the key tiles it visited. */
    private static int block(Launch ln, float[] q, float[] k, float[] v, float[] gate, float[] o, float[] lse, int b, int h,
            int qt, int heads, int hkv, int l, int s, int d, float scaleLog2) {
        int br = ln.br();
        int bc = ln.bc();
        // HrRows
        int base = qt * br;
        int[] idx = null;
        int idxBase = 0;
        int count;
        if (ln.qRows() != null && (ln.sparse() == null || ln.sparse().merged())) {
            idx = ln.qRows();
            idxBase = (b * heads + h) * l;
            count = Math.min(br, ln.qCounts()[b * heads + h] - base);
        } else {
            count = Math.min(br, l - base);
        }
        int[] row = new int[br];
        for (int r = 0; r < count; r++) {
            row[r] = idx != null ? idx[idxBase + base + r] : base + r;
        }
        // hr_skip_gated_tile (plain rows only, in both kernel families)
        if (idx == null && gate != null) {
            boolean live = false;
            for (int r = 0; r < count; r++) {
                live |= gate[(b * l + row[r]) * heads + h] != 0f;
            }
            if (!live) {
                for (int r = 0; r < count; r++) {
                    Arrays.fill(o, ((b * heads + h) * l + row[r]) * d, ((b * heads + h) * l + row[r] + 1) * d, 0f);
                    lse[(b * heads + h) * l + row[r]] = Float.NEGATIVE_INFINITY;
                }
                return 0;
            }
        }
        int offset = s - l;
        // Key source: HrSparseKeys from the raw arrays, or HrDenseKeys.
        int n;
        int[] list = null;
        int t0 = 0;
        int nFull = 0;
        int maskBase = 0;
        int tail = s % bc == 0 ? Integer.MAX_VALUE : s / bc;
        int firstMasked = 0;
        Lists sp = ln.sparse();
        long[][] mergedWords = null; // HrMergedKeys: per visited tile, the words stage() writes
        int[] mergedTiles = null;
        if (sp != null && sp.merged()) {
            int[] off = sp.offsets();
            int[] fb = sp.fullBefore();
            list = sp.tiles();
            int qTilesL = (l + br - 1) / br;
            int kTiles = (s + bc - 1) / bc;
            boolean[] used = new boolean[kTiles];
            int[][] cur = new int[count][]; // full cursor, full end, partial cursor, partial end, full_before[cell + 1], row in tile
            for (int r = 0; r < count; r++) {
                int qtr = row[r] / br;
                int cell = (sp.layoutHeads() == 1 ? 0 : h) * qTilesL + qtr;
                int fullEnd = off[cell] + fb[cell + 1] - fb[cell];
                if (r == 0 || row[r - 1] / br != qtr) {
                    for (int t = off[cell]; t < fullEnd; t++) {
                        used[list[t]] = true;
                    }
                }
                for (int t = fullEnd; t < off[cell + 1]; t++) {
                    used[list[t]] |= sp.masks()[(t - fb[cell + 1]) * br + row[r] - qtr * br] != 0L;
                }
                cur[r] = new int[] {off[cell], fullEnd, fullEnd, off[cell + 1], fb[cell + 1], row[r] - qtr * br};
            }
            mergedTiles = java.util.stream.IntStream.range(0, kTiles).filter(x -> used[x]).toArray();
            n = mergedTiles.length;
            mergedWords = new long[n][br];
            for (int j = 0; j < n; j++) {
                int kt = mergedTiles[j];
                Arrays.fill(mergedWords[j], -1L); // rows past the count
                for (int r = 0; r < count; r++) {
                    int[] c = cur[r];
                    while (c[0] < c[1] && list[c[0]] < kt) {
                        c[0]++;
                    }
                    if (c[0] < c[1] && list[c[0]] == kt) {
                        mergedWords[j][r] = SparseTiles.span(0, Math.min(bc, s - kt * bc));
                        continue;
                    }
                    while (c[2] < c[3] && list[c[2]] < kt) {
                        c[2]++;
                    }
                    mergedWords[j][r] = c[2] < c[3] && list[c[2]] == kt ? sp.masks()[(c[2] - c[4]) * br + c[5]] : 0L;
                }
            }
        } else if (sp != null) {
            int cell = (sp.layoutHeads() == 1 ? 0 : h) * ((l + br - 1) / br) + qt;
            int[] off = sp.offsets();
            int[] fb = sp.fullBefore();
            list = sp.tiles();
            t0 = off[cell];
            n = off[cell + 1] - t0;
            int fullEnd = fb[cell + 1];
            nFull = fullEnd - fb[cell];
            maskBase = (t0 + nFull - fullEnd) * br;
        } else {
            int first = row[0];
            int last = row[count - 1];
            int kvEnd = s;
            if (ln.causal()) {
                kvEnd = Math.min(kvEnd, last + offset + 1);
            }
            n = (kvEnd + bc - 1) / bc;
            firstMasked = s / bc;
            if (ln.causal()) {
                firstMasked = Math.min(firstMasked, (first + offset + 1) / bc);
            }
        }
        int kvh = h / (heads / hkv);
        float[] m = new float[br];
        float[] lsum = new float[br];
        float[][] acc = new float[br][d];
        Arrays.fill(m, Float.NEGATIVE_INFINITY);
        long[] masks = sp == null ? null : sp.masks();
        for (int j = 0; j < n; j++) {
            int kt = mergedTiles != null ? mergedTiles[j] : sp != null ? list[t0 + j] : j;
            int kind = mergedTiles != null ? BITS
                    : sp != null ? (j >= nFull ? BITS : (kt == tail ? RULE : NONE)) : (j >= firstMasked ? RULE : NONE);
            for (int r = 0; r < br; r++) {
                float[] sc = new float[bc];
                float mx = Float.NEGATIVE_INFINITY;
                int pos = r < count ? row[r] + offset : Integer.MAX_VALUE;
                for (int c = 0; c < bc; c++) {
                    int key = kt * bc + c;
                    float dot = 0f;
                    if (r < count && key < s) { // zero-filled Q rows past count, K rows past S
                        int qo = ((b * heads + h) * l + row[r]) * d;
                        int ko = ((b * hkv + kvh) * s + key) * d;
                        for (int t = 0; t < d; t++) {
                            dot += q[qo + t] * k[ko + t];
                        }
                    }
                    float val = dot * scaleLog2;
                    if (kind != NONE) {
                        long word = mergedWords != null ? mergedWords[j][r] : kind == BITS ? masks[maskBase + (j - nFull) * br + r] : 0L;
                        boolean ok = kind == BITS ? ((word >>> c) & 1L) != 0
                                : key < s && (!ln.causal() || key <= pos);
                        val = ok ? val : Float.NEGATIVE_INFINITY;
                    }
                    sc[c] = val;
                    mx = Math.max(mx, val);
                }
                float mNew = Math.max(m[r], mx);
                float mUse = mNew == Float.NEGATIVE_INFINITY ? 0f : mNew;
                float alpha = (float) Math.pow(2, m[r] - mUse);
                float sum = 0f;
                for (int c = 0; c < bc; c++) {
                    sc[c] = (float) Math.pow(2, sc[c] - mUse);
                    sum += sc[c];
                }
                lsum[r] = lsum[r] * alpha + sum;
                m[r] = mNew;
                for (int t = 0; t < d; t++) {
                    float a = acc[r][t] * alpha;
                    for (int c = 0; c < bc; c++) {
                        int key = kt * bc + c;
                        float vv = key < s ? v[((b * hkv + kvh) * s + key) * d + t] : 0f;
                        a += sc[c] * vv;
                    }
                    acc[r][t] = a;
                }
            }
        }
        for (int r = 0; r < count; r++) {
            int i = row[r];
            float g = gate == null ? 1f : gate[(b * l + i) * heads + h];
            boolean empty = lsum[r] == 0f || g == 0f;
            float f = empty ? 0f : g / lsum[r];
            int ro = (b * heads + h) * l + i;
            for (int t = 0; t < d; t++) {
                o[ro * d + t] = acc[r][t] * f;
            }
            lse[ro] = empty ? Float.NEGATIVE_INFINITY : (float) ((m[r] + Math.log(lsum[r]) / Math.log(2)) * Math.log(2));
        }
        return n;
    }

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        int[][] sizes = {{77, 300}, {130, 130}, {1, 100}};
        int n = 0;
        for (int[] ls : sizes) {
            List<Rule> rules = List.of(Rule.dense(), Rule.causalRule(), Rule.window(21), Rule.longformer(9, 3),
                    Rule.bigbird(48, 1, 1, 2, 7), SparseTilesTest.randomLayout(ls[1], 2, ls[1], 20, 0.3));
            for (Rule r : rules) {
                for (boolean causal : new boolean[] {false, true}) {
                    for (String gate : new String[] {"none", "tiles", "compact"}) {
                        int tile = n % 2 == 0 ? 64 : 32;
                        int bs = (n / 2) % 2 == 0 ? 64 : 128;
                        out.add(Arguments.of(r.withCausal(causal), ls[0], ls[1], tile, bs, gate));
                        n++;
                    }
                }
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} L={1} S={2} tile={3} BS={4} gate={5}")
    @MethodSource("cases")
    void kernelIndexingComputesTheContract(Rule rule, int l, int s, int tile, int bs, String gateMode) {
        Random rnd = new Random(l * 31L + s + tile + bs + gateMode.hashCode() + rule.hashCode());
        check(rule, l, s, tile, bs, gateMode, gateMode.equals("none") ? null : GateWorkTest.gate(rnd, 2, l, 2), rnd);
    }

    /** Compacted sparse launches: every pattern family, ± causal, layout blocks 64/128, tiles 64/32, odd L ≤ S. */
    static Stream<Arguments> compactedSparseCases() {
        List<Arguments> out = new ArrayList<>();
        int[][] sizes = {{77, 300}, {130, 130}, {1, 100}, {201, 333}};
        for (int[] ls : sizes) {
            List<Rule> rules = List.of(Rule.window(21), Rule.window(0), Rule.longformer(9, 3), Rule.bigbird(48, 1, 1, 2, 7),
                    SparseTilesTest.randomLayout(ls[1], 1, ls[1], 64, 0.4), SparseTilesTest.randomLayout(ls[1] + 7, 2, ls[1], 20, 0.3));
            for (Rule r : rules) {
                for (boolean causal : new boolean[] {false, true}) {
                    for (int bs : new int[] {64, 128}) {
                        for (int tile : new int[] {64, 32}) {
                            out.add(Arguments.of(r.withCausal(causal), ls[0], ls[1], tile, bs));
                        }
                    }
                }
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} L={1} S={2} tile={3} BS={4}")
    @MethodSource("compactedSparseCases")
    void compactedSparseLaunchesComputeTheContract(Rule rule, int l, int s, int tile, int bs) {
        Random rnd = new Random(l * 37L + s + tile + bs + rule.hashCode());
        check(rule, l, s, tile, bs, "compact", CompactedSparseTilesTest.gate(rnd, 2, l, 2, 0.3, 0.7), rnd);
    }

    /** Replays one launch planned as the engine plans it and compares it with the float64 reference. */
    private static void check(Rule rule, int l, int s, int tile, int bs, String gateMode, float[] gate, Random rnd) {
        int b = 2;
        int h = 2;
        int hkv = 1;
        int d = 8;
        float[] q = gaussian(rnd, b * h * l * d);
        float[] k = gaussian(rnd, b * hkv * s * d);
        float[] v = gaussian(rnd, b * hkv * s * d);
        Pattern p = rule.toEffectivePattern(dir, "twin-" + rule + "-" + s);
        boolean dense = FlashPlan.flashSupports(p);
        boolean causal = FlashPlan.causal(p);
        SparseTiles sp = dense ? null : SparseTiles.build(p, BlockLayout.build(p, h, l, s, bs), l, s, tile, tile);
        int[] tiles = null;
        int[] rows = null;
        int[] counts = null;
        Lists lists = Lists.of(sp);
        if (gateMode.equals("tiles")) {
            tiles = GateWork.activeTiles(gate, b, l, h, tile);
        } else if (gateMode.equals("compact")) {
            GateWork.Compaction c = GateWork.compact(gate, b, l, h);
            rows = c.rows();
            counts = c.counts();
            tiles = GateWork.compactedTiles(counts, b, h, tile);
            if (!dense) { // the layout's own lists, merged per block in the kernel
                lists = Lists.merged(sp);
            }
        }
        float scale = (float) (1 / Math.sqrt(d));
        float[][] got = replay(new Launch(tile, tile, causal, tiles, rows, counts, lists), q, k, v, gate, b, h, hkv, l, s, d,
                scale);
        Tensor gt = gate == null ? null : Tensor.ofFloats(gate, b, l, h);
        ReferenceAttention.Output want = ReferenceAttention.compute(Tensor.ofFloats(q, b, h, l, d), Tensor.ofFloats(k, b, hkv, s, d),
                Tensor.ofFloats(v, b, hkv, s, d), gt, rule, scale, DType.F32);
        String what = rule + " L=" + l + " S=" + s + " tile=" + tile + " BS=" + bs + " gate=" + gateMode;
        if (rows != null && !dense) {
            long merged = CompactedSparseTiles.build(sp, tiles, rows, counts, h, l, s).listedTiles();
            assertEquals(merged, (long) got[2][2], what + ": key tiles visited = the host's merge");
            assertEquals(merged, CompactedSparseTiles.listedTiles(sp, tiles, rows, counts, h, l, s), what + ": its count alone");
        }
        assertCloseToReference(got[0], want.o(), d, what);
        for (int i = 0; i < got[1].length; i++) {
            if (want.lse()[i] == Double.NEGATIVE_INFINITY) {
                assertEquals(Float.NEGATIVE_INFINITY, got[1][i], what + ": lse[" + i + "] of an empty or gated row");
            } else {
                assertEquals(want.lse()[i], got[1][i], 1e-5 * Math.max(1, Math.abs(want.lse()[i])), what + ": lse[" + i + "]");
            }
        }
    }

    /**
     * A router's gate (B, L, H): per token (bq = 1) or per block of bq positions, the hs shared heads get 1,
     * k of the routed heads hs … H−1 (drawn at random) a positive weight, the rest 0.
     */
    static float[] routedGate(Random r, int b, int l, int h, int hs, int k, int bq) {
        float[] g = new float[b * l * h];
        for (int bb = 0; bb < b; bb++) {
            for (int i0 = 0; i0 < l; i0 += bq) {
                List<Integer> routed = new ArrayList<>();
                for (int x = hs; x < h; x++) {
                    routed.add(x);
                }
                java.util.Collections.shuffle(routed, r);
                float[] w = new float[h];
                for (int x = 0; x < hs; x++) {
                    w[x] = 1f;
                }
                for (int x = 0; x < k; x++) {
                    w[routed.get(x)] = 0.25f + r.nextFloat();
                }
                for (int i = i0; i < Math.min(l, i0 + bq); i++) {
                    System.arraycopy(w, 0, g, (bb * l + i) * h, h);
                }
            }
        }
        return g;
    }

    /** Routed gates on the path of GPU models: work lists built on the device, sized by tiles_total. */
    static Stream<Arguments> deviceRoutedCases() {
        List<Arguments> out = new ArrayList<>();
        int[][] sizes = {{77, 300}, {130, 130}, {1, 100}, {200, 200}};
        for (int[] ls : sizes) {
            List<Rule> rules = List.of(Rule.dense(), Rule.causalRule(), Rule.window(21), Rule.bigbird(48, 1, 1, 2, 7));
            for (Rule r : rules) {
                for (int tile : new int[] {64, 32}) {
                    // per token; per block of two kernel tiles (whole tiles switch); per block of 48 (not a multiple)
                    for (int bq : new int[] {1, 2 * tile, 48}) {
                        for (boolean causal : new boolean[] {false, true}) {
                            out.add(Arguments.of(r.withCausal(causal), ls[0], ls[1], tile, bq));
                        }
                    }
                }
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} L={1} S={2} tile={3} Bq={4}")
    @MethodSource("deviceRoutedCases")
    void deviceBuiltWorkListsComputeTheContractAndSkipTheRoutedHeads(Rule rule, int l, int s, int tile, int bq) {
        Random rnd = new Random(l * 41L + s + tile * 7L + bq + rule.hashCode());
        int b = 2;
        int h = 4;
        int hkv = 2;
        int d = 8;
        int hs = 1;
        int k = 1;
        float[] gate = routedGate(rnd, b, l, h, hs, k, bq);
        float[] q = gaussian(rnd, b * h * l * d);
        float[] kk = gaussian(rnd, b * hkv * s * d);
        float[] v = gaussian(rnd, b * hkv * s * d);
        Pattern p = rule.toEffectivePattern(dir, "device-" + rule + "-" + s);
        boolean dense = FlashPlan.flashSupports(p);
        io.headroute.engine.Algorithm algo = dense ? io.headroute.engine.Algorithm.FLASH : io.headroute.engine.Algorithm.SPARSE;
        DType dt = tile == 64 ? DType.BF16 : DType.F32;
        assertEquals(tile, FlashPlan.tileRows(dt));
        CudaAttentionEngine.GateMode mode = CudaAttentionEngine.deviceGateMode(tile, bq);
        int qTiles = (l + tile - 1) / tile;
        int grid = b * h * qTiles;

        // What gate_work.cu leaves in the workspace: a list with room for the whole grid (the rest garbage
        // no block may read), its length in one int, and for compaction the rows (garbage past each count).
        int[] built = CudaAttentionEngine.deviceWorkList(gate, new io.headroute.engine.AttentionShape(b, h, hkv, l, s, d), dt, algo,
                p, bq);
        int[] list = new int[3 * grid];
        Arrays.fill(list, -7);
        System.arraycopy(built, 0, list, 0, built.length);
        int[] rows = null;
        int[] counts = null;
        if (mode == CudaAttentionEngine.GateMode.COMPACT) {
            GateWork.Compaction c = GateWork.compact(gate, b, l, h);
            counts = c.counts();
            rows = c.rows().clone();
            for (int bh = 0; bh < b * h; bh++) {
                Arrays.fill(rows, bh * l + counts[bh], (bh + 1) * l, -1);
            }
        }
        SparseTiles sp = dense ? null : SparseTiles.build(p, BlockLayout.build(p, h, l, s, 64), l, s, tile, tile);
        float scale = (float) (1 / Math.sqrt(d));
        Lists lists = sp == null ? null : mode == CudaAttentionEngine.GateMode.COMPACT ? Lists.merged(sp) : Lists.of(sp);
        float[][] got = replay(new Launch(tile, tile, FlashPlan.causal(p), list, rows, counts, lists, built.length / 3), q, kk,
                v, gate, b, h, hkv, l, s, d, scale);

        // The tiles that must run, counted from the gate directly.
        long expected = 0;
        for (int bb = 0; bb < b; bb++) {
            for (int hh = 0; hh < h; hh++) {
                int live = 0;
                int liveTiles = 0;
                for (int t = 0; t < qTiles; t++) {
                    boolean any = false;
                    for (int i = t * tile; i < Math.min(l, t * tile + tile); i++) {
                        boolean on = gate[(bb * l + i) * h + hh] != 0f;
                        any |= on;
                        live += on ? 1 : 0;
                    }
                    liveTiles += any ? 1 : 0;
                }
                expected += mode == CudaAttentionEngine.GateMode.COMPACT ? (live + tile - 1) / tile : liveTiles;
            }
        }
        String what = rule + " L=" + l + " S=" + s + " tile=" + tile + " Bq=" + bq + " " + mode;
        assertEquals(grid, (int) got[2][0], what + ": the maximal grid is launched");
        assertEquals(expected, (long) got[2][1], what + ": blocks with work");
        if (bq % tile == 0) {
            // Whole tiles inside one routing block: exactly the hs shared and k routed heads' tiles run.
            assertEquals(CudaAttentionEngine.GateMode.TILES, mode, what);
            assertEquals((long) b * qTiles * (hs + k), expected, what + ": (Hs + k) / H of the grid");
        }
        if (sp != null && mode == CudaAttentionEngine.GateMode.COMPACT) {
            // The kernel that merges on the device visits exactly the tiles of the host's merge.
            assertEquals(CompactedSparseTiles.build(sp, built, rows, counts, h, l, s).listedTiles(), (long) got[2][2],
                    what + ": key tiles the merged lists visit");
        }
        ReferenceAttention.Output want = ReferenceAttention.compute(Tensor.ofFloats(q, b, h, l, d), Tensor.ofFloats(kk, b, hkv, s, d),
                Tensor.ofFloats(v, b, hkv, s, d), Tensor.ofFloats(gate, b, l, h), rule, scale, DType.F32);
        assertCloseToReference(got[0], want.o(), d, what);
    }

    /** o within 1e-5 relative L2 of the float64 reference, over the whole output and in each row of {@code d}. */
    private static void assertCloseToReference(float[] o, double[] want, int d, String what) {
        double num = 0;
        double den = 0;
        for (int i = 0; i < o.length; i++) {
            assertTrue(Float.isFinite(o[i]), what + ": o[" + i + "] = " + o[i] + " (unwritten)");
            num += (o[i] - want[i]) * (o[i] - want[i]);
            den += want[i] * want[i];
        }
        assertTrue(Math.sqrt(num / Math.max(den, 1e-30)) <= 1e-5, what + ": relative L2 " + Math.sqrt(num / den));
        for (int row = 0; row < o.length / d; row++) {
            double rowNum = 0;
            double rowDen = 0;
            for (int i = row * d; i < row * d + d; i++) {
                rowNum += (o[i] - want[i]) * (o[i] - want[i]);
                rowDen += want[i] * want[i];
            }
            double rel = rowDen == 0 ? Math.sqrt(rowNum) : Math.sqrt(rowNum / rowDen);
            assertTrue(rel <= 1e-5, what + ": row " + row + ": relative L2 " + rel);
        }
    }

    private static float[] gaussian(Random r, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return x;
    }
}
