package io.headroute.model;

import io.headroute.engine.AttentionEngine;
import io.headroute.engine.ShapeException;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.routing.CpuHeadRouter;
import io.headroute.routing.HeadRouter;
import io.headroute.routing.RouterOutput;
import io.headroute.routing.RouterStats;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * A stack of {@link AttentionBlock}s run in order on the host; any engine computes the attention.
 *
 * <p>A routed layer's gate comes from its head router, run on the layer's <em>normed</em> input
 * n = round(RMSNorm(x)·γ), the same n the block projects to Q, K and V (in mixture-of-heads, the router
 * scores the attention block's input tokens; after the norm its logits do not grow with the residual
 * stream's scale). Heads pruned by the layer's head mask stay pruned: the router still ranks all H
 * heads, and a pruned head it picks is simply not computed (its gate is ignored), so such a token uses
 * fewer heads.
 */
public final class Model {
    private final ModelWeights weights;
    private final List<AttentionBlock> blocks;

    /**
     * One forward pass.
     *
     * @param output  the last layer's output in the model dtype
     * @param routing per layer, what its router computed (gate, probabilities, statistics), or null for
     *                an unrouted layer
     */
    public record Pass(Tensor output, List<RouterOutput> routing) {
        /**
         * Copies the routing list (it may hold nulls) into an unmodifiable one.
         *
         * @param output the last layer's output
         * @param routing one entry per layer, null for an unrouted layer
         */
        public Pass {
            routing = Collections.unmodifiableList(new ArrayList<>(routing));
        }

        /**
         * {@return the router statistics of layer {@code layer}, or null when it is not routed}
         *
         * @param layer the layer, in [0, layers)
         */
        public RouterStats routerStats(int layer) {
            RouterOutput r = routing.get(layer);
            return r == null ? null : r.stats();
        }
    }

    /**
     * A model over {@code weights}: one {@link AttentionBlock} per layer of their config, built (weights sliced to
     * the active heads) here.
     *
     * @param weights the validated weights and their config
     */
    public Model(ModelWeights weights) {
        this.weights = weights;
        List<AttentionBlock> b = new ArrayList<>();
        for (int i = 0; i < weights.config().layerCount(); i++) {
            b.add(new AttentionBlock(weights.config(), i, weights.layer(i)));
        }
        this.blocks = Collections.unmodifiableList(b);
    }

    /** {@return the weights' config} */
    public ModelConfig config() {
        return weights.config();
    }

    /** {@return the full weights the model was built from (pruned heads included)} */
    public ModelWeights weights() {
        return weights;
    }

    /** {@return the layers in order; unmodifiable} */
    public List<AttentionBlock> blocks() {
        return blocks;
    }

    /**
     * Every layer on {@code x} (B, L, d_model), without gates other than the routers'.
     *
     * @param x      the input (B, L, d_model)
     * @param engine computes every layer's attention
     * @return the last layer's output in the model dtype
     */
    public Tensor forward(Tensor x, AttentionEngine engine) {
        return forwardWithGates(x, null, engine);
    }

    /**
     * Every layer on {@code x} (B, L, d_model); {@code gates} is null or holds one (B, L, H) gate (or
     * null) per layer. Returns the last layer's output in the model dtype.
     *
     * @param x      the input (B, L, d_model)
     * @param gates  one gate or null per layer, or null for no gates
     * @param engine computes every layer's attention
     * @return the last layer's output in the model dtype
     * @throws ShapeException           when {@code gates} does not hold one entry per layer
     * @throws IllegalArgumentException when a gate is given for a routed layer
     */
    public Tensor forward(Tensor x, List<Tensor> gates, AttentionEngine engine) {
        if (gates != null && gates.size() != blocks.size()) {
            throw new ShapeException(gates.size() + " gates for " + blocks.size() + " layers");
        }
        return forwardWithGates(x, gates == null ? null : (layer, input) -> gates.get(layer), engine);
    }

    /**
     * Every layer on {@code x}, each unrouted layer's gate asked of {@code gates} (null: no gates) with the
     * layer's input. Routed layers route on the CPU ({@link CpuHeadRouter}, one thread per core).
     *
     * @param x      the input (B, L, d_model)
     * @param gates  asked for each layer's gate, or null
     * @param engine computes every layer's attention
     * @return the last layer's output in the model dtype
     */
    public Tensor forwardWithGates(Tensor x, GateSource gates, AttentionEngine engine) {
        if (!config().routed()) {
            return run(x, gates, engine, null).output();
        }
        try (HeadRouter router = new CpuHeadRouter(CpuAttentionEngine.defaultThreads())) {
            return run(x, gates, engine, router).output();
        }
    }

    /**
     * Every layer on {@code x} (B, L, d_model). Routed layers take their gate from {@code router} on their
     * normed input; the others ask {@code gates} (null: ungated). A routed layer for which {@code gates}
     * also returns a gate is refused: its gate comes from its router.
     *
     * @param x      the input (B, L, d_model)
     * @param gates  asked for each unrouted layer's gate, or null
     * @param engine computes every layer's attention
     * @param router routes the routed layers; may be null only when no layer is routed
     * @return the output and each layer's routing
     * @throws ShapeException           when x is not rank 3 (or a layer refuses its input or gate)
     * @throws IllegalArgumentException when a routed model gets no router, or a routed layer gets a gate
     */
    public Pass run(Tensor x, GateSource gates, AttentionEngine engine, HeadRouter router) {
        if (x.rank() != 3) {
            throw new ShapeException("model input must have shape (B, L, d_model), got " + x.shapeString());
        }
        if (config().routed() && router == null) {
            throw new IllegalArgumentException("the model has routed layers: give a head router");
        }
        RotaryTable rope = RotaryTable.of(Math.toIntExact(x.dim(1)), config().headDim(), config().ropeTheta());
        Tensor h = x;
        List<RouterOutput> routing = new ArrayList<>();
        for (int i = 0; i < blocks.size(); i++) {
            Tensor g = gates == null ? null : gates.gate(i, h);
            RouterOutput r = null;
            LayerSpec spec = config().layer(i);
            if (spec.routed()) {
                if (g != null) {
                    throw new IllegalArgumentException("layer " + i + " is routed: its gate comes from its router, not from "
                            + "the caller");
                }
                r = route(i, h, router);
                g = r.gate();
            }
            routing.add(r);
            h = blocks.get(i).forward(h, g, engine, rope);
        }
        return new Pass(h, routing);
    }

    /**
     * Routed layer {@code layer}'s router on its input {@code x} (B, L, d_model): gate, probabilities, statistics.
     *
     * @param layer  a routed layer
     * @param x      the layer's input (B, L, d_model), before its norm
     * @param router the router to run
     * @return the gate (B, L, H), probabilities (B, L, Hr) and statistics
     * @throws IllegalArgumentException when the layer is not routed
     */
    public RouterOutput route(int layer, Tensor x, HeadRouter router) {
        LayerSpec spec = config().layer(layer);
        if (!spec.routed()) {
            throw new IllegalArgumentException("layer " + layer + " is not routed");
        }
        return router.route(routerInput(layer, x), weights.layer(layer).router(), spec.router(), config().dtype());
    }

    /**
     * What layer {@code layer}'s router sees for the layer input {@code x} (B, L, d_model): the block's
     * normed input round(RMSNorm(x)·γ) in the model dtype.
     *
     * @param layer the layer, in [0, layers)
     * @param x     the layer's input (B, L, d_model)
     * @return the normed input (B, L, d_model) in the model dtype
     * @throws ShapeException when x is not (B, L, d_model)
     */
    public Tensor routerInput(int layer, Tensor x) {
        if (x.rank() != 3 || x.dim(2) != config().dModel()) {
            throw new ShapeException("layer input must have shape (B, L, d_model = " + config().dModel() + "), got "
                    + x.shapeString());
        }
        ModelConfig c = config();
        int rows = Math.toIntExact(x.dim(0) * x.dim(1));
        float[] n = BlockMath.rmsNorm(x.toDType(c.dtype()).toFloatArray(), rows, c.dModel(),
                weights.layer(layer).attnNorm().toFloatArray(), c.normEps(), Rounding.of(c.dtype()));
        return Tensor.ofFloats(c.dtype(), n, x.shape());
    }
}
