package io.headroute.analysis;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.engine.AttentionRequest;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.Tensor;
import java.awt.image.BufferedImage;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class HeadAnalysisTest {
    private static final int L = 40;
    private static final int D = 64;
    private static final int H = 4;

    /**
     * A planted example: head 0 copies the previous token, head 1 attends the first token (a sink),
     * head 2 is head 1 duplicated (same q, k, v), head 3 attends itself. Keys are one-hot e_j, so a
     * query 80·e_t scores 10 (after 1/√64) on key t and 0 elsewhere.
     */
    private static Tensor[] planted() {
        float[] q = new float[H * L * D];
        float[] k = new float[H * L * D];
        float[] v = new float[H * L * D];
        Random rnd = new Random(5);
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < L; i++) {
                int target = switch (h) {
                    case 0 -> Math.max(0, i - 1);
                    case 1, 2 -> 0;
                    default -> i;
                };
                q[(h * L + i) * D + target] = 80f;
                k[(h * L + i) * D + i] = 1f;
            }
        }
        for (int e = 0; e < L * D; e++) {
            v[e] = (float) rnd.nextGaussian();
            v[L * D + e] = (float) rnd.nextGaussian();
            v[2 * L * D + e] = v[L * D + e];
            v[3 * L * D + e] = (float) rnd.nextGaussian();
        }
        return new Tensor[] {Tensor.ofFloats(q, 1, H, L, D), Tensor.ofFloats(k, 1, H, L, D), Tensor.ofFloats(v, 1, H, L, D)};
    }

    /**
     * Rows that no key is allowed (an empty layout row block) and rows a gate keeps from a head count nowhere: the
     * planted heads read the same on the rows that are left, and a head without rows reads 0.
     */
    @Test
    void emptyAndUngatedRowsAreLeftOut() {
        Tensor[] t = planted();
        HeadProbe.Result all = HeadProbe.probe(t[0], t[1], new Pattern.Causal(), null, 1000, 8);
        float[] ones = new float[L * H];
        Arrays.fill(ones, 1f);
        HeadProbe.Result gatedAll = HeadProbe.probe(t[0], t[1], new Pattern.Causal(), null, 1000, 8, ones);
        for (int h = 0; h < H; h++) {
            assertEquals(all.heads()[h], gatedAll.heads()[h], "a gate of ones changes nothing");
            assertEquals(L, all.heads()[h].rows());
        }
        // Head 0 keeps only the even rows; head 2 none; the others all.
        float[] gate = ones.clone();
        for (int i = 0; i < L; i++) {
            gate[i * H + 2] = 0;
            if (i % 2 == 1) {
                gate[i * H] = 0;
            }
        }
        HeadProbe.Result g = HeadProbe.probe(t[0], t[1], new Pattern.Causal(), null, 1000, 8, gate);
        assertEquals(L / 2, g.heads()[0].rows());
        assertEquals("previous-token", g.heads()[0].labels());
        assertEquals(1, g.heads()[0].localWidth());
        assertEquals(new HeadProbe.HeadStats(2, 0, 0, 0, 0, 0, 0), g.heads()[2]);
        assertEquals(all.heads()[3], g.heads()[3]);
        assertThrows(IllegalArgumentException.class, () -> HeadProbe.probe(t[0], t[1], new Pattern.Causal(), null, 1000, 8,
                new float[3]));

        // A layout (blocks of 8) whose only non-empty query block is the first: 8 rows count, and the diagonal head's
        // rows are as peaked as before (an empty row used to count as a width-0, zero-mass row).
        int blocks = L / 8;
        boolean[] bits = new boolean[H * blocks * blocks];
        for (int h = 0; h < H; h++) {
            bits[h * blocks * blocks] = true; // query block 0, key block 0
        }
        HeadProbe.Result lay = HeadProbe.probe(t[0], t[1], new Pattern.Layout(8, H, blocks, bits, "test"), null, 1000, 8);
        for (HeadProbe.HeadStats st : lay.heads()) {
            assertEquals(8, st.rows(), "head " + st.head());
        }
        assertTrue(lay.heads()[3].diagonal() > 0.99, "diagonal head on its 8 rows: " + lay.heads()[3].diagonal());
    }

    @Test
    void detectorsFindThePlantedHeads() {
        Tensor[] t = planted();
        HeadProbe.Result r = HeadProbe.probe(t[0], t[1], new Pattern.Causal(), null, 1000, 8);
        assertEquals(L, r.probedRows());
        HeadProbe.HeadStats prev = r.heads()[0];
        HeadProbe.HeadStats sink = r.heads()[1];
        HeadProbe.HeadStats self = r.heads()[3];
        assertEquals("previous-token", prev.labels());
        assertTrue(prev.prevToken() > 0.95, "previous-token mass " + prev.prevToken());
        assertEquals(1, prev.localWidth());
        assertTrue(sink.firstToken() > 0.95, "first-token mass " + sink.firstToken());
        assertTrue(sink.labels().contains("first-token"));
        assertTrue(self.diagonal() > 0.99);
        assertEquals("diagonal", self.labels());
        assertEquals(0, self.localWidth());
        // Peaked heads have low entropy; the sink's rows are a single peak too.
        assertTrue(self.entropy() < 0.05 && prev.entropy() < 0.1, self.entropy() + " " + prev.entropy());
        // Redundancy: the duplicate's map equals its original's, and differs from the others'.
        assertEquals(1.0, r.mapSimilarity(1, 2), 1e-12);
        assertTrue(r.mapSimilarity(0, 1) < 0.5, "previous-token vs sink maps: " + r.mapSimilarity(0, 1));
        // At full resolution the previous-token and diagonal maps are disjoint but for row 0 (8 × 8 bins
        // of 5 rows put both near the diagonal).
        HeadProbe.Result fine = HeadProbe.probe(t[0], t[1], new Pattern.Causal(), null, 1000, 1000);
        assertEquals(L, fine.maps()[0].length);
        assertTrue(fine.mapSimilarity(0, 3) < 0.1, "previous-token vs diagonal: " + fine.mapSimilarity(0, 3));
        // Each map row that holds probed rows sums to one.
        for (double[] row : r.maps()[0]) {
            assertEquals(1.0, Arrays.stream(row).sum(), 1e-9);
        }

        try (CpuAttentionEngine engine = new CpuAttentionEngine(2)) {
            float[] o = engine.run(AttentionRequest.builder(t[0], t[1], t[2]).causal(true).build()).o().toFloatArray();
            double[][] sim = Similarity.headOutputs(o, 1, H, L, D);
            assertEquals(1.0, sim[1][2], 1e-6);
            assertTrue(Math.abs(sim[0][3]) < 0.5, "unrelated heads: " + sim[0][3]);
            assertEquals(1.0, sim[3][3], 1e-12);
        }
    }

    @Test
    void sampledRowsAreEvenAndDistinct() {
        assertArrayEquals(new int[] {0, 1, 2}, HeadProbe.sampleRows(3, 10));
        assertArrayEquals(new int[] {0, 25, 50, 75}, HeadProbe.sampleRows(100, 4));
    }

    @Test
    void localWidthGrowsSymmetrically() {
        double[] p = {0.05, 0.05, 0.4, 0.1, 0.4};
        assertEquals(2, HeadProbe.localWidth(p, 2, 5)); // w = 0: 0.4, w = 1: 0.55, w = 2: 1.0
        assertEquals(0, HeadProbe.localWidth(new double[] {0, 1, 0}, 1, 3));
        assertEquals(4, HeadProbe.localWidth(new double[] {0.5, 0, 0, 0, 0.5}, 4, 5));
    }

    @Test
    void ablationMeasuresEachHeadsShare() {
        // y = Σ_h w_h · e (a layer whose heads add fixed vectors): removing h changes y by |w_h| / |Σ w|.
        double[] w = {1, 2, 0, 5};
        HeadImportance.MaskedForward layer = active -> {
            float[] y = new float[3];
            for (int h = 0; h < w.length; h++) {
                if (active[h]) {
                    for (int c = 0; c < 3; c++) {
                        y[c] += (float) w[h];
                    }
                }
            }
            return y;
        };
        double[] imp = HeadImportance.ablation(layer, 4);
        assertArrayEquals(new double[] {1 / 8.0, 2 / 8.0, 0, 5 / 8.0}, imp, 1e-7);
    }

    @Test
    void greedyPlanRemovesTheLeastImportantAndKeepsOneHeadPerLayer() {
        double[][] imp = {{0.3, 0.01, 0.2}, {0.001, 0.002, 0.003}};
        boolean[][] r = HeadImportance.greedyPlan(imp, 0.5); // 3 of 6
        assertArrayEquals(new boolean[] {false, true, false}, r[0]);
        assertArrayEquals(new boolean[] {true, true, false}, r[1]);
        boolean[][] most = HeadImportance.greedyPlan(imp, 0.99); // 6 wanted, but each layer keeps a head
        assertEquals(1, count(most[0], false));
        assertEquals(1, count(most[1], false));
        assertFalse(most[0][0]); // layer 0 keeps its most important head
        assertThrows(IllegalArgumentException.class, () -> HeadImportance.greedyPlan(imp, 1.0));
        assertThrows(IllegalArgumentException.class, () -> HeadImportance.greedyPlan(new double[][] {{Double.NaN}}, 0.1));
        assertEquals(0.0, HeadImportance.relativeChange(new float[2], new float[2]));
    }

    private static int count(boolean[] a, boolean v) {
        int n = 0;
        for (boolean x : a) {
            n += x == v ? 1 : 0;
        }
        return n;
    }

    @Test
    void heatmapsDecodeAsImagesWithTheScaleEnds(@TempDir Path dir) throws Exception {
        Path png = dir.resolve("map.png");
        Heatmaps.write(new double[][] {{0, 1, 2}, {3, 4, 5}}, 4, png);
        BufferedImage img = ImageIO.read(png.toFile());
        assertEquals(12, img.getWidth());
        assertEquals(8, img.getHeight());
        assertEquals(0x440154, img.getRGB(0, 0) & 0xFFFFFF);
        assertEquals(0xFDE725, img.getRGB(11, 7) & 0xFFFFFF);
        assertThrows(IllegalArgumentException.class, () -> Heatmaps.render(new double[][] {{Double.NaN}}, 2));
        assertThrows(IllegalArgumentException.class, () -> Heatmaps.render(new double[][] {{1, 2}, {3}}, 2));
    }
}
