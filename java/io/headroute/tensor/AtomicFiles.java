package io.headroute.tensor;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFilePermission;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.stream.Stream;

/**
 * Writes files all-or-nothing: the content goes to a temporary file beside the target, is synced to
 * disk, and is then renamed over the target. Readers see either the old file or the complete new one.
 * A replaced file keeps its permissions, and a target that is a symbolic link is written through, as
 * {@code np.save} writes: the file it leads to is replaced, the link stays. Should the JVM exit during a
 * write, a shutdown hook deletes the temporary files ({@link PendingFiles}).
 * Report folders (experiments, analyses) are written all-or-nothing too ({@link #writeFolder}), and so are
 * several files written by one command ({@link #batch}).
 */
public final class AtomicFiles {
    /** The batch open on this thread, if any: {@link #write} stages into it instead of renaming. */
    private static final ThreadLocal<Batch> BATCH = new ThreadLocal<>();
    /** Longer chains of symbolic links are refused, as Linux refuses them (ELOOP). */
    private static final int MAX_LINKS = 40;
    /**
     * The longest file name, in bytes, that common file systems take (ext4, XFS, btrfs, APFS; NTFS counts UTF-16
     * units): a longer output name is refused before any work instead of failing at the final rename.
     */
    static final int MAX_NAME_BYTES = 255;
    /** Temporary files and folders are named this, 16 hex digits and ".tmp": short, whatever the target's name. */
    static final String TEMP_PREFIX = ".headroute-";

    private AtomicFiles() {}

    /**
     * Files written together, all or nothing: while the batch is open, every {@link #write} on this thread (also
     * through {@link Npy} and {@link Safetensors}) stages its complete, synced file beside its target and renames
     * nothing; {@link Batch#commit} then renames each into place, and {@link Batch#close} without a commit deletes
     * the staged files, leaving every target as it was. (Should a rename itself fail partway through the commit,
     * the targets renamed before it stay new: renames cannot be undone.)
     *
     * @return the open batch, bound to the calling thread; close it (try-with-resources), committing first to keep
     *         the files
     * @throws IllegalStateException when a batch is already open on this thread
     */
    public static Batch batch() {
        if (BATCH.get() != null) {
            throw new IllegalStateException("a batch of atomic writes is already open on this thread");
        }
        Batch b = new Batch();
        BATCH.set(b);
        return b;
    }

    /** See {@link #batch()}. */
    public static final class Batch implements AutoCloseable {
        /** {@code tmp} is renamed over {@code target}, the file {@code named} (perhaps a link) leads to. */
        private record Staged(Path tmp, Path target, Path named) {}

        private final List<Staged> staged = new ArrayList<>();
        private boolean done;

        private Batch() {}

        /**
         * Renames every staged file over its target, in the order written. The batch is closed afterwards, whether
         * or not every rename succeeded.
         *
         * @throws IllegalStateException when the batch was already committed or closed
         * @throws TensorFileException   naming the first target that could not be replaced
         */
        public void commit() {
            if (done) {
                throw new IllegalStateException("this batch is closed");
            }
            done = true;
            BATCH.remove();
            try {
                while (!staged.isEmpty()) {
                    Staged st = staged.get(0);
                    try {
                        move(st.tmp(), st.target());
                        PendingFiles.WRITES.remove(st.tmp());
                    } catch (IOException e) {
                        throw new TensorFileException(st.named(), "cannot write: " + describe(e).replace(st.tmp().toString(),
                                st.target().toString()), e);
                    }
                    staged.remove(0);
                }
            } finally {
                discard();
            }
        }

        /** Deletes what is still staged (everything, unless {@link #commit} ran). */
        @Override
        public void close() {
            if (BATCH.get() == this) {
                BATCH.remove();
            }
            done = true;
            discard();
        }

        private void discard() {
            for (Staged st : staged) {
                deleteQuietly(st.tmp());
                PendingFiles.WRITES.remove(st.tmp());
            }
            staged.clear();
        }
    }

    /** Like {@link java.util.function.Consumer}, but may throw {@link IOException}. */
    @FunctionalInterface
    public interface IoConsumer<T> {
        /**
         * Consumes {@code value}.
         *
         * @param value the value, for {@link #write} the output stream
         * @throws IOException when writing fails
         */
        void accept(T value) throws IOException;
    }

    /**
     * Writes {@code target} with the bytes {@code body} puts into the given (buffered) stream. If
     * {@code body} or the write fails, the temporary file is deleted and an existing target is left as
     * it was. {@link IOException}s become {@link TensorFileException}s naming {@code target}; runtime
     * exceptions from {@code body} propagate unchanged.
     *
     * @param target the file to write (through a symbolic link, to the file it leads to)
     * @param body   writes the content into the stream it is given; closing that stream only flushes it
     * @throws TensorFileException when {@code target} cannot be written ({@link #checkTarget}) or the write fails
     */
    public static void write(Path target, IoConsumer<OutputStream> body) {
        Path abs = target.toAbsolutePath();
        Path real = checkTarget(target);
        Path dir = real.getParent();
        Path tmp = null;
        Path registered = null; // in PendingFiles until renamed or deleted (or handed to the batch)
        try {
            FileChannel ch = null;
            while (ch == null) {
                tmp = tempName(dir);
                if (!PendingFiles.WRITES.add(tmp)) {
                    tmp = null;
                    throw new TensorFileException(target, "cannot write: the JVM is shutting down");
                }
                registered = tmp;
                try {
                    ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
                } catch (FileAlreadyExistsException e) {
                    PendingFiles.WRITES.remove(tmp); // another writer picked the same name; draw again
                    registered = null;
                    tmp = null;
                }
            }
            try (FileChannel channel = ch) {
                OutputStream out = new BufferedOutputStream(Channels.newOutputStream(channel), 1 << 16) {
                    // The channel must stay open for force() below, so a body that closes its stream only flushes.
                    @Override
                    public void close() throws IOException {
                        flush();
                    }
                };
                body.accept(out);
                out.flush();
                channel.force(true);
            }
            Batch batch = BATCH.get();
            if (batch != null) {
                batch.staged.add(new Batch.Staged(tmp, real, target)); // renamed by the commit, or deleted by the close
                tmp = null;
                registered = null;
                return;
            }
            move(tmp, real);
            tmp = null;
        } catch (IOException e) {
            // The message names the staging file where the failure was there: the user knows only the target.
            String why = describe(e);
            throw new TensorFileException(target, "cannot write: " + (tmp == null ? why : why.replace(tmp.toString(), abs.toString())), e);
        } finally {
            if (tmp != null) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // The original failure is the one worth reporting.
                }
            }
            if (registered != null) {
                PendingFiles.WRITES.remove(registered);
            }
        }
    }

    /**
     * Fails unless {@link #write} could write {@code target} (the folder's permissions aside): a file path whose folder
     * exists, that is not a folder itself, and not an existing file the user may not write. Returns the absolute path
     * of the file a write replaces: {@code target}, or where {@code target} is a symbolic link, the file it leads to
     * (which need not exist yet), as {@code open} would.
     *
     * @param target the file path to check
     * @return the absolute path of the file a write would replace
     * @throws TensorFileException naming {@code target} and the problem
     */
    public static Path checkTarget(Path target) {
        if (target.toString().isEmpty()) {
            throw new TensorFileException(target, "expected a file name");
        }
        Path abs = target.toAbsolutePath();
        if (abs.getParent() == null || abs.getFileName() == null) {
            throw new TensorFileException(target, "not a file path");
        }
        String tooLong = nameTooLong(abs);
        if (tooLong != null) {
            throw new TensorFileException(target, "cannot write: " + tooLong);
        }
        Path real;
        try {
            real = followLinks(abs);
        } catch (IOException e) {
            throw new TensorFileException(target, "cannot write: " + describe(e), e);
        }
        Path dir = real.getParent();
        if (dir == null || real.getFileName() == null) {
            throw new TensorFileException(target, "cannot write: the link leads to " + real + ", not a file path");
        }
        tooLong = nameTooLong(real);
        if (tooLong != null) {
            throw new TensorFileException(target, "cannot write: the link leads to " + real + ": " + tooLong);
        }
        if (!Files.isDirectory(dir)) {
            throw new TensorFileException(target, "cannot write: " + folderProblem(dir));
        }
        if (Files.isDirectory(real)) {
            throw new TensorFileException(target, "cannot write: is a directory");
        }
        // Renaming over a file needs only the folder's permission; open(2), and so np.save, refuses a file the user
        // may not write (root may): so does this.
        if (Files.exists(real) && !Files.isWritable(real)) {
            throw new TensorFileException(target, "cannot write: permission denied");
        }
        return real;
    }

    /**
     * {@link #checkTarget}, and then a real try: a temporary file is created in the target's folder and deleted again.
     * Permission bits are not the whole story (root, read-only mounts, special file systems such as /sys), so this is
     * what to call before any work whose result goes to {@code target}. Returns what {@link #checkTarget} returns.
     *
     * @param target the file path to check
     * @return the absolute path of the file a write would replace
     * @throws TensorFileException naming {@code target} and the problem
     */
    public static Path checkWritable(Path target) {
        Path real = checkTarget(target);
        Path dir = real.getParent();
        String why = probeFolder(dir, false);
        if (why != null) {
            throw new TensorFileException(target, "cannot write: directory " + dir + " does not take new files: " + why);
        }
        return real;
    }

    /**
     * Tries to create (and then deletes) a temporary file, or a temporary folder where {@code asFolder}, in the folder
     * {@code dir}, named as {@link #write}'s temporary files are. Returns null when that worked, else why not (the
     * temporary name left out).
     */
    private static String probeFolder(Path dir, boolean asFolder) {
        Path tmp = tempName(dir);
        if (!PendingFiles.WRITES.add(tmp)) {
            return "the JVM is shutting down";
        }
        try {
            if (asFolder) {
                Files.createDirectory(tmp);
            } else {
                Files.newByteChannel(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE).close();
            }
            Files.delete(tmp);
            return null;
        } catch (IOException e) {
            deleteQuietly(tmp);
            return describe(e).replace(" (" + tmp + ")", "").replace(tmp.toString(), dir.toString());
        } catch (RuntimeException e) { // e.g. a SecurityException, or a file system that cannot create such a file
            deleteQuietly(tmp);
            return e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        } finally {
            PendingFiles.WRITES.remove(tmp);
        }
    }

    /**
     * The absolute path of the file a write of {@code path} replaces: {@code path}, or the path its chain of
     * symbolic links leads to (which need not exist); {@code path} itself where the links cannot be followed.
     *
     * @param path the path a write names
     * @return the absolute path of the file that write replaces
     */
    public static Path writtenPath(Path path) {
        Path abs = path.toAbsolutePath();
        try {
            return followLinks(abs);
        } catch (IOException e) {
            return abs;
        }
    }

    /**
     * {@code abs} (absolute), or where it is a symbolic link, the path the chain of links leads to, which need not
     * exist. A write goes through a link, as numpy's {@code np.save} does, rather than replacing it.
     */
    private static Path followLinks(Path abs) throws IOException {
        Path p = abs;
        for (int hops = 0; Files.isSymbolicLink(p); hops++) {
            if (hops == MAX_LINKS) {
                throw new java.nio.file.FileSystemException(abs.toString(), null, "too many levels of symbolic links");
            }
            p = p.resolveSibling(Files.readSymbolicLink(p));
        }
        return p;
    }

    /** Why the last name of {@code path} is too long for a file system, or null when it is not. */
    private static String nameTooLong(Path path) {
        Path name = path.getFileName();
        int bytes = name == null ? 0 : name.toString().getBytes(StandardCharsets.UTF_8).length;
        return bytes <= MAX_NAME_BYTES ? null
                : "the name is " + bytes + " bytes long; file systems take at most " + MAX_NAME_BYTES;
    }

    /** A fresh name, of a fixed short length whatever the target's, for a temporary file or folder in {@code dir}. */
    private static Path tempName(Path dir) {
        return dir.resolve(String.format(Locale.ROOT, "%s%016x.tmp", TEMP_PREFIX, ThreadLocalRandom.current().nextLong()));
    }

    /** Why the folder {@code dir}, which is not a directory, cannot take a file: a file is in the way, or it is missing. */
    private static String folderProblem(Path dir) {
        Path p = dir;
        while (p != null && !Files.exists(p)) {
            p = p.getParent();
        }
        return p != null && !Files.isDirectory(p) ? p + " is not a directory" : "directory " + dir + " does not exist";
    }

    /**
     * Refuses, before any work, an output folder that exists and is not an empty directory, or that
     * cannot be created ({@code option} names it in the message, e.g. "--out").
     *
     * @param out    the output folder
     * @param option the command-line option that named it, for the message
     * @throws IllegalArgumentException with a one-line message when the folder cannot be used
     */
    public static void checkNewFolder(Path out, String option) {
        if (out.toString().isEmpty()) {
            throw new IllegalArgumentException(option + " needs a folder name, got an empty one");
        }
        Path abs = out.toAbsolutePath().normalize();
        String tooLong = nameTooLong(abs);
        if (tooLong != null) {
            throw new IllegalArgumentException(option + " " + out + " cannot be created: " + tooLong);
        }
        try {
            abs = followLinks(abs);
        } catch (IOException e) {
            throw new IllegalArgumentException(option + " " + out + " cannot be created: " + describe(e));
        }
        if (Files.exists(abs)) {
            if (!Files.isDirectory(abs)) {
                throw new IllegalArgumentException(option + " " + out + " exists and is not a directory");
            }
            try (Stream<Path> s = Files.list(abs)) {
                if (s.findAny().isPresent()) {
                    throw new IllegalArgumentException(option + " " + out + " is not empty; name a new folder or empty it");
                }
            } catch (IOException e) {
                throw new IllegalArgumentException(option + " " + out + " cannot be read: " + e.getMessage());
            }
            if (!Files.isWritable(abs)) {
                throw new IllegalArgumentException(option + " " + out + " is not writable");
            }
            String why = probeFolder(abs, false); // the permission bits are not the whole story: try
            if (why != null) {
                throw new IllegalArgumentException(option + " " + out + " does not take new files: " + why);
            }
            return;
        }
        Path parent = abs.getParent();
        while (parent != null && !Files.exists(parent)) {
            parent = parent.getParent();
        }
        if (parent == null || !Files.isDirectory(parent)) {
            throw new IllegalArgumentException(option + " " + out + " cannot be created: " + parent + " is not a directory");
        }
        if (!Files.isWritable(parent)) {
            throw new IllegalArgumentException(option + " " + out + " cannot be created: " + parent + " is not writable");
        }
        // The permission bits are not the whole story (root, read-only or special file systems such as /proc): try.
        String why = probeFolder(parent, true);
        if (why != null) {
            throw new IllegalArgumentException(option + " " + out + " cannot be created in " + parent + ": " + why);
        }
    }

    /**
     * Removes what {@link #writeFolder} wrote into {@code out} (the files named), and the folder itself when
     * {@code folderToo} (the caller's call created it), for an output that must not stay when a later output
     * failed. Best effort: a file that cannot be removed is left.
     *
     * @param out       the folder written
     * @param names     the names of the files to remove, relative to {@code out}
     * @param folderToo whether to remove the folder too (only removed when empty)
     */
    public static void removeWritten(Path out, Collection<String> names, boolean folderToo) {
        Path abs = out.toAbsolutePath().normalize();
        for (String n : names) {
            deleteQuietly(abs.resolve(n));
        }
        if (folderToo) {
            deleteQuietly(abs);
        }
    }

    /**
     * Writes {@code files} (name → content) into the folder {@code out}, all or nothing: a new folder is
     * filled beside it under a temporary name and renamed into place; an existing (empty) one gets each
     * file atomically and loses them all again if one fails. {@code what} names the folder in errors.
     *
     * @param out   the folder: new (its missing parents are created, and removed again on failure), or an existing
     *              directory
     * @param files file name → content, written in the map's order
     * @param what  what the folder is ("experiment report"), for messages
     * @throws IllegalStateException when a {@link #batch} is open on this thread
     * @throws TensorFileException   when the folder or a file cannot be written
     */
    public static void writeFolder(Path out, Map<String, byte[]> files, String what) {
        if (BATCH.get() != null) {
            throw new IllegalStateException("a folder cannot be written inside a batch of atomic writes");
        }
        Path abs;
        try {
            abs = followLinks(out.toAbsolutePath().normalize()); // a link to a folder yet to be made: made there
        } catch (IOException e) {
            throw new TensorFileException(out, "cannot write " + what + ": " + describe(e), e);
        }
        if (Files.isDirectory(abs)) {
            List<Path> written = new ArrayList<>();
            try {
                for (var e : files.entrySet()) {
                    Path f = abs.resolve(e.getKey());
                    write(f, os -> os.write(e.getValue()));
                    written.add(f);
                }
            } catch (RuntimeException e) {
                written.forEach(AtomicFiles::deleteQuietly);
                throw e;
            }
            return;
        }
        Path stage = tempName(abs.getParent());
        // Folders above `out` that this call creates, deepest first: removed again if the write fails.
        List<Path> created = new ArrayList<>();
        for (Path a = abs.getParent(); a != null && !Files.exists(a); a = a.getParent()) {
            created.add(a);
        }
        boolean done = false;
        if (!PendingFiles.WRITES.add(stage)) {
            throw new TensorFileException(out, "cannot write " + what + ": the JVM is shutting down");
        }
        try {
            Files.createDirectories(stage);
            for (var e : files.entrySet()) {
                write(stage.resolve(e.getKey()), os -> os.write(e.getValue()));
            }
            Files.move(stage, abs);
            done = true;
        } catch (IOException e) {
            throw new TensorFileException(out, "cannot write " + what + ": " + describe(e), e);
        } finally {
            if (Files.exists(stage)) {
                try (Stream<Path> s = Files.list(stage)) {
                    s.forEach(AtomicFiles::deleteQuietly);
                } catch (IOException ignored) {
                    // Best effort; the failure that got us here is the one to report.
                }
                deleteQuietly(stage);
            }
            PendingFiles.WRITES.remove(stage);
            if (!done) {
                created.forEach(AtomicFiles::deleteQuietly); // only empty folders go: deleteIfExists refuses others
            }
        }
    }

    /**
     * Renames {@code tmp} over {@code target} (atomically where the file system can) and syncs the directory. A
     * target that exists keeps its permissions: they are copied to {@code tmp} first.
     */
    private static void move(Path tmp, Path target) throws IOException {
        copyPermissions(target, tmp);
        try {
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
        }
        syncDirectory(target.getParent());
    }

    /** Gives {@code to} the POSIX permissions of {@code from}, where the file system has them and {@code from} exists. */
    private static void copyPermissions(Path from, Path to) throws IOException {
        PosixFileAttributeView view = Files.getFileAttributeView(from, PosixFileAttributeView.class);
        if (view == null) {
            return;
        }
        Set<PosixFilePermission> perms;
        try {
            perms = view.readAttributes().permissions();
        } catch (NoSuchFileException e) {
            return; // a new file: the default permissions, as for any new file
        }
        Files.setPosixFilePermissions(to, perms);
    }

    private static void deleteQuietly(Path p) {
        try {
            Files.deleteIfExists(p);
        } catch (IOException ignored) {
            // Best effort clean-up of our own partial output.
        }
    }

    /** Makes the rename itself durable; not every platform can open a directory, so this is best effort. */
    private static void syncDirectory(Path dir) {
        try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
            d.force(true);
        } catch (IOException | UnsupportedOperationException ignored) {
            // The data is synced; only the directory entry's durability is not guaranteed here.
        }
    }

    /** The system's error phrase as the rest of a message writes it: "Read-only file system" → "read-only file system". */
    private static String lowerPhrase(String reason) {
        if (reason == null || reason.length() < 2 || !Character.isUpperCase(reason.charAt(0))
                || !Character.isLowerCase(reason.charAt(1))) {
            return reason; // null, or not a sentence-case phrase (an acronym such as "EIO")
        }
        return Character.toLowerCase(reason.charAt(0)) + reason.substring(1);
    }

    static String describe(IOException e) {
        // The common file-system failures in words, with the file they name (Java's own messages are the path alone).
        if (e instanceof java.nio.file.FileSystemException fs) {
            String what = fs instanceof java.nio.file.AccessDeniedException ? "permission denied"
                    : fs instanceof java.nio.file.NoSuchFileException ? "no such file or directory" : lowerPhrase(fs.getReason());
            if (what != null) {
                return fs.getFile() == null ? what : what + " (" + fs.getFile() + ")";
            }
        }
        String name = e.getClass().getSimpleName();
        String msg = e.getMessage();
        return msg == null ? name : name + ": " + msg;
    }
}
