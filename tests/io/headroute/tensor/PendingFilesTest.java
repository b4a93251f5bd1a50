package io.headroute.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.InterruptedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

class PendingFilesTest {
    @TempDir
    Path dir;

    private List<String> listing() throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    /** The registered temporary files under the test's folder. */
    private List<Path> pendingHere() {
        return PendingFiles.WRITES.paths().stream().filter(p -> p.startsWith(dir)).toList();
    }

    @Test
    void theHookIsInstalledOnceAndDeletesWhatIsRegistered() throws IOException {
        List<Runnable> hooks = new ArrayList<>();
        PendingFiles pending = new PendingFiles(hooks::add);
        assertFalse(pending.hooked(), "installed before it was needed");
        Path a = Files.writeString(dir.resolve("a.tmp"), "a");
        Path b = Files.writeString(dir.resolve("b.tmp"), "b");
        Path folder = Files.createDirectories(dir.resolve("stage.tmp/sub"));
        Files.writeString(folder.resolve("c.txt"), "c");
        Path kept = Files.writeString(dir.resolve("kept.bin"), "k");
        assertTrue(pending.add(a));
        assertTrue(pending.add(b));
        assertTrue(pending.add(dir.resolve("stage.tmp")));
        assertTrue(pending.add(kept));
        assertTrue(pending.add(dir.resolve("never-created.tmp")));
        pending.remove(kept); // renamed into place: not the hook's to delete
        assertEquals(1, hooks.size(), "one hook for all");
        assertTrue(pending.hooked());
        assertEquals(List.of(a, b, dir.resolve("stage.tmp"), dir.resolve("never-created.tmp")), pending.paths());

        hooks.get(0).run();
        assertEquals(List.of("kept.bin"), listing());
        assertEquals(List.of(), pending.paths());
        assertFalse(pending.add(dir.resolve("late.tmp")), "registered after the clean-up ran");
        assertEquals(List.of(), pending.paths());
    }

    @Test
    void aJvmAlreadyShuttingDownRegistersNothing() {
        PendingFiles pending = new PendingFiles(task -> {
            throw new IllegalStateException("Shutdown in progress");
        });
        assertFalse(pending.add(dir.resolve("x.tmp")));
        assertFalse(pending.hooked());
        assertEquals(List.of(), pending.paths());
    }

    /** A write's temporary file is registered while it exists, and only then: after success and after failure. */
    @Test
    void aWriteRegistersItsTemporaryFileWhileItLasts() throws IOException {
        Path target = dir.resolve("out.bin");
        List<Path> during = new ArrayList<>();
        AtomicFiles.write(target, out -> {
            during.addAll(pendingHere());
            out.write(1);
        });
        assertEquals(1, during.size(), during::toString);
        assertTrue(during.get(0).getFileName().toString().startsWith(AtomicFiles.TEMP_PREFIX), during::toString);
        assertEquals(dir, during.get(0).getParent());
        assertEquals(List.of(), pendingHere());
        assertTrue(PendingFiles.WRITES.hooked());

        assertThrows(TensorFileException.class, () -> AtomicFiles.write(target, out -> {
            throw new IOException("disk full");
        }));
        assertThrows(IllegalStateException.class, () -> AtomicFiles.write(target, out -> {
            throw new IllegalStateException("boom");
        }));
        assertEquals(List.of(), pendingHere());
        assertEquals(List.of("out.bin"), listing());
    }

    /** A batch's staged files stay registered until the commit renames them or the close deletes them. */
    @Test
    void aBatchKeepsItsStagedFilesRegisteredUntilItEnds() throws IOException {
        try (AtomicFiles.Batch batch = AtomicFiles.batch()) {
            AtomicFiles.write(dir.resolve("a.bin"), out -> out.write(1));
            AtomicFiles.write(dir.resolve("b.bin"), out -> out.write(2));
            assertEquals(2, pendingHere().size());
            batch.commit();
        }
        assertEquals(List.of(), pendingHere());
        AtomicFiles.Batch uncommitted = AtomicFiles.batch();
        try {
            AtomicFiles.write(dir.resolve("c.bin"), out -> out.write(3));
            assertEquals(1, pendingHere().size());
        } finally {
            uncommitted.close();
        }
        assertEquals(List.of(), pendingHere());
        assertEquals(List.of("a.bin", "b.bin"), listing());
    }

    /** Writes a batch whose second file never finishes: run by {@link #sigtermDuringAWriteLeavesNoTemporaryFile}. */
    static final class Child {
        public static void main(String[] args) {
            Path dir = Path.of(args[0]);
            try (AtomicFiles.Batch batch = AtomicFiles.batch()) {
                AtomicFiles.write(dir.resolve("a.npy"), out -> out.write(new byte[1000]));
                AtomicFiles.write(dir.resolve("b.npy"), out -> {
                    out.write(new byte[1000]);
                    out.flush();
                    System.out.println("writing");
                    System.out.flush();
                    try {
                        Thread.sleep(120_000);
                    } catch (InterruptedException e) {
                        throw new InterruptedIOException();
                    }
                });
                batch.commit();
            }
        }
    }

    /** The hook itself: a JVM stopped by SIGTERM in the middle of a write leaves none of its temporary files. */
    @Test
    @Timeout(120)
    void sigtermDuringAWriteLeavesNoTemporaryFile() throws Exception {
        assumeFalse(System.getProperty("os.name").toLowerCase(Locale.ROOT).startsWith("windows"), "no SIGTERM");
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        Process p = new ProcessBuilder(java.toString(), "-Xmx64m", "-cp", System.getProperty("java.class.path"),
                Child.class.getName(), dir.toString()).redirectErrorStream(true).start();
        try {
            BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
            String line = r.readLine();
            assertEquals("writing", line);
            List<String> staged = listing();
            assertEquals(2, staged.size(), staged::toString);
            assertTrue(staged.stream().allMatch(n -> n.startsWith(AtomicFiles.TEMP_PREFIX) && n.endsWith(".tmp")), staged::toString);
            p.destroy(); // SIGTERM
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the child did not stop");
            assertNotEquals(0, p.exitValue());
            assertEquals(List.of(), listing());
        } finally {
            p.destroyForcibly();
        }
    }
}
