package io.headroute.cuda;

import static jcuda.driver.JCudaDriver.cuStreamCreate;
import static jcuda.driver.JCudaDriver.cuStreamDestroy;
import static jcuda.driver.JCudaDriver.cuStreamSynchronize;
import static jcuda.driver.JCudaDriver.cuStreamWaitEvent;

import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;

/** A non-blocking CUDA stream of one device; closed once. */
public final class CudaStream implements AutoCloseable {
    private final CudaDevice device;
    private final CUstream stream;
    private final boolean owned;
    private boolean closed;

    private CudaStream(CudaDevice device, CUstream stream, boolean owned) {
        this.device = device;
        this.stream = stream;
        this.owned = owned;
    }

    /**
     * A new stream that does not synchronize with the legacy default stream.
     *
     * @param device the device whose context owns the stream
     * @return the stream, owned by the caller (closing it destroys it)
     * @throws CudaException when the driver cannot create it
     */
    public static CudaStream create(CudaDevice device) {
        device.makeCurrent();
        CUstream s = new CUstream();
        CudaException.check(cuStreamCreate(s, CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate", device.describe());
        return new CudaStream(device, s, true);
    }

    /**
     * Wraps a stream owned by someone else (another framework); closing it does nothing.
     *
     * @param device the device the stream belongs to
     * @param stream the JCuda handle of the stream; it must outlive this wrapper's use
     * @return a wrapper that never destroys the stream
     */
    public static CudaStream borrow(CudaDevice device, CUstream stream) {
        return new CudaStream(device, stream, false);
    }

    /** {@return the device the stream belongs to} */
    public CudaDevice device() {
        return device;
    }

    /**
     * {@return the JCuda handle, for launches and copies}
     *
     * @throws IllegalStateException when the stream is closed
     */
    public CUstream handle() {
        if (closed) {
            throw new IllegalStateException("stream on " + device.describe() + " is closed");
        }
        return stream;
    }

    /** Blocks until everything queued on this stream has finished. */
    public void synchronize() {
        device.makeCurrent();
        CudaException.check(cuStreamSynchronize(handle()), "cuStreamSynchronize", device.describe());
    }

    /**
     * A fence after the work queued on this stream so far: an event without timing, recorded now. Hand it to
     * {@link io.headroute.cuda.memory.DeviceBuffer#closeAfter} (which closes it), or close it.
     *
     * @return the recorded event, owned by the caller
     */
    public CudaEvent fence() {
        CudaEvent e = new CudaEvent(device, false);
        try {
            e.record(this);
        } catch (RuntimeException ex) {
            throw Resources.closeAfter(ex, e);
        }
        return e;
    }

    /**
     * Makes later work on this stream wait for {@code event}, without blocking the host.
     *
     * @param event an event of the same device, recorded on another stream (never recorded: no wait)
     */
    public void waitFor(CudaEvent event) {
        device.makeCurrent();
        CudaException.check(cuStreamWaitEvent(handle(), event.handle(), 0), "cuStreamWaitEvent", device.describe());
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (owned) {
            device.makeCurrent();
            CudaException.check(cuStreamDestroy(stream), "cuStreamDestroy", device.describe());
        }
    }
}
