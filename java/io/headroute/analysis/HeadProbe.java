package io.headroute.analysis;

import io.headroute.pattern.KeyRanges;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.Tensor;
import java.util.Arrays;
import java.util.stream.IntStream;

/**
 * What each head's attention looks like, measured on given queries and keys: the pattern detectors of
 * head analysis and a downsampled attention map per head, computed row by row (one row of S
 * probabilities at a time, never an L × S matrix). For long sequences an evenly spaced sample of query
 * rows is probed; the detectors are means over the probed rows of every batch entry.
 *
 * <p>Per probed row i at position p = i + (S − L), with P the row's softmax over the keys the pattern
 * allows:
 * <ul>
 *   <li>previous-token mass P[p − 1] (rows with p = 0 contribute 0), first-token (attention-sink) mass
 *       P[0], diagonal mass P[p];</li>
 *   <li>entropy −Σ P log P in nats;</li>
 *   <li>local width: the smallest w with Σ_{|p−j| ≤ w} P[j] ≥ {@value #LOCAL_MASS}; the head's value is
 *       the median over probed rows (the upper one of an even count).</li>
 * </ul>
 * A probed row counts only where the head attends: rows with no allowed key (an empty row of a layout has no
 * softmax) and, given a gate, rows whose gate for the head is 0 (a routed head does not compute them) are
 * left out of every mean, the median and the maps; {@link HeadStats#rows} says how many counted.
 */
public final class HeadProbe {
    /** Share of a row's mass that its local window must hold. */
    public static final double LOCAL_MASS = 0.9;
    /** A head whose mean mass on one detector's target is at least this carries that label. */
    public static final double LABEL_THRESHOLD = 0.5;

    private HeadProbe() {}

    /**
     * One head's detectors.
     *
     * @param head        query head
     * @param prevToken   mean attention mass on the previous token
     * @param firstToken  mean mass on key 0 (attention sink)
     * @param diagonal    mean mass on the query's own position
     * @param entropy     mean row entropy, nats
     * @param localWidth  median over rows of the smallest window holding {@value #LOCAL_MASS} of the mass
     * @param rows        probed rows that counted (over all batch entries); 0 leaves every detector 0
     */
    public record HeadStats(int head, double prevToken, double firstToken, double diagonal, double entropy, int localWidth,
            int rows) {
        /**
         * {@return the detectors this head trips, comma-separated in that order: "previous-token", "first-token",
         * "diagonal"; empty for none}
         */
        public String labels() {
            StringBuilder sb = new StringBuilder();
            if (prevToken >= LABEL_THRESHOLD) {
                sb.append("previous-token");
            }
            if (firstToken >= LABEL_THRESHOLD) {
                sb.append(sb.isEmpty() ? "" : ",").append("first-token");
            }
            if (diagonal >= LABEL_THRESHOLD) {
                sb.append(sb.isEmpty() ? "" : ",").append("diagonal");
            }
            return sb.toString();
        }
    }

    /**
     * Probe results: detectors per head and, per head, a mapSize × mapSize attention map whose cell
     * (r, c) is the mean over the probed rows falling in row bin r of the mass they put in key bin c
     * (so each map row sums to 1 where it has probed rows).
     *
     * @param heads      per head, its detectors
     * @param maps       per head, its side × side map, side = min(mapSize, L, S)
     * @param probedRows the query rows sampled per (batch, head), before rows that did not count were left out
     */
    public record Result(HeadStats[] heads, double[][][] maps, int probedRows) {
        /**
         * {@return the cosine similarity of two heads' attention maps}, 0 when either map is all zeros
         *
         * @param a one head
         * @param b another head
         */
        public double mapSimilarity(int a, int b) {
            return Similarity.cosine(flatten(maps[a]), flatten(maps[b]));
        }

        private static double[] flatten(double[][] m) {
            return Arrays.stream(m).flatMapToDouble(Arrays::stream).toArray();
        }
    }

    /**
     * Probes every head of q (B, H, L, D) against k (B, Hkv, S, D) under {@code pattern}.
     *
     * @param q        post-RoPE queries (B, H, L, D)
     * @param k        post-RoPE keys (B, Hkv, S, D), H divisible by Hkv, L ≤ S
     * @param pattern  the effective pattern (causal folded in)
     * @param scale    softmax scale (null: 1/√D)
     * @param maxRows  query rows probed per (batch, head): all when L ≤ maxRows, else evenly spaced
     * @param mapSize  side of the downsampled maps (at most min(L, S))
     * @return the detectors and maps per head
     * @throws IllegalArgumentException for shapes that do not fit, or a non-positive maxRows or mapSize
     */
    public static Result probe(Tensor q, Tensor k, Pattern pattern, Float scale, int maxRows, int mapSize) {
        return probe(q, k, pattern, scale, maxRows, mapSize, null);
    }

    /**
     * As {@link #probe(Tensor, Tensor, Pattern, Float, int, int)}, leaving out the rows {@code gate} (B, L, H, as
     * floats; null: none) does not send to a head.
     *
     * @param q       post-RoPE queries (B, H, L, D)
     * @param k       post-RoPE keys (B, Hkv, S, D)
     * @param pattern the effective pattern
     * @param scale   softmax scale (null: 1/√D)
     * @param maxRows query rows probed per (batch, head)
     * @param mapSize side of the downsampled maps
     * @param gate    B·L·H gate values, row-major (B, L, H), or null
     * @return the detectors and maps per head
     * @throws IllegalArgumentException for shapes that do not fit, or a gate of the wrong length
     */
    public static Result probe(Tensor q, Tensor k, Pattern pattern, Float scale, int maxRows, int mapSize, float[] gate) {
        if (q.rank() != 4 || k.rank() != 4 || q.dim(0) != k.dim(0) || q.dim(3) != k.dim(3) || q.dim(1) % k.dim(1) != 0
                || q.dim(2) > k.dim(2)) {
            throw new IllegalArgumentException("probe: q " + q.shapeString() + " and k " + k.shapeString()
                    + " are not (B, H, L, D) and (B, Hkv, S, D) with H divisible by Hkv and L <= S");
        }
        if (maxRows <= 0 || mapSize <= 0) {
            throw new IllegalArgumentException("probe: maxRows and mapSize must be positive");
        }
        int b = (int) q.dim(0);
        int h = (int) q.dim(1);
        int l = (int) q.dim(2);
        int d = (int) q.dim(3);
        int hkv = (int) k.dim(1);
        int s = (int) k.dim(2);
        pattern.check(h, l, s);
        if (gate != null && gate.length != (long) b * l * h) {
            throw new IllegalArgumentException("probe: a gate of " + gate.length + " values is not (B, L, H) = (" + b + ", " + l
                    + ", " + h + ")");
        }
        int side = Math.min(mapSize, Math.min(l, s));
        float sc = scale == null ? (float) (1 / Math.sqrt(d)) : scale;
        float[] qf = q.toFloatArray();
        float[] kf = k.toFloatArray();
        int[] rows = sampleRows(l, maxRows);
        HeadStats[] stats = new HeadStats[h];
        double[][][] maps = new double[h][][];
        IntStream.range(0, h).parallel().forEach(hh -> {
            double[][] map = new double[side][side];
            long[] binRows = new long[side];
            double prev = 0;
            double first = 0;
            double diag = 0;
            double entropy = 0;
            int[] widths = new int[b * rows.length];
            int nw = 0;
            double[] p = new double[s];
            KeyRanges ranges = new KeyRanges();
            int kvh = hh / (h / hkv);
            for (int bb = 0; bb < b; bb++) {
                for (int i : rows) {
                    int pos = i + (s - l);
                    if (gate != null && gate[(bb * l + i) * h + hh] == 0) {
                        continue;
                    }
                    pattern.allowedKeys(hh, pos, s, ranges);
                    if (ranges.size() == 0) {
                        continue;
                    }
                    Arrays.fill(p, 0);
                    int qo = ((bb * h + hh) * l + i) * d;
                    double max = Double.NEGATIVE_INFINITY;
                    for (int r = 0; r < ranges.size(); r++) {
                        for (int j = ranges.start(r); j < ranges.end(r); j++) {
                            int ko = ((bb * hkv + kvh) * s + j) * d;
                            double dot = 0;
                            for (int c = 0; c < d; c++) {
                                dot += (double) qf[qo + c] * kf[ko + c];
                            }
                            p[j] = dot * sc;
                            max = Math.max(max, p[j]);
                        }
                    }
                    double sum = 0;
                    for (int r = 0; r < ranges.size(); r++) {
                        for (int j = ranges.start(r); j < ranges.end(r); j++) {
                            p[j] = Math.exp(p[j] - max);
                            sum += p[j];
                        }
                    }
                    double ent = 0;
                    int rowBin = (int) ((long) i * side / l);
                    binRows[rowBin]++;
                    for (int r = 0; r < ranges.size(); r++) {
                        for (int j = ranges.start(r); j < ranges.end(r); j++) {
                            p[j] /= sum;
                            if (p[j] > 0) {
                                ent -= p[j] * Math.log(p[j]);
                            }
                            map[rowBin][(int) ((long) j * side / s)] += p[j];
                        }
                    }
                    entropy += ent;
                    prev += pos > 0 ? p[pos - 1] : 0;
                    first += p[0];
                    diag += pos < s ? p[pos] : 0;
                    widths[nw++] = localWidth(p, pos, s);
                }
            }
            double n = Math.max(1, nw); // every counted row recorded a width
            for (int r = 0; r < side; r++) {
                for (int c = 0; c < side && binRows[r] > 0; c++) {
                    map[r][c] /= binRows[r];
                }
            }
            Arrays.sort(widths, 0, nw);
            stats[hh] = new HeadStats(hh, prev / n, first / n, diag / n, entropy / n, nw == 0 ? 0 : widths[nw / 2], nw);
            maps[hh] = map;
        });
        return new Result(stats, maps, rows.length);
    }

    /** Evenly spaced rows 0 … L−1, all of them when L ≤ maxRows. */
    static int[] sampleRows(int l, int maxRows) {
        int n = Math.min(l, maxRows);
        int[] rows = new int[n];
        for (int t = 0; t < n; t++) {
            rows[t] = (int) ((long) t * l / n);
        }
        return rows;
    }

    /** Smallest w with Σ_{|pos−j| ≤ w} p[j] ≥ LOCAL_MASS, growing the window one step at a time. */
    static int localWidth(double[] p, int pos, int s) {
        double mass = pos < s ? p[pos] : 0;
        int w = 0;
        while (mass < LOCAL_MASS - 1e-12) {
            w++;
            if (pos - w < 0 && pos + w >= s) {
                break;
            }
            if (pos - w >= 0) {
                mass += p[pos - w];
            }
            if (pos + w < s) {
                mass += p[pos + w];
            }
        }
        return w;
    }
}
