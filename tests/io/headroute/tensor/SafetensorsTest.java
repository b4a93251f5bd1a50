package io.headroute.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.LogCapture;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.AbstractMap;
import java.util.AbstractSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.apache.logging.log4j.Level;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

class SafetensorsTest {
    @TempDir
    Path dir;

    /** A safetensors file: 8-byte little-endian header length, the header bytes, then {@code data}. */
    static byte[] build(byte[] header, byte[] data) {
        return ByteBuffer.allocate(8 + header.length + data.length).order(ByteOrder.LITTLE_ENDIAN)
                .putLong(header.length).put(header).put(data).array();
    }

    static byte[] build(String json, int dataBytes) {
        return build(json.getBytes(StandardCharsets.UTF_8), new byte[dataBytes]);
    }

    private Path file(String name, byte[] bytes) throws IOException {
        return Files.write(dir.resolve(name), bytes);
    }

    private List<String> listing() throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    private static void assertProblem(Path file, String keyword, Runnable action) {
        TensorFileException e = assertThrows(TensorFileException.class, action::run);
        assertTrue(e.getMessage().contains(file.getFileName().toString()), e.getMessage());
        assertTrue(e.getMessage().contains(keyword), "expected '" + keyword + "' in: " + e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }

    private static Map<String, Tensor> everyDtype() {
        byte[] raw = new byte[3 * 8];
        for (int i = 0; i < raw.length; i++) {
            raw[i] = (byte) (i * 29 + 3);
        }
        Map<String, Tensor> m = new LinkedHashMap<>();
        // Deliberately not alphabetical: the file must keep this order.
        m.put("zeta.weight", Tensor.ofFloats(new float[] {1.5f, -0f, Float.NaN, 3e38f, 1e-45f, -7f}, 2, 3));
        m.put("alpha", Tensor.ofFloats(DType.F16, new float[] {0.5f, -65504f, 6e-8f}, 3));
        m.put("mid/bf16", Tensor.ofFloats(DType.BF16, new float[] {1f, -2f, 3e38f, Float.NEGATIVE_INFINITY}, 2, 1, 2));
        m.put("ints", Tensor.ofInts(new int[] {Integer.MIN_VALUE, 0, Integer.MAX_VALUE}, 3, 1));
        m.put("longs", Tensor.of(DType.I64, new long[] {3}, ByteBuffer.wrap(raw)));
        m.put("bytes", Tensor.ofBytes(DType.U8, new byte[] {0, (byte) 200, 7}, 3));
        m.put("mask", Tensor.ofBytes(DType.BOOL, new byte[] {1, 0, 1, 1, 0}, 5));
        m.put("scalar", Tensor.ofFloats(new float[] {42f}));
        m.put("empty", Tensor.ofFloats(new float[0], 0, 4));
        m.put("ünïcødé", Tensor.ofInts(new int[] {5}, 1));
        return m;
    }

    @Test
    void roundTripsEveryDtypeKeepingOrderAndMetadata() throws IOException {
        Map<String, Tensor> tensors = everyDtype();
        Map<String, String> metadata = new LinkedHashMap<>();
        metadata.put("format", "pt");
        metadata.put("note", "keys \"quoted\" and ünïcødé");
        Path f = dir.resolve("all.safetensors");
        Safetensors.write(f, tensors, metadata);

        SafetensorsFile back = Safetensors.read(f);
        assertEquals(List.copyOf(tensors.keySet()), back.names());
        assertEquals(List.copyOf(metadata.entrySet()), List.copyOf(back.metadata().entrySet()));
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            Tensor t = back.tensor(e.getKey());
            assertEquals(e.getValue().dtype(), t.dtype(), e.getKey());
            assertArrayEquals(e.getValue().shape(), t.shape(), e.getKey());
            assertEquals(e.getValue().bytes(), t.bytes(), e.getKey());
            assertTrue(t.bytes().isDirect(), "tensors must be views of the memory map");
        }
        assertEquals(f, back.file());
        assertThrows(UnsupportedOperationException.class, () -> back.tensors().remove("alpha"));
    }

    @Test
    void writesTheReferenceLayout() throws IOException {
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        tensors.put("b", Tensor.ofFloats(new float[] {1, 2}, 2));
        tensors.put("a", Tensor.ofBytes(DType.U8, new byte[] {9}, 1));
        Path f = dir.resolve("layout.safetensors");
        Safetensors.write(f, tensors, Map.of("k", "v"));
        byte[] bytes = Files.readAllBytes(f);
        long n = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getLong();
        assertEquals(0, n % 8, "header padded to 8 bytes");
        String header = new String(bytes, 8, (int) n, StandardCharsets.UTF_8);
        assertEquals("{\"__metadata__\":{\"k\":\"v\"},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[8,9]}}", header.stripTrailing());
        assertEquals(8 + n + 9, bytes.length);
        assertEquals(9, bytes[bytes.length - 1]);

        Path plain = dir.resolve("plain.safetensors");
        Safetensors.write(plain, tensors, Map.of());
        assertFalse(new String(Files.readAllBytes(plain), StandardCharsets.ISO_8859_1).contains("__metadata__"));
        assertEquals(Map.of(), Safetensors.read(plain).metadata());
    }

    @Test
    void readsAHandBuiltFile() throws IOException {
        // What the reference writer produces for {"w": f32 [2, 2]}: compact JSON padded with spaces to 8 bytes.
        String json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
        String padded = json + " ".repeat((8 - json.length() % 8) % 8);
        ByteBuffer data = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        data.asFloatBuffer().put(new float[] {1, 2, 3, 4});
        SafetensorsFile f = Safetensors.read(file("w.safetensors", build(padded.getBytes(StandardCharsets.UTF_8), data.array())));
        assertEquals(List.of("w"), f.names());
        assertArrayEquals(new long[] {2, 2}, f.tensor("w").shape());
        assertArrayEquals(new float[] {1, 2, 3, 4}, f.tensor("w").toFloatArray());
    }

    @Test
    void emptyFileOfTensorsRoundTrips() throws IOException {
        Path f = dir.resolve("none.safetensors");
        Safetensors.write(f, Map.of(), Map.of("only", "metadata"));
        SafetensorsFile back = Safetensors.read(f);
        assertEquals(List.of(), back.names());
        assertEquals(Map.of("only", "metadata"), back.metadata());
    }

    @Test
    void missingTensorListsTheNamesThereAre() throws IOException {
        Path f = dir.resolve("two.safetensors");
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("q", Tensor.ofFloats(new float[] {1}, 1));
        m.put("k", Tensor.ofFloats(new float[] {2}, 1));
        Safetensors.write(f, m, Map.of());
        SafetensorsFile sf = Safetensors.read(f);
        assertProblem(f, "no tensor named 'v'; available: q, k", () -> sf.tensor("v"));
    }

    @Test
    void invalidNamesAreRefused() {
        Path f = dir.resolve("names.safetensors");
        Tensor t = Tensor.ofFloats(new float[] {1}, 1);
        assertProblem(f, "invalid tensor name ''", () -> Safetensors.write(f, Map.of("", t), Map.of()));
        assertProblem(f, "invalid tensor name '__metadata__'", () -> Safetensors.write(f, Map.of("__metadata__", t), Map.of()));
        assertFalse(Files.exists(f));
    }

    static Stream<Arguments> invalidFiles() {
        String f32x3 = "{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}";
        byte[] hugeLength = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(1L << 40).array();
        byte[] negativeLength = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(-8).array();
        byte[] longerThanFile = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(100).array();
        return Stream.of(
                Arguments.of(new byte[] {1, 2, 3, 4, 5}, "5 bytes is too short"),
                Arguments.of(longerThanFile, "truncated: header length is 100 bytes, file has only 8"),
                Arguments.of(hugeLength, "header length 1099511627776 is implausibly large"),
                Arguments.of(negativeLength, "header length 18446744073709551608 is implausibly large"),
                Arguments.of(build(new byte[] {'{', (byte) 0xc3, '}'}, new byte[0]), "not valid UTF-8"),
                Arguments.of(build("{\"a\": ", 0), "not valid JSON"),
                Arguments.of(build("{} {}", 0), "not valid JSON"),
                Arguments.of(build("[1, 2]", 0), "not a JSON object"),
                Arguments.of(build("\"text\"", 0), "not a JSON object"),
                Arguments.of(build("{\"a\":" + f32x3 + ",\"a\":" + f32x3 + "}", 12), "duplicate key 'a'"),
                Arguments.of(build("{\"a\": 5}", 0), "tensor 'a': entry must be an object, got a number"),
                Arguments.of(build("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,12]}}", 12), "tensor 'a': missing field \"shape\""),
                Arguments.of(build("{\"a\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]}}", 24),
                        "tensor 'a': unsupported dtype F64"),
                Arguments.of(build("{\"a\":{\"dtype\":7,\"shape\":[3],\"data_offsets\":[0,12]}}", 12), "dtype must be a string"),
                Arguments.of(build("{\"a\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,12]}}", 12), "shape must be an array"),
                Arguments.of(build("{\"a\":{\"dtype\":\"F32\",\"shape\":[-3],\"data_offsets\":[0,12]}}", 12), "non-negative integers"),
                Arguments.of(build("{\"a\":{\"dtype\":\"F32\",\"shape\":[3.0],\"data_offsets\":[0,12]}}", 12), "shape must be"),
                Arguments.of(build("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12,12]}}", 12),
                        "data_offsets must be two non-negative integers"),
                Arguments.of(build("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,\"12\"]}}", 12), "data_offsets must be"),
                Arguments.of(build("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[-4,8]}}", 12), "data_offsets must be"),
                Arguments.of(build("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[12,0]}}", 12), "end before they begin"),
                Arguments.of(build("{\"a\":" + f32x3 + "}", 8), "run past the end of the data section (8 bytes"),
                Arguments.of(build("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12),
                        "hold 12 bytes, but F32 [2] needs 8"),
                Arguments.of(build("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0),
                        "is too large"),
                Arguments.of(build("{\"a\":" + f32x3 + ",\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]}}", 20),
                        "tensors 'a' (bytes [0, 12)) and 'b' (bytes [8, 20)) overlap"),
                Arguments.of(build("{\"a\":" + f32x3 + ",\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[16,28]}}", 28),
                        "bytes [12, 16) of the data section belong to no tensor"),
                Arguments.of(build("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}", 16), "bytes [0, 4)"),
                Arguments.of(build("{\"a\":" + f32x3 + "}", 13), "trailing bytes: the data section has 13 bytes but the tensors cover only 12"),
                Arguments.of(build("{}", 1), "trailing bytes"),
                Arguments.of(build("{\"__metadata__\": [\"x\"]}", 0), "__metadata__ must be an object of strings, got an array"),
                Arguments.of(build("{\"__metadata__\": {\"epoch\": 3}}", 0), "__metadata__ must map strings to strings; 'epoch' is a number"));
    }

    /**
     * Valid files the reference reader takes: {@code "__metadata__": null} (no metadata) and fields of a tensor's
     * entry beyond dtype, shape and data_offsets (ignored, logged at DEBUG).
     */
    @Test
    void nullMetadataAndUnknownTensorFieldsAreAccepted() throws IOException {
        Path f = file("lenient.safetensors", build("{\"__metadata__\":null,\"a\":{\"dtype\":\"F32\",\"shape\":[3],"
                + "\"data_offsets\":[0,12],\"x\":1,\"note\":{\"y\":[null]}}}", 12));
        try (LogCapture log = LogCapture.of(Safetensors.class, Level.DEBUG)) {
            SafetensorsFile sf = Safetensors.read(f);
            assertEquals(Map.of(), sf.metadata());
            assertArrayEquals(new float[3], sf.tensor("a").toFloatArray());
            assertEquals(List.of(new LogCapture.Event(Level.DEBUG, f + ": tensor 'a': ignoring the field \"x\" (not dtype, shape or data_offsets)"),
                    new LogCapture.Event(Level.DEBUG, f + ": tensor 'a': ignoring the field \"note\" (not dtype, shape or data_offsets)")),
                    log.events());
        }
    }

    static Stream<Arguments> invalidJson() {
        String deep = "{\"__metadata__\":" + "[".repeat(1500) + "]".repeat(1500) + "}";
        return Stream.of(
                Arguments.of("{\"a\": [1, 2", "the JSON ends early inside an array (line 1, column 12); the 8-byte header length may be wrong"),
                Arguments.of("{\"a\": {\"b\": 1", "the JSON ends early inside an object (line 1, column 14); the 8-byte header length may be wrong"),
                Arguments.of("{\"a\": \"ab", "the JSON ends early inside a string (line 1, column 10); the 8-byte header length may be wrong"),
                Arguments.of("{\"a\": 1} {}", "more text after the JSON object (line 1, column 10)"),
                Arguments.of("{\"a\": 1,}", "unexpected character ('}'): was expecting double-quote to start field name (line 1, column 9)"),
                Arguments.of("{\"a\": [1}", "unexpected close marker '}': expected ']' (line 1, column 9)"),
                Arguments.of("{\"a\": NaN}", "non-standard token 'NaN' (line 1, column 10)"),
                Arguments.of("{\"a\": 1}\u0000\u0000", "illegal character (control character 0): only regular white space"),
                Arguments.of("{\"a\": \"x\ny\"}", "illegal unquoted character (control character 10): has to be escaped"),
                Arguments.of("\uFEFF{}", "it starts with a byte order mark (EF BB BF)"),
                Arguments.of(deep, "nested more than 1000 levels deep"),
                // Jackson's other size limits, which were all reported as nesting.
                Arguments.of("{\"__metadata__\": {\"a\": " + "7".repeat(1200) + "}}", "a number with too many digits (at most 1000)"),
                Arguments.of("{\"" + "n".repeat(60000) + "\": 1}", "a field name too long (at most 50000)"));
    }

    /** Jackson's messages are put plainly: no class or feature names, and the line and column where they apply. */
    @ParameterizedTest
    @MethodSource("invalidJson")
    void invalidJsonIsDescribedPlainly(String json, String problem) throws IOException {
        Path f = file("bad.safetensors", build(json, 0));
        TensorFileException e = assertThrows(TensorFileException.class, () -> Safetensors.read(f));
        assertTrue(e.getMessage().startsWith(f + ": header is not valid JSON: " + problem), e.getMessage());
        for (String leak : List.of("`", "Source", "REDACTED", "Feature", "com.fasterxml", "bound as", "code ")) {
            assertFalse(e.getMessage().contains(leak), () -> "'" + leak + "' in: " + e.getMessage());
        }
    }

    @Test
    void anEmptyHeaderSaysSo() throws IOException {
        Path f = file("bad.safetensors", build("", 0));
        assertEquals(f + ": header is empty; the 8-byte header length may be wrong",
                assertThrows(TensorFileException.class, () -> Safetensors.read(f)).getMessage());
        Path g = file("blank.safetensors", build("        ", 0));
        assertEquals(g + ": header is empty (only white space); the 8-byte header length may be wrong",
                assertThrows(TensorFileException.class, () -> Safetensors.read(g)).getMessage());
    }

    @ParameterizedTest
    @MethodSource("invalidFiles")
    void invalidFilesFailWithAPreciseMessage(byte[] bytes, String keyword) throws IOException {
        Path f = file("bad.safetensors", bytes);
        assertProblem(f, keyword, () -> Safetensors.read(f));
    }

    @Test
    void missingFileSaysSo() {
        Path f = dir.resolve("absent.safetensors");
        assertProblem(f, "no such file", () -> Safetensors.read(f));
    }

    /** Sparse files: gigabytes of apparent size that cost no disk. */
    private Path sparse(String name, String json, long dataBytes) throws IOException {
        byte[] head = build(json, 0);
        Path f = file(name, head);
        try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
            raf.setLength(head.length + dataBytes);
        }
        return f;
    }

    @Test
    void filesOver2GiBMapEachTensorSeparately() throws IOException {
        long a = 1_200_000_000L;
        long b = 1_000_000_000L;
        Path f = sparse("big.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[" + a + "],\"data_offsets\":[0," + a + "]},"
                + "\"b\":{\"dtype\":\"U8\",\"shape\":[" + b + "],\"data_offsets\":[" + a + "," + (a + b) + "]}}", a + b);
        long size = Files.size(f);
        assertTrue(size > Integer.MAX_VALUE);
        try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
            raf.seek(size - b); // first byte of b
            raf.write(11);
            raf.seek(size - 1); // last byte of b
            raf.write(22);
        }
        SafetensorsFile sf = Safetensors.read(f);
        assertEquals(a, sf.tensor("a").byteSize());
        Tensor tb = sf.tensor("b");
        assertEquals(b, tb.byteSize());
        assertTrue(tb.bytes().isDirect());
        assertEquals(11, tb.bytes().get(0));
        assertEquals(22, tb.bytes().get((int) b - 1));
        assertEquals(0, sf.tensor("a").bytes().get((int) a - 1));
    }

    @Test
    void tensorOver2GiBIsRefusedClearly() throws IOException {
        long n = 2_200_000_000L;
        Path f = sparse("huge.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[" + n + "],\"data_offsets\":[0," + n + "]}}", n);
        assertProblem(f, "tensor 'x': 2200000000 bytes (2.0 GiB) exceed the limit of 2147483647 bytes", () -> Safetensors.read(f));
    }

    /** Tensors whose second pass (the data write) fails after the first tensor, as a failing data source would. */
    private static Map<String, Tensor> failingOnSecondPass(Map<String, Tensor> real) {
        return new AbstractMap<>() {
            private int passes;

            @Override
            public Set<Map.Entry<String, Tensor>> entrySet() {
                boolean fail = ++passes > 1;
                return new AbstractSet<>() {
                    @Override
                    public Iterator<Map.Entry<String, Tensor>> iterator() {
                        Iterator<Map.Entry<String, Tensor>> it = real.entrySet().iterator();
                        return new Iterator<>() {
                            private int given;

                            @Override
                            public boolean hasNext() {
                                return it.hasNext();
                            }

                            @Override
                            public Map.Entry<String, Tensor> next() {
                                if (fail && given++ == 1) {
                                    throw new IllegalStateException("data source failed");
                                }
                                return it.next();
                            }
                        };
                    }

                    @Override
                    public int size() {
                        return real.size();
                    }
                };
            }
        };
    }

    @Test
    void failedWriteLeavesNoFileAndKeepsTheOldOne() throws IOException {
        Map<String, Tensor> real = new LinkedHashMap<>();
        real.put("first", Tensor.ofBytes(DType.U8, new byte[1 << 20], 1 << 20));
        real.put("second", Tensor.ofFloats(new float[] {1}, 1));

        Path fresh = dir.resolve("fresh.safetensors");
        assertThrows(IllegalStateException.class, () -> Safetensors.write(fresh, failingOnSecondPass(real), Map.of()));
        assertEquals(List.of(), listing());

        Path existing = dir.resolve("existing.safetensors");
        Safetensors.write(existing, Map.of("old", Tensor.ofInts(new int[] {7}, 1)), Map.of());
        byte[] before = Files.readAllBytes(existing);
        assertThrows(IllegalStateException.class, () -> Safetensors.write(existing, failingOnSecondPass(real), Map.of()));
        assertArrayEquals(before, Files.readAllBytes(existing));
        assertEquals(List.of("existing.safetensors"), listing());
        assertEquals(List.of("old"), Safetensors.read(existing).names());
    }
}
