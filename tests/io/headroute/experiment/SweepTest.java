package io.headroute.experiment;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import java.util.List;
import org.junit.jupiter.api.Test;

class SweepTest {
    @Test
    void lensAsListOrDoublingRange() {
        assertEquals(List.of(1024, 2048, 3000), Sweep.parseLens("1024, 2048,3000"));
        assertEquals(List.of(1024, 2048, 4096, 8192, 16384, 32768), Sweep.parseLens("1024..32768"));
        assertEquals(List.of(100, 200, 400), Sweep.parseLens("100..500"));
        assertEquals(List.of(64), Sweep.parseLens("64..64"));
    }

    @Test
    void badLens() {
        for (String bad : List.of("", "abc", "1024,", "0,64", "-5", "64..32", "..64", "1e3", "64...128")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Sweep.parseLens(bad), bad);
            assertTrue(e.getMessage().startsWith("--lens"), e.getMessage());
        }
    }

    @Test
    void sweepIsValidated() {
        List<Variant> v = List.of(new Variant.Flash(new Pattern.Dense()));
        Sweep s = new Sweep(List.of(64, 128), v, List.of(DType.F32, DType.BF16), List.of(2, 4), 0, 16, 1, false, 0, 1, 1);
        assertEquals(8, s.runCount());
        assertEquals(4, s.kvHeadsFor(4));
        Sweep gqa = new Sweep(List.of(64), v, List.of(DType.F32), List.of(4), 2, 16, 1, false, 0, 1, 1);
        assertEquals(2, gqa.kvHeadsFor(4));
        assertThrows(IllegalArgumentException.class,
                () -> new Sweep(List.of(64, 64), v, List.of(DType.F32), List.of(2), 0, 16, 1, false, 0, 1, 1));
        assertThrows(IllegalArgumentException.class,
                () -> new Sweep(List.of(64), List.of(), List.of(DType.F32), List.of(2), 0, 16, 1, false, 0, 1, 1));
        assertThrows(IllegalArgumentException.class,
                () -> new Sweep(List.of(64), v, List.of(DType.I32), List.of(2), 0, 16, 1, false, 0, 1, 1));
        assertThrows(IllegalArgumentException.class,
                () -> new Sweep(List.of(64), v, List.of(DType.F32), List.of(3), 2, 16, 1, false, 0, 1, 1));
        assertThrows(IllegalArgumentException.class,
                () -> new Sweep(List.of(64), v, List.of(DType.F32), List.of(2), 0, 16, 1, false, 0, 0, 1));
        assertThrows(IllegalArgumentException.class,
                () -> new Sweep(List.of(64), v, List.of(DType.F32), List.of(2), 0, 16, 1, false, -1, 1, 1));
    }

    @Test
    void presetsAreValidSweeps() {
        for (Preset p : Preset.values()) {
            assertTrue(p.sweep(false).runCount() > 0);
            assertTrue(p.sweep(true).runCount() > 0);
            assertEquals(p, Preset.parse(p.cliName()));
        }
        assertEquals(32768, Preset.GPU_32K.sweep(true).lens().get(Preset.GPU_32K.sweep(true).lens().size() - 1));
        assertEquals(List.of(DType.BF16), Preset.GPU_32K.sweep(true).dtypes());
        assertThrows(IllegalArgumentException.class, () -> Preset.parse("fast"));
    }

    @Test
    void claimWindowIsTheClosestToTheDensity() {
        for (int len : new int[] {1000, 4096}) {
            Pattern.Window w = Preset.windowWithDensity(Preset.CLAIM_DENSITY, len);
            double d = Experiment.tokenDensity(w, 1, len, len);
            double below = Experiment.tokenDensity(new Pattern.Window(w.w() - 1), 1, len, len);
            double above = Experiment.tokenDensity(new Pattern.Window(w.w() + 1), 1, len, len);
            assertTrue(Math.abs(d - 0.126) <= Math.abs(below - 0.126) && Math.abs(d - 0.126) <= Math.abs(above - 0.126),
                    w + ": " + d);
            assertTrue(Math.abs(d - 0.126) < 0.002, w + ": " + d);
        }
    }
}
