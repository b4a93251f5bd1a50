package io.headroute.attention;

import io.headroute.engine.AttentionEngine;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cuda.CudaProbe;
import java.util.Objects;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/** Opens the attention engine for a {@link Backend}. */
public final class Backends {
    private static final Logger LOG = LogManager.getLogger(Backends.class);

    private Backends() {}

    /**
     * An engine for {@code backend}; the caller closes it. {@code cpuThreads} sizes the CPU engine's
     * pool. Throws {@link BackendUnavailableException} when {@code cuda} is asked for and cannot run.
     */
    public static AttentionEngine open(Backend backend, int cpuThreads) {
        Objects.requireNonNull(backend, "backend");
        if (cpuThreads <= 0) {
            throw new IllegalArgumentException("--threads must be positive, got " + cpuThreads);
        }
        return switch (backend) {
            case CPU -> new CpuAttentionEngine(cpuThreads);
            case CUDA -> {
                CudaProbe.Result probe = CudaProbe.result();
                if (!probe.usable()) {
                    throw new BackendUnavailableException("--backend cuda: no usable GPU: " + probe.reason());
                }
                throw cudaEngineMissing();
            }
            case AUTO -> {
                CudaProbe.Result probe = CudaProbe.result();
                // The CUDA engine is not in this build yet (issue 4), so even a usable GPU falls back.
                String why = probe.usable() ? "a GPU is present (" + probe.reason()
                        + ") but the CUDA attention engine is not part of this build yet" : probe.reason();
                LOG.info("backend auto: using CPU ({})", why);
                yield new CpuAttentionEngine(cpuThreads);
            }
        };
    }

    private static BackendUnavailableException cudaEngineMissing() {
        return new BackendUnavailableException(
                "the CUDA attention engine is not part of this build yet (issue 4); use --backend cpu");
    }
}
