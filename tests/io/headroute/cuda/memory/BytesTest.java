package io.headroute.cuda.memory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class BytesTest {
    @Test
    void formatsInBinaryUnits() {
        assertEquals("512 B", Bytes.format(512));
        assertEquals("3.00 MiB", Bytes.format(3L << 20));
        assertEquals("1.50 GiB", Bytes.format(3L << 29));
    }

    /** "needs 3.00 MiB, has 3.00 MiB" for 3.004 against 3 MiB: two counts that differ are shown differing. */
    @Test
    void distinctCountsAreShownDistinct() {
        assertArrayEquals(new String[] {"3.004 MiB", "3.000 MiB"}, Bytes.formatDistinct((3L << 20) + 4096, 3L << 20));
        assertArrayEquals(new String[] {"3.00 MiB", "3.00 MiB"}, Bytes.formatDistinct(3L << 20, 3L << 20));
        assertArrayEquals(new String[] {"4.00 MiB", "3.00 MiB"}, Bytes.formatDistinct(4L << 20, 3L << 20));
        assertArrayEquals(new String[] {"1.00 TiB (1099511627777 bytes)", "1.00 TiB (1099511627776 bytes)"},
                Bytes.formatDistinct((1L << 40) + 1, 1L << 40));
    }
}
