package io.headroute.model.gpu;

import io.headroute.cuda.CudaDevice;
import java.util.Optional;
import java.util.ServiceLoader;

/**
 * Binds a GPU attention implementation to GPU models: a class implementing this, listed in
 * {@code META-INF/services/io.headroute.model.gpu.DeviceAttentionProvider}, is found by
 * {@link #find()}. Without one, GPU models refuse to run (with a message saying so).
 */
public interface DeviceAttentionProvider {
    /**
     * The attention on {@code device}; the caller closes it after the models using it.
     *
     * @param device the open device
     * @return the bound attention
     */
    DeviceAttention open(CudaDevice device);

    /** {@return the first provider on the class path ({@link ServiceLoader} order), if any} */
    static Optional<DeviceAttentionProvider> find() {
        return ServiceLoader.load(DeviceAttentionProvider.class).findFirst();
    }
}
