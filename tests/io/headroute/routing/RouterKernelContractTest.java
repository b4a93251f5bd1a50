package io.headroute.routing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.cuda.FatbinInfo;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import org.junit.jupiter.api.Test;

/** The Java side of the router kernel's contract, checked against cuda-kernels/router.cu; runs without a GPU. */
class RouterKernelContractTest {
    private static String source() throws IOException {
        return Files.readString(Path.of("cuda-kernels", "router.cu"));
    }

    private static int number(String text, String what, String op) {
        Matcher m = java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(what) + "\\s*" + op + "\\s*(\\d+)").matcher(text);
        assertTrue(m.find(), "no '" + what + " " + op + " N' in router.cu");
        return Integer.parseInt(m.group(1));
    }

    @Test
    void paramsLayoutMatchesTheCudaStruct() throws IOException {
        String cu = source();
        assertEquals(RouterParams.SIZE, number(cu, "sizeof(RouterParams)", "=="));
        assertEquals(RouterParams.OFFSET_SIZES, number(cu, "offsetof(RouterParams, batch)", "=="));
    }

    @Test
    void encodeWritesEveryFieldAtItsOffset() {
        RouterConfig c = new RouterConfig(2, 14, 4, 64);
        byte[] b = RouterParams.encode(0x1000, 0x2000, 0x3000, 3, 1000, c);
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(RouterParams.SIZE, b.length);
        assertEquals(0x1000, bb.getLong(0));
        assertEquals(0x2000, bb.getLong(8));
        assertEquals(0x3000, bb.getLong(16));
        int[] expect = {3, 1000, 16, 2, 14, 4, 64, 3 * 16}; // groups = B · ceil(1000 / 64)
        for (int i = 0; i < expect.length; i++) {
            assertEquals(expect[i], bb.getInt(RouterParams.OFFSET_SIZES + 4 * i), "int field " + i);
        }
        assertEquals(37, RouterParams.groups(1, 37, 1));
        assertEquals(5, RouterParams.groups(1, 37, 8));
        assertEquals(2, RouterParams.groups(2, 37, 64));
    }

    @Test
    void launchShapeAndLimitsMatchTheKernel() throws IOException {
        String cu = source();
        assertTrue(cu.contains("extern \"C\" __global__ void __launch_bounds__(kThreads) " + CudaHeadRouter.KERNEL + "("),
                CudaHeadRouter.KERNEL + " is not defined in router.cu");
        int warps = number(cu, "constexpr int kWarps", "=");
        assertEquals(CudaHeadRouter.THREADS, 32 * warps);
        assertEquals(CudaHeadRouter.GROUPS_PER_BLOCK, warps);
        assertEquals(CudaHeadRouter.MAX_ROUTED, 32 * number(cu, "constexpr int kPerLane", "="));
        UnsupportedOperationException e = org.junit.jupiter.api.Assertions.assertThrows(UnsupportedOperationException.class,
                () -> CudaHeadRouter.checkSupported(new RouterConfig(0, 65, 2, 1)));
        assertTrue(e.getMessage().contains("at most 64 routed heads"), e.getMessage());
        CudaHeadRouter.checkSupported(new RouterConfig(0, 64, 2, 1));
    }

    @Test
    void theBuiltModuleCarriesTheKernelForEveryArchitecture() throws IOException {
        Path f = Path.of("target/kernels/router.fatbin");
        assumeTrue(Files.exists(f), "kernels not built here (no nvcc)");
        byte[] bin = Files.readAllBytes(f);
        assertEquals("[sm_80, sm_86, sm_89, compute_90, sm_90]", FatbinInfo.images(bin).toString());
        // nvcc leaves the entry names readable in the images (symbol tables, PTX .entry lines).
        String text = new String(bin, StandardCharsets.ISO_8859_1);
        assertTrue(text.contains(CudaHeadRouter.KERNEL), "the fatbin does not name " + CudaHeadRouter.KERNEL);
    }
}
