package io.headroute.engine;

/** A backend that computes attention under the contract. Engines own threads or devices: close them. */
public interface AttentionEngine extends AutoCloseable {
    /** Short name: "cpu", "cuda". */
    String name();

    /** Computes attention; throws {@link UnsupportedOperationException} for an algorithm it lacks. */
    AttentionResult run(AttentionRequest request);

    @Override
    void close();
}
