package io.headroute.cuda;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * The architectures inside a fatbin, read from its container header (magic 0xBA55ED50, then entries
 * of kind 1 = PTX or 2 = ELF machine code, each naming its SM version), so that {@code headroute info}
 * can say what the jar carries without a GPU or cuobjdump. An entry built for an arch-specific target
 * (sm_90a) carries flag 0x00100000 in its word at byte 40 (as CUDA 13.0's nvcc writes it; checked against
 * the sm_90 and sm_90a entries of this project's own fatbins).
 */
public final class FatbinInfo {
    private static final int MAGIC = 0xBA55ED50;

    private FatbinInfo() {}

    private static final int ARCH_SPECIFIC = 0x00100000;

    /**
     * One image: machine code ("sm_90", "sm_90a": arch-specific) or PTX ("compute_90").
     *
     * @param ptx          true for PTX, false for machine code (ELF)
     * @param arch         the SM version, major · 10 + minor: 90 for sm_90, 120 for sm_120
     * @param archSpecific whether the image targets the arch-specific variant (sm_90a)
     */
    public record Image(boolean ptx, int arch, boolean archSpecific) {
        /**
         * An image for the plain (not arch-specific) target.
         *
         * @param ptx  true for PTX, false for machine code
         * @param arch the SM version, e.g. 90
         */
        public Image(boolean ptx, int arch) {
            this(ptx, arch, false);
        }

        @Override
        public String toString() {
            return (ptx ? "compute_" : "sm_") + arch + (archSpecific ? "a" : "");
        }
    }

    /**
     * The images of a fatbin; an IllegalArgumentException if the bytes are not one.
     *
     * @param fatbin the whole fatbin file
     * @return its images in file order
     */
    public static List<Image> images(byte[] fatbin) {
        ByteBuffer b = ByteBuffer.wrap(fatbin).order(ByteOrder.LITTLE_ENDIAN);
        if (fatbin.length < 16 || b.getInt(0) != MAGIC) {
            throw new IllegalArgumentException("not a CUDA fatbin (bad magic)");
        }
        int headerSize = Short.toUnsignedInt(b.getShort(6));
        long fatSize = b.getLong(8);
        long end = Math.min(fatbin.length, headerSize + fatSize);
        List<Image> out = new ArrayList<>();
        long off = headerSize;
        while (off + 32 <= end) {
            int at = (int) off;
            int kind = Short.toUnsignedInt(b.getShort(at));
            long entryHeader = Integer.toUnsignedLong(b.getInt(at + 4));
            long payload = b.getLong(at + 8);
            int arch = b.getInt(at + 28);
            // The entry's header holds the flags at byte 40: it must reach past them, and so must the bytes.
            if (entryHeader < 44 || payload < 0 || (kind != 1 && kind != 2)) {
                throw new IllegalArgumentException("malformed fatbin entry at offset " + off);
            }
            if (at + 44 > fatbin.length) {
                throw new IllegalArgumentException("fatbin truncated in the entry at offset " + off);
            }
            out.add(new Image(kind == 1, arch, (b.getInt(at + 40) & ARCH_SPECIFIC) != 0));
            off += entryHeader + payload;
        }
        return out;
    }
}
