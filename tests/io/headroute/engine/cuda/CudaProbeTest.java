package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.SystemProperty;
import java.util.List;
import org.junit.jupiter.api.Test;

class CudaProbeTest {
    /** The shape of JCuda 12.6's message on a machine without the NVIDIA driver (abridged). */
    private static final String JCUDA_MESSAGE = """
            Error while loading native library "JCudaDriver-12.6.0-linux-x86_64"
            Operating system name: Linux
            ---(start of nested stack traces)---
            Stack trace from the attempt to load the library as a file:
            java.lang.UnsatisfiedLinkError: no JCudaDriver-12.6.0-linux-x86_64 in java.library.path: /usr/lib
            \tat java.base/java.lang.ClassLoader.loadLibrary(ClassLoader.java:2434)
            Stack trace from the attempt to load the library as a resource:
            java.lang.UnsatisfiedLinkError: /tmp/libJCudaDriver-12.6.0-linux-x86_64.so: libcuda.so.1: cannot open shared object file: No such file or directory
            \tat java.base/jdk.internal.loader.NativeLibraries.load(Native Method)
            ---(end of nested stack traces)---
            """;

    @Test
    void disabledByProperty() {
        SystemProperty disabled = SystemProperty.set(CudaProbe.DISABLE_PROPERTY, "true");
        try {
            CudaProbe.Result r = CudaProbe.result();
            assertFalse(r.usable());
            assertEquals("disabled by headroute.cuda.disable", r.reason());
            assertTrue(r.devices().isEmpty());
        } finally {
            disabled.close();
        }
    }

    @Test
    void realProbeNeverThrowsAndIsCached() {
        CudaProbe.Result r = CudaProbe.result();
        assertFalse(r.reason().isBlank());
        assertFalse(r.reason().contains("\n"));
        assertSame(r, CudaProbe.result());
        if (!r.usable() && r.reason().startsWith("no CUDA driver")) {
            assertTrue(r.reason().contains("libcuda.so"), r.reason());
        }
    }

    @Test
    void missingDriverLibraryIsNamed() {
        String reason = CudaProbe.describeLoadFailure(new UnsatisfiedLinkError(JCUDA_MESSAGE));
        assertEquals("no CUDA driver: libcuda.so.1 could not be loaded (libcuda.so.1: cannot open shared object file: "
                + "No such file or directory)", reason);
        Throwable wrapped = new ExceptionInInitializerError(new UnsatisfiedLinkError(JCUDA_MESSAGE));
        assertTrue(CudaProbe.describeLoadFailure(wrapped).startsWith("no CUDA driver: libcuda.so.1"));
    }

    @Test
    void otherLoadFailuresStayOneLine() {
        String other = CudaProbe.describeLoadFailure(new UnsatisfiedLinkError(
                "x.so: libstdc++.so.6: cannot open shared object file: No such file or directory"));
        assertTrue(other.startsWith("JCuda's native library could not be loaded: libstdc++.so.6 is missing"), other);
        String noClass = CudaProbe.describeLoadFailure(new NoClassDefFoundError("jcuda/driver/JCudaDriver"));
        assertEquals("JCuda is not usable in this JVM: java.lang.NoClassDefFoundError: jcuda/driver/JCudaDriver", noClass);
        assertFalse(CudaProbe.describeLoadFailure(new UnsatisfiedLinkError("a\nb\nc")).contains("\n"));
    }

    @Test
    void judgesDevicesByComputeCapability() {
        CudaProbe.Result none = CudaProbe.judge(List.of());
        assertFalse(none.usable());
        assertEquals("CUDA driver found but no device", none.reason());

        CudaProbe.Result old = CudaProbe.judge(List.of(new CudaProbe.DeviceInfo(0, "Tesla T4", 7, 5, 16L << 30)));
        assertFalse(old.usable());
        assertEquals("GPU 0 (Tesla T4) has compute capability 7.5; headroute's kernels need 8.0 or newer (sm_80+)", old.reason());

        CudaProbe.Result ok = CudaProbe.judge(List.of(new CudaProbe.DeviceInfo(0, "Tesla T4", 7, 5, 16L << 30),
                new CudaProbe.DeviceInfo(1, "NVIDIA A100", 8, 0, 40L << 30)));
        assertTrue(ok.usable());
        assertEquals("GPU 1: NVIDIA A100 (compute capability 8.0, 40960 MiB)", ok.reason());
        assertEquals(2, ok.devices().size());
    }
}
