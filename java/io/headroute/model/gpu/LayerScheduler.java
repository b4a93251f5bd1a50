package io.headroute.model.gpu;

import io.headroute.cuda.Resources;
import io.headroute.cuda.memory.DeviceBuffer;
import io.headroute.cuda.memory.DevicePool;
import io.headroute.cuda.memory.MemoryStats;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.ShapeException;
import io.headroute.model.AttentionBlock;
import io.headroute.model.HeadSelection;
import io.headroute.model.LayerSpec;
import io.headroute.model.Model;
import io.headroute.model.ModelConfig;
import io.headroute.model.PackedWeights;
import io.headroute.model.RotaryTable;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs a {@link Model}'s layers in order on a device through {@link BlockOps}, holding exactly the
 * buffers its {@link MemoryPlan} lists: weights from construction to close, the residual stream and
 * the per-layer scratch (shared by all layers) for the length of a forward pass.
 *
 * <p>Each layer, on the compute lane: n = RMSNorm(x)·γ; Q, K, V = n·Wq, n·Wk, n·Wv (cuBLAS); RoPE on Q
 * and K in place; attention per {@link HeadSelection.Call}, reading Q, K, V and writing O through
 * strides in the (B, L, heads, D) layout the projections produce; x += O·Wo (cuBLAS with beta = 1, the
 * residual add). The same rounding points as {@link AttentionBlock}. A routed layer runs its router
 * between the norm and the attention, on the same lane, on the normed input: logits n·Wr (cuBLAS),
 * top-k in the router kernel into the router's gate (B, L, H), whose columns are then gathered call by
 * call into the gate the attention reads (pruned heads' columns are left out). No host round trip.
 * Gated calls (routed layers, layers given a gate) skip the inactive heads' work on the device: the
 * attention builds a work list from the gate there, of tiles for block routing whose Bq covers whole
 * kernel tiles, else of compacted rows ({@link DeviceAttentionCall#gateBlock}), in the layer's workspace.
 * With {@link #setCountWork} the scheduler reads back, after each call, how many query tiles ran
 * ({@link Result#layerWork}); that synchronizes, so it is for tests and benchmarks only.
 *
 * <p>Just-in-time weights: every layer's packed weights wait in pinned host memory; layer i + 1's are
 * uploaded on the copy lane into slot (i + 1) mod 2 while layer i computes from slot i mod 2. The
 * upload first waits for the end of layer i − 1 (the slot's previous user), and layer i + 1 waits for
 * its upload: two events per layer order the lanes, and at most two layers' weights are on the device.
 *
 * <p>Not thread-safe. Close it before its pool.
 */
public final class LayerScheduler implements AutoCloseable {
    /**
     * What one forward pass produced and cost; {@code layerWork}: per layer, the query tiles its
     * attention launched against its grid, or null when not counted ({@link #setCountWork}).
     *
     * @param output      the last layer's output (B, L, d_model) in the model dtype
     * @param layerMillis per layer, the compute lane's time from the layer's start to its end, in milliseconds
     * @param memory      the pool's accounting at the end of the pass, its scratch still held (peaks reset at the
     *                    pass's start)
     * @param layerWork   per layer, the query tiles launched, or null
     */
    public record Result(Tensor output, float[] layerMillis, MemoryStats memory, AttentionWork[] layerWork) {
        /** {@return the peak device bytes the pool held during the pass (weights included)} */
        public long peakBytes() {
            return memory.peakAllocatedBytes();
        }
    }

    private final Model model;
    private final ModelConfig config;
    private final WeightPlacement placement;
    private final DevicePool pool;
    private final BlockOps ops;
    private final List<HeadSelection> selections = new ArrayList<>();
    private final List<long[]> offsets = new ArrayList<>();
    private final List<DeviceBuffer> weightBuffers = new ArrayList<>();
    private final List<BlockOps.HostBuffer> hostWeights = new ArrayList<>();
    /**
     * The given gates of a pass, compacted, in page-locked memory (kept for later passes, grown as needed): a layer's
     * gate copy then neither blocks the host nor waits for the compute lane, as one from pageable memory may.
     */
    private BlockOps.HostBuffer gateStaging;
    private boolean countWork;
    private boolean closed;

    /**
     * Allocates the weight buffers from {@code pool} and stages every layer's packed weights in pinned memory;
     * resident weights are uploaded (and the pinned copies freed) before this returns.
     *
     * @param model     the host model
     * @param placement where the weights live
     * @param pool      the device pool; it must outlive the scheduler
     * @param ops       the device operations; not closed by the scheduler
     * @throws io.headroute.cuda.memory.DeviceOutOfMemoryException when the weights do not fit
     */
    public LayerScheduler(Model model, WeightPlacement placement, DevicePool pool, BlockOps ops) {
        this.model = model;
        this.config = model.config();
        this.placement = placement;
        this.pool = pool;
        this.ops = ops;
        for (AttentionBlock b : model.blocks()) {
            selections.add(b.selection());
            offsets.add(PackedWeights.offsets(config, b.index()));
        }
        try {
            for (MemoryPlan.Buffer b : MemoryPlan.weightBuffers(config, placement)) {
                weightBuffers.add(pool.allocate(b.bytes(), b.tag()));
            }
            for (int i = 0; i < config.layerCount(); i++) {
                BlockOps.HostBuffer h = ops.pinned(offsets.get(i)[PackedWeights.TOTAL]);
                hostWeights.add(h);
                PackedWeights.write(model.blocks().get(i), model.weights().layer(i).router(), config, h.buffer());
                if (placement == WeightPlacement.RESIDENT) {
                    ops.upload(h.buffer(), weightBuffers.get(i).address(), BlockOps.Lane.COPY);
                }
            }
            if (placement == WeightPlacement.RESIDENT) {
                ops.synchronize();
                for (BlockOps.HostBuffer h : hostWeights) {
                    h.close();
                }
                hostWeights.clear();
            }
        } catch (RuntimeException e) {
            throw Resources.closeAfter(e, this); // the failure first, not an error of the cleanup after it
        }
    }

    /**
     * The plan of a pass; {@code gates}: whether the caller gives gates (routed layers need none).
     *
     * @param batch B
     * @param len   L
     * @param gates whether the caller gives gates
     * @return the plan, with the ops' attention workspaces
     */
    public MemoryPlan plan(int batch, int len, boolean gates) {
        return MemoryPlan.of(config, batch, len, placement, gates, ops::attentionWorkspace);
    }

    /** {@return where the weights live} */
    public WeightPlacement placement() {
        return placement;
    }

    /**
     * Whether forward passes read back each attention call's launched query tiles (one synchronization
     * per call: layer times then include the host's waits). Off by default.
     *
     * @param count whether to count
     */
    public void setCountWork(boolean count) {
        this.countWork = count;
    }

    /**
     * The checks of {@link #forward} before any device work: x's shape, the gates' count, shapes and values
     * (finite, as the CPU model requires), and that the bound implementation computes every layer's attention
     * and router. Returns whether any layer has a gate given.
     *
     * @param x     the input (B, L, d_model)
     * @param gates one gate or null per layer, or null
     * @return whether any layer has a gate given
     * @throws IllegalStateException         when the scheduler is closed
     * @throws io.headroute.engine.ShapeException for a wrong shape, a gate count other than the layers, or a
     *                                       non-finite gate value
     * @throws IllegalArgumentException      when a routed layer is given a gate
     * @throws UnsupportedOperationException when the ops cannot run a layer's router or attention
     */
    public boolean validate(Tensor x, List<Tensor> gates) {
        if (closed) {
            throw new IllegalStateException("layer scheduler is closed");
        }
        if (x.rank() != 3 || x.dim(2) != config.dModel()) {
            throw new ShapeException("model input must have shape (B, L, d_model = " + config.dModel() + "), got "
                    + x.shapeString());
        }
        int n = config.layerCount();
        if (gates != null && gates.size() != n) {
            throw new ShapeException(gates.size() + " gates for " + n + " layers");
        }
        int batch = Math.toIntExact(x.dim(0));
        int len = Math.toIntExact(x.dim(1));
        boolean anyGate = false;
        for (int i = 0; i < n; i++) {
            Tensor g = gates == null ? null : gates.get(i);
            if (g != null) {
                if (config.layer(i).routed()) {
                    throw new IllegalArgumentException("layer " + i + " is routed: its gate comes from its router, not from "
                            + "the caller");
                }
                anyGate = true;
                if (g.rank() != 3 || g.dim(0) != batch || g.dim(1) != len || g.dim(2) != config.heads()) {
                    throw new ShapeException("gate of layer " + i + " must have shape (B, L, H) = (" + batch + ", " + len + ", "
                            + config.heads() + "), got " + g.shapeString());
                }
                if (!g.dtype().isFloating()) {
                    throw new ShapeException("gate of layer " + i + " must be a floating tensor, got " + g.dtype().cliName());
                }
                float[] v = g.toFloatArray();
                for (int k = 0; k < v.length; k++) {
                    if (!Float.isFinite(v[k])) {
                        throw new ShapeException("gate of layer " + i + " holds a non-finite value (" + v[k] + ") at flat index "
                                + k);
                    }
                }
            }
            LayerSpec s = config.layer(i);
            if (s.routed()) {
                ops.checkRouter(s.router());
            }
            for (HeadSelection.Call c : selections.get(i).calls()) {
                ops.checkAttention(shape(batch, len, c), config.dtype(), s.algorithm(), pattern(i, c, len));
            }
        }
        return anyGate;
    }

    /**
     * All layers on {@code x} (B, L, d_model); {@code gates} is null or one (B, L, H) gate (or null) per
     * layer (routed layers take theirs from their router: a gate given for one is refused). The output is
     * in the model dtype. Attention the bound implementation cannot compute is refused before any device work.
     *
     * @param x     the input (B, L, d_model)
     * @param gates one (B, L, H) gate or null per layer, or null
     * @return the output, per-layer times, memory statistics and counted work
     */
    public Result forward(Tensor x, List<Tensor> gates) {
        return forwardValidated(x, gates, validate(x, gates));
    }

    /** {@link #forward} on input {@link #validate} passed ({@code anyGate}: what it returned). */
    Result forwardValidated(Tensor x, List<Tensor> gates, boolean anyGate) {
        int n = config.layerCount();
        int batch = Math.toIntExact(x.dim(0));
        int len = Math.toIntExact(x.dim(1));
        pool.resetPeakStats();
        Map<String, DeviceBuffer> scratch = new HashMap<>();
        List<DeviceBuffer> routerBuffers = new ArrayList<>();
        List<BlockOps.Marker> markers = new ArrayList<>();
        // The pass's host buffers an async copy may still read (BlockOps.upload): reachable until both lanes are done.
        List<ByteBuffer> uploads = new ArrayList<>();
        try {
            for (MemoryPlan.Buffer b : MemoryPlan.scratchBuffers(config, batch, len, anyGate, ops::attentionWorkspace)) {
                DeviceBuffer buf = pool.allocate(b.bytes(), b.tag());
                if (b.tag().equals(MemoryPlan.ROUTER)) {
                    routerBuffers.add(buf); // logits, then the router's gate
                } else {
                    scratch.put(b.tag(), buf);
                }
            }
            DType dt = config.dtype();
            long residual = scratch.get(MemoryPlan.RESIDUAL).address();
            ops.upload(held(direct(x.toDType(dt).bytes()), uploads), residual, BlockOps.Lane.COMPUTE);
            ByteBuffer table = ByteBuffer.allocateDirect(Math.toIntExact(RotaryTable.byteSize(len, config.headDim())))
                    .order(ByteOrder.LITTLE_ENDIAN);
            table.asFloatBuffer().put(RotaryTable.of(len, config.headDim(), config.ropeTheta()).cosSin());
            ops.upload(held(table, uploads), scratch.get(MemoryPlan.ROPE).address(), BlockOps.Lane.COMPUTE);
            ByteBuffer[] gateBytes = stageGates(gates, batch, len, uploads);

            BlockOps.Marker[] uploaded = new BlockOps.Marker[n];
            BlockOps.Marker[] start = new BlockOps.Marker[n];
            BlockOps.Marker[] done = new BlockOps.Marker[n];
            AttentionWork[] work = countWork ? new AttentionWork[n] : null;
            boolean jit = placement == WeightPlacement.JUST_IN_TIME;
            if (jit) {
                uploaded[0] = uploadWeights(0, markers);
            }
            for (int i = 0; i < n; i++) {
                if (jit && i + 1 < n) {
                    if (i >= 1) {
                        ops.waitFor(BlockOps.Lane.COPY, done[i - 1]); // slot (i + 1) mod 2 was layer i − 1's
                    }
                    uploaded[i + 1] = uploadWeights(i + 1, markers);
                }
                if (jit) {
                    ops.waitFor(BlockOps.Lane.COMPUTE, uploaded[i]);
                }
                Tensor g = gates == null ? null : gates.get(i);
                if (g != null) {
                    ops.upload(gateBytes[i], scratch.get(MemoryPlan.GATE).address(), BlockOps.Lane.COMPUTE);
                }
                start[i] = keep(ops.mark(BlockOps.Lane.COMPUTE), markers);
                AttentionWork w = layer(i, batch, len, weightAddress(i), scratch, routerBuffers, g != null);
                if (work != null) {
                    work[i] = w;
                }
                done[i] = keep(ops.mark(BlockOps.Lane.COMPUTE), markers);
            }
            ByteBuffer out = ByteBuffer.allocateDirect(Math.toIntExact(Math.multiplyExact(x.numel(), (long) dt.byteSize())))
                    .order(ByteOrder.LITTLE_ENDIAN);
            ops.download(residual, out);
            float[] ms = new float[n];
            for (int i = 0; i < n; i++) {
                ms[i] = ops.millis(start[i], done[i]);
            }
            MemoryStats stats = pool.stats();
            out.rewind();
            Result r = new Result(Tensor.of(dt, x.shape(), out), ms, stats, work);
            Resources.closeAll(release(markers, scratch, routerBuffers));
            return r;
        } catch (RuntimeException e) {
            throw Resources.closeAfter(e, release(markers, scratch, routerBuffers)); // the pass's error first
        } catch (Error e) {
            throw Resources.closeAfter(e, release(markers, scratch, routerBuffers));
        } finally {
            java.lang.ref.Reference.reachabilityFence(uploads); // release() waited for both lanes
        }
    }

    private static ByteBuffer held(ByteBuffer b, List<ByteBuffer> uploads) {
        uploads.add(b);
        return b;
    }

    /**
     * What a pass returns, in order, each whatever failed before it: a wait for both lanes (nothing may still use the
     * scratch when it returns to the pool), its markers, its scratch and router buffers.
     */
    private AutoCloseable[] release(List<BlockOps.Marker> markers, Map<String, DeviceBuffer> scratch, List<DeviceBuffer> routerBuffers) {
        List<AutoCloseable> all = new ArrayList<>();
        all.add(ops::synchronize);
        all.addAll(markers);
        all.addAll(scratch.values());
        all.addAll(routerBuffers);
        return all.toArray(new AutoCloseable[0]);
    }

    private static BlockOps.Marker keep(BlockOps.Marker m, List<BlockOps.Marker> all) {
        all.add(m);
        return m;
    }

    private BlockOps.Marker uploadWeights(int layer, List<BlockOps.Marker> markers) {
        ops.upload(hostWeights.get(layer).buffer(), weightBuffers.get(layer % 2).address(), BlockOps.Lane.COPY);
        return keep(ops.mark(BlockOps.Lane.COPY), markers);
    }

    private long weightAddress(int layer) {
        return weightBuffers.get(placement == WeightPlacement.RESIDENT ? layer : layer % 2).address();
    }

    private AttentionShape shape(int batch, int len, HeadSelection.Call c) {
        return new AttentionShape(batch, c.qCount(), c.kvCount(), len, len, config.headDim());
    }

    private Pattern pattern(int layer, HeadSelection.Call c, int len) {
        LayerSpec s = config.layer(layer);
        Pattern p = selections.get(layer).pattern(s.pattern(), c, len);
        return s.causal() ? p.withCausal() : p;
    }

    /** Queues layer i; returns its attention's counted work when counting, else null. */
    private AttentionWork layer(int i, int batch, int len, long w, Map<String, DeviceBuffer> scratch, List<DeviceBuffer> router,
            boolean gateGiven) {
        DType dt = config.dtype();
        long es = dt.byteSize();
        int d = config.dModel();
        int hd = config.headDim();
        HeadSelection sel = selections.get(i);
        LayerSpec spec = config.layer(i);
        long[] off = offsets.get(i);
        int nq = sel.headCount();
        int nkv = sel.kvHeadCount();
        int rows = Math.multiplyExact(batch, len);
        long x = scratch.get(MemoryPlan.RESIDUAL).address();
        long norm = scratch.get(MemoryPlan.NORM).address();
        long q = scratch.get(MemoryPlan.Q).address();
        long k = scratch.get(MemoryPlan.K).address();
        long v = scratch.get(MemoryPlan.V).address();
        long o = scratch.get(MemoryPlan.ATTN_OUT).address();
        DeviceBuffer wsBuf = scratch.get(MemoryPlan.WORKSPACE);
        boolean gated = gateGiven || spec.routed();
        long gate = gated ? scratch.get(MemoryPlan.GATE).address() : 0;
        int gateBlock = MemoryPlan.gateBlock(spec, gateGiven);
        AttentionWork work = countWork ? AttentionWork.NONE : null;

        ops.rmsNorm(x, w + off[PackedWeights.GAMMA], norm, rows, d, (float) config.normEps(), dt);
        if (spec.routed()) {
            long logits = router.get(0).address();
            long routerGate = router.get(1).address();
            ops.route(norm, w + off[PackedWeights.ROUTER], logits, routerGate, batch, len, d, spec.router(), dt);
            for (HeadSelection.Call c : sel.calls()) {
                ops.gatherColumns(routerGate, config.heads(), gate + 4L * rows * c.qStart(), c.heads(), rows);
            }
        }
        ops.gemm(norm, w + off[PackedWeights.WQ], q, rows, d, nq * hd, 0f, dt);
        ops.gemm(norm, w + off[PackedWeights.WK], k, rows, d, nkv * hd, 0f, dt);
        ops.gemm(norm, w + off[PackedWeights.WV], v, rows, d, nkv * hd, 0f, dt);
        long rope = scratch.get(MemoryPlan.ROPE).address();
        ops.rope(q, rope, (long) nq * hd, batch, len, nq, hd, dt);
        ops.rope(k, rope, (long) nkv * hd, batch, len, nkv, hd, dt);
        long[] qs = {(long) len * nq * hd, hd, (long) nq * hd};
        long[] kvs = {(long) len * nkv * hd, hd, (long) nkv * hd};
        for (HeadSelection.Call c : sel.calls()) {
            AttentionShape sh = shape(batch, len, c);
            Pattern p = pattern(i, c, len);
            long wsBytes = ops.attentionWorkspace(sh, dt, spec.algorithm(), p, gateBlock);
            DeviceAttentionCall call = new DeviceAttentionCall(q + (long) c.qStart() * hd * es, k + (long) c.kvStart() * hd * es,
                    v + (long) c.kvStart() * hd * es, o + (long) c.qStart() * hd * es,
                    gated ? gate + 4L * rows * c.qStart() : 0, wsBytes > 0 ? wsBuf.address() : 0, wsBytes, qs.clone(),
                    kvs.clone(), kvs.clone(), qs.clone(), batch, c.qCount(), c.kvCount(), len, len, hd, p,
                    (float) (1.0 / Math.sqrt(hd)), dt, spec.algorithm(), gateBlock);
            ops.attention(call);
            if (work != null) {
                work = work.plus(ops.attentionWork(call)); // before the next call reuses the workspace
            }
        }
        ops.gemm(o, w + off[PackedWeights.WO], x, rows, nq * hd, d, 1f, dt);
        return work;
    }

    /**
     * Each given gate compacted (compactGate) into {@link #gateStaging}, one slice per layer (null for a layer without
     * one); the previous pass ended waiting for both lanes, so nothing reads the staging any more. Past a Java
     * buffer's size, pageable buffers instead (kept in {@code uploads}).
     */
    private ByteBuffer[] stageGates(List<Tensor> gates, int batch, int len, List<ByteBuffer> uploads) {
        int n = config.layerCount();
        ByteBuffer[] out = new ByteBuffer[n];
        if (gates == null) {
            return out;
        }
        long[] at = new long[n + 1];
        for (int i = 0; i < n; i++) {
            long bytes = gates.get(i) == null ? 0 : 4L * batch * len * selections.get(i).headCount();
            at[i + 1] = at[i] + (bytes + 15) / 16 * 16;
        }
        if (at[n] == 0) {
            return out;
        }
        if (at[n] > Integer.MAX_VALUE - 8) {
            for (int i = 0; i < n; i++) {
                if (gates.get(i) != null) {
                    ByteBuffer b = ByteBuffer.allocateDirect(Math.toIntExact(at[i + 1] - at[i])).order(ByteOrder.LITTLE_ENDIAN);
                    out[i] = held(compactGate(gates.get(i), batch, len, selections.get(i), b), uploads);
                }
            }
            return out;
        }
        if (gateStaging == null || gateStaging.buffer().capacity() < at[n]) {
            BlockOps.HostBuffer old = gateStaging;
            gateStaging = null;
            if (old != null) {
                old.close();
            }
            gateStaging = ops.pinned(at[n]);
        }
        for (int i = 0; i < n; i++) {
            if (gates.get(i) != null) {
                ByteBuffer slice = gateStaging.buffer().slice((int) at[i], (int) (at[i + 1] - at[i])).order(ByteOrder.LITTLE_ENDIAN);
                out[i] = compactGate(gates.get(i), batch, len, selections.get(i), slice);
            }
        }
        return out;
    }

    /**
     * The gate columns of each call's heads, call after call: (B, L, qCount) float32 blocks, written into {@code out}
     * (from its position 0); returns it flipped.
     */
    private static ByteBuffer compactGate(Tensor gate, int batch, int len, HeadSelection sel, ByteBuffer out) {
        float[] g = gate.toFloatArray();
        int h = Math.toIntExact(gate.dim(2));
        int rows = batch * len;
        for (HeadSelection.Call c : sel.calls()) {
            int[] heads = c.heads();
            for (int r = 0; r < rows; r++) {
                for (int head : heads) {
                    out.putFloat(g[r * h + head]);
                }
            }
        }
        return out.flip();
    }

    private static ByteBuffer direct(ByteBuffer src) {
        if (src.isDirect()) {
            return src;
        }
        ByteBuffer d = ByteBuffer.allocateDirect(src.remaining()).order(ByteOrder.LITTLE_ENDIAN);
        d.put(src.duplicate()).flip();
        return d;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            ops.synchronize();
        } finally {
            for (BlockOps.HostBuffer h : hostWeights) {
                h.close();
            }
            if (gateStaging != null) {
                gateStaging.close();
            }
            for (DeviceBuffer b : weightBuffers) {
                b.close();
            }
        }
    }
}
