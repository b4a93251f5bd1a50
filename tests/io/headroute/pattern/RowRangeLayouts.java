package io.headroute.pattern;

import java.util.Arrays;

/**
 * The first block-layout builder, kept as a test oracle: it walks every query row's key ranges and
 * counts, per key block, how many (row, key) pairs are allowed (cost rows × blocks touched). A block
 * is full when the count equals rows × its width. Shares only {@link Pattern#allowedKeys} with the
 * analytic builder.
 */
public final class RowRangeLayouts {
    private RowRangeLayouts() {}

    public static BlockLayout build(Pattern pattern, int heads, int qLen, int kvLen, int blockSize) {
        pattern.check(heads, qLen, kvLen);
        int layoutHeads = pattern.perHead() ? heads : 1;
        int qBlocks = (qLen + blockSize - 1) / blockSize;
        int kBlocks = (kvLen + blockSize - 1) / blockSize;
        int offsetShift = kvLen - qLen;
        int[][][] fullLists = new int[layoutHeads][qBlocks][];
        int[][][] partialLists = new int[layoutHeads][qBlocks][];

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
                fullLists[h][qb] = Arrays.copyOf(full, nFull);
                partialLists[h][qb] = Arrays.copyOf(partial, nPartial);
            }
        }
        return BlockLayout.fromLists(qLen, kvLen, blockSize, fullLists, partialLists);
    }
}
