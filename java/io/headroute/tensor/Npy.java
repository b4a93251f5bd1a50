package io.headroute.tensor;

import java.io.IOException;
import java.io.OutputStream;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.CharBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * NumPy {@code .npy} files: reads format versions 1.0, 2.0 and 3.0, writes 1.0 (2.0 when the header
 * needs it) byte for byte as {@code np.save} does. Only little-endian arrays of the dtypes in
 * {@link DType} except bf16 are supported, in C order (or Fortran order where the bytes are the same).
 */
public final class Npy {
    /** Data sections larger than this are memory-mapped instead of copied to the heap. */
    static final long MMAP_THRESHOLD = 16L << 20;
    /** numpy's own writer never needs more; a larger length means a corrupt or hostile file. */
    static final long MAX_HEADER_BYTES = 16L << 20;

    private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
    private static final int ALIGN = 64;
    /** numpy pads the header so the first dimension can grow in place to this many digits. */
    private static final int GROWTH_AXIS_MAX_DIGITS = 21;
    private static final String SUPPORTED = "<f4, <f2, <i4, <i8, |u1, |b1";

    private Npy() {}

    /**
     * Reads a {@code .npy} file; large data is memory-mapped read-only rather than copied.
     *
     * @param file the file
     * @return the tensor; data over 16 MiB is a read-only view of a memory map, smaller data a heap copy
     * @throws TensorFileException when the file cannot be read, is malformed, truncated, has trailing bytes, an
     *                             unsupported dtype or order, or more than {@code Integer.MAX_VALUE} data bytes
     */
    public static Tensor read(Path file) {
        try (FileChannel ch = TensorFileIo.openForRead(file)) {
            return read(file, ch);
        } catch (IOException e) {
            throw new TensorFileException(file, "cannot read: " + AtomicFiles.describe(e), e);
        }
    }

    private static Tensor read(Path file, FileChannel ch) throws IOException {
        long size = ch.size();
        ByteBuffer prefix = TensorFileIo.readFully(ch, 0, (int) Math.min(size, 12));
        if (size < MAGIC.length || !prefix.slice(0, MAGIC.length).equals(ByteBuffer.wrap(MAGIC))) {
            throw new TensorFileException(file, "not a .npy file (bad magic: it does not start with \\x93NUMPY)");
        }
        if (size < 8) {
            throw new TensorFileException(file, "truncated: file ends inside the format version");
        }
        int major = prefix.get(6) & 0xff;
        int minor = prefix.get(7) & 0xff;
        if (minor != 0 || major < 1 || major > 3) {
            throw new TensorFileException(file, "unsupported .npy format version " + major + "." + minor
                    + " (supported: 1.0, 2.0, 3.0)");
        }
        int lengthBytes = major == 1 ? 2 : 4;
        int prefixBytes = 8 + lengthBytes;
        if (size < prefixBytes) {
            throw new TensorFileException(file, "truncated: file ends inside the header length");
        }
        long headerBytes = major == 1 ? prefix.getShort(8) & 0xffff : prefix.getInt(8) & 0xffffffffL;
        if (headerBytes > MAX_HEADER_BYTES) {
            throw new TensorFileException(file, "malformed header: header length " + headerBytes + " is implausibly large");
        }
        long dataStart = prefixBytes + headerBytes;
        if (dataStart > size) {
            throw new TensorFileException(file, "truncated header: header length is " + headerBytes + " bytes, file has "
                    + (size - prefixBytes) + " after the prefix");
        }
        String text = decodeHeader(file, TensorFileIo.readFully(ch, prefixBytes, (int) headerBytes), major == 3);
        Header h = parseHeader(file, text);

        long dataBytes;
        try {
            dataBytes = Math.multiplyExact(Tensor.numel(h.shape), (long) h.dtype.byteSize());
        } catch (ArithmeticException e) {
            throw new TensorFileException(file, "malformed header: shape " + shapeRepr(h.shape) + " is too large");
        }
        long present = size - dataStart;
        if (present < dataBytes) {
            throw new TensorFileException(file, "truncated: header says " + dataBytes + " data bytes, file has " + present);
        }
        if (present > dataBytes) {
            throw new TensorFileException(file, "trailing bytes: header says " + dataBytes + " data bytes, file has "
                    + present + " (" + (present - dataBytes) + " extra)");
        }
        if (dataBytes > Integer.MAX_VALUE) {
            throw new TensorFileException(file, "tensor of " + dataBytes + " bytes (" + TensorFileIo.humanBytes(dataBytes)
                    + ") exceeds the limit of " + Integer.MAX_VALUE + " bytes for one tensor");
        }
        ByteBuffer data = dataBytes > MMAP_THRESHOLD
                ? ch.map(FileChannel.MapMode.READ_ONLY, dataStart, dataBytes)
                : TensorFileIo.readFully(ch, dataStart, (int) dataBytes);
        return Tensor.of(h.dtype, h.shape, data);
    }

    /**
     * Writes {@code tensor} as a {@code .npy} file, atomically. bf16 has no numpy dtype and is refused.
     *
     * @param file   the target (see {@link AtomicFiles#write})
     * @param tensor the tensor, any dtype but bf16
     * @throws TensorFileException for a bf16 tensor, or when the file cannot be written
     */
    public static void write(Path file, Tensor tensor) {
        byte[] header = header(file, tensor);
        AtomicFiles.write(file, out -> {
            out.write(header);
            TensorFileIo.writeBuffer(out, tensor.bytes());
        });
    }

    /** Magic, version, length and padded header, exactly as numpy's {@code write_array} lays them out. */
    static byte[] header(Path file, Tensor tensor) {
        String descr = switch (tensor.dtype()) {
            case F32 -> "<f4";
            case F16 -> "<f2";
            case I32 -> "<i4";
            case I64 -> "<i8";
            case U8 -> "|u1";
            case BOOL -> "|b1";
            case BF16 -> throw new TensorFileException(file, "bf16 cannot be stored in .npy; use .safetensors or convert to f32");
        };
        long[] shape = tensor.shape();
        StringBuilder dict = new StringBuilder("{'descr': '").append(descr)
                .append("', 'fortran_order': False, 'shape': ").append(shapeRepr(shape)).append(", }");
        if (shape.length > 0) {
            dict.append(" ".repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - Long.toString(shape[0]).length())));
        }
        byte[] text = dict.toString().getBytes(StandardCharsets.US_ASCII);
        int major = 1;
        int prefixBytes = 10;
        int padded = paddedLength(prefixBytes, text.length);
        if (padded > 0xffff) {
            major = 2;
            prefixBytes = 12;
            padded = paddedLength(prefixBytes, text.length);
        }
        ByteBuffer b = ByteBuffer.allocate(prefixBytes + padded).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MAGIC).put((byte) major).put((byte) 0);
        if (major == 1) {
            b.putShort((short) padded);
        } else {
            b.putInt(padded);
        }
        b.put(text);
        while (b.remaining() > 1) {
            b.put((byte) ' ');
        }
        b.put((byte) '\n');
        return b.array();
    }

    /** Header length after padding; like numpy, always at least one space before the newline. */
    private static int paddedLength(int prefixBytes, int textBytes) {
        int withNewline = textBytes + 1;
        return withNewline + ALIGN - (prefixBytes + withNewline) % ALIGN;
    }

    /** Python's repr of a shape tuple: (), (5,), (2, 3). */
    private static String shapeRepr(long[] shape) {
        StringBuilder sb = new StringBuilder("(");
        for (int i = 0; i < shape.length; i++) {
            if (i > 0) {
                sb.append(", ");
            }
            sb.append(shape[i]);
        }
        return sb.append(shape.length == 1 ? ",)" : ")").toString();
    }

    private static String decodeHeader(Path file, ByteBuffer bytes, boolean utf8) {
        if (!utf8) {
            return StandardCharsets.ISO_8859_1.decode(bytes).toString();
        }
        try {
            CharBuffer chars = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(bytes);
            return chars.toString();
        } catch (CharacterCodingException e) {
            throw new TensorFileException(file, "malformed header: version 3.0 header is not valid UTF-8", e);
        }
    }

    private record Header(DType dtype, long[] shape) {}

    private static Header parseHeader(Path file, String text) {
        Object parsed = new LiteralParser(file, text).parseAll();
        if (!(parsed instanceof Map<?, ?> dict)) {
            throw malformed(file, "expected a dict", text);
        }
        for (Object key : dict.keySet()) {
            if (!Set.of("descr", "fortran_order", "shape").contains(key)) {
                throw malformed(file, "unexpected key '" + key + "'", text);
            }
        }
        for (String key : List.of("descr", "fortran_order", "shape")) {
            if (!dict.containsKey(key)) {
                throw malformed(file, "missing key '" + key + "'", text);
            }
        }
        if (!(dict.get("fortran_order") instanceof Boolean fortran)) {
            throw malformed(file, "'fortran_order' must be True or False", text);
        }
        DType dtype = dtype(file, dict.get("descr"), text);
        if (!(dict.get("shape") instanceof Tuple tuple)) {
            throw malformed(file, "'shape' must be a tuple", text);
        }
        long[] shape = new long[tuple.items().size()];
        for (int i = 0; i < shape.length; i++) {
            if (!(tuple.items().get(i) instanceof Long d) || d < 0) {
                throw malformed(file, "'shape' must hold non-negative integers", text);
            }
            shape[i] = d;
        }
        if (fortran && !sameInBothOrders(shape)) {
            throw new TensorFileException(file, "Fortran order not supported; save with np.ascontiguousarray");
        }
        return new Header(dtype, shape);
    }

    /**
     * Whether an array of {@code shape} has the same bytes in Fortran order as in C order: at most one axis longer
     * than 1 (a scalar, a vector, (1, n), ...), or no elements at all.
     */
    private static boolean sameInBothOrders(long[] shape) {
        int longer = 0;
        for (long d : shape) {
            if (d == 0) {
                return true;
            }
            if (d > 1) {
                longer++;
            }
        }
        return longer <= 1;
    }

    private static DType dtype(Path file, Object descr, String text) {
        if (descr instanceof List<?>) {
            throw new TensorFileException(file, "structured dtype not supported (supported: " + SUPPORTED + ")");
        }
        if (!(descr instanceof String s)) {
            throw malformed(file, "'descr' must be a string", text);
        }
        char order = s.isEmpty() ? '?' : s.charAt(0);
        String code = s.length() > 1 ? s.substring(1) : s;
        DType t = switch (code) {
            case "f4" -> DType.F32;
            case "f2" -> DType.F16;
            case "i4" -> DType.I32;
            case "i8" -> DType.I64;
            case "u1" -> DType.U8;
            case "b1" -> DType.BOOL;
            default -> null;
        };
        boolean knownOrder = order == '<' || order == '>' || order == '|' || order == '=';
        if (t == null || !knownOrder || (order == '|' && t.byteSize() > 1)) {
            String hint = switch (code) {
                case "f8" -> "; convert with arr.astype(np.float32)";
                case "i1", "i2", "u2" -> "; convert with arr.astype(np.int32)";
                case "u4", "u8" -> "; convert with arr.astype(np.int64) if the values fit";
                case "V2" -> "; bf16 saved through ml_dtypes? .npy cannot hold bf16 portably; use .safetensors";
                default -> "";
            };
            throw new TensorFileException(file, "unsupported dtype " + s + " (supported: " + SUPPORTED + ")" + hint);
        }
        // One-byte types have no byte order; '=' means native, which is little-endian on every host the JVM
        // build targets, but check rather than assume.
        boolean littleEndian = order == '<'
                || (order == '=' && ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN);
        if (t.byteSize() > 1 && !littleEndian) {
            throw new TensorFileException(file, "big-endian dtype " + s + " not supported; convert with arr.astype('<"
                    + code + "')");
        }
        return t;
    }

    private static TensorFileException malformed(Path file, String problem, String text) {
        return new TensorFileException(file, "malformed header: " + problem + " in " + quote(text));
    }

    /** The header for a message: trimmed, padding squeezed, shortened, control characters escaped to keep one line. */
    private static String quote(String text) {
        String t = text.strip().replaceAll(" {2,}", " ");
        boolean cut = t.length() > 160;
        StringBuilder sb = new StringBuilder("\"");
        for (char c : (cut ? t.substring(0, 160) : t).toCharArray()) {
            if (c == '\n') {
                sb.append("\\n");
            } else if (c < 0x20 || c == 0x7f) {
                sb.append(String.format(Locale.ROOT, "\\x%02x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.append(cut ? "...\"" : "\"").toString();
    }

    /** A Python tuple, kept apart from a list because numpy requires the shape to be a tuple. */
    private record Tuple(List<Object> items) {}

    /** Python's None. */
    private enum None { NONE }

    /**
     * Parses the Python literal subset numpy writes in headers: dicts, tuples, lists, quoted strings,
     * integers (with Python 2's optional L suffix), True, False and None.
     */
    private static final class LiteralParser {
        private final Path file;
        private final String s;
        private int pos;

        LiteralParser(Path file, String s) {
            this.file = file;
            this.s = s;
        }

        Object parseAll() {
            Object v = value();
            skipSpace();
            if (pos != s.length()) {
                throw error("unexpected text after the dict");
            }
            return v;
        }

        private Object value() {
            skipSpace();
            if (pos >= s.length()) {
                throw error("header ends early");
            }
            char c = s.charAt(pos);
            return switch (c) {
                case '{' -> dict();
                case '(' -> tuple();
                case '[' -> list();
                case '\'', '"' -> string();
                default -> {
                    if (c == '-' || c == '+' || Character.isDigit(c)) {
                        yield integer();
                    }
                    yield word();
                }
            };
        }

        private Map<String, Object> dict() {
            pos++;
            Map<String, Object> map = new LinkedHashMap<>();
            while (true) {
                skipSpace();
                if (peek() == '}') {
                    pos++;
                    return map;
                }
                Object key = value();
                if (!(key instanceof String k)) {
                    throw error("dict keys must be strings");
                }
                expect(':');
                Object v = value();
                if (map.put(k, v) != null) {
                    throw error("duplicate key '" + k + "'");
                }
                if (!separator('}')) {
                    pos++;
                    return map;
                }
            }
        }

        private Object tuple() {
            pos++;
            List<Object> items = new ArrayList<>();
            boolean sawComma = false;
            while (true) {
                skipSpace();
                if (peek() == ')') {
                    pos++;
                    // "(5)" is just 5 in Python; only a comma makes a one-element tuple.
                    return items.size() == 1 && !sawComma ? items.get(0) : new Tuple(List.copyOf(items));
                }
                items.add(value());
                if (separator(')')) {
                    sawComma = true;
                } else {
                    pos++;
                    return items.size() == 1 && !sawComma ? items.get(0) : new Tuple(List.copyOf(items));
                }
            }
        }

        private List<Object> list() {
            pos++;
            List<Object> items = new ArrayList<>();
            while (true) {
                skipSpace();
                if (peek() == ']') {
                    pos++;
                    return items;
                }
                items.add(value());
                if (!separator(']')) {
                    pos++;
                    return items;
                }
            }
        }

        /** After an item: true if a comma follows (consumed), false if {@code close} follows (not consumed). */
        private boolean separator(char close) {
            skipSpace();
            char c = peek();
            if (c == ',') {
                pos++;
                return true;
            }
            if (c == close) {
                return false;
            }
            throw error("expected ',' or '" + close + "'");
        }

        private String string() {
            char quote = s.charAt(pos++);
            StringBuilder sb = new StringBuilder();
            while (pos < s.length()) {
                char c = s.charAt(pos++);
                if (c == quote) {
                    return sb.toString();
                }
                if (c == '\\') {
                    if (pos >= s.length()) {
                        break;
                    }
                    char e = s.charAt(pos++);
                    switch (e) {
                        case '\\', '\'', '"' -> sb.append(e);
                        case 'n' -> sb.append('\n');
                        case 't' -> sb.append('\t');
                        default -> throw error("unsupported escape \\" + e);
                    }
                } else if (c == '\n') {
                    break;
                } else {
                    sb.append(c);
                }
            }
            throw error("unterminated string");
        }

        private Long integer() {
            int start = pos;
            if (s.charAt(pos) == '-' || s.charAt(pos) == '+') {
                pos++;
            }
            int digits = pos;
            while (pos < s.length() && Character.isDigit(s.charAt(pos))) {
                pos++;
            }
            if (pos == digits) {
                throw error("expected a number");
            }
            BigInteger v = new BigInteger(s.substring(start, pos));
            if (pos < s.length() && (s.charAt(pos) == 'L' || s.charAt(pos) == 'l')) {
                pos++; // Python 2 long literal, written by old numpy versions
            }
            if (v.bitLength() > 63) {
                throw error("integer " + v + " is too large");
            }
            return v.longValue();
        }

        private Object word() {
            int start = pos;
            while (pos < s.length() && Character.isLetterOrDigit(s.charAt(pos))) {
                pos++;
            }
            String w = s.substring(start, pos);
            return switch (w) {
                case "True" -> Boolean.TRUE;
                case "False" -> Boolean.FALSE;
                case "None" -> None.NONE;
                default -> {
                    pos = start;
                    throw error(w.isEmpty() ? "unexpected character '" + s.charAt(pos) + "'" : "unexpected word '" + w + "'");
                }
            };
        }

        private void expect(char c) {
            skipSpace();
            if (peek() != c) {
                throw error("expected '" + c + "'");
            }
            pos++;
        }

        private char peek() {
            if (pos >= s.length()) {
                throw error("header ends early");
            }
            return s.charAt(pos);
        }

        private void skipSpace() {
            while (pos < s.length() && " \t\r\n".indexOf(s.charAt(pos)) >= 0) {
                pos++;
            }
        }

        private TensorFileException error(String problem) {
            return malformed(file, problem + " at character " + pos, s);
        }
    }
}
