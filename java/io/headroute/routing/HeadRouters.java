package io.headroute.routing;

import io.headroute.attention.Backend;
import io.headroute.attention.BackendUnavailableException;
import io.headroute.engine.cuda.CudaProbe;
import java.util.Objects;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/** Opens the head router for a {@link Backend}, the way {@code Backends} opens attention engines. */
public final class HeadRouters {
    private static final Logger LOG = LogManager.getLogger(HeadRouters.class);

    private HeadRouters() {}

    /**
     * A router for {@code backend} and {@code config}: as {@link #open(Backend, int)}, except that {@code auto} picks the
     * CPU for a routing the GPU router does not take (more than {@link CudaHeadRouter#MAX_ROUTED} routed heads).
     *
     * @param backend    where to route
     * @param cpuThreads worker threads of a CPU router, positive
     * @param config     the routing the router will be asked for
     * @return an open router, owned by the caller
     * @throws BackendUnavailableException when {@code backend} is {@code cuda} and the GPU router cannot run
     * @throws IllegalArgumentException    when {@code cpuThreads} is not positive
     */
    public static HeadRouter open(Backend backend, int cpuThreads, RouterConfig config) {
        if (backend == Backend.AUTO && config.routedHeads() > CudaHeadRouter.MAX_ROUTED) {
            // DEBUG (--verbose), as below: the commands' output names the router's engine.
            LOG.debug("router backend auto: using CPU (the GPU router takes at most {} routed heads, got {})",
                    CudaHeadRouter.MAX_ROUTED, config.routedHeads());
            return open(Backend.CPU, cpuThreads);
        }
        return open(backend, cpuThreads);
    }

    /**
     * A router for {@code backend}; the caller closes it. {@code cuda} fails with
     * {@link BackendUnavailableException} when the GPU router cannot run; {@code auto} then uses the CPU.
     *
     * @param backend    where to route; not null
     * @param cpuThreads worker threads of a CPU router, positive
     * @return an open router, owned by the caller
     * @throws BackendUnavailableException when {@code backend} is {@code cuda} and the GPU router cannot run (no
     *                                     usable GPU, no router kernel, no cuBLAS)
     * @throws IllegalArgumentException    when {@code cpuThreads} is not positive
     */
    public static HeadRouter open(Backend backend, int cpuThreads) {
        Objects.requireNonNull(backend, "backend");
        if (cpuThreads <= 0) {
            throw new IllegalArgumentException("CPU threads must be positive, got " + cpuThreads);
        }
        return switch (backend) {
            case CPU -> new CpuHeadRouter(cpuThreads);
            case CUDA -> {
                String why = cudaUnavailableReason();
                if (why != null) {
                    throw new BackendUnavailableException("the CUDA backend cannot run: " + why);
                }
                try {
                    yield CudaHeadRouter.open(0);
                } catch (UnsupportedOperationException e) { // no cuBLAS
                    throw new BackendUnavailableException("the CUDA backend cannot run: " + e.getMessage());
                }
            }
            case AUTO -> {
                String why = cudaUnavailableReason();
                if (why == null) {
                    try {
                        yield CudaHeadRouter.open(0);
                    } catch (RuntimeException e) {
                        why = "the GPU router could not be opened: " + e.getMessage();
                    }
                }
                // DEBUG (--verbose): the commands' output names the engine that ran, and 'headroute info' says why.
                LOG.debug("router backend auto: using CPU ({})", why);
                yield new CpuHeadRouter(cpuThreads);
            }
        };
    }

    /** {@return why the GPU router cannot run here, or null when it can} (cuBLAS is checked on opening). */
    public static String cudaUnavailableReason() {
        CudaProbe.Result probe = CudaProbe.result();
        if (!probe.usable()) {
            return "no usable GPU: " + probe.reason();
        }
        if (!CudaHeadRouter.kernelsPackaged()) {
            return "this build has no router kernel (it was built without nvcc; run 'make build' with the CUDA toolkit)";
        }
        return null;
    }
}
