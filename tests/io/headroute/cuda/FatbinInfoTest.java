package io.headroute.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

class FatbinInfoTest {
    /**
     * A container with the given (kind, arch, payload size[, flags at byte 40]) entries, laid out as nvcc
     * writes them.
     */
    private static byte[] fatbin(int[][] entries) {
        int size = 16;
        for (int[] e : entries) {
            size += 64 + e[2];
        }
        ByteBuffer b = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(0xBA55ED50).putShort((short) 1).putShort((short) 16).putLong(size - 16);
        for (int[] e : entries) {
            int at = b.position();
            b.putShort((short) e[0]).putShort((short) 0x101).putInt(64).putLong(e[2]);
            b.putInt(at + 28, e[1]);
            b.putInt(at + 40, e.length > 3 ? e[3] : 0x11);
            b.position(at + 64 + e[2]);
        }
        return b.array();
    }

    @Test
    void listsMachineCodeAndPtx() {
        List<FatbinInfo.Image> images = FatbinInfo.images(fatbin(new int[][] {{2, 80, 100}, {2, 86, 3}, {1, 90, 17}}));
        assertEquals("[sm_80, sm_86, compute_90]", images.toString());
        // The arch-specific flag (nvcc's sm_90a entries): 0x00100011 where sm_90's entries have 0x11.
        assertEquals("[sm_90, sm_90a]", FatbinInfo.images(fatbin(new int[][] {{2, 90, 8}, {2, 90, 8, 0x00100011}})).toString());
    }

    @Test
    void refusesOtherBytes() {
        assertThrows(IllegalArgumentException.class, () -> FatbinInfo.images(new byte[40]));
        byte[] bad = fatbin(new int[][] {{7, 80, 8}});
        assertThrows(IllegalArgumentException.class, () -> FatbinInfo.images(bad));
        // Cut inside an entry's header, before its flags (byte 40): an IllegalArgumentException, not an index error.
        byte[] whole = fatbin(new int[][] {{2, 80, 0}});
        byte[] cut = java.util.Arrays.copyOf(whole, 16 + 36);
        assertEquals("fatbin truncated in the entry at offset 16",
                assertThrows(IllegalArgumentException.class, () -> FatbinInfo.images(cut)).getMessage());
        // An entry header too short to hold the flags.
        byte[] shortHeader = fatbin(new int[][] {{2, 80, 8}});
        ByteBuffer.wrap(shortHeader).order(ByteOrder.LITTLE_ENDIAN).putInt(16 + 4, 40);
        assertThrows(IllegalArgumentException.class, () -> FatbinInfo.images(shortHeader));
    }

    @Test
    void theBuiltKernelsCarryEveryTargetArchitecture() throws IOException {
        Path f = Path.of("target/kernels/flash_fwd_mma.fatbin");
        assumeTrue(Files.exists(f), "kernels not built here (no nvcc)");
        List<FatbinInfo.Image> images = FatbinInfo.images(Files.readAllBytes(f));
        assertEquals("[sm_80, sm_86, sm_89, compute_90, sm_90]", images.toString());
        // The wgmma module: sm_90a machine code only.
        Path wg = Path.of("target/kernels/flash_fwd_wgmma.fatbin");
        assertEquals("[sm_90a]", FatbinInfo.images(Files.readAllBytes(wg)).toString());
    }
}
