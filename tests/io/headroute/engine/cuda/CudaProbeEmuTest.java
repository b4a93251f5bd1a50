package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.JCudaAllocator;
import io.headroute.cuda.memory.DeviceOutOfMemoryException;
import io.headroute.cuda.memory.DevicePool;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The probe leaves JCuda's process-wide exception setting as the rest of headroute runs it (off, every result
 * code checked): probing after a device is open must not turn driver errors into bare {@code jcuda.CudaException}s
 * that skip the pool's retry, its out-of-memory count and the messages naming the call and device. On the CPU
 * emulator (-Dheadroute.emulator=true); skips otherwise.
 */
@Tag("emu")
class CudaProbeEmuTest {
    @Test
    void probingAfterADeviceIsOpenKeepsErrorsChecked() {
        assumeTrue(Boolean.parseBoolean(System.getProperty("headroute.emulator", "false")), "not on the CPU emulator");
        try (CudaDevice device = CudaDevice.open(0);
                DevicePool pool = DevicePool.create(new JCudaAllocator(device), "probe test", false)) {
            assertTrue(CudaProbe.probe().usable());
            DeviceOutOfMemoryException e = assertThrows(DeviceOutOfMemoryException.class, () -> pool.allocate(1L << 50, "huge"));
            assertTrue(e.getMessage().contains("out of device memory on GPU 0"), e.getMessage());
            assertEquals(1, pool.stats().oomCount());
        }
    }
}
