package io.headroute.cli;

import io.headroute.attention.BackendUnavailableException;
import io.headroute.cuda.memory.DeviceOutOfMemoryException;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.tensor.TensorFileException;
import java.io.PrintWriter;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Callable;
import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.config.Configurator;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.Spec;

/**
 * The {@code headroute} command line. Exit status: 0 success, 1 internal error, 2 bad input (usage
 * errors, unreadable or inconsistent files, bad patterns, an unavailable backend). Results go to
 * stdout; errors are one line on stderr; logs go to stderr.
 */
@Command(name = "headroute", mixinStandardHelpOptions = true, versionProvider = Main.VersionProvider.class,
        description = "GPU attention for the JVM: attention from tensor files, sparsity patterns, benchmarks, experiments, head analysis.",
        subcommands = {AttendCommand.class, PatternCommand.class, QualityCommand.class, RouteCommand.class, BenchCommand.class,
            DemoCommand.class, ExperimentCommand.class, AnalyzeCommand.class, InfoCommand.class, CommandLine.HelpCommand.class},
        commandListHeading = "%nCommands:%n",
        footer = {"", "Exit status: 0 ok, 1 internal error, 2 bad input.",
            "Run 'headroute <command> --help' for a command's options."})
public final class Main implements Callable<Integer> {
    /** headroute's version. */
    public static final String VERSION = "0.1.0";
    /** Exit status for success. */
    public static final int OK = 0;
    /** Exit status for a bug or an unexpected failure. */
    public static final int INTERNAL_ERROR = 1;
    /** Exit status for bad input: usage, files, patterns, shapes, backends. */
    public static final int BAD_INPUT = 2;

    /**
     * The command line's logging setup (log lines to stderr, headroute's at INFO). It is not the jar's
     * {@code log4j2.xml}: a library jar holding one would take over the logging of every application that
     * has the jar on its class path ahead of its own file.
     */
    static final String LOG_CONFIG = "classpath:io/headroute/cli/log4j2.xml";

    @Mixin
    VerboseMixin verboseMixin;

    @Spec
    CommandSpec spec;

    /** Set by any command's --verbose. */
    boolean verbose;

    /** The version line of every command's --version. */
    public static final class VersionProvider implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"headroute " + VERSION};
        }
    }

    @Override
    public Integer call() {
        throw new ParameterException(spec.commandLine(),
                "missing command (expected attend, pattern, quality, route, bench, demo, experiment, analyze or info)");
    }

    /**
     * The process's entry point: the command line's logging setup, {@link #run(String...)}, then
     * {@link System#exit} with its status.
     *
     * @param args the command and its options, e.g. {@code attend --pattern causal ...}
     */
    public static void main(String[] args) {
        useCommandLineLogging();
        System.exit(run(args));
    }

    /**
     * Points Log4j at {@link #LOG_CONFIG} unless the user named a configuration (the property or the
     * environment variable Log4j reads). Only the process's entry point calls it, before any logger exists:
     * {@link #run} in a program that embeds the command line keeps that program's logging.
     */
    static void useCommandLineLogging() {
        if (System.getProperty("log4j2.configurationFile") == null && System.getProperty("log4j.configurationFile") == null
                && System.getenv("LOG4J_CONFIGURATION_FILE") == null) {
            System.setProperty("log4j2.configurationFile", LOG_CONFIG);
        }
    }

    /**
     * Runs the command line with the process's stdout and stderr (UTF-8 whatever the locale); returns the exit status.
     * Leaves the logging setup alone: for programs that embed the command line.
     *
     * @param args the command and its options
     * @return 0 for success, 1 for an internal error, 2 for bad input
     */
    public static int run(String... args) {
        // UTF-8 whatever the locale: help and reports use a few symbols (≤, ·, −) that ASCII lacks.
        PrintWriter out = new PrintWriter(new OutputStreamWriter(new FileOutputStream(FileDescriptor.out), StandardCharsets.UTF_8), true);
        PrintWriter err = new PrintWriter(new OutputStreamWriter(new FileOutputStream(FileDescriptor.err), StandardCharsets.UTF_8), true);
        try {
            return run(out, err, args);
        } finally {
            out.flush();
            err.flush();
        }
    }

    /**
     * Runs the command line writing results to {@code out} and errors to {@code err}; returns the exit status.
     *
     * @param out receives results and help
     * @param err receives the one-line errors
     * @param args the command and its options
     * @return 0 for success, 1 for an internal error, 2 for bad input
     */
    public static int run(PrintWriter out, PrintWriter err, String... args) {
        Main main = new Main();
        return execute(main, new CommandLine(main), out, err, args);
    }

    /** Runs {@code cl} (built on {@code main}) with headroute's error handling and exit statuses. */
    static int execute(Main main, CommandLine cl, PrintWriter out, PrintWriter err, String... args) {
        cl.setParameterExceptionHandler(Main::onParameterError);
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> onExecutionError(main, ex, cmd, parsed));
        cl.setOut(out);
        cl.setErr(err);
        verbatimExamples(cl);
        cl.setExecutionStrategy(parsed -> {
            refuseBadSettings(parsed);
            return new CommandLine.RunLast().execute(parsed);
        });
        try {
            return cl.execute(args);
        } catch (OutOfMemoryError e) {
            // picocli passes Errors through; an exhausted heap is still worth one clear line (a resource limit, not a
            // bug, but no bad input either: exit 1).
            String name = cl.getParseResult() == null ? "headroute" : commandName(cl.getParseResult());
            err.println(name + ": error: the Java heap is exhausted (" + oneLine(e.toString())
                    + "): raise it with HEADROUTE_JAVA_OPTS=-Xmx..., or use smaller sizes");
            if (main.verbose) {
                e.printStackTrace(err);
            }
            return INTERNAL_ERROR;
        } catch (RuntimeException | Error e) {
            internalError(main, err, e);
            return INTERNAL_ERROR;
        } finally {
            out.flush();
            err.flush();
        }
    }

    /**
     * Every command's footer prints its example command lines ("  headroute ...") as written: picocli wraps footer text
     * at the usage width, which broke long examples in the middle of an argument (copy-paste then fails). Other footer
     * lines wrap as before.
     */
    static void verbatimExamples(CommandLine cl) {
        cl.getHelpSectionMap().put(CommandLine.Model.UsageMessageSpec.SECTION_KEY_FOOTER, help -> {
            CommandLine.Model.UsageMessageSpec usage = help.commandSpec().usageMessage();
            StringBuilder sb = new StringBuilder();
            for (String line : usage.footer()) {
                if (line.startsWith(EXAMPLE_PREFIX)) {
                    sb.append(line).append(System.lineSeparator());
                } else {
                    CommandLine.Help.join(help.ansi(), usage.width(), usage.adjustLineBreaksForWideCJKCharacters(),
                            new String[] {line}, sb);
                }
            }
            return sb.toString();
        });
        for (CommandLine sub : cl.getSubcommands().values()) {
            verbatimExamples(sub);
        }
    }

    /** How an example command line in a footer starts; such lines are never re-wrapped. */
    static final String EXAMPLE_PREFIX = "  headroute ";

    /**
     * Refuses, before any command runs, a process-wide setting the command would otherwise ignore where it does not
     * reach a GPU: an unknown {@code -Dheadroute.tiling} (read only when a CUDA engine starts) is one line and exit 2 in
     * every command, whatever the backend. Help and version requests are answered anyway.
     */
    private static void refuseBadSettings(ParseResult parsed) {
        ParseResult p = parsed;
        while (true) {
            if (p.isUsageHelpRequested() || p.isVersionHelpRequested()) {
                return;
            }
            if (p.subcommand() == null) {
                break;
            }
            p = p.subcommand();
        }
        if (p.commandSpec().userObject() instanceof CommandLine.HelpCommand) {
            return;
        }
        try {
            CudaAttentionEngine.startTiling();
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ExecutionException(p.commandSpec().commandLine(), e.getMessage(), e);
        }
    }

    /** "headroute bench": the innermost subcommand parsed. */
    private static String commandName(ParseResult parsed) {
        ParseResult p = parsed;
        while (p.subcommand() != null) {
            p = p.subcommand();
        }
        return p.commandSpec().qualifiedName(" ");
    }

    /** Raises every logger to DEBUG; called once by --verbose. */
    static void enableDebugLogging() {
        Configurator.setAllLevels(LogManager.ROOT_LOGGER_NAME, Level.DEBUG);
    }

    private static int onParameterError(ParameterException ex, String[] args) {
        CommandLine cl = ex.getCommandLine();
        String name = cl.getCommandSpec().qualifiedName(" ");
        PrintWriter err = cl.getErr();
        String message = ex.getMessage();
        if (ex instanceof CommandLine.UnmatchedArgumentException u && cl.getParent() == null && u.getUnmatched().size() > 0
                && args.length > 0 && u.getUnmatched().get(0).equals(args[0]) && !args[0].startsWith("-")) {
            // picocli says "Unmatched argument at index 0" for a command it does not know.
            message = unknownCommand(cl, args[0]);
        }
        java.util.regex.Matcher helpOf = HELP_UNKNOWN.matcher(String.valueOf(message));
        if (cl.getParent() == null && helpOf.matches()) {
            // 'headroute help bogus': picocli's help command says "Unknown subcommand 'bogus'."; said as for 'headroute bogus'.
            message = unknownCommand(cl, helpOf.group(1));
        }
        if (ex instanceof CommandLine.MissingParameterException) {
            // picocli checks required options before it reports unknown ones: "attend --bogus" would say that --out
            // is missing, while the mistake is the option.
            String unknown = unknownOption(cl, args);
            if (unknown != null) {
                message = "unknown option: '" + unknown + "'";
            }
        }
        // picocli's own messages start with a capital ("Missing required option ..."), headroute's do not.
        if (message != null && message.length() > 1 && Character.isUpperCase(message.charAt(0))
                && Character.isLowerCase(message.charAt(1))) {
            message = Character.toLowerCase(message.charAt(0)) + message.substring(1);
        }
        err.println(name + ": error: " + oneLine(message));
        err.println("see '" + name + " --help'");
        return BAD_INPUT;
    }

    /** picocli's help command's message for a command it does not know. */
    private static final java.util.regex.Pattern HELP_UNKNOWN = java.util.regex.Pattern.compile("Unknown subcommand '(.*)'\\.");

    /** "unknown command 'x' (expected one of attend, ...)": the top command's message for a command it does not know. */
    private static String unknownCommand(CommandLine top, String name) {
        return "unknown command '" + name + "' (expected one of " + String.join(", ", top.getSubcommands().keySet()) + ")";
    }

    /**
     * The first argument that reads as an option (-x, --name, --name=value) and that neither {@code cl}'s command
     * nor a command above it knows, skipping the values of options that take one and everything after "--";
     * null when there is none.
     */
    static String unknownOption(CommandLine cl, String[] args) {
        boolean valueNext = false;
        for (String a : args) {
            if (valueNext) {
                valueNext = false;
                continue;
            }
            if (a.equals("--")) {
                return null;
            }
            if (!a.startsWith("-") || a.length() < 2 || !(Character.isLetter(a.charAt(1)) || a.charAt(1) == '-')) {
                continue;
            }
            String name = a.contains("=") ? a.substring(0, a.indexOf('=')) : a;
            CommandLine.Model.OptionSpec known = null;
            for (CommandLine c = cl; c != null && known == null; c = c.getParent()) {
                known = c.getCommandSpec().findOption(name);
            }
            if (known == null) {
                return name;
            }
            valueNext = !a.contains("=") && known.arity().max() > 0;
        }
        return null;
    }

    private static int onExecutionError(Main main, Exception ex, CommandLine cl, ParseResult parsed) {
        PrintWriter err = cl.getErr();
        if (isUserError(ex)) {
            LogManager.getLogger(Main.class).debug("bad input", ex);
            err.println(cl.getCommandSpec().qualifiedName(" ") + ": error: " + oneLine(message(ex)));
            return BAD_INPUT;
        }
        internalError(main, err, ex);
        return INTERNAL_ERROR;
    }

    private static void internalError(Main main, PrintWriter err, Throwable ex) {
        err.println("headroute: internal error: " + ex.getClass().getName() + ": " + oneLine(String.valueOf(ex.getMessage()))
                + (main.verbose ? "" : " (run with --verbose for the stack trace)"));
        if (main.verbose) {
            ex.printStackTrace(err);
        }
    }

    /** Failures the user can fix: files, patterns, shapes, backends, values. */
    static boolean isUserError(Throwable ex) {
        return ex instanceof TensorFileException || ex instanceof BackendUnavailableException
                || ex instanceof IllegalArgumentException // includes PatternException and ShapeException
                || ex instanceof UnsupportedOperationException // a backend refusing a pattern, head dim or algorithm
                || ex instanceof DeviceOutOfMemoryException; // the problem does not fit the card
    }

    private static String message(Throwable ex) {
        String m = ex.getMessage();
        return m == null || m.isBlank() ? ex.getClass().getSimpleName() : m;
    }

    /** Collapses a message onto one line. */
    static String oneLine(String s) {
        return String.valueOf(s).replaceAll("\\s*\\R\\s*", " ").strip();
    }
}
