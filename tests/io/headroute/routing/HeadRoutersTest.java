package io.headroute.routing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import io.headroute.LogCapture;
import io.headroute.SystemProperty;
import io.headroute.attention.Backend;
import io.headroute.engine.cuda.CudaProbe;
import java.util.List;
import org.apache.logging.log4j.Level;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class HeadRoutersTest {
    private SystemProperty noCuda;

    @BeforeEach
    void disableCuda() {
        noCuda = SystemProperty.set(CudaProbe.DISABLE_PROPERTY, "true");
    }

    @AfterEach
    void restore() {
        noCuda.close();
    }

    /** auto's choice of the CPU is logged at DEBUG (--verbose) only: the commands' output names the router's engine. */
    @Test
    void autoLogsItsChoiceAtDebugOnly() {
        try (LogCapture log = LogCapture.of(HeadRouters.class, Level.TRACE)) {
            try (HeadRouter r = HeadRouters.open(Backend.AUTO, 1)) {
                assertInstanceOf(CpuHeadRouter.class, r);
            }
            try (HeadRouter r = HeadRouters.open(Backend.AUTO, 1, new RouterConfig(1, CudaHeadRouter.MAX_ROUTED + 1, 2, 1))) {
                assertInstanceOf(CpuHeadRouter.class, r);
            }
            assertEquals(List.of(), log.atLeast(Level.INFO));
            assertEquals(List.of(
                    new LogCapture.Event(Level.DEBUG, "router backend auto: using CPU (no usable GPU: disabled by "
                            + CudaProbe.DISABLE_PROPERTY + ")"),
                    new LogCapture.Event(Level.DEBUG, "router backend auto: using CPU (the GPU router takes at most "
                            + CudaHeadRouter.MAX_ROUTED + " routed heads, got " + (CudaHeadRouter.MAX_ROUTED + 1) + ")")),
                    log.events());
        }
    }
}
