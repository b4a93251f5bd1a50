package io.headroute.engine.cuda;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import jcuda.CudaException;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * Whether this machine has a CUDA GPU headroute can use: a driver JCuda can load, at least one device,
 * and compute capability 8.0 or newer (the kernels target sm_80+). Probes once per JVM and caches the
 * answer; never throws. Set the system property {@code headroute.cuda.disable=true} to skip the probe
 * (JCuda is then not touched at all).
 */
public final class CudaProbe {
    /** The system property that turns the probe (and so every CUDA path) off. */
    public static final String DISABLE_PROPERTY = "headroute.cuda.disable";
    /** The oldest compute capability the kernels are built for (sm_80): its major version. */
    public static final int MIN_MAJOR = 8;
    /** The oldest compute capability's minor version. */
    public static final int MIN_MINOR = 0;

    private static final Logger LOG = LogManager.getLogger(CudaProbe.class);
    /** "...: libcuda.so.1: cannot open shared object file: No such file or directory" → libcuda.so.1. */
    private static final Pattern MISSING_LIBRARY =
            Pattern.compile("([^\\s:/]+\\.so(?:\\.[0-9]+)*): cannot open shared object file[^\\n]*");

    private static volatile Result cached;

    private CudaProbe() {}

    /**
     * One CUDA device as the driver reports it.
     *
     * @param ordinal          the CUDA device index
     * @param name             the product name ("unnamed device" when the driver gives none)
     * @param major            compute capability, major version
     * @param minor            compute capability, minor version
     * @param totalMemoryBytes the device's memory in bytes
     */
    public record DeviceInfo(int ordinal, String name, int major, int minor, long totalMemoryBytes) {
        /** {@return whether the compute capability is at least {@value #MIN_MAJOR}.{@value #MIN_MINOR}} */
        public boolean supported() {
            return major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR);
        }

        /** {@return the compute capability as "major.minor", e.g. "9.0"} */
        public String computeCapability() {
            return major + "." + minor;
        }

        @Override
        public String toString() {
            return "GPU " + ordinal + ": " + name + " (compute capability " + computeCapability() + ", "
                    + totalMemoryBytes / (1L << 20) + " MiB)";
        }
    }

    /**
     * What the probe found.
     *
     * @param usable  whether at least one device can run headroute's kernels
     * @param reason  one line: why not, or which device will be used
     * @param devices every device the driver listed (empty without a driver)
     */
    public record Result(boolean usable, String reason, List<DeviceInfo> devices) {
        /**
         * Copies the device list and folds the reason onto one line.
         *
         * @param usable  whether a device can run the kernels
         * @param reason  the reason; line breaks become spaces
         * @param devices the devices listed; copied
         */
        public Result {
            devices = List.copyOf(devices);
            reason = String.valueOf(reason).replaceAll("\\s*\\R\\s*", " ").strip();
        }
    }

    /** {@return the probe's answer, computed on first use}; honours {@value #DISABLE_PROPERTY} on every call. */
    public static Result result() {
        if (disabled()) {
            return new Result(false, "disabled by " + DISABLE_PROPERTY, List.of());
        }
        Result r = cached;
        if (r == null) {
            synchronized (CudaProbe.class) {
                r = cached;
                if (r == null) {
                    r = probe();
                    cached = r;
                }
            }
        }
        return r;
    }

    private static boolean disabled() {
        return Boolean.parseBoolean(System.getProperty(DISABLE_PROPERTY, "false").trim());
    }

    /**
     * Probes now. Loading JCuda's native library is a one-shot affair in a JVM: after a failed load
     * the class stays unusable ({@link NoClassDefFoundError}), which is why {@link #result()} caches.
     */
    static Result probe() {
        try {
            // Exceptions stay off, as the rest of headroute runs JCuda (CudaDevice): this setting is the process's, and
            // every call checks its own result code, so that errors name the operation, sizes and device.
            JCudaDriver.setExceptionsEnabled(false);
        } catch (Throwable t) {
            LOG.debug("loading JCuda's driver library failed", t);
            return new Result(false, describeLoadFailure(t), List.of());
        }
        try {
            check(JCudaDriver.cuInit(0), "cuInit");
        } catch (Throwable t) {
            LOG.debug("cuInit failed", t);
            return new Result(false, describeInitFailure(t), List.of());
        }
        List<DeviceInfo> devices = new ArrayList<>();
        try {
            int[] count = new int[1];
            check(JCudaDriver.cuDeviceGetCount(count), "cuDeviceGetCount");
            for (int i = 0; i < count[0]; i++) {
                devices.add(device(i));
            }
        } catch (Throwable t) {
            LOG.debug("listing CUDA devices failed", t);
            return new Result(false, "CUDA driver found but listing its devices failed: " + describe(t), devices);
        }
        Result r = judge(devices);
        LOG.debug("CUDA probe: {}", r);
        return r;
    }

    private static DeviceInfo device(int ordinal) {
        CUdevice dev = new CUdevice();
        check(JCudaDriver.cuDeviceGet(dev, ordinal), "cuDeviceGet(" + ordinal + ")");
        int[] major = new int[1];
        int[] minor = new int[1];
        check(JCudaDriver.cuDeviceGetAttribute(major, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev),
                "cuDeviceGetAttribute(compute capability major) of GPU " + ordinal);
        check(JCudaDriver.cuDeviceGetAttribute(minor, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev),
                "cuDeviceGetAttribute(compute capability minor) of GPU " + ordinal);
        byte[] name = new byte[256];
        check(JCudaDriver.cuDeviceGetName(name, name.length, dev), "cuDeviceGetName of GPU " + ordinal);
        long[] mem = new long[1];
        check(JCudaDriver.cuDeviceTotalMem(mem, dev), "cuDeviceTotalMem of GPU " + ordinal);
        return new DeviceInfo(ordinal, cString(name), major[0], minor[0], mem[0]);
    }

    /** A driver result other than CUDA_SUCCESS as an exception naming the call and the result. */
    private static void check(int result, String call) {
        if (result != CUresult.CUDA_SUCCESS) {
            throw new CudaException(call + ": " + CUresult.stringFor(result));
        }
    }

    /** Decides usability from the device list (package-private for tests). */
    static Result judge(List<DeviceInfo> devices) {
        if (devices.isEmpty()) {
            return new Result(false, "CUDA driver found but no device", devices);
        }
        for (DeviceInfo d : devices) {
            if (d.supported()) {
                return new Result(true, d.toString(), devices);
            }
        }
        DeviceInfo d = devices.get(0);
        String which = devices.size() == 1 ? "GPU 0 (" + d.name() + ")" : "none of the " + devices.size() + " GPUs (GPU 0: " + d.name() + ")";
        return new Result(false, which + " has compute capability " + d.computeCapability() + "; headroute's kernels need "
                + MIN_MAJOR + "." + MIN_MINOR + " or newer (sm_80+)", devices);
    }

    /**
     * One line for a failure to load JCuda's native driver binding. JCuda tries java.library.path, then
     * extracts its library from the jcuda-natives jar; the useful part of its long message is the
     * dynamic linker's complaint about the missing system library (usually the driver's libcuda.so.1).
     */
    static String describeLoadFailure(Throwable t) {
        String all = messages(t);
        Matcher m = MISSING_LIBRARY.matcher(all);
        if (m.find()) {
            String lib = m.group(1);
            String detail = m.group(0).strip();
            if (lib.startsWith("libcuda.so")) {
                return "no CUDA driver: " + lib + " could not be loaded (" + detail + ")";
            }
            return "JCuda's native library could not be loaded: " + lib + " is missing (" + detail + ")";
        }
        if (t instanceof NoClassDefFoundError && !(all.contains("UnsatisfiedLinkError"))) {
            return "JCuda is not usable in this JVM: " + firstLine(t.toString());
        }
        return "JCuda's native library could not be loaded: " + firstLine(all);
    }

    private static String describeInitFailure(Throwable t) {
        String msg = describe(t).replaceFirst("^cuInit: ", "");
        if (msg.contains("CUDA_ERROR_NO_DEVICE")) {
            return "CUDA driver found but no device (cuInit: CUDA_ERROR_NO_DEVICE)";
        }
        if (msg.contains("CUDA_ERROR_INSUFFICIENT_DRIVER")) {
            return "CUDA driver found but it is too old for JCuda 12.6 (cuInit: CUDA_ERROR_INSUFFICIENT_DRIVER)";
        }
        return "CUDA driver found but cuInit failed: " + msg;
    }

    private static String describe(Throwable t) {
        if (t instanceof CudaException) {
            return firstLine(String.valueOf(t.getMessage()));
        }
        return firstLine(t.getClass().getSimpleName() + ": " + t.getMessage());
    }

    /** Every message in the cause chain, one after the other. */
    private static String messages(Throwable t) {
        StringBuilder sb = new StringBuilder();
        for (Throwable c = t; c != null && sb.length() < 100_000; c = c.getCause()) {
            sb.append(c.getClass().getName()).append(": ").append(c.getMessage()).append('\n');
            if (c.getCause() == c) {
                break;
            }
        }
        return sb.toString();
    }

    private static String firstLine(String s) {
        String line = s.strip().lines().findFirst().orElse("").strip();
        return line.length() > 300 ? line.substring(0, 300) + "…" : line;
    }

    private static String cString(byte[] b) {
        int n = 0;
        while (n < b.length && b[n] != 0) {
            n++;
        }
        String name = new String(b, 0, n, StandardCharsets.UTF_8).strip();
        return name.isEmpty() ? "unnamed device" : name;
    }
}
