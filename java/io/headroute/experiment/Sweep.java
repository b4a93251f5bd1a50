package io.headroute.experiment;

import io.headroute.bench.AttentionBenchmark;
import io.headroute.engine.AttentionShape;
import io.headroute.tensor.DType;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * What an experiment measures: every combination of dtype, head count and sequence length (L = S),
 * each with every variant, on the same seeded Gaussian inputs per combination.
 *
 * @param lens     the sequence lengths L = S, distinct, positive
 * @param variants the variants, distinct
 * @param dtypes   the compute dtypes, distinct
 * @param heads    the query head counts H, distinct, positive
 * @param kvHeads  key/value heads, or 0 for "as many as the query heads"
 * @param dim      D
 * @param batch    B
 * @param causal   whether the causal rule is added to every variant's pattern
 * @param warmup   untimed calls per run
 * @param repeats  timed calls per run; the median is reported
 * @param seed     seed of the Gaussian inputs
 */
public record Sweep(List<Integer> lens, List<Variant> variants, List<DType> dtypes, List<Integer> heads, int kvHeads, int dim,
        int batch, boolean causal, int warmup, int repeats, long seed) {
    /**
     * Validates the sweep and copies its lists: every shape must be valid and fit Java arrays, and every variant
     * must run at every head count (checked at the first length).
     *
     * @param lens     lengths, non-empty, distinct, positive
     * @param variants variants, non-empty, distinct
     * @param dtypes   f32, f16 or bf16, non-empty, distinct
     * @param heads    head counts, non-empty, distinct, positive
     * @param kvHeads  Hkv dividing every H, or 0
     * @param dim      D, positive
     * @param batch    B, positive
     * @param causal   the causal rule
     * @param warmup   0 … {@link AttentionBenchmark#MAX_REPEATS}
     * @param repeats  1 … {@link AttentionBenchmark#MAX_REPEATS}
     * @param seed     the inputs' seed
     * @throws IllegalArgumentException with a one-line message naming the option at fault
     */
    public Sweep {
        lens = distinct("--lens", lens);
        variants = distinct("--variants", variants);
        dtypes = distinct("--dtypes", dtypes);
        heads = distinct("--heads", heads);
        for (int l : lens) {
            positive("--lens", l);
        }
        for (int h : heads) {
            positive("--heads", h);
        }
        if (kvHeads < 0) {
            throw new IllegalArgumentException("--kv-heads must be >= 0 (0: as many as the query heads), got " + kvHeads);
        }
        positive("--dim", dim);
        positive("--batch", batch);
        if (repeats <= 0 || repeats > AttentionBenchmark.MAX_REPEATS) {
            throw new IllegalArgumentException("--repeats must be in 1.." + AttentionBenchmark.MAX_REPEATS + ", got " + repeats);
        }
        if (warmup < 0 || warmup > AttentionBenchmark.MAX_REPEATS) {
            throw new IllegalArgumentException("--warmup must be in 0.." + AttentionBenchmark.MAX_REPEATS + ", got " + warmup);
        }
        for (DType d : dtypes) {
            if (d != DType.F32 && d != DType.F16 && d != DType.BF16) {
                throw new IllegalArgumentException("--dtypes: " + d.cliName() + " is not a compute dtype (f32, f16, bf16)");
            }
        }
        for (int h : heads) {
            // The shapes first (H divisible by Hkv, sizes an array holds): the variants' checks take them as given.
            for (int l : lens) {
                AttentionShape sh = new AttentionShape(batch, h, kvHeads == 0 ? h : kvHeads, l, l, dim);
                long most = Math.max(sh.qElements(), sh.kvElements());
                if (most > Integer.MAX_VALUE - 8) {
                    throw new IllegalArgumentException("an input of " + most + " elements (" + sh
                            + ") is more than one Java array holds; use smaller sizes");
                }
            }
            for (Variant v : variants) {
                v.check(h, kvHeads == 0 ? h : kvHeads, lens.get(0));
            }
        }
    }

    /**
     * {@return the key/value heads for {@code h} query heads}: {@code kvHeads}, or h when it is 0
     *
     * @param h the query heads
     */
    public int kvHeadsFor(int h) {
        return kvHeads == 0 ? h : kvHeads;
    }

    /** {@return the number of (dtype, heads, length, variant) runs} */
    public int runCount() {
        return lens.size() * variants.size() * dtypes.size() * heads.size();
    }

    /**
     * Parses {@code --lens}: a comma list ({@code 1024,2048,4096}) or a doubling range
     * ({@code 1024..32768}: 1024, 2048, … up to and including the end if it is reached by doubling).
     *
     * @param text the option's value
     * @return the lengths in the order given
     * @throws IllegalArgumentException for an empty value, a non-integer, a length below 1 or a range ending below
     *                                  its start
     */
    public static List<Integer> parseLens(String text) {
        String s = Objects.requireNonNullElse(text, "").strip();
        if (s.isEmpty()) {
            throw new IllegalArgumentException("--lens is empty (expected e.g. 1024,2048 or 1024..32768)");
        }
        int dots = s.indexOf("..");
        List<Integer> out = new ArrayList<>();
        if (dots >= 0) {
            int from = lenValue(s, s.substring(0, dots));
            int to = lenValue(s, s.substring(dots + 2));
            if (to < from) {
                throw new IllegalArgumentException("--lens '" + s + "': the range ends below its start");
            }
            for (long l = from; l <= to; l *= 2) {
                out.add((int) l);
            }
            return out;
        }
        for (String part : s.split(",", -1)) {
            out.add(lenValue(s, part));
        }
        return out;
    }

    private static int lenValue(String all, String part) {
        String p = part.strip();
        int v;
        try {
            v = Integer.parseInt(p);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--lens '" + all + "': '" + p + "' is not a length (expected e.g. 1024,2048 or "
                    + "1024..32768)");
        }
        if (v <= 0) {
            throw new IllegalArgumentException("--lens '" + all + "': lengths must be positive, got " + v);
        }
        return v;
    }

    private static void positive(String option, int v) {
        if (v <= 0) {
            throw new IllegalArgumentException(option + " must be positive, got " + v);
        }
    }

    /** A value as the user writes it: a variant by its spec ("flash", "sparse:window:256"), not as a record; a dtype as "f16". */
    private static String shown(Object value) {
        return value instanceof Variant v ? v.spec() : value instanceof DType d ? d.cliName() : String.valueOf(value);
    }

    private static <T> List<T> distinct(String option, List<T> values) {
        Objects.requireNonNull(values, option);
        if (values.isEmpty()) {
            throw new IllegalArgumentException(option + " is empty");
        }
        Set<T> seen = new LinkedHashSet<>();
        for (T v : values) {
            if (!seen.add(v)) {
                throw new IllegalArgumentException(option + " lists " + shown(v) + " twice: " + String.join(",",
                        values.stream().map(Sweep::shown).toList()));
            }
        }
        return List.copyOf(values);
    }
}
