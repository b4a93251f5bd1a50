package io.headroute.engine.cuda;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.CudaStream;
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
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.HashMap;
import java.util.Map;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * Attention on one GPU: the fused flash kernels (fp32 on CUDA cores, fp16/bf16 on tensor cores) and
 * the materialized baseline (cuBLAS GEMMs around a row-softmax kernel). Host tensors are uploaded,
 * the computation is timed with CUDA events (transfers excluded), and the results are copied back.
 * Device memory comes from the engine's {@link DevicePool}; its statistics say what each call cost.
 * Not thread-safe: one caller at a time.
 */
public final class CudaAttentionEngine implements AttentionEngine {
    private static final Logger LOG = LogManager.getLogger(CudaAttentionEngine.class);
    private static final long STAGING_CHUNK = 32L << 20;
    private static final long STAGING_THRESHOLD = 4L << 20;

    private final CudaDevice device;
    private final DevicePool pool;
    private final CudaStream stream;
    private final Map<String, KernelModule> modules = new HashMap<>();
    private PinnedStaging staging;
    private Cublas cublas;
    private boolean poisonOutputs;
    private boolean closed;

    private CudaAttentionEngine(CudaDevice device, DevicePool pool) {
        this.device = device;
        this.pool = pool;
        this.stream = CudaStream.create(device);
    }

    /** Opens GPU {@code ordinal} with an uncapped pool. */
    public static CudaAttentionEngine open(int ordinal) {
        CudaDevice d = CudaDevice.open(ordinal);
        try {
            return new CudaAttentionEngine(d, DevicePool.create(new JCudaAllocator(d), "cuda:" + ordinal, false));
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
    }

    /** Opens GPU {@code ordinal} with a pool capped at {@code limitBytes}, to emulate a smaller card. */
    public static CudaAttentionEngine open(int ordinal, long limitBytes) {
        CudaDevice d = CudaDevice.open(ordinal);
        try {
            return new CudaAttentionEngine(d, DevicePool.withLimit(new JCudaAllocator(d), "cuda:" + ordinal, limitBytes, false));
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

    /** The engine's device memory pool (statistics, limits, leak checks). */
    public DevicePool pool() {
        return pool;
    }

    /**
     * Fills o and lse with NaN before every computation, so that a kernel that leaves an element unwritten
     * is caught by the tests instead of passing on stale memory from the pool.
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
        Algorithm algo = switch (req.algorithm()) {
            case AUTO, FLASH -> Algorithm.FLASH;
            case MATERIALIZED -> Algorithm.MATERIALIZED;
            case SPARSE -> throw new UnsupportedOperationException(
                    "the block-sparse GPU kernel (issue 5) is not in this build; use --algo flash or --backend cpu");
        };
        // Refuse what cannot run before any device memory is touched.
        FlashPlan flash = algo == Algorithm.FLASH ? FlashPlan.of(sh, dt, req.pattern()) : null;
        MaterializedPlan mat = algo == Algorithm.MATERIALIZED ? MaterializedPlan.of(sh, dt, req.gate() != null) : null;
        if (mat != null) {
            SoftmaxParams.rule(req.pattern());
            cublas();
            checkFits(mat);
        }
        device.makeCurrent();
        pool.resetPeakStats();
        long base = pool.stats().allocatedBytes();
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
            if (flash != null) {
                KernelModule m = module(flash.module());
                if (flash.sharedBytes() > 48 * 1024) {
                    m.allowSharedMemory(flash.kernel(), flash.sharedBytes());
                }
                byte[] params = AttentionParams.encode(
                        new AttentionParams.Pointers(q.address(), k.address(), v.address(), o.address(), lse.address(),
                                gate == null ? 0 : gate.address(), 0),
                        AttentionParams.Strides.contiguous(sh.heads(), sh.kvHeads(), sh.qLen(), sh.kvLen(), sh.headDim()),
                        sh.batch(), sh.heads(), sh.kvHeads(), sh.qLen(), sh.kvLen(), sh.headDim(),
                        FlashPlan.causal(req.pattern()), 0, req.scale());
                timer.start();
                m.launch(flash.kernel(), flash.gridX(), flash.gridY(), flash.gridZ(), flash.threads(), flash.sharedBytes(),
                        stream, params);
                ms = timer.stopMillis();
                workspace = 0;
            } else {
                try (DeviceTensor scores = DeviceTensor.allocate(device, pool, mat.scoreDType(), "scores", sh.batch(),
                        sh.heads(), sh.qLen(), sh.kvLen())) {
                    timer.start();
                    materialized(req, q, k, v, gate, o, lse, scores);
                    ms = timer.stopMillis();
                    workspace = scores.byteSize();
                }
            }
            long peak = pool.stats().peakAllocatedBytes() - base;
            Tensor oh = o.download(stream, staging(o.byteSize()));
            Tensor lh = req.wantLse() ? lse.download(stream, staging(lse.byteSize())) : null;
            long tiles = flash != null ? flash.blocks() : (long) sh.batch() * sh.heads();
            ExecutionStats st = new ExecutionStats(name(), algo, (long) (ms * 1e6), workspace, tiles, -1, -1,
                    zeroGates(req.gate()), peak);
            return new AttentionResult(oh, lh, st);
        }
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

    private DeviceTensor upload(Tensor host, DType dtype, String tag) {
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
            DeviceTensor o, DeviceTensor lse, DeviceTensor scores) {
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
        byte[] sp = SoftmaxParams.encode(scores.address(), lse.address(), gate == null ? 0 : gate.address(), sh.heads(),
                sh.qLen(), sh.kvLen(), req.pattern(), (long) sh.batch() * sh.heads() * sh.qLen());
        module("softmax_rows").launch("hr_softmax_rows_" + st.cliName(), (int) ((long) sh.batch() * sh.heads() * L), 1, 1, 256,
                0, stream, sp);
        for (int g = 0; g < groups; g++) {
            // Row-major O (L×D) = P·V is column-major Oᵀ (D×L) = Vc·Pc: m = D, n = L, k = S.
            blas.gemmStridedBatched(stream, false, false, D, (int) L, (int) S, 1f,
                    v.address(), D, S * D,
                    scores.address() + g * L * S * ss, (int) S, groups * L * S,
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

    /** Whether the jar carries the kernels this engine needs. */
    public static boolean kernelsPackaged() {
        return KernelModule.packaged("flash_fwd_f32") && KernelModule.packaged("flash_fwd_mma")
                && KernelModule.packaged("softmax_rows");
    }

    /** For messages. */
    @Override
    public String toString() {
        return "CudaAttentionEngine[" + device.describe() + "]";
    }
}
