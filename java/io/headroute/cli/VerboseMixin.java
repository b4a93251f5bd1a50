package io.headroute.cli;

import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code --verbose} on every command: DEBUG logging, and stack traces for internal errors. */
public final class VerboseMixin {
    @Spec(Spec.Target.MIXEE)
    CommandSpec mixee;

    @Option(names = "--verbose", description = "Log at DEBUG level (to stderr) and print stack traces of internal errors.")
    void setVerbose(boolean verbose) {
        if (verbose && mixee.root().userObject() instanceof Main main && !main.verbose) {
            main.verbose = true;
            Main.enableDebugLogging();
        }
    }
}
