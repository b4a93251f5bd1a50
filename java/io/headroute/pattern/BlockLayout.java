package io.headroute.pattern;

import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.Arrays;

/**
 * A block-sparse view of a pattern, in the spirit of FlexAttention's BlockMask: for each (head, query
 * tile) the key blocks that have any allowed pair, split into <em>full</em> blocks (every pair allowed,
 * no element mask needed) and <em>partial</em> ones. Query tiles are by query index (rows i·BS … of the
 * L queries); key blocks by key index; the last tile and block of each may be shorter, and a block is
 * classified on its real (clipped) extent. Stored CSR-like.
 *
 * <p>{@link #build} never walks query rows or builds an L × S mask: for each (head, query tile) the
 * pattern says which keys some row of the tile may attend and which every row may attend
 * ({@link Pattern#spanKeys}, exact and analytic for every pattern of the contract), and the key blocks
 * are read off those two range lists. Time and memory are O(H · query tiles + listed blocks), plus, for
 * bigbird and layout patterns, the pattern's own rows (one per pattern block spanned).
 */
public final class BlockLayout {
    private final int heads;
    private final int qLen;
    private final int kvLen;
    private final int blockSize;
    private final int qBlocks;
    private final int kBlocks;
    /** offsets[(h * qBlocks + qb)] .. offsets[... + 1] index into {@link #blocks}; length heads·qBlocks + 1. */
    private final int[] offsets;
    /** Per (head, query tile): its full key blocks ascending, then its partial ones ascending. */
    private final int[] blocks;
    /** Number of full blocks at the start of each (head, query tile) list. */
    private final int[] fullCounts;

    private BlockLayout(int heads, int qLen, int kvLen, int blockSize, int[] offsets, int[] blocks, int[] fullCounts) {
        this.heads = heads;
        this.qLen = qLen;
        this.kvLen = kvLen;
        this.blockSize = blockSize;
        this.qBlocks = ceilDiv(qLen, blockSize);
        this.kBlocks = ceilDiv(kvLen, blockSize);
        this.offsets = offsets;
        this.blocks = blocks;
        this.fullCounts = fullCounts;
    }

    private static void checkSizes(int heads, int qLen, int kvLen, int blockSize) {
        if (heads <= 0 || qLen <= 0 || kvLen <= 0 || blockSize <= 0) {
            throw new IllegalArgumentException("layout sizes must be positive: H=" + heads + " L=" + qLen + " S=" + kvLen
                    + " BS=" + blockSize);
        }
        if (qLen > kvLen) {
            throw new IllegalArgumentException("L = " + qLen + " exceeds S = " + kvLen);
        }
    }

    /**
     * Builds the layout of {@code pattern} for L queries and S keys with square blocks of
     * {@code blockSize}; one layout for all heads unless the pattern differs between heads.
     *
     * @param pattern   the effective pattern (causal already folded in)
     * @param heads     H, positive; the layout stores one head unless {@link Pattern#perHead()}
     * @param qLen      L, positive, at most S
     * @param kvLen     S, positive
     * @param blockSize BS, the rows of a query tile and keys of a key block, positive
     * @return the layout
     * @throws IllegalArgumentException when a size is not positive or L &gt; S
     * @throws PatternException         when the pattern does not fit H or S
     */
    public static BlockLayout build(Pattern pattern, int heads, int qLen, int kvLen, int blockSize) {
        checkSizes(heads, qLen, kvLen, blockSize);
        pattern.check(heads, qLen, kvLen);
        int layoutHeads = pattern.perHead() ? heads : 1;
        int qBlocks = ceilDiv(qLen, blockSize);
        int kBlocks = ceilDiv(kvLen, blockSize);
        int shift = kvLen - qLen;

        int[] offsets = new int[layoutHeads * qBlocks + 1];
        int[] fullCounts = new int[layoutHeads * qBlocks];
        int[] out = new int[Math.max(16, Math.min(kBlocks, 1 << 16))];
        int used = 0;
        int[] partial = new int[kBlocks];
        KeyRanges any = new KeyRanges();
        KeyRanges all = new KeyRanges();

        for (int h = 0; h < layoutHeads; h++) {
            for (int qb = 0; qb < qBlocks; qb++) {
                int i0 = qb * blockSize;
                int i1 = (int) Math.min(qLen, (long) i0 + blockSize);
                pattern.spanKeys(h, i0 + shift, i1 - 1 + shift, kvLen, false, any, all);
                if (out.length - used < kBlocks) {
                    out = Arrays.copyOf(out, (int) Math.min(Integer.MAX_VALUE - 8, Math.max(2L * out.length, (long) used + kBlocks)));
                }
                // Key blocks meeting `any` are listed; those inside one range of `all` are full.
                int nFull = 0;
                int nPartial = 0;
                int next = 0; // first key block not yet classified
                int a = 0;
                for (int r = 0; r < any.size(); r++) {
                    int kbEnd = (any.end(r) - 1) / blockSize;
                    for (int kb = Math.max(next, any.start(r) / blockSize); kb <= kbEnd; kb++) {
                        int ks = kb * blockSize;
                        int ke = (int) Math.min(kvLen, (long) ks + blockSize);
                        a = all.firstEndingAfter(ks, a);
                        if (a < all.size() && all.start(a) <= ks && all.end(a) >= ke) {
                            out[used + nFull++] = kb;
                        } else {
                            partial[nPartial++] = kb;
                        }
                    }
                    next = Math.max(next, kbEnd + 1);
                }
                System.arraycopy(partial, 0, out, used + nFull, nPartial);
                used += nFull + nPartial;
                int cell = h * qBlocks + qb;
                fullCounts[cell] = nFull;
                offsets[cell + 1] = used;
            }
        }
        return new BlockLayout(layoutHeads, qLen, kvLen, blockSize, offsets, Arrays.copyOf(out, used), fullCounts);
    }

    /**
     * A layout from explicit block lists, for layouts no pattern describes: {@code full[h][qb]} and
     * {@code partial[h][qb]} are the full and partial key blocks of head h's query tile qb, each strictly
     * ascending, within [0, ceil(S / BS)), and disjoint. One head ({@code full.length == 1}) applies to
     * all heads. Full blocks are computed without an element mask, so list a block as full only if every
     * pair in it is allowed; partial blocks are masked with the request's pattern.
     *
     * @param qLen      L, positive, at most S
     * @param kvLen     S, positive
     * @param blockSize BS, positive
     * @param full      per stored head (1 or H), per query tile (ceil(L / BS)), the full key blocks; copied
     * @param partial   the same for the partial key blocks, with as many heads as {@code full}; copied
     * @return the layout
     * @throws IllegalArgumentException when the lists do not match the sizes, are not strictly ascending, fall
     *                                  outside [0, ceil(S / BS)) or list a block as both full and partial
     */
    public static BlockLayout fromLists(int qLen, int kvLen, int blockSize, int[][][] full, int[][][] partial) {
        int heads = full.length;
        checkSizes(heads, qLen, kvLen, blockSize);
        int qBlocks = ceilDiv(qLen, blockSize);
        int kBlocks = ceilDiv(kvLen, blockSize);
        if (partial.length != heads) {
            throw new IllegalArgumentException("full lists have " + heads + " heads, partial lists " + partial.length);
        }
        int[] offsets = new int[heads * qBlocks + 1];
        int[] fullCounts = new int[heads * qBlocks];
        long total = 0;
        for (int h = 0; h < heads; h++) {
            if (full[h].length != qBlocks || partial[h].length != qBlocks) {
                throw new IllegalArgumentException("head " + h + ": expected " + qBlocks + " query tiles of " + blockSize
                        + " for L = " + qLen + ", got " + full[h].length + " full and " + partial[h].length + " partial lists");
            }
            for (int qb = 0; qb < qBlocks; qb++) {
                total += full[h][qb].length + partial[h][qb].length;
            }
        }
        if (total > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("layout of " + total + " blocks is too large");
        }
        int[] blocks = new int[(int) total];
        boolean[] seen = new boolean[kBlocks];
        int used = 0;
        for (int h = 0; h < heads; h++) {
            for (int qb = 0; qb < qBlocks; qb++) {
                String where = "head " + h + " query tile " + qb;
                int[] f = full[h][qb];
                int[] pl = partial[h][qb];
                checkList(f, kBlocks, where + " full blocks");
                checkList(pl, kBlocks, where + " partial blocks");
                for (int kb : f) {
                    seen[kb] = true;
                }
                for (int kb : pl) {
                    if (seen[kb]) {
                        throw new IllegalArgumentException(where + ": key block " + kb + " is listed as full and partial");
                    }
                }
                for (int kb : f) {
                    seen[kb] = false;
                }
                System.arraycopy(f, 0, blocks, used, f.length);
                System.arraycopy(pl, 0, blocks, used + f.length, pl.length);
                used += f.length + pl.length;
                int cell = h * qBlocks + qb;
                fullCounts[cell] = f.length;
                offsets[cell + 1] = used;
            }
        }
        return new BlockLayout(heads, qLen, kvLen, blockSize, offsets, blocks, fullCounts);
    }

    private static void checkList(int[] list, int kBlocks, String what) {
        for (int t = 0; t < list.length; t++) {
            if (list[t] < 0 || list[t] >= kBlocks) {
                throw new IllegalArgumentException(what + ": key block " + list[t] + " is outside 0.." + (kBlocks - 1));
            }
            if (t > 0 && list[t] <= list[t - 1]) {
                throw new IllegalArgumentException(what + " must be strictly ascending: " + list[t - 1] + " then " + list[t]);
            }
        }
    }

    private static int ceilDiv(int a, int b) {
        return (int) ((a + (long) b - 1) / b);
    }

    /** {@return the stored heads: 1 when the layout is shared by all heads, else H} */
    public int heads() {
        return heads;
    }

    /** {@return L, the queries the layout covers} */
    public int qLen() {
        return qLen;
    }

    /** {@return S, the keys the layout covers} */
    public int kvLen() {
        return kvLen;
    }

    /** {@return BS, the rows of a query tile and the keys of a key block} */
    public int blockSize() {
        return blockSize;
    }

    /** {@return the query tiles per head, ceil(L / BS); the last may be shorter} */
    public int qBlocks() {
        return qBlocks;
    }

    /** {@return the key blocks, ceil(S / BS); the last may be shorter} */
    public int kBlocks() {
        return kBlocks;
    }

    private int cell(int head, int qb) {
        return (heads == 1 ? 0 : head) * qBlocks + qb;
    }

    /**
     * Full key blocks of (head, query tile), ascending.
     *
     * @param head the head, in [0, H); any head reads the one stored head of a shared layout
     * @param qb   the query tile, in [0, {@link #qBlocks()})
     * @return a new array of key block indices
     */
    public int[] fullBlocks(int head, int qb) {
        int c = cell(head, qb);
        return Arrays.copyOfRange(blocks, offsets[c], offsets[c] + fullCounts[c]);
    }

    /**
     * Partial key blocks of (head, query tile), ascending.
     *
     * @param head the head, in [0, H); any head reads the one stored head of a shared layout
     * @param qb   the query tile, in [0, {@link #qBlocks()})
     * @return a new array of key block indices
     */
    public int[] partialBlocks(int head, int qb) {
        int c = cell(head, qb);
        return Arrays.copyOfRange(blocks, offsets[c] + fullCounts[c], offsets[c + 1]);
    }

    /**
     * {@return the number of full blocks of (head, query tile)}
     *
     * @param head the head, in [0, H)
     * @param qb   the query tile, in [0, {@link #qBlocks()})
     */
    public int fullCount(int head, int qb) {
        return fullCounts[cell(head, qb)];
    }

    /**
     * {@return the number of listed (full + partial) blocks of (head, query tile)}
     *
     * @param head the head, in [0, H)
     * @param qb   the query tile, in [0, {@link #qBlocks()})
     */
    public int listedCount(int head, int qb) {
        int c = cell(head, qb);
        return offsets[c + 1] - offsets[c];
    }

    /**
     * {@return the CSR row offsets, a copy}: (stored head h, query tile qb)'s list is
     * blockIndices()[o[h·qBlocks + qb] … o[… + 1]); {@link #heads()}·qBlocks + 1 entries.
     */
    public int[] offsets() {
        return offsets.clone();
    }

    /**
     * {@return the CSR block lists, a copy}: per (stored head, query tile), its full blocks ascending, then its
     * partial ones.
     */
    public int[] blockIndices() {
        return blocks.clone();
    }

    /** {@return the number of full blocks at the start of each (stored head, query tile) list, a copy} */
    public int[] fullCounts() {
        return fullCounts.clone();
    }

    /** {@return the listed (full + partial) blocks over all stored heads} */
    public long listedBlocks() {
        return blocks.length;
    }

    /** {@return the full blocks over all stored heads} */
    public long fullBlockCount() {
        long n = 0;
        for (int c : fullCounts) {
            n += c;
        }
        return n;
    }

    /** {@return the partial blocks over all stored heads} */
    public long partialBlockCount() {
        return listedBlocks() - fullBlockCount();
    }

    /** {@return all block cells over the stored heads: heads · qBlocks · kBlocks} */
    public long totalBlocks() {
        return (long) heads * qBlocks * kBlocks;
    }

    /** {@return the block cells not listed, over the stored heads} */
    public long emptyBlockCount() {
        return totalBlocks() - listedBlocks();
    }

    /** {@return listed blocks / all blocks, in [0, 1]} (what {@link io.headroute.engine.AutoPolicy} compares). */
    public double density() {
        return (double) listedBlocks() / totalBlocks();
    }

    /** {@return the bytes this layout holds (offsets, block lists, full counts), 4 per int} */
    public long sizeBytes() {
        return 4L * (offsets.length + blocks.length + fullCounts.length);
    }

    /**
     * The layout as a uint8 tensor of shape (heads, qBlocks, kBlocks): 1 where a block is listed. Meant
     * for files and tests; its size is the number of block cells, not tokens.
     *
     * @return a new tensor of {@link #heads()} · qBlocks · kBlocks bytes
     * @throws IllegalArgumentException when there are more than {@code Integer.MAX_VALUE} − 8 cells
     */
    public Tensor toDense() {
        long cells = totalBlocks();
        if (cells > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("dense layout of " + cells + " cells is too large");
        }
        byte[] dense = new byte[(int) cells];
        for (int c = 0; c < heads * qBlocks; c++) {
            for (int t = offsets[c]; t < offsets[c + 1]; t++) {
                dense[c * kBlocks + blocks[t]] = 1;
            }
        }
        return Tensor.ofBytes(DType.U8, dense, heads, qBlocks, kBlocks);
    }

    @Override
    public String toString() {
        return String.format("BlockLayout[heads=%d, L=%d, S=%d, BS=%d, %dx%d blocks: %d full, %d partial, %d empty, density %.4f]",
                heads, qLen, kvLen, blockSize, qBlocks, kBlocks, fullBlockCount(), partialBlockCount(),
                emptyBlockCount(), density());
    }
}
