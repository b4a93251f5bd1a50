package io.headroute.experiment;

import java.io.PrintWriter;
import java.util.Locale;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/** Tells the user how far an experiment is: a bar on a terminal, log lines otherwise. */
public interface Progress {
    /**
     * Run {@code index} (0-based) of {@code total} starts; {@code what} names it.
     *
     * @param index the run, from 0
     * @param total the runs in all
     * @param what  the run for the user, e.g. "flash f32 H=4 L=512"
     */
    void starting(int index, int total, String what);

    /**
     * Every run is done.
     *
     * @param total the runs in all
     */
    void finished(int total);

    /**
     * A bar redrawn in place on {@code err} (carriage return, no new line until the end).
     *
     * @param err the terminal's error stream; flushed after each update
     * @return the progress
     */
    static Progress bar(PrintWriter err) {
        return new Progress() {
            private int width;

            @Override
            public void starting(int index, int total, String what) {
                int cells = 30;
                int done = total == 0 ? cells : index * cells / total;
                String line = String.format(Locale.ROOT, "[%s%s] %d/%d %s", "#".repeat(done), ".".repeat(cells - done), index,
                        total, what);
                err.print("\r" + line + " ".repeat(Math.max(0, width - line.length())));
                err.flush();
                width = line.length();
            }

            @Override
            public void finished(int total) {
                String line = String.format(Locale.ROOT, "[%s] %d/%d done", "#".repeat(30), total, total);
                err.println("\r" + line + " ".repeat(Math.max(0, width - line.length())));
                err.flush();
            }
        };
    }

    /** {@return one INFO log line per run (stderr through Log4j), for pipes and files} */
    static Progress log() {
        Logger log = LogManager.getLogger(Progress.class);
        return new Progress() {
            @Override
            public void starting(int index, int total, String what) {
                log.info("experiment: run {}/{}: {}", index + 1, total, what);
            }

            @Override
            public void finished(int total) {
                log.info("experiment: {} runs done", total);
            }
        };
    }
}
