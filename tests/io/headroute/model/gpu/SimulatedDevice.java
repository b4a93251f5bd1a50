package io.headroute.model.gpu;

import io.headroute.cuda.memory.RawAllocator;
import io.headroute.cuda.memory.RawOutOfMemoryException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Map;
import java.util.TreeMap;

/**
 * Device memory simulated in host memory: every allocation is a byte buffer at a fake address, with gaps
 * between allocations, and every access is bounds-checked against the buffer it falls in. New allocations are
 * poisoned, every byte {@link #POISON} (NaN in f32, f16 and bf16; -1 as an int32), as cuMemAlloc promises nothing
 * about what fresh device memory holds: a buffer read before anything wrote it shows up as NaN instead of a
 * plausible zero.
 */
final class SimulatedDevice implements RawAllocator {
    /** The byte every new allocation is filled with: 0xFFFF is a NaN in f16 and bf16, 0xFFFFFFFF one in f32. */
    static final byte POISON = (byte) 0xFF;

    private final long capacity;
    private final TreeMap<Long, ByteBuffer> blocks = new TreeMap<>();
    private final Map<Long, Long> live = new java.util.HashMap<>();
    private long next = 0x7f0000000000L;
    private long used;
    int allocateCalls;

    SimulatedDevice(long capacity) {
        this.capacity = capacity;
    }

    @Override
    public long allocate(long bytes) throws RawOutOfMemoryException {
        allocateCalls++;
        if (used + bytes > capacity) {
            throw new RawOutOfMemoryException("simulated device full");
        }
        long a = next;
        next += bytes + 4096; // a gap, so an overrun never lands in the next buffer
        ByteBuffer b = ByteBuffer.allocate(Math.toIntExact(bytes)).order(ByteOrder.LITTLE_ENDIAN);
        java.util.Arrays.fill(b.array(), POISON);
        blocks.put(a, b);
        live.put(a, bytes);
        used += bytes;
        return a;
    }

    @Override
    public void free(long address) {
        Long size = live.remove(address);
        if (size == null) {
            throw new AssertionError("free of an address that is not live: " + Long.toHexString(address));
        }
        blocks.remove(address);
        used -= size;
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
        return "simulated GPU (" + capacity + " bytes)";
    }

    /** The pool's poison mode: the range becomes {@link #POISON} bytes again. */
    @Override
    public void poison(long address, long bytes) {
        ByteBuffer b = at(address, bytes);
        for (long i = 0; i < bytes; i++) {
            b.put(POISON);
        }
    }

    /** The buffer holding [address, address + bytes), positioned at address; fails on any overrun. */
    ByteBuffer at(long address, long bytes) {
        Map.Entry<Long, ByteBuffer> e = blocks.floorEntry(address);
        if (e == null || address + bytes > e.getKey() + e.getValue().capacity()) {
            throw new AssertionError("device access [" + Long.toHexString(address) + ", +" + bytes + ") is outside every "
                    + "allocation");
        }
        ByteBuffer b = e.getValue().duplicate().order(ByteOrder.LITTLE_ENDIAN);
        b.position(Math.toIntExact(address - e.getKey()));
        return b;
    }
}
