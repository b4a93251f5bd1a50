package io.headroute.experiment;

import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import java.util.List;

/** Named sweeps of {@code headroute experiment --preset}. */
public enum Preset {
    /** The CPU default: a few sizes that finish in about a minute on 2 cores. */
    CPU("cpu"),
    /** The GPU default: L up to 32768, bf16, H = 16, D = 128. */
    GPU_32K("gpu-32k"),
    /** Our measurements next to commonly quoted figures ({@link SeedClaims}). */
    SEED_CLAIMS("seed-claims");

    /** Token density of the sparse pattern the seed claim "87.4% less memory" implies (1 − 0.874). */
    public static final double CLAIM_DENSITY = 0.126;
    /** Sequence length of the seed claim "a 32K-token sequence". */
    public static final int CLAIM_LEN = 32768;
    /** Heads for which that claim's 16 GB holds in fp16: 8 · 32768² · 2 bytes = 16 GiB. */
    public static final int CLAIM_HEADS = 8;

    private final String cliName;

    Preset(String cliName) {
        this.cliName = cliName;
    }

    /** {@return the name {@code --preset} takes: "cpu", "gpu-32k" or "seed-claims"} */
    public String cliName() {
        return cliName;
    }

    /**
     * Parses a {@link #cliName()} (case-insensitive, surrounding blanks ignored).
     *
     * @param s the name; not null
     * @return the preset
     * @throws IllegalArgumentException for any other name
     */
    public static Preset parse(String s) {
        for (Preset p : values()) {
            if (p.cliName.equalsIgnoreCase(s.strip())) {
                return p;
            }
        }
        throw new IllegalArgumentException("unknown preset '" + s + "' (expected cpu, gpu-32k or seed-claims)");
    }

    /**
     * The preset's sweep; {@code gpu} says whether it runs on a GPU (seed-claims measures 32K only there).
     *
     * @param gpu whether the engine is a GPU's
     * @return the sweep
     */
    public Sweep sweep(boolean gpu) {
        return switch (this) {
            case CPU -> new Sweep(List.of(512, 1024, 2048, 4096), List.of(new Variant.Materialized(new Pattern.Dense()),
                    new Variant.Flash(new Pattern.Dense()), new Variant.Sparse(new Pattern.Window(128)),
                    new Variant.Sparse(new Pattern.BigBird(64, 1, 1, 2, 7)), new Variant.Routed(1, 1, 64),
                    pruned(0.5)), List.of(DType.F32), List.of(4), 0, 64, 1, false, 1, 3, 42);
            // Issue 6's goal configuration at H = 16 (Hs = 2, k = 4: 6 of 16 heads active), per token and per block
            // of 64, and per block on the window pattern (routing on the block-sparse kernel); and 6 of 16 heads
            // (37.5%) pruned.
            case GPU_32K -> new Sweep(Sweep.parseLens("1024..32768"), List.of(new Variant.Materialized(new Pattern.Dense()),
                    new Variant.Flash(new Pattern.Dense()), new Variant.Sparse(new Pattern.Window(256)),
                    new Variant.Sparse(new Pattern.BigBird(64, 1, 1, 2, 7)), new Variant.Routed(2, 4, 1),
                    new Variant.Routed(2, 4, 64), new Variant.Routed(2, 4, 64, new Pattern.Window(256)), pruned(0.375)),
                    List.of(DType.BF16), List.of(16), 0, 128, 1, false, 1, 5, 42);
            case SEED_CLAIMS -> {
                // On the CPU a 32K dense run takes minutes per call; there the 32K figure is the memory plan's
                // arithmetic and the sparse claim is measured at 4096.
                int len = gpu ? CLAIM_LEN : 4096;
                yield new Sweep(List.of(len), List.of(new Variant.Materialized(new Pattern.Dense()),
                        new Variant.Flash(new Pattern.Dense()), new Variant.Sparse(windowWithDensity(CLAIM_DENSITY, len))),
                        List.of(DType.F16), List.of(CLAIM_HEADS), 0, 64, 1, false, 1, 3, 42);
            }
        };
    }

    private static Variant pruned(double fraction) {
        return Variant.parse("pruned:" + fraction);
    }

    /**
     * The window whose token density over L = S = {@code len} is closest to {@code density}.
     *
     * @param density the target share of query-key pairs, in [0, 1]
     * @param len     L = S
     * @return {@code window:W} with W in [0, len] (the larger W on a tie)
     */
    public static Pattern.Window windowWithDensity(double density, int len) {
        int lo = 0;
        int hi = len;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (Experiment.tokenDensity(new Pattern.Window(mid), 1, len, len) < density) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        int w = lo;
        if (w > 0 && Math.abs(Experiment.tokenDensity(new Pattern.Window(w - 1), 1, len, len) - density)
                < Math.abs(Experiment.tokenDensity(new Pattern.Window(w), 1, len, len) - density)) {
            w--;
        }
        return new Pattern.Window(w);
    }
}
