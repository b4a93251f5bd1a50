package io.headroute.cuda.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class DevicePoolTest {
    private static final long MiB = 1 << 20;

    @Test
    void roundsRequestsAndCountsAllocatedAndReservedBytes() {
        FakeAllocator dev = new FakeAllocator(64 * MiB);
        try (DevicePool pool = DevicePool.create(dev, "t", false)) {
            DeviceBuffer a = pool.allocate(1000, "qkv");
            assertEquals(1024, a.size());
            assertEquals(1000, a.requestedBytes());
            DeviceBuffer b = pool.allocate(0, "out");
            assertEquals(512, b.size(), "a zero-byte request still gets a distinct block");
            assertNotEquals(a.address(), b.address());
            MemoryStats s = pool.stats();
            assertEquals(1536, s.allocatedBytes());
            assertEquals(1536, s.reservedBytes());
            assertEquals(2, s.liveBuffers());
            assertEquals(1536, dev.used);
            a.close();
            b.close();
            s = pool.stats();
            assertEquals(0, s.allocatedBytes());
            assertEquals(1536, s.reservedBytes(), "closed buffers stay reserved in the cache");
            assertEquals(1536, s.cachedBytes());
            assertEquals(1536, s.peakAllocatedBytes());
        }
        assertEquals(0, dev.used, "closing the pool returns everything to the device");
    }

    @Test
    void reusesCachedBlocksOfTheSameOrSlightlyLargerSize() {
        FakeAllocator dev = new FakeAllocator(64 * MiB);
        try (DevicePool pool = DevicePool.create(dev, "t", false)) {
            DeviceBuffer a = pool.allocate(8 * MiB, "scores");
            long addr = a.address();
            a.close();
            DeviceBuffer b = pool.allocate(8 * MiB - 4096, "scores");
            assertEquals(addr, b.address(), "a block at most 1/8 larger is reused");
            assertEquals(8 * MiB, b.size());
            b.close();
            DeviceBuffer c = pool.allocate(4 * MiB, "scores");
            assertNotEquals(addr, c.address(), "a block twice the size is not wasted on a small request");
            c.close();
            MemoryStats s = pool.stats();
            assertEquals(3, s.allocations());
            assertEquals(1, s.cacheHits());
            assertEquals(2, s.deviceAllocations());
            assertEquals(2, dev.allocateCalls);
        }
    }

    @Test
    void peaksPerTagAndReset() {
        FakeAllocator dev = new FakeAllocator(64 * MiB);
        try (DevicePool pool = DevicePool.create(dev, "t", false)) {
            DeviceBuffer s1 = pool.allocate(4 * MiB, "scores");
            DeviceBuffer q = pool.allocate(1 * MiB, "qkv");
            s1.close();
            DeviceBuffer s2 = pool.allocate(2 * MiB, "scores");
            MemoryStats st = pool.stats();
            assertEquals(2 * MiB, st.byTag().get("scores").currentBytes());
            assertEquals(4 * MiB, st.byTag().get("scores").peakBytes());
            assertEquals(1 * MiB, st.byTag().get("qkv").peakBytes());
            assertEquals(5 * MiB, st.peakAllocatedBytes());
            assertEquals(7 * MiB, st.peakReservedBytes());
            pool.resetPeakStats();
            st = pool.stats();
            assertEquals(3 * MiB, st.peakAllocatedBytes());
            assertEquals(2 * MiB, st.byTag().get("scores").peakBytes());
            s2.close();
            q.close();
        }
    }

    @Test
    void limitEmulatesASmallerCardAndFreesTheCacheFirst() {
        FakeAllocator dev = new FakeAllocator(64 * MiB);
        try (DevicePool pool = DevicePool.withLimit(dev, "t", 10 * MiB, false)) {
            pool.allocate(6 * MiB, "a").close(); // 6 MiB cached
            DeviceBuffer b = pool.allocate(4 * MiB, "b"); // fits beside the cache: 10 MiB reserved
            DeviceBuffer c = pool.allocate(5 * MiB, "c"); // only after the 6 MiB cache is freed
            assertEquals(9 * MiB, pool.stats().reservedBytes());
            DeviceOutOfMemoryException e = assertThrows(DeviceOutOfMemoryException.class, () -> pool.allocate(2 * MiB, "d"));
            assertTrue(e.getMessage().contains("limit of 10.00 MiB"), e.getMessage());
            assertEquals(2 * MiB, e.requestedBytes());
            assertEquals(1, pool.stats().oomCount());
            b.close();
            c.close();
        }
    }

    @Test
    void fractionLimitIsAShareOfTheDevice() {
        FakeAllocator dev = new FakeAllocator(100 * MiB);
        try (DevicePool pool = DevicePool.withFraction(dev, "t", 0.25, false)) {
            assertEquals(25 * MiB, pool.stats().limitBytes());
            assertThrows(DeviceOutOfMemoryException.class, () -> pool.allocate(26 * MiB, "x"));
        }
        assertThrows(IllegalArgumentException.class, () -> DevicePool.withFraction(dev, "t", 0, false));
        assertThrows(IllegalArgumentException.class, () -> DevicePool.withFraction(dev, "t", 1.5, false));
    }

    @Test
    void deviceOutOfMemoryRetriesOnceAfterEmptyingTheCache() {
        FakeAllocator dev = new FakeAllocator(16 * MiB);
        try (DevicePool pool = DevicePool.create(dev, "t", false)) {
            pool.allocate(12 * MiB, "old").close(); // cached, the device is 12/16 full
            DeviceBuffer b = pool.allocate(8 * MiB, "new");
            assertEquals(1, dev.failures, "first try failed");
            assertEquals(8 * MiB, dev.used, "the cache was returned before the retry");
            assertEquals(0, pool.stats().oomCount());
            b.close();
        }
    }

    @Test
    void outOfMemoryMessageExplainsTheMemoryState() {
        FakeAllocator dev = new FakeAllocator(16 * MiB);
        try (DevicePool pool = DevicePool.create(dev, "t", false)) {
            DeviceBuffer a = pool.allocate(10 * MiB, "scores");
            pool.allocate(2 * MiB, "tmp").close();
            DeviceOutOfMemoryException e = assertThrows(DeviceOutOfMemoryException.class, () -> pool.allocate(8 * MiB, "out"));
            String m = e.getMessage();
            assertTrue(m.contains("fake GPU"), m);
            assertTrue(m.contains("tried to allocate 8.00 MiB (tag out)"), m);
            assertTrue(m.contains("device total 16.00 MiB"), m);
            assertTrue(m.contains("free 6.00 MiB"), m);
            assertTrue(m.contains("10.00 MiB allocated"), m);
            assertTrue(m.contains("0 B reserved but unused"), "the retry freed the 2 MiB cache: " + m);
            assertEquals(2, dev.failures);
            assertEquals(1, pool.stats().oomCount());
            a.close();
        }
    }

    @Test
    void closingTwiceIsHarmlessAndUseAfterCloseFails() {
        FakeAllocator dev = new FakeAllocator(16 * MiB);
        try (DevicePool pool = DevicePool.create(dev, "t", false)) {
            DeviceBuffer a = pool.allocate(MiB, "x");
            a.close();
            a.close();
            assertTrue(a.isClosed());
            assertEquals(0, pool.stats().liveBuffers());
            assertThrows(IllegalStateException.class, a::address);
            DeviceBuffer b = pool.allocate(MiB, "x");
            assertFalse(b.isClosed(), "the reused block is a new, open buffer");
            b.close();
        }
        assertEquals(1, dev.freeCalls, "one block, freed once");
    }

    @Test
    void aFailedFreeNeitherHandsOutNorFreesAgainWhatWasFreed() {
        FakeAllocator dev = new FakeAllocator(16 * MiB);
        DevicePool pool = DevicePool.create(dev, "t", false);
        List<DeviceBuffer> bs = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            bs.add(pool.allocate(4096, "x"));
        }
        bs.forEach(DeviceBuffer::close);
        dev.failFreeCall = dev.freeCalls + 2; // the second of the three frees fails
        assertThrows(IllegalStateException.class, pool::emptyCache);
        assertEquals(2, dev.live.size(), "one block freed, the failed one and the last still on the device");
        assertEquals(2 * 4096, pool.stats().reservedBytes(), "the failed block stays counted, the freed one does not");
        DeviceBuffer again = pool.allocate(4096, "x");
        assertTrue(dev.live.containsKey(again.address()), "a cached block the device still holds, never a freed one");
        again.close();
        pool.close(); // frees the last cached block once; the failed one is not freed twice
        assertEquals(1, dev.live.size());
    }

    @Test
    void aFailedFreeAtCloseStillReportsTheLeaksAndCloses() {
        FakeAllocator dev = new FakeAllocator(16 * MiB);
        DevicePool pool = DevicePool.create(dev, "t", false);
        pool.allocate(MiB, "kept");
        dev.failFreeCall = dev.freeCalls + 1;
        MemoryLeakException e = assertThrows(MemoryLeakException.class, pool::close);
        assertEquals(1, e.getSuppressed().length, "the failed free rides along");
        assertThrows(IllegalStateException.class, () -> pool.allocate(1, "late"), "closed all the same");
    }

    @Test
    void onlyBuffersHandedOutAreCountedAsAllocations() {
        FakeAllocator dev = new FakeAllocator(64 * MiB);
        try (DevicePool pool = DevicePool.withLimit(dev, "t", 4096, false)) {
            assertThrows(DeviceOutOfMemoryException.class, () -> pool.allocate(8192, "big"));
            assertEquals(0, pool.stats().allocations());
            assertEquals(1, pool.stats().oomCount());
            pool.allocate(100, "small").close();
            assertEquals(1, pool.stats().allocations());
        }
    }

    @Test
    void closingThePoolWithLiveBuffersReportsEachLeakAndFreesEverything() {
        FakeAllocator dev = new FakeAllocator(16 * MiB);
        DevicePool pool = DevicePool.create(dev, "layer3", true);
        DeviceBuffer kept = pool.allocate(3 * MiB, "scores");
        pool.allocate(1000, "lse");
        MemoryLeakException e = assertThrows(MemoryLeakException.class, pool::close);
        String m = e.getMessage();
        assertTrue(m.contains("'layer3'") && m.contains("2 live buffer(s)"), m);
        assertTrue(m.contains("3.00 MiB tag scores"), m);
        assertTrue(m.contains("1000 B tag lse"), m);
        assertTrue(m.contains("allocated at io.headroute.cuda.memory.DevicePoolTest"), m);
        assertEquals(0, dev.used);
        assertTrue(kept.isClosed());
        kept.close();
        pool.close(); // idempotent, and no second report
        assertThrows(IllegalStateException.class, () -> pool.allocate(1, "late"));
    }

    @Test
    void randomWorkloadKeepsAccountingExact() {
        FakeAllocator dev = new FakeAllocator(256 * MiB);
        SplittableRandom rnd = new SplittableRandom(11);
        try (DevicePool pool = DevicePool.withLimit(dev, "t", 128 * MiB, false)) {
            List<DeviceBuffer> open = new ArrayList<>();
            long peak = 0;
            for (int step = 0; step < 5000; step++) {
                if (open.isEmpty() || rnd.nextInt(3) > 0) {
                    long bytes = rnd.nextLong(4 * MiB);
                    try {
                        open.add(pool.allocate(bytes, "t" + rnd.nextInt(3)));
                    } catch (DeviceOutOfMemoryException e) {
                        open.remove(rnd.nextInt(open.size())).close();
                    }
                } else {
                    open.remove(rnd.nextInt(open.size())).close();
                }
                long sum = open.stream().mapToLong(DeviceBuffer::size).sum();
                peak = Math.max(peak, sum);
                MemoryStats s = pool.stats();
                assertEquals(sum, s.allocatedBytes(), "step " + step);
                assertEquals(dev.used, s.reservedBytes(), "step " + step);
                assertTrue(s.reservedBytes() <= 128 * MiB, "step " + step);
                assertEquals(open.size(), s.liveBuffers());
                long tagSum = s.byTag().values().stream().mapToLong(MemoryStats.TagStats::currentBytes).sum();
                assertEquals(sum, tagSum, "step " + step);
                assertEquals(peak, s.peakAllocatedBytes(), "step " + step);
            }
            open.forEach(DeviceBuffer::close);
            pool.emptyCache();
            assertEquals(0, dev.used);
        }
    }
}
