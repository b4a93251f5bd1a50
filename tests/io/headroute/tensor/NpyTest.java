package io.headroute.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.URISyntaxException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

class NpyTest {
    @TempDir
    Path dir;

    /** A golden file written by numpy 2.4.6 (see npy/make_fixtures.py). */
    static Path fixture(String name) {
        try {
            return Path.of(NpyTest.class.getResource("npy/" + name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static byte[] fixtureBytes(String name) throws IOException {
        return Files.readAllBytes(fixture(name));
    }

    /** A .npy file laid out the way numpy lays out a version 1.0 file with {@code dict} as header text. */
    static byte[] npyV1(String dict, byte[] data) {
        int unpadded = 10 + dict.length() + 1;
        int pad = 64 - unpadded % 64;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0});
        int len = dict.length() + pad + 1;
        out.write(len & 0xff);
        out.write(len >>> 8);
        out.writeBytes(dict.getBytes(StandardCharsets.ISO_8859_1));
        out.writeBytes(" ".repeat(pad).getBytes(StandardCharsets.US_ASCII));
        out.write('\n');
        out.writeBytes(data);
        return out.toByteArray();
    }

    private Path file(String name, byte[] bytes) throws IOException {
        return Files.write(dir.resolve(name), bytes);
    }

    private static byte[] f32Bytes(float... v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(v);
        return b.array();
    }

    private static void assertSameTensor(Tensor expected, Tensor actual) {
        assertEquals(expected.dtype(), actual.dtype());
        assertArrayEquals(expected.shape(), actual.shape());
        assertEquals(expected.bytes(), actual.bytes());
    }

    private static void assertProblem(Path file, String keyword, Runnable action) {
        TensorFileException e = assertThrows(TensorFileException.class, action::run);
        assertTrue(e.getMessage().contains(file.getFileName().toString()), e.getMessage());
        assertTrue(e.getMessage().contains(keyword), "expected '" + keyword + "' in: " + e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }

    static Stream<Tensor> everyDtype() {
        byte[] raw = new byte[7 * 2 * 8];
        for (int i = 0; i < raw.length; i++) {
            raw[i] = (byte) (i * 37 + 11);
        }
        return Stream.of(
                Tensor.ofFloats(new float[] {1.5f, -0f, Float.NaN, Float.NEGATIVE_INFINITY, 1e-45f, 3.4e38f}, 3, 1, 2),
                Tensor.ofFloats(DType.F16, new float[] {0.5f, -65504f, 6e-8f, Float.POSITIVE_INFINITY, 1f}, 5),
                Tensor.ofInts(new int[] {Integer.MIN_VALUE, -1, 0, 1, Integer.MAX_VALUE, 7, 8}, 7, 1),
                Tensor.of(DType.I64, new long[] {2, 7}, ByteBuffer.wrap(raw, 0, 2 * 7 * 8)),
                Tensor.ofBytes(DType.U8, new byte[] {0, 1, (byte) 127, (byte) 128, (byte) 255}, 1, 5, 1),
                Tensor.ofBytes(DType.BOOL, new byte[] {1, 0, 0, 1, 1, 1}, 2, 3),
                Tensor.ofFloats(new float[] {42f}),
                Tensor.ofBytes(DType.BOOL, new byte[] {1}),
                Tensor.ofFloats(new float[0], 0, 3),
                Tensor.ofInts(new int[0], 3, 0, 5),
                Tensor.ofBytes(DType.U8, new byte[0], 0));
    }

    @ParameterizedTest
    @MethodSource("everyDtype")
    void roundTripsEveryDtypeAndShape(Tensor t) throws IOException {
        Path f = dir.resolve("t.npy");
        Npy.write(f, t);
        assertSameTensor(t, Npy.read(f));
        byte[] bytes = Files.readAllBytes(f);
        assertArrayEquals(new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0}, Arrays.copyOf(bytes, 8));
        int headerLen = (bytes[8] & 0xff) | (bytes[9] & 0xff) << 8;
        assertEquals(0, (10 + headerLen) % 64, "header must end on a 64-byte boundary");
        assertEquals('\n', bytes[10 + headerLen - 1]);
        assertEquals(10 + headerLen + t.byteSize(), bytes.length);
    }

    @ParameterizedTest
    @ValueSource(strings = {"arange_f32_2x3.npy", "f16_2x3.npy", "i32_3.npy", "i64_2x1x2.npy", "u8_5.npy",
            "bool_2x2.npy", "scalar_f32.npy", "empty_f32_0x3.npy"})
    void rewritesNumpyFilesByteForByte(String name) throws IOException {
        Path out = dir.resolve(name);
        Npy.write(out, Npy.read(fixture(name)));
        assertArrayEquals(fixtureBytes(name), Files.readAllBytes(out));
    }

    @Test
    void handBuiltNumpyLayoutMatchesNumpyAndReads() throws IOException {
        // np.save of np.arange(6, dtype='<f4').reshape(2, 3): the dict, 21 − len("2") growth spaces,
        // padding to 64 bytes, a newline, then the data.
        String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" + " ".repeat(20);
        byte[] bytes = npyV1(dict, f32Bytes(0, 1, 2, 3, 4, 5));
        assertEquals(152, bytes.length);
        assertArrayEquals(fixtureBytes("arange_f32_2x3.npy"), bytes);

        Tensor t = Npy.read(file("arange.npy", bytes));
        assertEquals(DType.F32, t.dtype());
        assertArrayEquals(new long[] {2, 3}, t.shape());
        assertArrayEquals(new float[] {0, 1, 2, 3, 4, 5}, t.toFloatArray());
        Path out = dir.resolve("mine.npy");
        Npy.write(out, t);
        assertArrayEquals(bytes, Files.readAllBytes(out));
    }

    @Test
    void readsNumpyFixturesWithTheirValues() {
        assertArrayEquals(new float[] {0, 1, -2.5f, 65504, Float.POSITIVE_INFINITY, 0x1p-24f},
                Npy.read(fixture("f16_2x3.npy")).toFloatArray());
        Tensor i32 = Npy.read(fixture("i32_3.npy"));
        assertEquals(DType.I32, i32.dtype());
        assertEquals(Integer.MIN_VALUE, i32.bytes().getInt(0));
        assertEquals(Integer.MAX_VALUE, i32.bytes().getInt(8));
        Tensor i64 = Npy.read(fixture("i64_2x1x2.npy"));
        assertArrayEquals(new long[] {2, 1, 2}, i64.shape());
        assertEquals(Long.MIN_VALUE, i64.bytes().getLong(0));
        assertEquals(Long.MAX_VALUE, i64.bytes().getLong(24));
        assertArrayEquals(new float[] {0, 1, 127, 128, 255}, Npy.read(fixture("u8_5.npy")).toFloatArray());
        Tensor b = Npy.read(fixture("bool_2x2.npy"));
        assertEquals(DType.BOOL, b.dtype());
        assertArrayEquals(new boolean[] {true, false, false, true}, b.toBooleanArray());
        Tensor scalar = Npy.read(fixture("scalar_f32.npy"));
        assertEquals(0, scalar.rank());
        assertArrayEquals(new float[] {3.5f}, scalar.toFloatArray());
        Tensor empty = Npy.read(fixture("empty_f32_0x3.npy"));
        assertArrayEquals(new long[] {0, 3}, empty.shape());
        assertEquals(0, empty.byteSize());
    }

    @ParameterizedTest
    @ValueSource(strings = {"arange_f32_2x3_v2.npy", "arange_f32_2x3_v3.npy"})
    void readsVersions2And3(String name) throws IOException {
        byte[] bytes = fixtureBytes(name);
        assertEquals(name.contains("v2") ? 2 : 3, bytes[6]);
        Tensor t = Npy.read(fixture(name));
        assertArrayEquals(new long[] {2, 3}, t.shape());
        assertArrayEquals(new float[] {0, 1, 2, 3, 4, 5}, t.toFloatArray());
    }

    @Test
    void readsHandBuiltVersion3HeaderWithUtf8() throws IOException {
        String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
        byte[] text = (dict + "  \n").getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(12 + text.length + 8).order(ByteOrder.LITTLE_ENDIAN);
        b.put(new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 3, 0}).putInt(text.length).put(text).putFloat(1f).putFloat(2f);
        assertArrayEquals(new float[] {1, 2}, Npy.read(file("v3.npy", b.array())).toFloatArray());

        // The same header with a byte sequence that is not UTF-8 must fail as a header problem.
        b.put(20, (byte) 0xff);
        Path bad = file("bad_v3.npy", b.array());
        assertProblem(bad, "UTF-8", () -> Npy.read(bad));
    }

    @Test
    void switchesToVersion2OnlyWhenTheHeaderNeedsIt() throws IOException {
        long[] shape = new long[22000];
        Arrays.fill(shape, 1);
        Tensor t = Tensor.ofBytes(DType.U8, new byte[] {9}, shape);
        Path f = dir.resolve("deep.npy");
        Npy.write(f, t);
        byte[] bytes = Files.readAllBytes(f);
        assertEquals(2, bytes[6]);
        long headerLen = ByteBuffer.wrap(bytes, 8, 4).order(ByteOrder.LITTLE_ENDIAN).getInt() & 0xffffffffL;
        assertTrue(headerLen > 65535);
        assertEquals(0, (12 + headerLen) % 64);
        Tensor back = Npy.read(f);
        assertArrayEquals(shape, back.shape());
        assertEquals(9, back.bytes().get(0));
    }

    @Test
    void toleratesLooseButValidPythonLiterals() throws IOException {
        String[] dicts = {
            "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,)}",
            "{ 'shape' : ( 2 , ) , 'fortran_order' : False , 'descr' : '<f4' , }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }", // Python 2 era numpy
            "{'descr': '=f4', 'fortran_order': False, 'shape': (2,), }",
        };
        for (int i = 0; i < dicts.length; i++) {
            Tensor t = Npy.read(file("loose" + i + ".npy", npyV1(dicts[i], f32Bytes(1, 2))));
            assertArrayEquals(new float[] {1, 2}, t.toFloatArray(), dicts[i]);
        }
    }

    /**
     * Fortran order where it gives the same bytes as C order, as numpy writes it for a 1-d array saved from a
     * Fortran-ordered one: at most one axis longer than 1, or no elements. Refused otherwise (the 2x3 fixture).
     */
    @ParameterizedTest
    @ValueSource(strings = {"(3,)", "()", "(1, 3)", "(3, 1, 1)", "(0, 2)"})
    void fortranOrderIsReadWhereTheBytesAreTheSame(String shape) throws IOException {
        String dict = "{'descr': '<f4', 'fortran_order': True, 'shape': " + shape + ", }";
        int n = shape.equals("()") ? 1 : shape.contains("0") ? 0 : 3;
        float[] values = Arrays.copyOf(new float[] {1, 2, 3}, n);
        Tensor t = Npy.read(file("f.npy", npyV1(dict, f32Bytes(values))));
        assertArrayEquals(values, t.toFloatArray(), shape);
        Path twoD = file("f2.npy", npyV1("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f32Bytes(new float[6])));
        assertProblem(twoD, "Fortran order not supported", () -> Npy.read(twoD));
    }

    /** What np.save writes for ml_dtypes' bfloat16 ('<V2', raw void) is refused with the way out. */
    @ParameterizedTest
    @ValueSource(strings = {"<V2", "|V2"})
    void bf16SavedThroughMlDtypesGetsAHint(String descr) throws IOException {
        Path f = file("bf16.npy", npyV1("{'descr': '" + descr + "', 'fortran_order': False, 'shape': (3,), }", new byte[6]));
        TensorFileException e = assertThrows(TensorFileException.class, () -> Npy.read(f));
        assertEquals(f + ": unsupported dtype " + descr + " (supported: <f4, <f2, <i4, <i8, |u1, |b1); bf16 saved through"
                + " ml_dtypes? .npy cannot hold bf16 portably; use .safetensors", e.getMessage());
    }

    @ParameterizedTest
    @ValueSource(strings = {"|u1", "<u1", ">u1", "=u1"})
    void oneByteTypesIgnoreByteOrder(String descr) throws IOException {
        String dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (3,), }";
        Tensor t = Npy.read(file("u8.npy", npyV1(dict, new byte[] {1, 2, 3})));
        assertEquals(DType.U8, t.dtype());
        assertArrayEquals(new float[] {1, 2, 3}, t.toFloatArray());
    }

    @Test
    void smallDataIsCopiedLargeDataIsMapped() throws IOException {
        Path small = dir.resolve("small.npy");
        Npy.write(small, Tensor.ofBytes(DType.U8, new byte[1000], 1000));
        assertFalse(Npy.read(small).bytes().isDirect());

        byte[] big = new byte[(int) Npy.MMAP_THRESHOLD + 4096];
        big[big.length - 1] = 77;
        Path large = dir.resolve("large.npy");
        Npy.write(large, Tensor.ofBytes(DType.U8, big, big.length));
        Tensor t = Npy.read(large);
        assertTrue(t.bytes().isDirect());
        assertEquals(77, t.bytes().get(big.length - 1));
    }

    @Test
    void tensorOver2GiBIsRefusedClearly() throws IOException {
        String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (600000000,), }";
        byte[] header = npyV1(dict, new byte[0]);
        Path f = file("huge.npy", header);
        try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
            raf.setLength(header.length + 2_400_000_000L); // sparse: costs no disk
        }
        assertProblem(f, "exceeds the limit", () -> Npy.read(f));
    }

    static Stream<Arguments> corruptFiles() throws IOException {
        byte[] good = fixtureBytes("arange_f32_2x3.npy");
        byte[] badMagic = good.clone();
        badMagic[1] = 'X';
        byte[] version4 = good.clone();
        version4[6] = 4;
        byte[] trailing = Arrays.copyOf(good, good.length + 3);
        return Stream.of(
                Arguments.of("bad_magic.npy", badMagic, "bad magic"),
                Arguments.of("empty.npy", new byte[0], "bad magic"),
                Arguments.of("text.npy", "hello, world".getBytes(StandardCharsets.US_ASCII), "bad magic"),
                Arguments.of("version4.npy", version4, "unsupported .npy format version 4.0"),
                Arguments.of("cut_header.npy", Arrays.copyOf(good, 50), "truncated header"),
                Arguments.of("cut_length.npy", Arrays.copyOf(good, 9), "truncated"),
                Arguments.of("cut_data.npy", Arrays.copyOf(good, good.length - 4), "truncated: header says 24 data bytes, file has 20"),
                Arguments.of("trailing.npy", trailing, "trailing bytes: header says 24 data bytes, file has 27"),
                Arguments.of("fortran.npy", fixtureBytes("fortran_f4.npy"), "Fortran order not supported; save with np.ascontiguousarray"),
                Arguments.of("big_endian.npy", fixtureBytes("big_endian_f4.npy"), "big-endian dtype >f4 not supported"),
                Arguments.of("complex.npy", fixtureBytes("c8.npy"), "unsupported dtype <c8 (supported: <f4, <f2, <i4, <i8, |u1, |b1)"),
                Arguments.of("double.npy", fixtureBytes("f8.npy"), "astype(np.float32)"));
    }

    @ParameterizedTest
    @MethodSource("corruptFiles")
    void corruptFilesFailWithASpecificMessage(String name, byte[] bytes, String keyword) throws IOException {
        Path f = file(name, bytes);
        assertProblem(f, keyword, () -> Npy.read(f));
    }

    static Stream<Arguments> malformedHeaders() {
        return Stream.of(
                Arguments.of("{'descr' '<f4', 'fortran_order': False, 'shape': (6,), }", "expected ':'"),
                Arguments.of("{'descr': '<f4', 'fortran_order': False, }", "missing key 'shape'"),
                Arguments.of("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'extra': 1, }", "unexpected key 'extra'"),
                Arguments.of("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", "duplicate key 'descr'"),
                Arguments.of("{'descr': '<f4', 'fortran_order': False, 'shape': [6], }", "'shape' must be a tuple"),
                Arguments.of("{'descr': '<f4', 'fortran_order': False, 'shape': (6), }", "'shape' must be a tuple"),
                Arguments.of("{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }", "non-negative"),
                Arguments.of("{'descr': '<f4', 'fortran_order': 0, 'shape': (6,), }", "'fortran_order' must be True or False"),
                Arguments.of("{'descr': 4, 'fortran_order': False, 'shape': (6,), }", "'descr' must be a string"),
                Arguments.of("{'descr': '<f4, 'fortran_order': False, 'shape': (6,), }", "malformed header"),
                Arguments.of("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), } junk", "unexpected text after the dict"),
                Arguments.of("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (6,), }", "unexpected word 'Maybe'"),
                Arguments.of("{'descr': '<f4', 'fortran_order': False, 'shape': (6,)", "malformed header"),
                Arguments.of("['descr', '<f4']", "expected a dict"),
                Arguments.of("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", "too large"),
                Arguments.of("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", "too large"),
                Arguments.of("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }", "structured dtype not supported"));
    }

    @ParameterizedTest
    @MethodSource("malformedHeaders")
    void malformedHeadersAreNamed(String dict, String keyword) throws IOException {
        Path f = file("malformed.npy", npyV1(dict, f32Bytes(0, 1, 2, 3, 4, 5)));
        assertProblem(f, keyword, () -> Npy.read(f));
    }

    @Test
    void missingFileSaysSo() {
        Path f = dir.resolve("absent.npy");
        assertProblem(f, "no such file", () -> Npy.read(f));
    }

    @Test
    void bf16CannotBeWritten() {
        Path f = dir.resolve("b.npy");
        Tensor t = Tensor.ofFloats(DType.BF16, new float[] {1f}, 1);
        assertProblem(f, "bf16 cannot be stored in .npy; use .safetensors or convert to f32", () -> Npy.write(f, t));
        assertFalse(Files.exists(f));
    }

    @Test
    void writingIntoAMissingDirectoryNamesThePath() {
        Path f = dir.resolve("nope/q.npy");
        assertProblem(f, "does not exist", () -> Npy.write(f, Tensor.ofFloats(new float[] {1f}, 1)));
    }
}
