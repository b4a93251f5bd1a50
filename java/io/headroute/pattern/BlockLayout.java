package io.headroute.pattern;

import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.Arrays;

/**
 * A block-sparse view of a pattern, in the spirit of FlexAttention's BlockMask: for each (head, query
 * tile) the key blocks that have any allowed pair, split into <em>full</em> blocks (every pair allowed,
 * no element mask needed) and <em>partial</em> ones. Query tiles are by query index (rows i·BS … of the
 * L queries); key blocks by key index. Stored CSR-like; built from each row's key ranges in time
 * proportional to rows × ranges plus listed blocks, never through an L × S mask.
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

    /**
     * Builds the layout of {@code pattern} for L queries and S keys with square blocks of
     * {@code blockSize}; one layout for all heads unless the pattern differs between heads.
     */
    public static BlockLayout build(Pattern pattern, int heads, int qLen, int kvLen, int blockSize) {
        if (heads <= 0 || qLen <= 0 || kvLen <= 0 || blockSize <= 0) {
            throw new IllegalArgumentException("layout sizes must be positive: H=" + heads + " L=" + qLen + " S=" + kvLen
                    + " BS=" + blockSize);
        }
        if (qLen > kvLen) {
            throw new IllegalArgumentException("L = " + qLen + " exceeds S = " + kvLen);
        }
        pattern.check(heads, qLen, kvLen);
        int layoutHeads = pattern.perHead() ? heads : 1;
        int qBlocks = ceilDiv(qLen, blockSize);
        int kBlocks = ceilDiv(kvLen, blockSize);
        int offsetShift = kvLen - qLen;

        int[] offsets = new int[layoutHeads * qBlocks + 1];
        int[] fullCounts = new int[layoutHeads * qBlocks];
        int[] out = new int[Math.max(16, kBlocks)];
        int used = 0;

        long[] cover = new long[kBlocks];
        int[] touched = new int[kBlocks];
        boolean[] isTouched = new boolean[kBlocks];
        int[] full = new int[kBlocks];
        int[] partial = new int[kBlocks];
        KeyRanges ranges = new KeyRanges();

        for (int h = 0; h < layoutHeads; h++) {
            for (int qb = 0; qb < qBlocks; qb++) {
                int i0 = qb * blockSize;
                int i1 = Math.min(qLen, i0 + blockSize);
                int nTouched = 0;
                for (int i = i0; i < i1; i++) {
                    pattern.allowedKeys(h, i + offsetShift, kvLen, ranges);
                    for (int r = 0; r < ranges.size(); r++) {
                        int s = ranges.start(r);
                        int e = ranges.end(r);
                        for (int kb = s / blockSize; kb <= (e - 1) / blockSize; kb++) {
                            int ks = Math.max(s, kb * blockSize);
                            int ke = Math.min(e, (kb + 1) * blockSize);
                            if (!isTouched[kb]) {
                                isTouched[kb] = true;
                                touched[nTouched++] = kb;
                            }
                            cover[kb] += ke - ks;
                        }
                    }
                }
                Arrays.sort(touched, 0, nTouched);
                int nFull = 0;
                int nPartial = 0;
                long rows = i1 - i0;
                for (int t = 0; t < nTouched; t++) {
                    int kb = touched[t];
                    long width = Math.min(kvLen, (kb + 1L) * blockSize) - (long) kb * blockSize;
                    if (cover[kb] == rows * width) {
                        full[nFull++] = kb;
                    } else {
                        partial[nPartial++] = kb;
                    }
                    cover[kb] = 0;
                    isTouched[kb] = false;
                }
                int cell = h * qBlocks + qb;
                if (used + nFull + nPartial > out.length) {
                    out = Arrays.copyOf(out, Math.max(out.length * 2, used + nFull + nPartial));
                }
                System.arraycopy(full, 0, out, used, nFull);
                System.arraycopy(partial, 0, out, used + nFull, nPartial);
                used += nFull + nPartial;
                fullCounts[cell] = nFull;
                offsets[cell + 1] = used;
            }
        }
        return new BlockLayout(layoutHeads, qLen, kvLen, blockSize, offsets, Arrays.copyOf(out, used), fullCounts);
    }

    private static int ceilDiv(int a, int b) {
        return (int) ((a + (long) b - 1) / b);
    }

    /** 1 when the layout is shared by all heads, else H. */
    public int heads() {
        return heads;
    }

    public int qLen() {
        return qLen;
    }

    public int kvLen() {
        return kvLen;
    }

    public int blockSize() {
        return blockSize;
    }

    public int qBlocks() {
        return qBlocks;
    }

    public int kBlocks() {
        return kBlocks;
    }

    private int cell(int head, int qb) {
        return (heads == 1 ? 0 : head) * qBlocks + qb;
    }

    /** Full key blocks of (head, query tile), ascending. */
    public int[] fullBlocks(int head, int qb) {
        int c = cell(head, qb);
        return Arrays.copyOfRange(blocks, offsets[c], offsets[c] + fullCounts[c]);
    }

    /** Partial key blocks of (head, query tile), ascending. */
    public int[] partialBlocks(int head, int qb) {
        int c = cell(head, qb);
        return Arrays.copyOfRange(blocks, offsets[c] + fullCounts[c], offsets[c + 1]);
    }

    /** Listed (full + partial) blocks over all stored heads. */
    public long listedBlocks() {
        return blocks.length;
    }

    public long fullBlockCount() {
        long n = 0;
        for (int c : fullCounts) {
            n += c;
        }
        return n;
    }

    public long partialBlockCount() {
        return listedBlocks() - fullBlockCount();
    }

    /** All block cells over the stored heads: heads · qBlocks · kBlocks. */
    public long totalBlocks() {
        return (long) heads * qBlocks * kBlocks;
    }

    public long emptyBlockCount() {
        return totalBlocks() - listedBlocks();
    }

    /** Listed blocks / all blocks. */
    public double density() {
        return (double) listedBlocks() / totalBlocks();
    }

    /** Bytes this layout holds (offsets, block lists, full counts). */
    public long sizeBytes() {
        return 4L * (offsets.length + blocks.length + fullCounts.length);
    }

    /**
     * The layout as a uint8 tensor of shape (heads, qBlocks, kBlocks): 1 where a block is listed. Meant
     * for files and tests; its size is the number of block cells, not tokens.
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
