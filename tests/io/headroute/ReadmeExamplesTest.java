package io.headroute;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.headroute.engine.cuda.CudaProbe;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * README's "Using headroute from Java" cannot drift from the API: each of its programs compiles against this build
 * (lint warnings are errors) and, run on the CPU, prints what README shows under it. GPU detection is off while
 * they run, so that {@code Backend.AUTO} is the CPU engine on every machine; {@link ReadmeExamplesGpuTest} runs the
 * GPU program where there is a device.
 */
class ReadmeExamplesTest {
    @TempDir
    static Path dir;
    private static Path classes;
    private static SystemProperty noCuda;

    @BeforeAll
    static void compile() throws Exception {
        noCuda = SystemProperty.set(CudaProbe.DISABLE_PROPERTY, "true");
        classes = ReadmeExamples.compile(ReadmeExamples.examples(), dir);
    }

    @AfterAll
    static void restore() {
        noCuda.close();
    }

    /** Every program README has, so that one cannot disappear (or a new one go unchecked) unnoticed. */
    @Test
    void theSectionHasItsPrograms() {
        assertEquals(List.of("Attend", "ShardedDecode", "TinyModel", "DeviceAttend", "Mistakes"),
                ReadmeExamples.examples().stream().map(ReadmeExamples.Example::className).collect(Collectors.toList()));
    }

    static Stream<ReadmeExamples.Example> examples() {
        return ReadmeExamples.examples().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("examples")
    void printsWhatReadmeShows(ReadmeExamples.Example example) throws Exception {
        Path work = Files.createDirectories(dir.resolve("run-" + example.className()));
        String output = ReadmeExamples.run(classes, example.className(), work.toString());
        ReadmeExamples.assertPrintsWhatReadmeShows(example, output);
    }
}
