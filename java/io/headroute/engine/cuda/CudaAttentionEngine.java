package io.headroute.engine.cuda;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.CudaEvent;
import io.headroute.cuda.CudaException;
import io.headroute.cuda.CudaStream;
import io.headroute.cuda.DevicePointers;
import io.headroute.cuda.DeviceTensor;
import io.headroute.cuda.EventTimer;
import io.headroute.cuda.JCudaAllocator;
import io.headroute.cuda.KernelModule;
import io.headroute.cuda.PinnedStaging;
import io.headroute.cuda.blas.Cublas;
import io.headroute.cuda.memory.Bytes;
import io.headroute.cuda.memory.DeviceOutOfMemoryException;
import io.headroute.cuda.memory.DevicePool;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.ExecutionStats;
import io.headroute.engine.ShapeException;
import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import jcuda.driver.JCudaDriver;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * Attention on one GPU: the fused flash kernels (fp32 on CUDA cores, fp16/bf16 on tensor cores) in their
 * dense/causal and block-sparse forms, and the materialized baseline (cuBLAS GEMMs around a row-softmax
 * kernel). Block-sparse layouts are uploaded once per (pattern, shape, block size) and cached; a gate
 * turns into a work list of active query tiles or into per-(b, h) compacted rows (see {@link GateWork}). Host tensors are uploaded,
 * the computation is timed with CUDA events (transfers excluded), and the results are copied back.
 * Device memory comes from the engine's {@link DevicePool}; its statistics say what each call cost.
 * Not thread-safe: one caller at a time.
 */
public final class CudaAttentionEngine implements AttentionEngine {
    private static final Logger LOG = LogManager.getLogger(CudaAttentionEngine.class);
    private static final long STAGING_CHUNK = 32L << 20;
    private static final long STAGING_THRESHOLD = 4L << 20;
    private static final int MAX_CACHED_LAYOUTS = 8;
    private static final int NEG_INF_BITS = 0xFF800000;

    private final CudaDevice device;
    private final DevicePool pool;
    private final CudaStream stream;
    private final Map<String, KernelModule> modules = new HashMap<>();
    private PinnedStaging staging;
    private Cublas cublas;
    private final Map<LayoutKey, SparseUpload> layouts = new LinkedHashMap<>();
    /**
     * Host-side tile layouts of {@link #launch} and their page-locked copies (device copies: in callers' workspaces),
     * least recently used first.
     */
    private final Map<LayoutKey, HostLayout> hostTiles = new LinkedHashMap<>(16, 0.75f, true);
    /** Evicted layouts whose page-locked copy a queued copy may still read: freed once their fences complete. */
    private final List<HostLayout> retiredLayouts = new ArrayList<>();
    private boolean poisonOutputs;
    private FlashPlan.Tiling tiling;
    private boolean closed;

    private CudaAttentionEngine(CudaDevice device, DevicePool pool, FlashPlan.Tiling tiling) {
        String why = tilingUnavailable(device, tiling);
        if (why != null) {
            throw new UnsupportedOperationException("-D" + TILING_PROPERTY + "=" + tiling.cliName() + ": " + why);
        }
        this.device = device;
        this.pool = pool;
        this.tiling = tiling;
        this.stream = CudaStream.create(device);
    }

    /**
     * Opens GPU {@code ordinal} with an uncapped pool, in the starting tiling ({@link #startTiling}).
     *
     * @param ordinal the CUDA device index, from 0
     * @return the engine, owning its device, pool and stream; the caller closes it
     * @throws IllegalArgumentException      when {@link #TILING_PROPERTY} names no tiling (before the device is opened)
     * @throws UnsupportedOperationException when the device cannot run the starting tiling
     * @throws CudaException                 when the device cannot be opened
     */
    public static CudaAttentionEngine open(int ordinal) {
        FlashPlan.Tiling t = startTiling(); // a bad -Dheadroute.tiling is refused before the device is touched
        CudaDevice d = CudaDevice.open(ordinal);
        try {
            return new CudaAttentionEngine(d, DevicePool.create(new JCudaAllocator(d), "cuda:" + ordinal, false), t);
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
    }

    /**
     * An engine on the GPU that {@code device} drives, with its own handle on the device's primary context
     * (closing the engine leaves {@code device} open): for running attention inside another component's
     * device memory ({@link #launch}).
     *
     * @param device the open device; only its ordinal is used
     * @return a new engine on that GPU, with its own pool and stream; the caller closes it
     */
    public static CudaAttentionEngine on(CudaDevice device) {
        return open(device.ordinal());
    }

    /**
     * Opens GPU {@code ordinal} with a pool capped at {@code limitBytes}, to emulate a smaller card.
     *
     * @param ordinal    the CUDA device index, from 0
     * @param limitBytes the most device memory the engine's pool reserves, positive
     * @return the engine; the caller closes it
     */
    public static CudaAttentionEngine open(int ordinal, long limitBytes) {
        FlashPlan.Tiling t = startTiling();
        CudaDevice d = CudaDevice.open(ordinal);
        try {
            return new CudaAttentionEngine(d, DevicePool.withLimit(new JCudaAllocator(d), "cuda:" + ordinal, limitBytes, false), t);
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
    }

    @Override
    public String name() {
        return "cuda";
    }

    @Override
    public String device() {
        return device.describe();
    }

    /** {@return the engine's device memory pool (statistics, limits, leak checks)} */
    public DevicePool pool() {
        return pool;
    }

    /**
     * The system property naming the tiling engines start in (w4, w2, w4x2, wg, wgp, wgx2 or wgpx2; W4 when unset), e.g.
     * {@code HEADROUTE_JAVA_OPTS=-Dheadroute.tiling=w4x2}: every engine of the process (attend, bench, routed
     * runs, experiments, GPU models) then runs it without a rebuild.
     */
    public static final String TILING_PROPERTY = "headroute.tiling";

    /**
     * The tiling engines start in: the one {@link #TILING_PROPERTY} names, W4 when it is unset; a one-line
     * error for another name. The static planning methods without a tiling argument plan for it.
     *
     * @return the starting tiling
     * @throws IllegalArgumentException when the property names no tiling
     */
    public static FlashPlan.Tiling startTiling() {
        String s = System.getProperty(TILING_PROPERTY);
        if (s == null || s.isBlank()) {
            return FlashPlan.Tiling.W4;
        }
        try {
            return FlashPlan.Tiling.parse(s.trim());
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("-D" + TILING_PROPERTY + "=" + s + ": " + e.getMessage());
        }
    }

    /**
     * The tiling of the f16/bf16 dense/causal flash kernels from now on ({@link FlashPlan.Tiling}; W4, or
     * what {@link #TILING_PROPERTY} names, unless set). The other kernels have one tiling. For benchmarks
     * that compare them. Calls on caller-owned memory ({@link #launch}) size their workspace and work lists
     * for the tiling set when they ask ({@link #launchWorkspaceBytes}) and launch: set it before either.
     *
     * @param tiling the tiling; not null
     * @throws UnsupportedOperationException when this device cannot run it ({@link #tilingUnavailable})
     */
    public void setMmaTiling(FlashPlan.Tiling tiling) {
        String why = tilingUnavailable(java.util.Objects.requireNonNull(tiling, "tiling"));
        if (why != null) {
            throw new UnsupportedOperationException("tiling " + tiling.cliName() + ": " + why);
        }
        this.tiling = tiling;
    }

    /**
     * Why this engine cannot run {@code tiling}'s kernels, or null when it can: the wgmma kernels (WG, WGP, WGX2, WGPX2) are sm_90a
     * machine code (compute capability 9.0 only, H100/H200) in a module of their own.
     *
     * @param tiling the tiling asked about
     * @return the reason, one line, or null
     */
    public String tilingUnavailable(FlashPlan.Tiling tiling) {
        return tilingUnavailable(device, tiling);
    }

    private static String tilingUnavailable(CudaDevice device, FlashPlan.Tiling tiling) {
        if (!tiling.wgmma()) {
            return null;
        }
        if (device.computeCapabilityMajor() != 9 || device.computeCapabilityMinor() != 0) {
            return "the wgmma kernels run on compute capability 9.0 only (H100, H200: sm_90a); " + device.describe() + " is "
                    + device.smName();
        }
        if (!KernelModule.packaged(FlashPlan.WGMMA_MODULE)) {
            return "the jar was built without " + FlashPlan.WGMMA_MODULE + ".fatbin (run 'make build' with nvcc)";
        }
        return null;
    }

    /** {@return the tiling the f16/bf16 dense/causal flash kernels run in now} */
    public FlashPlan.Tiling mmaTiling() {
        return tiling;
    }

    /**
     * Fills o and lse with NaN before every computation, so that a kernel that leaves an element unwritten
     * is caught by the tests instead of passing on stale memory from the pool.
     *
     * @param poison whether to poison; off by default
     */
    public void setPoisonOutputs(boolean poison) {
        this.poisonOutputs = poison;
    }

    private KernelModule module(String name) {
        return modules.computeIfAbsent(name, n -> KernelModule.load(device, n));
    }

    private Cublas cublas() {
        if (cublas == null) {
            cublas = Cublas.create(device);
        }
        return cublas;
    }

    private PinnedStaging staging(long bytes) {
        if (bytes < STAGING_THRESHOLD) {
            return null;
        }
        if (staging == null) {
            staging = new PinnedStaging(device, STAGING_CHUNK);
        }
        return staging;
    }

    @Override
    public AttentionResult run(AttentionRequest req) {
        if (closed) {
            throw new IllegalStateException("CUDA attention engine is closed");
        }
        AttentionShape sh = req.shape();
        DType dt = req.dtype();
        Algorithm algo = route(req.algorithm(), req.pattern());
        // Refuse what cannot run before any device memory is touched.
        FlashPlan flash = switch (algo) {
            case FLASH -> FlashPlan.of(sh, dt, req.pattern(), tiling);
            case SPARSE -> FlashPlan.sparse(sh, dt, tiling);
            default -> null;
        };
        MaterializedPlan mat = algo == Algorithm.MATERIALIZED
                ? MaterializedPlan.of(sh, dt, req.gate() != null, req.fp32Scores()) : null;
        if (mat != null) {
            SoftmaxParams.rule(req.pattern());
            cublas();
            checkFits(mat);
        }
        device.makeCurrent();
        // The layout (uploaded now, or cached by an earlier call) is part of what this call holds; what the
        // cache holds besides it, and what an eviction freed, is not: the peak counts from after the
        // layout is in place, plus the layout itself.
        SparseUpload layout = flash != null && flash.isSparse() ? layout(req, flash) : null;
        long heldBefore = layout == null ? 0 : layout.poolBytes();
        pool.resetPeakStats();
        long base = pool.stats().allocatedBytes();
        GatePlan gp = flash != null ? GatePlan.of(req, flash, layout == null ? null : layout.tiles()) : null;
        if (layout != null && gp.mode == GateMode.COMPACT) {
            flash = flash.merging(sh); // same rows and layout; the rows' lists merged in the kernel
        }
        try {
            return run(req, algo, flash, mat, layout, gp, heldBefore, base);
        } catch (CudaException e) {
            throw e.during("attention " + algo.cliName() + " (" + (flash != null ? flash.kernel() : "cuBLAS + softmax rows")
                    + ", " + sh + ", " + dt.cliName() + ")");
        }
    }

    /** {@link #run(AttentionRequest)} once planned: upload, compute (timed), download. */
    private AttentionResult run(AttentionRequest req, Algorithm algo, FlashPlan flash, MaterializedPlan mat, SparseUpload layout,
                                GatePlan gp, long heldBefore, long base) {
        AttentionShape sh = req.shape();
        DType dt = req.dtype();
        try (DeviceTensor q = upload(req.q(), dt, "qkv");
                DeviceTensor k = upload(req.k(), dt, "qkv");
                DeviceTensor v = upload(req.v(), dt, "qkv");
                DeviceTensor gate = req.gate() == null ? null : upload(req.gate(), DType.F32, "gate");
                DeviceTensor o = DeviceTensor.allocate(device, pool, dt, "out", sh.batch(), sh.heads(), sh.qLen(), sh.headDim());
                DeviceTensor lse = DeviceTensor.allocate(device, pool, DType.F32, "out", sh.batch(), sh.heads(), sh.qLen());
                EventTimer timer = new EventTimer(stream)) {
            if (poisonOutputs) {
                o.fillBits(nanBits(dt), stream);
                lse.fillBits(nanBits(DType.F32), stream);
            }
            long workspace;
            float ms;
            long queryTiles;
            long visited = -1;
            long skipped = -1;
            if (flash != null) {
                KernelModule m = module(flash.module());
                if (flash.sharedBytes() > 48 * 1024) {
                    m.allowSharedMemory(flash.kernel(), flash.sharedBytes());
                }
                // The work list built on the device, as a call on caller memory (launch) builds it, but with the
                // grid the host plan counted (the gate is on the host too): only active tiles are launched, and
                // nothing waits for the host between the timer's events (the list's memory and module are had
                // before: the interval holds the list's building, the fills below and the attention). The kernel
                // reads the list's length from the device (blocks past it would exit); read back after the call,
                // it must equal the plan's.
                KernelModule gateModule = gp.mode == GateMode.WHOLE_GRID ? null : module(GateWork.MODULE);
                try (GateWork.DeviceWork work = gp.mode == GateMode.WHOLE_GRID ? null
                        : GateWork.allocate(device, pool, sh.batch(), sh.qLen(), sh.heads(), flash.blockRows(),
                                gp.mode == GateMode.COMPACT)) {
                    timer.start();
                    if (work != null) {
                        work.queue(gateModule, stream, gate.address());
                        // Rows no launched block sees (tiles left off the list, rows left out by compaction) are
                        // gated ones: o = 0, lse = −inf.
                        o.fillBits(0, stream);
                        lse.fillBits(NEG_INF_BITS, stream);
                    }
                    long grid = work == null ? flash.blocks() : gp.tiles; // ≤ Integer.MAX_VALUE / 3: Sizes checked it
                    byte[] params = AttentionParams.encode(
                            new AttentionParams.Pointers(q.address(), k.address(), v.address(), o.address(), lse.address(),
                                    gate == null ? 0 : gate.address(), work == null ? 0 : work.list()),
                            layout == null ? AttentionParams.Sparse.NONE : layout.params(),
                            work == null ? AttentionParams.Rows.NONE : new AttentionParams.Rows(work.rows(), work.counts()),
                            work == null ? 0 : work.total(),
                            AttentionParams.Strides.contiguous(sh.heads(), sh.kvHeads(), sh.qLen(), sh.kvLen(), sh.headDim()),
                            sh.batch(), sh.heads(), sh.kvHeads(), sh.qLen(), sh.kvLen(), sh.headDim(),
                            FlashPlan.causal(req.pattern()), work == null ? 0 : (int) grid, req.scale());
                    if (work == null) {
                        m.launch(flash.kernel(), flash.gridX(), flash.gridY(), flash.gridZ(), flash.threads(), flash.sharedBytes(),
                                stream, params);
                    } else {
                        m.launch(flash.kernel(), (int) grid, 1, 1, flash.threads(), flash.sharedBytes(), stream, params);
                    }
                    ms = timer.stopMillis();
                    if (work != null && work.readCount(stream) != gp.tiles) {
                        throw new IllegalStateException("the device work list has " + work.count() + " tiles, the host plan "
                                + gp.tiles + " (" + gp.mode + ", B=" + sh.batch() + " H=" + sh.heads() + " L=" + sh.qLen() + ")");
                    }
                    workspace = (layout == null ? 0 : layout.tiles().deviceBytes()) + (work == null ? 0 : work.bytes());
                }
                queryTiles = gp.tiles;
                visited = gp.keyTilesVisited;
                skipped = gp.tiles * (long) ceilDiv(sh.kvLen(), flash.tileKeys()) - visited;
            } else {
                try (DeviceTensor scores = DeviceTensor.allocate(device, pool, mat.scoreDType(), "scores", sh.batch(),
                        sh.heads(), sh.qLen(), sh.kvLen());
                        DeviceTensor probs = mat.separateProbs(dt) ? DeviceTensor.allocate(device, pool, dt, "scores",
                                sh.batch(), sh.heads(), sh.qLen(), sh.kvLen()) : null) {
                    timer.start();
                    materialized(req, q, k, v, gate, o, lse, scores, probs);
                    ms = timer.stopMillis();
                    workspace = scores.byteSize() + (probs == null ? 0 : probs.byteSize());
                }
                queryTiles = (long) sh.batch() * sh.heads();
            }
            long peak = pool.stats().peakAllocatedBytes() - base + heldBefore;
            Tensor oh = o.download(stream, staging(o.byteSize()));
            Tensor lh = req.wantLse() ? lse.download(stream, staging(lse.byteSize())) : null;
            ExecutionStats st = new ExecutionStats(name(), algo, (long) (ms * 1e6), workspace, queryTiles, visited, skipped,
                    zeroGates(req.gate()), peak, mat == null ? null : mat.scoreDType());
            return new AttentionResult(oh, lh, st);
        }
    }

    /**
     * One attention call on device memory the caller owns (see {@link #launch}).
     *
     * @param q               device address of q's first element, dtype elements at {@code strides} ({batch, head,
     *                        row}, in elements; rows 16-byte aligned), e.g. the (B, L, H, D) rows a projection writes
     * @param k               device address of k's first element, likewise
     * @param v               device address of v's first element, likewise
     * @param o               device address of o's first element, likewise; written by the call
     * @param gate            (B, L, H) float32, contiguous, or 0 for none
     * @param workspace       device scratch of at least {@link #launchWorkspaceBytes} bytes, or 0 when that is 0
     * @param workspaceBytes  the workspace's size in bytes, checked by {@link #launch}
     * @param strides         q's, k's, v's and o's {batch, head, row} strides in elements
     * @param shape           the sizes B, H, Hkv, L, S and D
     * @param pattern         the pattern with the causal rule folded in
     * @param scale           the softmax scale
     * @param dtype           the elements' dtype: f32, f16 or bf16
     * @param algorithm       flash, sparse or auto (materialized is refused on caller memory)
     * @param blockSize       the sparse layout's block size (64 or 128)
     * @param gateBlock       how the gate may vary, which picks the work list built on the device (see
     *                        {@link #deviceGateMode}): 0 builds none (the whole grid runs; tiles whose rows are
     *                        all gated off exit early); 1: rows may differ within a kernel tile (per-token
     *                        routing, a caller's gate); Bq &gt; 1: constant over aligned blocks of Bq query rows
     *                        (block routing)
     */
    public record DeviceCall(long q, long k, long v, long o, long gate, long workspace, long workspaceBytes,
            AttentionParams.Strides strides, AttentionShape shape, Pattern pattern, float scale, DType dtype,
            Algorithm algorithm, int blockSize, int gateBlock) {
        /**
         * A call that builds no device work list (gate, if any, applied on the whole grid): {@code gateBlock} 0.
         *
         * @param q              device address of q
         * @param k              device address of k
         * @param v              device address of v
         * @param o              device address of o
         * @param gate           device address of the (B, L, H) float32 gate, or 0
         * @param workspace      device address of the workspace, or 0
         * @param workspaceBytes the workspace's size in bytes
         * @param strides        the four tensors' strides in elements
         * @param shape          the sizes
         * @param pattern        the effective pattern
         * @param scale          the softmax scale
         * @param dtype          the elements' dtype
         * @param algorithm      flash, sparse or auto
         * @param blockSize      the sparse layout's block size, 64 or 128
         */
        public DeviceCall(long q, long k, long v, long o, long gate, long workspace, long workspaceBytes,
                AttentionParams.Strides strides, AttentionShape shape, Pattern pattern, float scale, DType dtype,
                Algorithm algorithm, int blockSize) {
            this(q, k, v, o, gate, workspace, workspaceBytes, strides, shape, pattern, scale, dtype, algorithm, blockSize, 0);
        }

        /**
         * A call on contiguous device tensors, its shape, dtype and strides taken from them and checked: q and o
         * (B, H, L, D), k and v (B, Hkv, S, D), all of one dtype; the gate (B, L, H) float32 or null; the workspace
         * (any dtype; its bytes count) or null when {@link #launchWorkspaceBytes} is 0, which {@link #launch} checks.
         * Raw addresses, as the canonical constructor takes them, are not checked against any size.
         *
         * @param q         queries (B, H, L, D), contiguous
         * @param k         keys (B, Hkv, S, D), contiguous, q's dtype
         * @param v         values, k's shape and q's dtype
         * @param o         the output, q's shape and dtype
         * @param gate      the (B, L, H) float32 gate, or null
         * @param workspace scratch of at least {@link #launchWorkspaceBytes} bytes, or null
         * @param pattern   the effective pattern
         * @param scale     the softmax scale
         * @param algorithm flash, sparse or auto
         * @param blockSize the sparse layout's block size, 64 or 128
         * @param gateBlock 0, 1 or Bq (see {@link #deviceGateMode})
         * @return the call, with contiguous strides
         * @throws ShapeException naming the tensor and its shape when one does not fit the others
         */
        public static DeviceCall of(DeviceTensor q, DeviceTensor k, DeviceTensor v, DeviceTensor o, DeviceTensor gate,
                DeviceTensor workspace, Pattern pattern, float scale, Algorithm algorithm, int blockSize, int gateBlock) {
            for (Object[] t : new Object[][] {{"q", q}, {"k", k}, {"v", v}, {"o", o}}) {
                DeviceTensor d = (DeviceTensor) t[1];
                if (d == null || d.shape().length != 4) {
                    throw new ShapeException(t[0] + " must be a 4-d device tensor, got " + d);
                }
            }
            DType dt = q.dtype();
            long[] qs = q.shape();
            long[] ks = k.shape();
            if (k.dtype() != dt || v.dtype() != dt || o.dtype() != dt) {
                throw new ShapeException("q, k, v and o must have one dtype, got " + q + ", " + k + ", " + v + ", " + o);
            }
            if (!Arrays.equals(ks, v.shape()) || !Arrays.equals(qs, o.shape()) || ks[0] != qs[0]
                    || ks[3] != qs[3]) {
                throw new ShapeException("q and o (B, H, L, D), k and v (B, Hkv, S, D) do not fit: q " + shape(qs) + ", k "
                        + shape(ks) + ", v " + shape(v.shape()) + ", o " + shape(o.shape()));
            }
            for (long x : new long[] {qs[0], qs[1], qs[2], qs[3], ks[1], ks[2]}) {
                if (x > Integer.MAX_VALUE) {
                    throw new ShapeException("a dimension of q " + shape(qs) + " or k " + shape(ks) + " exceeds 2^31 - 1");
                }
            }
            AttentionShape sh = new AttentionShape((int) qs[0], (int) qs[1], (int) ks[1], (int) qs[2], (int) ks[2], (int) qs[3]);
            if (gate != null && (gate.dtype() != DType.F32
                    || !Arrays.equals(gate.shape(), new long[] {qs[0], qs[2], qs[1]}))) {
                throw new ShapeException("the gate must be (B, L, H) = " + shape(new long[] {qs[0], qs[2], qs[1]})
                        + " float32, got " + gate);
            }
            return new DeviceCall(q.address(), k.address(), v.address(), o.address(), gate == null ? 0 : gate.address(),
                    workspace == null ? 0 : workspace.address(), workspace == null ? 0 : workspace.byteSize(),
                    AttentionParams.Strides.contiguous(sh.heads(), sh.kvHeads(), sh.qLen(), sh.kvLen(), sh.headDim()), sh,
                    pattern, scale, dt, algorithm, blockSize, gateBlock);
        }

        private static String shape(long[] s) {
            return Arrays.toString(s).replace('[', '(').replace(']', ')');
        }
    }

    /**
     * Refuses caller memory the kernels cannot address: the tensor-core kernels copy q, k and v rows 16 bytes at a
     * time (cp.async) and write o 4 bytes at a time (two elements); the fp32 kernels read and write single floats; the
     * gate is read as floats, the workspace's arrays as ints. On a GPU a misaligned access is a sticky error that ends
     * the whole context.
     */
    static void checkAlignment(DeviceCall c) {
        long es = c.dtype().byteSize();
        int in = c.dtype() == DType.F32 ? 4 : 16;
        AttentionParams.Strides st = c.strides();
        Object[][] tensors = {{"q", c.q(), st.q(), in}, {"k", c.k(), st.k(), in}, {"v", c.v(), st.v(), in}, {"o", c.o(), st.o(), 4}};
        for (Object[] t : tensors) {
            long address = (long) t[1];
            long[] strides = (long[]) t[2];
            int align = (int) t[3];
            if (address % align != 0) {
                throw new IllegalArgumentException(t[0] + " at 0x" + Long.toHexString(address) + " is not " + align
                        + "-byte aligned (" + c.shape() + ")");
            }
            for (int i = 0; i < strides.length; i++) {
                if (strides[i] * es % align != 0) {
                    throw new IllegalArgumentException(t[0] + "'s " + new String[] {"batch", "head", "row"}[i] + " stride of "
                            + strides[i] + " elements (" + strides[i] * es + " bytes) is not a multiple of " + align + " bytes ("
                            + c.shape() + ")");
                }
            }
        }
        if (c.gate() % 4 != 0 || c.workspace() % 16 != 0) {
            throw new IllegalArgumentException("the gate (0x" + Long.toHexString(c.gate()) + ") must be 4-byte and the workspace (0x"
                    + Long.toHexString(c.workspace()) + ") 16-byte aligned (" + c.shape() + ")");
        }
    }

    /**
     * Refuses, before any device work, a device-memory call this engine cannot launch, with a one-line
     * {@link UnsupportedOperationException}; returns the algorithm that would run. The materialized
     * algorithm is not offered on caller-owned memory (it needs its own score buffer and cuBLAS layout).
     *
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param algorithm the requested algorithm
     * @param pattern   the effective pattern
     * @return flash or sparse: what {@link #route} picks
     * @throws UnsupportedOperationException for materialized, or a head dim, dtype or pattern no kernel takes
     */
    public static Algorithm checkLaunch(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern) {
        Algorithm algo = route(algorithm, pattern);
        switch (algo) {
            case FLASH -> FlashPlan.of(shape, dtype, pattern);
            case SPARSE -> FlashPlan.sparse(shape, dtype);
            default -> throw new UnsupportedOperationException("attention on caller-owned device memory runs flash or sparse, "
                    + "not " + algo.cliName() + " (" + shape + ")");
        }
        return algo;
    }

    /**
     * The work list a call on device memory builds from its gate, chosen without reading the gate:
     * none without a gate or with {@code gateBlock} 0; block granularity (a list of active query tiles)
     * when the gate is constant over whole kernel tiles (Bq a multiple of Br: a tile is all on or all
     * off, so the list wastes no row); token granularity (per-(b, h) row compaction) when rows may differ
     * within a tile. The same for both algorithms (so it takes neither): a compacted sparse launch runs the
     * kernel that merges its rows' key lists on the device ({@link FlashPlan#sparseMerge}), so the gate
     * never goes to the host.
     * {@code blockRows}: Br of the kernel that runs (the tiling's).
     */
    static GateMode deviceGateMode(int blockRows, int gateBlock) {
        if (gateBlock <= 0) {
            return GateMode.WHOLE_GRID;
        }
        return gateBlock % blockRows == 0 ? GateMode.TILES : GateMode.COMPACT;
    }

    /** Query rows per block of the kernel a call on device memory launches in {@code tiling}. */
    private static int launchRows(AttentionShape shape, DType dtype, Algorithm algo, FlashPlan.Tiling tiling) {
        return FlashPlan.blockRows(dtype, shape.headDim(), algo == Algorithm.SPARSE, tiling);
    }

    /** Where the device-built work list of such a call sits in its part of the workspace; null when it builds none. */
    static GateWork.Layout deviceWorkLayout(AttentionShape shape, DType dtype, Algorithm algorithm, int gateBlock,
            FlashPlan.Tiling tiling) {
        int rows = launchRows(shape, dtype, algorithm, tiling);
        GateMode mode = deviceGateMode(rows, gateBlock);
        return mode == GateMode.WHOLE_GRID ? null
                : GateWork.Layout.of(shape.batch(), shape.qLen(), shape.heads(), rows, mode == GateMode.COMPACT);
    }

    /**
     * {@link #launchWorkspaceBytes(AttentionShape, DType, Algorithm, Pattern, int, int)} without a device work list.
     *
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param algorithm the requested algorithm
     * @param pattern   the effective pattern
     * @param blockSize the sparse layout's block size, 64 or 128
     * @return workspace bytes, 0 for a flash call
     */
    public long launchWorkspaceBytes(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, int blockSize) {
        return launchWorkspaceBytes(shape, dtype, algorithm, pattern, blockSize, 0);
    }

    /**
     * Device workspace {@link #launch} needs for this call: the block-sparse layout's arrays (each
     * 256-byte aligned) when the sparse kernel runs, then the work list built from the gate (see
     * {@link #deviceGateMode}; its counts, compacted rows, triples and length, each 256-byte aligned).
     * Builds (and caches on the host) the layout.
     *
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param algorithm the requested algorithm
     * @param pattern   the effective pattern
     * @param blockSize the sparse layout's block size, 64 or 128
     * @param gateBlock 0, 1 or Bq
     * @return workspace bytes for this engine's current tiling
     * @throws UnsupportedOperationException as {@link #checkLaunch}
     */
    public long launchWorkspaceBytes(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, int blockSize,
            int gateBlock) {
        Algorithm algo = checkLaunch(shape, dtype, algorithm, pattern);
        long layout = algo == Algorithm.SPARSE ? DeviceTileLists.workspaceLayout(hostTiles(shape, dtype, pattern, blockSize).lists())[4]
                : 0;
        GateWork.Layout w = deviceWorkLayout(shape, dtype, algo, gateBlock, tiling);
        return layout + (w == null ? 0 : w.bytes());
    }

    /**
     * What {@link #launchWorkspaceBytes(AttentionShape, DType, Algorithm, Pattern, int, int)} answers for an
     * engine in its starting tiling ({@link #startTiling}), without an engine (nor its layout cache): for
     * memory plans made off the device. Does not check that a kernel takes the head dim.
     *
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param algorithm the requested algorithm
     * @param pattern   the effective pattern
     * @param blockSize the sparse layout's block size, 64 or 128
     * @param gateBlock 0, 1 or Bq
     * @return workspace bytes
     * @throws UnsupportedOperationException for the materialized algorithm
     */
    public static long deviceWorkspaceBytes(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern,
            int blockSize, int gateBlock) {
        return deviceWorkspaceBytes(shape, dtype, algorithm, pattern, blockSize, gateBlock, startTiling());
    }

    /**
     * {@link #deviceWorkspaceBytes(AttentionShape, DType, Algorithm, Pattern, int, int)} of an engine in {@code tiling}.
     *
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param algorithm the requested algorithm
     * @param pattern   the effective pattern
     * @param blockSize the sparse layout's block size, 64 or 128
     * @param gateBlock 0, 1 or Bq
     * @param tiling    the engine's tiling
     * @return workspace bytes
     */
    public static long deviceWorkspaceBytes(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern,
            int blockSize, int gateBlock, FlashPlan.Tiling tiling) {
        Algorithm algo = deviceRoute(shape, algorithm, pattern);
        GateWork.Layout w = deviceWorkLayout(shape, dtype, algo, gateBlock, tiling);
        return uncachedLayoutBytes(shape, dtype, algo, pattern, blockSize, tiling) + (w == null ? 0 : w.bytes());
    }

    /**
     * Where, from the start of the workspace, a call of these parameters keeps its device-built work
     * list's length (an int); -1 when it builds none. Without an engine, like {@link #deviceWorkspaceBytes},
     * in the starting tiling.
     *
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param algorithm the requested algorithm
     * @param pattern   the effective pattern
     * @param blockSize the sparse layout's block size, 64 or 128
     * @param gateBlock 0, 1 or Bq
     * @return the byte offset, or −1
     */
    public static long deviceWorkTotalOffset(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern,
            int blockSize, int gateBlock) {
        Algorithm algo = deviceRoute(shape, algorithm, pattern);
        FlashPlan.Tiling tiling = startTiling();
        GateWork.Layout w = deviceWorkLayout(shape, dtype, algo, gateBlock, tiling);
        return w == null ? -1 : uncachedLayoutBytes(shape, dtype, algo, pattern, blockSize, tiling) + w.total();
    }

    /**
     * The host mirror of the work list a call of these parameters builds on the device from {@code gate}
     * (B, L, H) in the starting tiling: its (b, h, tile) triples, as gate_work.cu computes them (compacted
     * tiles for token granularity); null when the call builds none (then the whole grid runs).
     *
     * @param gate      the gate's B·L·H values, row-major (B, L, H)
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param algorithm the requested algorithm
     * @param pattern   the effective pattern
     * @param gateBlock 0, 1 or Bq
     * @return the triples, three ints per tile, or null
     */
    public static int[] deviceWorkList(float[] gate, AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern,
            int gateBlock) {
        return deviceWorkList(gate, shape, dtype, algorithm, pattern, gateBlock, startTiling());
    }

    /**
     * {@link #deviceWorkList(float[], AttentionShape, DType, Algorithm, Pattern, int)} of an engine in {@code tiling}.
     *
     * @param gate      the gate's B·L·H values
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param algorithm the requested algorithm
     * @param pattern   the effective pattern
     * @param gateBlock 0, 1 or Bq
     * @param tiling    the engine's tiling
     * @return the triples, or null
     */
    public static int[] deviceWorkList(float[] gate, AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern,
            int gateBlock, FlashPlan.Tiling tiling) {
        Algorithm algo = deviceRoute(shape, algorithm, pattern);
        int br = launchRows(shape, dtype, algo, tiling);
        GateMode mode = deviceGateMode(br, gateBlock);
        return switch (mode) {
            case WHOLE_GRID -> null;
            case TILES -> GateWork.activeTiles(gate, shape.batch(), shape.qLen(), shape.heads(), br);
            case COMPACT -> GateWork.compactedTiles(GateWork.compact(gate, shape.batch(), shape.qLen(), shape.heads()).counts(),
                    shape.batch(), shape.heads(), br);
        };
    }

    /**
     * Device bytes that the gate's work list adds to a {@link #run} of this request, before the pool's
     * rounding: what {@link GateWork#buildBytes} holds; 0 without a gate, for the materialized algorithm, or
     * when the gate switches off no query tile (the whole grid runs). The mode is chosen from the gate's
     * values exactly as {@code run} chooses it, for an engine in its starting tiling.
     *
     * @param req the request, its gate read on the host
     * @return bytes, 0 when no work list is built
     */
    public static long gateWorkBytes(AttentionRequest req) {
        return gateWorkBytes(req, startTiling());
    }

    /**
     * {@link #gateWorkBytes(AttentionRequest)} of an engine set to {@code tiling} (the 128-row tilings' work lists count
     * 128-row tiles).
     *
     * @param req    the request
     * @param tiling the engine's tiling
     * @return bytes, 0 when no work list is built
     */
    public static long gateWorkBytes(AttentionRequest req, FlashPlan.Tiling tiling) {
        if (req.gate() == null) {
            return 0;
        }
        AttentionShape sh = req.shape();
        FlashPlan flash = switch (route(req.algorithm(), req.pattern())) {
            case FLASH -> FlashPlan.of(sh, req.dtype(), req.pattern(), tiling);
            case SPARSE -> FlashPlan.sparse(sh, req.dtype(), tiling);
            default -> null;
        };
        if (flash == null) {
            return 0;
        }
        SparseTiles tiles = flash.isSparse() ? kernelTiles(sh, req.dtype(), req.pattern(), req.blockSize(), tiling) : null;
        GatePlan gp = GatePlan.of(req, flash, tiles);
        if (gp.mode == GateMode.WHOLE_GRID) {
            return 0;
        }
        return GateWork.buildBytes(sh.batch(), sh.qLen(), sh.heads(), flash.blockRows(), gp.mode == GateMode.COMPACT);
    }

    private static Algorithm deviceRoute(AttentionShape shape, Algorithm algorithm, Pattern pattern) {
        Algorithm algo = route(algorithm, pattern);
        if (algo == Algorithm.MATERIALIZED) {
            throw new UnsupportedOperationException("attention on caller-owned device memory runs flash or sparse, not "
                    + algo.cliName() + " (" + shape + ")");
        }
        return algo;
    }

    private static long uncachedLayoutBytes(AttentionShape shape, DType dtype, Algorithm algo, Pattern pattern, int blockSize,
            FlashPlan.Tiling tiling) {
        if (algo != Algorithm.SPARSE) {
            return 0;
        }
        return DeviceTileLists.workspaceLayout(kernelTiles(shape, dtype, pattern, blockSize, tiling).lists())[4];
    }

    /**
     * The layout of {@code pattern} in the tiles of the block-sparse kernel an engine in {@code tiling} runs (its rows:
     * {@link FlashPlan#blockRows}; keys: {@link FlashPlan#tileRows}), without checking that a kernel takes the head dim.
     */
    private static SparseTiles kernelTiles(AttentionShape shape, DType dtype, Pattern pattern, int blockSize,
            FlashPlan.Tiling tiling) {
        BlockLayout bl = BlockLayout.build(pattern, shape.heads(), shape.qLen(), shape.kvLen(), blockSize);
        return SparseTiles.build(pattern, bl, shape.qLen(), shape.kvLen(), FlashPlan.blockRows(dtype, shape.headDim(), true, tiling),
                FlashPlan.tileRows(dtype));
    }

    /**
     * Where, from the start of the call's workspace, the int holding the length of its device-built work
     * list sits; -1 when the call builds none.
     */
    long workTotalOffset(DeviceCall c) {
        Algorithm algo = checkLaunch(c.shape(), c.dtype(), c.algorithm(), c.pattern());
        GateWork.Layout w = c.gate() == 0 ? null : deviceWorkLayout(c.shape(), c.dtype(), algo, c.gateBlock(), tiling);
        if (w == null) {
            return -1;
        }
        long layout = algo == Algorithm.SPARSE
                ? DeviceTileLists.workspaceLayout(hostTiles(c.shape(), c.dtype(), c.pattern(), c.blockSize()).lists())[4] : 0;
        return layout + w.total();
    }

    /**
     * Query tiles × heads × batch of the call's kernel in the starting tiling, B·H·ceil(L / Br): the grid a
     * launch without a work list runs, and the most tiles a device-built list can hold. Does not check the
     * head dim.
     *
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param algorithm the requested algorithm (not materialized)
     * @param pattern   the effective pattern
     * @return the query tiles of the whole grid
     */
    public static long gridTiles(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern) {
        return gridTiles(shape, dtype, algorithm, pattern, startTiling());
    }

    /**
     * {@link #gridTiles(AttentionShape, DType, Algorithm, Pattern)} of an engine in {@code tiling}.
     *
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param algorithm the requested algorithm (not materialized)
     * @param pattern   the effective pattern
     * @param tiling    the engine's tiling
     * @return the query tiles of the whole grid
     */
    public static long gridTiles(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, FlashPlan.Tiling tiling) {
        Algorithm algo = deviceRoute(shape, algorithm, pattern);
        return (long) shape.batch() * shape.heads() * ceilDiv(shape.qLen(), launchRows(shape, dtype, algo, tiling));
    }

    /**
     * Query tiles the last {@link #launch} of {@code c} ran, for tests and benchmarks: the length of its
     * device-built work list, read back (this waits for {@code stream}), or the whole grid when it builds
     * none. Only valid while nothing else has used the call's workspace since.
     *
     * @param c      the call last launched
     * @param stream the stream it was launched on
     * @return the query tiles launched
     */
    public long launchedTiles(DeviceCall c, CudaStream stream) {
        long off = workTotalOffset(c);
        if (off < 0) {
            return gridTiles(c.shape(), c.dtype(), c.algorithm(), c.pattern(), tiling);
        }
        device.makeCurrent();
        DeviceTensor total = DeviceTensor.borrow(device, c.workspace() + off, DType.I32, 1);
        return GateWork.ints(total.download(stream, null))[0];
    }

    /**
     * Queues attention on device memory the caller owns on the caller's {@code stream}: no allocation, no
     * synchronization, no host round trip, no lse; gated rows as in the contract (gate 0: o = 0). For the
     * sparse kernel the layout's arrays are copied (on {@code stream}) into the caller's workspace on every call,
     * so that the caller's memory plan holds all of it, from a page-locked copy the engine makes once per layout
     * (host memory; the first call with a layout also builds it on the host). With a gate and a
     * {@code gateBlock} the skip happens on the device: the call's o rows are zeroed, the gate_work
     * kernels build the work list ({@link #deviceGateMode}) into the workspace, and the attention kernel
     * runs the maximal grid, B·H·ceil(L / Br) blocks, of which those past the list's length (read by the
     * kernel from the workspace, AttnParams.tiles_total) exit at once; compacted rows on a sparse layout run
     * the kernel that merges their original tiles' key lists on the device. Without a {@code gateBlock} the
     * whole grid runs and only tiles whose rows are all gated off exit early. This is how GPU models
     * (io.headroute.model.gpu) run their attention. Unverified on a GPU so far.
     *
     * @param c      the call; its memory stays the caller's
     * @param stream the stream to enqueue on; not waited for
     * @throws IllegalStateException         when the engine is closed
     * @throws UnsupportedOperationException as {@link #checkLaunch}
     * @throws IllegalArgumentException      for misaligned memory or a workspace smaller than the call needs
     */
    public void launch(DeviceCall c, CudaStream stream) {
        if (closed) {
            throw new IllegalStateException("CUDA attention engine is closed");
        }
        AttentionShape sh = c.shape();
        Algorithm algo = checkLaunch(sh, c.dtype(), c.algorithm(), c.pattern());
        checkAlignment(c);
        FlashPlan plan = algo == Algorithm.FLASH ? FlashPlan.of(sh, c.dtype(), c.pattern(), tiling)
                : FlashPlan.sparse(sh, c.dtype(), tiling);
        GateMode mode = c.gate() == 0 ? GateMode.WHOLE_GRID : deviceGateMode(plan.blockRows(), c.gateBlock());
        if (algo == Algorithm.SPARSE && mode == GateMode.COMPACT) {
            plan = plan.merging(sh); // same rows and layout; the lists merged in the kernel
        }
        HostLayout hl = algo == Algorithm.SPARSE ? hostLayout(sh, c.dtype(), c.pattern(), c.blockSize()) : null;
        SparseTiles t = hl == null ? null : hl.tiles;
        long layoutBytes = t == null ? 0 : DeviceTileLists.workspaceLayout(t.lists())[4];
        GateWork.Layout work = mode == GateMode.WHOLE_GRID ? null
                : GateWork.Layout.of(sh.batch(), sh.qLen(), sh.heads(), plan.blockRows(), mode == GateMode.COMPACT);
        long need = layoutBytes + (work == null ? 0 : work.bytes());
        if (need > 0 && (c.workspace() == 0 || c.workspaceBytes() < need)) {
            throw new IllegalArgumentException("the call needs " + need + " bytes of workspace (sparse layout " + layoutBytes
                    + ", work list " + (need - layoutBytes) + "), it gives " + c.workspaceBytes() + " (" + sh + ", "
                    + c.pattern().spec() + ")");
        }
        device.makeCurrent();
        AttentionParams.Sparse sparse = AttentionParams.Sparse.NONE;
        if (t != null) {
            // Borrowed views of the caller's workspace: nothing to free.
            sparse = hl.copyInto(device, c.workspace(), stream).params(t.layoutHeads());
        }
        KernelModule m = module(plan.module());
        if (plan.sharedBytes() > 48 * 1024) {
            m.allowSharedMemory(plan.kernel(), plan.sharedBytes());
        }
        AttentionParams.Strides st = c.strides();
        if (work == null) {
            byte[] params = AttentionParams.encode(new AttentionParams.Pointers(c.q(), c.k(), c.v(), c.o(), 0, c.gate(), 0), sparse,
                    AttentionParams.Rows.NONE, st, sh.batch(), sh.heads(), sh.kvHeads(), sh.qLen(), sh.kvLen(),
                    sh.headDim(), FlashPlan.causal(c.pattern()), 0, c.scale());
            m.launch(plan.kernel(), plan.gridX(), plan.gridY(), plan.gridZ(), plan.threads(), plan.sharedBytes(), stream, params);
            return;
        }
        GateWork.Layout w = work.at(c.workspace() + layoutBytes);
        // Rows no launched block writes (tiles off the list, rows left out by compaction) are gated ones: o = 0.
        for (long[] z : zeroSpans(st, sh, c.dtype().byteSize())) {
            CudaException.check(JCudaDriver.cuMemsetD2D8Async(DevicePointers.of(c.o() + z[0]), z[1], (byte) 0, z[2], z[3],
                    stream.handle()), "cuMemsetD2D8Async(o + " + z[0] + ", pitch " + z[1] + ", " + z[2] + " x " + z[3]
                    + " bytes, " + sh + ")", device.describe());
        }
        GateWork.queue(module(GateWork.MODULE), stream, c.gate(), w, sh.batch(), sh.qLen(), sh.heads(), plan.blockRows(),
                mode == GateMode.COMPACT);
        long grid = plan.blocks(); // ≤ Integer.MAX_VALUE / 3: GateWork.Layout.of checked it
        byte[] params = AttentionParams.encode(new AttentionParams.Pointers(c.q(), c.k(), c.v(), c.o(), 0, c.gate(), w.list()),
                sparse, mode == GateMode.COMPACT ? new AttentionParams.Rows(w.rows(), w.counts()) : AttentionParams.Rows.NONE,
                w.total(), st, sh.batch(), sh.heads(), sh.kvHeads(), sh.qLen(), sh.kvLen(), sh.headDim(),
                FlashPlan.causal(c.pattern()), (int) grid, c.scale());
        m.launch(plan.kernel(), (int) grid, 1, 1, plan.threads(), plan.sharedBytes(), stream, params);
    }

    /**
     * The 2-D memsets {offset, pitch, width, height} (bytes from o; rows of width bytes, pitch apart)
     * that zero exactly the (B, H, L, D) elements of an o at {@code strides}, without touching what lies
     * between them (other heads' rows of a (B, L, H', D) buffer): whole rows of heads side by side when
     * heads are D apart, whole (b, h) planes when rows are, else one D-wide column per (b, h).
     */
    static List<long[]> zeroSpans(AttentionParams.Strides strides, AttentionShape sh, long es) {
        long sb = strides.o()[0];
        long shd = strides.o()[1];
        long sr = strides.o()[2];
        long d = sh.headDim();
        int nb = sh.batch();
        int nh = sh.heads();
        int nl = sh.qLen();
        List<long[]> out = new ArrayList<>();
        if (shd == d && sr >= nh * d) {
            if (sb == nl * sr) {
                out.add(new long[] {0, sr * es, nh * d * es, (long) nb * nl});
            } else {
                for (int b = 0; b < nb; b++) {
                    out.add(new long[] {b * sb * es, sr * es, nh * d * es, nl});
                }
            }
        } else if (sr == d && shd >= nl * d) {
            if (sb == nh * shd) {
                out.add(new long[] {0, shd * es, nl * d * es, (long) nb * nh});
            } else {
                for (int b = 0; b < nb; b++) {
                    out.add(new long[] {b * sb * es, shd * es, nl * d * es, nh});
                }
            }
        } else {
            if (sr < d) {
                throw new IllegalArgumentException("o rows overlap: row stride " + sr + " < D = " + d);
            }
            for (int b = 0; b < nb; b++) {
                for (int h = 0; h < nh; h++) {
                    out.add(new long[] {(b * sb + h * shd) * es, sr * es, d * es, nl});
                }
            }
        }
        return out;
    }

    /**
     * A layout in the tiles of this engine's block-sparse kernel, and its page-locked copy, made by the first
     * {@link #launch} that copies the layout into a caller's workspace (one asynchronous copy per call, nothing
     * waited for). After each copy an event is recorded on the copy's stream, one event per stream, re-recorded
     * (stream order: its last recording follows every earlier copy there): the copy may be freed once they have
     * all completed.
     */
    private static final class HostLayout implements AutoCloseable {
        /** Streams a layout's events are kept for before the completed ones are pruned. */
        private static final int MAX_STREAMS = 8;
        final SparseTiles tiles;
        DeviceTileLists.Pinned pinned;
        private final Map<CudaStream, CudaEvent> copies = new IdentityHashMap<>();

        HostLayout(SparseTiles tiles) {
            this.tiles = tiles;
        }

        DeviceTileLists copyInto(CudaDevice device, long workspace, CudaStream stream) {
            if (pinned == null) {
                pinned = new DeviceTileLists.Pinned(device, tiles.lists());
            }
            CudaEvent done = copies.get(stream);
            if (done == null) {
                if (copies.size() >= MAX_STREAMS) {
                    pruneCompleted();
                }
                done = new CudaEvent(device, false);
                copies.put(stream, done);
            }
            DeviceTileLists views = pinned.into(device, workspace, stream);
            done.record(stream);
            return views;
        }

        /** Whether no queued copy may still read the page-locked copy (queries events: does not block). */
        boolean idle() {
            for (CudaEvent e : copies.values()) {
                if (!e.isComplete()) {
                    return false;
                }
            }
            return true;
        }

        private void pruneCompleted() {
            for (Iterator<CudaEvent> it = copies.values().iterator(); it.hasNext(); ) {
                CudaEvent e = it.next();
                if (e.isComplete()) {
                    it.remove();
                    e.close();
                }
            }
        }

        /** Frees the page-locked copy and the events: only once no copy from it is queued. */
        @Override
        public void close() {
            RuntimeException first = null;
            for (CudaEvent e : copies.values()) {
                first = closeQuietly(e, first);
            }
            copies.clear();
            first = closeQuietly(pinned, first);
            pinned = null;
            if (first != null) {
                throw first;
            }
        }
    }

    /** The layout in the tiles of this engine's block-sparse kernel (its tiling's rows), built once and cached. */
    private SparseTiles hostTiles(AttentionShape sh, DType dt, Pattern pattern, int blockSize) {
        return hostLayout(sh, dt, pattern, blockSize).tiles;
    }

    /**
     * {@link #hostTiles}' cache entry. The least recently used one goes when a ninth is added; its page-locked copy,
     * which a queued copy on some caller's stream may still read, is retired and freed once its events say no copy
     * is pending (checked here, without blocking, on every call; at {@link #close} after waiting for the device).
     */
    private HostLayout hostLayout(AttentionShape sh, DType dt, Pattern pattern, int blockSize) {
        FlashPlan plan = FlashPlan.sparse(sh, dt, tiling);
        LayoutKey key = new LayoutKey(pattern, sh.qLen(), sh.kvLen(), sh.heads(), blockSize, plan.blockRows(), plan.tileKeys());
        freeIdleRetired();
        HostLayout l = hostTiles.get(key);
        if (l == null) {
            l = new HostLayout(kernelTiles(sh, dt, pattern, blockSize, tiling));
            if (hostTiles.size() >= MAX_CACHED_LAYOUTS) {
                Iterator<HostLayout> oldest = hostTiles.values().iterator();
                HostLayout old = oldest.next();
                oldest.remove();
                if (old.pinned != null) {
                    retiredLayouts.add(old);
                }
            }
            hostTiles.put(key, l);
        }
        return l;
    }

    /** Frees the retired layouts no queued copy reads any more. */
    private void freeIdleRetired() {
        for (Iterator<HostLayout> it = retiredLayouts.iterator(); it.hasNext(); ) {
            HostLayout old = it.next();
            if (old.idle()) {
                it.remove();
                old.close();
            }
        }
    }

    /** Page-locked layout copies evicted but not yet freed (a queued copy may read them), for tests. */
    int retiredLayoutCopies() {
        return retiredLayouts.size();
    }

    /**
     * The algorithm that runs: auto and flash take dense/causal on the dense kernels and route every
     * other pattern to the block-sparse kernels; sparse runs the block-sparse kernels for every pattern.
     *
     * @param requested the algorithm asked for
     * @param pattern   the effective pattern
     * @return flash, sparse or materialized, never auto
     */
    public static Algorithm route(Algorithm requested, Pattern pattern) {
        return switch (requested) {
            case AUTO, FLASH -> FlashPlan.flashSupports(pattern) ? Algorithm.FLASH : Algorithm.SPARSE;
            case MATERIALIZED -> Algorithm.MATERIALIZED;
            case SPARSE -> Algorithm.SPARSE;
        };
    }

    private static int ceilDiv(int a, int b) {
        return (int) ((a + (long) b - 1) / b);
    }

    /** How the gate shapes the launch. */
    enum GateMode {
        /** The whole grid (no gate, or no query tile wholly gated). */
        WHOLE_GRID,
        /** Block granularity: a work list of the query tiles with any non-zero gate row. */
        TILES,
        /** Token granularity: per (b, h) only the rows with a non-zero gate, compacted into tiles. */
        COMPACT
    }

    /**
     * The host's plan of one flash or sparse launch under a gate, and the exact counts of what the
     * kernel executes: query tiles launched and (query tile, key tile) pairs computed. A compacted sparse
     * launch runs the kernel that merges its rows' key lists ({@link FlashPlan#sparseMerge}); its pairs are
     * counted by the host's model of that merge ({@link CompactedSparseTiles}), and it is not chosen where
     * that kernel's shared memory would not fit.
     */
    record GatePlan(GateMode mode, long tiles, long keyTilesVisited) {
        static GatePlan of(AttentionRequest req, FlashPlan plan, SparseTiles sparse) {
            AttentionShape sh = req.shape();
            int br = plan.blockRows();
            boolean causal = FlashPlan.causal(req.pattern());
            long all = (long) sh.batch() * sh.heads() * plan.gridX();
            if (req.gate() == null) {
                long visited = 0;
                for (int h = 0; h < sh.heads(); h++) {
                    for (int t = 0; t < plan.gridX(); t++) {
                        visited += keyTiles(sh, plan, sparse, causal, h, t * br, Math.min(sh.qLen(), t * br + br) - 1, t);
                    }
                }
                return new GatePlan(GateMode.WHOLE_GRID, all, visited * sh.batch());
            }
            float[] g = req.gate().toFloatArray();
            int[] active = GateWork.activeTiles(g, sh.batch(), sh.qLen(), sh.heads(), br);
            long activeVisited = 0;
            for (int e = 0; e < active.length; e += 3) {
                int t = active[e + 2];
                activeVisited += keyTiles(sh, plan, sparse, causal, active[e + 1], t * br, Math.min(sh.qLen(), t * br + br) - 1, t);
            }
            GateWork.Compaction c = GateWork.compact(g, sh.batch(), sh.qLen(), sh.heads());
            int[] ct = GateWork.compactedTiles(c.counts(), sh.batch(), sh.heads(), br);
            // Compaction is weighed only when it launches fewer tiles; then on the key tiles both would visit.
            if (ct.length < active.length) {
                if (sparse != null) {
                    if (plan.mergeFits(sh)) {
                        long merged = CompactedSparseTiles.listedTiles(sparse, ct, c.rows(), c.counts(), sh.heads(), sh.qLen(),
                                sh.kvLen());
                        if (GateWork.compactionPays(merged, activeVisited)) {
                            return new GatePlan(GateMode.COMPACT, ct.length / 3, merged);
                        }
                    }
                } else {
                    long visited = 0;
                    int[] rows = c.rows();
                    for (int e = 0; e < ct.length; e += 3) {
                        int bh = ct[e] * sh.heads() + ct[e + 1];
                        int r0 = ct[e + 2] * br;
                        int r1 = Math.min(c.counts()[bh], r0 + br) - 1;
                        int baseRow = bh * sh.qLen();
                        visited += FlashPlan.denseKeyTiles(rows[baseRow + r0], rows[baseRow + r1], sh.qLen(), sh.kvLen(), causal,
                                plan.tileKeys());
                    }
                    if (GateWork.compactionPays(visited, activeVisited)) {
                        return new GatePlan(GateMode.COMPACT, ct.length / 3, visited);
                    }
                }
            }
            if (active.length / 3 == all) {
                return new GatePlan(GateMode.WHOLE_GRID, all, activeVisited);
            }
            return new GatePlan(GateMode.TILES, active.length / 3, activeVisited);
        }

        private static long keyTiles(AttentionShape sh, FlashPlan plan, SparseTiles sparse, boolean causal, int h, int first,
                int last, int t) {
            return sparse != null ? sparse.listed(h, t)
                    : FlashPlan.denseKeyTiles(first, last, sh.qLen(), sh.kvLen(), causal, plan.tileKeys());
        }
    }

    /** Frees the cached device layouts (they are also freed on close). */
    public void clearLayoutCache() {
        RuntimeException first = null;
        for (SparseUpload u : layouts.values()) {
            first = closeQuietly(u, first);
        }
        layouts.clear();
        if (first != null) {
            throw first;
        }
    }

    /** The device layout for this request's pattern and shape, built and uploaded once, then cached. */
    private static LayoutKey layoutKey(AttentionRequest req, FlashPlan plan) {
        AttentionShape sh = req.shape();
        return new LayoutKey(req.pattern(), sh.qLen(), sh.kvLen(), sh.heads(), req.blockSize(), plan.blockRows(),
                plan.tileKeys());
    }

    /**
     * Device bytes of the block-sparse layout this engine uploads for a request of {@code shape},
     * {@code dtype}, {@code pattern} (causal folded in) and {@code blockSize}, before the pool's rounding
     * of its four buffers: what memory plans (experiments) count for the sparse algorithm; for an engine in its
     * starting tiling ({@link #startTiling}: the 128-row tilings list 128-row tiles). It does not check that a kernel
     * takes the head dim (predictions are made for shapes the GPU may refuse).
     *
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param pattern   the effective pattern
     * @param blockSize the layout's block size, 64 or 128
     * @return device bytes of the layout
     */
    public static long sparseLayoutBytes(AttentionShape shape, DType dtype, Pattern pattern, int blockSize) {
        return sparseLayoutBytes(shape, dtype, pattern, blockSize, startTiling());
    }

    /**
     * {@link #sparseLayoutBytes(AttentionShape, DType, Pattern, int)} of an engine in {@code tiling}.
     *
     * @param shape     the sizes
     * @param dtype     f32, f16 or bf16
     * @param pattern   the effective pattern
     * @param blockSize the layout's block size, 64 or 128
     * @param tiling    the engine's tiling
     * @return device bytes of the layout
     */
    public static long sparseLayoutBytes(AttentionShape shape, DType dtype, Pattern pattern, int blockSize,
            FlashPlan.Tiling tiling) {
        return kernelTiles(shape, dtype, pattern, blockSize, tiling).deviceBytes();
    }

    private SparseUpload layout(AttentionRequest req, FlashPlan plan) {
        AttentionShape sh = req.shape();
        LayoutKey key = layoutKey(req, plan);
        SparseUpload u = layouts.get(key);
        if (u != null) {
            return u;
        }
        SparseTiles st = kernelTiles(sh, req.dtype(), req.pattern(), req.blockSize(), tiling);
        if (layouts.size() >= MAX_CACHED_LAYOUTS) {
            LayoutKey eldest = layouts.keySet().iterator().next();
            layouts.remove(eldest).close();
        }
        u = SparseUpload.upload(device, pool, stream, st);
        layouts.put(key, u);
        LOG.debug("uploaded {} ({} bytes) for {}", st, st.deviceBytes(), req.pattern().spec());
        return u;
    }

    /**
     * Builds a work list on the device from a gate (B, L, H) already in device memory at {@code gate}:
     * block granularity (tiles with any non-zero gate row) or, with {@code compact}, token granularity
     * (rows with a non-zero gate, compacted per (b, h)). {@code tileRows} is the Br of the kernel that
     * will read it (64 on tensor cores, 32 in fp32). Reads back one 4-byte count (one synchronization).
     *
     * @param gate     device address of the gate, B·L·H float32
     * @param batch    B
     * @param qLen     L
     * @param heads    H
     * @param tileRows Br of the kernel that reads the list
     * @param compact  token granularity (true) or block granularity
     * @return the work list, in buffers from the engine's pool; the caller closes it
     */
    public GateWork.DeviceWork workList(long gate, int batch, int qLen, int heads, int tileRows, boolean compact) {
        device.makeCurrent();
        return GateWork.build(device, pool, stream, module(GateWork.MODULE), gate, batch, qLen, heads, tileRows, compact);
    }

    /** The engine's stream (for tests reading back device results). */
    CudaStream stream() {
        return stream;
    }

    /** A quiet NaN of {@code dt}. */
    private static int nanBits(DType dt) {
        return switch (dt) {
            case F16 -> 0x7E00;
            case BF16 -> 0x7FC0;
            default -> 0x7FC00000;
        };
    }

    /** Query rows whose gate is zero: the kernels skip them (whole tiles of them without any work). */
    private static long zeroGates(Tensor gate) {
        if (gate == null) {
            return 0;
        }
        long n = 0;
        for (float g : gate.toFloatArray()) {
            if (g == 0f) {
                n++;
            }
        }
        return n;
    }

    DeviceTensor upload(Tensor host, DType dtype, String tag) {
        long bytes = host.numel() * dtype.byteSize();
        return DeviceTensor.upload(device, pool, stream, staging(bytes), host, dtype, tag);
    }

    /** Fails before allocating when the score matrix cannot fit, with the numbers that decide it. */
    private void checkFits(MaterializedPlan plan) {
        long[] info = device.memoryInfo();
        long limit = pool.stats().limitBytes();
        long available = Math.min(info[0] + pool.stats().cachedBytes(), limit - pool.stats().allocatedBytes());
        if (plan.totalBytes() > available) {
            throw new DeviceOutOfMemoryException("the materialized path needs " + Bytes.format(plan.totalBytes()) + " ("
                    + Bytes.format(plan.scoreBytes()) + " of " + plan.scoreDType().cliName() + " scores), but "
                    + device.describe() + " has " + Bytes.format(available) + " available (" + Bytes.format(info[0])
                    + " free of " + Bytes.format(info[1])
                    + (limit != Long.MAX_VALUE ? ", pool limit " + Bytes.format(limit) : "") + ")", plan.totalBytes());
        }
    }

    /**
     * The standard algorithm on the device: S = scale·Q·Kᵀ (cuBLAS), P = softmax(mask(S))·gate in place
     * with lse (row kernel), O = P·V (cuBLAS). GQA without copies: one strided-batched GEMM per position
     * g within a group, batched over (b, kv head), so query head kvh·G + g meets kv head kvh.
     */
    private void materialized(AttentionRequest req, DeviceTensor q, DeviceTensor k, DeviceTensor v, DeviceTensor gate,
            DeviceTensor o, DeviceTensor lse, DeviceTensor scores, DeviceTensor probs) {
        AttentionShape sh = req.shape();
        DType dt = req.dtype();
        DType st = scores.dtype();
        int groups = sh.group();
        int batch = sh.batch() * sh.kvHeads();
        long L = sh.qLen();
        long S = sh.kvLen();
        int D = sh.headDim();
        long es = dt.byteSize();
        long ss = st.byteSize();
        Cublas blas = cublas();
        for (int g = 0; g < groups; g++) {
            // Row-major S (L×S) = Q·Kᵀ is column-major Sᵀ (S×L) = Kcᵀ·Qc, where Kc (D×S) and Qc (D×L) are the
            // column-major views of row-major K and Q: m = S, n = L, k = D.
            blas.gemmStridedBatched(stream, true, false, (int) S, (int) L, D, req.scale(),
                    k.address(), D, S * D,
                    q.address() + g * L * D * es, D, groups * L * D,
                    0f, scores.address() + g * L * S * ss, (int) S, groups * L * S, batch, dt, st);
        }
        // P: over the scores (same dtype), or into its own matrix in the input dtype (fp32 scores of f16/bf16).
        byte[] sp = SoftmaxParams.encode(scores.address(), probs == null ? 0 : probs.address(), lse.address(),
                gate == null ? 0 : gate.address(), sh.heads(), sh.qLen(), sh.kvLen(), req.pattern(),
                (long) sh.batch() * sh.heads() * sh.qLen());
        String kernel = "hr_softmax_rows_" + st.cliName() + (probs == null ? "" : "_to_" + dt.cliName());
        module("softmax_rows").launch(kernel, (int) ((long) sh.batch() * sh.heads() * L), 1, 1, 256, 0, stream, sp);
        DeviceTensor p = probs == null ? scores : probs;
        long ps = p.dtype().byteSize();
        for (int g = 0; g < groups; g++) {
            // Row-major O (L×D) = P·V is column-major Oᵀ (D×L) = Vc·Pc: m = D, n = L, k = S.
            blas.gemmStridedBatched(stream, false, false, D, (int) L, (int) S, 1f,
                    v.address(), D, S * D,
                    p.address() + g * L * S * ps, (int) S, groups * L * S,
                    0f, o.address() + g * L * D * es, D, groups * L * D, batch, dt, dt);
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        RuntimeException first = null;
        // Work a failed call left queued may still use the pool's memory and the modules: wait for it before freeing
        // them (cuMemFree only "may" synchronize, and cuStreamDestroy lets queued work run on).
        first = closeQuietly(device::synchronize, first);
        for (SparseUpload u : layouts.values()) {
            first = closeQuietly(u, first);
        }
        layouts.clear();
        for (HostLayout l : hostTiles.values()) {
            first = closeQuietly(l, first);
        }
        hostTiles.clear();
        for (HostLayout l : retiredLayouts) {
            first = closeQuietly(l, first);
        }
        retiredLayouts.clear();
        for (AutoCloseable c : new AutoCloseable[] {cublas, staging, stream}) {
            first = closeQuietly(c, first);
        }
        for (KernelModule m : modules.values()) {
            first = closeQuietly(m, first);
        }
        first = closeQuietly(pool, first);
        first = closeQuietly(device, first);
        if (first != null) {
            throw first;
        }
    }

    private static RuntimeException closeQuietly(AutoCloseable c, RuntimeException first) {
        if (c == null) {
            return first;
        }
        try {
            c.close();
        } catch (Exception e) {
            RuntimeException r = e instanceof RuntimeException re ? re : new IllegalStateException(e);
            if (first == null) {
                return r;
            }
            first.addSuppressed(r);
            LOG.debug("further error while closing the CUDA engine", e);
        }
        return first;
    }

    /** {@return whether the jar carries the kernels this engine needs} (false for a build without nvcc). */
    public static boolean kernelsPackaged() {
        return KernelModule.packaged("flash_fwd_f32") && KernelModule.packaged("flash_fwd_mma")
                && KernelModule.packaged("softmax_rows") && KernelModule.packaged(GateWork.MODULE);
    }

    /** What a cached layout is built for. */
    private record LayoutKey(Pattern pattern, int qLen, int kvLen, int heads, int blockSize, int tileRows, int tileKeys) {}

    /** A layout of the engine's cache: its host tiles and their device copy. */
    record SparseUpload(SparseTiles tiles, DeviceTileLists lists) implements AutoCloseable {
        static SparseUpload upload(CudaDevice device, DevicePool pool, CudaStream stream, SparseTiles t) {
            return new SparseUpload(t, DeviceTileLists.upload(device, pool, stream, t.lists()));
        }

        long poolBytes() {
            return lists.poolBytes();
        }

        AttentionParams.Sparse params() {
            return lists.params(tiles.layoutHeads());
        }

        @Override
        public void close() {
            lists.close();
        }
    }


    /** For messages. */
    @Override
    public String toString() {
        return "CudaAttentionEngine[" + device.describe() + "]";
    }
}
