package io.headroute.engine;

import io.headroute.tensor.Tensor;

/**
 * The output of one attention call: o (B, H, L, D) in the request's dtype, lse (B, H, L) float32 when
 * requested (else null), and what the run did.
 */
public record AttentionResult(Tensor o, Tensor lse, ExecutionStats stats) {}
