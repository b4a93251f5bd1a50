package io.headroute.experiment;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/** The experiment's three charts, built from its rows. */
final class Charts {
    private Charts() {}

    /** Peak VRAM (MiB) vs L, log–log, one series per variant: measured on a GPU, predicted on the CPU. */
    static Chart vram(List<Run> rows, boolean gpu) {
        Chart c = new Chart("Peak VRAM vs sequence length", "sequence length L = S (tokens)",
                gpu ? "peak VRAM, measured (MiB)" : "peak VRAM, predicted (MiB)", true, true, true)
                .note(gpu ? "measured: the device pool's peak during one call; configurations not run are left out"
                        : "predicted from the GPU memory plans (no GPU here: nothing measured)");
        group(rows, r -> true, rows).forEach((name, rs) -> {
            List<double[]> pts = new ArrayList<>();
            for (Run r : rs) {
                long bytes = gpu ? (r.ok() ? r.measuredPeakBytes() : -1) : r.predictedPeakBytes();
                if (bytes > 0) {
                    pts.add(new double[] {r.len(), bytes / (double) (1L << 20)});
                }
            }
            c.add(name, pts);
        });
        return c;
    }

    /** Median time (ms) vs L, log–log, one series per variant. */
    static Chart time(List<Run> rows) {
        Chart c = new Chart("Median time vs sequence length", "sequence length L = S (tokens)", "median time per call (ms)",
                true, true, true).note("compute only, inputs in place; configurations not run are left out");
        group(rows, Run::ok, rows).forEach((name, rs) -> {
            List<double[]> pts = new ArrayList<>();
            for (Run r : rs) {
                pts.add(new double[] {r.len(), r.medianMs()});
            }
            c.add(name, pts);
        });
        return c;
    }

    /**
     * The share of full attention's work a row asks for, full attention being the speed-ups' baseline (dense, or
     * causal under --causal): a patterned variant's token density over the baseline's (causal keeps (L + 1) / 2L of
     * the L·S pairs at L = S), the measured share of non-zero gate entries of a routed one (times its pattern's
     * share), the share of heads kept by a pruned one; NaN for full attention itself.
     */
    static double workDensity(Run r) {
        double full = r.causal() ? (r.len() + 1) / (2.0 * r.len()) : 1.0;
        if (r.variant() instanceof Variant.Routed) {
            return r.details().activeHeadFraction() * (r.variant().full() ? 1.0 : r.tokenDensity() / full);
        }
        if (r.variant() instanceof Variant.Pruned) {
            return 1.0 - r.details().headsRemoved();
        }
        return r.variant().full() ? Double.NaN : r.tokenDensity() / full;
    }

    /**
     * Speed-up against full attention vs work density ({@link #workDensity}), one series per kind of variant
     * (patterned, routed, pruned) and sequence length, with a 1x line (as fast as full attention) and the
     * ideal 1 / work density (time proportional to the work done) for reference.
     */
    static Chart speedup(List<Run> rows) {
        Set<String> baselines = new LinkedHashSet<>();
        List<Run> sparse = new ArrayList<>();
        for (Run r : rows) {
            if (r.ok() && !Double.isNaN(workDensity(r)) && !Double.isNaN(r.speedup())) {
                sparse.add(r);
                baselines.add(r.speedupBaseline());
            }
        }
        Chart c = new Chart("Speed-up vs density", "work density (allowed pairs / full attention's; routed, pruned: heads computed / H)",
                "speed-up vs " + (baselines.isEmpty() ? "full attention" : String.join(" / ", baselines)) + " (x)", false, true,
                false).note(sparse.isEmpty() ? "no patterned, routed or pruned variant was measured in this experiment"
                        : "each point: one variant at one length; dashed: 1x (as fast as full attention) and the ideal");
        Map<String, List<double[]>> byKind = new LinkedHashMap<>();
        boolean several = rows.stream().map(r -> r.dtype() + "/" + r.heads()).distinct().count() > 1;
        sparse.sort((a, b) -> a.len() != b.len() ? Integer.compare(a.len(), b.len())
                : Integer.compare(kindOrder(a.variant()), kindOrder(b.variant())));
        for (Run r : sparse) {
            String name = kind(r.variant()) + " L=" + r.len()
                    + (several ? String.format(Locale.ROOT, " %s H=%d", r.dtype().cliName(), r.heads()) : "");
            byKind.computeIfAbsent(name, k -> new ArrayList<>()).add(new double[] {workDensity(r), r.speedup()});
        }
        byKind.forEach(c::add);
        if (!sparse.isEmpty()) {
            c.reference("1x: full attention", d -> 1.0).reference("ideal: 1 / work density", d -> 1.0 / d);
        }
        return c;
    }

    private static String kind(Variant v) {
        return v instanceof Variant.Routed ? "routed" : v instanceof Variant.Pruned ? "pruned" : "pattern";
    }

    private static int kindOrder(Variant v) {
        return v instanceof Variant.Routed ? 1 : v instanceof Variant.Pruned ? 2 : 0;
    }

    /** Rows by series name: the variant, plus dtype and heads when the sweep has several of them. */
    private static Map<String, List<Run>> group(List<Run> rows, Function<Run, Boolean> keep, List<Run> all) {
        boolean several = all.stream().map(r -> r.dtype() + "/" + r.heads()).distinct().count() > 1;
        Map<String, List<Run>> out = new LinkedHashMap<>();
        for (Run r : rows) {
            if (keep.apply(r)) {
                String name = r.variant().spec() + (several ? String.format(Locale.ROOT, " %s H=%d", r.dtype().cliName(),
                        r.heads()) : "");
                out.computeIfAbsent(name, k -> new ArrayList<>()).add(r);
            }
        }
        return out;
    }
}
