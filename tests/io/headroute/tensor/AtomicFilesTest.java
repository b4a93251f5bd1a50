package io.headroute.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AtomicFilesTest {
    @TempDir
    Path dir;

    private List<String> listing() throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void writesContentAndLeavesNoTemporaryFile() throws IOException {
        Path target = dir.resolve("out.bin");
        AtomicFiles.write(target, out -> out.write("hello".getBytes(StandardCharsets.UTF_8)));
        assertEquals("hello", Files.readString(target));
        assertEquals(List.of("out.bin"), listing());
    }

    /** A batch renames nothing until its commit; closed without one it leaves every target as it was. */
    @Test
    void aBatchWritesAllOrNothingAndKeepsOldFiles() throws IOException {
        Path a = dir.resolve("a.bin");
        Path b = dir.resolve("b.npy");
        Files.writeString(a, "old a");
        try (AtomicFiles.Batch batch = AtomicFiles.batch()) {
            AtomicFiles.write(a, out -> out.write("new a".getBytes(StandardCharsets.UTF_8)));
            assertEquals("old a", Files.readString(a), "renamed before the commit");
            Npy.write(b, Tensor.ofFloats(new float[] {1, 2}, 2)); // the tensor writers stage into the batch too
            assertFalse(Files.exists(b));
            batch.commit();
        }
        assertEquals("new a", Files.readString(a));
        assertArrayEquals(new float[] {1, 2}, Npy.read(b).toFloatArray());
        assertEquals(List.of("a.bin", "b.npy"), listing());

        // The second write fails: the first target keeps its old content, nothing staged is left.
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> {
            try (AtomicFiles.Batch batch = AtomicFiles.batch()) {
                AtomicFiles.write(a, out -> out.write("newer a".getBytes(StandardCharsets.UTF_8)));
                AtomicFiles.write(b, out -> {
                    throw new IllegalStateException("boom");
                });
                batch.commit();
            }
        });
        assertEquals("boom", e.getMessage());
        assertEquals("new a", Files.readString(a));
        assertEquals(List.of("a.bin", "b.npy"), listing(), "no staged file left");
        // Outside a batch, writes rename at once again; batches do not nest; folders are not written inside one.
        AtomicFiles.write(a, out -> out.write('x'));
        assertEquals("x", Files.readString(a));
        AtomicFiles.Batch open = AtomicFiles.batch();
        try {
            assertThrows(IllegalStateException.class, AtomicFiles::batch);
            assertThrows(IllegalStateException.class, () -> AtomicFiles.writeFolder(dir.resolve("f"), java.util.Map.of(), "f"));
        } finally {
            open.close();
        }
        assertEquals(List.of("a.bin", "b.npy"), listing());
    }

    @Test
    void replacesAnExistingFile() throws IOException {
        Path target = dir.resolve("out.bin");
        Files.writeString(target, "old content that is longer");
        AtomicFiles.write(target, out -> out.write('x'));
        assertEquals("x", Files.readString(target));
        assertEquals(List.of("out.bin"), listing());
    }

    @Test
    void bodyClosingItsStreamIsHarmless() throws IOException {
        Path target = dir.resolve("out.bin");
        AtomicFiles.write(target, out -> {
            out.write(new byte[] {1, 2, 3});
            out.close();
        });
        assertArrayEquals(new byte[] {1, 2, 3}, Files.readAllBytes(target));
    }

    @Test
    void ioFailureInBodyLeavesNoFiles() throws IOException {
        Path target = dir.resolve("out.bin");
        TensorFileException e = assertThrows(TensorFileException.class, () -> AtomicFiles.write(target, out -> {
            out.write(new byte[1 << 20]); // past the buffer, so bytes really reached the temporary file
            throw new IOException("disk on fire");
        }));
        assertTrue(e.getMessage().contains("out.bin"), e.getMessage());
        assertTrue(e.getMessage().contains("disk on fire"), e.getMessage());
        assertEquals(target, e.file());
        assertEquals(List.of(), listing());
    }

    @Test
    void runtimeFailureInBodyPropagatesAndKeepsTheOldFile() throws IOException {
        Path target = dir.resolve("out.bin");
        Files.writeString(target, "precious");
        IllegalStateException boom = new IllegalStateException("boom");
        IllegalStateException thrown = assertThrows(IllegalStateException.class, () -> AtomicFiles.write(target, out -> {
            out.write(new byte[1 << 20]);
            throw boom;
        }));
        assertSame(boom, thrown);
        assertEquals("precious", Files.readString(target));
        assertEquals(List.of("out.bin"), listing());
    }

    @Test
    void missingDirectoryIsReportedWithThePath() {
        Path target = dir.resolve("no/such/dir/out.bin");
        TensorFileException e = assertThrows(TensorFileException.class, () -> AtomicFiles.write(target, out -> out.write(1)));
        assertTrue(e.getMessage().startsWith(target.toString() + ": "), e.getMessage());
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
        assertFalse(Files.exists(target));
    }

    /** A file where the target's folder should be is named as such, not as a missing directory. */
    @Test
    void aFileAsTheFolderIsNamed() throws IOException {
        Path afile = Files.writeString(dir.resolve("afile"), "hi");
        for (Path target : List.of(afile.resolve("out.bin"), afile.resolve("sub/out.bin"))) {
            TensorFileException e = assertThrows(TensorFileException.class, () -> AtomicFiles.write(target, out -> out.write(1)));
            assertEquals(target + ": cannot write: " + afile + " is not a directory", e.getMessage());
        }
        assertEquals("hi", Files.readString(afile));
        assertEquals(List.of("afile"), listing());
    }

    /** The temporary name is short whatever the target's: a 250-byte name is written; a 256-byte one is refused first. */
    @Test
    void longNamesAreWrittenAndTooLongOnesRefusedBeforeTheWork() throws IOException {
        Path longest = dir.resolve("x".repeat(251) + ".npy");
        Npy.write(longest, Tensor.ofFloats(new float[] {1, 2}, 2));
        assertArrayEquals(new float[] {1, 2}, Npy.read(longest).toFloatArray());
        assertEquals(List.of(longest.getFileName().toString()), listing());

        Path tooLong = dir.resolve("x".repeat(252) + ".bin");
        boolean[] ran = {false};
        TensorFileException e = assertThrows(TensorFileException.class, () -> AtomicFiles.write(tooLong, out -> ran[0] = true));
        assertEquals(tooLong + ": cannot write: the name is 256 bytes long; file systems take at most 255", e.getMessage());
        assertFalse(ran[0], "the body ran");
        IllegalArgumentException folder = assertThrows(IllegalArgumentException.class,
                () -> AtomicFiles.checkNewFolder(dir.resolve("y".repeat(300)), "--out"));
        assertTrue(folder.getMessage().endsWith("cannot be created: the name is 300 bytes long; file systems take at most 255"),
                folder.getMessage());
        Path longFolder = dir.resolve("z".repeat(255));
        AtomicFiles.writeFolder(longFolder, java.util.Map.of("a.txt", new byte[] {'A'}), "the test folder");
        assertEquals("A", Files.readString(longFolder.resolve("a.txt")));
        assertEquals(List.of(longest.getFileName().toString(), longFolder.getFileName().toString()), listing());
    }

    /**
     * A file the user may not write is refused, as open(2) and np.save refuse it, and left as it was; root may write
     * it (open(2) lets root), and then it keeps its permissions as any replaced file.
     */
    @Test
    void aFileTheUserMayNotWriteIsRefused() throws IOException {
        assumeTrue(Files.getFileStore(dir).supportsFileAttributeView(PosixFileAttributeView.class), "no POSIX permissions here");
        Path target = dir.resolve("out.npy");
        Files.writeString(target, "old");
        Set<PosixFilePermission> readOnly = PosixFilePermissions.fromString("r--r--r--");
        Files.setPosixFilePermissions(target, readOnly);
        Tensor t = Tensor.ofFloats(new float[] {3}, 1);
        if (Files.isWritable(target)) { // root: the bits do not bind
            Npy.write(target, t);
            assertEquals(1, Npy.read(target).shape()[0]);
        } else {
            TensorFileException e = assertThrows(TensorFileException.class, () -> Npy.write(target, t));
            assertTrue(e.getMessage().endsWith("cannot write: permission denied"), e.getMessage());
            assertEquals("old", Files.readString(target));
        }
        assertEquals(readOnly, Files.getPosixFilePermissions(target));
        assertEquals(List.of("out.npy"), listing());
    }

    /** A replaced file keeps its permissions (a new file gets the default ones), in a batch too. */
    @Test
    void aReplacedFileKeepsItsPermissions() throws IOException {
        assumeTrue(Files.getFileStore(dir).supportsFileAttributeView(PosixFileAttributeView.class), "no POSIX permissions here");
        Path target = dir.resolve("out.bin");
        Files.writeString(target, "old");
        Set<PosixFilePermission> odd = PosixFilePermissions.fromString("rw-r----x");
        Files.setPosixFilePermissions(target, odd);
        AtomicFiles.write(target, out -> out.write("new".getBytes(StandardCharsets.UTF_8)));
        assertEquals("new", Files.readString(target));
        assertEquals(odd, Files.getPosixFilePermissions(target));

        Set<PosixFilePermission> secret = PosixFilePermissions.fromString("rw-------");
        Files.setPosixFilePermissions(target, secret);
        try (AtomicFiles.Batch batch = AtomicFiles.batch()) {
            Npy.write(target, Tensor.ofFloats(new float[] {3}, 1));
            batch.commit();
        }
        assertEquals(secret, Files.getPosixFilePermissions(target));

        Path fresh = dir.resolve("fresh.bin");
        AtomicFiles.write(fresh, out -> out.write(1));
        Path plain = Files.createFile(dir.resolve("plain.bin"));
        assertEquals(Files.getPosixFilePermissions(plain), Files.getPosixFilePermissions(fresh));
    }

    /** A symbolic link is written through, as np.save writes: the file it leads to is replaced, the link stays. */
    @Test
    void aSymbolicLinkIsWrittenThrough() throws IOException {
        Path elsewhere = Files.createDirectory(dir.resolve("elsewhere"));
        Path real = Files.writeString(elsewhere.resolve("real.bin"), "old");
        Path link = Files.createSymbolicLink(dir.resolve("link.bin"), Path.of("elsewhere/real.bin")); // relative
        Path chain = Files.createSymbolicLink(dir.resolve("chain.bin"), link);
        AtomicFiles.write(chain, out -> out.write("new".getBytes(StandardCharsets.UTF_8)));
        assertEquals("new", Files.readString(real));
        assertTrue(Files.isSymbolicLink(link) && Files.isSymbolicLink(chain), "a link was replaced");
        assertEquals(List.of("chain.bin", "elsewhere", "link.bin"), listing());
        try (Stream<Path> s = Files.list(elsewhere)) {
            assertEquals(List.of(real), s.toList(), "the temporary file is staged beside the real file and renamed");
        }
        // A dangling link: the file it names is created, as open() creates it.
        Path dangling = Files.createSymbolicLink(dir.resolve("dangling.bin"), elsewhere.resolve("new.bin"));
        try (AtomicFiles.Batch batch = AtomicFiles.batch()) {
            AtomicFiles.write(dangling, out -> out.write("made".getBytes(StandardCharsets.UTF_8)));
            batch.commit();
        }
        assertEquals("made", Files.readString(elsewhere.resolve("new.bin")));
        assertTrue(Files.isSymbolicLink(dangling));
        // A link to a folder, or a loop of links, is refused before any work.
        Path toDir = Files.createSymbolicLink(dir.resolve("todir.bin"), elsewhere);
        assertTrue(assertThrows(TensorFileException.class, () -> AtomicFiles.write(toDir, out -> out.write(1)))
                .getMessage().endsWith("cannot write: is a directory"));
        Path loop = Files.createSymbolicLink(dir.resolve("loop.bin"), dir.resolve("loop.bin"));
        assertTrue(assertThrows(TensorFileException.class, () -> AtomicFiles.write(loop, out -> out.write(1)))
                .getMessage().contains("too many levels of symbolic links"));
        Path toNowhere = Files.createSymbolicLink(dir.resolve("nowhere.bin"), dir.resolve("no/such/x.bin"));
        assertTrue(assertThrows(TensorFileException.class, () -> AtomicFiles.write(toNowhere, out -> out.write(1)))
                .getMessage().endsWith("cannot write: directory " + dir.resolve("no/such") + " does not exist"));
        assertEquals(elsewhere.resolve("new.bin"), AtomicFiles.writtenPath(dangling));
        assertEquals(dir.resolve("plain.bin"), AtomicFiles.writtenPath(dir.resolve("plain.bin")));
    }

    /** A new report folder named by a dangling link is made where the link leads. */
    @Test
    void aFolderNamedByADanglingLinkIsMadeWhereItLeads() throws IOException {
        Path link = Files.createSymbolicLink(dir.resolve("report"), dir.resolve("real/report"));
        AtomicFiles.checkNewFolder(link, "--out");
        AtomicFiles.writeFolder(link, java.util.Map.of("a.txt", new byte[] {'A'}), "the test folder");
        assertEquals("A", Files.readString(dir.resolve("real/report/a.txt")));
        assertTrue(Files.isSymbolicLink(link));
        assertEquals("A", Files.readString(link.resolve("a.txt")));
    }

    @Test
    void directoryAsTargetIsRefused() throws IOException {
        Path target = Files.createDirectory(dir.resolve("sub"));
        TensorFileException e = assertThrows(TensorFileException.class, () -> AtomicFiles.write(target, out -> out.write(1)));
        assertTrue(e.getMessage().contains("is a directory"), e.getMessage());
        assertTrue(Files.isDirectory(target));
        assertEquals(List.of("sub"), listing());
    }

    @Test
    void theSystemsErrorPhrasesAreWrittenInLowerCase() {
        assertEquals("read-only file system (/x)", AtomicFiles.describe(new java.nio.file.FileSystemException("/x", null,
                "Read-only file system")));
        assertEquals("operation not permitted", AtomicFiles.describe(new java.nio.file.FileSystemException(null, null,
                "Operation not permitted")));
        assertEquals("EIO (/y)", AtomicFiles.describe(new java.nio.file.FileSystemException("/y", null, "EIO")));
        assertEquals("permission denied (/z)", AtomicFiles.describe(new java.nio.file.AccessDeniedException("/z")));
    }

    @Test
    void exceptionMessageIsOneLine() {
        TensorFileException e = new TensorFileException(Path.of("q.npy"), "first line\nsecond line\r\n");
        assertEquals("q.npy: first line second line", e.getMessage());
    }

    @Test
    void foldersAreWrittenWholeOrNotAtAll() throws IOException {
        java.util.Map<String, byte[]> files = new java.util.LinkedHashMap<>();
        files.put("a.txt", "A".getBytes(StandardCharsets.UTF_8));
        files.put("b.txt", "B".getBytes(StandardCharsets.UTF_8));
        Path fresh = dir.resolve("new/deeper");
        AtomicFiles.checkNewFolder(fresh, "--out");
        AtomicFiles.writeFolder(fresh, files, "the test folder");
        assertEquals("A", Files.readString(fresh.resolve("a.txt")));
        assertEquals("B", Files.readString(fresh.resolve("b.txt")));
        try (Stream<Path> s = Files.list(dir.resolve("new"))) {
            assertEquals(List.of(fresh), s.toList(), "no staging folder is left behind");
        }
        IllegalArgumentException notEmpty = assertThrows(IllegalArgumentException.class,
                () -> AtomicFiles.checkNewFolder(fresh, "--out"));
        assertEquals("--out " + fresh + " is not empty; name a new folder or empty it", notEmpty.getMessage());
        Path file = dir.resolve("plain");
        Files.writeString(file, "x");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> AtomicFiles.checkNewFolder(file, "--out"))
                .getMessage().endsWith("exists and is not a directory"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> AtomicFiles.checkNewFolder(file.resolve("sub"), "--dir"))
                .getMessage().startsWith("--dir "));

        // A new folder whose write fails leaves nothing behind, not even the folders above it it created.
        java.util.Map<String, byte[]> bad = new java.util.LinkedHashMap<>(files);
        bad.put("sub/c.txt", new byte[1]); // its directory does not exist: this write fails
        Path deep = dir.resolve("x/y/z");
        assertThrows(TensorFileException.class, () -> AtomicFiles.writeFolder(deep, bad, "the test folder"));
        assertFalse(Files.exists(dir.resolve("x")), "the folders created for the write are removed again");

        // An existing empty folder that fails half way keeps none of the files.
        Path empty = Files.createDirectory(dir.resolve("empty"));
        files.put("sub/c.txt", new byte[1]); // its directory does not exist: the third write fails
        assertThrows(TensorFileException.class, () -> AtomicFiles.writeFolder(empty, files, "the test folder"));
        try (Stream<Path> s = Files.list(empty)) {
            assertEquals(0, s.count(), "the files written before the failure are removed again");
        }
    }
}
