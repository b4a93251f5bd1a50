package io.headroute.routing;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.CudaStream;
import io.headroute.cuda.DeviceTensor;
import io.headroute.cuda.EventTimer;
import io.headroute.cuda.JCudaAllocator;
import io.headroute.cuda.KernelModule;
import io.headroute.cuda.Resources;
import io.headroute.cuda.blas.Cublas;
import io.headroute.cuda.memory.DeviceBuffer;
import io.headroute.cuda.memory.DevicePool;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * The head router on one GPU: the logits Z = X·Wr by one cuBLAS GEMM (fp32 accumulation and output),
 * then {@code hr_router_topk} (cuda-kernels/router.cu) for softmax, top-k, renormalization and block
 * averaging, writing the gate (B, L, H) float32 into device memory from the pool (tag "router"). The
 * device-tensor {@link #route(DeviceTensor, DeviceTensor, RouterConfig, DeviceTensor)} only enqueues
 * work on the stream: no transfer and no synchronization (a logits buffer that has to grow is closed after a
 * fence: {@link io.headroute.cuda.memory.DeviceBuffer#closeAfter}). Not yet run on a GPU (written without one).
 * Not thread-safe.
 */
public final class CudaHeadRouter implements HeadRouter {
    /** The kernel's lanes hold two routed heads each. */
    public static final int MAX_ROUTED = 64;
    static final String MODULE = "router";
    static final String KERNEL = "hr_router_topk";
    /** Four warps per block, one routing group per warp. */
    static final int THREADS = 128;
    static final int GROUPS_PER_BLOCK = THREADS / 32;
    static final String TAG = "router";

    private final CudaDevice device;
    private final DevicePool pool;
    private final CudaStream stream;
    private final boolean ownsContext;
    private final List<AutoCloseable> owned = new ArrayList<>();
    private final Cublas cublas;
    private final KernelModule module;
    /** The logits Z, reused across calls: all of the router's work runs in order on its stream. */
    private DeviceBuffer logits;
    private boolean closed;

    private CudaHeadRouter(CudaDevice device, DevicePool pool, CudaStream stream, boolean ownsContext) {
        this.device = device;
        this.pool = pool;
        this.stream = stream;
        this.ownsContext = ownsContext;
        Cublas b = Cublas.create(device);
        try {
            this.module = KernelModule.load(device, MODULE);
        } catch (RuntimeException e) {
            b.close();
            throw e;
        }
        this.cublas = b;
    }

    /**
     * A router on GPU {@code ordinal} with its own pool and stream (closed with it).
     *
     * @param ordinal the CUDA device index, from 0
     * @return an open router that owns its context, pool and stream; the caller closes it
     * @throws io.headroute.cuda.CudaException         when the device, pool, stream or kernel cannot be set up
     * @throws UnsupportedOperationException when cuBLAS cannot be loaded
     */
    public static CudaHeadRouter open(int ordinal) {
        CudaDevice d = CudaDevice.open(ordinal);
        DevicePool p = null;
        CudaStream s = null;
        try {
            p = DevicePool.create(new JCudaAllocator(d), "cuda:" + ordinal + " router", false);
            s = CudaStream.create(d);
            CudaHeadRouter r = new CudaHeadRouter(d, p, s, true);
            r.owned.add(s);
            r.owned.add(p);
            r.owned.add(d);
            return r;
        } catch (RuntimeException e) {
            throw Resources.closeAfter(e, s, p, d);
        }
    }

    /**
     * A router that works on the caller's device, pool and stream (not closed with it); {@code pool} may be
     * null when only {@link #routeInto} is used.
     *
     * @param device the device whose context the work runs in
     * @param pool   where gates and the logits scratch come from, or null (then only {@link #routeInto} works)
     * @param stream the stream all the router's work is enqueued on
     * @return a router; closing it releases only its cuBLAS handle, kernel module and scratch
     */
    public static CudaHeadRouter on(CudaDevice device, DevicePool pool, CudaStream stream) {
        return new CudaHeadRouter(device, pool, stream, false);
    }

    /** {@return whether the jar carries the router kernel} (false for a build without nvcc). */
    public static boolean kernelsPackaged() {
        return KernelModule.packaged(MODULE);
    }

    @Override
    public String name() {
        return "cuda";
    }

    @Override
    public String device() {
        return device.describe();
    }

    /** {@return the pool the gate comes from (statistics, leak checks)}, or null for a router given none. */
    public DevicePool pool() {
        return pool;
    }

    /**
     * {@return the device bytes the router keeps between calls (its logits buffer, as the pool accounts them)}, for
     * leak checks; 0 before the first {@link #route(DeviceTensor, DeviceTensor, RouterConfig, DeviceTensor) route}.
     */
    public long scratchBytes() {
        return logits == null ? 0 : logits.size();
    }

    /** Refuses what the kernel cannot do, before any device work. */
    static void checkSupported(RouterConfig c) {
        if (c.routedHeads() > MAX_ROUTED) {
            throw new UnsupportedOperationException("the GPU router takes at most " + MAX_ROUTED + " routed heads, got "
                    + c.routedHeads() + "; use --backend cpu");
        }
    }

    /**
     * Enqueues routing on the stream: X (B, L, d_model) and Wr (d_model, Hr) on the device in the same
     * dtype (f32, f16 or bf16); returns the gate (B, L, H) float32, owned by the caller (close it). When
     * {@code probs} (B, L, Hr) float32 is given, the per-token probabilities are written there too. Memory
     * owned by another framework (raw device pointers) enters as {@link DeviceTensor#borrow}. Work that
     * wrote X or Wr on another stream must be finished (or waited for) first.
     *
     * @param x      X (B, L, d_model), f32, f16 or bf16
     * @param wr     Wr (d_model, Hr), in the dtype of X
     * @param config the routing; at most {@link #MAX_ROUTED} routed heads
     * @param probs  (B, L, Hr) float32 to receive the per-token probabilities, or null
     * @return the gate (B, L, H) float32 from the router's pool (tag "router"), filled once the stream reaches it
     * @throws IllegalStateException         when the router is closed
     * @throws UnsupportedOperationException for more than {@link #MAX_ROUTED} routed heads
     * @throws IllegalArgumentException      when the shapes or dtypes do not match
     */
    public DeviceTensor route(DeviceTensor x, DeviceTensor wr, RouterConfig config, DeviceTensor probs) {
        if (closed) {
            throw new IllegalStateException("CUDA head router is closed");
        }
        checkSupported(config);
        if (x.shape().length != 3 || wr.shape().length != 2 || wr.dim(0) != x.dim(2) || wr.dim(1) != config.routedHeads()) {
            throw new IllegalArgumentException("router inputs " + x + " and " + wr + " do not match (B, L, d_model) and (d_model, "
                    + config.routedHeads() + ")");
        }
        if (x.dtype() != wr.dtype()) {
            throw new IllegalArgumentException("X " + x + " and Wr " + wr + " must have the same dtype on the device");
        }
        long tokens = x.dim(0) * x.dim(1);
        if (tokens > Integer.MAX_VALUE || x.dim(2) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("X " + x + " has too many tokens for one GEMM");
        }
        if (probs != null && (probs.dtype() != DType.F32 || probs.numel() != tokens * config.routedHeads())) {
            throw new IllegalArgumentException("probabilities " + probs + " must be float32 (B, L, " + config.routedHeads() + ")");
        }
        int hr = config.routedHeads();
        DeviceTensor gate = DeviceTensor.allocate(device, pool, DType.F32, TAG, x.dim(0), x.dim(1), config.heads());
        try {
            long z = logitsScratch(tokens * hr);
            routeInto(x.address(), wr.address(), z, gate.address(), probs == null ? 0 : probs.address(), (int) x.dim(0),
                    (int) x.dim(1), (int) x.dim(2), config, x.dtype());
            return gate;
        } catch (RuntimeException e) {
            gate.close();
            throw e;
        }
    }

    /**
     * Enqueues routing on the stream into buffers the caller owns (a layer scheduler's memory plan): X
     * (B·L, d_model) and Wr (d_model, Hr) in {@code dtype}, {@code logits} scratch of B·L·Hr float32, the
     * gate (B, L, H) float32, and optionally ({@code probs} ≠ 0) the probabilities (B, L, Hr) float32.
     * Allocates nothing.
     *
     * @param x      device address of X, B·L·d_model elements of {@code dtype}
     * @param wr     device address of Wr, d_model·Hr elements of {@code dtype}
     * @param logits device address of the scratch for Z = X·Wr, B·L·Hr float32
     * @param gate   device address of the gate output, B·L·H float32
     * @param probs  device address of the probabilities output, B·L·Hr float32, or 0 for none
     * @param batch  B
     * @param len    L, tokens per sequence
     * @param dModel d_model, the width of X
     * @param config the routing; at most {@link #MAX_ROUTED} routed heads
     * @param dtype  the dtype of X and Wr: f32, f16 or bf16
     * @throws IllegalStateException         when the router is closed
     * @throws UnsupportedOperationException for more than {@link #MAX_ROUTED} routed heads
     * @throws IllegalArgumentException      when B·L exceeds {@code Integer.MAX_VALUE}
     */
    public void routeInto(long x, long wr, long logits, long gate, long probs, int batch, int len, int dModel,
            RouterConfig config, DType dtype) {
        if (closed) {
            throw new IllegalStateException("CUDA head router is closed");
        }
        checkSupported(config);
        long tokens = (long) batch * len;
        if (tokens > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(tokens + " tokens are too many for one router GEMM");
        }
        int hr = config.routedHeads();
        // Row-major Z (N×Hr) = X·Wr is column-major Zᵀ (Hr×N) = Wrc·Xc, where Wrc (Hr×d) and Xc (d×N) are the
        // column-major views of row-major Wr and X: m = Hr, n = N, k = d.
        cublas.gemm(stream, false, false, hr, (int) tokens, dModel, 1f, wr, hr, x, dModel, 0f, logits, hr, dtype, DType.F32);
        byte[] params = RouterParams.encode(logits, gate, probs, batch, len, config);
        long groups = RouterParams.groups(batch, len, config.block());
        module.launch(KERNEL, (int) ((groups + GROUPS_PER_BLOCK - 1) / GROUPS_PER_BLOCK), 1, 1, THREADS, 0, stream, params);
    }

    /**
     * The address of a logits buffer of at least {@code elements} floats, kept between calls. A smaller one
     * is closed after a fence on the router's stream: earlier launches may still read it, and the pool
     * hands its block to no one until they have finished.
     */
    private long logitsScratch(long elements) {
        long bytes = Math.multiplyExact(elements, 4L);
        if (logits == null || logits.requestedBytes() < bytes) {
            if (logits != null) {
                logits.closeAfter(stream.fence());
                logits = null;
            }
            logits = pool.allocate(bytes, TAG);
        }
        return logits.address();
    }

    @Override
    public RouterOutput route(Tensor x, Tensor wr, RouterConfig config, DType dtype) {
        // Before any upload: a closed router's pool is closed too, and would fail with a message about the pool.
        if (closed) {
            throw new IllegalStateException("CUDA head router is closed");
        }
        HeadRouter.checkInputs(x, wr, config, dtype);
        checkSupported(config);
        // On the given values, so that a message can say "in f16 (1000000.0 -> Infinity)".
        HeadRouter.checkLogitBound(x.requireFinite("X", dtype), wr.requireFinite("Wr", dtype), x.dim(2));
        Tensor xr = x.toDType(dtype);
        Tensor wrr = wr.toDType(dtype);
        device.makeCurrent();
        try (DeviceTensor dx = DeviceTensor.upload(device, pool, stream, null, xr, dtype, TAG);
                DeviceTensor dw = DeviceTensor.upload(device, pool, stream, null, wrr, dtype, TAG);
                DeviceTensor probs = DeviceTensor.allocate(device, pool, DType.F32, TAG, x.dim(0), x.dim(1), config.routedHeads());
                EventTimer timer = new EventTimer(stream)) {
            // The uploads ran on the router's stream (and waited for it); the whole context once more, so that nothing
            // else queued on the device runs inside the timed part.
            device.synchronize();
            timer.start();
            float ms;
            Tensor gateHost;
            try (DeviceTensor gate = route(dx, dw, config, probs)) {
                ms = timer.stopMillis();
                gateHost = gate.download(stream, null);
            }
            Tensor probsHost = probs.download(stream, null);
            return new RouterOutput(gateHost.toDType(DType.F32), probsHost,
                    RouterStats.of(config, gateHost.toFloatArray(), probsHost.toFloatArray()), name(), (long) (ms * 1e6));
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        List<AutoCloseable> all = new ArrayList<>();
        if (logits != null) {
            all.add(stream::synchronize); // an enqueued launch may still read the logits
            all.add(logits);
        }
        all.add(module);
        all.add(cublas);
        if (ownsContext) {
            all.addAll(owned);
        }
        Resources.closeAll(all);
    }

    @Override
    public String toString() {
        return "CudaHeadRouter[" + device.describe() + "]";
    }
}
