package io.headroute.cuda.memory;

import java.util.Locale;

/** Human-readable byte counts in binary units: "512 B", "4.00 MiB", "79.10 GiB". */
public final class Bytes {
    private Bytes() {}

    public static String format(long bytes) {
        if (Math.abs(bytes) < 1024) {
            return bytes + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = -1;
        while (Math.abs(v) >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.2f %s", v, units[u]);
    }
}
