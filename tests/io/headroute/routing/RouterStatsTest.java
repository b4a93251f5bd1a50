package io.headroute.routing;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class RouterStatsTest {
    @Test
    void handMadeExample() {
        // Hs = 1, Hr = 2, k = 1, four tokens: three go to routed head 0 (head 1), one to routed head 1 (head 2).
        RouterConfig c = new RouterConfig(1, 2, 1, 1);
        float[] gate = {
            1, 1, 0,
            1, 1, 0,
            1, 1, 0,
            1, 0, 1};
        float[] probs = {
            0.75f, 0.25f,
            0.6f, 0.4f,
            0.9f, 0.1f,
            0.2f, 0.8f};
        RouterStats s = RouterStats.of(c, gate, probs);
        assertEquals(4, s.tokens());
        assertArrayEquals(new double[] {0.75, 0.25}, s.tokenShare(), 1e-15);
        assertArrayEquals(new double[] {0.75, 0.25}, s.f(), 1e-15);
        assertArrayEquals(new double[] {0.75, 0.25}, s.meanGate(), 1e-15);
        // P = (0.75 + 0.6 + 0.9 + 0.2)/4, (0.25 + 0.4 + 0.1 + 0.8)/4
        assertArrayEquals(new double[] {0.6125, 0.3875}, s.meanProbability(), 1e-7);
        // 2 · (0.75 · 0.6125 + 0.25 · 0.3875) = 1.1125
        assertEquals(1.1125, s.loadBalance(), 1e-7);
        assertEquals(8.0 / 12, s.activeHeadFraction(), 1e-15);
    }

    /** NaN probabilities (a diverging router) give NaN statistics, which still equal themselves, as the arrays do. */
    @Test
    void statisticsWithNaNEqualThemselves() {
        RouterConfig c = new RouterConfig(0, 2, 1, 1);
        float[] gate = {1, 0, 0, 1};
        float[] probs = {Float.NaN, 0.5f, 0.5f, 0.5f};
        RouterStats s = RouterStats.of(c, gate, probs);
        assertTrue(Double.isNaN(s.loadBalance()), s::toString);
        assertEquals(s, s);
        assertEquals(s, RouterStats.of(c, gate.clone(), probs.clone()));
        assertEquals(s.hashCode(), RouterStats.of(c, gate.clone(), probs.clone()).hashCode());
    }

    @Test
    void kGreaterThanOneIsNormalizedSoThatFSumsToOne() {
        // Hs = 0, Hr = 3, k = 2, two tokens with renormalized gates.
        RouterConfig c = new RouterConfig(0, 3, 2, 1);
        float[] gate = {1.2f, 0.8f, 0f, 0f, 1.5f, 0.5f};
        float[] probs = {0.5f, 0.3f, 0.2f, 0.1f, 0.6f, 0.3f};
        RouterStats s = RouterStats.of(c, gate, probs);
        assertArrayEquals(new double[] {0.5, 1.0, 0.5}, s.tokenShare(), 1e-15);
        assertArrayEquals(new double[] {0.25, 0.5, 0.25}, s.f(), 1e-15);
        assertArrayEquals(new double[] {0.6, 1.15, 0.25}, s.meanGate(), 1e-7);
        assertArrayEquals(new double[] {0.3, 0.45, 0.25}, s.meanProbability(), 1e-7);
        // 3 · (0.25·0.3 + 0.5·0.45 + 0.25·0.25) = 3 · 0.3625
        assertEquals(1.0875, s.loadBalance(), 1e-7);
        assertEquals(4.0 / 6, s.activeHeadFraction(), 1e-15);
    }

    @Test
    void balancedRoutingGivesOne() {
        RouterConfig c = new RouterConfig(0, 2, 1, 1);
        RouterStats s = RouterStats.of(c, new float[] {1, 0, 0, 1}, new float[] {0.5f, 0.5f, 0.5f, 0.5f});
        assertEquals(1.0, s.loadBalance(), 1e-15);
        // Everything to one head with certainty: Hr.
        RouterStats worst = RouterStats.of(c, new float[] {1, 0, 1, 0}, new float[] {1, 0, 1, 0});
        assertEquals(2.0, worst.loadBalance(), 1e-15);
    }

    @Test
    void refusesMismatchedSizes() {
        RouterConfig c = new RouterConfig(1, 2, 1, 1);
        assertThrows(IllegalArgumentException.class, () -> RouterStats.of(c, new float[6], new float[2]));
        assertThrows(IllegalArgumentException.class, () -> RouterStats.of(c, new float[5], new float[4]));
    }
}
