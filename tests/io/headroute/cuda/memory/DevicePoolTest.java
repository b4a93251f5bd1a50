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

    @Test
    void aBufferClosedAfterAFenceIsNotReusedBeforeItCompletes() {
        FakeAllocator dev = new FakeAllocator(64 * MiB);
        try (DevicePool pool = DevicePool.create(dev, "t", false)) {
            DeviceBuffer a = pool.allocate(MiB, "scratch");
            long addr = a.address();
            FakeFence f = new FakeFence();
            a.closeAfter(f);
            assertTrue(a.isClosed());
            assertThrows(IllegalStateException.class, a::address);
            MemoryStats s = pool.stats();
            assertEquals(MiB, s.allocatedBytes(), "still in use by queued work");
            assertEquals(MiB, s.byTag().get("scratch").currentBytes());
            assertEquals(0, s.liveBuffers());
            assertEquals(1, s.pendingBuffers());
            assertTrue(s.toString().contains("1 pending"), s.toString());

            DeviceBuffer b = pool.allocate(MiB, "scratch");
            assertNotEquals(addr, b.address(), "handed out while the fence was incomplete");
            assertEquals(2, pool.stats().deviceAllocations());
            assertEquals(2 * MiB, pool.stats().allocatedBytes());

            f.complete = true;
            DeviceBuffer c = pool.allocate(MiB, "scratch");
            assertEquals(addr, c.address(), "taken back once complete");
            assertEquals(1, f.closes);
            assertEquals(0, f.awaits, "an allocation only queries");
            assertEquals(0, pool.stats().pendingBuffers());
            assertEquals(2 * MiB, pool.stats().allocatedBytes());
            b.close();
            c.close();
        }
    }

    @Test
    void fencesCompleteInAnyOrderAndStatsTakeBackTheCompleted() {
        FakeAllocator dev = new FakeAllocator(64 * MiB);
        try (DevicePool pool = DevicePool.create(dev, "t", false)) {
            FakeFence first = new FakeFence();
            FakeFence second = new FakeFence();
            pool.allocate(MiB, "x").closeAfter(first);
            pool.allocate(2 * MiB, "x").closeAfter(second);
            second.complete = true;
            MemoryStats s = pool.stats();
            assertEquals(MiB, s.allocatedBytes());
            assertEquals(1, s.pendingBuffers());
            assertEquals(3 * MiB, s.reservedBytes());
            assertEquals(1, second.closes);
            assertEquals(0, first.closes);
            first.complete = true;
            assertEquals(0, pool.stats().allocatedBytes());
            assertEquals(1, first.closes);
        }
    }

    @Test
    void outOfMemoryWaitsForPendingBuffersBeforeFailing() {
        FakeAllocator dev = new FakeAllocator(4 * MiB);
        try (DevicePool pool = DevicePool.create(dev, "t", false)) {
            FakeFence f = new FakeFence();
            pool.allocate(3 * MiB, "big").closeAfter(f);
            // 2 MiB more does not fit beside the pending 3 MiB: the retry waits for its fence, frees it, succeeds.
            DeviceBuffer b = pool.allocate(2 * MiB, "other");
            assertEquals(1, f.awaits);
            assertEquals(1, f.closes);
            assertEquals(2 * MiB, dev.used);
            b.close();
            // The limit's path waits too.
            try (DevicePool capped = DevicePool.withLimit(new FakeAllocator(64 * MiB), "c", 4 * MiB, false)) {
                FakeFence g = new FakeFence();
                capped.allocate(3 * MiB, "big").closeAfter(g);
                capped.allocate(2 * MiB, "other").close();
                assertEquals(1, g.awaits);
            }
        }
    }

    @Test
    void emptyCacheAndCloseWaitForPendingBuffers() {
        FakeAllocator dev = new FakeAllocator(64 * MiB);
        DevicePool pool = DevicePool.create(dev, "t", false);
        FakeFence f = new FakeFence();
        pool.allocate(MiB, "x").closeAfter(f);
        pool.emptyCache();
        assertEquals(1, f.awaits);
        assertEquals(0, dev.used);
        FakeFence g = new FakeFence();
        pool.allocate(MiB, "x").closeAfter(g);
        pool.close(); // no leak: the buffer was closed, its fence is waited for
        assertEquals(1, g.awaits);
        assertEquals(1, g.closes);
        assertEquals(0, dev.used);
        // After close: the fence is only closed.
        FakeFence late = new FakeFence();
        DeviceBuffer dead = DevicePool.create(new FakeAllocator(MiB), "d", false).allocate(1, "x");
        dead.close();
        dead.closeAfter(late);
        assertEquals(1, late.closes);
        assertEquals(0, late.awaits + late.queries);
    }

    @Test
    void aFailingFenceKeepsItsBlockFromReuseAndCloseStillFreesEverything() {
        FakeAllocator dev = new FakeAllocator(64 * MiB);
        DevicePool pool = DevicePool.create(dev, "t", false);
        FakeFence f = new FakeFence();
        DeviceBuffer a = pool.allocate(MiB, "x");
        long addr = a.address();
        a.closeAfter(f);
        f.failure = new IllegalStateException("cuEventQuery failed: an illegal memory access");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> pool.allocate(MiB, "x"));
        assertTrue(e.getMessage().contains("illegal memory access"), e.getMessage());
        f.failure = null;
        DeviceBuffer b = pool.allocate(MiB, "x"); // the fence still incomplete: not reused
        assertNotEquals(addr, b.address());
        b.close();
        f.failure = new IllegalStateException("cuEventSynchronize failed");
        IllegalStateException atClose = assertThrows(IllegalStateException.class, pool::close);
        assertEquals("cuEventSynchronize failed", atClose.getMessage());
        assertEquals(0, dev.used, "the pool freed all of its memory all the same");
        assertEquals(1, f.closes);
        assertThrows(IllegalStateException.class, () -> pool.allocate(1, "late"));
    }

    /**
     * Random allocations, closes and closes after fences that complete at random later steps: the accounting
     * stays exact and no block is handed out while a fence over its previous buffer is incomplete.
     */
    @Test
    void randomWorkloadWithFencesNeverReusesABusyBlock() {
        FakeAllocator dev = new FakeAllocator(256 * MiB);
        SplittableRandom rnd = new SplittableRandom(5);
        try (DevicePool pool = DevicePool.withLimit(dev, "t", 96 * MiB, false)) {
            List<DeviceBuffer> open = new ArrayList<>();
            java.util.Map<Long, FakeFence> busy = new java.util.HashMap<>(); // address → fence of its last buffer
            java.util.Map<Long, Long> busySize = new java.util.HashMap<>();
            List<FakeFence> fences = new ArrayList<>();
            for (int step = 0; step < 5000; step++) {
                int op = rnd.nextInt(6);
                if (open.isEmpty() || op < 3) {
                    DeviceBuffer b;
                    try {
                        b = pool.allocate(rnd.nextLong(4 * MiB), "t" + rnd.nextInt(2));
                    } catch (DeviceOutOfMemoryException e) {
                        open.remove(rnd.nextInt(open.size())).close();
                        continue;
                    }
                    FakeFence f = busy.get(b.address());
                    assertTrue(f == null || f.complete, "step " + step + ": a block handed out under an incomplete fence");
                    busy.remove(b.address());
                    busySize.remove(b.address());
                    open.add(b);
                } else if (op == 3) {
                    open.remove(rnd.nextInt(open.size())).close();
                } else if (op == 4) {
                    DeviceBuffer b = open.remove(rnd.nextInt(open.size()));
                    FakeFence f = new FakeFence();
                    busy.put(b.address(), f);
                    busySize.put(b.address(), b.size());
                    fences.add(f);
                    b.closeAfter(f);
                } else if (!fences.isEmpty()) {
                    fences.remove(rnd.nextInt(fences.size())).complete = true; // the GPU finishes some work
                }
                fences.removeIf(f -> f.complete);
                MemoryStats s = pool.stats();
                long pendingBytes = 0;
                int pendingCount = 0;
                for (var e : busy.entrySet()) {
                    if (!e.getValue().complete) {
                        pendingBytes += busySize.get(e.getKey());
                        pendingCount++;
                    }
                }
                long sum = open.stream().mapToLong(DeviceBuffer::size).sum() + pendingBytes;
                assertEquals(sum, s.allocatedBytes(), "step " + step);
                assertEquals(pendingCount, s.pendingBuffers(), "step " + step);
                assertEquals(open.size(), s.liveBuffers(), "step " + step);
                assertEquals(dev.used, s.reservedBytes(), "step " + step);
                assertTrue(s.reservedBytes() <= 96 * MiB, "step " + step);
                assertEquals(sum, s.byTag().values().stream().mapToLong(MemoryStats.TagStats::currentBytes).sum(), "step " + step);
            }
            open.forEach(DeviceBuffer::close);
        }
        assertEquals(0, dev.used);
    }

    @Test
    void poisonModeFillsEveryBufferHandedOutFreshOrCached() {
        FakeAllocator dev = new FakeAllocator(64 * MiB);
        try (DevicePool pool = DevicePool.poisoning(dev, "t", true)) {
            assertTrue(pool.isPoisoning());
            pool.allocate(1000, "x").close();
            assertEquals(1, dev.poisonCalls);
            pool.allocate(1000, "x").close(); // from the cache: poisoned again
            assertEquals(2, dev.poisonCalls);
            assertEquals(1, pool.stats().cacheHits());
            // A failed fill hands nothing out and loses nothing: the block stays cached, counted as reserved.
            dev.failPoison = true;
            assertThrows(IllegalStateException.class, () -> pool.allocate(1000, "x"));
            MemoryStats s = pool.stats();
            assertEquals(0, s.allocatedBytes());
            assertEquals(512 * 2, s.reservedBytes());
            assertEquals(1, s.cacheHits(), "a failed allocation is no cache hit");
            assertEquals(2, s.allocations());
            dev.failPoison = false;
            pool.allocate(1000, "x").close();
            assertEquals(2, pool.stats().cacheHits());
        }
        try (DevicePool plain = DevicePool.poisoning(dev, "u", false)) {
            int before = dev.poisonCalls;
            plain.allocate(1000, "x").close();
            assertEquals(before, dev.poisonCalls);
            assertFalse(plain.isPoisoning());
        }
        // Tests run with the property set (pom.xml), so every pool in them poisons.
        try (DevicePool byProperty = DevicePool.create(dev, "p", false)) {
            assertEquals(Boolean.getBoolean(DevicePool.POISON_PROPERTY), byProperty.isPoisoning());
        }
    }
}
