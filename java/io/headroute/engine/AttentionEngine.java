package io.headroute.engine;

/** A backend that computes attention under the contract. Engines own threads or devices: close them. */
public interface AttentionEngine extends AutoCloseable {
    /** {@return a short name for reports and {@link ExecutionStats#engine}: "cpu", "cuda"} */
    String name();

    /**
     * {@return where it computes, for reports: "CPU, 2 threads", "GPU 0 (NVIDIA H100 80GB HBM3, sm_90)"}; the
     * {@link #name()} unless an engine says more.
     */
    default String device() {
        return name();
    }

    /**
     * Computes attention; throws {@link UnsupportedOperationException} for an algorithm it lacks.
     *
     * @param request the validated call (shapes, pattern, dtype, algorithm)
     * @return o in the request's dtype, lse when requested, and what the run did
     * @throws UnsupportedOperationException when this engine cannot run the request (an algorithm, pattern or head
     *                                       dim it lacks), thrown before any work
     */
    AttentionResult run(AttentionRequest request);

    @Override
    void close();
}
