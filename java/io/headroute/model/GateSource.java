package io.headroute.model;

import io.headroute.tensor.Tensor;

/**
 * Where a model's per-layer gate comes from: called with each layer's input before the layer runs
 * (a router computes its gate from it). Returns a (B, L, H) gate, or null for an ungated layer.
 */
@FunctionalInterface
public interface GateSource {
    Tensor gate(int layer, Tensor layerInput);
}
