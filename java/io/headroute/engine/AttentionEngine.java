package io.headroute.engine;

/** A backend that computes attention under the contract. Engines own threads or devices: close them. */
public interface AttentionEngine extends AutoCloseable {
    /** Short name: "cpu", "cuda". */
    String name();

    /** Where it computes, for reports: "CPU, 2 threads", "GPU 0 (NVIDIA H100 80GB HBM3, sm_90)". */
    default String device() {
        return name();
    }

    /** Computes attention; throws {@link UnsupportedOperationException} for an algorithm it lacks. */
    AttentionResult run(AttentionRequest request);

    @Override
    void close();
}
