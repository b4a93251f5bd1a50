package io.headroute.experiment;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.Algorithm;
import io.headroute.pattern.Pattern;
import java.util.List;
import org.junit.jupiter.api.Test;

class VariantTest {
    @Test
    void grammar() {
        Variant m = Variant.parse("materialized");
        assertInstanceOf(Variant.Materialized.class, m);
        assertEquals(new Pattern.Dense(), m.pattern());
        assertEquals(Algorithm.MATERIALIZED, m.algorithm());
        assertEquals("materialized", m.spec());

        Variant f = Variant.parse(" flash ");
        assertEquals(new Variant.Flash(new Pattern.Dense()), f);
        assertEquals("flash", f.spec());
        assertTrue(f.full());

        Variant fw = Variant.parse("flash:window:64");
        assertEquals(new Variant.Flash(new Pattern.Window(64)), fw);
        assertEquals("flash:window:64", fw.spec());
        assertFalse(fw.full());

        Variant s = Variant.parse("sparse:window:256");
        assertEquals(new Variant.Sparse(new Pattern.Window(256)), s);
        assertEquals(Algorithm.SPARSE, s.algorithm());
        assertEquals("sparse:window:256", s.spec());

        Variant b = Variant.parse("sparse:bigbird:64:1:1:2:7");
        assertEquals(new Pattern.BigBird(64, 1, 1, 2, 7), b.pattern());
        assertEquals("sparse:bigbird:64:1:1:2:7", b.spec());

        assertEquals(new Variant.Materialized(new Pattern.Causal()), Variant.parse("materialized:causal"));
        assertTrue(Variant.parse("flash:causal").full());
        // Canonical specs parse back to the same variant.
        for (String spec : List.of("materialized", "flash", "flash:longformer:32:2", "sparse:causal", "materialized:window:8")) {
            assertEquals(spec, Variant.parse(spec).spec());
            assertEquals(Variant.parse(spec), Variant.parse(Variant.parse(spec).spec()));
        }
    }

    @Test
    void errorsAreOneLineAndSayWhatIsExpected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("quick"));
        assertTrue(e.getMessage().contains("unknown variant 'quick'"), e.getMessage());
        assertTrue(e.getMessage().contains("sparse:PATTERN"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("sparse"));
        assertTrue(e.getMessage().contains("needs a pattern"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("sparse:"));
        assertTrue(e.getMessage().contains("a pattern is expected"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("sparse:window:-3"));
        assertTrue(e.getMessage().startsWith("variant 'sparse:window:-3': pattern"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> Variant.parse("flash:nope"));
        assertTrue(e.getMessage().contains("unknown pattern"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Variant.parse(""));
        for (String bad : List.of("quick", "sparse", "sparse:window:x", "")) {
            IllegalArgumentException x = assertThrows(IllegalArgumentException.class, () -> Variant.parse(bad));
            assertFalse(x.getMessage().contains("\n"), x.getMessage());
        }
    }
}
