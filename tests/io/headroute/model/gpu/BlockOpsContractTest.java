package io.headroute.model.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import org.junit.jupiter.api.Test;

/** The Java side of block_ops.cu's contract, checked against the source: struct layouts and kernel names. */
class BlockOpsContractTest {
    private static String source() throws IOException {
        return Files.readString(Path.of("cuda-kernels", CudaBlockOps.MODULE + ".cu"));
    }

    private static int asserted(String text, String what) {
        Matcher m = java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(what) + "\\s*==\\s*(\\d+)").matcher(text);
        assertTrue(m.find(), "no static_assert on '" + what + "' in block_ops.cu");
        return Integer.parseInt(m.group(1));
    }

    @Test
    void rmsNormParamsMatchTheStruct() throws IOException {
        String cu = source();
        assertEquals(BlockOpsParams.RMSNORM_SIZE, asserted(cu, "sizeof(RmsNormParams)"));
        assertEquals(24, asserted(cu, "offsetof(RmsNormParams, rows)"));
        ByteBuffer b = ByteBuffer.wrap(BlockOpsParams.rmsNorm(0x10, 0x20, 0x30, 5_000_000_000L, 4096, 1e-5f))
                .order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(BlockOpsParams.RMSNORM_SIZE, b.capacity());
        assertEquals(0x10, b.getLong(0));
        assertEquals(0x20, b.getLong(8));
        assertEquals(0x30, b.getLong(16));
        assertEquals(5_000_000_000L, b.getLong(24));
        assertEquals(4096, b.getInt(32));
        assertEquals(1e-5f, b.getFloat(36));
    }

    @Test
    void ropeParamsMatchTheStruct() throws IOException {
        String cu = source();
        assertEquals(BlockOpsParams.ROPE_SIZE, asserted(cu, "sizeof(RopeParams)"));
        assertEquals(24, asserted(cu, "offsetof(RopeParams, batch)"));
        ByteBuffer b = ByteBuffer.wrap(BlockOpsParams.rope(0x10, 0x20, 768, 2, 77, 6, 128)).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(BlockOpsParams.ROPE_SIZE, b.capacity());
        assertEquals(0x10, b.getLong(0));
        assertEquals(0x20, b.getLong(8));
        assertEquals(768, b.getLong(16));
        int[] expect = {2, 77, 6, 128};
        for (int i = 0; i < expect.length; i++) {
            assertEquals(expect[i], b.getInt(24 + 4 * i), "int field " + i);
        }
    }

    @Test
    void everyKernelTheOpsLaunchIsDefined() throws IOException {
        String cu = source();
        for (String k : new String[] {"hr_rmsnorm_", "hr_rope_"}) {
            for (String t : new String[] {"f32", "f16", "bf16"}) {
                assertTrue(cu.contains(" " + k + t + "("), k + t + " is not defined in block_ops.cu");
            }
        }
    }
}
