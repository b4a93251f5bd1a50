package io.headroute.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.List;
import java.util.concurrent.Callable;
import org.apache.logging.log4j.core.config.Configurator;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

class ErrorHandlingTest {
    /** A command that throws what it is given: "boom" an internal error, "hungry" an exhausted heap. */
    @Command
    static final class Failing implements Callable<Integer> {
        @Mixin
        VerboseMixin verboseMixin;

        private final java.util.function.Supplier<Throwable> failure;

        Failing(java.util.function.Supplier<Throwable> failure) {
            this.failure = failure;
        }

        @Override
        public Integer call() throws Exception {
            Throwable t = failure.get();
            if (t instanceof Error e) {
                throw e;
            }
            throw (Exception) t;
        }
    }

    private static Cli run(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        Main main = new Main();
        CommandLine cl = new CommandLine(main).addSubcommand("boom", new Failing(() -> new IllegalStateException("kaput\nsecond line")))
                .addSubcommand("hungry", new Failing(() -> new OutOfMemoryError("Java heap space")));
        int exit = Main.execute(main, cl, new PrintWriter(out, true), new PrintWriter(err, true), args);
        return new Cli(exit, out.toString(), err.toString());
    }

    @Test
    void unexpectedExceptionIsOneLineWithExitStatus1() {
        Cli r = run("boom");
        assertEquals(1, r.exit(), r::toString);
        assertEquals(List.of("headroute: internal error: java.lang.IllegalStateException: kaput second line "
                + "(run with --verbose for the stack trace)"), r.errLines());
        assertEquals("", r.out());
    }

    /** An exhausted heap: one line naming the command and the way out, exit 1; --verbose adds the stack trace. */
    @Test
    void anExhaustedHeapIsOneLineNamingTheCommand() {
        Cli r = run("hungry");
        assertEquals(1, r.exit(), r::toString);
        assertEquals(List.of("headroute hungry: error: the Java heap is exhausted (java.lang.OutOfMemoryError: Java heap space): "
                + "raise it with HEADROUTE_JAVA_OPTS=-Xmx..., or use smaller sizes"), r.errLines());
        try {
            Cli v = run("hungry", "--verbose");
            assertTrue(v.err().contains("\tat io.headroute.cli.ErrorHandlingTest$Failing.call"), v::toString);
        } finally {
            Configurator.reconfigure();
        }
    }

    @Test
    void verboseAddsTheStackTrace() {
        try {
            Cli r = run("boom", "--verbose");
            assertEquals(1, r.exit(), r::toString);
            assertEquals("headroute: internal error: java.lang.IllegalStateException: kaput second line", r.errLines().get(0));
            assertTrue(r.err().contains("\tat io.headroute.cli.ErrorHandlingTest$Failing.call"), r::toString);
        } finally {
            Configurator.reconfigure();
        }
    }
}
