package io.headroute.routing;

import io.headroute.tensor.Tensor;

/**
 * One routing call's result.
 *
 * @param gate         (B, L, H) float32, the attention contract's gate
 * @param probs        (B, L, Hr) float32, per-token router probabilities softmax(X·Wr)
 * @param stats        statistics of {@code gate} and {@code probs}
 * @param engine       "cpu" or "cuda"
 * @param elapsedNanos compute time, inputs in place (wall time on the CPU, CUDA events on the GPU)
 */
public record RouterOutput(Tensor gate, Tensor probs, RouterStats stats, String engine, long elapsedNanos) {}
