package io.headroute.quality;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.AttentionResult;
import io.headroute.engine.AttentionShape;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;

/**
 * What a sparse pattern gives up against full attention on given inputs, on any engine.
 *
 * <p>The reference is full attention: {@code causal} when the pattern is causal ({@link Pattern.Causal} or
 * a pattern combined with {@code --causal}), {@code dense} otherwise, so that the pattern's keys are
 * always a subset of the reference's. Both runs are ungated.
 *
 * <ul>
 *   <li><b>Attention-mass recall</b> of a query row: the share of the reference softmax mass that falls
 *       on the keys the pattern keeps, Σ_{j ∈ pattern} exp(s_j − lse_ref) = exp(lse_pattern − lse_ref).
 *       It needs only the two runs' log-sum-exps, so it costs two attention runs on any backend and
 *       never an L × S buffer. A row the pattern leaves empty keeps 0. Per head: the mean over batch
 *       and rows; overall: the mean over all rows of all heads.</li>
 *   <li><b>Output relative error</b>: ‖O_pattern − O_ref‖ / ‖O_ref‖ (Frobenius), per head (over batch,
 *       rows and D) and overall.</li>
 * </ul>
 */
public final class AttentionQuality {
    private AttentionQuality() {}

    /**
     * The metrics of one comparison.
     *
     * @param recallPerHead   mean attention-mass recall of each query head
     * @param recall          mean recall over every row of every head
     * @param relErrorPerHead output relative error of each query head
     * @param relError        output relative error over the whole output
     * @param reference       the reference pattern that was run ("dense" or "causal")
     * @param algorithmUsed   the algorithm the pattern's run used (what auto chose), or null when the
     *                        report was made from given outputs ({@link #compare})
     */
    public record Report(double[] recallPerHead, double recall, double[] relErrorPerHead, double relError,
            Pattern reference, Algorithm algorithmUsed) {}

    /**
     * {@return the full-attention pattern {@code pattern} is measured against}: causal for a causal pattern, else
     * dense
     *
     * @param pattern the effective pattern
     */
    public static Pattern referenceFor(Pattern pattern) {
        return pattern instanceof Pattern.Causal || pattern instanceof Pattern.CausalOf ? new Pattern.Causal() : new Pattern.Dense();
    }

    /**
     * Runs {@code pattern} (with {@code algorithm}) and its full reference (flash) on {@code engine} and
     * compares them. The block size is {@link AttentionRequest#DEFAULT_BLOCK_SIZE}.
     *
     * @param engine    the engine that runs both
     * @param q         queries (B, H, L, D)
     * @param k         keys (B, Hkv, S, D)
     * @param v         values (B, Hkv, S, D)
     * @param pattern   the pattern measured, causal rule folded in
     * @param scale     the softmax scale, or null for 1/√D
     * @param dtype     the compute dtype
     * @param algorithm the pattern's algorithm (the reference runs flash)
     * @return recall and error, per head and overall
     * @throws IllegalArgumentException when the inputs are not finite or the scale can overflow the scores
     */
    public static Report measure(AttentionEngine engine, Tensor q, Tensor k, Tensor v, Pattern pattern, Float scale,
            DType dtype, Algorithm algorithm) {
        return measure(engine, q, k, v, pattern, scale, dtype, algorithm, AttentionRequest.DEFAULT_BLOCK_SIZE);
    }

    /**
     * As {@link #measure(AttentionEngine, Tensor, Tensor, Tensor, Pattern, Float, DType, Algorithm)}, with the sparse
     * layout's block size.
     *
     * @param engine    the engine that runs both
     * @param q         queries (B, H, L, D)
     * @param k         keys (B, Hkv, S, D)
     * @param v         values (B, Hkv, S, D)
     * @param pattern   the pattern measured, causal rule folded in
     * @param scale     the softmax scale, or null for 1/√D
     * @param dtype     the compute dtype
     * @param algorithm the pattern's algorithm
     * @param blockSize the sparse layout's block size, 64 or 128
     * @return recall and error, per head and overall, with the algorithm the pattern's run used
     * @throws IllegalArgumentException when the inputs are not finite or the scale can overflow the scores
     */
    public static Report measure(AttentionEngine engine, Tensor q, Tensor k, Tensor v, Pattern pattern, Float scale,
            DType dtype, Algorithm algorithm, int blockSize) {
        Pattern reference = referenceFor(pattern);
        // Both requests are validated before either runs.
        AttentionRequest req = AttentionRequest.builder(q, k, v).pattern(pattern).scale(scale).dtype(dtype)
                .algorithm(algorithm).blockSize(blockSize).wantLse(true).build();
        // Attention of non-finite inputs, or of overflowing scores, has no meaningful recall or error.
        req.requireFiniteInputs();
        AttentionResult ref = engine.run(AttentionRequest.builder(q, k, v).pattern(reference).scale(scale).dtype(dtype)
                .algorithm(Algorithm.FLASH).wantLse(true).build());
        AttentionResult got = engine.run(req);
        Report r = compare(req.shape(), got.o().toFloatArray(), got.lse().toFloatArray(), ref.o().toFloatArray(),
                ref.lse().toFloatArray(), reference);
        return new Report(r.recallPerHead(), r.recall(), r.relErrorPerHead(), r.relError(), reference,
                got.stats().algorithm());
    }

    /**
     * The metrics from the outputs (B, H, L, D) and log-sum-exps (B, H, L) of a pattern and its reference.
     *
     * @param shape     the sizes (B, H, L and D are read)
     * @param o         the pattern's output, B·H·L·D floats
     * @param lse       the pattern's lse, B·H·L floats (−∞ for an empty row)
     * @param oRef      the reference's output
     * @param lseRef    the reference's lse, all finite
     * @param reference the reference pattern, recorded in the report
     * @return the metrics, without an algorithm
     * @throws IllegalArgumentException when the arrays do not match the shape
     * @throws IllegalStateException    when a reference lse is not finite or a pattern lse is NaN
     */
    public static Report compare(AttentionShape shape, float[] o, float[] lse, float[] oRef, float[] lseRef, Pattern reference) {
        int b = shape.batch();
        int h = shape.heads();
        int l = shape.qLen();
        int d = shape.headDim();
        if (o.length != oRef.length || o.length != (long) b * h * l * d || lse.length != lseRef.length
                || lse.length != (long) b * h * l) {
            throw new IllegalArgumentException("quality: outputs do not match shape " + shape);
        }
        double[] recallPerHead = new double[h];
        double[] errPerHead = new double[h];
        double recallSum = 0;
        double diffAll = 0;
        double normAll = 0;
        for (int hh = 0; hh < h; hh++) {
            double recall = 0;
            double diff = 0;
            double norm = 0;
            for (int bb = 0; bb < b; bb++) {
                int row0 = (bb * h + hh) * l;
                for (int i = 0; i < l; i++) {
                    recall += rowRecall(lse[row0 + i], lseRef[row0 + i]);
                    int e0 = (row0 + i) * d;
                    for (int c = 0; c < d; c++) {
                        double x = (double) o[e0 + c] - oRef[e0 + c];
                        diff += x * x;
                        norm += (double) oRef[e0 + c] * oRef[e0 + c];
                    }
                }
            }
            recallPerHead[hh] = recall / ((double) b * l);
            errPerHead[hh] = relative(diff, norm);
            recallSum += recall;
            diffAll += diff;
            normAll += norm;
        }
        return new Report(recallPerHead, recallSum / ((double) b * h * l), errPerHead, relative(diffAll, normAll), reference, null);
    }

    private static double rowRecall(float lse, float lseRef) {
        if (!Float.isFinite(lseRef)) {
            // The full reference of a row always has keys (dense, or causal with key 0 ≤ p); a NaN or
            // infinite reference means the run itself failed.
            throw new IllegalStateException("quality: reference log-sum-exp is " + lseRef);
        }
        if (lse == Float.NEGATIVE_INFINITY) {
            return 0;
        }
        if (Float.isNaN(lse)) {
            throw new IllegalStateException("quality: pattern log-sum-exp is NaN");
        }
        // A subset's mass cannot exceed 1; rounding of the two fp32 sums may put it a hair above.
        return Math.min(1.0, Math.exp((double) lse - lseRef));
    }

    private static double relative(double diffSq, double normSq) {
        if (normSq == 0) {
            return diffSq == 0 ? 0 : Double.POSITIVE_INFINITY;
        }
        return Math.sqrt(diffSq / normSq);
    }
}
