package io.headroute.cuda;

import static jcuda.driver.JCudaDriver.cuFuncSetAttribute;
import static jcuda.driver.JCudaDriver.cuLaunchKernel;
import static jcuda.driver.JCudaDriver.cuModuleGetFunction;
import static jcuda.driver.JCudaDriver.cuModuleLoadData;
import static jcuda.driver.JCudaDriver.cuModuleUnload;

import java.io.IOException;
import java.io.InputStream;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import jcuda.Pointer;
import jcuda.driver.CUfunction;
import jcuda.driver.CUfunction_attribute;
import jcuda.driver.CUmodule;
import jcuda.driver.CUresult;

/**
 * One of headroute's compiled kernel families ({@code cuda-kernels/NAME.cu}), loaded from the jar
 * resource {@code io/headroute/kernels/NAME.fatbin} with {@code cuModuleLoadData}. Functions are looked
 * up once and cached. Closing unloads the module once.
 */
public final class KernelModule implements AutoCloseable {
    /** Where the Makefile's fatbins sit inside the jar. */
    public static final String RESOURCE_DIR = "io/headroute/kernels/";

    private final CudaDevice device;
    private final String name;
    private final CUmodule module = new CUmodule();
    private final Map<String, CUfunction> functions = new ConcurrentHashMap<>();
    /** Dynamic shared memory each kernel was already allowed, so repeated launches skip the driver call. */
    private final Map<String, Integer> sharedAllowed = new ConcurrentHashMap<>();
    private boolean closed;

    private KernelModule(CudaDevice device, String name, byte[] image) {
        this.device = device;
        this.name = name;
        device.makeCurrent();
        int rc = cuModuleLoadData(module, image);
        if (rc == CUresult.CUDA_ERROR_NO_BINARY_FOR_GPU || rc == CUresult.CUDA_ERROR_UNSUPPORTED_PTX_VERSION) {
            throw new CudaException("kernel module " + name + ".fatbin has no code that runs on " + device.describe()
                    + " (compute capability " + device.computeCapabilityMajor() + "." + device.computeCapabilityMinor()
                    + "; the module holds " + holds(image) + "): " + CUresult.stringFor(rc));
        }
        CudaException.check(rc, "cuModuleLoadData(" + name + ".fatbin, " + image.length + " bytes)", device.describe());
    }

    private static String holds(byte[] image) {
        try {
            return FatbinInfo.images(image).toString();
        } catch (IllegalArgumentException e) {
            return "no readable fatbin header";
        }
    }

    /**
     * Loads {@code NAME.fatbin} from the class path.
     *
     * @param device the device to load the module on (its context is made current)
     * @param name   the kernel family, e.g. "router" for {@code cuda-kernels/router.cu}
     * @return the loaded module, owned by the caller
     * @throws CudaException when the jar lacks the fatbin, it holds no code for this GPU, or the driver refuses it
     */
    public static KernelModule load(CudaDevice device, String name) {
        return new KernelModule(device, name, readResource(name));
    }

    /**
     * The fatbin bytes of kernel family {@code name}; a clear error if the build did not package it.
     *
     * @param name the kernel family
     * @return the whole fatbin
     * @throws CudaException when the resource is missing or cannot be read
     */
    public static byte[] readResource(String name) {
        String path = RESOURCE_DIR + name + ".fatbin";
        try (InputStream in = KernelModule.class.getClassLoader().getResourceAsStream(path)) {
            if (in == null) {
                throw new CudaException("kernel module " + path + " is not on the class path: the jar was built without"
                        + " nvcc (run 'make build' on a machine with the CUDA toolkit)");
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new CudaException("cannot read kernel module " + path + ": " + e.getMessage());
        }
    }

    /**
     * {@return whether the jar carries kernel family {@code name}}
     *
     * @param name the kernel family
     */
    public static boolean packaged(String name) {
        return KernelModule.class.getClassLoader().getResource(RESOURCE_DIR + name + ".fatbin") != null;
    }

    /** {@return the kernel family this module was loaded from} */
    public String name() {
        return name;
    }

    /** {@return the device the module is loaded on} */
    public CudaDevice device() {
        return device;
    }

    /**
     * The kernel {@code kernel} of this module (cached).
     *
     * @param kernel the kernel's (extern "C") name
     * @return the function handle
     * @throws IllegalStateException when the module is closed
     * @throws CudaException         when the module has no such kernel
     */
    public CUfunction function(String kernel) {
        if (closed) {
            throw new IllegalStateException("kernel module " + name + " is closed");
        }
        return functions.computeIfAbsent(kernel, k -> {
            device.makeCurrent();
            CUfunction f = new CUfunction();
            int rc = cuModuleGetFunction(f, module, k);
            if (rc == CUresult.CUDA_ERROR_NOT_FOUND) {
                throw new CudaException("kernel " + k + " is not in module " + name + ".fatbin (" + device.describe() + ")");
            }
            CudaException.check(rc, "cuModuleGetFunction(" + k + ")", device.describe());
            return f;
        });
    }

    /**
     * Lets {@code kernel} use {@code bytes} of dynamic shared memory (above 48 KiB this must be asked
     * for); fails clearly when the device offers less. Cheap to repeat: the attribute is set once per size.
     *
     * @param kernel the kernel's name
     * @param bytes  the dynamic shared memory per block, in bytes
     * @throws CudaException when {@code bytes} exceeds {@link CudaDevice#maxSharedMemoryPerBlockOptin()} or the
     *                       driver refuses
     */
    public void allowSharedMemory(String kernel, int bytes) {
        Integer done = sharedAllowed.get(kernel);
        if (done != null && done >= bytes) {
            return;
        }
        synchronized (sharedAllowed) {
            setSharedMemory(kernel, bytes);
        }
    }

    /** Under the lock: two threads raising the attribute cannot leave the cache above what the driver holds. */
    private void setSharedMemory(String kernel, int bytes) {
        Integer done = sharedAllowed.get(kernel);
        if (done != null && done >= bytes) {
            return;
        }
        if (bytes > device.maxSharedMemoryPerBlockOptin()) {
            throw new CudaException("kernel " + kernel + " needs " + bytes + " bytes of shared memory per block; "
                    + device.describe() + " allows " + device.maxSharedMemoryPerBlockOptin());
        }
        device.makeCurrent();
        CudaException.check(cuFuncSetAttribute(function(kernel),
                CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes),
                "cuFuncSetAttribute(" + kernel + ", max dynamic shared memory = " + bytes + ")", device.describe());
        sharedAllowed.put(kernel, bytes);
    }

    /**
     * Launches {@code kernel} on {@code stream} with one by-value argument: the bytes of a parameter
     * struct (AttnParams, SoftmaxParams), laid out exactly as the CUDA struct. An empty grid launches nothing.
     *
     * @param kernel      the kernel's name
     * @param gridX       blocks in x, at least 0
     * @param gridY       blocks in y, 0 … 65535
     * @param gridZ       blocks in z, 0 … 65535
     * @param block       threads per block (x only)
     * @param sharedBytes dynamic shared memory per block, in bytes (see {@link #allowSharedMemory})
     * @param stream      the stream to enqueue on; not waited for
     * @param params      the parameter struct's bytes
     * @throws IllegalArgumentException for a negative grid dimension (an overflowed count)
     * @throws CudaException            for a grid past 65535 in y or z, or when the launch fails
     */
    public void launch(String kernel, int gridX, int gridY, int gridZ, int block, int sharedBytes, CudaStream stream,
            byte[] params) {
        if (gridX < 0 || gridY < 0 || gridZ < 0) {
            // An overflowed count: launching nothing would leave the outputs unwritten without a word.
            throw new IllegalArgumentException("launch of " + kernel + ": negative grid (" + gridX + ", " + gridY + ", " + gridZ
                    + ")");
        }
        if (gridX == 0 || gridY == 0 || gridZ == 0) {
            return; // nothing to do: an empty grid is not an error
        }
        if (gridY > 65535 || gridZ > 65535) {
            throw new CudaException("launch of " + kernel + ": grid (" + gridX + ", " + gridY + ", " + gridZ
                    + ") exceeds 65535 in y or z");
        }
        device.makeCurrent();
        Pointer args = Pointer.to(Pointer.to(params));
        int rc = cuLaunchKernel(function(kernel), gridX, gridY, gridZ, block, 1, 1, sharedBytes, stream.handle(), args, null);
        CudaException.check(rc, "cuLaunchKernel(" + kernel + ", grid (" + gridX + ", " + gridY + ", " + gridZ + "), block "
                + block + ", " + sharedBytes + " B shared)", device.describe());
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        device.makeCurrent();
        CudaException.check(cuModuleUnload(module), "cuModuleUnload(" + name + ")", device.describe());
    }
}
