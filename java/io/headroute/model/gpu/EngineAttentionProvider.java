package io.headroute.model.gpu;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.CudaStream;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.cuda.AttentionParams;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;

/**
 * Binds GPU models to headroute's own attention kernels: flash (dense and causal) and block-sparse
 * (every other pattern), through {@link CudaAttentionEngine#launch} on the scheduler's buffers and
 * stream. Sparse layouts use blocks of 64 and travel in the layer's workspace, so the memory plan counts
 * them; so do the work lists gated calls build on the device (the skip of routed heads). The materialized algorithm is refused (it is offered by the attention engine on its own
 * buffers, not inside a model). Listed in {@code META-INF/services}; unverified on a GPU so far.
 */
public final class EngineAttentionProvider implements DeviceAttentionProvider {
    /** Block size of the sparse layouts of model layers. */
    public static final int BLOCK_SIZE = 64;

    @Override
    public DeviceAttention open(CudaDevice device) {
        return new Attention(CudaAttentionEngine.on(device));
    }

    private static final class Attention implements DeviceAttention {
        private final CudaAttentionEngine engine;

        Attention(CudaAttentionEngine engine) {
            this.engine = engine;
        }

        @Override
        public String describe() {
            return "headroute flash / block-sparse kernels";
        }

        @Override
        public long workspaceBytes(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, int gateBlock) {
            return engine.launchWorkspaceBytes(shape, dtype, algorithm, pattern, BLOCK_SIZE, gateBlock);
        }

        @Override
        public void check(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern) {
            CudaAttentionEngine.checkLaunch(shape, dtype, algorithm, pattern);
        }

        @Override
        public void run(DeviceAttentionCall c, CudaStream stream) {
            engine.launch(call(c), stream);
        }

        @Override
        public AttentionWork work(DeviceAttentionCall c, CudaStream stream) {
            CudaAttentionEngine.DeviceCall d = call(c);
            return new AttentionWork(engine.launchedTiles(d, stream),
                    CudaAttentionEngine.gridTiles(d.shape(), d.dtype(), d.algorithm(), d.pattern(), engine.mmaTiling()));
        }

        private static CudaAttentionEngine.DeviceCall call(DeviceAttentionCall c) {
            AttentionShape shape = new AttentionShape(c.batch(), c.heads(), c.kvHeads(), c.qLen(), c.kvLen(), c.headDim());
            return new CudaAttentionEngine.DeviceCall(c.q(), c.k(), c.v(), c.o(), c.gate(), c.workspace(), c.workspaceBytes(),
                    new AttentionParams.Strides(c.qStrides(), c.kStrides(), c.vStrides(), c.oStrides()), shape, c.pattern(),
                    c.scale(), c.dtype(), c.algorithm(), BLOCK_SIZE, c.gateBlock());
        }

        @Override
        public void close() {
            engine.close();
        }
    }
}
