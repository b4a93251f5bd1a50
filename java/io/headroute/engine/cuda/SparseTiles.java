package io.headroute.engine.cuda;

import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.KeyRanges;
import io.headroute.pattern.Pattern;
import java.util.Arrays;

/**
 * A {@link BlockLayout} in the units of a kernel's tiles (Br query rows × Bc keys), as the int32 CSR
 * arrays the block-sparse kernels read (AttnParams kv_offsets, kv_tiles, kv_full_before, kv_masks).
 * Layout blocks of 64 or 128 are split into kernel tiles: a full block's tiles are full; each tile of a
 * partial block gets the exact element bits of its Br × Bc pairs from the pattern's per-row key ranges,
 * and is then listed as full (every valid pair allowed), partial (bits in the kernel), or not at all. A
 * kernel tile of several layout rows (Br = 128 over blocks of 64: the 128-row tilings) is full where every
 * one of its layout rows lists the block full; the other blocks any of them lists are classified by their
 * exact bits as partial blocks are.
 * Size and build time follow the listed blocks: per cell the rows' key ranges are walked only against
 * that cell's partial tiles; nothing of size L × S exists.
 */
public final class SparseTiles {
    private final int layoutHeads;
    private final int qTiles;
    private final int kTiles;
    private final int br;
    private final int bc;
    /** Cell (layout head, query tile) = head · qTiles + qt. */
    private final TileLists lists;

    private SparseTiles(int layoutHeads, int qTiles, int kTiles, int br, int bc, TileLists lists) {
        this.layoutHeads = layoutHeads;
        this.qTiles = qTiles;
        this.kTiles = kTiles;
        this.br = br;
        this.bc = bc;
        this.lists = lists;
    }

    /**
     * Splits {@code layout} (built from {@code pattern} for L queries and S keys) into kernel tiles of
     * {@code br} × {@code bc}; the layout's block size must be a multiple of bc ≤ 64, and a multiple or a divisor of br.
     *
     * @param pattern the effective pattern the layout was built from (its rows give the partial tiles' bits)
     * @param layout  the block layout for L and S
     * @param qLen    L
     * @param kvLen   S
     * @param br      Br, query rows per kernel tile
     * @param bc      Bc, keys per kernel tile, at most 64 (one mask word per row)
     * @return the kernel tiles
     * @throws IllegalArgumentException when the blocks do not split into such tiles, or the layout is for other sizes
     */
    public static SparseTiles build(Pattern pattern, BlockLayout layout, int qLen, int kvLen, int br, int bc) {
        int bs = layout.blockSize();
        if (bc > 64 || (bs % br != 0 && br % bs != 0) || bs % bc != 0) {
            throw new IllegalArgumentException("layout blocks of " + bs + " do not split into kernel tiles of " + br + " x " + bc);
        }
        if (layout.qBlocks() != ceilDiv(qLen, bs) || layout.kBlocks() != ceilDiv(kvLen, bs)) {
            throw new IllegalArgumentException("layout " + layout + " is not for L = " + qLen + ", S = " + kvLen);
        }
        int lh = layout.heads();
        int qTiles = ceilDiv(qLen, br);
        int kTiles = ceilDiv(kvLen, bc);
        int subK = bs / bc;
        int offsetShift = kvLen - qLen;
        int cells = lh * qTiles;
        int[] offsets = new int[cells + 1];
        int[] fullBefore = new int[cells + 1];
        IntList out = new IntList();
        LongList maskOut = new LongList();
        IntList full = new IntList();
        IntList cand = new IntList();
        IntList fullBlocks = new IntList();
        IntList candBlocks = new IntList();
        IntList scratch = new IntList();
        IntList scratchFull = new IntList();
        long[] bits = new long[0];
        KeyRanges[] ranges = new KeyRanges[br];
        for (int r = 0; r < br; r++) {
            ranges[r] = new KeyRanges();
        }
        int fullSoFar = 0;
        for (int h = 0; h < lh; h++) {
            for (int qt = 0; qt < qTiles; qt++) {
                int q0 = qt * br;
                int rows = Math.min(br, qLen - q0);
                int qb0 = q0 / bs;
                int qb1 = (q0 + rows - 1) / bs;
                // Full tiles, and candidate tiles (ascending) that their element bits classify: those of the partial
                // blocks of the tile's layout row, or of every block its layout rows list but not all of them full.
                full.clear();
                cand.clear();
                if (qb0 == qb1) {
                    int[] f = layout.fullBlocks(h, qb0);
                    int[] p = layout.partialBlocks(h, qb0);
                    addTiles(full, f, f.length, subK, kTiles);
                    addTiles(cand, p, p.length, subK, kTiles);
                } else {
                    spannedBlocks(layout, h, qb0, qb1, fullBlocks, candBlocks, scratch, scratchFull);
                    addTiles(full, fullBlocks.data, fullBlocks.size(), subK, kTiles);
                    addTiles(cand, candBlocks.data, candBlocks.size(), subK, kTiles);
                }
                int nc = cand.size();
                if (bits.length < nc * br) {
                    bits = new long[Math.max(nc * br, 2 * bits.length)];
                }
                Arrays.fill(bits, 0, nc * br, 0L);
                if (nc > 0) {
                    for (int r = 0; r < rows; r++) {
                        pattern.allowedKeys(h, q0 + r + offsetShift, kvLen, ranges[r]);
                        KeyRanges kr = ranges[r];
                        for (int x = 0; x < kr.size(); x++) {
                            int s = kr.start(x);
                            int e = kr.end(x);
                            for (int c = lowerBound(cand.data, nc, s / bc); c < nc && cand.data[c] * bc < e; c++) {
                                int k0 = cand.data[c] * bc;
                                int from = Math.max(s, k0) - k0;
                                int to = Math.min(e, k0 + bc) - k0;
                                bits[c * br + r] |= span(from, to);
                            }
                        }
                    }
                }
                IntList partial = new IntList();
                for (int c = 0; c < nc; c++) {
                    int kt = cand.data[c];
                    long valid = span(0, Math.min(bc, kvLen - kt * bc));
                    boolean any = false;
                    boolean all = true;
                    for (int r = 0; r < rows; r++) {
                        long w = bits[c * br + r];
                        any |= w != 0;
                        all &= w == valid;
                    }
                    if (all) {
                        full.add(kt);
                    } else if (any) {
                        partial.add(kt);
                        for (int r = 0; r < br; r++) {
                            maskOut.add(bits[c * br + r]);
                        }
                    }
                }
                Arrays.sort(full.data, 0, full.size());
                for (int t = 0; t < full.size(); t++) {
                    out.add(full.data[t]);
                }
                for (int t = 0; t < partial.size(); t++) {
                    out.add(partial.data[t]);
                }
                int cell = h * qTiles + qt;
                fullSoFar += full.size();
                offsets[cell + 1] = out.size();
                fullBefore[cell + 1] = fullSoFar;
            }
        }
        return new SparseTiles(lh, qTiles, kTiles, br, bc, new TileLists(br, offsets, out.toArray(), fullBefore, maskOut.toArray()));
    }

    /** Appends the kernel key tiles of layout blocks {@code blocks[0 … n)} (ascending): subK each, those below kTiles. */
    private static void addTiles(IntList out, int[] blocks, int n, int subK, int kTiles) {
        for (int x = 0; x < n; x++) {
            int kb = blocks[x];
            for (int kt = kb * subK; kt < Math.min(kTiles, (kb + 1) * subK); kt++) {
                out.add(kt);
            }
        }
    }

    /**
     * The key blocks of a kernel tile spanning layout rows qb0 … qb1 of head h, ascending: into {@code full} those
     * every one of the rows lists full, into {@code cand} the others that any of them lists (full or partial); {@code all}
     * and {@code fullAll} are scratch.
     */
    private static void spannedBlocks(BlockLayout layout, int h, int qb0, int qb1, IntList full, IntList cand, IntList all,
            IntList fullAll) {
        all.clear();
        fullAll.clear();
        for (int qb = qb0; qb <= qb1; qb++) {
            for (int kb : layout.fullBlocks(h, qb)) {
                all.add(kb);
                fullAll.add(kb);
            }
            for (int kb : layout.partialBlocks(h, qb)) {
                all.add(kb);
            }
        }
        Arrays.sort(all.data, 0, all.size());
        Arrays.sort(fullAll.data, 0, fullAll.size());
        full.clear();
        cand.clear();
        int spanned = qb1 - qb0 + 1;
        int f = 0;
        for (int x = 0; x < all.size(); x++) {
            int kb = all.data[x];
            if (x > 0 && all.data[x - 1] == kb) {
                continue;
            }
            int times = 0;
            while (f < fullAll.size() && fullAll.data[f] < kb) {
                f++;
            }
            while (f < fullAll.size() && fullAll.data[f] == kb) {
                f++;
                times++;
            }
            if (times == spanned) {
                full.add(kb);
            } else {
                cand.add(kb);
            }
        }
    }

    /** Bits [from, to) of a 64-bit word. */
    static long span(int from, int to) {
        if (to <= from) {
            return 0L;
        }
        long hi = to >= 64 ? -1L : (1L << to) - 1;
        long lo = (1L << from) - 1;
        return hi & ~lo;
    }

    private static int lowerBound(int[] a, int n, int key) {
        int lo = 0;
        int hi = n;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (a[mid] < key) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    static int ceilDiv(int a, int b) {
        return (int) ((a + (long) b - 1) / b);
    }

    /** {@return 1 when one list serves every head, else H} */
    public int layoutHeads() {
        return layoutHeads;
    }

    /** {@return the query tiles per head, ceil(L / Br)} */
    public int queryTiles() {
        return qTiles;
    }

    /** {@return the key tiles, ceil(S / Bc)} */
    public int keyTiles() {
        return kTiles;
    }

    /** {@return Br, the query rows of a kernel tile} */
    public int tileRows() {
        return br;
    }

    /** {@return Bc, the keys of a kernel tile} */
    public int tileKeys() {
        return bc;
    }

    private int cell(int head, int qt) {
        return (layoutHeads == 1 ? 0 : head) * qTiles + qt;
    }

    /**
     * {@return the key tiles the kernel visits for (head, query tile): full ones and partial ones}
     *
     * @param head the head, in [0, H); any head of a shared layout reads the one list
     * @param qt   the query tile, in [0, {@link #queryTiles()})
     */
    public int listed(int head, int qt) {
        return lists.listed(cell(head, qt));
    }

    /**
     * {@return the full key tiles of (head, query tile), ascending, a new array}
     *
     * @param head the head, in [0, H)
     * @param qt   the query tile
     */
    public int[] full(int head, int qt) {
        return lists.full(cell(head, qt));
    }

    /**
     * {@return the partial key tiles of (head, query tile), ascending, a new array}
     *
     * @param head the head, in [0, H)
     * @param qt   the query tile
     */
    public int[] partial(int head, int qt) {
        return lists.partial(cell(head, qt));
    }

    /**
     * {@return the element bits of partial tile {@code k} of (head, query tile)}: Br words, bit c of word r = (row r,
     * key c).
     *
     * @param head the head, in [0, H)
     * @param qt   the query tile
     * @param k    the index into {@link #partial}'s list, not a key tile number
     */
    public long[] mask(int head, int qt, int k) {
        return lists.mask(cell(head, qt), k);
    }

    /** {@return the listed tiles over all cells} */
    public long listedTiles() {
        return lists.listedTiles();
    }

    /** The device arrays, in the order of AttnParams. */
    TileLists lists() {
        return lists;
    }

    /** {@return the bytes of the four device arrays as uploaded: O(listed tiles + cells), never L × S} */
    public long deviceBytes() {
        return lists.deviceBytes();
    }

    @Override
    public String toString() {
        return "SparseTiles[" + layoutHeads + " x " + qTiles + " x " + kTiles + " tiles of " + br + " x " + bc + ", "
                + lists.listedTiles() + " listed, " + lists.partialCount() + " partial]";
    }

    /** A growable int array. */
    static final class IntList {
        int[] data = new int[16];
        private int n;

        void add(int x) {
            if (n == data.length) {
                data = Arrays.copyOf(data, 2 * n);
            }
            data[n++] = x;
        }

        int size() {
            return n;
        }

        void clear() {
            n = 0;
        }

        int[] toArray() {
            return Arrays.copyOf(data, n);
        }
    }

    /** A growable long array. */
    static final class LongList {
        long[] data = new long[16];
        private int n;

        void add(long x) {
            if (n == data.length) {
                data = Arrays.copyOf(data, 2 * n);
            }
            data[n++] = x;
        }

        int size() {
            return n;
        }

        long[] toArray() {
            return Arrays.copyOf(data, n);
        }
    }
}
