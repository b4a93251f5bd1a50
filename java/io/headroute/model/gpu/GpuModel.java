package io.headroute.model.gpu;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.JCudaAllocator;
import io.headroute.cuda.Resources;
import io.headroute.cuda.memory.Bytes;
import io.headroute.cuda.memory.DeviceOutOfMemoryException;
import io.headroute.cuda.memory.DevicePool;
import io.headroute.model.Model;
import io.headroute.tensor.Tensor;
import java.util.List;

/**
 * A {@link Model} on one GPU: device, pool, {@link CudaBlockOps} and a {@link LayerScheduler}. Each
 * forward pass first checks its {@link MemoryPlan} against the device's free memory and refuses,
 * without allocating, a pass that cannot fit. Attention comes from the {@link DeviceAttention} given,
 * or from the {@link DeviceAttentionProvider} on the class path; with neither, opening refuses.
 * Written without a GPU: unverified until its GPU tests run on a device.
 */
public final class GpuModel implements AutoCloseable {
    private final CudaDevice device;
    private final DevicePool pool;
    private final DeviceAttention attention;
    private final CudaBlockOps ops;
    private final LayerScheduler scheduler;
    private boolean closed;

    private GpuModel(CudaDevice device, DevicePool pool, DeviceAttention attention, Model model, WeightPlacement placement) {
        this.device = device;
        this.pool = pool;
        this.attention = attention;
        this.ops = new CudaBlockOps(device, attention);
        LayerScheduler s;
        try {
            s = new LayerScheduler(model, placement, pool, ops);
        } catch (RuntimeException e) {
            ops.close();
            throw e;
        }
        this.scheduler = s;
    }

    /**
     * Opens GPU {@code ordinal} with the attention of the class path's {@link DeviceAttentionProvider}.
     *
     * @param ordinal   the CUDA device index
     * @param model     the host model whose weights are uploaded (resident) or pinned (just in time)
     * @param placement where the weights live
     * @return the GPU model, owning its device, pool and attention
     * @throws UnsupportedOperationException when no provider is on the class path
     * @throws DeviceOutOfMemoryException    when the weights do not fit the device's free memory
     */
    public static GpuModel open(int ordinal, Model model, WeightPlacement placement) {
        DeviceAttentionProvider provider = DeviceAttentionProvider.find().orElseThrow(() -> new UnsupportedOperationException(
                "no GPU attention is bound to GPU models (no " + DeviceAttentionProvider.class.getName()
                        + " service on the class path); run the model on the CPU engine"));
        CudaDevice d = CudaDevice.open(ordinal);
        DeviceAttention attention = null;
        try {
            attention = provider.open(d);
            return open(d, attention, model, placement);
        } catch (RuntimeException e) {
            throw Resources.closeAfter(e, attention, d);
        }
    }

    /**
     * A GPU model on an opened device with a given attention; the model owns both once this returns (on
     * failure the caller still does).
     *
     * @param device    the open device
     * @param attention the attention to bind; not null
     * @param model     the host model
     * @param placement where the weights live
     * @return the GPU model
     * @throws UnsupportedOperationException when {@code attention} is null
     * @throws DeviceOutOfMemoryException    when the weights do not fit the device's free memory
     */
    public static GpuModel open(CudaDevice device, DeviceAttention attention, Model model, WeightPlacement placement) {
        if (attention == null) {
            throw new UnsupportedOperationException("no GPU attention is bound to the GPU model; run it on the CPU engine");
        }
        DevicePool pool = DevicePool.create(new JCudaAllocator(device), "model on " + device.describe(), false);
        try {
            // The weights alone: a pass's scratch depends on its shape (a layout pattern or the materialized
            // algorithm has no plan at a dummy one), and forward checks it.
            long weights = MemoryPlan.weightBytes(model.config(), placement);
            long free = device.memoryInfo()[0];
            if (weights > free) {
                throw new DeviceOutOfMemoryException("the model's " + placement.cliName() + " weights need "
                        + Bytes.format(weights) + ", card has " + Bytes.format(free) + " free (" + device.describe() + ")",
                        weights);
            }
            return new GpuModel(device, pool, attention, model, placement);
        } catch (RuntimeException e) {
            pool.close();
            throw e;
        }
    }

    /**
     * The plan of a forward pass of this size (nothing is allocated).
     *
     * @param batch B
     * @param len   L
     * @param gates whether the caller gives gates
     * @return the buffers the pass would hold, with the bound attention's workspaces
     */
    public MemoryPlan plan(int batch, int len, boolean gates) {
        return scheduler.plan(batch, len, gates);
    }

    /**
     * All layers on {@code x} (B, L, d_model) with optional per-layer gates; refuses with "needs …, card
     * has … free" when the plan's scratch does not fit next to the weights already resident.
     *
     * @param x     the input (B, L, d_model)
     * @param gates one (B, L, H) gate or null per layer, or null
     * @return the output, per-layer times and memory statistics
     * @throws io.headroute.engine.ShapeException for an input or gate of the wrong shape, or a non-finite gate value
     * @throws DeviceOutOfMemoryException         when the pass's scratch does not fit free memory plus the pool's
     *                                            cache
     */
    public LayerScheduler.Result forward(Tensor x, List<Tensor> gates) {
        // Bad input is refused as such before its size is weighed; the scheduler allocates a gate buffer only when
        // some layer has a gate: the plan follows the same rule.
        boolean anyGate = scheduler.validate(x, gates);
        MemoryPlan plan = plan(Math.toIntExact(x.dim(0)), Math.toIntExact(x.dim(1)), anyGate);
        // The weights are resident already: the pass's scratch must fit in what is free plus the pool's cache.
        long scratch = plan.totalBytes() - plan.weightBytes();
        long free = device.memoryInfo()[0];
        long cached = pool.stats().cachedBytes();
        if (scratch > free + cached) {
            throw new DeviceOutOfMemoryException("model forward pass (B=" + plan.batch() + ", L=" + plan.length() + ") needs "
                    + Bytes.format(scratch) + " of scratch beside its " + Bytes.format(plan.weightBytes()) + " of weights, card has "
                    + Bytes.format(free) + " free" + (cached > 0 ? " and " + Bytes.format(cached) + " cached in the pool" : "")
                    + " on " + device.describe(), scratch);
        }
        return scheduler.forwardValidated(x, gates, anyGate);
    }

    /**
     * See {@link LayerScheduler#setCountWork}: for tests and benchmarks (it synchronizes per attention call).
     *
     * @param count whether to count launched query tiles
     */
    public void setCountWork(boolean count) {
        scheduler.setCountWork(count);
    }

    /** {@return the model's device pool (statistics, leak checks)} */
    public DevicePool pool() {
        return pool;
    }

    /** {@return the device and the attention, for reports} */
    public String describe() {
        return device.describe() + ", attention: " + attention.describe();
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            scheduler.close();
        } finally {
            try {
                ops.close();
            } finally {
                try {
                    attention.close();
                } finally {
                    try {
                        pool.close();
                    } finally {
                        device.close();
                    }
                }
            }
        }
    }
}
