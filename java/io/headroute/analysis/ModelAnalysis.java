package io.headroute.analysis;

import io.headroute.bench.AttentionBenchmark;
import io.headroute.engine.AttentionEngine;
import io.headroute.engine.ShapeException;
import io.headroute.model.AttentionBlock;
import io.headroute.model.LayerSpec;
import io.headroute.model.Model;
import io.headroute.model.ModelConfig;
import io.headroute.model.ModelWeights;
import io.headroute.pattern.Pattern;
import io.headroute.routing.CpuHeadRouter;
import io.headroute.routing.HeadRouter;
import io.headroute.routing.PruningPlan;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

/**
 * Head analysis of a whole model on given inputs, layer by layer on the unpruned model's activations:
 * per head its ablation importance, its pattern detectors ({@link HeadProbe} on the layer's post-RoPE Q
 * and K), pairwise similarity of head outputs and attention maps with redundant pairs flagged; then a
 * greedy pruning plan at a budget with the pruned model's measured output error and speed.
 *
 * <p>A routed layer is analysed as it runs: its router's gate (the CPU router on the layer's normed input, as
 * {@link Model#forward}) gates the traced attention and every ablation, the detectors leave out the query rows
 * the gate does not send to the head, and the next layer sees the gated output.
 */
public final class ModelAnalysis {
    /** A pair of heads is redundant when the |cosine| of their outputs (before Wo; either sign) reaches this ... */
    public static final double REDUNDANT_OUTPUT_COSINE = 0.9;
    /** ... and the cosine of their downsampled attention maps reaches this. */
    public static final double REDUNDANT_MAP_COSINE = 0.9;

    private ModelAnalysis() {}

    /**
     * What to measure.
     *
     * @param probeRows query rows probed per (batch, head) by the detectors (evenly spaced when L is larger)
     * @param mapSize   side of the downsampled attention maps
     * @param prune     share of all heads the plan removes, in [0, 1)
     * @param warmup    untimed forwards of each model before timing
     * @param repeats   timed forwards of each model (alternating); the medians are compared
     */
    public record Options(int probeRows, int mapSize, double prune, int warmup, int repeats) {
        /**
         * Validates the options.
         *
         * @param probeRows positive
         * @param mapSize   positive
         * @param prune     in [0, 1)
         * @param warmup    0 … {@link AttentionBenchmark#MAX_REPEATS}
         * @param repeats   1 … {@link AttentionBenchmark#MAX_REPEATS}
         * @throws IllegalArgumentException naming the option out of range
         */
        public Options {
            if (probeRows <= 0 || mapSize <= 0) {
                throw new IllegalArgumentException("--probe-rows and --map-size must be positive, got " + probeRows + " and "
                        + mapSize);
            }
            if (!(prune >= 0 && prune < 1)) {
                throw new IllegalArgumentException("pruning fraction must be in [0, 1), got " + prune);
            }
            if (warmup < 0 || repeats <= 0 || warmup > AttentionBenchmark.MAX_REPEATS || repeats > AttentionBenchmark.MAX_REPEATS) {
                throw new IllegalArgumentException("--warmup must be in 0.." + AttentionBenchmark.MAX_REPEATS + " and --repeats in 1.."
                        + AttentionBenchmark.MAX_REPEATS + ", got " + warmup + " and " + repeats);
            }
        }
    }

    /**
     * Two heads of a layer whose outputs and maps are both at least as similar as the thresholds.
     *
     * @param a            the lower head
     * @param b            the higher head
     * @param outputCosine cosine of their outputs before Wo, |value| ≥ {@link #REDUNDANT_OUTPUT_COSINE}
     * @param mapCosine    cosine of their downsampled attention maps, ≥ {@link #REDUNDANT_MAP_COSINE}
     */
    public record RedundantPair(int a, int b, double outputCosine, double mapCosine) {}

    /**
     * One layer's findings.
     *
     * @param layer            the layer's index
     * @param spec             how the layer attends
     * @param importance       per head: ‖y − y₋ₕ‖ / ‖y‖ of the layer's output y when head h alone is removed
     * @param probe            detectors and maps per head
     * @param outputSimilarity H × H cosine of head outputs before Wo
     * @param mapSimilarity    H × H cosine of the downsampled attention maps
     * @param redundant        the redundant pairs, a before b, in head order; unmodifiable
     */
    public record Layer(int layer, LayerSpec spec, double[] importance, HeadProbe.Result probe, double[][] outputSimilarity,
            double[][] mapSimilarity, List<RedundantPair> redundant) {}

    /**
     * The measured pruning plan.
     *
     * @param plan          the greedy plan
     * @param relativeError ‖Y − Y_pruned‖ / ‖Y‖ of the whole model's output
     * @param unprunedMs    timed forwards of the unpruned model, in call order
     * @param prunedMs      timed forwards of the pruned model, alternating with the unpruned ones
     * @param flopRatio     nominal FLOPs of the pruned model / the unpruned one ({@link #nominalFlops})
     */
    public record Pruning(PruningPlan plan, double relativeError, double[] unprunedMs, double[] prunedMs, double flopRatio) {
        /** {@return the median time of the unpruned model's timed forwards, in milliseconds} */
        public double unprunedMedianMs() {
            return median(unprunedMs);
        }

        /** {@return the median time of the pruned model's timed forwards, in milliseconds} */
        public double prunedMedianMs() {
            return median(prunedMs);
        }

        /** {@return pruned median time / unpruned median time} */
        public double timeRatio() {
            return prunedMedianMs() / unprunedMedianMs();
        }

        /** {@return 1 − {@link #timeRatio()}}: the share of the latency the plan removes (negative when slower). */
        public double latencyReduction() {
            return 1 - timeRatio();
        }
    }

    /**
     * Everything {@link #analyze} found.
     *
     * @param config     the unpruned model's config
     * @param inputShape X's shape (B, L, d_model)
     * @param layers     per layer, its findings
     * @param pruning    the plan and its measurement
     */
    public record Report(ModelConfig config, long[] inputShape, List<Layer> layers, Pruning pruning) {
        /** {@return the layers × heads importance} */
        public double[][] importance() {
            return layers.stream().map(Layer::importance).toArray(double[][]::new);
        }
    }

    /**
     * {@return the model with every head active (any head mask of its config dropped)}: what analysis starts from.
     *
     * @param weights the weights and config
     */
    public static Model unpruned(ModelWeights weights) {
        ModelConfig c = weights.config();
        return new Model(weights.withConfig(c.withHeadMasks(Collections.nCopies(c.layerCount(), (boolean[]) null))));
    }

    /**
     * {@return the model with {@code plan}'s heads removed} (the config's own head masks replaced)
     *
     * @param weights the weights and config
     * @param plan    a plan for the model's layers and heads
     * @throws IllegalArgumentException when the plan is for another number of layers or heads
     */
    public static Model pruned(ModelWeights weights, PruningPlan plan) {
        ModelConfig c = weights.config();
        if (plan.layers() != c.layerCount() || plan.heads() != c.heads()) {
            throw new IllegalArgumentException("pruning plan for " + plan.layers() + " layers × " + plan.heads()
                    + " heads does not fit a model of " + c.layerCount() + " layers × " + c.heads() + " heads");
        }
        List<boolean[]> masks = new ArrayList<>();
        for (int l = 0; l < c.layerCount(); l++) {
            masks.add(plan.prunedLayers().contains(l) ? plan.headMask(l) : null);
        }
        return new Model(weights.withConfig(c.withHeadMasks(masks)));
    }

    /**
     * Analyzes every layer of {@code weights} (all heads active) on {@code x} (B, L, d_model), then prunes.
     *
     * @param weights the model
     * @param x       the input (B, L, d_model)
     * @param engine  computes the attention
     * @param opt     what to measure
     * @return every finding, the plan and its measurement
     * @throws ShapeException           when x is not (B, L, d_model)
     * @throws IllegalArgumentException when a layer's output is zero or not finite (importance is then undefined)
     */
    public static Report analyze(ModelWeights weights, Tensor x, AttentionEngine engine, Options opt) {
        Model model = unpruned(weights);
        checkInput(model.config(), x);
        List<Layer> layers = new ArrayList<>();
        Tensor h = x;
        try (HeadRouter router = router(model)) {
            for (AttentionBlock block : model.blocks()) {
                Tensor gate = gate(model, block.index(), h, router);
                AttentionBlock.Trace t = block.trace(h, gate, engine);
                layers.add(layer(model, block, h, gate, t, engine, opt));
                h = t.output();
            }
        }
        double[][] importance = layers.stream().map(Layer::importance).toArray(double[][]::new);
        PruningPlan plan = plan(importance, opt.prune());
        Pruning pruning = measure(weights, x, plan, engine, opt.warmup(), opt.repeats());
        return new Report(model.config(), x.shape(), Collections.unmodifiableList(layers), pruning);
    }

    /**
     * layers × heads ablation importance of the unpruned model on {@code x} (each layer on its unpruned input).
     *
     * @param weights the model
     * @param x       the input (B, L, d_model)
     * @param engine  computes the attention
     * @return per layer, per head, ‖y − y₋ₕ‖ / ‖y‖
     * @throws ShapeException           when x is not (B, L, d_model)
     * @throws IllegalArgumentException when a layer's output is zero or not finite
     */
    public static double[][] importance(ModelWeights weights, Tensor x, AttentionEngine engine) {
        Model model = unpruned(weights);
        checkInput(model.config(), x);
        double[][] out = new double[model.blocks().size()][];
        Tensor h = x;
        try (HeadRouter router = router(model)) {
            for (AttentionBlock block : model.blocks()) {
                Tensor gate = gate(model, block.index(), h, router);
                Tensor y = block.forward(h, gate, engine);
                out[block.index()] = layerImportance(model.config(), block.index(), model.weights(), h, gate, y, engine);
                h = y;
            }
        }
        return out;
    }

    /** The CPU router {@link Model#forward} uses, for a model with routed layers; else null. */
    private static HeadRouter router(Model model) {
        return model.config().routed() ? new CpuHeadRouter(Runtime.getRuntime().availableProcessors()) : null;
    }

    /** Layer i's gate on its input {@code h}: its router's for a routed layer ({@link Model#route}), else none. */
    private static Tensor gate(Model model, int i, Tensor h, HeadRouter router) {
        return model.config().layer(i).routed() ? model.route(i, h, router).gate() : null;
    }

    /**
     * The greedy plan ({@link HeadImportance#greedyPlan}) as a {@link PruningPlan}.
     *
     * @param importance layers × heads, at least one layer, every row as long
     * @param fraction   the share of all heads to remove, in [0, 1)
     * @return the plan
     */
    public static PruningPlan plan(double[][] importance, double fraction) {
        boolean[][] removed = HeadImportance.greedyPlan(importance, fraction);
        Map<Integer, List<Integer>> m = new TreeMap<>();
        for (int l = 0; l < removed.length; l++) {
            for (int hh = 0; hh < removed[l].length; hh++) {
                if (removed[l][hh]) {
                    m.computeIfAbsent(l, k -> new ArrayList<>()).add(hh);
                }
            }
        }
        return PruningPlan.of(importance.length, importance[0].length, m);
    }

    /**
     * The pruned model against the unpruned one on {@code x}: warm-up forwards of each, then
     * {@code repeats} timed forwards of each, alternating in ABBA order (so drift on a shared machine hits
     * both), and the relative change of the whole model's output.
     *
     * @param weights the model
     * @param x       the input (B, L, d_model)
     * @param plan    the heads to remove
     * @param engine  computes the attention
     * @param warmup  untimed forwards of each model first
     * @param repeats timed forwards of each model, at least 1
     * @return the plan with its error and times
     */
    public static Pruning measure(ModelWeights weights, Tensor x, PruningPlan plan, AttentionEngine engine, int warmup,
            int repeats) {
        Model full = unpruned(weights);
        Model cut = pruned(weights, plan);
        checkInput(full.config(), x);
        for (int w = 0; w < warmup; w++) {
            full.forward(x, engine);
            cut.forward(x, engine);
        }
        double[] fullMs = new double[repeats];
        double[] cutMs = new double[repeats];
        Tensor y = null;
        Tensor yCut = null;
        for (int r = 0; r < repeats; r++) {
            // ABBA order: neither model always runs first (right after the other one's garbage).
            boolean fullFirst = r % 2 == 0;
            for (int k = 0; k < 2; k++) {
                boolean runFull = (k == 0) == fullFirst;
                long t0 = System.nanoTime();
                Tensor out = (runFull ? full : cut).forward(x, engine);
                double ms = (System.nanoTime() - t0) / 1e6;
                if (runFull) {
                    y = out;
                    fullMs[r] = ms;
                } else {
                    yCut = out;
                    cutMs[r] = ms;
                }
            }
        }
        int b = Math.toIntExact(x.dim(0));
        int len = Math.toIntExact(x.dim(1));
        double flopRatio = nominalFlops(full.config(), plan, b, len)
                / nominalFlops(full.config(), PruningPlan.none(plan.layers(), plan.heads()), b, len);
        return new Pruning(plan, HeadImportance.relativeChange(y.toFloatArray(), yCut.toFloatArray()), fullMs, cutMs, flopRatio);
    }

    /**
     * Nominal FLOPs of a forward with {@code plan}'s heads removed: per layer, with H' query heads and
     * Hkv' key/value heads left, 2·N·d_model·D·(2·H' + 2·Hkv') for the Q, K, V and output projections
     * (N = B·L) and 4·B·H'·L²·D for attention, halved when the layer is causal (the bench's count, the
     * same for every pattern). RMSNorm, RoPE and the residual add are left out.
     *
     * @param c     the model config
     * @param plan  the heads removed ({@link PruningPlan#none} for the full model)
     * @param batch B
     * @param len   L (= S)
     * @return the FLOPs count
     */
    public static double nominalFlops(ModelConfig c, PruningPlan plan, int batch, int len) {
        double n = (double) batch * len;
        double total = 0;
        for (int l = 0; l < c.layerCount(); l++) {
            boolean[] mask = plan.headMask(l);
            int h = 0;
            boolean[] kv = new boolean[c.kvHeads()];
            for (int i = 0; i < mask.length; i++) {
                if (mask[i]) {
                    h++;
                    kv[i / c.group()] = true;
                }
            }
            int hkv = 0;
            for (boolean k : kv) {
                hkv += k ? 1 : 0;
            }
            total += 2 * n * c.dModel() * c.headDim() * (2.0 * h + 2.0 * hkv);
            total += 4.0 * batch * h * (double) len * len * c.headDim() * (c.layer(l).causal() ? 0.5 : 1.0);
        }
        return total;
    }

    /**
     * The heads with the strongest detector (previous-token, first-token or diagonal mass), at most {@code n}, as
     * {layer, head}.
     *
     * @param layers the layers' findings
     * @param n      the most heads to return
     * @return {layer, head} pairs, strongest first (ties by lower layer, then lower head)
     */
    public static List<int[]> strongestHeads(List<Layer> layers, int n) {
        record Entry(int layer, int head, double score) {}
        List<Entry> all = new ArrayList<>();
        for (Layer l : layers) {
            for (HeadProbe.HeadStats s : l.probe().heads()) {
                all.add(new Entry(l.layer(), s.head(), strongest(s)));
            }
        }
        all.sort((a, b) -> a.score() != b.score() ? Double.compare(b.score(), a.score())
                : a.layer() != b.layer() ? Integer.compare(a.layer(), b.layer()) : Integer.compare(a.head(), b.head()));
        return all.stream().limit(n).map(e -> new int[] {e.layer(), e.head()}).toList();
    }

    /**
     * {@return a head's largest detector mass: the maximum of previous-token, first-token and diagonal}
     *
     * @param s the head's detectors
     */
    public static double strongest(HeadProbe.HeadStats s) {
        return Math.max(s.prevToken(), Math.max(s.firstToken(), s.diagonal()));
    }

    private static Layer layer(Model model, AttentionBlock block, Tensor input, Tensor gate, AttentionBlock.Trace t,
            AttentionEngine engine, Options opt) {
        ModelConfig c = model.config();
        int i = block.index();
        double[] importance = layerImportance(c, i, model.weights(), input, gate, t.output(), engine);
        LayerSpec spec = c.layer(i);
        Pattern effective = spec.causal() ? spec.pattern().withCausal() : spec.pattern();
        HeadProbe.Result probe = HeadProbe.probe(t.q(), t.k(), effective, null, opt.probeRows(), opt.mapSize(),
                gate == null ? null : gate.toFloatArray());
        int b = Math.toIntExact(t.o().dim(0));
        int h = c.heads();
        double[][] outSim = Similarity.headOutputs(t.o().toFloatArray(), b, h, Math.toIntExact(t.o().dim(2)), c.headDim());
        double[][] mapSim = new double[h][h];
        List<RedundantPair> redundant = new ArrayList<>();
        for (int a = 0; a < h; a++) {
            for (int e = a; e < h; e++) {
                mapSim[a][e] = mapSim[e][a] = probe.mapSimilarity(a, e);
                if (e > a && Math.abs(outSim[a][e]) >= REDUNDANT_OUTPUT_COSINE && mapSim[a][e] >= REDUNDANT_MAP_COSINE) {
                    redundant.add(new RedundantPair(a, e, outSim[a][e], mapSim[a][e]));
                }
            }
        }
        return new Layer(i, spec, importance, probe, outSim, mapSim, Collections.unmodifiableList(redundant));
    }

    /**
     * Ablation importance of layer i's heads: the block rebuilt with head h masked out (really not
     * computed), on the same input and gate, against the full block's output {@code y}.
     *
     * @throws IllegalArgumentException when y is not finite (an overflow in the model's dtype) or zero (a
     *     relative change of it is undefined)
     */
    private static double[] layerImportance(ModelConfig c, int i, ModelWeights w, Tensor input, Tensor gate, Tensor y,
            AttentionEngine engine) {
        float[] full = y.toFloatArray();
        double norm = 0;
        for (float v : full) {
            if (!Float.isFinite(v)) {
                throw new IllegalArgumentException("layer " + i + "'s output on this input is not finite (" + v + ") in "
                        + c.dtype().cliName() + ": an overflow? Importance needs a finite output");
            }
            norm += (double) v * v;
        }
        if (norm == 0) {
            throw new IllegalArgumentException("layer " + i + "'s output on this input is zero: its heads' importance "
                    + "‖y − y₋ₕ‖ / ‖y‖ is undefined");
        }
        float[] residualOnly = input.toDType(c.dtype()).toFloatArray();
        HeadImportance.MaskedForward forward = active -> {
            boolean all = true;
            boolean any = false;
            for (boolean a : active) {
                all &= a;
                any |= a;
            }
            if (all) {
                return full;
            }
            if (!any) {
                // No head left: the block adds nothing to its (dtype-rounded) input.
                return residualOnly;
            }
            ModelConfig masked = c.withLayer(i, c.layer(i).withHeadMask(active));
            return new AttentionBlock(masked, i, w.layer(i)).forward(input, gate, engine).toFloatArray();
        };
        return HeadImportance.ablation(forward, c.heads());
    }

    /**
     * Seeded input X (b, l, d): standard Gaussian elements in row-major order from
     * {@code java.util.Random(seed − 1).nextGaussian()} (random weights draw from seed + 1000003·k, k ≥ 0, and router
     * weights from seed − 1000003·(i + 1), so no weight shares the input's stream).
     *
     * @param b    B, positive
     * @param l    L, positive
     * @param d    d_model, positive
     * @param seed the seed
     * @return X (b, l, d) float32
     * @throws IllegalArgumentException for a non-positive size or more than {@code Integer.MAX_VALUE} − 8 elements
     */
    public static Tensor randomInput(int b, int l, int d, long seed) {
        long n = (long) b * l * d;
        if (b <= 0 || l <= 0 || d <= 0 || n > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("random X of " + b + " × " + l + " × " + d + " elements: sizes must be positive "
                    + "and the tensor under 2^31 elements");
        }
        float[] v = new float[(int) n];
        Random r = new Random(seed - 1);
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return Tensor.ofFloats(v, b, l, d);
    }

    private static void checkInput(ModelConfig c, Tensor x) {
        if (x.rank() != 3 || x.dim(2) != c.dModel() || x.dim(0) <= 0 || x.dim(1) <= 0) {
            throw new ShapeException("input X must have shape (B, L, d_model = " + c.dModel() + "), got " + x.shapeString());
        }
    }

    static double median(double[] v) {
        if (v.length == 0) {
            throw new IllegalArgumentException("median of nothing");
        }
        double[] s = v.clone();
        Arrays.sort(s);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    }
}
