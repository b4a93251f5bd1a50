package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Npy;
import io.headroute.tensor.Tensor;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PatternCommandTest {
    @TempDir
    Path dir;

    private static final java.util.regex.Pattern TOKEN =
            java.util.regex.Pattern.compile("token density ([0-9.]+) \\((\\d+) of (\\d+) query-key pairs allowed\\)");
    private static final java.util.regex.Pattern BLOCKS =
            java.util.regex.Pattern.compile("block density ([0-9.]+): (\\d+) full, (\\d+) partial, (\\d+) empty of (\\d+) blocks");

    /** Allowed (query, key) pairs by brute force, one pair at a time. */
    private static long bruteForce(Pattern p, int heads, int qLen, int kvLen) {
        long n = 0;
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < qLen; i++) {
                for (int j = 0; j < kvLen; j++) {
                    if (p.allows(h, i + kvLen - qLen, j, kvLen)) {
                        n++;
                    }
                }
            }
        }
        return n;
    }

    /** Block (qb, kb) of head h is listed iff some position in qb (of all S) may attend some key in kb. */
    private static byte[] bruteForceBlocks(Pattern p, int heads, int kvLen, int bs) {
        int n = (kvLen + bs - 1) / bs;
        byte[] out = new byte[heads * n * n];
        for (int h = 0; h < heads; h++) {
            for (int pos = 0; pos < kvLen; pos++) {
                for (int j = 0; j < kvLen; j++) {
                    if (p.allows(h, pos, j, kvLen)) {
                        out[(h * n + pos / bs) * n + j / bs] = 1;
                    }
                }
            }
        }
        return out;
    }

    private static Matcher find(java.util.regex.Pattern re, String text) {
        Matcher m = re.matcher(text);
        assertTrue(m.find(), () -> "no match for " + re + " in:\n" + text);
        return m;
    }

    @Test
    void tokenLevelPatternWithQueriesAtTheEnd() {
        Path out = dir.resolve("layout.npy");
        Cli r = Cli.run("pattern", "--spec", "longformer:5:3", "--causal", "--len", "40", "--kv-len", "50", "--heads", "2",
                "--block", "8", "--out", out.toString()).assertOk();
        Pattern p = Patterns.parse("longformer:5:3").withCausal();
        Tensor t = Npy.read(out);
        assertEquals(DType.U8, t.dtype());
        assertArrayEquals(new long[] {2, 7, 7}, t.shape());
        byte[] bytes = new byte[(int) t.numel()];
        t.bytes().get(bytes);
        assertArrayEquals(bruteForceBlocks(p, 2, 50, 8), bytes);

        Matcher tok = find(TOKEN, r.out());
        long want = bruteForce(p, 2, 40, 50);
        assertEquals(want, Long.parseLong(tok.group(2)));
        assertEquals(2L * 40 * 50, Long.parseLong(tok.group(3)));
        assertEquals(want / (2.0 * 40 * 50), Double.parseDouble(tok.group(1)), 1e-6);

        Matcher blk = find(BLOCKS, r.out());
        long ones = 0;
        for (byte b : bytes) {
            ones += b;
        }
        long full = Long.parseLong(blk.group(2));
        long partial = Long.parseLong(blk.group(3));
        assertEquals(ones, full + partial);
        assertEquals(2L * 7 * 7 - ones, Long.parseLong(blk.group(4)));
        assertEquals(2L * 7 * 7, Long.parseLong(blk.group(5)));
        assertEquals(ones / 98.0, Double.parseDouble(blk.group(1)), 1e-6);
        assertTrue(r.out().contains("wrote " + out + ": u8 (2, 7, 7)"), r.out());
    }

    @Test
    void sharedLayoutIsExpandedToEveryHead() {
        Path out = dir.resolve("dense.npy");
        Cli r = Cli.run("pattern", "--spec", "dense", "--len", "100", "--heads", "3", "--out", out.toString()).assertOk();
        Tensor t = Npy.read(out);
        assertArrayEquals(new long[] {3, 2, 2}, t.shape());
        for (float x : t.toFloatArray()) {
            assertEquals(1f, x);
        }
        assertTrue(r.out().contains("token density 1.000000 (30000 of 30000"), r.out());
        assertTrue(r.out().contains("block density 1.000000: 12 full, 0 partial, 0 empty of 12 blocks"), r.out());
    }

    @Test
    void bigBirdUsesItsOwnBlockSizeAndDiffersPerHead() {
        Path out = dir.resolve("bb.npy");
        String spec = "bigbird:8:1:1:2:7";
        Cli r = Cli.run("pattern", "--spec", spec, "--len", "64", "--heads", "3", "--out", out.toString()).assertOk();
        Pattern p = Patterns.parse(spec);
        Tensor t = Npy.read(out);
        assertArrayEquals(new long[] {3, 8, 8}, t.shape());
        byte[] bytes = new byte[(int) t.numel()];
        t.bytes().get(bytes);
        assertArrayEquals(bruteForceBlocks(p, 3, 64, 8), bytes);
        assertEquals(bruteForce(p, 3, 64, 64), Long.parseLong(find(TOKEN, r.out()).group(2)));
        assertTrue(r.out().contains("block 8:"), r.out());
        Cli.run("pattern", "--spec", spec, "--len", "64", "--block", "16", "--out", out.toString())
                .assertBadInput("headroute pattern", "conflicts");
    }

    @Test
    void layoutFileRoundTrips() {
        Path first = dir.resolve("first.npy");
        Cli.run("pattern", "--spec", "window:20", "--len", "96", "--block", "32", "--out", first.toString()).assertOk();
        Path second = dir.resolve("second.npy");
        Cli r = Cli.run("pattern", "--spec", "layout:32:" + first, "--len", "96", "--out", second.toString()).assertOk();
        assertArrayEquals(Npy.read(first).toFloatArray(), Npy.read(second).toFloatArray());
        assertTrue(r.out().contains("block 32:"), r.out());
    }

    @Test
    void badInputIsRefused() {
        Path out = dir.resolve("x.npy");
        // A block size near 2^31: one block, not an int overflow (NegativeArraySizeException, exit 1).
        Cli big = Cli.run("pattern", "--spec", "bigbird:2147483647:1:0:1:5", "--len", "100", "--kv-len", "1000", "--out",
                dir.resolve("big.npy").toString()).assertOk();
        assertTrue(big.out().contains("1 x 1 blocks per head"), big.out());
        Cli.run("pattern", "--spec", "dense", "--len", "0", "--out", out.toString()).assertBadInput("headroute pattern",
                "--len must be positive", out);
        Cli.run("pattern", "--spec", "dense", "--len", "64", "--kv-len", "32", "--out", out.toString())
                .assertBadInput("headroute pattern", "exceeds", out);
        Cli.run("pattern", "--spec", "stripes", "--len", "64", "--out", out.toString()).assertBadInput("headroute pattern",
                "unknown pattern", out);
        Cli.run("pattern", "--spec", "dense", "--len", "64", "--heads", "-1", "--out", out.toString())
                .assertBadInput("headroute pattern", "--heads", out);
        Cli.run("pattern", "--spec", "dense", "--len", "64", "--block", "0", "--out", out.toString())
                .assertBadInput("headroute pattern", "--block", out);
        Cli.run("pattern", "--spec", "layout:16:" + dir.resolve("missing.npy"), "--len", "64", "--out", out.toString())
                .assertBadInput("headroute pattern", "no such file", out);
        Cli.run("pattern", "--spec", "dense", "--len", "64", "--out", dir.resolve("x.csv").toString())
                .assertBadInput("headroute pattern", "extension", dir.resolve("x.csv"));
        // picocli names the longest of --spec and its alias --pattern.
        Cli.run(List.of("pattern", "--len", "64", "--out", out.toString())).assertBadInput("headroute pattern", "--pattern", out);
        assertTrue(Cli.run("pattern", "--pattern", "window:2", "--len", "16", "--out", dir.resolve("alias.npy").toString())
                .assertOk().out().contains("window:2"));
        // The layout file read is not the one written.
        Path layout = dir.resolve("layout.npy");
        io.headroute.tensor.Npy.write(layout, io.headroute.tensor.Tensor.ofInts(new int[] {1}, 1, 1, 1));
        Cli.run("pattern", "--spec", "layout:64:" + layout, "--len", "64", "--out", layout.toString())
                .assertBadInput("headroute pattern", "--out names the input file of --spec");
        assertTrue(io.headroute.pattern.Patterns.layout(64, layout).bits()[0], "the layout file is as it was");
    }
}
