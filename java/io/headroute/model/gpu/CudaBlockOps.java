package io.headroute.model.gpu;

import static jcuda.driver.JCudaDriver.cuMemcpy2DAsync;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoH;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.CudaEvent;
import io.headroute.cuda.CudaException;
import io.headroute.cuda.CudaStream;
import io.headroute.cuda.DevicePointers;
import io.headroute.cuda.KernelModule;
import io.headroute.cuda.PinnedBuffer;
import io.headroute.cuda.Resources;
import io.headroute.cuda.blas.Cublas;
import io.headroute.cuda.memory.Bytes;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionShape;
import io.headroute.pattern.Pattern;
import io.headroute.routing.CudaHeadRouter;
import io.headroute.routing.RouterConfig;
import io.headroute.tensor.DType;
import java.nio.ByteBuffer;
import jcuda.Pointer;
import jcuda.driver.CUDA_MEMCPY2D;
import jcuda.driver.CUmemorytype;

/**
 * {@link BlockOps} on one GPU: two non-blocking streams (compute, weight copies), the block_ops.cu
 * kernels, cuBLAS GEMMs and the bound {@link DeviceAttention}. Without a bound attention every
 * attention call is refused (nothing is faked). Written without a GPU: unverified until the GPU tests
 * run on a device. Closed once.
 */
public final class CudaBlockOps implements BlockOps {
    /** The kernel family of the block's element-wise steps. */
    public static final String MODULE = "block_ops";
    private static final int THREADS = 256;

    private final CudaDevice device;
    private final DeviceAttention attention;
    private final CudaStream compute;
    private final CudaStream copy;
    private KernelModule module;
    private Cublas cublas;
    private CudaHeadRouter router;
    private boolean closed;

    /**
     * Ops on {@code device}; {@code attention} may be null (then attention is refused). Creates the two streams;
     * the kernel module, cuBLAS and the router are loaded on first use.
     *
     * @param device    the open device; not closed by these ops
     * @param attention the bound attention, or null; not closed by these ops
     * @throws io.headroute.cuda.CudaException when a stream cannot be created
     */
    public CudaBlockOps(CudaDevice device, DeviceAttention attention) {
        this.device = device;
        this.attention = attention;
        this.compute = CudaStream.create(device);
        CudaStream c;
        try {
            c = CudaStream.create(device);
        } catch (RuntimeException e) {
            compute.close();
            throw e;
        }
        this.copy = c;
    }

    /** {@return the compute lane's stream (destroyed on close)} */
    public CudaStream computeStream() {
        return compute;
    }

    private CudaStream stream(Lane lane) {
        return lane == Lane.COMPUTE ? compute : copy;
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("GPU block ops on " + device.describe() + " are closed");
        }
    }

    private KernelModule module() {
        ensureOpen(); // created lazily: after close nothing would free it
        if (module == null) {
            module = KernelModule.load(device, MODULE);
        }
        return module;
    }

    private Cublas cublas() {
        ensureOpen();
        if (cublas == null) {
            cublas = Cublas.create(device);
        }
        return cublas;
    }

    private record Pinned(PinnedBuffer pinned) implements HostBuffer {
        @Override
        public ByteBuffer buffer() {
            return pinned.buffer();
        }

        @Override
        public void close() {
            pinned.close();
        }
    }

    @Override
    public HostBuffer pinned(long bytes) {
        return new Pinned(new PinnedBuffer(device, bytes));
    }

    @Override
    public void upload(ByteBuffer src, long dst, Lane lane) {
        long n = src.remaining();
        if (n == 0) {
            return;
        }
        device.makeCurrent();
        CudaException.check(cuMemcpyHtoDAsync(DevicePointers.of(dst), Pointer.to(src.slice()), n, stream(lane).handle()),
                "cuMemcpyHtoDAsync(" + Bytes.format(n) + ", " + lane + " stream)", device.describe());
    }

    @Override
    public void download(long src, ByteBuffer dst) {
        compute.synchronize();
        long n = dst.remaining();
        device.makeCurrent();
        CudaException.check(cuMemcpyDtoH(Pointer.to(dst.slice()), DevicePointers.of(src), n),
                "cuMemcpyDtoH(" + Bytes.format(n) + ")", device.describe());
    }

    @Override
    public void rmsNorm(long x, long gamma, long out, long rows, int d, float eps, DType dtype) {
        if (rows > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("RMSNorm of " + rows + " rows exceeds one launch");
        }
        module().launch("hr_rmsnorm_" + dtype.cliName(), (int) rows, 1, 1, THREADS, 0, compute,
                BlockOpsParams.rmsNorm(x, gamma, out, rows, d, eps));
    }

    @Override
    public void rope(long x, long cosSin, long rowStride, int batch, int len, int heads, int headDim, DType dtype) {
        long pairs = (long) batch * len * heads * (headDim / 2);
        int grid = (int) Math.min((pairs + THREADS - 1) / THREADS, 1L << 20); // grid-stride loop covers the rest
        module().launch("hr_rope_" + dtype.cliName(), grid, 1, 1, THREADS, 0, compute,
                BlockOpsParams.rope(x, cosSin, rowStride, batch, len, heads, headDim));
    }

    @Override
    public void gemm(long a, long w, long c, int rows, int k, int n, float beta, DType dtype) {
        // Row-major C (rows×n) = A·W is column-major Cᵀ (n×rows) = Wᵀ·Aᵀ, where Wᵀ and Aᵀ are the column-major
        // views of row-major W (ld = n) and A (ld = k): m = n, n = rows, k = k.
        cublas().gemm(compute, false, false, n, rows, k, 1f, w, n, a, k, beta, c, n, dtype, dtype);
    }

    @Override
    public void route(long x, long wr, long logits, long gate, int batch, int len, int d, RouterConfig config, DType dtype) {
        ensureOpen();
        if (router == null) {
            router = CudaHeadRouter.on(device, null, compute); // routeInto allocates nothing
        }
        router.routeInto(x, wr, logits, gate, 0, batch, len, d, config, dtype);
    }

    @Override
    public void checkRouter(RouterConfig config) {
        if (config.routedHeads() > CudaHeadRouter.MAX_ROUTED) {
            throw new UnsupportedOperationException("the GPU router takes at most " + CudaHeadRouter.MAX_ROUTED
                    + " routed heads, got " + config.routedHeads() + "; run the model on the CPU engine");
        }
    }

    @Override
    public void gatherColumns(long src, int srcCols, long dst, int[] cols, long rows) {
        // One 2-D copy per run of consecutive columns: rows of the run's width, pitches of the two matrices.
        int at = 0;
        while (at < cols.length) {
            int run = 1;
            while (at + run < cols.length && cols[at + run] == cols[at] + run) {
                run++;
            }
            CUDA_MEMCPY2D c = new CUDA_MEMCPY2D();
            c.srcMemoryType = CUmemorytype.CU_MEMORYTYPE_DEVICE;
            c.srcDevice = DevicePointers.of(src + 4L * cols[at]);
            c.srcPitch = 4L * srcCols;
            c.dstMemoryType = CUmemorytype.CU_MEMORYTYPE_DEVICE;
            c.dstDevice = DevicePointers.of(dst + 4L * at);
            c.dstPitch = 4L * cols.length;
            c.WidthInBytes = 4L * run;
            c.Height = rows;
            device.makeCurrent();
            CudaException.check(cuMemcpy2DAsync(c, compute.handle()), "cuMemcpy2DAsync(gate columns " + cols[at] + "…"
                    + (cols[at] + run - 1) + " of " + srcCols + ", " + rows + " rows)", device.describe());
            at += run;
        }
    }

    @Override
    public long attentionWorkspace(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, int gateBlock) {
        return attention == null ? MemoryPlan.Workspace.STANDARD.bytes(shape, dtype, algorithm, pattern, gateBlock)
                : attention.workspaceBytes(shape, dtype, algorithm, pattern, gateBlock);
    }

    @Override
    public void checkAttention(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern) {
        if (attention == null) {
            throw new UnsupportedOperationException("no GPU attention is bound to the GPU model (a "
                    + DeviceAttentionProvider.class.getName() + " service); run the model on the CPU engine");
        }
        attention.check(shape, dtype, algorithm, pattern);
    }

    @Override
    public void attention(DeviceAttentionCall call) {
        if (attention == null) {
            throw new UnsupportedOperationException("no GPU attention is bound to the GPU model");
        }
        attention.run(call, compute);
    }

    @Override
    public AttentionWork attentionWork(DeviceAttentionCall call) {
        if (attention == null) {
            throw new UnsupportedOperationException("no GPU attention is bound to the GPU model");
        }
        return attention.work(call, compute);
    }

    private static final class Event implements Marker {
        final CudaEvent event;

        Event(CudaEvent event) {
            this.event = event;
        }

        @Override
        public void close() {
            event.close();
        }
    }

    @Override
    public Marker mark(Lane lane) {
        CudaEvent e = new CudaEvent(device);
        try {
            e.record(stream(lane));
        } catch (RuntimeException ex) {
            e.close();
            throw ex;
        }
        return new Event(e);
    }

    @Override
    public void waitFor(Lane lane, Marker m) {
        stream(lane).waitFor(((Event) m).event);
    }

    @Override
    public float millis(Marker from, Marker to) {
        return ((Event) to).event.millisSince(((Event) from).event);
    }

    @Override
    public void synchronize() {
        compute.synchronize();
        copy.synchronize();
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        // Work still queued on the lanes may use the module, cuBLAS or the router: wait for it first.
        Resources.closeAll(this::synchronize, router, cublas, module, copy, compute);
    }
}
