package io.headroute.cli;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.tensor.Npy;
import io.headroute.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every output option is tried before any work: a folder whose permission bits say "writable" but that takes no new
 * file (/sys, or /proc, whatever the user, root included) is refused in one line, exit 2, nothing printed or written.
 */
class OutputCheckTest {
    @TempDir
    Path dir;

    /** A folder that exists, passes {@code Files.isWritable} as root, and takes no new files. */
    private Path closed;

    @BeforeEach
    void findClosedFolder() {
        for (String candidate : new String[] {"/sys", "/proc"}) {
            Path p = Path.of(candidate);
            if (Files.isDirectory(p) && !canCreateIn(p)) {
                closed = p;
                return;
            }
        }
        assumeTrue(false, "neither /sys nor /proc is a folder that refuses new files here");
    }

    private static boolean canCreateIn(Path folder) {
        try {
            Files.delete(Files.createTempFile(folder, ".headroute-test-", ".tmp"));
            return true;
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    private Path npy(String name, long... shape) {
        Path p = dir.resolve(name);
        float[] v = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) Math.sin(i);
        }
        Npy.write(p, Tensor.ofFloats(v, shape));
        return p;
    }

    private static final String FILE_REFUSED = "does not take new files";

    @Test
    void benchJson() {
        Cli.run("bench", "--backend", "cpu", "--threads", "1", "--heads", "1", "--len", "16", "--dim", "8", "--repeats", "1",
                "--warmup", "0", "--json", closed.resolve("b.json").toString()).assertBadInput("headroute bench", FILE_REFUSED);
    }

    @Test
    void qualityJson() {
        Cli.run("quality", "--backend", "cpu", "--threads", "1", "--heads", "1", "--len", "16", "--dim", "8", "--json",
                closed.resolve("q.json").toString()).assertBadInput("headroute quality", FILE_REFUSED);
    }

    @Test
    void attendOutAndLse() {
        String q = npy("q.npy", 1, 1, 8, 4).toString();
        Path good = dir.resolve("o.npy");
        Cli.run("attend", "--backend", "cpu", "--q", q, "--k", q, "--v", q, "--out", closed.resolve("o.npy").toString())
                .assertBadInput("headroute attend", FILE_REFUSED);
        Cli.run("attend", "--backend", "cpu", "--q", q, "--k", q, "--v", q, "--out", good.toString(), "--lse",
                closed.resolve("lse.npy").toString()).assertBadInput("headroute attend", FILE_REFUSED, good);
    }

    @Test
    void routeOutAndStats() {
        String x = npy("x.npy", 1, 4, 2).toString();
        String wr = npy("wr.npy", 2, 3).toString();
        Path good = dir.resolve("gate.npy");
        Cli.run("route", "--backend", "cpu", "--x", x, "--wr", wr, "--shared", "1", "--k", "1", "--out",
                closed.resolve("gate.npy").toString()).assertBadInput("headroute route", FILE_REFUSED);
        Cli.run("route", "--backend", "cpu", "--x", x, "--wr", wr, "--shared", "1", "--k", "1", "--out", good.toString(),
                "--stats", closed.resolve("stats.json").toString()).assertBadInput("headroute route", FILE_REFUSED, good);
    }

    @Test
    void patternOut() {
        Cli.run("pattern", "--spec", "window:4", "--len", "16", "--block", "4", "--out", closed.resolve("p.npy").toString())
                .assertBadInput("headroute pattern", FILE_REFUSED);
    }

    @Test
    void analyzeOutAndPlanOut() {
        Path good = dir.resolve("analysis");
        Cli.run("analyze", "--backend", "cpu", "--threads", "1", "--layers", "1", "--heads", "1", "--dim", "8", "--len", "16",
                "--out", closed.resolve("analysis").toString()).assertBadInput("headroute analyze", "cannot be created in");
        Cli.run("analyze", "--backend", "cpu", "--threads", "1", "--layers", "1", "--heads", "1", "--dim", "8", "--len", "16",
                "--plan-out", closed.resolve("plan.json").toString(), "--out", good.toString())
                .assertBadInput("headroute analyze", FILE_REFUSED, good);
    }

    @Test
    void experimentOut() {
        Cli.run("experiment", "--backend", "cpu", "--threads", "1", "--lens", "32", "--heads", "1", "--dim", "8", "--variants",
                "flash", "--warmup", "0", "--repeats", "1", "--out", closed.resolve("exp").toString())
                .assertBadInput("headroute experiment", "cannot be created in");
    }
}
