package io.headroute.cuda;

/** Times GPU work on one stream with a pair of events: {@code start()}, the work, {@code stopMillis()}. */
public final class EventTimer implements AutoCloseable {
    private final CudaStream stream;
    private final CudaEvent start;
    private final CudaEvent stop;

    /**
     * Creates the two timing events on the stream's device.
     *
     * @param stream the stream whose work is timed
     * @throws CudaException when an event cannot be created (none is left open)
     */
    public EventTimer(CudaStream stream) {
        this.stream = stream;
        this.start = new CudaEvent(stream.device());
        CudaEvent s;
        try {
            s = new CudaEvent(stream.device());
        } catch (RuntimeException e) {
            start.close();
            throw e;
        }
        this.stop = s;
    }

    /** Records the start event on the stream: the time counts from the work queued after this. */
    public void start() {
        start.record(stream);
    }

    /**
     * Records the stop event, waits for it, and returns the milliseconds since {@link #start()}.
     *
     * @return the GPU time between the two events, in milliseconds
     */
    public float stopMillis() {
        stop.record(stream);
        return stop.millisSince(start);
    }

    @Override
    public void close() {
        try {
            start.close();
        } finally {
            stop.close();
        }
    }
}
