package io.headroute.engine.cuda;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.CudaStream;
import io.headroute.cuda.DeviceTensor;
import io.headroute.cuda.PinnedBuffer;
import io.headroute.cuda.Resources;
import io.headroute.cuda.memory.DevicePool;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The four {@link TileLists} arrays on the device, copied on a stream: in buffers of their own from the
 * pool (tag "layout"; {@link #upload}) or inside a workspace someone else owns ({@link Pinned#into}). An
 * empty array still takes one element, so every pointer is valid.
 */
final class DeviceTileLists implements AutoCloseable {
    private final DeviceTensor offsets;
    private final DeviceTensor tiles;
    private final DeviceTensor fullBefore;
    private final DeviceTensor masks;

    private DeviceTileLists(DeviceTensor[] d) {
        this.offsets = d[0];
        this.tiles = d[1];
        this.fullBefore = d[2];
        this.masks = d[3];
    }

    /** The arrays as host tensors, in AttnParams order. */
    private static Tensor[] host(TileLists l) {
        long[] m = l.masks().length == 0 ? new long[1] : l.masks();
        ByteBuffer bb = ByteBuffer.allocate(8 * m.length).order(ByteOrder.LITTLE_ENDIAN);
        bb.asLongBuffer().put(m);
        return new Tensor[] {ints(l.offsets()), ints(l.tiles()), ints(l.fullBefore()),
            Tensor.of(DType.I64, new long[] {m.length}, bb)};
    }

    private static Tensor ints(int[] a) {
        int[] v = a.length == 0 ? new int[1] : a;
        return Tensor.ofInts(v, v.length);
    }

    /** Uploads {@code lists} into new pool buffers tagged "layout"; frees what it took if a copy fails. */
    static DeviceTileLists upload(CudaDevice device, DevicePool pool, CudaStream stream, TileLists lists) {
        Tensor[] h = host(lists);
        DeviceTensor[] d = new DeviceTensor[4];
        try {
            for (int i = 0; i < 4; i++) {
                d[i] = DeviceTensor.upload(device, pool, stream, null, h[i], h[i].dtype(), "layout");
            }
            return new DeviceTileLists(d);
        } catch (RuntimeException e) {
            for (DeviceTensor x : d) {
                if (x != null) {
                    x.close();
                }
            }
            throw e;
        }
    }

    /** Offsets of the four arrays in a workspace (each 256-byte aligned), and the total (index 4). */
    static long[] workspaceLayout(TileLists lists) {
        long[] sizes = {4L * Math.max(1, lists.offsets().length), 4L * Math.max(1, lists.tiles().length),
            4L * Math.max(1, lists.fullBefore().length), 8L * Math.max(1, lists.masks().length)};
        long[] at = new long[5];
        long off = 0;
        for (int i = 0; i < 4; i++) {
            at[i] = off;
            off += (sizes[i] + 255) / 256 * 256;
        }
        at[4] = off;
        return at;
    }

    /**
     * A layout's four arrays in one page-locked host buffer, each where {@link #workspaceLayout} puts it in a
     * workspace: {@link #into} copies them there with one asynchronous copy that nothing waits for. The owner
     * closes it once no copy from it is queued.
     */
    static final class Pinned implements AutoCloseable {
        private static final DType[] TYPES = {DType.I32, DType.I32, DType.I32, DType.I64};
        private final PinnedBuffer buffer;
        private final long[] at;
        private final long[] lengths = new long[4];

        Pinned(CudaDevice device, TileLists lists) {
            Tensor[] h = host(lists);
            this.at = workspaceLayout(lists);
            this.buffer = new PinnedBuffer(device, at[4]);
            try {
                ByteBuffer b = buffer.buffer();
                for (int i = 0; i < 4; i++) {
                    b.position((int) at[i]);
                    b.put(h[i].bytes().duplicate());
                    lengths[i] = h[i].numel();
                }
            } catch (RuntimeException e) {
                throw Resources.closeAfter(e, buffer);
            }
        }

        /**
         * Queues the copy into the workspace at {@code workspace} on {@code stream} and returns views of the
         * arrays there; closing them frees nothing.
         */
        DeviceTileLists into(CudaDevice device, long workspace, CudaStream stream) {
            buffer.copyToDevice(workspace, at[4], stream);
            DeviceTensor[] d = new DeviceTensor[4];
            for (int i = 0; i < 4; i++) {
                d[i] = DeviceTensor.borrow(device, workspace + at[i], TYPES[i], lengths[i]);
            }
            return new DeviceTileLists(d);
        }

        @Override
        public void close() {
            buffer.close();
        }
    }

    /** The kernels' view: lists per (layout head, query tile) cell. */
    AttentionParams.Sparse params(int layoutHeads) {
        return new AttentionParams.Sparse(offsets.address(), tiles.address(), fullBefore.address(), masks.address(),
                layoutHeads);
    }

    /** Bytes the pool holds for the four arrays (0 inside a borrowed workspace). */
    long poolBytes() {
        return offsets.poolBytes() + tiles.poolBytes() + fullBefore.poolBytes() + masks.poolBytes();
    }

    @Override
    public void close() {
        offsets.close();
        tiles.close();
        fullBefore.close();
        masks.close();
    }
}
