package io.headroute.engine;

import io.headroute.tensor.Tensor;

/**
 * The output of one attention call: o (B, H, L, D) in the request's dtype, lse (B, H, L) float32 when
 * requested (else null), and what the run did.
 *
 * @param o     the output (B, H, L, D) in the request's compute dtype; a row with no allowed key, or a zero gate, is 0
 * @param lse   (B, H, L) float32 natural-log sum of exp of each row's scaled scores (−∞ for a row with no allowed
 *              key or a zero gate), or null when the request did not ask for it
 * @param stats what the run did, measured
 */
public record AttentionResult(Tensor o, Tensor lse, ExecutionStats stats) {}
