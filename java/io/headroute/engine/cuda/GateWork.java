package io.headroute.engine.cuda;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.CudaStream;
import io.headroute.cuda.DeviceTensor;
import io.headroute.cuda.KernelModule;
import io.headroute.cuda.Resources;
import io.headroute.cuda.memory.DevicePool;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * Head skipping plans from a gate (B, L, H): the host mirror (the CPU twin of cuda-kernels/gate_work.cu,
 * computing exactly what its kernels compute) and the device builders for a gate already in device
 * memory.
 * <ul>
 *   <li>Block granularity: the (b, h, query tile) triples, ordered by b, h, tile, of the tiles of Br rows
 *       with any non-zero gate; the attention kernels compute exactly those tiles (a grid of the host plan's
 *       count, or on the maximal grid, whose blocks past the list's length, read from device memory, return at
 *       once).</li>
 *   <li>Token granularity: per (b, h) the rows with a non-zero gate, ascending (stable compaction), and
 *       (b, h, tile) triples over those compacted rows, ceil(count / Br) per (b, h); the kernels read Q
 *       and write O and lse through the row list, so causal and pattern rules see original positions.</li>
 * </ul>
 */
public final class GateWork {
    /** sizeof(GateWorkParams). */
    public static final int PARAMS_SIZE = 64;
    static final int OFFSET_SIZES = 40;
    static final int MODE_TILES = 0;
    static final int MODE_ROWS = 1;
    static final String MODULE = "gate_work";

    private GateWork() {}

    /**
     * Triples (b, h, t) of the query tiles of {@code tileRows} rows with any non-zero gate row.
     *
     * @param gate     B·L·H values, row-major (B, L, H)
     * @param batch    B
     * @param qLen     L
     * @param heads    H
     * @param tileRows Br
     * @return 3 ints per live tile, ordered by b, h, t
     */
    public static int[] activeTiles(float[] gate, int batch, int qLen, int heads, int tileRows) {
        int tiles = ceilDiv(qLen, tileRows);
        int[] out = new int[3 * batch * heads * tiles];
        int n = 0;
        for (int b = 0; b < batch; b++) {
            for (int h = 0; h < heads; h++) {
                for (int t = 0; t < tiles; t++) {
                    boolean live = false;
                    for (int i = t * tileRows; i < Math.min(qLen, (t + 1) * tileRows) && !live; i++) {
                        live = gate[(b * qLen + i) * heads + h] != 0f;
                    }
                    if (live) {
                        out[3 * n] = b;
                        out[3 * n + 1] = h;
                        out[3 * n + 2] = t;
                        n++;
                    }
                }
            }
        }
        return Arrays.copyOf(out, 3 * n);
    }

    /**
     * Stable compaction: {@code rows} (B, H, L) holds per (b, h) the rows with a non-zero gate, ascending,
     * in its first {@code counts[b·H + h]} entries (the rest 0 here; undefined on the device).
     *
     * @param rows   B·H·L row indices, (b, h) by (b, h)
     * @param counts B·H counts of kept rows
     */
    public record Compaction(int[] rows, int[] counts) {
        /** {@return the rows with a non-zero gate, all (b, h) together} */
        public long activeRows() {
            long n = 0;
            for (int c : counts) {
                n += c;
            }
            return n;
        }
    }

    /**
     * {@return the stable compaction of the gate's non-zero rows, per (b, h)}
     *
     * @param gate  B·L·H values, row-major (B, L, H)
     * @param batch B
     * @param qLen  L
     * @param heads H
     */
    public static Compaction compact(float[] gate, int batch, int qLen, int heads) {
        int[] rows = new int[batch * heads * qLen];
        int[] counts = new int[batch * heads];
        for (int b = 0; b < batch; b++) {
            for (int h = 0; h < heads; h++) {
                int n = 0;
                int base = (b * heads + h) * qLen;
                for (int i = 0; i < qLen; i++) {
                    if (gate[(b * qLen + i) * heads + h] != 0f) {
                        rows[base + n++] = i;
                    }
                }
                counts[b * heads + h] = n;
            }
        }
        return new Compaction(rows, counts);
    }

    /**
     * Triples (b, h, t) over compacted rows: ceil(counts[b·H + h] / tileRows) tiles per (b, h).
     *
     * @param counts   B·H counts of kept rows ({@link Compaction#counts})
     * @param batch    B
     * @param heads    H
     * @param tileRows Br
     * @return 3 ints per compacted tile, ordered by b, h, t
     */
    public static int[] compactedTiles(int[] counts, int batch, int heads, int tileRows) {
        int n = 0;
        for (int c : counts) {
            n += ceilDiv(c, tileRows);
        }
        int[] out = new int[3 * n];
        int e = 0;
        for (int b = 0; b < batch; b++) {
            for (int h = 0; h < heads; h++) {
                for (int t = 0; t < ceilDiv(counts[b * heads + h], tileRows); t++) {
                    out[e++] = b;
                    out[e++] = h;
                    out[e++] = t;
                }
            }
        }
        return out;
    }

    /**
     * The engine's choice of granularity, on the work the kernels execute: (query tile, key tile) pairs
     * visited by the compacted tiles against those of the block-granular list. Compaction when it visits
     * at most 3/4 of them (the row gather through an index costs a little per tile; below that ratio
     * the saved work pays for it with margin). Query tiles alone are not the work: a compacted tile's
     * rows span several original tiles, so it may visit more key tiles (the union of their sparse lists,
     * or under a causal mask the keys up to its last row). Returns true for compaction.
     *
     * @param compactedKeyTiles (query tile, key tile) pairs the compacted tiles visit
     * @param activeKeyTiles    pairs the block-granular list visits
     * @return whether compaction visits at most 3/4 of them
     */
    public static boolean compactionPays(long compactedKeyTiles, long activeKeyTiles) {
        return compactedKeyTiles * 4 <= activeKeyTiles * 3;
    }

    /**
     * Where a work list built on the device sits in a caller's workspace: byte offsets from its start,
     * each array 256-byte aligned — per-group counts (tile flags, or compacted row counts), compacted
     * rows (B, H, L) (compaction only: {@code rowsBytes} 0 otherwise), the (b, h, tile) triples (room for
     * every query tile), the one int holding their number, and the bytes it takes in all.
     *
     * @param counts    offset (or, once placed, address) of the per-group counts
     * @param rows      offset of the compacted rows; 0 once placed when there are none
     * @param rowsBytes bytes of the compacted rows, 0 for block granularity
     * @param list      offset of the triples
     * @param total     offset of the int holding the triples' number
     * @param bytes     the bytes the whole layout takes, a multiple of 256
     */
    public record Layout(long counts, long rows, long rowsBytes, long list, long total, long bytes) {
        /**
         * The layout of {@code compact} (token granularity) or block-granular work for tiles of {@code tileRows}.
         *
         * @param batch    B
         * @param qLen     L
         * @param heads    H
         * @param tileRows Br
         * @param compact  token granularity
         * @return offsets from the workspace's start
         * @throws IllegalArgumentException when the list would be too large for one launch
         */
        public static Layout of(int batch, int qLen, int heads, int tileRows, boolean compact) {
            Sizes z = Sizes.of(batch, qLen, heads, tileRows, compact);
            long rowsBytes = 4 * z.rows();
            long counts = 0;
            long rows = align(counts + 4 * Math.max(1, z.groups()));
            long list = align(rows + rowsBytes);
            long total = align(list + 12 * Math.max(1, z.tiles()));
            return new Layout(counts, rows, rowsBytes, list, total, align(total + 4));
        }

        /** This layout placed at device address {@code base}. */
        Layout at(long base) {
            return new Layout(base + counts, rowsBytes == 0 ? 0 : base + rows, rowsBytes, base + list, base + total, bytes);
        }
    }

    static long align(long bytes) {
        return (bytes + 255) / 256 * 256;
    }

    /** The values of an int32 tensor. */
    static int[] ints(Tensor t) {
        int[] out = new int[(int) t.numel()];
        t.bytes().order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(out);
        return out;
    }

    static int ceilDiv(int a, int b) {
        return (int) ((a + (long) b - 1) / b);
    }

    /** Encodes GateWorkParams, little-endian. */
    static byte[] encode(long gate, long counts, long rows, long list, long total, int batch, int qLen, int heads, int tileRows,
            int mode) {
        ByteBuffer b = ByteBuffer.allocate(PARAMS_SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(gate).putLong(counts).putLong(rows).putLong(list).putLong(total);
        b.putInt(batch).putInt(qLen).putInt(heads).putInt(tileRows).putInt(mode).putInt(0);
        return b.array();
    }

    /**
     * A work list in device memory: (b, h, tile) triples at {@link #list()}, their number at {@link #total()}
     * (an int the kernels read, AttnParams.tiles_total), and for compaction the row lists and counts. The number
     * reaches the host only through {@link #readCount} (one synchronization). Frees its buffers once on close.
     */
    public static final class DeviceWork implements AutoCloseable {
        private final DeviceTensor list;
        private final DeviceTensor rows;
        private final DeviceTensor counts;
        private final DeviceTensor total;
        private final long maxEntries;
        private final int batch;
        private final int qLen;
        private final int heads;
        private final int tileRows;
        private final long groups;
        private int count = -1;

        private DeviceWork(DeviceTensor list, DeviceTensor rows, DeviceTensor counts, DeviceTensor total, Sizes z, int batch,
                           int qLen, int heads, int tileRows) {
            this.list = list;
            this.rows = rows;
            this.counts = counts;
            this.total = total;
            this.maxEntries = z.tiles();
            this.groups = z.groups();
            this.batch = batch;
            this.qLen = qLen;
            this.heads = heads;
            this.tileRows = tileRows;
        }

        /**
         * Queues the building of the list on {@code stream} from a gate (B, L, H) at {@code gate}: no
         * synchronization; its length stays on the device ({@link #total()}) until {@link #readCount}.
         *
         * @param module the gate_work kernel module
         * @param stream the stream to enqueue on
         * @param gate   device address of the gate, B·L·H float32; not 0
         * @throws IllegalArgumentException when {@code gate} is 0
         */
        public void queue(KernelModule module, CudaStream stream, long gate) {
            if (gate == 0) {
                throw new IllegalArgumentException("a device work list needs a gate");
            }
            count = -1;
            launch(module, stream, encode(gate, counts.address(), rows == null ? 0 : rows.address(), list.address(),
                    total.address(), batch, qLen, heads, tileRows, rows != null ? MODE_ROWS : MODE_TILES), groups, batch, heads,
                    rows != null);
        }

        /**
         * Waits for {@code stream} (on which the list was built) and reads the number of (b, h, tile) triples
         * back, once; refuses a number outside 0 … the room the list has.
         *
         * @param stream the stream the list was built on
         * @return the number of triples
         * @throws IllegalStateException when the device reports an impossible number
         */
        public int readCount(CudaStream stream) {
            if (count < 0) {
                int n = ints(total.download(stream, null))[0];
                if (n < 0 || n > maxEntries) {
                    throw new IllegalStateException("gate work list reported " + n + " tiles, at most " + maxEntries + " exist");
                }
                count = n;
            }
            return count;
        }

        /**
         * {@return the number of (b, h, tile) triples, as {@link #readCount} read it}
         *
         * @throws IllegalStateException before {@link #readCount}
         */
        public int count() {
            if (count < 0) {
                throw new IllegalStateException("the work list's length has not been read back from the device");
            }
            return count;
        }

        /** {@return the device address of the triples} */
        public long list() {
            return list.address();
        }

        /** {@return the device address of the int holding the number of triples} */
        public long total() {
            return total.address();
        }

        /** {@return the device address of the compacted rows (B, H, L), int32; 0 for a block-granular list} */
        public long rows() {
            return rows == null ? 0 : rows.address();
        }

        /** {@return the device address of the compacted rows' counts (B, H), int32; 0 for a block-granular list} */
        public long counts() {
            return rows == null ? 0 : counts.address();
        }

        /** {@return the device bytes of the list, its length, the counts and the compacted rows} */
        public long bytes() {
            return list.byteSize() + total.byteSize() + counts.byteSize() + (rows == null ? 0 : rows.byteSize());
        }

        /**
         * {@return the triples, copied back (for tests)}
         *
         * @param stream the stream the list was built on (waited for)
         */
        public int[] downloadList(CudaStream stream) {
            return Arrays.copyOf(ints(list.download(stream, null)), 3 * readCount(stream));
        }

        /**
         * {@return the compacted rows (B, H, L), copied back (for tests); empty for a block-granular list}
         *
         * @param stream the stream the list was built on (waited for)
         */
        public int[] downloadRows(CudaStream stream) {
            return rows == null ? new int[0] : ints(rows.download(stream, null));
        }

        /**
         * {@return the compacted row counts, copied back (for tests); empty for a block-granular list}
         *
         * @param stream the stream the list was built on (waited for)
         */
        public int[] downloadCounts(CudaStream stream) {
            return rows == null ? new int[0] : ints(counts.download(stream, null));
        }

        @Override
        public void close() {
            Resources.closeAll(list, total, counts, rows);
        }
    }

    /** Queues the kernels that fill counts (and rows), then the list and its total, from encoded params. */
    private static void launch(KernelModule module, CudaStream stream, byte[] params, long groups, int batch, int heads,
            boolean compact) {
        if (compact) {
            module.launch("hr_gate_compact_rows", heads, batch, 1, 1024, 0, stream, params);
        } else {
            module.launch("hr_gate_tile_flags", (int) ((groups + 255) / 256), 1, 1, 256, 0, stream, params);
        }
        module.launch("hr_gate_work_list", 1, 1, 1, 1024, 0, stream, params);
    }

    /**
     * Queues on {@code stream} the building of a work list into the caller's workspace at {@code at}
     * ({@link Layout#of} placed there): no allocation, no synchronization, no read-back. The list's length
     * stays on the device at {@code at.total()}, for kernels that read AttnParams.tiles_total.
     */
    static void queue(KernelModule module, CudaStream stream, long gate, Layout at, int batch, int qLen, int heads,
            int tileRows, boolean compact) {
        if (gate == 0) {
            throw new IllegalArgumentException("a device work list needs a gate");
        }
        launch(module, stream, encode(gate, at.counts(), at.rows(), at.list(), at.total(), batch, qLen, heads, tileRows,
                compact ? MODE_ROWS : MODE_TILES), Sizes.of(batch, qLen, heads, tileRows, compact).groups(), batch, heads, compact);
    }

    /**
     * Element counts of a work list's arrays: (b, h, tile) triples room for every query tile, one count per
     * group (per tile, or per (b, h) for compaction) and the compacted rows (B, H, L; compaction only).
     */
    private record Sizes(long tiles, long groups, long rows) {
        static Sizes of(int batch, int qLen, int heads, int tileRows, boolean compact) {
            long tiles = (long) batch * heads * ceilDiv(qLen, tileRows);
            if (tiles * 3 > Integer.MAX_VALUE || (long) batch * heads * qLen > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("gate work list of " + tiles + " tiles is too large (B=" + batch + ", H="
                        + heads + ", L=" + qLen + ")");
            }
            return new Sizes(tiles, compact ? (long) batch * heads : tiles, compact ? (long) batch * heads * qLen : 0);
        }
    }

    /**
     * Device bytes {@link #build} holds at once, before the pool's rounding: the per-group counts, the
     * compacted rows (compaction only), room for every tile's triple, and their total.
     *
     * @param batch    B
     * @param qLen     L
     * @param heads    H
     * @param tileRows Br
     * @param compact  token granularity
     * @return bytes
     * @throws IllegalArgumentException when the list would be too large for one launch
     */
    public static long buildBytes(int batch, int qLen, int heads, int tileRows, boolean compact) {
        Sizes z = Sizes.of(batch, qLen, heads, tileRows, compact);
        return 4 * (z.groups() + z.rows() + 3 * Math.max(1, z.tiles()) + 1);
    }

    /**
     * Builds the block-granular (compact = false) or token-granular (compact = true) work list on the
     * device from a gate (B, L, H) at {@code gate}. Synchronizes once, reading back the 4-byte count.
     */
    static DeviceWork build(CudaDevice device, DevicePool pool, CudaStream stream, KernelModule module, long gate, int batch,
            int qLen, int heads, int tileRows, boolean compact) {
        DeviceWork w = allocate(device, pool, batch, qLen, heads, tileRows, compact);
        try {
            w.queue(module, stream, gate);
            w.readCount(stream);
            return w;
        } catch (RuntimeException e) {
            throw Resources.closeAfter(e, w);
        }
    }

    /**
     * Allocates a work list's arrays from the pool (tag "work"), nothing queued: {@link DeviceWork#queue} builds the
     * list (so that a timed call allocates before its timer starts).
     */
    static DeviceWork allocate(CudaDevice device, DevicePool pool, int batch, int qLen, int heads, int tileRows,
            boolean compact) {
        Sizes z = Sizes.of(batch, qLen, heads, tileRows, compact);
        DeviceTensor counts = null;
        DeviceTensor rows = null;
        DeviceTensor list = null;
        DeviceTensor total = null;
        try {
            counts = DeviceTensor.allocate(device, pool, DType.I32, "work", z.groups());
            rows = compact ? DeviceTensor.allocate(device, pool, DType.I32, "work", batch, heads, qLen) : null;
            list = DeviceTensor.allocate(device, pool, DType.I32, "work", Math.max(1, z.tiles()), 3);
            total = DeviceTensor.allocate(device, pool, DType.I32, "work", 1);
            return new DeviceWork(list, rows, counts, total, z, batch, qLen, heads, tileRows);
        } catch (RuntimeException e) {
            throw Resources.closeAfter(e, counts, rows, list, total);
        }
    }
}
