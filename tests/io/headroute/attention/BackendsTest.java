package io.headroute.attention;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.headroute.LogCapture;
import io.headroute.SystemProperty;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.engine.cuda.CudaProbe;
import java.util.List;
import org.apache.logging.log4j.Level;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class BackendsTest {
    private SystemProperty noCuda;

    @BeforeEach
    void disableCuda() {
        noCuda = SystemProperty.set(CudaProbe.DISABLE_PROPERTY, "true");
    }

    @AfterEach
    void restore() {
        noCuda.close();
    }

    @Test
    void autoFallsBackToTheCpu() {
        try (AttentionEngine e = Backends.open(Backend.AUTO, 3)) {
            CpuAttentionEngine cpu = assertInstanceOf(CpuAttentionEngine.class, e);
            assertEquals("cpu", cpu.name());
            assertEquals(3, cpu.threads());
        }
    }

    /** The choice is logged at DEBUG (--verbose) only: the commands' output names the engine that ran. */
    @Test
    void autoLogsItsChoiceAtDebugOnly() {
        try (LogCapture log = LogCapture.of(Backends.class, Level.TRACE); AttentionEngine e = Backends.open(Backend.AUTO, 1)) {
            assertEquals("cpu", e.name());
            assertEquals(List.of(), log.atLeast(Level.INFO));
            assertEquals(List.of(new LogCapture.Event(Level.DEBUG, "backend auto: using CPU (no usable GPU: disabled by "
                    + CudaProbe.DISABLE_PROPERTY + ")")), log.events());
        }
    }

    @Test
    void cpuIsTheCpuEngine() {
        try (AttentionEngine e = Backends.open(Backend.CPU, 2)) {
            assertEquals(2, assertInstanceOf(CpuAttentionEngine.class, e).threads());
        }
    }

    @Test
    void cudaWithoutAUsableGpuIsUnavailable() {
        BackendUnavailableException e = assertThrows(BackendUnavailableException.class, () -> Backends.open(Backend.CUDA, 1));
        assertEquals("the CUDA backend cannot run: no usable GPU: disabled by headroute.cuda.disable", e.getMessage());
    }

    @Test
    void threadsMustBePositive() {
        // A library caller's message: no command-line option names (the CLI checks --threads itself, first).
        assertEquals("CPU threads must be positive, got 0",
                assertThrows(IllegalArgumentException.class, () -> Backends.open(Backend.CPU, 0)).getMessage());
        assertEquals("CPU threads must be positive, got -1",
                assertThrows(IllegalArgumentException.class, () -> Backends.openWhole(Backend.AUTO, -1)).getMessage());
    }

    @Test
    void parse() {
        assertEquals(Backend.AUTO, Backend.parse("auto"));
        assertEquals(Backend.CPU, Backend.parse(" CPU "));
        assertEquals(Backend.CUDA, Backend.parse("cuda"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Backend.parse("gpu"));
        assertEquals("unknown backend 'gpu' (expected auto, cpu or cuda)", e.getMessage());
        assertEquals("cuda", Backend.CUDA.cliName());
    }
}
