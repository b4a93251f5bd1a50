package io.headroute.experiment;

import java.lang.management.CompilationMXBean;
import java.lang.management.ManagementFactory;
import java.util.Arrays;
import java.util.function.LongSupplier;

/**
 * When a run's untimed warm-up calls may stop. Always after the sweep's count of calls; in a run that is
 * given warm-up time (the first length of each dtype and head count, {@link Experiment.Limits#firstWarmupNanos}),
 * not before that time has passed and then only once the JVM has settled: the just-in-time compiler has
 * finished nothing for {@link #QUIET_NANOS} and the last {@link #SETTLED_CALLS} calls took times within
 * {@link #SETTLED_SPREAD} of their median. On a machine with as many cores as the engine's threads a compile
 * still running takes a core from the timed work (the cpu preset measured flash at L = 512 with a median of
 * 10.4 ms and a minimum of 6.5 ms after a fixed 0.5 s). The time given is doubled at most, and
 * {@link #MAX_CALLS} calls end it too.
 *
 * <p>Use: {@code for (WarmUp w = ...; w.more(); ) { long t = clock; call(); w.called(clock - t); }}.
 */
final class WarmUp {
    /** How long the JIT must have finished no compilation. */
    static final long QUIET_NANOS = 200_000_000L;
    /** How many of the last calls must agree. */
    static final int SETTLED_CALLS = 3;
    /** Their largest relative distance from their median. */
    static final double SETTLED_SPREAD = 0.10;
    /** The most warm-up calls. */
    static final int MAX_CALLS = 200;

    /** Milliseconds the JIT has spent compiling so far, or -1 where the JVM does not say. */
    static final LongSupplier JIT_MILLIS = jitMillis();

    private final int minCalls;
    private final long settleFrom;
    private final long giveUpAt;
    private final LongSupplier clock;
    private final LongSupplier jit;
    private final long[] last = new long[SETTLED_CALLS];
    private int calls;
    private long jitSeen;
    private long jitQuietSince;

    /** The warm-up of a run: at least {@code minCalls} calls, then settling for at least {@code nanos} (0: none). */
    static WarmUp of(int minCalls, long nanos) {
        return new WarmUp(minCalls, nanos, System::nanoTime, JIT_MILLIS);
    }

    WarmUp(int minCalls, long nanos, LongSupplier clock, LongSupplier jit) {
        if (minCalls < 0 || nanos < 0) {
            throw new IllegalArgumentException("warm-up calls and time must be ≥ 0, got " + minCalls + " and " + nanos);
        }
        this.minCalls = minCalls;
        this.clock = clock;
        this.jit = jit;
        long now = clock.getAsLong();
        this.settleFrom = nanos == 0 ? -1 : now + nanos;
        this.giveUpAt = now + 2 * nanos;
        this.jitSeen = jit.getAsLong();
        this.jitQuietSince = now;
    }

    /** Whether another warm-up call is due. */
    boolean more() {
        if (calls < minCalls) {
            return true;
        }
        if (settleFrom < 0 || calls >= Math.max(minCalls, MAX_CALLS)) {
            return false;
        }
        long now = clock.getAsLong();
        if (now < settleFrom) {
            return true;
        }
        return now < giveUpAt && !settled(now);
    }

    /** Records one warm-up call that took {@code nanos}. */
    void called(long nanos) {
        last[calls % SETTLED_CALLS] = nanos;
        calls++;
        long j = jit.getAsLong();
        if (j != jitSeen) {
            jitSeen = j;
            jitQuietSince = clock.getAsLong();
        }
    }

    /** Calls made so far. */
    int calls() {
        return calls;
    }

    private boolean settled(long now) {
        if (jitSeen >= 0 && now - jitQuietSince < QUIET_NANOS) {
            return false;
        }
        if (calls < SETTLED_CALLS) {
            return false;
        }
        long[] t = last.clone();
        Arrays.sort(t);
        double median = t[SETTLED_CALLS / 2];
        return t[0] >= median * (1 - SETTLED_SPREAD) && t[SETTLED_CALLS - 1] <= median * (1 + SETTLED_SPREAD);
    }

    private static LongSupplier jitMillis() {
        CompilationMXBean bean = ManagementFactory.getCompilationMXBean();
        if (bean == null || !bean.isCompilationTimeMonitoringSupported()) {
            return () -> -1;
        }
        return bean::getTotalCompilationTime;
    }
}
