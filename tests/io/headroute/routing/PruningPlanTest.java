package io.headroute.routing;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.tensor.TensorFileException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class PruningPlanTest {
    @TempDir
    Path dir;

    private static PruningPlan example() {
        return PruningPlan.of(4, 8, Map.of(0, List.of(5, 3), 2, List.of(7), 3, List.of()));
    }

    @Test
    void masksAndCounts() {
        PruningPlan p = example();
        assertEquals(4, p.layers());
        assertEquals(8, p.heads());
        assertArrayEquals(new int[] {3, 5}, p.removedHeads(0));
        assertArrayEquals(new int[0], p.removedHeads(1));
        assertArrayEquals(new boolean[] {true, true, true, false, true, false, true, true}, p.headMask(0));
        assertArrayEquals(new boolean[] {true, true, true, true, true, true, true, true}, p.headMask(3));
        assertEquals(7, p.activeHeads(2));
        assertEquals(3.0 / 32, p.removedFraction(), 1e-15);
        assertEquals(java.util.Set.of(0, 2), p.prunedLayers(), "a layer with an empty list is not pruned");
        assertThrows(IndexOutOfBoundsException.class, () -> p.headMask(4));
    }

    @Test
    void jsonRoundTripThroughAFile() throws IOException {
        PruningPlan p = example();
        Path f = dir.resolve("plan.json");
        p.save(f);
        String text = Files.readString(f);
        assertTrue(text.contains("\"format\" : \"headroute-pruning-plan\""), text);
        assertEquals(p, PruningPlan.load(f));
        assertEquals(p, PruningPlan.fromJson(p.toJson()));
        assertEquals(PruningPlan.none(2, 3), PruningPlan.fromJson(PruningPlan.none(2, 3).toJson()));
        // Written as documented: layers increasing, heads increasing, empty layers left out.
        String compact = text.replaceAll("\\s", "");
        assertTrue(compact.contains("\"removed\":[{\"layer\":0,\"heads\":[3,5]},{\"layer\":2,\"heads\":[7]}]"), compact);
    }

    private static String plan(String removed) {
        return "{\"format\": \"headroute-pruning-plan\", \"version\": 1, \"layers\": 4, \"heads\": 8, \"removed\": " + removed + "}";
    }

    @ParameterizedTest(name = "{1}")
    @CsvSource(delimiter = '|', value = {
        "[{\"layer\": 4, \"heads\": [1]}]                                  | unknown layer 4 (the model has layers 0..3)",
        "[{\"layer\": -1, \"heads\": [1]}]                                 | unknown layer -1",
        "[{\"layer\": 1, \"heads\": [8]}]                                  | layer 1: head 8 is out of range (heads 0..7)",
        "[{\"layer\": 1, \"heads\": [-2]}]                                 | head -2 is out of range",
        "[{\"layer\": 1, \"heads\": [0, 1, 2, 3, 4, 5, 6, 7]}]             | layer 1: all 8 heads removed",
        "[{\"layer\": 1, \"heads\": [2, 5, 2]}]                            | layer 1: head 2 is listed twice",
        "[{\"layer\": 1, \"heads\": [2]}, {\"layer\": 1, \"heads\": [3]}]  | layer 1 is listed twice",
        "[{\"layer\": 1, \"heads\": [2], \"why\": 1}]                      | removed[0]: unknown field 'why'",
        "[{\"heads\": [2]}]                                                | removed[0]: missing \"layer\"",
        "[{\"layer\": 1}]                                                  | removed[0]: missing \"heads\"",
        "[{\"layer\": 1.5, \"heads\": [2]}]                                | \"layer\" must be an integer",
        "[{\"layer\": 1, \"heads\": [\"2\"]}]                              | heads[0] must be an integer",
        "[{\"layer\": 1, \"heads\": 2}]                                    | \"heads\" must be an array",
        "{\"1\": [2]}                                                      | \"removed\" must be an array",
        "[3]                                                               | removed[0] must be an object"})
    void refusesInvalidPlans(String removed, String message) {
        PruningPlanException e = assertThrows(PruningPlanException.class, () -> PruningPlan.fromJson(plan(removed)));
        assertTrue(e.getMessage().contains(message), () -> "expected '" + message + "' in: " + e.getMessage());
        assertTrue(e.getMessage().startsWith("pruning plan: "), e.getMessage());
    }

    @Test
    void refusesBadDocuments() {
        assertMessage("not valid JSON", "{\"format\": ");
        assertMessage("expected a JSON object", "[1, 2]");
        assertMessage("missing \"heads\"", "{\"format\": \"headroute-pruning-plan\", \"version\": 1, \"layers\": 4, \"removed\": []}");
        assertMessage("\"format\" must be \"headroute-pruning-plan\"",
                "{\"format\": \"other\", \"version\": 1, \"layers\": 4, \"heads\": 8, \"removed\": []}");
        assertMessage("version 2 is not supported",
                "{\"format\": \"headroute-pruning-plan\", \"version\": 2, \"layers\": 4, \"heads\": 8, \"removed\": []}");
        assertMessage("layers must be ≥ 1",
                "{\"format\": \"headroute-pruning-plan\", \"version\": 1, \"layers\": 0, \"heads\": 8, \"removed\": []}");
        assertMessage("unknown field 'extra'",
                "{\"format\": \"headroute-pruning-plan\", \"version\": 1, \"layers\": 4, \"heads\": 8, \"removed\": [], \"extra\": 0}");
        assertMessage("not valid JSON: duplicate key 'layers' (line 1, column 73)",
                "{\"format\": \"headroute-pruning-plan\", \"version\": 1, \"layers\": 4, \"layers\": 5, \"heads\": 8, \"removed\": []}");
        // A valid plan followed by more text is not that plan (it was read as the plan, the rest ignored).
        String good = "{\"format\": \"headroute-pruning-plan\", \"version\": 1, \"layers\": 4, \"heads\": 8, \"removed\": []}";
        PruningPlan.fromJson(good + "\n");
        assertMessage("not valid JSON: more text after the JSON object (line 1, column " + (good.length() + 2) + ")",
                good + " {\"x\": 1}");
        assertMessage("not valid JSON: unexpected close marker ']': expected '}'", good.substring(0, good.length() - 1) + "]]]");
    }

    private static void assertMessage(String keyword, String json) {
        PruningPlanException e = assertThrows(PruningPlanException.class, () -> PruningPlan.fromJson(json));
        assertTrue(e.getMessage().contains(keyword), () -> "expected '" + keyword + "' in: " + e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }

    @Test
    void programmaticPlansAreValidatedTheSameWay() {
        assertThrows(PruningPlanException.class, () -> PruningPlan.of(2, 4, Map.of(2, List.of(0))));
        assertThrows(PruningPlanException.class, () -> PruningPlan.of(2, 4, Map.of(0, List.of(0, 0))));
        assertThrows(PruningPlanException.class, () -> PruningPlan.of(2, 4, Map.of(0, List.of(0, 1, 2, 3))));
        assertThrows(PruningPlanException.class, () -> PruningPlan.of(2, 0, Map.of()));
    }

    @Test
    void loadNamesTheFile() throws IOException {
        Path f = dir.resolve("bad.json");
        Files.writeString(f, plan("[{\"layer\": 9, \"heads\": [1]}]"));
        PruningPlanException e = assertThrows(PruningPlanException.class, () -> PruningPlan.load(f));
        assertTrue(e.getMessage().startsWith(f + ": pruning plan: unknown layer 9"), e.getMessage());
        assertThrows(TensorFileException.class, () -> PruningPlan.load(dir.resolve("missing.json")));
        Path binary = dir.resolve("plan.npy");
        Files.write(binary, new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (byte) 0xff});
        TensorFileException t = assertThrows(TensorFileException.class, () -> PruningPlan.load(binary));
        assertTrue(t.getMessage().contains("not a text file"), t.getMessage());
    }
}
