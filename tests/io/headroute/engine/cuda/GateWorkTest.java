package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.cuda.CudaAttentionEngine.GateMode;
import io.headroute.engine.cuda.CudaAttentionEngine.GatePlan;
import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The host mirror of gate_work.cu (work lists, compaction) and the engine's launch plan under a gate,
 * against brute force on random gates: the lists the kernels build and the tile counts the engine
 * reports. Runs without a GPU.
 */
class GateWorkTest {
    /** Random gate (B, L, H): each (b, h) has its own share of zeros (0 … 1), some tiles wholly zero. */
    static float[] gate(Random r, int b, int l, int h) {
        float[] g = new float[b * l * h];
        for (int bb = 0; bb < b; bb++) {
            for (int hh = 0; hh < h; hh++) {
                double zero = r.nextDouble();
                for (int i = 0; i < l; i++) {
                    g[(bb * l + i) * h + hh] = r.nextDouble() < zero ? 0f : 0.1f + r.nextFloat();
                }
            }
        }
        for (int i = 0; i < Math.min(70, l); i++) {
            g[i * h] = 0f;
        }
        return g;
    }

    @ParameterizedTest(name = "B={0} L={1} H={2} Br={3}")
    @CsvSource({"1, 77, 4, 64", "2, 300, 3, 32", "3, 1, 2, 64", "1, 1000, 5, 64", "2, 129, 1, 32"})
    void workListsMatchBruteForce(int b, int l, int h, int br) {
        Random r = new Random(17L * l + h + br);
        for (int trial = 0; trial < 5; trial++) {
            float[] g = gate(r, b, l, h);
            List<Integer> want = new ArrayList<>();
            List<Integer> wantRows = new ArrayList<>();
            int[] wantCounts = new int[b * h];
            for (int bb = 0; bb < b; bb++) {
                for (int hh = 0; hh < h; hh++) {
                    for (int t = 0; t * br < l; t++) {
                        boolean any = false;
                        for (int i = t * br; i < Math.min(l, t * br + br); i++) {
                            any |= g[(bb * l + i) * h + hh] != 0f;
                        }
                        if (any) {
                            want.addAll(List.of(bb, hh, t));
                        }
                    }
                    for (int i = 0; i < l; i++) {
                        if (g[(bb * l + i) * h + hh] != 0f) {
                            wantRows.add(i);
                            wantCounts[bb * h + hh]++;
                        }
                    }
                }
            }
            assertArrayEquals(want.stream().mapToInt(Integer::intValue).toArray(), GateWork.activeTiles(g, b, l, h, br),
                    "active tiles, trial " + trial);
            GateWork.Compaction c = GateWork.compact(g, b, l, h);
            assertArrayEquals(wantCounts, c.counts(), "row counts, trial " + trial);
            List<Integer> got = new ArrayList<>();
            for (int bh = 0; bh < b * h; bh++) {
                for (int x = 0; x < c.counts()[bh]; x++) {
                    got.add(c.rows()[bh * l + x]);
                }
            }
            assertEquals(wantRows, got, "compacted rows in order, trial " + trial);
            assertEquals(wantRows.size(), c.activeRows());
            int[] ct = GateWork.compactedTiles(c.counts(), b, h, br);
            List<Integer> wantCt = new ArrayList<>();
            for (int bh = 0; bh < b * h; bh++) {
                for (int t = 0; t * br < wantCounts[bh]; t++) {
                    wantCt.addAll(List.of(bh / h, bh % h, t));
                }
            }
            assertArrayEquals(wantCt.stream().mapToInt(Integer::intValue).toArray(), ct, "compacted tiles, trial " + trial);
        }
    }

    @Test
    void flashRoutesPatternsTheDenseKernelsCannotTakeToTheSparseKernels() {
        io.headroute.engine.Algorithm flash = io.headroute.engine.Algorithm.FLASH;
        io.headroute.engine.Algorithm sparse = io.headroute.engine.Algorithm.SPARSE;
        for (String spec : new String[] {"dense", "causal"}) {
            Pattern p = Patterns.parse(spec);
            assertEquals(flash, CudaAttentionEngine.route(flash, p), spec);
            assertEquals(flash, CudaAttentionEngine.route(io.headroute.engine.Algorithm.AUTO, p.withCausal()), spec);
            assertEquals(sparse, CudaAttentionEngine.route(sparse, p), spec + " with --algo sparse");
        }
        for (String spec : new String[] {"window:5", "longformer:4:2", "bigbird:64:1:1:1:1"}) {
            Pattern p = Patterns.parse(spec);
            assertEquals(sparse, CudaAttentionEngine.route(flash, p), spec);
            assertEquals(sparse, CudaAttentionEngine.route(io.headroute.engine.Algorithm.AUTO, p.withCausal()), spec);
            assertEquals(io.headroute.engine.Algorithm.MATERIALIZED,
                    CudaAttentionEngine.route(io.headroute.engine.Algorithm.MATERIALIZED, p), spec);
        }
    }

    @Test
    void compactionPaysBelowThreeQuarters() {
        assertTrue(GateWork.compactionPays(3, 4));
        assertTrue(!GateWork.compactionPays(4, 4));
        assertTrue(GateWork.compactionPays(0, 0));
        assertTrue(!GateWork.compactionPays(76, 100));
    }

    static Tensor gaussian(Random r, int... shape) {
        long[] s = new long[shape.length];
        int n = 1;
        for (int i = 0; i < shape.length; i++) {
            s[i] = shape[i];
            n *= shape[i];
        }
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return Tensor.ofFloats(x, s);
    }

    /** Key tiles with any pair allowed for the given rows (positions p = i + S − L). */
    static int keyTilesWithAPair(Pattern p, int h, int[] rows, int qLen, int kvLen, int bc) {
        int n = 0;
        for (int kt = 0; kt * bc < kvLen; kt++) {
            boolean any = false;
            for (int i : rows) {
                for (int j = kt * bc; j < Math.min(kvLen, kt * bc + bc) && !any; j++) {
                    any = p.allows(h, i + kvLen - qLen, j, kvLen);
                }
            }
            n += any ? 1 : 0;
        }
        return n;
    }

    @ParameterizedTest(name = "{0} {1} gate zeros={2}")
    @CsvSource({"causal, bf16, 0.9", "causal, f32, 0.9", "dense, bf16, 0.2", "causal, bf16, 0.0", "window:40, bf16, 0.8",
            "longformer:9:3+causal, f32, 0.5", "dense, f32, -1", "bigbird:64:1:1:2:7+causal, bf16, 0.7", "window:40, f32, 0.6",
            "window:40, bf16, 0.1"})
    void launchPlanCountsWhatTheKernelsExecute(String spec, String dtype, double zeros) {
        int b = 2;
        int h = 3;
        int l = 230;
        int s = 300;
        Random r = new Random(spec.hashCode() + dtype.hashCode());
        Tensor q = gaussian(r, b, h, l, 64);
        Tensor k = gaussian(r, b, h, s, 64);
        Pattern pattern = spec.endsWith("+causal") ? Patterns.parse(spec.substring(0, spec.length() - 7)).withCausal()
                : Patterns.parse(spec);
        float[] g = null;
        AttentionRequest.Builder rb = AttentionRequest.builder(q, k, k).pattern(pattern).dtype(DType.parse(dtype));
        if (zeros >= 0) {
            g = new float[b * l * h];
            for (int i = 0; i < g.length; i++) {
                g[i] = r.nextDouble() < zeros ? 0f : 1f;
            }
            for (int i = 0; i < 100; i++) {
                g[i * h + 1] = 0f; // whole tiles of head 1 gated
            }
            rb.gate(Tensor.ofFloats(g, b, l, h));
        }
        AttentionRequest req = rb.build();
        AttentionShape sh = req.shape();
        boolean sparse = !FlashPlan.flashSupports(req.pattern());
        FlashPlan plan = sparse ? FlashPlan.sparse(sh, req.dtype()) : FlashPlan.of(sh, req.dtype(), req.pattern());
        SparseTiles st = sparse ? SparseTiles.build(req.pattern(), BlockLayout.build(req.pattern(), h, l, s, 64), l, s,
                plan.blockRows(), plan.tileKeys()) : null;
        GatePlan gp = GatePlan.of(req, plan, st);
        int br = plan.blockRows();
        int bc = plan.tileKeys();

        // Brute force: the executed tiles of each mode and the key tiles with any allowed pair for their rows.
        long activeTiles = 0;
        long activeVisited = 0;
        long compactTiles = 0;
        long compactVisited = 0;
        for (int bb = 0; bb < b; bb++) {
            for (int hh = 0; hh < h; hh++) {
                List<Integer> live = new ArrayList<>();
                for (int t = 0; t * br < l; t++) {
                    List<Integer> rows = new ArrayList<>();
                    boolean any = false;
                    for (int i = t * br; i < Math.min(l, t * br + br); i++) {
                        rows.add(i);
                        boolean on = g == null || g[(bb * l + i) * h + hh] != 0f;
                        any |= on;
                        if (on) {
                            live.add(i);
                        }
                    }
                    if (any) {
                        activeTiles++;
                        activeVisited += keyTilesWithAPair(req.pattern(), hh, rows.stream().mapToInt(Integer::intValue).toArray(),
                                l, s, bc);
                    }
                }
                for (int x = 0; x < live.size(); x += br) {
                    compactTiles++;
                    compactVisited += keyTilesWithAPair(req.pattern(), hh,
                            live.subList(x, Math.min(live.size(), x + br)).stream().mapToInt(Integer::intValue).toArray(), l, s, bc);
                }
            }
        }
        long all = (long) b * h * ((l + br - 1) / br);
        if (zeros >= 0.6) {
            assertEquals(GateMode.COMPACT, gp.mode(), spec + ": a gate this sparse is compacted");
        }
        if (g == null) {
            assertEquals(GateMode.WHOLE_GRID, gp.mode());
            assertEquals(all, gp.tiles());
            assertEquals(activeVisited, gp.keyTilesVisited(), "key tiles visited without a gate");
        } else if (compactTiles < activeTiles && compactVisited * 4 <= activeVisited * 3) {
            assertEquals(GateMode.COMPACT, gp.mode(), spec);
            assertEquals(compactTiles, gp.tiles(), "compacted tiles");
            assertEquals(compactVisited, gp.keyTilesVisited(), "key tiles visited by compacted tiles");
            assertTrue(gp.tiles() < activeTiles, "compaction runs fewer tiles");
            assertTrue(gp.keyTilesVisited() * 4 <= activeVisited * 3, "and visits at most 3/4 of the key tiles");
        } else {
            assertEquals(activeTiles == all ? GateMode.WHOLE_GRID : GateMode.TILES, gp.mode(), spec);
            assertEquals(activeTiles, gp.tiles(), "active tiles");
            assertEquals(activeVisited, gp.keyTilesVisited(), "key tiles visited by active tiles");
        }
    }

    /**
     * A gate keeping the first 48 of every 64 rows: compaction launches 3/4 of the query tiles (the old
     * rule on query tiles took it), but each compacted tile spans two original tiles, so under BigBird's
     * random blocks (different per query block) it visits the union of two tiles' key lists: more key
     * tiles than the tile list in all.
     */
    @Test
    void compactionThatVisitsMoreKeyTilesLoses() {
        int b = 1;
        int h = 2;
        int l = 1024;
        Random r = new Random(3);
        Tensor q = gaussian(r, b, h, l, 64);
        Pattern p = Patterns.parse("bigbird:64:0:0:4:7");
        float[] g = new float[b * l * h];
        for (int i = 0; i < l; i++) {
            for (int hh = 0; hh < h; hh++) {
                g[i * h + hh] = i % 64 < 48 ? 1f : 0f;
            }
        }
        AttentionRequest req = AttentionRequest.builder(q, q, q).pattern(p).dtype(DType.BF16).gate(Tensor.ofFloats(g, b, l, h))
                .build();
        FlashPlan plan = FlashPlan.sparse(req.shape(), DType.BF16);
        SparseTiles st = SparseTiles.build(p, BlockLayout.build(p, h, l, l, 64), l, l, plan.blockRows(), plan.tileKeys());
        GatePlan gp = GatePlan.of(req, plan, st);
        int[] active = GateWork.activeTiles(g, b, l, h, 64);
        GateWork.Compaction c = GateWork.compact(g, b, l, h);
        int[] ct = GateWork.compactedTiles(c.counts(), b, h, 64);
        assertEquals(2 * 16, active.length / 3);
        assertEquals(2 * 12, ct.length / 3);
        assertTrue((ct.length / 3) * 4 <= (active.length / 3) * 3, "on query tiles alone compaction would pay");
        long activeVisited = 0;
        for (int e = 0; e < active.length; e += 3) {
            int[] rows = new int[64];
            for (int i = 0; i < 64; i++) {
                rows[i] = active[e + 2] * 64 + i;
            }
            activeVisited += keyTilesWithAPair(p, active[e + 1], rows, l, l, 64);
        }
        long compactVisited = 0;
        for (int e = 0; e < ct.length; e += 3) {
            int bh = ct[e] * h + ct[e + 1];
            int[] rows = Arrays.copyOfRange(c.rows(), bh * l + ct[e + 2] * 64, bh * l + Math.min(c.counts()[bh], ct[e + 2] * 64 + 64));
            compactVisited += keyTilesWithAPair(p, ct[e + 1], rows, l, l, 64);
        }
        assertTrue(compactVisited * 4 > activeVisited * 3, "compaction visits " + compactVisited + " key tiles, the tile list "
                + activeVisited);
        assertEquals(GateMode.WHOLE_GRID, gp.mode(), "block granularity runs less work (here every tile has a live row)");
        assertEquals(active.length / 3, gp.tiles());
        assertEquals(activeVisited, gp.keyTilesVisited());
        assertTrue(GateWork.compactionPays(3, 4) && !GateWork.compactionPays(compactVisited, activeVisited));
    }
}
