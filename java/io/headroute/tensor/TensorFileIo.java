package io.headroute.tensor;

import java.io.EOFException;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Locale;

/** File plumbing shared by the .npy and .safetensors readers and writers. */
final class TensorFileIo {
    private TensorFileIo() {}

    /** Opens {@code file} for reading, turning the usual failures into one-line messages. */
    static FileChannel openForRead(Path file) {
        if (file.toString().isEmpty()) {
            throw new TensorFileException(file, "expected a file name"); // "" would mean the working directory
        }
        if (Files.isDirectory(file)) {
            throw new TensorFileException(file, "is a directory, not a tensor file");
        }
        try {
            return FileChannel.open(file, StandardOpenOption.READ);
        } catch (NoSuchFileException e) {
            throw new TensorFileException(file, "no such file", e);
        } catch (AccessDeniedException e) {
            throw new TensorFileException(file, "permission denied", e);
        } catch (IOException e) {
            throw new TensorFileException(file, "cannot open: " + AtomicFiles.describe(e), e);
        }
    }

    /** Reads exactly {@code length} bytes at {@code position} into a new little-endian heap buffer. */
    static ByteBuffer readFully(FileChannel ch, long position, int length) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(length);
        long pos = position;
        while (buf.hasRemaining()) {
            int n = ch.read(buf, pos);
            if (n < 0) {
                throw new EOFException("file ended at byte " + pos);
            }
            pos += n;
        }
        return buf.flip().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** Copies a buffer's remaining bytes to {@code out} without disturbing the buffer's position. */
    static void writeBuffer(OutputStream out, ByteBuffer data) throws IOException {
        ByteBuffer b = data.duplicate();
        byte[] chunk = new byte[Math.min(1 << 16, b.remaining())];
        while (b.hasRemaining()) {
            int n = Math.min(chunk.length, b.remaining());
            b.get(chunk, 0, n);
            out.write(chunk, 0, n);
        }
    }

    /** Writes the low {@code bytes} bytes of {@code v}, least significant first. */
    static void writeLittleEndian(OutputStream out, long v, int bytes) throws IOException {
        for (int i = 0; i < bytes; i++) {
            out.write((int) (v >>> (8 * i)) & 0xff);
        }
    }

    /** "1.5 GiB"-style size for messages. */
    static String humanBytes(long n) {
        if (n < 1024) {
            return n + " bytes";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        double v = n;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }
}
