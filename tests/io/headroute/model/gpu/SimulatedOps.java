package io.headroute.model.gpu;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.pattern.Pattern;
import io.headroute.routing.CpuHeadRouter;
import io.headroute.routing.RouterConfig;
import io.headroute.tensor.DType;
import io.headroute.tensor.HalfFloats;
import io.headroute.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link BlockOps} for tests, on a {@link SimulatedDevice}. Operations queue on two lanes like CUDA
 * streams, markers and waits order them, and the queues run only at synchronization points, in an
 * order chosen to expose missing waits: {@link Policy#COPY_FIRST} runs the copy lane as far ahead as
 * its waits allow, {@link Policy#COMPUTE_FIRST} the compute lane. With {@code execute} the operations
 * compute their function on the simulated memory (attention by a CPU engine through the call's
 * strides); without, they are no-ops and only allocation and ordering are exercised.
 */
final class SimulatedOps implements BlockOps {
    enum Policy { COPY_FIRST, COMPUTE_FIRST }

    private final SimulatedDevice mem;
    private final AttentionEngine engine;
    private final Policy policy;
    private final List<ArrayDeque<Task>> lanes = List.of(new ArrayDeque<>(), new ArrayDeque<>());
    final List<String> trace = new ArrayList<>();
    int copyUploads;
    int attentionCalls;
    int routerCalls;
    private CpuHeadRouter router;
    int markersOpen;
    int pinnedOpen;
    /** When set, every attention call is refused with this message (an attention that cannot run a pattern). */
    String refuse;
    /** When set, every router is refused with this message (a device whose router cannot run it). */
    String refuseRouter;
    /** When set, downloads fail with this message (a copy that fails mid-pass). */
    String failDownload;
    /** When set, waits for the lanes fail with this message after draining them (an error the device keeps). */
    String failSynchronize;
    /**
     * When set, attention workspaces are what the GPU engine asks for (sparse layouts and the work lists
     * gated calls build on the device), and each gated call writes its work list's length where the
     * engine's kernels would, computed by the engine's host mirror of gate_work.cu from the gate in
     * simulated memory ({@link #attentionWork} reads it back). Flash and sparse only.
     */
    boolean deviceWork;

    private record Task(String name, Runnable body, SimMarker waitsFor, SimMarker marks) {}

    private final class SimMarker implements Marker {
        boolean done;
        boolean closed;

        SimMarker() {
            markersOpen++;
        }

        @Override
        public void close() {
            if (!closed) {
                closed = true;
                markersOpen--;
            }
        }
    }

    /** @param engine computes attention, or null for no-op operations */
    SimulatedOps(SimulatedDevice mem, AttentionEngine engine, Policy policy) {
        this.mem = mem;
        this.engine = engine;
        this.policy = policy;
    }

    private void enqueue(Lane lane, String name, Runnable body) {
        lanes.get(lane.ordinal()).add(new Task(name, engine == null ? () -> {} : body, null, null));
    }

    /** A task that runs even with no-op operations (it models what the device itself writes). */
    private void enqueueAlways(Lane lane, String name, Runnable body) {
        lanes.get(lane.ordinal()).add(new Task(name, body, null, null));
    }

    private void drain() {
        Lane[] order = policy == Policy.COPY_FIRST ? new Lane[] {Lane.COPY, Lane.COMPUTE} : new Lane[] {Lane.COMPUTE, Lane.COPY};
        boolean progress = true;
        while (progress) {
            progress = false;
            for (Lane l : order) {
                Task t = lanes.get(l.ordinal()).peek();
                if (t != null && (t.waitsFor == null || t.waitsFor.done)) {
                    lanes.get(l.ordinal()).poll();
                    t.body.run();
                    if (t.marks != null) {
                        t.marks.done = true;
                    }
                    trace.add(l + " " + t.name);
                    progress = true;
                    break; // back to the preferred lane
                }
            }
        }
        if (!lanes.get(0).isEmpty() || !lanes.get(1).isEmpty()) {
            throw new AssertionError("lanes deadlocked: compute waits at " + lanes.get(0).peek() + ", copy at " + lanes.get(1).peek());
        }
    }

    @Override
    public HostBuffer pinned(long bytes) {
        ByteBuffer b = ByteBuffer.allocateDirect(Math.toIntExact(bytes)).order(ByteOrder.LITTLE_ENDIAN);
        pinnedOpen++;
        return new HostBuffer() {
            boolean closed;

            @Override
            public ByteBuffer buffer() {
                return b.duplicate().order(ByteOrder.LITTLE_ENDIAN).clear();
            }

            @Override
            public void close() {
                if (!closed) {
                    closed = true;
                    pinnedOpen--;
                }
            }
        };
    }

    @Override
    public void upload(ByteBuffer src, long dst, Lane lane) {
        ByteBuffer copy = ByteBuffer.allocate(src.remaining());
        copy.put(src.duplicate()).flip();
        if (lane == Lane.COPY) {
            copyUploads++;
        }
        mem.at(dst, copy.remaining()); // bounds check now
        enqueue(lane, "upload " + copy.remaining() + " B", () -> mem.at(dst, copy.remaining()).put(copy.duplicate()));
    }

    @Override
    public void download(long src, ByteBuffer dst) {
        drain();
        if (failDownload != null) {
            throw new IllegalStateException(failDownload);
        }
        ByteBuffer from = mem.at(src, dst.remaining());
        from.limit(from.position() + dst.remaining());
        dst.duplicate().put(from);
    }

    private static float read(ByteBuffer b, long index, DType dt) {
        int at = b.position() + Math.toIntExact(index * dt.byteSize());
        return switch (dt) {
            case F32 -> b.getFloat(at);
            case F16 -> HalfFloats.f16ToFloat(b.getShort(at));
            default -> HalfFloats.bf16ToFloat(b.getShort(at));
        };
    }

    private static void write(ByteBuffer b, long index, DType dt, float v) {
        int at = b.position() + Math.toIntExact(index * dt.byteSize());
        switch (dt) {
            case F32 -> b.putFloat(at, v);
            case F16 -> b.putShort(at, HalfFloats.floatToF16(v));
            default -> b.putShort(at, HalfFloats.floatToBf16(v));
        }
    }

    @Override
    public void rmsNorm(long x, long gamma, long out, long rows, int d, float eps, DType dt) {
        long n = rows * d * dt.byteSize();
        mem.at(x, n);
        mem.at(out, n);
        mem.at(gamma, (long) d * dt.byteSize());
        enqueue(Lane.COMPUTE, "rmsnorm", () -> {
            ByteBuffer xb = mem.at(x, n);
            ByteBuffer ob = mem.at(out, n);
            ByteBuffer gb = mem.at(gamma, (long) d * dt.byteSize());
            for (long r = 0; r < rows; r++) {
                float ss = 0f;
                for (int c = 0; c < d; c++) {
                    float v = read(xb, r * d + c, dt);
                    ss += v * v;
                }
                float inv = (float) (1.0 / Math.sqrt(ss / d + eps));
                for (int c = 0; c < d; c++) {
                    write(ob, r * d + c, dt, read(xb, r * d + c, dt) * inv * read(gb, c, dt));
                }
            }
        });
    }

    @Override
    public void rope(long x, long cosSin, long rowStride, int batch, int len, int heads, int headDim, DType dt) {
        long rows = (long) batch * len;
        mem.at(x, ((rows - 1) * rowStride + (long) heads * headDim) * dt.byteSize());
        mem.at(cosSin, 4L * len * headDim);
        enqueue(Lane.COMPUTE, "rope", () -> {
            ByteBuffer xb = mem.at(x, ((rows - 1) * rowStride + (long) heads * headDim) * dt.byteSize());
            ByteBuffer cs = mem.at(cosSin, 4L * len * headDim);
            int half = headDim / 2;
            for (long bt = 0; bt < rows; bt++) {
                int t = (int) (bt % len);
                for (int h = 0; h < heads; h++) {
                    long base = bt * rowStride + (long) h * headDim;
                    for (int i = 0; i < half; i++) {
                        float c = cs.getFloat(cs.position() + 8 * (t * half + i));
                        float s = cs.getFloat(cs.position() + 8 * (t * half + i) + 4);
                        float x1 = read(xb, base + i, dt);
                        float x2 = read(xb, base + i + half, dt);
                        write(xb, base + i, dt, x1 * c - x2 * s);
                        write(xb, base + i + half, dt, x2 * c + x1 * s);
                    }
                }
            }
        });
    }

    @Override
    public void gemm(long a, long w, long c, int rows, int k, int n, float beta, DType dt) {
        long es = dt.byteSize();
        mem.at(a, (long) rows * k * es);
        mem.at(w, (long) k * n * es);
        mem.at(c, (long) rows * n * es);
        enqueue(Lane.COMPUTE, "gemm " + rows + "x" + k + "x" + n, () -> {
            ByteBuffer ab = mem.at(a, (long) rows * k * es);
            ByteBuffer wb = mem.at(w, (long) k * n * es);
            ByteBuffer cb = mem.at(c, (long) rows * n * es);
            float[] wf = new float[k * n];
            for (int i = 0; i < wf.length; i++) {
                wf[i] = read(wb, i, dt);
            }
            float[] acc = new float[n];
            for (int i = 0; i < rows; i++) {
                java.util.Arrays.fill(acc, 0f);
                for (int p = 0; p < k; p++) {
                    float av = read(ab, (long) i * k + p, dt);
                    for (int j = 0; j < n; j++) {
                        acc[j] += av * wf[p * n + j];
                    }
                }
                for (int j = 0; j < n; j++) {
                    float old = beta == 0f ? 0f : beta * read(cb, (long) i * n + j, dt);
                    write(cb, (long) i * n + j, dt, acc[j] + old);
                }
            }
        });
    }

    /** The router by its CPU twin ({@link CpuHeadRouter}) on the simulated memory; the logits are Z = X·Wr. */
    @Override
    public void route(long x, long wr, long logits, long gate, int batch, int len, int d, RouterConfig config, DType dt) {
        routerCalls++;
        long rows = (long) batch * len;
        int hr = config.routedHeads();
        mem.at(x, rows * d * dt.byteSize());
        mem.at(wr, (long) d * hr * dt.byteSize());
        mem.at(logits, 4L * rows * hr);
        mem.at(gate, 4L * rows * config.heads());
        enqueue(Lane.COMPUTE, "route", () -> {
            ByteBuffer xb = mem.at(x, rows * d * dt.byteSize());
            ByteBuffer wb = mem.at(wr, (long) d * hr * dt.byteSize());
            float[] xs = new float[Math.toIntExact(rows * d)];
            for (int i = 0; i < xs.length; i++) {
                xs[i] = read(xb, i, dt);
            }
            float[] ws = new float[d * hr];
            for (int i = 0; i < ws.length; i++) {
                ws[i] = read(wb, i, dt);
            }
            ByteBuffer zb = mem.at(logits, 4L * rows * hr);
            for (int r = 0; r < rows; r++) {
                for (int j = 0; j < hr; j++) {
                    float z = 0f;
                    for (int c = 0; c < d; c++) {
                        z += xs[r * d + c] * ws[c * hr + j];
                    }
                    zb.putFloat(zb.position() + 4 * (r * hr + j), z);
                }
            }
            if (router == null) {
                router = new CpuHeadRouter(1);
            }
            float[] g = router.route(Tensor.ofFloats(dt, xs, batch, len, d), Tensor.ofFloats(dt, ws, d, hr), config, dt)
                    .gate().toFloatArray();
            ByteBuffer gb = mem.at(gate, 4L * g.length);
            for (int i = 0; i < g.length; i++) {
                gb.putFloat(gb.position() + 4 * i, g[i]);
            }
        });
    }

    @Override
    public void checkRouter(RouterConfig config) {
        if (refuseRouter != null) {
            throw new UnsupportedOperationException(refuseRouter);
        }
    }

    @Override
    public void gatherColumns(long src, int srcCols, long dst, int[] cols, long rows) {
        mem.at(src, 4L * rows * srcCols);
        mem.at(dst, 4L * rows * cols.length);
        int[] cs = cols.clone();
        enqueue(Lane.COMPUTE, "gather gate columns", () -> {
            ByteBuffer sb = mem.at(src, 4L * rows * srcCols);
            ByteBuffer db = mem.at(dst, 4L * rows * cs.length);
            for (int r = 0; r < rows; r++) {
                for (int i = 0; i < cs.length; i++) {
                    db.putFloat(db.position() + 4 * (r * cs.length + i), sb.getFloat(sb.position() + 4 * (r * srcCols + cs[i])));
                }
            }
        });
    }

    @Override
    public long attentionWorkspace(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, int gateBlock) {
        return deviceWork
                ? CudaAttentionEngine.deviceWorkspaceBytes(shape, dtype, algorithm, pattern, EngineAttentionProvider.BLOCK_SIZE, gateBlock)
                : MemoryPlan.Workspace.STANDARD.bytes(shape, dtype, algorithm, pattern, gateBlock);
    }

    private static AttentionShape shape(DeviceAttentionCall c) {
        return new AttentionShape(c.batch(), c.heads(), c.kvHeads(), c.qLen(), c.kvLen(), c.headDim());
    }

    /** Offset of the call's work-list length in its workspace, -1 when it builds none. */
    private long workTotalOffset(DeviceAttentionCall c) {
        return !deviceWork || c.gate() == 0 ? -1 : CudaAttentionEngine.deviceWorkTotalOffset(shape(c), c.dtype(), c.algorithm(),
                c.pattern(), EngineAttentionProvider.BLOCK_SIZE, c.gateBlock());
    }

    @Override
    public AttentionWork attentionWork(DeviceAttentionCall c) {
        drain();
        long grid = CudaAttentionEngine.gridTiles(shape(c), c.dtype(), c.algorithm(), c.pattern());
        long off = workTotalOffset(c);
        if (off < 0) {
            return new AttentionWork(grid, grid);
        }
        ByteBuffer t = mem.at(c.workspace() + off, 4);
        return new AttentionWork(t.getInt(t.position()), grid);
    }

    @Override
    public void checkAttention(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern) {
        if (refuse != null) {
            throw new UnsupportedOperationException(refuse);
        }
    }

    /** Elements of a strided (B, H, L, D) view, contiguous. */
    private float[] gather(long base, long[] st, int b, int h, int len, int d, DType dt) {
        float[] out = new float[b * h * len * d];
        long span = ((b - 1) * st[0] + (h - 1) * st[1] + (len - 1) * st[2] + d) * dt.byteSize();
        ByteBuffer buf = mem.at(base, span);
        int i = 0;
        for (int bi = 0; bi < b; bi++) {
            for (int hi = 0; hi < h; hi++) {
                for (int t = 0; t < len; t++) {
                    for (int e = 0; e < d; e++) {
                        out[i++] = read(buf, bi * st[0] + hi * st[1] + t * st[2] + e, dt);
                    }
                }
            }
        }
        return out;
    }

    @Override
    public void attention(DeviceAttentionCall c) {
        attentionCalls++;
        if (c.workspaceBytes() > 0) {
            mem.at(c.workspace(), c.workspaceBytes());
        }
        long off = workTotalOffset(c);
        if (off >= 0) {
            if (off + 4 > c.workspaceBytes()) {
                throw new AssertionError("the work list's length at " + off + " lies outside the call's " + c.workspaceBytes()
                        + "-byte workspace");
            }
            mem.at(c.gate(), 4L * c.batch() * c.qLen() * c.heads());
            enqueueAlways(Lane.COMPUTE, "gate work list", () -> {
                int n = c.batch() * c.qLen() * c.heads();
                ByteBuffer gb = mem.at(c.gate(), 4L * n);
                float[] g = new float[n];
                for (int i = 0; i < n; i++) {
                    g[i] = gb.getFloat(gb.position() + 4 * i);
                }
                int[] list = CudaAttentionEngine.deviceWorkList(g, shape(c), c.dtype(), c.algorithm(), c.pattern(), c.gateBlock());
                ByteBuffer t = mem.at(c.workspace() + off, 4);
                t.putInt(t.position(), list.length / 3);
            });
        }
        enqueue(Lane.COMPUTE, "attention " + c.heads() + "/" + c.kvHeads() + " heads", () -> {
            DType dt = c.dtype();
            long[] q4 = {c.batch(), c.heads(), c.qLen(), c.headDim()};
            long[] kv4 = {c.batch(), c.kvHeads(), c.kvLen(), c.headDim()};
            Tensor q = Tensor.ofFloats(dt, gather(c.q(), c.qStrides(), c.batch(), c.heads(), c.qLen(), c.headDim(), dt), q4);
            Tensor k = Tensor.ofFloats(dt, gather(c.k(), c.kStrides(), c.batch(), c.kvHeads(), c.kvLen(), c.headDim(), dt), kv4);
            Tensor v = Tensor.ofFloats(dt, gather(c.v(), c.vStrides(), c.batch(), c.kvHeads(), c.kvLen(), c.headDim(), dt), kv4);
            Tensor gate = null;
            if (c.gate() != 0) {
                int n = c.batch() * c.qLen() * c.heads();
                ByteBuffer gb = mem.at(c.gate(), 4L * n);
                float[] g = new float[n];
                for (int i = 0; i < n; i++) {
                    g[i] = gb.getFloat(gb.position() + 4 * i);
                }
                gate = Tensor.ofFloats(g, c.batch(), c.qLen(), c.heads());
            }
            float[] o = engine.run(AttentionRequest.builder(q, k, v).gate(gate).pattern(c.pattern()).scale(c.scale())
                    .dtype(dt).algorithm(c.algorithm()).build()).o().toFloatArray();
            long[] st = c.oStrides();
            long span = ((c.batch() - 1) * st[0] + (c.heads() - 1) * st[1] + (c.qLen() - 1) * st[2] + c.headDim())
                    * dt.byteSize();
            ByteBuffer ob = mem.at(c.o(), span);
            int i = 0;
            for (int bi = 0; bi < c.batch(); bi++) {
                for (int hi = 0; hi < c.heads(); hi++) {
                    for (int t = 0; t < c.qLen(); t++) {
                        for (int e = 0; e < c.headDim(); e++) {
                            write(ob, bi * st[0] + hi * st[1] + t * st[2] + e, dt, o[i++]);
                        }
                    }
                }
            }
        });
    }

    @Override
    public Marker mark(Lane lane) {
        SimMarker m = new SimMarker();
        lanes.get(lane.ordinal()).add(new Task("mark", () -> {}, null, m));
        return m;
    }

    @Override
    public void waitFor(Lane lane, Marker m) {
        lanes.get(lane.ordinal()).add(new Task("wait", () -> {}, (SimMarker) m, null));
    }

    /** The simulation has no clock. */
    @Override
    public float millis(Marker from, Marker to) {
        drain();
        return Float.NaN;
    }

    @Override
    public void synchronize() {
        drain();
        if (failSynchronize != null) {
            throw new IllegalStateException(failSynchronize);
        }
    }

    @Override
    public void close() {
        if (router != null) {
            router.close();
        }
    }
}
