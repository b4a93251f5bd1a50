package io.headroute.cuda.memory;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * A caching device-memory pool in the manner of PyTorch's CUDA caching allocator. Requests are rounded
 * up to {@value #ROUNDING} bytes; a closed buffer's block stays reserved and serves a later request of
 * the same size or up to an eighth larger. The pool keeps exact accounting (allocated and reserved
 * bytes, current and peak, per tag), honours an optional cap on reserved bytes, and on out-of-memory
 * frees its cache and retries once before failing with a message that explains the memory state.
 * Closing the pool with live buffers frees them and throws {@link MemoryLeakException} listing each.
 *
 * <p>Streams: a block closed with {@link DeviceBuffer#close()} may serve the next request at once, which is
 * safe when that request's work is queued behind the old work (the same stream) or the old work has finished.
 * A buffer closed with {@link DeviceBuffer#closeAfter} waits, still counted as allocated, until its fence has
 * completed: every allocation first takes back the blocks whose fences have completed (a query, no wait);
 * before giving up on memory ({@link #emptyCache}, the out-of-memory retry) and at close the pool waits for
 * all of them. Thread-safe: all methods lock the pool.
 */
public final class DevicePool implements AutoCloseable {
    /** Allocation granularity in bytes. */
    public static final long ROUNDING = 512;
    /**
     * System property: when "true", pools created afterwards fill every buffer they hand out (fresh or from the
     * cache) with 0xFF bytes, NaN in every float dtype ({@link RawAllocator#poison}), so that a kernel reading memory
     * nothing wrote fails a test instead of reading zeros or the last call's values. For tests: on a GPU each
     * allocation then waits for the whole device twice.
     */
    public static final String POISON_PROPERTY = "headroute.pool.poison";

    private static final Logger LOG = LogManager.getLogger(DevicePool.class);

    private final RawAllocator raw;
    private final String name;
    private final long limit;
    private final boolean debug;
    private final boolean poison;

    /** Cached (free, still reserved) blocks by size. */
    private final TreeMap<Long, ArrayDeque<Long>> cache = new TreeMap<>();
    private final Map<DeviceBuffer, Throwable> live = new IdentityHashMap<>();
    private final Map<String, long[]> tags = new LinkedHashMap<>();
    /** Buffers closed after a fence, in closing order: their blocks return to the cache once it completes. */
    private final List<Pending> pending = new ArrayList<>();

    private record Pending(DeviceBuffer buffer, Fence fence) {}

    private long allocated;
    private long peakAllocated;
    private long reserved;
    private long peakReserved;
    private long allocations;
    private long deviceAllocations;
    private long cacheHits;
    private long oomCount;
    private boolean closed;

    private DevicePool(RawAllocator raw, String name, long limit, boolean debug) {
        this(raw, name, limit, debug, Boolean.getBoolean(POISON_PROPERTY));
    }

    private DevicePool(RawAllocator raw, String name, long limit, boolean debug, boolean poison) {
        this.raw = raw;
        this.name = name;
        this.limit = limit;
        this.debug = debug;
        this.poison = poison;
    }

    /** A pool without a cap that poisons as told, whatever the system property says; for tests. */
    static DevicePool poisoning(RawAllocator raw, String name, boolean poison) {
        return new DevicePool(raw, name, Long.MAX_VALUE, false, poison);
    }

    /**
     * A pool without a cap. {@code debug} records where each buffer was allocated, for leak reports.
     *
     * @param raw   the device allocator; the pool does not close it (nor its device)
     * @param name  the pool's name in messages, e.g. "cuda:0 router"
     * @param debug whether to record a stack trace per allocation
     * @return an empty pool; it poisons buffers when {@link #POISON_PROPERTY} is "true" now
     */
    public static DevicePool create(RawAllocator raw, String name, boolean debug) {
        return new DevicePool(raw, name, Long.MAX_VALUE, debug);
    }

    /**
     * A pool that never reserves more than {@code limitBytes}, to emulate a smaller card.
     *
     * @param raw        the device allocator
     * @param name       the pool's name in messages
     * @param limitBytes the cap on reserved bytes, positive
     * @param debug      whether to record a stack trace per allocation
     * @return an empty pool
     * @throws IllegalArgumentException when {@code limitBytes} is not positive
     */
    public static DevicePool withLimit(RawAllocator raw, String name, long limitBytes, boolean debug) {
        if (limitBytes <= 0) {
            throw new IllegalArgumentException("pool limit must be positive, got " + limitBytes);
        }
        return new DevicePool(raw, name, limitBytes, debug);
    }

    /**
     * A pool capped at {@code fraction} (0 &lt; f ≤ 1) of the device's total memory.
     *
     * @param raw      the device allocator
     * @param name     the pool's name in messages
     * @param fraction the share of {@link RawAllocator#totalBytes()} the pool may reserve
     * @param debug    whether to record a stack trace per allocation
     * @return an empty pool
     * @throws IllegalArgumentException when {@code fraction} is outside (0, 1]
     */
    public static DevicePool withFraction(RawAllocator raw, String name, double fraction, boolean debug) {
        if (!(fraction > 0 && fraction <= 1)) {
            throw new IllegalArgumentException("pool fraction must be in (0, 1], got " + fraction);
        }
        return new DevicePool(raw, name, (long) (fraction * raw.totalBytes()), debug);
    }

    static long roundUp(long bytes) {
        long r = (Math.max(bytes, 1) + ROUNDING - 1) / ROUNDING * ROUNDING;
        if (r < bytes) {
            throw new IllegalArgumentException("allocation of " + bytes + " bytes is too large");
        }
        return r;
    }

    /**
     * A buffer of at least {@code bytes}, accounted under {@code tag} ("scores", "qkv", "out", ...).
     *
     * @param bytes the bytes needed, at least 0 (0 still reserves one block of {@value #ROUNDING} bytes)
     * @param tag   the accounting tag
     * @return the buffer, uninitialized unless the pool poisons; the caller closes it
     * @throws IllegalStateException      when the pool is closed
     * @throws IllegalArgumentException   when {@code bytes} is negative or too large to round up
     * @throws DeviceOutOfMemoryException when neither the cache, the device nor a retry after freeing
     *     the cache can satisfy the request, or it would exceed the pool's limit
     */
    public synchronized DeviceBuffer allocate(long bytes, String tag) {
        ensureOpen();
        if (bytes < 0) {
            throw new IllegalArgumentException("cannot allocate " + bytes + " bytes (tag " + tag + ")");
        }
        long size = roundUp(bytes);
        reclaim(false);
        Map.Entry<Long, ArrayDeque<Long>> hit = cache.ceilingEntry(size);
        long address;
        boolean fromCache = hit != null && hit.getKey() <= size + size / 8;
        if (fromCache) {
            size = hit.getKey();
            address = hit.getValue().pop();
            if (hit.getValue().isEmpty()) {
                cache.remove(size);
            }
        } else {
            address = allocateFromDevice(bytes, size, tag);
        }
        if (poison) {
            try {
                raw.poison(address, size);
            } catch (RuntimeException e) {
                cache.computeIfAbsent(size, k -> new ArrayDeque<>()).push(address); // still reserved, not handed out
                throw e;
            }
        }
        if (fromCache) {
            cacheHits++;
        }
        DeviceBuffer b = new DeviceBuffer(this, address, size, bytes, tag);
        allocations++;
        live.put(b, debug ? new Throwable("allocated here") : null);
        allocated += size;
        peakAllocated = Math.max(peakAllocated, allocated);
        long[] t = tags.computeIfAbsent(tag, k -> new long[2]);
        t[0] += size;
        t[1] = Math.max(t[1], t[0]);
        return b;
    }

    private long allocateFromDevice(long requested, long size, String tag) {
        if (reserved + size > limit) {
            emptyCache();
            if (reserved + size > limit) {
                oomCount++;
                throw oom(requested, tag, "the pool's limit of " + Bytes.format(limit) + " would be exceeded");
            }
        }
        long address;
        try {
            address = raw.allocate(size);
        } catch (RawOutOfMemoryException first) {
            LOG.debug("device out of memory for {} (tag {}); freeing {} of cache and retrying", Bytes.format(size), tag,
                    Bytes.format(reserved - allocated));
            emptyCache();
            try {
                address = raw.allocate(size);
            } catch (RawOutOfMemoryException second) {
                oomCount++;
                throw oom(requested, tag, "the device has no room");
            }
        }
        deviceAllocations++;
        reserved += size;
        peakReserved = Math.max(peakReserved, reserved);
        return address;
    }

    private DeviceOutOfMemoryException oom(long requested, String tag, String why) {
        String msg = "out of device memory on " + raw.deviceDescription() + ": tried to allocate " + Bytes.format(requested)
                + " (tag " + tag + ") and " + why + "; device total " + Bytes.format(raw.totalBytes()) + ", free "
                + Bytes.format(raw.freeBytes()) + "; headroute has " + Bytes.format(allocated) + " allocated and "
                + Bytes.format(reserved - allocated) + " reserved but unused"
                + (limit != Long.MAX_VALUE ? " (pool limit " + Bytes.format(limit) + ")" : "");
        return new DeviceOutOfMemoryException(msg, requested);
    }

    /** Called by {@link DeviceBuffer#close()} with the pool locked. */
    void release(DeviceBuffer b) {
        if (!live.containsKey(b)) {
            return; // freed by close() of the pool already
        }
        live.remove(b);
        recycle(b);
    }

    /** Called by {@link DeviceBuffer#closeAfter} with the pool locked. */
    void releaseAfter(DeviceBuffer b, Fence fence) {
        if (!live.containsKey(b)) {
            fence.close(); // freed by close() of the pool already
            return;
        }
        live.remove(b);
        pending.add(new Pending(b, fence));
    }

    private void recycle(DeviceBuffer b) {
        allocated -= b.size();
        tags.get(b.tag())[0] -= b.size();
        cache.computeIfAbsent(b.size(), k -> new ArrayDeque<>()).push(b.rawAddress());
    }

    /**
     * Returns to the cache the blocks of pending buffers whose fences have completed; with {@code wait}, waits for
     * every fence. A fence that fails leaves its block pending (never reused) and the failure propagates.
     */
    private void reclaim(boolean wait) {
        for (Iterator<Pending> it = pending.iterator(); it.hasNext(); ) {
            Pending p = it.next();
            if (wait) {
                p.fence().await();
            } else if (!p.fence().isComplete()) {
                continue;
            }
            it.remove();
            recycle(p.buffer());
            p.fence().close();
        }
    }

    /**
     * Waits for the fences of buffers closed with {@link DeviceBuffer#closeAfter}, then returns every cached block
     * to the device. Each block leaves the cache before it is freed: if a free fails, that block is never handed out
     * again (nor freed twice) and stays counted as reserved, the blocks freed before it are gone from the cache, and
     * the rest stay cached.
     */
    public synchronized void emptyCache() {
        reclaim(true);
        freeCache();
    }

    private void freeCache() {
        while (!cache.isEmpty()) {
            Map.Entry<Long, ArrayDeque<Long>> e = cache.firstEntry();
            long address = e.getValue().pop();
            if (e.getValue().isEmpty()) {
                cache.remove(e.getKey());
            }
            raw.free(address);
            reserved -= e.getKey();
        }
    }

    /** Sets the peaks (overall and per tag) to the current values. */
    public synchronized void resetPeakStats() {
        peakAllocated = allocated;
        peakReserved = reserved;
        for (long[] t : tags.values()) {
            t[1] = t[0];
        }
    }

    /** {@return the accounting now, after taking back the blocks whose fences have completed} */
    public synchronized MemoryStats stats() {
        if (!closed) {
            reclaim(false);
        }
        return snapshot();
    }

    private MemoryStats snapshot() {
        Map<String, MemoryStats.TagStats> byTag = new LinkedHashMap<>();
        tags.forEach((k, t) -> byTag.put(k, new MemoryStats.TagStats(t[0], t[1])));
        return new MemoryStats(allocated, peakAllocated, reserved, peakReserved, allocations, deviceAllocations, cacheHits,
                oomCount, live.size(), pending.size(), limit, Collections.unmodifiableMap(byTag));
    }

    /** {@return whether this pool fills every buffer it hands out with NaN bytes ({@link #POISON_PROPERTY})} */
    public boolean isPoisoning() {
        return poison;
    }

    /** {@return the device this pool allocates on, for messages} */
    public String deviceDescription() {
        return raw.deviceDescription();
    }

    /** {@return one line per live buffer: size, tag and, in debug mode, where it was allocated}; empty when none. */
    public synchronized List<String> leakReport() {
        List<String> lines = new ArrayList<>();
        live.forEach((b, where) -> {
            StringBuilder sb = new StringBuilder(Bytes.format(b.requestedBytes())).append(" tag ").append(b.tag());
            if (where != null) {
                StackTraceElement[] st = where.getStackTrace();
                for (StackTraceElement e : st) {
                    if (!e.getClassName().equals(DevicePool.class.getName())) {
                        sb.append(" allocated at ").append(e);
                        break;
                    }
                }
            }
            lines.add(sb.toString());
        });
        return lines;
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("device pool '" + name + "' is closed");
        }
    }

    /**
     * Waits for the fences of buffers closed with {@link DeviceBuffer#closeAfter}, then frees the cache and any live
     * buffers (which become unusable). Idempotent.
     *
     * @throws MemoryLeakException if buffers were still live, listing each
     */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        List<String> leaks = leakReport();
        RuntimeException freeFailure = null;
        for (Pending p : pending) {
            // A fence that fails (a broken context) does not keep the memory: the pool is going away.
            try {
                p.fence().await();
            } catch (RuntimeException e) {
                freeFailure = addFailure(freeFailure, e);
            }
            try {
                p.fence().close();
            } catch (RuntimeException e) {
                freeFailure = addFailure(freeFailure, e);
            }
            recycle(p.buffer());
        }
        pending.clear();
        for (DeviceBuffer b : new ArrayList<>(live.keySet())) {
            b.close();
        }
        try {
            freeCache();
        } catch (RuntimeException e) {
            freeFailure = addFailure(freeFailure, e); // closed all the same; a leak report, if any, comes first
        }
        closed = true;
        if (!leaks.isEmpty()) {
            String msg = "device pool '" + name + "' closed with " + leaks.size() + " live buffer(s): " + String.join("; ", leaks)
                    + (debug ? "" : " (enable debug to record where each was allocated)");
            LOG.error(msg);
            MemoryLeakException leak = new MemoryLeakException(msg);
            if (freeFailure != null) {
                leak.addSuppressed(freeFailure);
            }
            throw leak;
        }
        if (freeFailure != null) {
            throw freeFailure;
        }
    }

    private static RuntimeException addFailure(RuntimeException first, RuntimeException next) {
        if (first == null) {
            return next;
        }
        first.addSuppressed(next);
        return first;
    }

    @Override
    public synchronized String toString() {
        return "DevicePool[" + name + " on " + raw.deviceDescription() + ": " + snapshot() + "]";
    }
}
