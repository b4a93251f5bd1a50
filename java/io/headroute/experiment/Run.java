package io.headroute.experiment;

import io.headroute.tensor.DType;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One measured (or refused) configuration of an experiment: a row of runs.csv, runs.json and the
 * report's table. Missing values are NaN or −1 here, "n/a" in the CSV and null in the JSON.
 *
 * @param variant             what was measured
 * @param dtype               the compute dtype
 * @param batch               B
 * @param heads               H
 * @param kvHeads             Hkv
 * @param len                 L = S
 * @param dim                 D
 * @param causal              whether the sweep's causal rule was added
 * @param status              "ok", or "does not fit: …" / "unsupported: …"
 * @param engine              the engine that ran it ("cpu", "cuda"), or the one that refused it
 * @param algorithmUsed       what the engine reports it ran, or null
 * @param medianMs            median of the timed calls' compute times
 * @param minMs               the fastest timed call, in milliseconds
 * @param tflops              effective TFLOP/s: the nominal FLOPs of the shape (bench's formula) / median
 * @param tokenDensity        allowed query-key pairs of the effective pattern / (L·S)
 * @param measuredPeakBytes   peak device memory of a call from the pool (GPU), −1 when not measured
 * @param predictedPeakBytes  the GPU peak the memory plans predict for the call
 * @param vramSaved           1 − peak / (materialized's peak at the same shape), NaN when unknown
 * @param vramBasis           "measured" (both peaks measured on the GPU) or "predicted"
 * @param speedup             baseline median / this median, NaN when either is missing
 * @param speedupBaseline     the variant compared against (dense flash, else dense materialized), or null
 * @param relError            output relative error against full attention
 * @param recall              attention-mass recall against full attention
 * @param fidelityNote        why fidelity is n/a (or, for routed rows, what it is measured against), else null
 * @param details             the engine's work counts and the routed / pruned measurements
 */
public record Run(Variant variant, DType dtype, int batch, int heads, int kvHeads, int len, int dim, boolean causal,
        String status, String engine, String algorithmUsed, double medianMs, double minMs, double tflops, double tokenDensity,
        long measuredPeakBytes, long predictedPeakBytes, double vramSaved, String vramBasis, double speedup,
        String speedupBaseline, double relError, double recall, String fidelityNote, Details details) {

    /**
     * What the engine reports it executed (last timed call; −1 when not run) and what routed and pruned
     * variants add (NaN for the others).
     *
     * @param queryTiles         query tiles executed (gate-skipped rows excluded)
     * @param keyTilesVisited    (query tile, key tile) pairs computed
     * @param rowsSkipped        query rows skipped because their gate is zero
     * @param routerMs           median time of the router calls (routed)
     * @param loadBalance        the router's load-balance coefficient Hr·Σ f_i·P_i (routed)
     * @param activeHeadFraction measured share of non-zero gate entries (routed)
     * @param headsRemoved       share of the H query heads removed (pruned)
     */
    public record Details(long queryTiles, long keyTilesVisited, long rowsSkipped, double routerMs, double loadBalance,
            double activeHeadFraction, double headsRemoved) {
        /** Nothing measured: −1 counts and NaN measurements. */
        public static final Details NONE = new Details(-1, -1, -1, Double.NaN, Double.NaN, Double.NaN, Double.NaN);
    }

    /**
     * A row; null details become {@link Details#NONE}.
     *
     * @param variant            what was measured
     * @param dtype              the compute dtype
     * @param batch              B
     * @param heads              H
     * @param kvHeads            Hkv
     * @param len                L = S
     * @param dim                D
     * @param causal             the sweep's causal rule
     * @param status             "ok" or why not
     * @param engine             the engine's name
     * @param algorithmUsed      the algorithm that ran, or null
     * @param medianMs           median time, milliseconds
     * @param minMs              fastest time, milliseconds
     * @param tflops             effective TFLOP/s
     * @param tokenDensity       allowed pairs / (L·S)
     * @param measuredPeakBytes  measured peak, or −1
     * @param predictedPeakBytes predicted peak
     * @param vramSaved          share saved against materialized, or NaN
     * @param vramBasis          "measured" or "predicted"
     * @param speedup            speed-up against the baseline, or NaN
     * @param speedupBaseline    the baseline's spec, or null
     * @param relError           relative error against full attention, or NaN
     * @param recall             mass recall against full attention, or NaN
     * @param fidelityNote       why fidelity is n/a, or null
     * @param details            work counts and routed / pruned measurements, or null
     */
    public Run {
        details = details == null ? Details.NONE : details;
    }

    /**
     * A row without work counts or routing / pruning measurements.
     *
     * @param variant            what was measured
     * @param dtype              the compute dtype
     * @param batch              B
     * @param heads              H
     * @param kvHeads            Hkv
     * @param len                L = S
     * @param dim                D
     * @param causal             the sweep's causal rule
     * @param status             "ok" or why not
     * @param engine             the engine's name
     * @param algorithmUsed      the algorithm that ran, or null
     * @param medianMs           median time, milliseconds
     * @param minMs              fastest time, milliseconds
     * @param tflops             effective TFLOP/s
     * @param tokenDensity       allowed pairs / (L·S)
     * @param measuredPeakBytes  measured peak, or −1
     * @param predictedPeakBytes predicted peak
     * @param vramSaved          share saved against materialized, or NaN
     * @param vramBasis          "measured" or "predicted"
     * @param speedup            speed-up against the baseline, or NaN
     * @param speedupBaseline    the baseline's spec, or null
     * @param relError           relative error against full attention, or NaN
     * @param recall             mass recall against full attention, or NaN
     * @param fidelityNote       why fidelity is n/a, or null
     */
    public Run(Variant variant, DType dtype, int batch, int heads, int kvHeads, int len, int dim, boolean causal, String status,
            String engine, String algorithmUsed, double medianMs, double minMs, double tflops, double tokenDensity,
            long measuredPeakBytes, long predictedPeakBytes, double vramSaved, String vramBasis, double speedup,
            String speedupBaseline, double relError, double recall, String fidelityNote) {
        this(variant, dtype, batch, heads, kvHeads, len, dim, causal, status, engine, algorithmUsed, medianMs, minMs, tflops,
                tokenDensity, measuredPeakBytes, predictedPeakBytes, vramSaved, vramBasis, speedup, speedupBaseline, relError,
                recall, fidelityNote, Details.NONE);
    }

    /** Column names of runs.csv and keys of runs.json, in order. */
    public static final List<String> COLUMNS = List.of("variant", "pattern", "dtype", "batch", "heads", "kv_heads", "len",
            "head_dim", "causal", "status", "engine", "algorithm_used", "median_ms", "min_ms", "effective_tflops",
            "token_density", "peak_vram_measured_bytes", "peak_vram_predicted_bytes", "vram_saved_vs_materialized",
            "vram_basis", "speedup_vs_full", "speedup_baseline", "rel_error_vs_full", "mass_recall", "fidelity_note",
            "query_tiles", "key_tiles_visited", "rows_skipped", "time_ratio_vs_full", "router_ms", "router_overhead_percent",
            "load_balance", "active_head_fraction", "heads_removed");

    /** {@return whether the variant is routed or pruned (the rows with the extra measurements)} */
    public boolean headVariant() {
        return variant instanceof Variant.Routed || variant instanceof Variant.Pruned;
    }

    /** {@return this row's median over the baseline's (1 / speed-up), for routed and pruned rows; NaN otherwise} */
    public double timeRatio() {
        return headVariant() && !Double.isNaN(speedup) ? 1.0 / speedup : Double.NaN;
    }

    /** {@return the router time in percent of the routed attention's median time; NaN when not routed} */
    public double routerOverheadPercent() {
        return 100.0 * details.routerMs() / medianMs;
    }

    /** This row with the comparison columns filled in. */
    Run compared(double saved, String basis, double speedupValue, String baselineSpec) {
        return new Run(variant, dtype, batch, heads, kvHeads, len, dim, causal, status, engine, algorithmUsed, medianMs, minMs,
                tflops, tokenDensity, measuredPeakBytes, predictedPeakBytes, saved, basis, speedupValue, baselineSpec, relError,
                recall, fidelityNote, details);
    }

    /** {@return whether the run was measured (status "ok")} */
    public boolean ok() {
        return "ok".equals(status);
    }

    /** {@return the effective pattern's spec (the sweep's causal rule included)} */
    public String patternSpec() {
        return causal ? variant.pattern().withCausal().spec() : variant.pattern().spec();
    }

    /** {@return the row's values in {@link #COLUMNS} order: String, Long, Integer, Double or Boolean, null for n/a} */
    public List<Object> values() {
        List<Object> v = new ArrayList<>(Arrays.asList(variant.spec(), patternSpec(), dtype.cliName(), batch, heads, kvHeads,
                len, dim, causal, status, engine, algorithmUsed, num(medianMs), num(minMs), num(tflops), num(tokenDensity),
                measuredPeakBytes < 0 ? null : measuredPeakBytes, predictedPeakBytes, num(vramSaved),
                Double.isNaN(vramSaved) ? null : vramBasis, num(speedup), Double.isNaN(speedup) ? null : speedupBaseline,
                num(relError), num(recall), fidelityNote, count(details.queryTiles()), count(details.keyTilesVisited()),
                count(details.rowsSkipped()), num(timeRatio()), num(details.routerMs()), num(routerOverheadPercent()),
                num(details.loadBalance()), num(details.activeHeadFraction()), num(details.headsRemoved())));
        if (v.size() != COLUMNS.size()) {
            throw new IllegalStateException("row has " + v.size() + " values for " + COLUMNS.size() + " columns");
        }
        return v;
    }

    private static Double num(double x) {
        return Double.isNaN(x) || Double.isInfinite(x) ? null : x;
    }

    private static Long count(long x) {
        return x < 0 ? null : x;
    }
}
