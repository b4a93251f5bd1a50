package io.headroute.cuda.memory;

import java.util.Locale;

/** Human-readable byte counts in binary units: "512 B", "4.00 MiB", "79.10 GiB". */
public final class Bytes {
    private Bytes() {}

    /**
     * {@return {@code bytes} in binary units with two decimals: "512 B", "4.00 MiB", "79.10 GiB"}; counts under
     * 1 KiB exact, TiB the largest unit, negative counts formatted the same way.
     *
     * @param bytes the byte count
     */
    public static String format(long bytes) {
        return format(bytes, 2);
    }

    /** {@link #format} with {@code decimals} digits after the point (a count under 1 KiB is exact anyway). */
    private static String format(long bytes, int decimals) {
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
        return String.format(Locale.ROOT, "%." + decimals + "f %s", v, units[u]);
    }

    /**
     * {@code a} and {@code b} formatted for comparison: as {@link #format}, with more digits where two decimals would show
     * two different counts as equal ("3.004 MiB" against "3.000 MiB", not "3.00 MiB" twice), and exact byte counts where
     * even six would.
     *
     * @param a the first count
     * @param b the second count
     * @return {formatted a, formatted b}
     */
    public static String[] formatDistinct(long a, long b) {
        for (int d = 2; d <= 6; d++) {
            String fa = format(a, d);
            String fb = format(b, d);
            if (a == b || !fa.equals(fb)) {
                return new String[] {fa, fb};
            }
        }
        return new String[] {format(a) + " (" + a + " bytes)", format(b) + " (" + b + " bytes)"};
    }
}
