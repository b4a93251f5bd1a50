package io.headroute.engine.cuda;

import java.util.Arrays;

/**
 * The host's model of what the merging sparse kernels (hr_flash_sparse_merge_*, HrMergedKeys in
 * attention_params.cuh) visit for compacted query rows: one key list per launched compacted tile
 * (b, h, ct), in work-list order. The kernels build the same lists on the device and never read these;
 * the engine counts their work with {@link #listedTiles(SparseTiles, int[], int[], int[], int, int, int)}
 * and tests check the kernels against {@link #build}. A compacted tile's rows come from several original
 * query tiles whose lists differ; its list is the union of theirs, sorted, full entries first (every
 * valid row may attend every key of the kernel tile within S) then partial ones with one allowed-key
 * word per compacted row (its original tile's bits: all ones within S for a full original entry, the
 * original word for a partial one, 0 where its tile does not list the key tile). Union entries no row
 * of the tile may use are left out, so the list holds exactly the key tiles with an allowed pair. Same
 * four arrays as {@link SparseTiles}; O(Σ listed entries × Br) host time.
 */
public final class CompactedSparseTiles {
    private final int br;
    private final int bc;
    private final int blocks;
    /** Cell = the launched block's index in the work list; null where only the count was kept. */
    private final TileLists lists;
    private final long listed;

    private CompactedSparseTiles(int br, int bc, int blocks, TileLists lists, long listed) {
        this.br = br;
        this.bc = bc;
        this.blocks = blocks;
        this.lists = lists;
        this.listed = listed;
    }

    /**
     * Merges {@code src}'s lists for the compacted tiles {@code work} ((b, h, ct) triples, as
     * {@link GateWork#compactedTiles}) over the compacted rows ({@code rows} (B, H, L), {@code counts}
     * (B, H), as {@link GateWork#compact}).
     *
     * @param src    the kernel tiles of the uncompacted layout
     * @param work   the launched compacted tiles, (b, h, ct) triples
     * @param rows   per (b, h), its rows with a non-zero gate, ascending, then unused entries: B·H·L ints
     * @param counts per (b, h), how many rows it keeps: B·H ints
     * @param heads  H
     * @param qLen   L
     * @param kvLen  S
     * @return one merged key list per launched tile
     * @throws IllegalArgumentException when {@code work} is not triples or {@code src} is for other sizes
     */
    public static CompactedSparseTiles build(SparseTiles src, int[] work, int[] rows, int[] counts, int heads, int qLen,
            int kvLen) {
        return merge(src, work, rows, counts, heads, qLen, kvLen, true);
    }

    /**
     * The (launched tile, key tile) pairs of {@link #build}'s lists, {@code build(...).listedTiles()},
     * without keeping the lists or their words.
     *
     * @param src    the kernel tiles of the uncompacted layout
     * @param work   the launched compacted tiles, (b, h, ct) triples
     * @param rows   per (b, h), its rows with a non-zero gate, ascending: B·H·L ints
     * @param counts per (b, h), how many rows it keeps: B·H ints
     * @param heads  H
     * @param qLen   L
     * @param kvLen  S
     * @return the pairs the merging kernel computes
     */
    public static long listedTiles(SparseTiles src, int[] work, int[] rows, int[] counts, int heads, int qLen, int kvLen) {
        return merge(src, work, rows, counts, heads, qLen, kvLen, false).listed;
    }

    /** With {@code keep}, the lists; else only the count. */
    private static CompactedSparseTiles merge(SparseTiles src, int[] work, int[] rows, int[] counts, int heads, int qLen,
            int kvLen, boolean keep) {
        int br = src.tileRows();
        int bc = src.tileKeys();
        if (work.length % 3 != 0) {
            throw new IllegalArgumentException("a work list holds (b, h, tile) triples, got " + work.length + " ints");
        }
        if (src.queryTiles() != SparseTiles.ceilDiv(qLen, br) || src.keyTiles() != SparseTiles.ceilDiv(kvLen, bc)) {
            throw new IllegalArgumentException(src + " is not for L = " + qLen + ", S = " + kvLen);
        }
        int[] srcOff = src.lists().offsets();
        int[] srcTiles = src.lists().tiles();
        int[] srcFull = src.lists().fullBefore();
        long[] srcMasks = src.lists().masks();
        int blocks = work.length / 3;
        int[] offsets = new int[keep ? blocks + 1 : 1];
        int[] fullBefore = new int[keep ? blocks + 1 : 1];
        SparseTiles.IntList out = new SparseTiles.IntList();
        SparseTiles.LongList maskOut = new SparseTiles.LongList();
        long listed = 0;
        int[] slot = new int[src.keyTiles()];
        Arrays.fill(slot, -1);
        int[] union = new int[src.keyTiles()];
        long[] words = new long[0];
        int[] partial = new int[src.keyTiles()];
        int fullSoFar = 0;
        for (int e = 0; e < blocks; e++) {
            int b = work[3 * e];
            int h = work[3 * e + 1];
            int bh = b * heads + h;
            int r0 = work[3 * e + 2] * br;
            int n = Math.min(br, counts[bh] - r0);
            int rowBase = bh * qLen + r0;
            int nu = 0;
            // Rows ascend, so the rows of one original tile are consecutive.
            for (int r = 0; r < n; ) {
                int qt = rows[rowBase + r] / br;
                int rEnd = r;
                while (rEnd < n && rows[rowBase + rEnd] / br == qt) {
                    rEnd++;
                }
                int cell = (src.layoutHeads() == 1 ? 0 : h) * src.queryTiles() + qt;
                int t0 = srcOff[cell];
                int nFull = srcFull[cell + 1] - srcFull[cell];
                for (int j = t0; j < srcOff[cell + 1]; j++) {
                    int kt = srcTiles[j];
                    int u = slot[kt];
                    if (u < 0) {
                        u = nu++;
                        slot[kt] = u;
                        union[u] = kt;
                        if (words.length < nu * br) {
                            words = Arrays.copyOf(words, Math.max(nu * br, 2 * words.length));
                        }
                        Arrays.fill(words, u * br, (u + 1) * br, 0L);
                    }
                    boolean full = j - t0 < nFull;
                    long valid = SparseTiles.span(0, Math.min(bc, kvLen - kt * bc));
                    // HrSparseKeys's mask base: partial entry j of the cell at (j − full_before[cell + 1])·Br.
                    int m = (j - srcFull[cell + 1]) * br;
                    for (int x = r; x < rEnd; x++) {
                        words[u * br + x] = full ? valid : srcMasks[m + rows[rowBase + x] - qt * br];
                    }
                }
                r = rEnd;
            }
            Arrays.sort(union, 0, nu);
            int np = 0;
            for (int x = 0; x < nu; x++) {
                int kt = union[x];
                int u = slot[kt];
                slot[kt] = -1;
                long valid = SparseTiles.span(0, Math.min(bc, kvLen - kt * bc));
                boolean any = false;
                boolean all = true;
                for (int r = 0; r < n; r++) {
                    long w = words[u * br + r];
                    any |= w != 0;
                    all &= w == valid;
                }
                if (any) {
                    listed++;
                }
                if (!keep) {
                    continue;
                }
                if (all) {
                    out.add(kt);
                    fullSoFar++;
                } else if (any) {
                    partial[np++] = kt;
                    for (int r = 0; r < br; r++) {
                        maskOut.add(r < n ? words[u * br + r] : 0L);
                    }
                }
            }
            if (keep) {
                for (int x = 0; x < np; x++) {
                    out.add(partial[x]);
                }
                offsets[e + 1] = out.size();
                fullBefore[e + 1] = fullSoFar;
            }
        }
        TileLists lists = keep ? new TileLists(br, offsets, out.toArray(), fullBefore, maskOut.toArray()) : null;
        return new CompactedSparseTiles(br, bc, blocks, lists, listed);
    }

    /** {@return the launched tiles (cells)} */
    public int blocks() {
        return blocks;
    }

    /** {@return Br, the compacted rows of a launched tile} */
    public int tileRows() {
        return br;
    }

    /** {@return Bc, the keys of a kernel tile} */
    public int tileKeys() {
        return bc;
    }

    /**
     * {@return the key tiles launched tile {@code e} visits: full ones and partial ones}
     *
     * @param e the launched tile, in [0, {@link #blocks()})
     */
    public int listed(int e) {
        return lists.listed(e);
    }

    /**
     * {@return the full key tiles of launched tile {@code e}, ascending, a new array}
     *
     * @param e the launched tile
     */
    public int[] full(int e) {
        return lists.full(e);
    }

    /**
     * {@return the partial key tiles of launched tile {@code e}, ascending, a new array}
     *
     * @param e the launched tile
     */
    public int[] partial(int e) {
        return lists.partial(e);
    }

    /**
     * {@return the bits of partial tile {@code k} of launched tile {@code e}}: Br words, bit c of word r = (compacted
     * row r, key c).
     *
     * @param e the launched tile
     * @param k the index into {@link #partial}'s list
     */
    public long[] mask(int e, int k) {
        return lists.mask(e, k);
    }

    /** {@return the listed tiles over all launched tiles: the (query tile, key tile) pairs the kernel computes} */
    public long listedTiles() {
        return listed;
    }

    /** The four arrays, laid out as {@link SparseTiles}'s (cell = launched tile). */
    TileLists lists() {
        return lists;
    }

    @Override
    public String toString() {
        return "CompactedSparseTiles[" + blocks + " launched tiles of " + br + " x " + bc + ", " + lists.listedTiles()
                + " listed, " + lists.partialCount() + " partial]";
    }
}
