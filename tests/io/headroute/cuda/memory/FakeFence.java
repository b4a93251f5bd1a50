package io.headroute.cuda.memory;

/** A fence completed by the test (or by {@link #await()}), counting its calls; optionally failing. */
final class FakeFence implements Fence {
    boolean complete;
    int awaits;
    int queries;
    int closes;
    /** When set, isComplete and await throw it. */
    RuntimeException failure;

    @Override
    public boolean isComplete() {
        queries++;
        check();
        return complete;
    }

    @Override
    public void await() {
        awaits++;
        check();
        complete = true;
    }

    @Override
    public void close() {
        closes++;
        if (closes > 1) {
            throw new AssertionError("fence closed twice");
        }
    }

    private void check() {
        if (closes > 0) {
            throw new AssertionError("fence used after close");
        }
        if (failure != null) {
            throw failure;
        }
    }
}
