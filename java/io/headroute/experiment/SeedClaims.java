package io.headroute.experiment;

import io.headroute.analysis.ModelAnalysis;
import io.headroute.cuda.memory.Bytes;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.model.LayerSpec;
import io.headroute.model.ModelConfig;
import io.headroute.model.ModelWeights;
import io.headroute.pattern.Pattern;
import io.headroute.routing.PruningPlan;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.function.Supplier;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * Commonly quoted figures about attention's cost, each set next to what this run measured (or, on the
 * CPU, what the memory plans predict, with the arithmetic). The two pruning claims measure their own
 * small model ({@link #PRUNING_SETUP}). Adding a measured claim: a {@link Claim} in {@link #claims}.
 */
public final class SeedClaims {
    private static final Logger LOG = LogManager.getLogger(SeedClaims.class);

    private SeedClaims() {}

    /**
     * One row of the claims table.
     *
     * @param claim         the quoted figure
     * @param configuration what it was checked on
     * @param found         what this run measured (or, on the CPU, what the memory plans predict)
     * @param verdict       "agrees", "disagrees", "partly agrees" or "not measured"
     */
    public record Row(String claim, String configuration, String found, String verdict) {}

    /** A quoted figure and how to check it against an experiment's rows. */
    interface Claim {
        String quote();

        Row evaluate(List<Run> rows, boolean gpu);
    }

    /** The claims; the two pruning claims share one measurement, made on first need. */
    static List<Claim> claims(Supplier<PruningMeasurement> pruning) {
        Supplier<PruningMeasurement> once = memoize(pruning);
        return List.of(new ScoreMatrix32k(), new SparseMemoryAndQuality(), new PruningLoss(once), new PruningLatency(once));
    }

    /**
     * Sets every claim next to {@code rows}; the pruning claims first measure {@link #PRUNING_SETUP} on the CPU
     * engine (seconds to minutes on 2 cores).
     *
     * @param rows the experiment's rows (the seed-claims preset's)
     * @param gpu  whether the rows were measured on a GPU (else the 32K figures are predicted)
     * @return one row per claim, in order
     */
    public static List<Row> evaluate(List<Run> rows, boolean gpu) {
        return evaluate(rows, gpu, () -> PruningMeasurement.run(PRUNING_SETUP));
    }

    /** {@link #evaluate(List, boolean)} with the pruning measurement supplied (tests check the verdicts with it). */
    static List<Row> evaluate(List<Run> rows, boolean gpu, Supplier<PruningMeasurement> pruning) {
        List<Row> out = new ArrayList<>();
        for (Claim c : claims(pruning)) {
            out.add(c.evaluate(rows, gpu));
        }
        return out;
    }

    private static <T> Supplier<T> memoize(Supplier<T> s) {
        List<T> box = new ArrayList<>(1);
        return () -> {
            if (box.isEmpty()) {
                box.add(Objects.requireNonNull(s.get()));
            }
            return box.get(0);
        };
    }

    /**
     * The model the pruning claims are measured on: seeded random weights and Gaussian X, on the CPU
     * engine whatever the experiment's backend, so the preset's run time stays in bounds on 2 cores.
     *
     * @param config   the model: layers, sizes, pattern and dtype
     * @param batch    B of X
     * @param len      L of X
     * @param seed     seed of the weights and of X
     * @param fraction share of all heads the greedy plan removes
     * @param warmup   untimed forwards of each model
     * @param repeats  timed forwards of each model, alternating
     */
    public record PruningSetup(ModelConfig config, int batch, int len, long seed, double fraction, int warmup, int repeats) {
        String describe() {
            LayerSpec s = config.layer(0);
            return String.format(Locale.ROOT, "%d layers, d_model = %d, H = %d, Hkv = %d, D = %d, %s attention%s, %s; seeded "
                    + "random weights (seed %d) and Gaussian X (B = %d, L = %d); greedy plan removing round(%.2f · %d) heads, "
                    + "least important first by single-head ablation (relative change of each layer's output); CPU engine, "
                    + "%d warm-up and %d timed forwards of each model, alternating", config.layerCount(), config.dModel(),
                    config.heads(), config.kvHeads(), config.headDim(), s.pattern().spec(), s.causal() ? " + causal" : "",
                    config.dtype().cliName(), seed, batch, len, fraction, config.layerCount() * config.heads(), warmup, repeats);
        }
    }

    /** The seed-claims preset's pruning model (its run time on the CI machine type: README, Experiments). */
    public static final PruningSetup PRUNING_SETUP = new PruningSetup(ModelConfig.uniform(256, 8, 8, 32, DType.F32, 4,
            LayerSpec.of(new Pattern.Dense(), true, Algorithm.FLASH)), 1, 512, 42, 0.37, 1, 7);

    /**
     * What the pruning claims found.
     *
     * @param contributionChange ‖Y − Y_pruned‖ / ‖Y − X‖: the change against what the attention layers add to X
     * @param seconds            wall time of the whole measurement (importance, plan, timing)
     */
    record PruningMeasurement(PruningSetup setup, ModelAnalysis.Pruning pruning, double contributionChange, double seconds) {
        static PruningMeasurement run(PruningSetup s) {
            long t0 = System.nanoTime();
            LOG.info("seed claims: measuring head pruning on a {}-layer random model (L = {})", s.config().layerCount(), s.len());
            ModelWeights w = ModelWeights.random(s.config(), s.seed());
            Tensor x = ModelAnalysis.randomInput(s.batch(), s.len(), s.config().dModel(), s.seed());
            try (CpuAttentionEngine engine = new CpuAttentionEngine(CpuAttentionEngine.defaultThreads())) {
                double[][] importance = ModelAnalysis.importance(w, x, engine);
                PruningPlan plan = ModelAnalysis.plan(importance, s.fraction());
                ModelAnalysis.Pruning p = ModelAnalysis.measure(w, x, plan, engine, s.warmup(), s.repeats());
                float[] y = ModelAnalysis.unpruned(w).forward(x, engine).toFloatArray();
                float[] yCut = ModelAnalysis.pruned(w, plan).forward(x, engine).toFloatArray();
                float[] xs = x.toFloatArray();
                double diff = 0;
                double added = 0;
                for (int i = 0; i < y.length; i++) {
                    diff += ((double) y[i] - yCut[i]) * ((double) y[i] - yCut[i]);
                    added += ((double) y[i] - xs[i]) * ((double) y[i] - xs[i]);
                }
                return new PruningMeasurement(s, p, Math.sqrt(diff / added), (System.nanoTime() - t0) / 1e9);
            }
        }

        int removedHeads() {
            return (int) Math.round(pruning.plan().removedFraction() * pruning.plan().layers() * pruning.plan().heads());
        }
    }

    /** "37% of heads can be pruned with under 0.5% loss." */
    static final class PruningLoss implements Claim {
        private final Supplier<PruningMeasurement> measurement;

        PruningLoss(Supplier<PruningMeasurement> measurement) {
            this.measurement = measurement;
        }

        @Override
        public String quote() {
            return "37% of heads can be pruned with under 0.5% loss";
        }

        @Override
        public Row evaluate(List<Run> rows, boolean gpu) {
            PruningMeasurement m = measurement.get();
            ModelAnalysis.Pruning p = m.pruning();
            String found = String.format(Locale.ROOT, "removed %d of %d heads (%.1f%%); the whole model's output changed by "
                    + "‖Y − Y_pruned‖ / ‖Y‖ = %.3f%% (random weights: this is the output's relative change, not a task "
                    + "loss; Y includes the residual stream X, and against what the attention layers add, ‖Y − X‖, the "
                    + "change is %.1f%%); the pruning measurement took %.1f s", m.removedHeads(),
                    p.plan().layers() * p.plan().heads(), 100 * p.plan().removedFraction(), 100 * p.relativeError(),
                    100 * m.contributionChange(), m.seconds());
            String verdict = p.relativeError() < 0.005 ? "agrees on this random-weight model (output change under 0.5%)"
                    : "disagrees on this random-weight model (output change 0.5% or more)";
            return new Row(quote(), m.setup().describe(), found, verdict);
        }
    }

    /** "Pruning cuts inference latency by up to 42%." */
    static final class PruningLatency implements Claim {
        private final Supplier<PruningMeasurement> measurement;

        PruningLatency(Supplier<PruningMeasurement> measurement) {
            this.measurement = measurement;
        }

        @Override
        public String quote() {
            return "pruning cuts inference latency by up to 42%";
        }

        @Override
        public Row evaluate(List<Run> rows, boolean gpu) {
            PruningMeasurement m = measurement.get();
            ModelAnalysis.Pruning p = m.pruning();
            double cut = p.latencyReduction();
            String found = String.format(Locale.ROOT, "the plan of the row above (%d of %d heads): median forward %.2f ms "
                    + "unpruned, %.2f ms pruned, latency cut by %.1f%%; the plan removes %.1f%% of the nominal FLOPs "
                    + "(projection GEMMs and attention)", m.removedHeads(), p.plan().layers() * p.plan().heads(),
                    p.unprunedMedianMs(), p.prunedMedianMs(), 100 * cut, 100 * (1 - p.flopRatio()));
            String verdict = cut >= 0.42 ? "agrees (a cut of 42% or more measured)"
                    : cut > 0 ? "partly agrees: latency falls, by less than 42% at this plan"
                    : "disagrees: no latency cut measured";
            return new Row(quote(), m.setup().describe(), found, verdict);
        }
    }

    /** "The attention matrix of a 32K-token sequence takes 16 GB in fp16." */
    static final class ScoreMatrix32k implements Claim {
        @Override
        public String quote() {
            return "the attention matrix of a 32K-token sequence takes 16 GB in fp16";
        }

        @Override
        public Row evaluate(List<Run> rows, boolean gpu) {
            int len = Preset.CLAIM_LEN;
            int heads = Preset.CLAIM_HEADS;
            AttentionShape shape = new AttentionShape(1, heads, heads, len, len, 64);
            MemoryPrediction mat = MemoryPrediction.materialized(shape, DType.F16);
            String config = String.format(Locale.ROOT, "B=1, H=%d, L=S=%d, fp16 scores (2 bytes each); materialized", heads, len);
            double gib = mat.scoreBytes() / (double) (1L << 30);
            String arithmetic = String.format(Locale.ROOT, "B·H·L·S·2 = 1·%d·%d·%d·2 = %d bytes = %s (%.2f GB)", heads, len, len,
                    mat.scoreBytes(), Bytes.format(mat.scoreBytes()), mat.scoreBytes() / 1e9);
            boolean agrees = Math.abs(gib - 16) < 0.5;
            Run measured = find(rows, Variant.Materialized.class, len, heads, DType.F16);
            Run flash = find(rows, Variant.Flash.class, len, heads, DType.F16);
            String found;
            boolean measuredOnGpu = gpu && measured != null && measured.ok() && measured.measuredPeakBytes() >= 0;
            if (measuredOnGpu) {
                found = String.format(Locale.ROOT, "measured peak %s for the whole call (D=%d: scores plus q, k, v, o, lse), "
                        + "plan's scores %s: %s", Bytes.format(measured.measuredPeakBytes()), measured.dim(),
                        Bytes.format(MemoryPrediction.materialized(new AttentionShape(1, heads, heads, len, len, measured.dim()),
                                DType.F16).scoreBytes()), arithmetic);
                agrees &= measured.measuredPeakBytes() >= mat.scoreBytes();
            } else {
                String why = !gpu ? "no GPU here" : measured == null ? "no 32K fp16 materialized run in this experiment"
                        : measured.status();
                found = "predicted by the memory plan (" + why + "): " + arithmetic;
            }
            if (flash != null && flash.ok() && flash.measuredPeakBytes() >= 0) {
                found += "; flash at the same shape: measured peak " + Bytes.format(flash.measuredPeakBytes());
            } else {
                found += "; flash at the same shape (D=64): predicted " + Bytes.format(MemoryPrediction.flash(shape, DType.F16).bytes());
            }
            String verdict = !agrees ? "disagrees" : measuredOnGpu ? "agrees (16 GiB, binary gigabytes; measured)"
                    : "agrees by arithmetic (16 GiB, binary gigabytes); not measured";
            return new Row(quote(), config, found, verdict);
        }
    }

    /** "Sparse attention cuts memory by 87.4% while keeping over 98% of performance." */
    static final class SparseMemoryAndQuality implements Claim {
        @Override
        public String quote() {
            return "sparse attention cuts memory by 87.4% while keeping over 98% of performance";
        }

        @Override
        public Row evaluate(List<Run> rows, boolean gpu) {
            Run best = null;
            for (Run r : rows) {
                if (r.variant() instanceof Variant.Sparse && (best == null
                        || Math.abs(r.tokenDensity() - Preset.CLAIM_DENSITY) < Math.abs(best.tokenDensity() - Preset.CLAIM_DENSITY))) {
                    best = r;
                }
            }
            if (best == null) {
                return new Row(quote(), "-", "not measured: no sparse variant in this experiment", "not measured");
            }
            String config = String.format(Locale.ROOT, "%s, token density %.4f, %s, B=%d, H=%d, L=S=%d, D=%d, seeded Gaussian "
                    + "inputs; memory against materialized at the same shape", best.variant().spec(), best.tokenDensity(),
                    best.dtype().cliName(), best.batch(), best.heads(), best.len(), best.dim());
            double scoreStoreSaving = 1 - best.tokenDensity();
            String found = String.format(Locale.ROOT, "VRAM saved %s (%s); storing only the allowed scores would save "
                    + "1 − density = %.1f%%", pct(best.vramSaved()), best.vramBasis(), 100 * scoreStoreSaving);
            boolean memoryAgrees = best.vramSaved() >= 0.874;
            if (!best.ok()) {
                return new Row(quote(), config, found + "; quality not measured: " + best.status(), "not measured");
            }
            if (Double.isNaN(best.recall())) {
                return new Row(quote(), config, found + "; quality " + best.fidelityNote(),
                        memoryAgrees ? "partly agrees (memory only)" : "disagrees");
            }
            found += String.format(Locale.ROOT, "; attention-mass recall %.4f, output relative error %.4f against full "
                    + "attention (random inputs have no locality: a pessimistic case, not a trained model)", best.recall(),
                    best.relError());
            boolean qualityAgrees = best.recall() >= 0.98;
            String verdict = memoryAgrees && qualityAgrees ? "agrees"
                    : memoryAgrees ? "partly agrees: memory yes, quality no (recall < 0.98)"
                    : qualityAgrees ? "partly agrees: quality yes, memory no" : "disagrees";
            return new Row(quote(), config, found, verdict);
        }
    }

    static String pct(double x) {
        return Double.isNaN(x) ? "n/a" : String.format(Locale.ROOT, "%.1f%%", 100 * x);
    }

    private static Run find(List<Run> rows, Class<? extends Variant> kind, int len, int heads, DType dtype) {
        for (Run r : rows) {
            if (kind.isInstance(r.variant()) && r.variant().pattern().isDense() && r.len() == len && r.heads() == heads
                    && r.dtype() == dtype && r.batch() == 1 && !r.causal()) {
                return r;
            }
        }
        return null;
    }
}
