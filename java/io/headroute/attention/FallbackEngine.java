package io.headroute.attention;

import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import java.util.function.Supplier;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * The {@code auto} backend when a GPU is present: requests go to the GPU engine, and those it refuses
 * up front (a pattern, head dim or algorithm it lacks: {@link UnsupportedOperationException}, thrown
 * before any work) go to the CPU engine, opened on first need, with one log line saying why.
 */
final class FallbackEngine implements AttentionEngine {
    private static final Logger LOG = LogManager.getLogger(FallbackEngine.class);

    private final AttentionEngine primary;
    private final Supplier<AttentionEngine> fallbackFactory;
    private AttentionEngine fallback;

    FallbackEngine(AttentionEngine primary, Supplier<AttentionEngine> fallbackFactory) {
        this.primary = primary;
        this.fallbackFactory = fallbackFactory;
    }

    @Override
    public String name() {
        return primary.name();
    }

    @Override
    public String device() {
        return primary.device();
    }

    @Override
    public AttentionResult run(AttentionRequest request) {
        try {
            return primary.run(request);
        } catch (UnsupportedOperationException e) {
            LOG.info("backend auto: using CPU for this call ({})", e.getMessage());
            if (fallback == null) {
                fallback = fallbackFactory.get();
            }
            return fallback.run(request);
        }
    }

    @Override
    public void close() {
        try {
            primary.close();
        } finally {
            if (fallback != null) {
                fallback.close();
            }
        }
    }
}
