package io.headroute.cuda;

import static jcuda.driver.JCudaDriver.cuEventCreate;
import static jcuda.driver.JCudaDriver.cuEventDestroy;
import static jcuda.driver.JCudaDriver.cuEventElapsedTime;
import static jcuda.driver.JCudaDriver.cuEventRecord;
import static jcuda.driver.JCudaDriver.cuEventSynchronize;

import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;

/** A CUDA event with timing enabled; closed once. */
public final class CudaEvent implements AutoCloseable {
    private final CudaDevice device;
    private final CUevent event = new CUevent();
    private boolean closed;

    public CudaEvent(CudaDevice device) {
        this.device = device;
        device.makeCurrent();
        CudaException.check(cuEventCreate(event, CUevent_flags.CU_EVENT_DEFAULT), "cuEventCreate", device.describe());
    }

    /** Records the event on {@code stream}. */
    public void record(CudaStream stream) {
        device.makeCurrent();
        CudaException.check(cuEventRecord(handle(), stream.handle()), "cuEventRecord", device.describe());
    }

    public void synchronize() {
        device.makeCurrent();
        CudaException.check(cuEventSynchronize(handle()), "cuEventSynchronize", device.describe());
    }

    /** Milliseconds from {@code start} to this event (both recorded; waits for this one). */
    public float millisSince(CudaEvent start) {
        synchronize();
        float[] ms = new float[1];
        CudaException.check(cuEventElapsedTime(ms, start.handle(), handle()), "cuEventElapsedTime", device.describe());
        return ms[0];
    }

    CUevent handle() {
        if (closed) {
            throw new IllegalStateException("event on " + device.describe() + " is closed");
        }
        return event;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        device.makeCurrent();
        CudaException.check(cuEventDestroy(event), "cuEventDestroy", device.describe());
    }
}
