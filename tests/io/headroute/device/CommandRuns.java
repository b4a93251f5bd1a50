package io.headroute.device;

import io.headroute.cli.Main;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;

/**
 * The device check's compare step in one JVM: runs headroute command lines one after another in this process
 * ({@link Main#run}), where a JVM per run spent most of each run's ~2 s starting Java and CUDA.
 *
 * <pre>CommandRuns RUNS LOGS RESULTS</pre>
 *
 * RUNS: one run per line, its name, then its arguments, tab-separated. Each run's stdout and stderr go to
 * LOGS/NAME.log; a line "NAME, exit status, seconds" (tab-separated) is appended to RESULTS as each run ends. It
 * stops after a run that ends in an internal error (exit 1): on a GPU that may be a sticky CUDA error, which fails
 * every later call in this process; the runs without a result are then the caller's, one JVM each.
 */
public final class CommandRuns {
    private CommandRuns() {}

    public static void main(String[] args) throws IOException {
        if (args.length != 3) {
            System.err.println("usage: CommandRuns RUNS LOGS RESULTS");
            System.exit(2);
        }
        System.exit(run(Path.of(args[0]), Path.of(args[1]), Path.of(args[2])));
    }

    /** A command line's run: {@link Main#run}, or a stand-in in tests. */
    interface Command {
        int run(PrintWriter out, PrintWriter err, String... args);
    }

    /** Runs the file's command lines through headroute's {@link Main}. */
    static int run(Path runs, Path logs, Path results) throws IOException {
        return run(runs, logs, results, Main::run);
    }

    /** Runs the file's command lines; 0 when every run got a result, 1 when it stopped early. */
    static int run(Path runs, Path logs, Path results, Command main) throws IOException {
        List<String> lines = Files.readAllLines(runs, StandardCharsets.UTF_8);
        Files.createDirectories(logs);
        for (String line : lines) {
            if (line.isBlank()) {
                continue;
            }
            String[] fields = line.split("\t", -1);
            String name = fields[0];
            String[] command = Arrays.copyOfRange(fields, 1, fields.length);
            long start = System.nanoTime();
            int rc;
            try (Writer log = Files.newBufferedWriter(logs.resolve(name + ".log"), StandardCharsets.UTF_8);
                    PrintWriter w = new PrintWriter(log, true)) {
                rc = main.run(w, w, command);
            }
            long secs = Math.round((System.nanoTime() - start) / 1e9);
            Files.writeString(results, name + "\t" + rc + "\t" + secs + "\n", StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                    StandardOpenOption.APPEND);
            System.out.println(name + ": exit " + rc + " (" + secs + " s)");
            if (rc == Main.INTERNAL_ERROR) {
                System.out.println("stopping after " + name + " (an internal error may leave the device unusable to this process)");
                return 1;
            }
        }
        return 0;
    }
}
