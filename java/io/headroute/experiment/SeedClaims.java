package io.headroute.experiment;

import io.headroute.cuda.memory.Bytes;
import io.headroute.engine.AttentionShape;
import io.headroute.tensor.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Commonly quoted figures about attention's cost, each set next to what this run measured (or, on the
 * CPU, what the memory plans predict, with the arithmetic). A claim that needs something headroute does
 * not have yet says so and gives no number. Adding a measured claim: a {@link Claim} in {@link #CLAIMS}.
 */
public final class SeedClaims {
    private SeedClaims() {}

    /**
     * One row of the claims table.
     *
     * @param verdict "agrees", "disagrees", "partly agrees" or "not measured"
     */
    public record Row(String claim, String configuration, String found, String verdict) {}

    /** A quoted figure and how to check it against an experiment's rows. */
    interface Claim {
        String quote();

        Row evaluate(List<Run> rows, boolean gpu);
    }

    static final List<Claim> CLAIMS = List.of(new ScoreMatrix32k(), new SparseMemoryAndQuality(),
            notYet("37% of heads can be pruned with under 0.5% loss"),
            notYet("pruning cuts inference latency by up to 42%"));

    public static List<Row> evaluate(List<Run> rows, boolean gpu) {
        List<Row> out = new ArrayList<>();
        for (Claim c : CLAIMS) {
            out.add(c.evaluate(rows, gpu));
        }
        return out;
    }

    private static Claim notYet(String quote) {
        return new Claim() {
            @Override
            public String quote() {
                return quote;
            }

            @Override
            public Row evaluate(List<Run> rows, boolean gpu) {
                return new Row(quote, "-", "not measured: needs head pruning (issue 6)", "not measured");
            }
        };
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
