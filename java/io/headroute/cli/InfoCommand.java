package io.headroute.cli;

import io.headroute.engine.cuda.CudaProbe;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

/** {@code headroute info}: what this machine offers headroute. */
@Command(name = "info", mixinStandardHelpOptions = true, versionProvider = Main.VersionProvider.class,
        header = "Backends available here, cores, JVM, version.",
        description = "Prints the backends available here (with the reason a GPU is not usable), cores, JVM and version.")
final class InfoCommand implements Callable<Integer> {
    @Mixin
    VerboseMixin verboseMixin;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        PrintWriter o = spec.commandLine().getOut();
        CudaProbe.Result probe = CudaProbe.result();
        Runtime rt = Runtime.getRuntime();
        o.println("headroute " + Main.VERSION);
        o.println("backend cpu:  available (" + rt.availableProcessors() + " cores)");
        if (probe.usable()) {
            o.println("backend cuda: GPU usable (" + probe.reason()
                    + "), but the CUDA attention engine is not part of this build yet (issue 4)");
        } else {
            o.println("backend cuda: not available: " + probe.reason());
        }
        for (CudaProbe.DeviceInfo d : probe.devices()) {
            o.println("  " + d + (d.supported() ? "" : " - unsupported, needs compute capability 8.0+"));
        }
        o.println("backend auto: cpu");
        o.println("JVM: " + System.getProperty("java.vm.name") + " " + System.getProperty("java.runtime.version") + " ("
                + System.getProperty("java.vendor") + "), max heap " + Units.mib(rt.maxMemory()));
        o.println("OS: " + System.getProperty("os.name") + " " + System.getProperty("os.version") + " " + System.getProperty("os.arch"));
        return Main.OK;
    }
}
