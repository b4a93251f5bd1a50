package io.headroute.engine.cuda;

import java.util.Arrays;

/**
 * The four int32/int64 CSR arrays the block-sparse kernels read (AttnParams kv_offsets, kv_tiles,
 * kv_full_before, kv_masks), indexed by cell: cell c lists key tiles tiles[offsets[c] … offsets[c+1]),
 * its full ones first (fullBefore[c+1] − fullBefore[c] of them), then its partial ones, each partial
 * entry with Br mask words (bit j of word r: row r may attend key j of the tile) at
 * masks[(entry − fullBefore[c+1]) · Br …]. What a cell is belongs to the owner: (layout head, query
 * tile) for {@link SparseTiles}, a launched block for {@link CompactedSparseTiles}.
 */
final class TileLists {
    private final int br;
    private final int[] offsets;
    private final int[] tiles;
    private final int[] fullBefore;
    private final long[] masks;

    TileLists(int br, int[] offsets, int[] tiles, int[] fullBefore, long[] masks) {
        this.br = br;
        this.offsets = offsets;
        this.tiles = tiles;
        this.fullBefore = fullBefore;
        this.masks = masks;
    }

    /** Key tiles cell {@code c} visits: full ones and partial ones. */
    int listed(int c) {
        return offsets[c + 1] - offsets[c];
    }

    private int fullCount(int c) {
        return fullBefore[c + 1] - fullBefore[c];
    }

    /** Full key tiles of cell {@code c}, ascending. */
    int[] full(int c) {
        return Arrays.copyOfRange(tiles, offsets[c], offsets[c] + fullCount(c));
    }

    /** Partial key tiles of cell {@code c}, ascending. */
    int[] partial(int c) {
        return Arrays.copyOfRange(tiles, offsets[c] + fullCount(c), offsets[c + 1]);
    }

    /** The Br mask words of partial tile {@code k} of cell {@code c}. */
    long[] mask(int c, int k) {
        int t = offsets[c] + fullCount(c) + k;
        if (k < 0 || t >= offsets[c + 1]) {
            throw new IndexOutOfBoundsException("partial tile " + k + " of cell " + c);
        }
        int m = (t - fullBefore[c + 1]) * br;
        return Arrays.copyOfRange(masks, m, m + br);
    }

    /** Listed tiles over all cells. */
    long listedTiles() {
        return tiles.length;
    }

    int[] offsets() {
        return offsets;
    }

    int[] tiles() {
        return tiles;
    }

    int[] fullBefore() {
        return fullBefore;
    }

    long[] masks() {
        return masks;
    }

    /** Partial entries over all cells. */
    int partialCount() {
        return masks.length / br;
    }

    /** Bytes of the four arrays as uploaded (an empty array still takes one element): O(listed tiles + cells). */
    long deviceBytes() {
        return 4L * (Math.max(1, offsets.length) + Math.max(1, tiles.length) + Math.max(1, fullBefore.length))
                + 8L * Math.max(1, masks.length);
    }
}
