package io.headroute.attention;

import io.headroute.engine.AttentionEngine;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cuda.CudaAttentionEngine;
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
     *
     * @param backend    where to run; {@code auto} gives the GPU engine with a per-call CPU fallback where a GPU is
     *                   usable (see {@link Backend#AUTO}), else the CPU engine
     * @param cpuThreads worker threads of the CPU engine, positive (also checked when no CPU engine is opened)
     * @return an open engine, owned by the caller
     * @throws BackendUnavailableException when {@code backend} is {@code cuda} and {@link #cudaUnavailableReason()}
     *                                     is not null
     * @throws IllegalArgumentException    when {@code cpuThreads} is not positive
     */
    public static AttentionEngine open(Backend backend, int cpuThreads) {
        Objects.requireNonNull(backend, "backend");
        if (cpuThreads <= 0) {
            throw new IllegalArgumentException("CPU threads must be positive, got " + cpuThreads);
        }
        return switch (backend) {
            case CPU -> new CpuAttentionEngine(cpuThreads);
            case CUDA -> {
                String why = cudaUnavailableReason();
                if (why != null) {
                    throw new BackendUnavailableException("the CUDA backend cannot run: " + why);
                }
                yield CudaAttentionEngine.open(0);
            }
            case AUTO -> {
                AttentionEngine whole = openWhole(Backend.AUTO, cpuThreads);
                yield whole instanceof CudaAttentionEngine
                        ? new FallbackEngine(whole, () -> new CpuAttentionEngine(cpuThreads)) : whole;
            }
        };
    }

    /**
     * One engine for a whole measured run, never two devices in one table: {@code auto} is the CUDA engine where
     * a GPU is usable, else the CPU engine, without {@link #open}'s per-call CPU fallback (what the GPU cannot run
     * is then refused, and a benchmark reports it as unsupported instead of timing it on the CPU beside GPU rows).
     * An {@code auto} whose GPU fails to open falls back to the CPU engine (logged at debug).
     *
     * @param backend    where to run; {@code cpu} and {@code cuda} behave as in {@link #open}
     * @param cpuThreads worker threads of the CPU engine, positive
     * @return an open engine, owned by the caller
     * @throws BackendUnavailableException when {@code backend} is {@code cuda} and the GPU cannot run
     * @throws IllegalArgumentException    when {@code cpuThreads} is not positive
     */
    public static AttentionEngine openWhole(Backend backend, int cpuThreads) {
        Objects.requireNonNull(backend, "backend");
        if (backend != Backend.AUTO) {
            return open(backend, cpuThreads);
        }
        if (cpuThreads <= 0) {
            throw new IllegalArgumentException("CPU threads must be positive, got " + cpuThreads);
        }
        String why = cudaUnavailableReason();
        if (why == null) {
            try {
                return CudaAttentionEngine.open(0);
            } catch (RuntimeException e) {
                why = "the GPU could not be opened: " + e.getMessage();
            }
        }
        // DEBUG (--verbose): every command's output names the engine that ran, and 'headroute info' says why.
        LOG.debug("backend auto: using CPU ({})", why);
        return new CpuAttentionEngine(cpuThreads);
    }

    /**
     * {@return why the CUDA engine cannot run here (no usable GPU, or a build without kernels), or null when it
     * can}
     */
    public static String cudaUnavailableReason() {
        CudaProbe.Result probe = CudaProbe.result();
        if (!probe.usable()) {
            return "no usable GPU: " + probe.reason();
        }
        if (!CudaAttentionEngine.kernelsPackaged()) {
            return "this build has no CUDA kernels (it was built without nvcc; run 'make build' with the CUDA toolkit)";
        }
        return null;
    }

}
