package io.headroute.model;

import io.headroute.tensor.Tensor;

/**
 * Where a model's per-layer gate comes from: called with each layer's input before the layer runs
 * (a router computes its gate from it). Returns a (B, L, H) gate, or null for an ungated layer.
 */
@FunctionalInterface
public interface GateSource {
    /**
     * The gate of one layer.
     *
     * @param layer      the layer about to run, from 0
     * @param layerInput the layer's input x (B, L, d_model), before its norm
     * @return the layer's (B, L, H) gate, or null for none
     */
    Tensor gate(int layer, Tensor layerInput);
}
