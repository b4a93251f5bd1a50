package io.headroute.experiment;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.function.LongUnaryOperator;
import org.junit.jupiter.api.Test;

/** {@link WarmUp} on a fake clock and a fake JIT counter. */
class WarmUpTest {
    private static final long MS = 1_000_000L;

    /** Runs a warm-up whose call i takes callNanos(i) and after which the JIT has compiled jitMillis(i) in all. */
    private static int run(int minCalls, long nanos, LongUnaryOperator callNanos, LongUnaryOperator jitMillis) {
        long[] now = {0};
        long[] jit = {0};
        WarmUp w = new WarmUp(minCalls, nanos, () -> now[0], () -> jit[0]);
        while (w.more()) {
            int i = w.calls();
            long t = callNanos.applyAsLong(i);
            now[0] += t;
            jit[0] = jitMillis.applyAsLong(i);
            w.called(t);
            assertTrue(w.calls() <= 10_000, "no end");
        }
        return w.calls();
    }

    @Test
    void withoutTimeItIsTheSweepsCount() {
        assertEquals(0, run(0, 0, i -> 5 * MS, i -> i));
        assertEquals(3, run(3, 0, i -> 5 * MS, i -> i)); // the JIT busy throughout does not matter here
        assertEquals(250, run(250, 0, i -> MS, i -> 0)); // nor the call cap
    }

    @Test
    void steadyCallsStopOnceTheTimeHasPassed() {
        // 10 ms calls, no compilation: 0.5 s is 50 calls, then settled at once.
        assertEquals(50, run(1, 500 * MS, i -> 10 * MS, i -> 0));
    }

    @Test
    void goesOnWhileTheJitCompiles() {
        // The JIT finishes a compilation after every call up to call 79 (0.8 s), then is quiet: 200 ms more.
        assertEquals(80 + 20, run(1, 500 * MS, i -> 10 * MS, i -> i < 80 ? i + 1 : 80));
    }

    @Test
    void goesOnWhileTheCallsDisagree() {
        // Quiet JIT, but calls alternate 10 and 15 ms until 1 s, then settle at 10 ms: 3 agreeing calls after that.
        long[] elapsed = {0};
        int calls = run(1, 500 * MS, i -> {
            long t = elapsed[0] < 1000 * MS && i % 2 == 1 ? 15 * MS : 10 * MS;
            elapsed[0] += t;
            return t;
        }, i -> 0);
        // 80 calls of 12.5 ms on average reach 1 s; then three agreeing calls of 10 ms.
        assertTrue(calls >= 80 && calls <= 84, "calls " + calls);
    }

    @Test
    void givesUpAtTwiceTheTimeOrTheCallCap() {
        // Never settles: ends at 2 × 0.5 s of 10 ms calls, 100 calls.
        assertEquals(100, run(1, 500 * MS, i -> 10 * MS, i -> i + 1));
        // Fast calls: the cap of calls ends it first (0.5 s would be 500 calls).
        assertEquals(WarmUp.MAX_CALLS, run(1, 500 * MS, i -> MS, i -> i + 1));
        // A sweep's count above the cap is still honoured.
        assertEquals(300, run(300, 500 * MS, i -> MS, i -> i + 1));
    }

    @Test
    void aJvmWithoutCompilationTimesSettlesOnTheCallsAlone() {
        assertEquals(50, run(1, 500 * MS, i -> 10 * MS, i -> -1));
    }

    @Test
    void refusesNegatives() {
        assertThrows(IllegalArgumentException.class, () -> WarmUp.of(-1, 0));
        assertThrows(IllegalArgumentException.class, () -> WarmUp.of(0, -1));
    }
}
