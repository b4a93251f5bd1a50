package io.headroute.cuda;

import static jcuda.driver.JCudaDriver.cuEventCreate;
import static jcuda.driver.JCudaDriver.cuEventDestroy;
import static jcuda.driver.JCudaDriver.cuEventElapsedTime;
import static jcuda.driver.JCudaDriver.cuEventQuery;
import static jcuda.driver.JCudaDriver.cuEventRecord;
import static jcuda.driver.JCudaDriver.cuEventSynchronize;

import io.headroute.cuda.memory.Fence;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUresult;

/**
 * A CUDA event, with timing enabled unless made by {@link CudaStream#fence()}; closed once. As a {@link Fence} it is
 * complete once the work queued before its last recording has finished (at once if never recorded).
 */
public final class CudaEvent implements Fence {
    private final CudaDevice device;
    private final CUevent event = new CUevent();
    private boolean closed;

    /**
     * A timing event, not yet recorded.
     *
     * @param device the device whose context owns the event
     * @throws CudaException when the driver cannot create it
     */
    public CudaEvent(CudaDevice device) {
        this(device, true);
    }

    /**
     * An event with or without timing (without: cheaper to record and query, no {@link #millisSince}).
     *
     * @param device the device whose context owns the event
     * @param timing whether the event records a time
     * @throws CudaException when the driver cannot create it
     */
    public CudaEvent(CudaDevice device, boolean timing) {
        this.device = device;
        device.makeCurrent();
        CudaException.check(cuEventCreate(event, timing ? CUevent_flags.CU_EVENT_DEFAULT : CUevent_flags.CU_EVENT_DISABLE_TIMING),
                "cuEventCreate", device.describe());
    }

    /**
     * Records the event on {@code stream}: it completes once the work queued there so far has finished. Recording
     * again moves that point.
     *
     * @param stream a stream of the same device
     */
    public void record(CudaStream stream) {
        device.makeCurrent();
        CudaException.check(cuEventRecord(handle(), stream.handle()), "cuEventRecord", device.describe());
    }

    /** Blocks until the work before the last recording has finished (at once if never recorded). */
    public void synchronize() {
        device.makeCurrent();
        CudaException.check(cuEventSynchronize(handle()), "cuEventSynchronize", device.describe());
    }

    @Override
    public boolean isComplete() {
        device.makeCurrent();
        int rc = cuEventQuery(handle());
        if (rc == CUresult.CUDA_ERROR_NOT_READY) {
            return false;
        }
        CudaException.check(rc, "cuEventQuery", device.describe());
        return true;
    }

    @Override
    public void await() {
        synchronize();
    }

    /**
     * Milliseconds from {@code start} to this event (both recorded; waits for this one).
     *
     * @param start an event recorded earlier, with timing
     * @return the elapsed GPU time in milliseconds (about 0.5 µs resolution)
     * @throws CudaException when either event lacks timing or was not recorded
     */
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
