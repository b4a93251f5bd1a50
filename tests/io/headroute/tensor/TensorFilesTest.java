package io.headroute.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TensorFilesTest {
    @TempDir
    Path dir;

    private final Tensor t = Tensor.ofFloats(new float[] {1, 2, 3, 4, 5, 6}, 2, 3);

    @Test
    void npyByExtension() {
        Path f = dir.resolve("q.npy");
        TensorFiles.write(f, t);
        assertArrayEquals(t.toFloatArray(), Npy.read(f).toFloatArray());
        assertArrayEquals(t.toFloatArray(), TensorFiles.read(f).toFloatArray());
        Map<String, Tensor> all = TensorFiles.readAll(f);
        assertEquals(List.of("q"), List.copyOf(all.keySet()));
        assertArrayEquals(new long[] {2, 3}, all.get("q").shape());
    }

    @Test
    void safetensorsByExtensionNamesTheTensorAfterTheFile() {
        Path f = dir.resolve("k.cache.SafeTensors");
        TensorFiles.write(f, t);
        assertEquals(List.of("k.cache"), Safetensors.read(f).names());
        assertArrayEquals(t.toFloatArray(), TensorFiles.read(f).toFloatArray());
        assertEquals(List.of("k.cache"), List.copyOf(TensorFiles.readAll(f).keySet()));
    }

    @Test
    void singleReadOfSeveralTensorsNamesThem() {
        Path f = dir.resolve("qkv.safetensors");
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("q", t);
        m.put("k", t);
        Safetensors.write(f, m, Map.of());
        TensorFileException e = assertThrows(TensorFileException.class, () -> TensorFiles.read(f));
        assertTrue(e.getMessage().contains("qkv.safetensors: expected exactly one tensor, found 2 (q, k)"), e.getMessage());
        assertEquals(List.of("q", "k"), List.copyOf(TensorFiles.readAll(f).keySet()));
    }

    @Test
    void unknownExtensionIsRefused() throws IOException {
        Path f = Files.writeString(dir.resolve("q.pt"), "x");
        for (Runnable r : List.<Runnable>of(() -> TensorFiles.read(f), () -> TensorFiles.readAll(f), () -> TensorFiles.write(f, t))) {
            TensorFileException e = assertThrows(TensorFileException.class, r::run);
            assertEquals(f + ": unknown tensor file extension; expected .npy or .safetensors", e.getMessage());
        }
    }

    /** An empty path (e.g. --out "") is named as such, not as ": unknown tensor file extension". */
    @Test
    void anEmptyPathIsNamed() {
        Path empty = Path.of("");
        for (Runnable r : List.<Runnable>of(() -> TensorFiles.read(empty), () -> TensorFiles.readAll(empty),
                () -> TensorFiles.write(empty, t))) {
            TensorFileException e = assertThrows(TensorFileException.class, r::run);
            assertEquals("empty path: expected a .npy or .safetensors file", e.getMessage());
        }
        assertEquals("empty path: expected a file name", assertThrows(TensorFileException.class, () -> Npy.read(empty)).getMessage());
        assertEquals("empty path: expected a file name",
                assertThrows(TensorFileException.class, () -> AtomicFiles.write(empty, out -> out.write(1))).getMessage());
    }
}
