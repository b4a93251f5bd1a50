package io.headroute.cli;

import java.util.Locale;

/** Number formatting for the commands' reports. */
final class Units {
    private Units() {}

    static String mib(long bytes) {
        return String.format(Locale.ROOT, "%.2f MiB", bytes / (double) (1L << 20));
    }

    static String ms(double millis) {
        return String.format(Locale.ROOT, millis < 10 ? "%.3f ms" : "%.1f ms", millis);
    }

    static String fmt(String format, Object... args) {
        return String.format(Locale.ROOT, format, args);
    }
}
