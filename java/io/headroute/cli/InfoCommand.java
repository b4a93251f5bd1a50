package io.headroute.cli;

import io.headroute.attention.Backends;
import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.FatbinInfo;
import io.headroute.cuda.KernelModule;
import io.headroute.cuda.blas.CublasLoader;
import io.headroute.cuda.memory.Bytes;
import io.headroute.engine.cuda.CudaProbe;
import java.util.stream.Collectors;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

/** {@code headroute info}: what this machine offers headroute. */
@Command(name = "info", mixinStandardHelpOptions = true, versionProvider = Main.VersionProvider.class,
        header = "Backends, GPUs, cuBLAS and kernels available here.",
        description = "Prints the backend auto picks and why; each GPU (compute capability, multiprocessors, memory), the "
                + "driver and JCuda versions, where cuBLAS comes from, the architectures in the packaged kernels and whether "
                + "they load; cores, JVM and version.")
final class InfoCommand implements Callable<Integer> {
    @Mixin
    VerboseMixin verboseMixin;

    @Spec
    CommandSpec spec;

    /** The kernel families the engine loads. */
    static final String[] MODULES = {"flash_fwd_f32", "flash_fwd_mma", "flash_fwd_wgmma", "softmax_rows", "gate_work", "router",
        "block_ops"};

    @Override
    public Integer call() {
        PrintWriter o = spec.commandLine().getOut();
        CudaProbe.Result probe = CudaProbe.result();
        Runtime rt = Runtime.getRuntime();
        o.println("headroute " + Main.VERSION);
        String cudaWhy = Backends.cudaUnavailableReason();
        o.println("backend auto: " + (cudaWhy == null ? "cuda (GPU 0; requests it cannot run fall back to cpu)" : "cpu (" + cudaWhy + ")"));
        o.println("backend cpu:  available (" + rt.availableProcessors() + " cores)");
        o.println("backend cuda: " + (cudaWhy == null ? "available" : "not available: " + cudaWhy));
        for (CudaProbe.DeviceInfo d : probe.devices()) {
            o.println("  " + d + (d.supported() ? "" : " - unsupported, needs compute capability 8.0+"));
        }
        if (probe.usable()) {
            gpuDetails(o, probe);
        }
        CublasLoader.Resolution blas = CublasLoader.resolve();
        o.println("cuBLAS: " + switch (blas.source()) {
            case NATIVE_12 -> "native cuBLAS 12 (" + blas.detail() + ")";
            case SHIM_TO_13 -> "cuBLAS 13 through headroute's 12->13 shim (" + blas.detail() + ")";
            case ABSENT -> "absent, so the GPU's GEMM paths (materialized attention, models and the router on the GPU) are "
                    + "unavailable (the CPU engine needs none): " + blas.detail();
        });
        for (String m : MODULES) {
            o.println("kernels " + m + ": " + architectures(m));
        }
        o.println("JVM: " + System.getProperty("java.vm.name") + " " + System.getProperty("java.runtime.version") + " ("
                + System.getProperty("java.vendor") + "), max heap " + Units.mib(rt.maxMemory()));
        o.println("OS: " + System.getProperty("os.name") + " " + System.getProperty("os.version") + " " + System.getProperty("os.arch"));
        return Main.OK;
    }

    /** Per GPU: multiprocessors, free memory, driver and JCuda versions, and whether each kernel module loads. */
    private static void gpuDetails(PrintWriter o, CudaProbe.Result probe) {
        int[] driver = new int[1];
        int rc = jcuda.driver.JCudaDriver.cuDriverGetVersion(driver);
        String version = rc == jcuda.driver.CUresult.CUDA_SUCCESS ? driver[0] / 1000 + "." + (driver[0] % 1000) / 10
                : "version unknown (cuDriverGetVersion: " + jcuda.driver.CUresult.stringFor(rc) + ")";
        o.println("CUDA driver " + version + "; JCuda " + jcuda.JCudaVersion.get() + " (its CUDA runtime API level "
                + jcuda.runtime.JCuda.CUDART_VERSION / 1000 + "." + (jcuda.runtime.JCuda.CUDART_VERSION % 1000) / 10 + ")");
        for (CudaProbe.DeviceInfo d : probe.devices()) {
            if (!d.supported()) {
                continue;
            }
            try (CudaDevice dev = CudaDevice.open(d.ordinal())) {
                long[] mem = dev.memoryInfo();
                o.println("GPU " + d.ordinal() + ": " + dev.name() + ", compute capability " + d.computeCapability() + ", "
                        + dev.multiprocessors() + " multiprocessors, " + Bytes.format(mem[1]) + " total, " + Bytes.format(mem[0])
                        + " free, " + dev.maxSharedMemoryPerBlockOptin() / 1024 + " KiB shared memory per block");
                for (String m : MODULES) {
                    String status;
                    if (!KernelModule.packaged(m)) {
                        status = "not packaged";
                    } else {
                        try (KernelModule km = KernelModule.load(dev, m)) {
                            status = "loads (" + km.name() + ".fatbin)";
                        } catch (RuntimeException e) {
                            status = "does not load: " + e.getMessage();
                        }
                    }
                    o.println("  module " + m + " on GPU " + d.ordinal() + ": " + status);
                }
            } catch (RuntimeException e) {
                o.println("GPU " + d.ordinal() + ": cannot be opened: " + Main.oneLine(String.valueOf(e.getMessage())));
            }
        }
    }

    /** The architectures in a packaged fatbin, or why there is none. */
    static String architectures(String module) {
        if (!KernelModule.packaged(module)) {
            return "not in this build (built without nvcc)";
        }
        try {
            return FatbinInfo.images(KernelModule.readResource(module)).stream().map(Object::toString)
                    .collect(Collectors.joining(" "));
        } catch (RuntimeException e) {
            return "unreadable: " + e.getMessage();
        }
    }
}
