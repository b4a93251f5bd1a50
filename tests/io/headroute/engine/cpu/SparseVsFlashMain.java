package io.headroute.engine.cpu;

import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.pattern.BlockLayout;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.Tensor;
import java.util.Locale;
import java.util.Random;

/**
 * Not a test: the measurement behind {@link io.headroute.engine.AutoPolicy}'s threshold. For patterns
 * of rising block density, CPU flash and sparse (BS 64 and 128) run in turn on the same Gaussian
 * inputs, several rounds, and the best time of each is printed (the best, because the machine is shared).
 * Arguments: L (= S), H, D, rounds, then pattern specs.
 */
public final class SparseVsFlashMain {
    private SparseVsFlashMain() {}

    public static void main(String[] args) {
        int n = Integer.parseInt(args[0]);
        int heads = Integer.parseInt(args[1]);
        int d = Integer.parseInt(args[2]);
        int rounds = Integer.parseInt(args[3]);
        Random rnd = new Random(1);
        Tensor q = CpuAttentionEngineTest.gaussian(rnd, 1, heads, n, d);
        Tensor k = CpuAttentionEngineTest.gaussian(rnd, 1, heads, n, d);
        Tensor v = CpuAttentionEngineTest.gaussian(rnd, 1, heads, n, d);
        try (CpuAttentionEngine engine = new CpuAttentionEngine()) {
            System.out.printf(Locale.ROOT, "B=1 H=%d L=S=%d D=%d f32, %d threads, best of %d rounds%n", heads, n, d,
                    engine.threads(), rounds);
            System.out.printf(Locale.ROOT, "%-16s %9s %9s %10s %10s %10s %8s %8s%n", "pattern", "dens@64", "dens@128", "flash ms",
                    "sparse64", "sparse128", "f/s64", "f/s128");
            for (int a = 4; a < args.length; a++) {
                Pattern p = Patterns.parse(args[a]);
                long[] best = {Long.MAX_VALUE, Long.MAX_VALUE, Long.MAX_VALUE};
                for (int r = 0; r < rounds; r++) {
                    best[0] = Math.min(best[0], run(engine, q, k, v, p, Algorithm.FLASH, 64));
                    best[1] = Math.min(best[1], run(engine, q, k, v, p, Algorithm.SPARSE, 64));
                    best[2] = Math.min(best[2], run(engine, q, k, v, p, Algorithm.SPARSE, 128));
                }
                System.out.printf(Locale.ROOT, "%-16s %9.3f %9.3f %10.1f %10.1f %10.1f %8.2f %8.2f%n", p.spec(),
                        BlockLayout.build(p, heads, n, n, 64).density(), BlockLayout.build(p, heads, n, n, 128).density(),
                        best[0] / 1e6, best[1] / 1e6, best[2] / 1e6, (double) best[0] / best[1], (double) best[0] / best[2]);
            }
        }
    }

    private static long run(CpuAttentionEngine e, Tensor q, Tensor k, Tensor v, Pattern p, Algorithm a, int bs) {
        return e.run(AttentionRequest.builder(q, k, v).pattern(p).algorithm(a).blockSize(bs).build()).stats().elapsedNanos();
    }
}
