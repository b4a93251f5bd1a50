package io.headroute.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class PinnedStagingTest {
    /** A chunk of 0 bytes made copy loops that never advanced; refused before the device is touched. */
    @Test
    void chunksMustBePositive() {
        for (long bytes : new long[] {0, -1}) {
            assertEquals("pinned staging chunks must be positive, got " + bytes + " bytes",
                    assertThrows(IllegalArgumentException.class, () -> new PinnedStaging(null, bytes)).getMessage());
        }
    }
}
