package io.headroute.cuda;

import java.util.Arrays;

/** Closing several resources in order, each whatever failed before it. */
public final class Resources {
    private Resources() {}

    /**
     * {@link #closeAll(Iterable)} of these (nulls skipped).
     *
     * @param resources the resources, closed in order
     */
    public static void closeAll(AutoCloseable... resources) {
        closeAll(Arrays.asList(resources));
    }

    /**
     * Closes each resource in order (nulls skipped), whatever failed before it; then throws the first failure, the
     * others attached as suppressed (a checked one wrapped in an {@link IllegalStateException}).
     *
     * @param resources the resources, closed in order
     */
    public static void closeAll(Iterable<? extends AutoCloseable> resources) {
        RuntimeException first = null;
        for (AutoCloseable c : resources) {
            if (c == null) {
                continue;
            }
            try {
                c.close();
            } catch (Exception e) {
                RuntimeException r = e instanceof RuntimeException re ? re : new IllegalStateException(e);
                if (first == null) {
                    first = r;
                } else {
                    first.addSuppressed(r);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }

    /**
     * {@link #closeAll} of {@code resources} after {@code failure}, whose errors ride along on it as suppressed; returns
     * {@code failure} for the caller to throw.
     *
     * @param <T>       the failure's type
     * @param failure   the failure that made the caller give up
     * @param resources what to close, in order (nulls skipped)
     * @return {@code failure}, with any closing failures added as suppressed
     */
    public static <T extends Throwable> T closeAfter(T failure, AutoCloseable... resources) {
        try {
            closeAll(resources);
        } catch (RuntimeException cleanup) {
            failure.addSuppressed(cleanup);
        }
        return failure;
    }
}
