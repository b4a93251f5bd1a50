package io.headroute;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.attention.Backends;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.engine.cuda.FlashPlan;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * README's GPU program (DeviceAttend: run on host tensors, then launch on device buffers, with the pool's
 * statistics) on a device, or the CPU emulator: it must print what README shows for a GPU. Skips without one. In a
 * runtime without a Java compiler (the device bundle's) it runs the classes the bundle compiled ahead.
 */
@Tag("gpu")
class ReadmeExamplesGpuTest {
    @TempDir
    Path dir;

    @Test
    void theGpuProgramPrintsWhatReadmeShows() throws Exception {
        String why = Backends.cudaUnavailableReason();
        assumeTrue(why == null, () -> "no GPU: " + why);
        ReadmeExamples.Example example = ReadmeExamples.examples().stream()
                .filter(e -> e.className().equals("DeviceAttend")).findFirst().orElseThrow();
        // The device bundle's jlink runtime has the javax.tools API (jdeps sees it) but not the compiler behind it:
        // the bundle compiled the program ahead (scripts/make-device-bundle.sh).
        Path classes;
        if (ToolProvider.getSystemJavaCompiler() != null) {
            classes = ReadmeExamples.compile(List.of(example), dir);
        } else {
            Optional<Path> ahead = ReadmeExamples.precompiled(example);
            assumeTrue(ahead.isPresent(), "no Java compiler in this runtime, and no " + ReadmeExamples.PRECOMPILED
                    + " folder beside the test classes");
            classes = ahead.get();
        }
        String output;
        // README shows the default tiling's numbers (the sparse layout's size depends on the tiling's rows).
        try (SystemProperty tiling = SystemProperty.set(CudaAttentionEngine.TILING_PROPERTY, null)) {
            output = ReadmeExamples.run(classes, example.className());
            assertEquals(FlashPlan.Tiling.W4, CudaAttentionEngine.startTiling(), tiling + " cleared");
        }
        assertFalse(output.startsWith("no GPU here"), output);
        ReadmeExamples.assertPrintsWhatReadmeShows(example, output);
    }
}
