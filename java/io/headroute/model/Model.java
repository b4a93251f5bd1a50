package io.headroute.model;

import io.headroute.engine.AttentionEngine;
import io.headroute.engine.ShapeException;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** A stack of {@link AttentionBlock}s run in order on the host; any engine computes the attention. */
public final class Model {
    private final ModelWeights weights;
    private final List<AttentionBlock> blocks;

    public Model(ModelWeights weights) {
        this.weights = weights;
        List<AttentionBlock> b = new ArrayList<>();
        for (int i = 0; i < weights.config().layerCount(); i++) {
            b.add(new AttentionBlock(weights.config(), i, weights.layer(i)));
        }
        this.blocks = Collections.unmodifiableList(b);
    }

    public ModelConfig config() {
        return weights.config();
    }

    public ModelWeights weights() {
        return weights;
    }

    public List<AttentionBlock> blocks() {
        return blocks;
    }

    /** Every layer on {@code x} (B, L, d_model), without gates. */
    public Tensor forward(Tensor x, AttentionEngine engine) {
        return forwardWithGates(x, null, engine);
    }

    /**
     * Every layer on {@code x} (B, L, d_model); {@code gates} is null or holds one (B, L, H) gate (or
     * null) per layer. Returns the last layer's output in the model dtype.
     */
    public Tensor forward(Tensor x, List<Tensor> gates, AttentionEngine engine) {
        if (gates != null && gates.size() != blocks.size()) {
            throw new ShapeException(gates.size() + " gates for " + blocks.size() + " layers");
        }
        return forwardWithGates(x, gates == null ? null : (layer, input) -> gates.get(layer), engine);
    }

    /** Every layer on {@code x}, each layer's gate asked of {@code gates} (null: no gates) with the layer's input. */
    public Tensor forwardWithGates(Tensor x, GateSource gates, AttentionEngine engine) {
        if (x.rank() != 3) {
            throw new ShapeException("model input must have shape (B, L, d_model), got " + x.shapeString());
        }
        RotaryTable rope = RotaryTable.of(Math.toIntExact(x.dim(1)), config().headDim(), config().ropeTheta());
        Tensor h = x;
        for (int i = 0; i < blocks.size(); i++) {
            h = blocks.get(i).forward(h, gates == null ? null : gates.gate(i, h), engine, rope);
        }
        return h;
    }
}
