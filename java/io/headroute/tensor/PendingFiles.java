package io.headroute.tensor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Consumer;
import java.util.stream.Stream;

/**
 * The temporary files and folders of {@link AtomicFiles}' writes in progress, deleted by a shutdown hook should the
 * JVM exit before the writes finish (Ctrl-C, SIGTERM, {@code System.exit}): an interrupted command leaves no
 * {@code .headroute-….tmp} behind. A path is added before it is created and removed once it is renamed into place or
 * deleted. One hook serves them all, installed on the first {@link #add}. Thread-safe.
 */
final class PendingFiles {
    /** The registry of this JVM's writes. */
    static final PendingFiles WRITES = new PendingFiles(
            task -> Runtime.getRuntime().addShutdownHook(new Thread(task, "headroute-temp-cleanup")));

    private final Consumer<Runnable> installHook;
    private final Set<Path> paths = new LinkedHashSet<>();
    private boolean hooked;
    private boolean closed;

    /** A registry that hands its clean-up to {@code installHook} on the first {@link #add}. */
    PendingFiles(Consumer<Runnable> installHook) {
        this.installHook = installHook;
    }

    /**
     * Registers {@code path}, which the caller is about to create. Returns false, registering nothing, once the
     * clean-up has begun (the JVM is exiting): the caller must then create nothing.
     */
    synchronized boolean add(Path path) {
        if (closed) {
            return false;
        }
        if (!hooked) {
            try {
                installHook.accept(this::deleteAll);
            } catch (IllegalStateException e) { // the JVM is already shutting down
                closed = true;
                return false;
            }
            hooked = true;
        }
        paths.add(path);
        return true;
    }

    /** Forgets {@code path}: it was renamed into place or deleted. */
    synchronized void remove(Path path) {
        paths.remove(path);
    }

    /** The paths registered now, in the order added. */
    synchronized List<Path> paths() {
        return List.copyOf(paths);
    }

    /** Whether the clean-up has been handed to the shutdown hook. */
    synchronized boolean hooked() {
        return hooked;
    }

    /**
     * The shutdown hook's task: deletes every registered path (a folder with what is in it) and refuses further
     * registrations. Best effort: what cannot be deleted stays.
     */
    void deleteAll() {
        List<Path> todo;
        synchronized (this) {
            closed = true;
            todo = new ArrayList<>(paths);
            paths.clear();
        }
        todo.forEach(PendingFiles::deleteTree);
    }

    private static void deleteTree(Path p) {
        try {
            if (Files.isDirectory(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                try (Stream<Path> s = Files.walk(p)) { // does not follow links
                    s.sorted(Comparator.reverseOrder()).forEach(PendingFiles::deleteQuietly);
                }
            } else {
                deleteQuietly(p);
            }
        } catch (IOException | RuntimeException ignored) {
            // The JVM is exiting: nothing to report to, nothing more to do.
        }
    }

    private static void deleteQuietly(Path p) {
        try {
            Files.deleteIfExists(p);
        } catch (IOException ignored) {
            // Best effort.
        }
    }
}
