package io.headroute.cuda.memory;

import java.util.HashMap;
import java.util.Map;

/** A device of {@code capacity} bytes in plain Java: hands out fake addresses, checks every free. */
final class FakeAllocator implements RawAllocator {
    final long capacity;
    final Map<Long, Long> live = new HashMap<>();
    long used;
    long nextAddress = 0x7f0000000000L;
    int allocateCalls;
    int freeCalls;
    int failures;
    /** The free call (1-based, counting every call) that fails, leaving its block live; 0: none. */
    int failFreeCall;
    int poisonCalls;
    boolean failPoison;

    FakeAllocator(long capacity) {
        this.capacity = capacity;
    }

    @Override
    public long allocate(long bytes) throws RawOutOfMemoryException {
        allocateCalls++;
        if (bytes <= 0 || bytes % DevicePool.ROUNDING != 0) {
            throw new AssertionError("pool asked the device for an unrounded size " + bytes);
        }
        if (used + bytes > capacity) {
            failures++;
            throw new RawOutOfMemoryException("fake device full");
        }
        long a = nextAddress;
        nextAddress += bytes;
        live.put(a, bytes);
        used += bytes;
        return a;
    }

    @Override
    public void free(long address) {
        freeCalls++;
        if (freeCalls == failFreeCall) {
            throw new IllegalStateException("fake free failure at " + Long.toHexString(address));
        }
        Long size = live.remove(address);
        if (size == null) {
            throw new AssertionError("free of an address that is not live: " + Long.toHexString(address));
        }
        used -= size;
    }

    @Override
    public void poison(long address, long bytes) {
        poisonCalls++;
        if (failPoison) {
            throw new IllegalStateException("fake poison failure");
        }
        Long size = live.get(address);
        if (size == null || bytes > size) {
            throw new AssertionError("poison of [" + Long.toHexString(address) + ", +" + bytes + ") outside a live block");
        }
    }

    @Override
    public long totalBytes() {
        return capacity;
    }

    @Override
    public long freeBytes() {
        return capacity - used;
    }

    @Override
    public String deviceDescription() {
        return "fake GPU (" + capacity + " bytes)";
    }
}
