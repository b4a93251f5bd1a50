package io.headroute.cuda;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import io.headroute.engine.cuda.CudaProbe;
import org.junit.jupiter.api.Test;

class CudaDeviceTest {
    /**
     * Without a usable GPU, opening a device directly (not through Backends, which asks the probe first) fails with a
     * one-line CudaException, the first time and every time after: it was JCuda's UnsatisfiedLinkError (dozens of
     * lines), then NoClassDefFoundError, neither of them a RuntimeException.
     */
    @Test
    void withoutADriverOpeningSaysSoInOneLine() {
        assumeFalse(CudaProbe.result().usable(), "a GPU is usable here");
        for (int attempt = 0; attempt < 2; attempt++) {
            CudaException e = assertThrows(CudaException.class, () -> CudaDevice.open(0), "attempt " + attempt);
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
            assertTrue(e.getMessage().startsWith("GPU 0: "), e.getMessage());
        }
    }
}
