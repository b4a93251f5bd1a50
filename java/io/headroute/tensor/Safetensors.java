package io.headroute.tensor;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.io.JsonEOFException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * {@code .safetensors} files: an 8-byte little-endian header length, a JSON header, then the tensor
 * bytes. Reading memory-maps the file and validates the header as the reference Rust implementation
 * does: every data byte belongs to exactly one tensor, offsets match shapes and dtypes. Like it, this
 * reader takes {@code "__metadata__": null} as no metadata and ignores fields of a tensor's entry other
 * than dtype, shape and data_offsets (logged at DEBUG); it refuses a key given twice. Tensors are views
 * of the map.
 */
public final class Safetensors {
    /** The reference implementation's limit; larger means corrupt or not a safetensors file. */
    static final long MAX_HEADER_BYTES = 100_000_000L;
    static final String METADATA_KEY = "__metadata__";

    private static final ObjectMapper MAPPER = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    private static final Set<String> FIELDS = Set.of("dtype", "shape", "data_offsets");
    private static final Logger LOG = LogManager.getLogger(Safetensors.class);

    private Safetensors() {}

    /**
     * Reads and validates a {@code .safetensors} file; the tensors are read-only views of a memory map.
     *
     * @param file the file
     * @return its tensors in file order, and its metadata
     * @throws TensorFileException when the file cannot be read, or its header or data offsets are malformed
     */
    public static SafetensorsFile read(Path file) {
        try (FileChannel ch = TensorFileIo.openForRead(file)) {
            return read(file, ch);
        } catch (IOException e) {
            throw new TensorFileException(file, "cannot read: " + AtomicFiles.describe(e), e);
        }
    }

    private record Entry(String name, DType dtype, long[] shape, long begin, long end) {}

    private static SafetensorsFile read(Path file, FileChannel ch) throws IOException {
        long size = ch.size();
        if (size < 8) {
            throw new TensorFileException(file, "not a safetensors file: " + size + " bytes is too short for the 8-byte header length");
        }
        long n = TensorFileIo.readFully(ch, 0, 8).getLong(0);
        if (n < 0 || n > MAX_HEADER_BYTES) {
            throw new TensorFileException(file, "header length " + Long.toUnsignedString(n)
                    + " is implausibly large (limit " + MAX_HEADER_BYTES + "); not a safetensors file?");
        }
        if (n > size - 8) {
            throw new TensorFileException(file, "truncated: header length is " + n + " bytes, file has only "
                    + (size - 8) + " after the length field");
        }
        JsonNode root = parseJson(file, TensorFileIo.readFully(ch, 8, (int) n));
        if (!root.isObject()) {
            throw new TensorFileException(file, "header is not a JSON object");
        }
        long dataStart = 8 + n;
        long dataSize = size - dataStart;

        Map<String, String> metadata = new LinkedHashMap<>();
        List<Entry> entries = new ArrayList<>();
        for (Map.Entry<String, JsonNode> field : root.properties()) {
            if (field.getKey().equals(METADATA_KEY)) {
                if (!field.getValue().isNull()) { // null: no metadata, as the reference reader takes it
                    metadata = metadata(file, field.getValue());
                }
            } else {
                entries.add(entry(file, field.getKey(), field.getValue(), dataSize));
            }
        }
        checkCoverage(file, entries, dataSize);

        // A file up to 2 GiB is mapped once; beyond that a ByteBuffer cannot span it, so each tensor gets its own map.
        ByteBuffer whole = size <= Integer.MAX_VALUE ? ch.map(FileChannel.MapMode.READ_ONLY, 0, size) : null;
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        for (Entry e : entries) {
            long len = e.end - e.begin;
            ByteBuffer bytes = whole != null
                    ? whole.slice((int) (dataStart + e.begin), (int) len)
                    : ch.map(FileChannel.MapMode.READ_ONLY, dataStart + e.begin, len);
            tensors.put(e.name, Tensor.of(e.dtype, e.shape, bytes));
        }
        return new SafetensorsFile(file, tensors, metadata);
    }

    private static JsonNode parseJson(Path file, ByteBuffer bytes) {
        String text;
        try {
            CharBuffer chars = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(bytes);
            text = chars.toString();
        } catch (CharacterCodingException e) {
            throw new TensorFileException(file, "header is not valid UTF-8", e);
        }
        if (text.startsWith("\uFEFF")) {
            throw new TensorFileException(file, "header is not valid JSON: it starts with a byte order mark (EF BB BF)");
        }
        if (text.isBlank()) {
            throw new TensorFileException(file, "header is empty" + (text.isEmpty() ? "" : " (only white space)")
                    + "; the 8-byte header length may be wrong");
        }
        try {
            return MAPPER.readTree(text);
        } catch (JsonProcessingException e) {
            throw new TensorFileException(file, "header is not valid JSON: " + jsonProblem(e), e);
        }
    }

    /** {@link JsonProblem#of}, with a hint where the header ends early: its length field may be wrong. */
    static String jsonProblem(JsonProcessingException e) {
        return JsonProblem.of(e) + (e instanceof JsonEOFException ? "; the 8-byte header length may be wrong" : "");
    }


    private static Map<String, String> metadata(Path file, JsonNode node) {
        if (!node.isObject()) {
            throw new TensorFileException(file, METADATA_KEY + " must be an object of strings, got " + kind(node));
        }
        Map<String, String> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> f : node.properties()) {
            if (!f.getValue().isTextual()) {
                throw new TensorFileException(file, METADATA_KEY + " must map strings to strings; '" + f.getKey()
                        + "' is " + kind(f.getValue()));
            }
            out.put(f.getKey(), f.getValue().textValue());
        }
        return out;
    }

    private static Entry entry(Path file, String name, JsonNode node, long dataSize) {
        String where = "tensor '" + name + "': ";
        if (!node.isObject()) {
            throw new TensorFileException(file, where + "entry must be an object, got " + kind(node));
        }
        for (String f : List.of("dtype", "shape", "data_offsets")) {
            if (!node.has(f)) {
                throw new TensorFileException(file, where + "missing field \"" + f + "\"");
            }
        }
        for (Map.Entry<String, JsonNode> f : node.properties()) {
            if (!FIELDS.contains(f.getKey())) { // the reference reader ignores them too
                LOG.debug("{}: tensor '{}': ignoring the field \"{}\" (not dtype, shape or data_offsets)", file, name, f.getKey());
            }
        }
        JsonNode dt = node.get("dtype");
        if (!dt.isTextual()) {
            throw new TensorFileException(file, where + "dtype must be a string, got " + kind(dt));
        }
        DType dtype = dtype(dt.textValue());
        if (dtype == null) {
            throw new TensorFileException(file, where + "unsupported dtype " + dt.textValue()
                    + " (supported: F32, F16, BF16, I32, I64, U8, BOOL)");
        }
        long[] shape = longs(node.get("shape"), -1);
        if (shape == null) {
            throw new TensorFileException(file, where + "shape must be an array of non-negative integers, got " + node.get("shape"));
        }
        long[] offsets = longs(node.get("data_offsets"), 2);
        if (offsets == null) {
            throw new TensorFileException(file, where + "data_offsets must be two non-negative integers, got "
                    + node.get("data_offsets"));
        }
        long begin = offsets[0];
        long end = offsets[1];
        if (begin > end) {
            throw new TensorFileException(file, where + "data_offsets [" + begin + ", " + end + "] end before they begin");
        }
        if (end > dataSize) {
            throw new TensorFileException(file, where + "data_offsets [" + begin + ", " + end
                    + "] run past the end of the data section (" + dataSize + " bytes; file truncated?)");
        }
        long need;
        try {
            need = Math.multiplyExact(Tensor.numel(shape), (long) dtype.byteSize());
        } catch (ArithmeticException e) {
            throw new TensorFileException(file, where + "shape " + Arrays.toString(shape) + " is too large");
        }
        if (end - begin != need) {
            throw new TensorFileException(file, where + "data_offsets [" + begin + ", " + end + "] hold " + (end - begin)
                    + " bytes, but " + dtype.name() + " " + Arrays.toString(shape) + " needs " + need);
        }
        if (need > Integer.MAX_VALUE) {
            throw new TensorFileException(file, where + need + " bytes (" + TensorFileIo.humanBytes(need)
                    + ") exceed the limit of " + Integer.MAX_VALUE + " bytes for one tensor");
        }
        return new Entry(name, dtype, shape, begin, end);
    }

    /** Every data byte must belong to exactly one tensor: no overlaps, no holes, nothing after the last. */
    private static void checkCoverage(Path file, List<Entry> entries, long dataSize) {
        List<Entry> sorted = new ArrayList<>(entries);
        sorted.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        long covered = 0;
        Entry previous = null;
        for (Entry e : sorted) {
            if (e.begin < covered) {
                throw new TensorFileException(file, "tensors '" + previous.name + "' " + range(previous) + " and '"
                        + e.name + "' " + range(e) + " overlap");
            }
            if (e.begin > covered) {
                throw new TensorFileException(file, "bytes [" + covered + ", " + e.begin
                        + ") of the data section belong to no tensor (a hole before '" + e.name + "')");
            }
            covered = e.end;
            previous = e;
        }
        if (covered != dataSize) {
            throw new TensorFileException(file, "trailing bytes: the data section has " + dataSize
                    + " bytes but the tensors cover only " + covered);
        }
    }

    private static String range(Entry e) {
        return "(bytes [" + e.begin + ", " + e.end + "))";
    }

    /** The values of an array of non-negative integers fitting a long, or null; {@code count} < 0 means any length. */
    private static long[] longs(JsonNode node, int count) {
        if (!node.isArray() || (count >= 0 && node.size() != count)) {
            return null;
        }
        long[] out = new long[node.size()];
        for (int i = 0; i < out.length; i++) {
            JsonNode v = node.get(i);
            if (!v.isIntegralNumber() || !v.canConvertToLong() || v.longValue() < 0) {
                return null;
            }
            out[i] = v.longValue();
        }
        return out;
    }

    private static DType dtype(String name) {
        return switch (name) {
            case "F32" -> DType.F32;
            case "F16" -> DType.F16;
            case "BF16" -> DType.BF16;
            case "I32" -> DType.I32;
            case "I64" -> DType.I64;
            case "U8" -> DType.U8;
            case "BOOL" -> DType.BOOL;
            default -> null;
        };
    }

    private static String kind(JsonNode node) {
        return switch (node.getNodeType()) {
            case ARRAY -> "an array";
            case OBJECT, POJO -> "an object";
            case STRING -> "a string";
            case NUMBER -> "a number";
            case BOOLEAN -> "a boolean";
            case NULL -> "null";
            default -> node.getNodeType().name().toLowerCase(Locale.ROOT);
        };
    }

    /**
     * Writes {@code tensors} in map order with consecutive offsets, and {@code metadata} (omitted when
     * empty), atomically. Names must be non-empty and not {@code __metadata__}.
     *
     * @param file     the target (see {@link AtomicFiles#write})
     * @param tensors  name → tensor, any dtype; written in the map's iteration order
     * @param metadata string entries for {@code __metadata__}, possibly empty
     * @throws TensorFileException for an invalid name, a header over the readers' limit, or when the file cannot
     *                             be written
     */
    public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) {
        ObjectNode root = MAPPER.createObjectNode();
        if (!metadata.isEmpty()) {
            ObjectNode meta = root.putObject(METADATA_KEY);
            metadata.forEach((k, v) -> meta.put(k, v));
        }
        long offset = 0;
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            String name = e.getKey();
            if (name.isEmpty() || name.equals(METADATA_KEY)) {
                throw new TensorFileException(file, "invalid tensor name '" + name + "' (names must be non-empty and not "
                        + METADATA_KEY + ")");
            }
            Tensor t = e.getValue();
            ObjectNode info = root.putObject(name);
            info.put("dtype", t.dtype().name());
            ArrayNode shape = info.putArray("shape");
            for (long d : t.shape()) {
                shape.add(d);
            }
            info.putArray("data_offsets").add(offset).add(offset + t.byteSize());
            offset += t.byteSize();
        }
        byte[] json;
        try {
            json = MAPPER.writeValueAsBytes(root);
        } catch (JsonProcessingException e) {
            throw new TensorFileException(file, "cannot encode header: " + e.getOriginalMessage(), e);
        }
        // The reference writer pads with spaces so the data section starts 8-byte aligned.
        long padded = (json.length + 7L) & ~7L;
        if (padded > MAX_HEADER_BYTES) {
            throw new TensorFileException(file, "header of " + padded + " bytes exceeds the " + MAX_HEADER_BYTES
                    + "-byte limit readers enforce");
        }
        AtomicFiles.write(file, out -> {
            TensorFileIo.writeLittleEndian(out, padded, 8);
            out.write(json);
            for (long i = json.length; i < padded; i++) {
                out.write(' ');
            }
            for (Tensor t : tensors.values()) {
                TensorFileIo.writeBuffer(out, t.bytes());
            }
        });
    }
}
