package io.headroute.engine.cuda;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The bytes of {@code struct AttnParams} (cuda-kernels/attention_params.cuh), the by-value argument of
 * every attention kernel. Field order and offsets match the CUDA struct, whose static_asserts pin
 * them: 14 pointers, 12 int64 strides (in elements), 11 int32/float fields and 4 bytes of tail padding
 * (written as zero).
 */
public final class AttentionParams {
    /** sizeof(AttnParams). */
    public static final int SIZE = 256;
    static final int OFFSET_SPARSE = 56;
    static final int OFFSET_ROWS = 88;
    static final int OFFSET_TILES_TOTAL = 104;
    static final int OFFSET_STRIDES = 112;
    static final int OFFSET_SIZES = 208;
    static final int OFFSET_SCALE = 240;
    static final int OFFSET_LAYOUT_HEADS = 248;

    private AttentionParams() {}

    /**
     * Device addresses; 0 for the nullable ones (lse, gate, tiles).
     *
     * @param q     queries
     * @param k     keys
     * @param v     values
     * @param o     the output
     * @param lse   the (B, H, L) float32 lse output, or 0
     * @param gate  the (B, L, H) float32 gate, or 0
     * @param tiles the work list of (b, h, tile) triples, or 0 for the whole grid
     */
    public record Pointers(long q, long k, long v, long o, long lse, long gate, long tiles) {}

    /**
     * The block-sparse key lists of the sparse kernels, one per (layout head, query tile) cell (see
     * {@link SparseTiles}); {@link #NONE} for the dense kernels.
     *
     * @param offsets     device address of the CSR offsets into {@code tiles}, cells + 1 (int32)
     * @param tiles       device address of each cell's key tiles, full ones then partial ones (int32)
     * @param fullBefore  device address of the running count of full tiles before each cell, cells + 1 (int32): a
     *                    cell's partial tiles' masks are found from it
     * @param masks       device address of the partial tiles' allowed-pair bits, Br 64-bit words per partial tile
     * @param layoutHeads the layout's heads: 1 (shared by all heads) or H
     */
    public record Sparse(long offsets, long tiles, long fullBefore, long masks, int layoutHeads) {
        /** No layout: the dense kernels' value (null pointers, one head). */
        public static final Sparse NONE = new Sparse(0, 0, 0, 0, 1);
    }

    /**
     * Compacted query rows per (b, h) and their counts (see {@link GateWork}); {@link #NONE} for plain rows.
     *
     * @param rows   device address of the compacted row indices per (b, h) (int32)
     * @param counts device address of each (b, h)'s count of rows (int32)
     */
    public record Rows(long rows, long counts) {
        /** Plain rows: null pointers. */
        public static final Rows NONE = new Rows(0, 0);
    }

    /**
     * Row-major strides in elements of q (B, H, L, D), k and v (B, Hkv, S, D), o (B, H, L, D):
     * {batch, head, row} each.
     *
     * @param q q's strides, three values
     * @param k k's strides, three values
     * @param v v's strides, three values
     * @param o o's strides, three values
     */
    public record Strides(long[] q, long[] k, long[] v, long[] o) {
        /**
         * {@return the strides of contiguous tensors}: q and o {H·L·D, L·D, D}, k and v {Hkv·S·D, S·D, D}; new arrays
         *
         * @param heads   H
         * @param kvHeads Hkv
         * @param qLen    L
         * @param kvLen   S
         * @param d       D
         */
        public static Strides contiguous(int heads, int kvHeads, int qLen, int kvLen, int d) {
            long[] q = {(long) heads * qLen * d, (long) qLen * d, d};
            long[] kv = {(long) kvHeads * kvLen * d, (long) kvLen * d, d};
            return new Strides(q, kv.clone(), kv.clone(), q.clone());
        }
    }

    /**
     * Encodes the struct of a dense kernel with plain rows, little-endian.
     *
     * @param p        the device addresses
     * @param s        the strides in elements
     * @param batch    B
     * @param heads    H
     * @param kvHeads  Hkv
     * @param qLen     L
     * @param kvLen    S
     * @param headDim  D
     * @param causal   whether the kernel applies j ≤ p itself
     * @param numTiles the work list's length, or 0 without one
     * @param scale    the softmax scale (its log2(e) multiple is stored too)
     * @return {@value #SIZE} bytes
     */
    public static byte[] encode(Pointers p, Strides s, int batch, int heads, int kvHeads, int qLen, int kvLen, int headDim,
            boolean causal, int numTiles, float scale) {
        return encode(p, Sparse.NONE, Rows.NONE, s, batch, heads, kvHeads, qLen, kvLen, headDim, causal, numTiles, scale);
    }

    /**
     * Encodes the struct, little-endian, with the work list's length given by the host ({@code numTiles}).
     *
     * @param p        the device addresses
     * @param sp       the sparse layout, or {@link Sparse#NONE}
     * @param rows     the compacted rows, or {@link Rows#NONE}
     * @param s        the strides in elements
     * @param batch    B
     * @param heads    H
     * @param kvHeads  Hkv
     * @param qLen     L
     * @param kvLen    S
     * @param headDim  D
     * @param causal   whether the kernel applies j ≤ p itself
     * @param numTiles the work list's length, or 0 without one
     * @param scale    the softmax scale
     * @return {@value #SIZE} bytes
     */
    public static byte[] encode(Pointers p, Sparse sp, Rows rows, Strides s, int batch, int heads, int kvHeads, int qLen,
            int kvLen, int headDim, boolean causal, int numTiles, float scale) {
        return encode(p, sp, rows, 0, s, batch, heads, kvHeads, qLen, kvLen, headDim, causal, numTiles, scale);
    }

    /**
     * Encodes the struct, little-endian. {@code tilesTotal}: device address of an int holding the work
     * list's length (a list built on the device; blocks past it exit), or 0 to use {@code numTiles}.
     *
     * @param p          the device addresses
     * @param sp         the sparse layout, or {@link Sparse#NONE}
     * @param rows       the compacted rows, or {@link Rows#NONE}
     * @param tilesTotal device address of the list's length, or 0
     * @param s          the strides in elements, three per tensor
     * @param batch      B
     * @param heads      H
     * @param kvHeads    Hkv
     * @param qLen       L
     * @param kvLen      S
     * @param headDim    D
     * @param causal     whether the kernel applies j ≤ p itself
     * @param numTiles   the work list's length, or 0 without one
     * @param scale      the softmax scale
     * @return {@value #SIZE} bytes
     * @throws IllegalArgumentException when a stride array does not hold three values
     */
    public static byte[] encode(Pointers p, Sparse sp, Rows rows, long tilesTotal, Strides s, int batch, int heads,
            int kvHeads, int qLen, int kvLen, int headDim, boolean causal, int numTiles, float scale) {
        ByteBuffer b = ByteBuffer.allocate(SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(p.q()).putLong(p.k()).putLong(p.v()).putLong(p.o()).putLong(p.lse()).putLong(p.gate()).putLong(p.tiles());
        b.putLong(sp.offsets()).putLong(sp.tiles()).putLong(sp.fullBefore()).putLong(sp.masks());
        b.putLong(rows.rows()).putLong(rows.counts()).putLong(tilesTotal);
        for (long[] st : new long[][] {s.q(), s.k(), s.v(), s.o()}) {
            if (st.length != 3) {
                throw new IllegalArgumentException("strides are {batch, head, row}, got " + st.length + " values");
            }
            b.putLong(st[0]).putLong(st[1]).putLong(st[2]);
        }
        b.putInt(batch).putInt(heads).putInt(kvHeads).putInt(qLen).putInt(kvLen).putInt(headDim);
        b.putInt(causal ? 1 : 0).putInt(numTiles);
        b.putFloat(scale).putFloat((float) (scale * (1.0 / Math.log(2.0))));
        b.putInt(sp.layoutHeads()).putInt(0); // tail padding
        if (b.position() != SIZE) {
            throw new IllegalStateException("AttnParams encoded to " + b.position() + " bytes, expected " + SIZE);
        }
        return b.array();
    }
}
