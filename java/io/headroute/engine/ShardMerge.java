package io.headroute.engine;

import io.headroute.tensor.Tensor;
import java.util.Arrays;
import java.util.List;

/**
 * Merges attention computed over separate key/value shards into attention over all of them, exactly:
 * with lse_s the log-sum-exp of shard s, lse = ln Σ_s e^(lse_s) and o = Σ_s e^(lse_s − lse) · o_s.
 * This is how split-KV decoding and ring attention combine partial results. Rows that are empty in
 * every shard stay zero with lse −∞. Works on any backend's outputs (float32 o and lse).
 */
public final class ShardMerge {
    private ShardMerge() {}

    /**
     * One shard's output: o (B, H, L, D) and lse (B, H, L). An {@link AttentionResult} has an lse only when its
     * request asked for one ({@link AttentionRequest.Builder#wantLse}); without it the shard cannot be merged.
     *
     * @param o   the shard's output (B, H, L, D), any floating dtype (read as float32)
     * @param lse the shard's lse (B, H, L): natural-log sum of exp of each row's scaled scores, −∞ for an empty row
     */
    public record Part(Tensor o, Tensor lse) {
        /**
         * Refuses a missing o or lse, in one line.
         *
         * @param o   the shard's output; not null
         * @param lse the shard's lse; not null
         * @throws IllegalArgumentException when o or lse is null
         */
        public Part {
            if (o == null || lse == null) {
                throw new IllegalArgumentException("a shard needs o and lse, got "
                        + (o == null ? "no o" : "o " + o.shapeString()) + " and "
                        + (lse == null ? "no lse (request it with wantLse(true))" : "lse " + lse.shapeString()));
            }
        }
    }

    /**
     * The merged (o, lse), float32.
     *
     * @param parts the shards, at least one, all with the same o and lse shapes (o (B, H, L, D), lse (B, H, L))
     * @return o (B, H, L, D) and lse (B, H, L) over all the shards' keys, float32
     * @throws IllegalArgumentException when {@code parts} is empty
     * @throws ShapeException           when the shapes are not o (B, H, L, D) and lse (B, H, L), or differ between
     *                                  shards
     */
    public static Part merge(List<Part> parts) {
        if (parts.isEmpty()) {
            throw new IllegalArgumentException("nothing to merge");
        }
        long[] oShape = parts.get(0).o().shape();
        long[] lShape = parts.get(0).lse().shape();
        if (oShape.length != 4 || lShape.length != 3 || !Arrays.equals(Arrays.copyOf(oShape, 3), lShape)) {
            throw new ShapeException("shard outputs must be o (B, H, L, D) and lse (B, H, L), got o "
                    + parts.get(0).o().shapeString() + " and lse " + parts.get(0).lse().shapeString());
        }
        int rows = Math.toIntExact(lShape[0] * lShape[1] * lShape[2]);
        int d = (int) oShape[3];
        float[][] os = new float[parts.size()][];
        float[][] ls = new float[parts.size()][];
        for (int s = 0; s < parts.size(); s++) {
            Part p = parts.get(s);
            if (!Arrays.equals(p.o().shape(), oShape) || !Arrays.equals(p.lse().shape(), lShape)) {
                throw new ShapeException("shard " + s + " has o " + p.o().shapeString() + " and lse " + p.lse().shapeString()
                        + "; shard 0 has o " + parts.get(0).o().shapeString());
            }
            os[s] = p.o().toFloatArray();
            ls[s] = p.lse().toFloatArray();
        }
        float[] o = new float[rows * d];
        float[] lse = new float[rows];
        for (int r = 0; r < rows; r++) {
            double max = Double.NEGATIVE_INFINITY;
            for (float[] l : ls) {
                max = Math.max(max, l[r]);
            }
            if (max == Double.NEGATIVE_INFINITY) {
                lse[r] = Float.NEGATIVE_INFINITY;
                continue;
            }
            double sum = 0;
            for (float[] l : ls) {
                sum += Math.exp(l[r] - max);
            }
            double total = max + Math.log(sum);
            lse[r] = (float) total;
            for (int s = 0; s < os.length; s++) {
                double w = Math.exp(ls[s][r] - total);
                if (w == 0) {
                    continue;
                }
                for (int x = 0; x < d; x++) {
                    o[r * d + x] += (float) (w * os[s][r * d + x]);
                }
            }
        }
        return new Part(Tensor.ofFloats(o, oShape), Tensor.ofFloats(lse, lShape));
    }
}
