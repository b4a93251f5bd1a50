package io.headroute.cuda.memory;

import java.util.Map;

/**
 * A snapshot of a pool's accounting, in PyTorch's terms: <em>allocated</em> bytes are held by live
 * buffers; <em>reserved</em> bytes are held from the device (allocated plus cached for reuse).
 *
 * @param allocatedBytes     bytes in live and pending buffers (sizes after rounding)
 * @param peakAllocatedBytes highest allocatedBytes since creation or the last peak reset
 * @param reservedBytes      bytes obtained from the device and not yet returned
 * @param peakReservedBytes  highest reservedBytes since creation or the last peak reset
 * @param allocations        buffers handed out (cache hits included)
 * @param deviceAllocations  calls that reached the device allocator
 * @param cacheHits          buffers served from the cache
 * @param oomCount           allocations that failed with out-of-memory
 * @param liveBuffers        buffers not yet closed
 * @param pendingBuffers     buffers closed after a fence that had not completed when last checked: their
 *                           bytes stay in allocatedBytes until the pool takes their blocks back
 * @param limitBytes         the pool's cap on reserved bytes, or {@code Long.MAX_VALUE}
 * @param byTag              current and peak allocated bytes per tag
 */
public record MemoryStats(long allocatedBytes, long peakAllocatedBytes, long reservedBytes, long peakReservedBytes,
        long allocations, long deviceAllocations, long cacheHits, long oomCount, long liveBuffers, long pendingBuffers,
        long limitBytes,
        Map<String, TagStats> byTag) {

    /**
     * Allocated bytes under one tag.
     *
     * @param currentBytes bytes the tag's live and pending buffers hold now
     * @param peakBytes    the highest currentBytes since creation or the last peak reset
     */
    public record TagStats(long currentBytes, long peakBytes) {}

    /** {@return the bytes reserved from the device and held by no live or pending buffer (ready for reuse)} */
    public long cachedBytes() {
        return reservedBytes - allocatedBytes;
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder();
        sb.append("allocated ").append(Bytes.format(allocatedBytes)).append(" (peak ").append(Bytes.format(peakAllocatedBytes))
                .append("), reserved ").append(Bytes.format(reservedBytes)).append(" (peak ")
                .append(Bytes.format(peakReservedBytes)).append("), ").append(liveBuffers).append(" live buffers, ")
                .append(pendingBuffers > 0 ? pendingBuffers + " pending, " : "")
                .append(allocations).append(" allocations (").append(cacheHits).append(" from cache), ").append(oomCount)
                .append(" OOM");
        if (limitBytes != Long.MAX_VALUE) {
            sb.append(", limit ").append(Bytes.format(limitBytes));
        }
        byTag.forEach((tag, t) -> sb.append("; ").append(tag).append(' ').append(Bytes.format(t.currentBytes()))
                .append(" (peak ").append(Bytes.format(t.peakBytes())).append(')'));
        return sb.toString();
    }
}
