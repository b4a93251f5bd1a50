package io.headroute.engine.cpu;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.AutoPolicy;
import io.headroute.engine.ExecutionStats;
import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.KeyRanges;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * The pure-Java attention engine: the oracle for the GPU kernels and the default where no GPU is
 * present. fp32 arithmetic throughout; for f16/bf16 requests the inputs are rounded to that dtype
 * first (as the GPU stores them) and the output is rounded on the way out.
 *
 * <p>Flash path (FlashAttention-2's loop order): query tiles of up to {@value #BR} rows whose gate is
 * non-zero; work items of two such tiles of one (batch, head) run on a fixed pool of workers. For each
 * item the key tiles of {@value #BC} keys are visited in order with an online softmax; a key tile that
 * the pattern excludes for every row of the item is skipped, and a tile allowed in full needs no mask.
 * The statistics count query tiles of BR rows and, per query tile, the key tiles its own rows attend.
 * Scratch is O(BR·D + D·BC + BR·BC) per worker.
 *
 * <p>Sparse path: the pattern's {@link BlockLayout} (block size BS = 64 or 128, cached per pattern and
 * sizes) gives each (head, query tile of BS rows) its key blocks; only those are visited, full blocks
 * without any element mask and partial blocks with the pattern's rule, through the same tile step as
 * the flash path. Rows with a zero gate are left out of their tile; a tile with no other row is skipped.
 *
 * <p>Auto: {@link AutoPolicy} on the layout's density picks sparse or flash.
 *
 * <p>Materialized path: the standard algorithm, kept as a baseline: for each (batch, head) the full
 * L × S score matrix is written, masked, soft-maxed and multiplied by V.
 */
public final class CpuAttentionEngine implements AttentionEngine {
    /** The most worker threads a CPU engine (or router) takes: a thread per core of any machine we know of, and then some. */
    public static final int MAX_THREADS = 4096;

    /** Query rows per tile (the paper's B_r). */
    static final int BR = 64;
    /**
     * Query rows per flash work item and materialized row tile: two query tiles, so that P·V can run with the
     * rows as vector lanes ({@link #COLUMN_ROWS}).
     */
    static final int ITEM_ROWS = 2 * BR;
    /**
     * Tiles of at least this many rows keep O (and P) transposed, the rows as P·V's vector lanes
     * ({@link TileMath#accumulateColumns}); smaller ones keep O by rows (a loop over few rows is no vector).
     */
    static final int COLUMN_ROWS = 72;
    /** Keys per tile (the paper's B_c). */
    static final int BC = 128;
    /** Key tiles per repack work item: 1024 keys at B_c = 128 (32K keys of one kv head make 32 items). */
    static final int REPACK_TILES = 8;
    /** Rows per work item of the conversion of Q, K and V to floats. */
    static final int CONVERT_ROWS = 4096;

    private static final byte EMPTY = 0;
    private static final byte PARTIAL = 1;
    private static final byte FULL = 2;

    /** Layouts kept per (pattern, sizes, block size): few, since one model uses few shapes. */
    private static final int LAYOUT_CACHE_SIZE = 16;

    private final int threads;
    private final ExecutorService pool;
    private volatile boolean closed;
    /** Tests: repack K and V on every path, so that results read without a repack can be compared with it. */
    boolean alwaysRepack;
    private final Map<LayoutKey, BlockLayout> layouts = new LinkedHashMap<>(16, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<LayoutKey, BlockLayout> eldest) {
            return size() > LAYOUT_CACHE_SIZE;
        }
    };

    private record LayoutKey(Pattern pattern, int qLen, int kvLen, int heads, int blockSize) {}

    /** An engine with one worker per available processor ({@link #defaultThreads}). */
    public CpuAttentionEngine() {
        this(defaultThreads());
    }

    /** {@return one worker per processor available to the JVM, at most {@link #MAX_THREADS}: the default everywhere} */
    public static int defaultThreads() {
        return Math.min(Runtime.getRuntime().availableProcessors(), MAX_THREADS);
    }

    /**
     * An engine with {@code threads} workers (1 … {@link #MAX_THREADS}), daemon threads named
     * {@code headroute-cpu-N}; {@link #close} stops them.
     *
     * @param threads the worker count
     * @throws IllegalArgumentException when {@code threads} is outside 1 … {@link #MAX_THREADS}
     */
    public CpuAttentionEngine(int threads) {
        if (threads <= 0 || threads > MAX_THREADS) {
            throw new IllegalArgumentException("threads must be in 1.." + MAX_THREADS + ", got " + threads);
        }
        this.threads = threads;
        AtomicInteger n = new AtomicInteger();
        this.pool = Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, "headroute-cpu-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        });
    }

    /** {@return the worker threads of this engine's fixed pool, 1 … {@link #MAX_THREADS}} */
    public int threads() {
        return threads;
    }

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public String device() {
        return "CPU, " + threads + " threads";
    }

    @Override
    public AttentionResult run(AttentionRequest req) {
        if (closed) {
            throw new IllegalStateException("CPU attention engine is closed");
        }
        AttentionShape sh = req.shape();
        Algorithm algo = req.algorithm();
        if (algo == Algorithm.AUTO) {
            // A dense pattern needs no layout to know its density.
            algo = AutoPolicy.choose(req.pattern(), req.pattern().isDense() ? 1.0 : layout(req).density());
        }
        BlockLayout layout = algo == Algorithm.SPARSE ? layout(req) : null;
        int d = sh.headDim();
        Problem pr = new Problem(sh, rounded(req.q(), req.dtype(), d), req.k(), req.v(), req.dtype(),
                req.gate() == null ? null : req.gate().toFloatArray(), req.pattern(), req.scale());
        long t0 = System.nanoTime();
        // Materialized reads repacked tiles of BC keys; flash and sparse decide whether to repack (see them).
        if (algo == Algorithm.MATERIALIZED) {
            repack(pr, BC);
        }
        ExecutionStats stats = switch (algo) {
            case FLASH -> flash(pr);
            case SPARSE -> sparse(pr, layout);
            case MATERIALIZED -> materialized(pr);
            case AUTO -> throw new AssertionError("auto was resolved above");
        };
        // Inputs in place: the conversion of K and V to floats, where a path made one, is not the computation's.
        long elapsed = System.nanoTime() - t0 - pr.convertNanos;
        stats = new ExecutionStats(name(), algo, elapsed, stats.workspaceBytes(), stats.queryTiles(), stats.keyTilesVisited(),
                stats.keyTilesSkipped(), stats.rowsSkipped(), -1, stats.scoreDType());
        long[] oShape = {sh.batch(), sh.heads(), sh.qLen(), sh.headDim()};
        Tensor o = req.dtype() == DType.F32 ? Tensor.ofFloats(pr.out, oShape) : Tensor.ofFloats(req.dtype(), pr.out, oShape);
        Tensor lse = req.wantLse() ? Tensor.ofFloats(pr.lse, sh.batch(), sh.heads(), sh.qLen()) : null;
        return new AttentionResult(o, lse, stats);
    }

    /** The request's block layout, from the cache or built (outside the lock: building may take a while). */
    private BlockLayout layout(AttentionRequest req) {
        AttentionShape sh = req.shape();
        LayoutKey key = new LayoutKey(req.pattern(), sh.qLen(), sh.kvLen(), sh.heads(), req.blockSize());
        synchronized (layouts) {
            BlockLayout l = layouts.get(key);
            if (l != null) {
                return l;
            }
        }
        BlockLayout l = BlockLayout.build(req.pattern(), sh.heads(), sh.qLen(), sh.kvLen(), req.blockSize());
        synchronized (layouts) {
            layouts.put(key, l);
        }
        return l;
    }

    /** Layouts in the cache now (for tests). */
    int cachedLayouts() {
        synchronized (layouts) {
            return layouts.size();
        }
    }

    /** Makes the problem's K and V floats, once. */
    private void floatsOf(Problem pr) {
        if (pr.k == null) {
            long t = System.nanoTime();
            pr.k = rounded(pr.kIn, pr.dtype, pr.sh.headDim());
            pr.v = rounded(pr.vIn, pr.dtype, pr.sh.headDim());
            pr.convertNanos += System.nanoTime() - t;
        }
    }

    /**
     * The values of a tensor of rows of {@code d} elements as floats rounded to {@code dtype} (as the GPU stores
     * them): in parallel over runs of {@link #CONVERT_ROWS} rows, each read straight from the tensor's bytes.
     */
    private float[] rounded(Tensor t, DType dtype, int d) {
        float[] x = new float[Math.toIntExact(t.numel())];
        int rows = x.length / d;
        int runs = (rows + CONVERT_ROWS - 1) / CONVERT_ROWS;
        parallel(runs, () -> new RowReader(t, dtype, d), (reader, run) -> {
            for (int r = run * CONVERT_ROWS, end = Math.min(rows, r + CONVERT_ROWS); r < end; r++) {
                reader.read(r, x, r * d);
            }
        });
        return x;
    }

    /** The inputs (Q as floats, K and V as tensors and, once {@link #floatsOf} made them, floats), and the outputs. */
    private static final class Problem {
        final AttentionShape sh;
        final float[] q;
        final Tensor kIn;
        final Tensor vIn;
        /** The request's dtype, to which K and V are rounded as they are read. */
        final DType dtype;
        /** K and V as floats rounded to {@link #dtype}: null until a path needs them ({@link #floatsOf}). */
        float[] k;
        float[] v;
        /** Time spent making {@link #k} and {@link #v}. */
        long convertNanos;
        final float[] gate;
        final Pattern pattern;
        final float scale;
        final float[] out;
        final float[] lse;
        /** Per (batch, kv head): key tiles of {@link #tile} keys, transposed, [tile][d][c]. */
        float[][][][] keyTiles;
        int tile;
        /** Per (batch, kv head): value rows, [j][d]. */
        float[][][] valueRows;

        Problem(AttentionShape sh, float[] q, Tensor k, Tensor v, DType dtype, float[] gate, Pattern pattern, float scale) {
            this.sh = sh;
            this.q = q;
            this.kIn = k;
            this.vIn = v;
            this.dtype = dtype;
            this.gate = gate;
            this.pattern = pattern;
            this.scale = scale;
            this.out = new float[Math.toIntExact(sh.qElements())];
            this.lse = new float[Math.toIntExact((long) sh.batch() * sh.heads() * sh.qLen())];
        }

        int kvIndex(int bh) {
            int b = bh / sh.heads();
            int h = bh % sh.heads();
            return b * sh.kvHeads() + h / sh.group();
        }

        /** Bytes of the repacked K and V (0 without a repack). */
        long repackBytes() {
            if (keyTiles == null) {
                return 0;
            }
            long tiles = (sh.kvLen() + tile - 1) / tile;
            return 4L * sh.batch() * sh.kvHeads() * (tiles * tile + sh.kvLen()) * sh.headDim();
        }

        float gate(int b, int i, int h) {
            return gate == null ? 1f : gate[(b * sh.qLen() + i) * sh.heads() + h];
        }
    }

    /** Per-worker scratch for one query tile of up to {@code rows} rows against key tiles of up to {@code cols} keys. */
    private static final class TileScratch {
        final float[][] qs;
        final float[][] s;
        final float[][] acc;
        /**
         * With {@link #columns}: O as [d][rows], gathered into acc's rows at the end; P goes to the columns of s
         * (transposed in place: s is square then).
         */
        final float[][] accT;
        final float[] alpha;
        /** Per row, with {@link #columns}: m_new and the key tile's row sum of P. */
        final float[] mNew;
        final float[] rowSum;
        boolean columns;
        final float[] m;
        final float[] l;
        final byte[] state;
        /** Row numbers: {@link #allRows} 0 … rows−1; {@link #live} the rows that attend a key of the current key tile. */
        final int[] allRows;
        final int[] live;
        /** Scratch of an exp row (FastExp's two passes): x, p and t, {@code expLen} each. */
        final float[] expX;
        final float[] expP;
        final float[] expT;
        final KeyRanges[] ranges;
        /** Per row: the first of its ranges that may still meet a key tile (key tiles come in ascending order). */
        final int[] cursor;
        /** With a tile of its own (flash or sparse without a repack): K of the current key tile transposed, [d][cols], and V, [cols][d]. */
        final float[][] kT;
        final float[][] vTile;
        /** With a tile of its own: one key's row on its way into {@link #kT}, and the readers of K and V (set at first use). */
        final float[] keyRow;
        RowReader kReader;
        RowReader vReader;
        final long bytes;

        TileScratch(int d, int rows, int cols) {
            this(d, rows, cols, false);
        }

        TileScratch(int d, int rows, int cols, boolean ownTile) {
            this(d, rows, cols, cols, rows >= COLUMN_ROWS && rows == cols, ownTile);
        }

        TileScratch(int d, int rows, int cols, int expLen, boolean columnsAllowed) {
            this(d, rows, cols, expLen, columnsAllowed, false);
        }

        TileScratch(int d, int rows, int cols, int expLen, boolean columnsAllowed, boolean ownTile) {
            qs = new float[rows][d];
            s = new float[rows][cols];
            acc = new float[rows][d];
            if (columnsAllowed && rows != cols) {
                throw new IllegalArgumentException("P is transposed in place: a " + rows + " x " + cols
                        + " tile is not square");
            }
            accT = columnsAllowed ? new float[d][rows] : null;
            alpha = new float[rows];
            mNew = new float[rows];
            rowSum = new float[rows];
            m = new float[rows];
            l = new float[rows];
            state = new byte[rows];
            allRows = new int[rows];
            for (int r = 0; r < rows; r++) {
                allRows[r] = r;
            }
            live = new int[rows];
            expX = new float[expLen];
            expP = new float[expLen];
            expT = new float[expLen];
            cursor = new int[rows];
            ranges = new KeyRanges[rows];
            for (int r = 0; r < rows; r++) {
                ranges[r] = new KeyRanges();
            }
            kT = ownTile ? new float[d][cols] : null;
            vTile = ownTile ? new float[cols][d] : null;
            keyRow = ownTile ? new float[d] : null;
            bytes = 4L * rows * (2L * d + cols + 3) + rows + 12L * expLen + 20L * rows
                    + (columnsAllowed ? 4L * rows * d : 0) + (ownTile ? 8L * d * cols + 4L * d : 0);
        }
    }

    /**
     * Repacks K into transposed tiles of {@code tile} keys and V into rows, in parallel over (batch, kv head) and
     * runs of {@link #REPACK_TILES} key tiles: a call with few kv heads (decoding, MQA) keeps every worker busy too.
     */
    private void repack(Problem pr, int tile) {
        floatsOf(pr);
        AttentionShape sh = pr.sh;
        int heads = sh.batch() * sh.kvHeads();
        int d = sh.headDim();
        int keys = sh.kvLen();
        int tiles = (keys + tile - 1) / tile;
        int runs = (tiles + REPACK_TILES - 1) / REPACK_TILES;
        pr.keyTiles = new float[heads][tiles][][];
        pr.valueRows = new float[heads][keys][];
        pr.tile = tile;
        int stride = keys * d;
        parallel(heads * runs, () -> null, (w, item) -> {
            int kv = item / runs;
            int t0 = item % runs * REPACK_TILES;
            int t1 = Math.min(tiles, t0 + REPACK_TILES);
            for (int t = t0; t < t1; t++) {
                pr.keyTiles[kv][t] = TileMath.keyTile(pr.k, kv * stride, keys, d, tile, t);
            }
            TileMath.valueRows(pr.v, kv * stride, t0 * tile, Math.min(keys, t1 * tile), d, pr.valueRows[kv]);
        });
    }

    // ---------------------------------------------------------------- flash

    private ExecutionStats flash(Problem pr) {
        AttentionShape sh = pr.sh;
        int bhCount = sh.batch() * sh.heads();
        int[][] active = new int[bhCount][];
        int[] activeCount = new int[bhCount];
        long queryTiles = 0;
        long itemsOfTwo = 0;
        long rowsSkipped = 0;
        for (int bh = 0; bh < bhCount; bh++) {
            int b = bh / sh.heads();
            int h = bh % sh.heads();
            int[] rows = new int[sh.qLen()];
            int n = 0;
            for (int i = 0; i < sh.qLen(); i++) {
                if (pr.gate(b, i, h) != 0f) {
                    rows[n++] = i;
                } else {
                    writeEmptyRow(pr, bh, i);
                }
            }
            rowsSkipped += sh.qLen() - n;
            active[bh] = rows;
            activeCount[bh] = n;
            queryTiles += (n + BR - 1) / BR;
            itemsOfTwo += (n + ITEM_ROWS - 1) / ITEM_ROWS;
        }
        // Items of one query tile where there would be at most two items of two per worker: so few items balance
        // badly (one head of 128 rows left a worker idle), and the column P·V gains little on them.
        int itemRows = itemsOfTwo <= 2L * threads ? BR : ITEM_ROWS;
        // An item is a list of segments {bh, from, n}: rows active[bh][from … from+n) of (batch, head) bh.
        List<int[]> items = new ArrayList<>();
        int share = headsPerItem(sh, activeCount, bhCount, threads);
        if (share > 1) {
            // Query heads that share a kv head share items when their rows are few (decoding: L = 1 or a few), so
            // the kv head's tiles are read once per item, not once per query head. A row's arithmetic is the same
            // in any item (below COLUMN_ROWS rows no loop runs across rows), so the outputs do not change.
            int group = sh.group();
            for (int b = 0; b < sh.batch(); b++) {
                for (int h0 = 0, h1; h0 < sh.heads(); h0 = h1) {
                    int[] segs = new int[3 * share];
                    int k = 0;
                    // h0 … h1 − 1 stay within one kv head's group.
                    h1 = Math.min(h0 + share, (h0 / group + 1) * group);
                    for (int h = h0; h < h1; h++) {
                        int bh = b * sh.heads() + h;
                        if (activeCount[bh] > 0) {
                            segs[k++] = bh;
                            segs[k++] = 0;
                            segs[k++] = activeCount[bh];
                        }
                    }
                    if (k > 0) {
                        items.add(java.util.Arrays.copyOf(segs, k));
                    }
                }
            }
        } else {
            for (int bh = 0; bh < bhCount; bh++) {
                for (int from = 0; from < activeCount[bh]; from += itemRows) {
                    items.add(new int[] {bh, from, Math.min(itemRows, activeCount[bh] - from)});
                }
            }
        }
        // Where no kv head serves more than two items (decoding, mostly), a repack would write K and V once more
        // only to read them once or twice: each item then reads its key tiles into its own scratch as it reaches them
        // (converting a tile twice costs about what the repack's copy does, without the repack's garbage: MQA decoding
        // on two workers, medians 29, 39 → 21, 20 ms).
        int[] uses = new int[sh.batch() * sh.kvHeads()];
        int mostUses = 0;
        for (int[] segs : items) {
            mostUses = Math.max(mostUses, ++uses[pr.kvIndex(segs[0])]);
        }
        boolean stream = mostUses <= 2 && !alwaysRepack;
        if (!stream) {
            repack(pr, BC);
        }
        AtomicLong visited = new AtomicLong();
        AtomicLong skipped = new AtomicLong();
        long scratchBytes = parallel(items.size(), () -> new TileScratch(sh.headDim(), itemRows, BC, stream), (w, item) -> {
            long[] counts = flashTile(pr, items.get(item), active, w);
            visited.addAndGet(counts[0]);
            skipped.addAndGet(counts[1]);
        });
        return new ExecutionStats(name(), Algorithm.FLASH, 0, scratchBytes + pr.repackBytes(), queryTiles, visited.get(), skipped.get(),
                rowsSkipped, -1);
    }

    /**
     * How many query heads of one kv head's group a flash item holds: 1, unless the group has more than one head and
     * every (batch, head) has so few active rows that that many heads' rows make at most one query tile (BR rows);
     * no more than leaves {@code threads} items.
     */
    static int headsPerItem(AttentionShape sh, int[] activeCount, int bhCount, int threads) {
        int maxRows = 0;
        for (int n : activeCount) {
            maxRows = Math.max(maxRows, n);
        }
        if (sh.group() == 1 || maxRows == 0) {
            return 1;
        }
        return Math.max(1, Math.min(Math.min(sh.group(), BR / maxRows), bhCount / threads));
    }

    /**
     * One work item: its segments' rows (see {@link #flash}), which share one kv head. Returns {visited, skipped},
     * counted per query tile of BR rows of each segment's own (batch, head).
     */
    private static long[] flashTile(Problem pr, int[] segs, int[][] active, TileScratch w) {
        AttentionShape sh = pr.sh;
        int d = sh.headDim();
        int kvLen = sh.kvLen();
        int nr = 0;
        for (int s = 2; s < segs.length; s += 3) {
            nr += segs[s];
        }
        int[] rowBh = new int[nr];
        int[] rowI = new int[nr];
        // Query tiles: rows tileStart[t] … tileStart[t + 1] − 1, each within one segment.
        int[] tileStart = new int[nr + 1];
        int tiles = 0;
        for (int s = 0, r = 0; s < segs.length; s += 3) {
            for (int k = 0; k < segs[s + 2]; k++, r++) {
                if (k % BR == 0) {
                    tileStart[tiles++] = r;
                }
                rowBh[r] = segs[s];
                rowI[r] = active[segs[s]][segs[s + 1] + k];
            }
        }
        tileStart[tiles] = nr;
        int kv = pr.kvIndex(segs[0]);
        loadQueries(pr, rowBh, rowI, nr, w);
        rowRanges(pr, rowBh, rowI, nr, w);
        int lo = Integer.MAX_VALUE;
        int hi = Integer.MIN_VALUE;
        for (int r = 0; r < nr; r++) {
            lo = Math.min(lo, w.ranges[r].first());
            hi = Math.max(hi, w.ranges[r].last());
        }

        long visited = 0;
        for (int j0 = lo < hi ? (lo / BC) * BC : kvLen; j0 < hi; j0 += BC) {
            int n = Math.min(BC, kvLen - j0);
            int kind = classifyRows(w, nr, j0, n);
            if (kind == EMPTY) {
                continue;
            }
            // Each query tile counts the key tiles its own rows attend.
            for (int t = 0; t < tiles; t++) {
                for (int r = tileStart[t]; r < tileStart[t + 1]; r++) {
                    if (w.state[r] != EMPTY) {
                        visited++;
                        break;
                    }
                }
            }
            blockStep(pr, kv, j0 / BC, j0, n, kind == FULL, nr, w);
        }
        gatherRows(w, nr, d);
        for (int r = 0; r < nr; r++) {
            finishRow(pr, rowBh[r], rowI[r], w.acc[r], w.m[r], w.l[r]);
        }
        long keyTiles = (kvLen + BC - 1) / BC;
        return new long[] {visited, tiles * keyTiles - visited};
    }

    /**
     * Keys j0 … j0+n−1 of kv head kv into w.kT (transposed) and w.vTile (by rows), as {@link #repack} lays them out,
     * read straight from the K and V tensors (no float copy of them is made: its writes would cost a decode step
     * more than the step's arithmetic).
     */
    private static void streamTile(Problem pr, int kv, int j0, int n, TileScratch w) {
        int d = pr.sh.headDim();
        if (w.kReader == null) {
            w.kReader = new RowReader(pr.kIn, pr.dtype, d);
            w.vReader = new RowReader(pr.vIn, pr.dtype, d);
        }
        int row = kv * pr.sh.kvLen() + j0;
        float[] kRow = w.keyRow;
        for (int c = 0; c < n; c++) {
            w.kReader.read(row + c, kRow, 0);
            for (int dd = 0; dd < d; dd++) {
                w.kT[dd][c] = kRow[dd];
            }
            w.vReader.read(row + c, w.vTile[c], 0);
        }
    }

    /**
     * Qi: row r is query rowI[r] of (batch, head) rowBh[r], pre-scaled so that S = Qi·Kjᵀ is already scaled; m = −∞,
     * l = 0, O = 0; O is kept transposed (and zeroed) when the tile has {@link #COLUMN_ROWS} rows or more.
     */
    private static void loadQueries(Problem pr, int[] rowBh, int[] rowI, int nr, TileScratch w) {
        int d = pr.sh.headDim();
        for (int r = 0; r < nr; r++) {
            int src = (rowBh[r] * pr.sh.qLen() + rowI[r]) * d;
            float[] qr = w.qs[r];
            for (int dd = 0; dd < d; dd++) {
                qr[dd] = pr.q[src + dd] * pr.scale;
            }
            w.m[r] = Float.NEGATIVE_INFINITY;
            w.l[r] = 0f;
            java.util.Arrays.fill(w.acc[r], 0f);
        }
        w.columns = w.accT != null && nr >= COLUMN_ROWS;
        if (w.columns) {
            for (int dd = 0; dd < d; dd++) {
                java.util.Arrays.fill(w.accT[dd], 0, nr, 0f);
            }
        }
    }

    /** Each row's allowed keys (under its own head's pattern) into w.ranges, range cursors at the start. */
    private static void rowRanges(Problem pr, int[] rowBh, int[] rowI, int nr, TileScratch w) {
        AttentionShape sh = pr.sh;
        for (int r = 0; r < nr; r++) {
            pr.pattern.allowedKeys(rowBh[r] % sh.heads(), sh.position(rowI[r]), sh.kvLen(), w.ranges[r]);
            w.cursor[r] = 0;
        }
    }

    /** O's rows from its transposed copy, when the tile kept one. */
    private static void gatherRows(TileScratch w, int nr, int d) {
        if (w.columns) {
            for (int dd = 0; dd < d; dd++) {
                float[] a = w.accT[dd];
                for (int r = 0; r < nr; r++) {
                    w.acc[r][dd] = a[r];
                }
            }
        }
    }

    /**
     * Sets each row's state for the key tile j0 … j0+n−1 from its ranges (key tiles must come in
     * ascending order: the rows' range cursors only move forward). Returns EMPTY when no row may attend
     * any key of the tile, FULL when every row may attend all of them, else PARTIAL.
     */
    private static int classifyRows(TileScratch w, int nr, int j0, int n) {
        boolean anyLive = false;
        boolean allFull = true;
        for (int r = 0; r < nr; r++) {
            w.cursor[r] = w.ranges[r].firstEndingAfter(j0, w.cursor[r]);
            int c = w.ranges[r].countIn(j0, j0 + n, w.cursor[r]);
            w.state[r] = c == 0 ? EMPTY : c == n ? FULL : PARTIAL;
            anyLive |= c > 0;
            allFull &= c == n;
        }
        return !anyLive ? EMPTY : allFull ? FULL : PARTIAL;
    }

    /**
     * One key tile Kj, Vj (keys j0 … j0+n−1; key j0 + c's V row is vRows[vOff + c]) of the online softmax for the
     * tile's nr rows. With {@code allFull} every row attends every key and no mask is evaluated; otherwise w.state
     * says per row: EMPTY rows are left as they are, PARTIAL rows are masked by their ranges.
     */
    private static void keyTileStep(TileScratch w, int nr, int d, float[][] kT, float[][] vRows, int vOff, int j0, int n,
            boolean allFull) {
        // The rows that attend some key of the tile.
        int live = 0;
        for (int r = 0; r < nr; r++) {
            if (allFull || w.state[r] != EMPTY) {
                w.live[live++] = r;
            }
        }
        // S = Qi · Kjᵀ (scaled through Qi).
        TileMath.scores(w.qs, w.live, live, d, kT, n, w.s);
        if (!allFull) {
            for (int t = 0; t < live; t++) {
                int r = w.live[t];
                if (w.state[r] == PARTIAL) {
                    maskRow(w.s[r], 0, j0, n, w.ranges[r], w.cursor[r]);
                }
            }
        }
        if (w.columns) {
            columnsStep(w, nr, live, d, vRows, vOff, n);
            return;
        }
        for (int t = 0; t < live; t++) {
            int r = w.live[t];
            float[] sr = w.s[r];
            // Online softmax: m_new = max(m, rowmax(S)); P = exp(S − m_new); l = l·e^(m − m_new) + rowsum(P).
            float mNew = Math.max(w.m[r], TileMath.rowMax(sr, 0, n));
            float alpha = FastExp.exp(w.m[r] - mNew);
            float sum = TileMath.expRow(sr, n, mNew, w.expP, w.expT);
            w.l[r] = w.l[r] * alpha + sum;
            w.m[r] = mNew;
            // O = O·e^(m − m_new) + P · Vj
            if (alpha != 1f) {
                float[] acc = w.acc[r];
                for (int dd = 0; dd < d; dd++) {
                    acc[dd] *= alpha;
                }
            }
        }
        TileMath.accumulateRows(w.s, w.live, live, vRows, vOff, n, d, w.acc);
    }

    /**
     * The rest of {@link #keyTileStep} with the tile's rows as vector lanes: S transposed in place (S is square),
     * the same online softmax per lane, then O = O·e^(m − m_new) + P · Vj on O's transposed copy. Lanes of rows
     * outside this key tile compute on stale values; their m and l are not touched and their O is put back.
     */
    private static void columnsStep(TileScratch w, int nr, int live, int d, float[][] vRows, int vOff, int n) {
        float[][] sT = w.s;
        TileMath.transposeSquare(sT, Math.max(nr, n));
        // m_new = max(m, rowmax(S)) per lane; α = e^(m − m_new).
        java.util.Arrays.fill(w.mNew, 0, nr, Float.NEGATIVE_INFINITY);
        TileMath.columnMax(sT, n, nr, w.mNew);
        for (int t = 0; t < live; t++) {
            int r = w.live[t];
            float mNew = Math.max(w.m[r], w.mNew[r]);
            w.mNew[r] = mNew;
            w.alpha[r] = FastExp.exp(w.m[r] - mNew);
        }
        // P = exp(S − m_new); l = l·α + rowsum(P).
        java.util.Arrays.fill(w.rowSum, 0, nr, 0f);
        TileMath.expColumns(sT, n, nr, w.mNew, w.expP, w.expT, w.rowSum);
        for (int t = 0; t < live; t++) {
            int r = w.live[t];
            w.l[r] = w.l[r] * w.alpha[r] + w.rowSum[r];
            w.m[r] = w.mNew[r];
        }
        boolean someOut = live < nr;
        if (someOut) {
            forRowsOut(w, nr, live, r -> {
                for (int dd = 0; dd < d; dd++) {
                    w.acc[r][dd] = w.accT[dd][r];
                }
            });
        }
        TileMath.scaleColumns(w.accT, w.alpha, nr, d);
        TileMath.accumulateColumns(sT, nr, vRows, vOff, n, d, w.accT);
        if (someOut) {
            forRowsOut(w, nr, live, r -> {
                for (int dd = 0; dd < d; dd++) {
                    w.accT[dd][r] = w.acc[r][dd];
                }
            });
        }
    }

    /** Runs {@code body} for each row below nr that is not in w.live[0 … live) (which is ascending). */
    private static void forRowsOut(TileScratch w, int nr, int live, java.util.function.IntConsumer body) {
        for (int r = 0, t = 0; r < nr; r++) {
            if (t < live && w.live[t] == r) {
                t++;
            } else {
                body.accept(r);
            }
        }
    }

    // ---------------------------------------------------------------- sparse

    private ExecutionStats sparse(Problem pr, BlockLayout layout) {
        AttentionShape sh = pr.sh;
        int bs = layout.blockSize();
        int bhCount = sh.batch() * sh.heads();
        int qBlocks = layout.qBlocks();
        // Per (batch, head) and query block: {bh, qb, active rows…}, or null where no row is active.
        int[][] tileOf = new int[bhCount * qBlocks][];
        int tiles = 0;
        int maxRows = 0;
        long rowsSkipped = 0;
        long visited = 0;
        long skipped = 0;
        for (int bh = 0; bh < bhCount; bh++) {
            int b = bh / sh.heads();
            int h = bh % sh.heads();
            for (int qb = 0; qb < qBlocks; qb++) {
                int i0 = qb * bs;
                int i1 = Math.min(sh.qLen(), i0 + bs);
                // Rows with a zero gate are written now and left out.
                int[] tile = new int[2 + i1 - i0];
                int n = 0;
                for (int i = i0; i < i1; i++) {
                    if (pr.gate(b, i, h) != 0f) {
                        tile[2 + n++] = i;
                    } else {
                        writeEmptyRow(pr, bh, i);
                    }
                }
                rowsSkipped += i1 - i0 - n;
                if (n == 0) {
                    continue;
                }
                tile[0] = bh;
                tile[1] = qb;
                tileOf[bh * qBlocks + qb] = n == i1 - i0 ? tile : java.util.Arrays.copyOf(tile, 2 + n);
                tiles++;
                maxRows = Math.max(maxRows, n);
                int listed = layout.listedCount(h, qb);
                visited += listed;
                skipped += layout.kBlocks() - listed;
            }
        }
        // Query heads of one kv head share an item (the same query block of each) when their tiles have few rows
        // (decoding) and the same key blocks (a layout shared by all heads): the blocks are then read once per item,
        // not once per head. Items stay within BR < COLUMN_ROWS rows, where each row's arithmetic is its own, so the
        // outputs do not change; at least one item per worker remains.
        int group = sh.group();
        int share = group == 1 || pr.pattern.perHead() || maxRows == 0 ? 1
                : Math.max(1, Math.min(Math.min(group, BR / maxRows), tiles / threads));
        List<int[][]> items = new ArrayList<>();
        long reads = 0;
        for (int b = 0; b < sh.batch(); b++) {
            for (int h0 = 0, h1; h0 < sh.heads(); h0 = h1) {
                h1 = Math.min(h0 + share, (h0 / group + 1) * group);
                for (int qb = 0; qb < qBlocks; qb++) {
                    List<int[]> item = new ArrayList<>(h1 - h0);
                    for (int h = h0; h < h1; h++) {
                        int[] tile = tileOf[(b * sh.heads() + h) * qBlocks + qb];
                        if (tile != null) {
                            item.add(tile);
                        }
                    }
                    if (!item.isEmpty()) {
                        items.add(item.toArray(new int[0][]));
                        reads += layout.listedCount(item.get(0)[0] % sh.heads(), qb);
                    }
                }
            }
        }
        // Items that read fewer key blocks than there are (decoding with a window, say) read them straight from K and V;
        // a repack converts every key block once and pays where the items read more blocks than that.
        boolean stream = reads <= (long) layout.kBlocks() * sh.batch() * sh.kvHeads() && !alwaysRepack;
        if (!stream) {
            repack(pr, bs);
        }
        long scratchBytes = parallel(items.size(), () -> new TileScratch(sh.headDim(), bs, bs, stream),
                (w, t) -> sparseTile(pr, layout, items.get(t), w));
        return new ExecutionStats(name(), Algorithm.SPARSE, 0, scratchBytes + pr.repackBytes() + layout.sizeBytes(),
                tiles, visited, skipped, rowsSkipped, -1);
    }

    /**
     * One work item: query block qb of one or more (batch, head)s sharing a kv head and their key block lists, each
     * tile {bh, qb, active rows…}; the blocks' full ones first, then the partial ones.
     */
    private static void sparseTile(Problem pr, BlockLayout layout, int[][] item, TileScratch w) {
        AttentionShape sh = pr.sh;
        int qb = item[0][1];
        int nr = 0;
        for (int[] tile : item) {
            nr += tile.length - 2;
        }
        int[] rowBh = new int[nr];
        int[] rowI = new int[nr];
        for (int t = 0, r = 0; t < item.length; t++) {
            for (int x = 2; x < item[t].length; x++, r++) {
                rowBh[r] = item[t][0];
                rowI[r] = item[t][x];
            }
        }
        int d = sh.headDim();
        int kvLen = sh.kvLen();
        int bs = layout.blockSize();
        // The heads of an item share their block lists (sparse shares items only for layouts shared by all heads).
        int h = rowBh[0] % sh.heads();
        int kv = pr.kvIndex(rowBh[0]);
        loadQueries(pr, rowBh, rowI, nr, w);
        // Full blocks: every pair allowed, no element rule at all.
        for (int kb : layout.fullBlocks(h, qb)) {
            int j0 = kb * bs;
            blockStep(pr, kv, kb, j0, Math.min(bs, kvLen - j0), true, nr, w);
        }
        int[] partial = layout.partialBlocks(h, qb);
        if (partial.length > 0) {
            rowRanges(pr, rowBh, rowI, nr, w);
            for (int kb : partial) {
                int j0 = kb * bs;
                int n = Math.min(bs, kvLen - j0);
                // Listed for the whole tile, but the rows left after gating may have no key here.
                int kind = classifyRows(w, nr, j0, n);
                if (kind != EMPTY) {
                    blockStep(pr, kv, kb, j0, n, kind == FULL, nr, w);
                }
            }
        }
        gatherRows(w, nr, d);
        for (int r = 0; r < nr; r++) {
            finishRow(pr, rowBh[r], rowI[r], w.acc[r], w.m[r], w.l[r]);
        }
    }

    /**
     * {@link #keyTileStep} on key tile kb (keys j0 … j0+n−1) of kv head kv: from the repack, or, without one (see flash
     * and sparse), read into the item's scratch tile as it goes.
     */
    private static void blockStep(Problem pr, int kv, int kb, int j0, int n, boolean allFull, int nr, TileScratch w) {
        int d = pr.sh.headDim();
        if (pr.keyTiles != null) {
            keyTileStep(w, nr, d, pr.keyTiles[kv][kb], pr.valueRows[kv], j0, j0, n, allFull);
        } else {
            streamTile(pr, kv, j0, n, w);
            keyTileStep(w, nr, d, w.kT, w.vTile, 0, j0, n, allFull);
        }
    }

    /** Sets s[off + c] to −∞ for the keys j0 + c (c &lt; n) the row may not attend; ranges before {@code first} end before j0. */
    private static void maskRow(float[] s, int off, int j0, int n, KeyRanges ranges, int first) {
        int next = j0;
        int end = j0 + n;
        for (int t = first; t < ranges.size() && next < end; t++) {
            int rs = ranges.start(t);
            int re = ranges.end(t);
            if (re <= next) {
                continue;
            }
            int gapEnd = Math.min(end, rs);
            for (int j = next; j < gapEnd; j++) {
                s[off + j - j0] = Float.NEGATIVE_INFINITY;
            }
            next = Math.max(next, re);
        }
        for (int j = next; j < end; j++) {
            s[off + j - j0] = Float.NEGATIVE_INFINITY;
        }
    }

    /** o = acc / l · gate; lse = m + ln l; a row with no allowed key gives zeros and lse −∞. */
    private static void finishRow(Problem pr, int bh, int i, float[] acc, float m, float l) {
        int d = pr.sh.headDim();
        int row = bh * pr.sh.qLen() + i;
        if (l == 0f) {
            writeEmptyRow(pr, bh, i);
            return;
        }
        float g = pr.gate(bh / pr.sh.heads(), i, bh % pr.sh.heads());
        float f = g / l;
        int o = row * d;
        if (Math.abs(f) >= Float.MIN_NORMAL) {
            for (int dd = 0; dd < d; dd++) {
                pr.out[o + dd] = acc[dd] * f;
            }
        } else {
            // g / l subnormal (a gate below ~1e-33) keeps a few bits: divide first, then gate.
            float inv = 1f / l;
            for (int dd = 0; dd < d; dd++) {
                pr.out[o + dd] = acc[dd] * inv * g;
            }
        }
        pr.lse[row] = (float) (m + Math.log(l));
    }

    private static void writeEmptyRow(Problem pr, int bh, int i) {
        int d = pr.sh.headDim();
        int row = bh * pr.sh.qLen() + i;
        java.util.Arrays.fill(pr.out, row * d, row * d + d, 0f);
        pr.lse[row] = Float.NEGATIVE_INFINITY;
    }

    // ---------------------------------------------------------------- materialized

    private ExecutionStats materialized(Problem pr) {
        AttentionShape sh = pr.sh;
        long cells = (long) sh.qLen() * sh.kvLen();
        if (cells > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("the materialized path needs an L x S = " + sh.qLen() + " x " + sh.kvLen()
                    + " score matrix, more than one Java array holds; use the flash algorithm");
        }
        float[] scores = new float[(int) cells];
        // Heads run one after another (they share the score matrix): a head's rows in tiles of up to ITEM_ROWS, fewer
        // where that would leave workers without a tile. The statistics count tiles of BR rows.
        int tileRows = Math.min(ITEM_ROWS, (sh.qLen() + threads - 1) / threads);
        int tiles = (sh.qLen() + tileRows - 1) / tileRows;
        int bhCount = sh.batch() * sh.heads();
        long rowsSkipped = 0;
        long scratch = 0;
        for (int bh = 0; bh < bhCount; bh++) {
            final int fbh = bh;
            scratch = Math.max(scratch, parallel(tiles,
                    () -> new TileScratch(sh.headDim(), ITEM_ROWS, BC, sh.kvLen(), true),
                    (w, tile) -> materializedRows(pr, fbh, tile * tileRows,
                            Math.min(tileRows, sh.qLen() - tile * tileRows), scores, w)));
            for (int i = 0; i < sh.qLen(); i++) {
                if (pr.gate(bh / sh.heads(), i, bh % sh.heads()) == 0f) {
                    rowsSkipped++;
                }
            }
        }
        long keyTiles = (sh.kvLen() + BC - 1) / BC;
        long queryTiles = (long) (sh.qLen() + BR - 1) / BR * bhCount;
        return new ExecutionStats(name(), Algorithm.MATERIALIZED, 0, 4L * cells + scratch + pr.repackBytes(),
                queryTiles, queryTiles * keyTiles, 0, rowsSkipped, -1, DType.F32);
    }

    /**
     * Rows [i0, i0 + nr) of (batch, head) bh, the standard way: S = scale·Q·Kᵀ for every key into
     * {@code scores}, then the mask, a row softmax, and O = P·V.
     */
    private static void materializedRows(Problem pr, int bh, int i0, int nr, float[] scores, TileScratch w) {
        AttentionShape sh = pr.sh;
        int d = sh.headDim();
        int kvLen = sh.kvLen();
        int h = bh % sh.heads();
        int b = bh / sh.heads();
        int qBase = bh * sh.qLen() * d;
        float[][][] kTiles = pr.keyTiles[pr.kvIndex(bh)];
        float[][] vRows = pr.valueRows[pr.kvIndex(bh)];
        for (int r = 0; r < nr; r++) {
            for (int dd = 0; dd < d; dd++) {
                w.qs[r][dd] = pr.q[qBase + (i0 + r) * d + dd] * pr.scale;
            }
        }
        for (int j0 = 0; j0 < kvLen; j0 += BC) {
            int n = Math.min(BC, kvLen - j0);
            TileMath.scores(w.qs, w.allRows, nr, d, kTiles[j0 / BC], n, w.s);
            for (int r = 0; r < nr; r++) {
                System.arraycopy(w.s[r], 0, scores, (i0 + r) * kvLen + j0, n);
            }
        }
        for (int r = 0; r < nr; r++) {
            int i = i0 + r;
            int so = i * kvLen;
            pr.pattern.allowedKeys(h, sh.position(i), kvLen, w.ranges[r]);
            maskRow(scores, so, 0, kvLen, w.ranges[r], 0);
            float m = TileMath.rowMax(scores, so, kvLen);
            // The row sum in double: in one fp32 sum over the whole row, terms below half an ulp of the running sum are
            // lost (scores of std 3 at S = 32768: lse 2.7e-5 low, o 5.9e-5 off in f32), where flash sums per key tile.
            double sum = 0;
            if (m != Float.NEGATIVE_INFINITY) {
                sum = TileMath.expRowDouble(scores, so, kvLen, m, w.expX, w.expP, w.expT);
            }
            w.m[r] = m;
            w.l[r] = (float) sum;
        }
        // O = P · V, by key tiles with the rows as vector lanes (as flash does) when the tile has enough rows.
        if (w.accT != null && nr >= COLUMN_ROWS) {
            for (int dd = 0; dd < d; dd++) {
                java.util.Arrays.fill(w.accT[dd], 0, nr, 0f);
            }
            for (int j0 = 0; j0 < kvLen; j0 += BC) {
                int n = Math.min(BC, kvLen - j0);
                TileMath.transposeBlock(scores, i0 * kvLen + j0, kvLen, nr, n, w.s);
                TileMath.accumulateColumns(w.s, nr, vRows, j0, n, d, w.accT);
            }
            w.columns = true;
            gatherRows(w, nr, d);
        } else {
            for (int r = 0; r < nr; r++) {
                java.util.Arrays.fill(w.acc[r], 0f);
                if (w.l[r] > 0f) {
                    TileMath.accumulateRow(scores, (i0 + r) * kvLen, vRows, 0, kvLen, d, w.acc[r]);
                }
            }
        }
        // A row whose sum is not positive (0: no allowed key; NaN) gets an empty or a NaN row whatever its O is.
        for (int r = 0; r < nr; r++) {
            int i = i0 + r;
            if (pr.gate(b, i, h) == 0f) {
                writeEmptyRow(pr, bh, i);
            } else {
                finishRow(pr, bh, i, w.acc[r], w.m[r], w.l[r]);
            }
        }
    }

    // ---------------------------------------------------------------- workers

    private interface ItemBody<W> {
        void run(W scratch, int item);
    }

    /** Runs items 0 … n−1 on the pool, one scratch per worker; returns the scratch bytes in use at once. */
    private <W> long parallel(int n, Supplier<W> scratch, ItemBody<W> body) {
        if (n == 0) {
            return 0;
        }
        int workers = Math.min(threads, n);
        AtomicInteger next = new AtomicInteger();
        AtomicLong bytes = new AtomicLong();
        List<Future<?>> futures = new ArrayList<>(workers);
        for (int t = 0; t < workers; t++) {
            futures.add(pool.submit(() -> {
                W w = scratch.get();
                if (w instanceof TileScratch ts) {
                    bytes.addAndGet(ts.bytes);
                }
                for (int item; (item = next.getAndIncrement()) < n; ) {
                    body.run(w, item);
                }
            }));
        }
        for (Future<?> f : futures) {
            try {
                f.get();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                futures.forEach(x -> x.cancel(true));
                throw new IllegalStateException("interrupted while computing attention", e);
            } catch (ExecutionException e) {
                futures.forEach(x -> x.cancel(true));
                Throwable c = e.getCause();
                if (c instanceof RuntimeException re) {
                    throw re;
                }
                if (c instanceof Error err) {
                    throw err;
                }
                throw new IllegalStateException(c);
            }
        }
        return bytes.get();
    }

    @Override
    public void close() {
        closed = true;
        pool.shutdownNow();
    }
}
