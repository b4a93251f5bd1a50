package io.headroute.tensor;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.exc.StreamConstraintsException;
import com.fasterxml.jackson.core.io.JsonEOFException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Jackson's parse errors in plain words (safetensors headers, model configs, pruning plans). */
public final class JsonProblem {
    private JsonProblem() {}

    /**
     * What is wrong with the JSON, in plain words with its line and column: Jackson's own messages name its classes
     * and features ("REDACTED (`StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION` disabled)"), which mean nothing to a
     * user.
     *
     * @param e Jackson's parse failure
     * @return one line, lower-case first, control characters escaped, ending in " (line N, column M)" where Jackson
     *         knows the place; "malformed JSON" for a message it cannot put plainly
     */
    public static String of(JsonProcessingException e) {
        JsonLocation loc = e.getLocation();
        String at = loc == null || loc.getLineNr() < 0 ? "" : " (line " + loc.getLineNr() + ", column " + loc.getColumnNr() + ")";
        String msg = String.valueOf(e.getOriginalMessage());
        if (e instanceof StreamConstraintsException) {
            return limitExceeded(msg, at);
        }
        if (e instanceof JsonEOFException) {
            String inside = msg.contains("Array") ? " inside an array" : msg.contains("Object") ? " inside an object"
                    : msg.contains("string") ? " inside a string" : "";
            return "the JSON ends early" + inside + at;
        }
        if (e instanceof MismatchedInputException && msg.startsWith("Trailing token")) {
            return "more text after the JSON object" + at;
        }
        Matcher dup = Pattern.compile("^Duplicate field '(.*)'$", Pattern.DOTALL).matcher(msg);
        if (dup.matches()) {
            return "duplicate key '" + dup.group(1) + "'" + at;
        }
        String plain = msg
                .replaceAll(" \\(for (Array|Object|root) starting at \\[Source:.*?\\]\\)", "")
                .replaceAll(": enable `[^`]*` to allow$", "")
                .replaceAll("\\(\\(CTRL-CHAR, code (\\d+)\\)\\)", "(control character $1)")
                .replaceAll(" \\(code \\d+( / 0x\\p{XDigit}+)?\\)", "");
        if (plain.contains("`") || plain.contains("[Source") || plain.contains("com.fasterxml") || plain.isBlank()) {
            plain = "malformed JSON"; // a message we do not know how to put plainly
        }
        return escapeControls(Character.toLowerCase(plain.charAt(0)) + plain.substring(1)) + at;
    }

    /**
     * One of the reader's size limits, from Jackson's message ("Number value length (1200) exceeds the maximum allowed
     * (1000, from `StreamReadConstraints.getMaxNumberLength()`)"): nesting, a number's digits, a string's or a field
     * name's characters, the document's length.
     */
    private static String limitExceeded(String msg, String at) {
        Matcher m = Pattern.compile("maximum allowed \\((\\d+)").matcher(msg);
        String max = m.find() ? m.group(1) : null;
        if (msg.contains("nesting depth")) {
            return "nested more than " + (max != null ? max : StreamReadConstraints.DEFAULT_MAX_DEPTH) + " levels deep";
        }
        String limit = max == null ? "" : " (at most " + max + ")";
        if (msg.startsWith("Number value length")) {
            return "a number with too many digits" + limit + at;
        }
        if (msg.startsWith("String value length")) {
            return "a string too long" + limit + at;
        }
        if (msg.startsWith("Name length")) {
            return "a field name too long" + limit + at;
        }
        if (msg.startsWith("Document length")) {
            return "the JSON is too long" + limit;
        }
        return "beyond a size limit of the JSON reader" + limit + at;
    }

    /**
     * "unknown field 'f' (expected a, b, …)" for the first field of the object {@code node} not in {@code allowed}, or
     * null when there is none (strict readers refuse typos: "casual" would otherwise leave a default silently).
     *
     * @param node    a JSON object
     * @param allowed the field names it may have
     * @return the message for its first unknown field (the name's control characters escaped), or null
     */
    public static String unknownField(JsonNode node, String... allowed) {
        List<String> ok = List.of(allowed);
        for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!ok.contains(f)) {
                return "unknown field '" + escapeControls(f) + "' (expected " + String.join(", ", allowed) + ")";
            }
        }
        return null;
    }

    /** {@code s} with control characters written as escapes, to keep a message on one readable line. */
    private static String escapeControls(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        for (char c : s.toCharArray()) {
            if (c < 0x20 || c == 0x7f) {
                sb.append(String.format(Locale.ROOT, "\\x%02x", (int) c));
            } else if (c == '\uFEFF') {
                sb.append("\\uFEFF");
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }
}
