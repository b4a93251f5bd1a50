package io.headroute.analysis;

import io.headroute.bench.AttentionBenchmark;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Head importance by ablation, and greedy pruning plans made from it.
 *
 * <p>The importance of head h of a layer is the relative change of the layer's output when h alone is
 * removed: ‖y − y₋ₕ‖ / ‖y‖ (Frobenius), with y the output with every head active. The layer is given as
 * a function of its active-head mask, so the same code measures a CPU block, a GPU block or a test
 * double.
 */
public final class HeadImportance {
    private HeadImportance() {}

    /** A layer (or model) output as a function of which heads are active. */
    @FunctionalInterface
    public interface MaskedForward {
        /**
         * {@return the output with the heads {@code active[h]} computed, flattened; the same length for every mask}
         *
         * @param active one entry per head
         */
        float[] forward(boolean[] active);
    }

    /**
     * Importance of each of {@code heads} heads by removing one at a time.
     *
     * @param layer the layer as a function of its head mask; called heads + 1 times
     * @param heads the number of heads, positive
     * @return per head, ‖y − y₋ₕ‖ / ‖y‖
     * @throws IllegalArgumentException when {@code heads} is not positive
     */
    public static double[] ablation(MaskedForward layer, int heads) {
        if (heads <= 0) {
            throw new IllegalArgumentException("ablation: heads must be positive, got " + heads);
        }
        boolean[] all = new boolean[heads];
        Arrays.fill(all, true);
        float[] y = layer.forward(all);
        double[] importance = new double[heads];
        for (int h = 0; h < heads; h++) {
            boolean[] mask = all.clone();
            mask[h] = false;
            importance[h] = relativeChange(y, layer.forward(mask));
        }
        return importance;
    }

    /**
     * {@return ‖other − reference‖ / ‖reference‖ in float64}; 0 for two zero outputs, +∞ when only the reference is
     * zero.
     *
     * @param reference the unchanged output
     * @param other     the changed output, as long as {@code reference}
     */
    public static double relativeChange(float[] reference, float[] other) {
        return AttentionBenchmark.relativeL2(other, reference);
    }

    /**
     * The heads to remove at a budget: the round(fraction · total) least important (layer, head) pairs,
     * ties by lower layer then lower head, never the last active head of a layer.
     *
     * @param importance layers × heads
     * @param fraction   share of all heads to remove, in [0, 1)
     * @return removed[layer][head]
     */
    public static boolean[][] greedyPlan(double[][] importance, double fraction) {
        if (!(fraction >= 0 && fraction < 1)) {
            throw new IllegalArgumentException("pruning fraction must be in [0, 1), got " + fraction);
        }
        int layers = importance.length;
        record Entry(int layer, int head, double importance) {}
        List<Entry> all = new ArrayList<>();
        boolean[][] removed = new boolean[layers][];
        int[] left = new int[layers];
        for (int l = 0; l < layers; l++) {
            removed[l] = new boolean[importance[l].length];
            left[l] = importance[l].length;
            for (int h = 0; h < importance[l].length; h++) {
                if (Double.isNaN(importance[l][h])) {
                    throw new IllegalArgumentException("importance of layer " + l + " head " + h + " is NaN");
                }
                all.add(new Entry(l, h, importance[l][h]));
            }
        }
        all.sort(Comparator.comparingDouble(Entry::importance).thenComparingInt(Entry::layer).thenComparingInt(Entry::head));
        long target = Math.round(fraction * all.size());
        long done = 0;
        for (Entry e : all) {
            if (done == target) {
                break;
            }
            if (left[e.layer()] > 1) {
                removed[e.layer()][e.head()] = true;
                left[e.layer()]--;
                done++;
            }
        }
        return removed;
    }
}
