package io.headroute.routing;

import io.headroute.engine.cpu.CpuAttentionEngine;
import io.headroute.tensor.DType;
import io.headroute.tensor.Tensor;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ForkJoinPool;
import java.util.stream.IntStream;

/**
 * The head router on the CPU, and the twin of {@code cuda-kernels/router.cu}: the same fp32 operations
 * (softmax with the row maximum subtracted, block sums in token order, the kept sum in rank order);
 * only the GEMM's and the softmax sum's summation orders differ, so the two agree to rounding.
 */
public final class CpuHeadRouter implements HeadRouter {
    private final ForkJoinPool pool;
    private final int threads;
    private volatile boolean closed;

    /**
     * A router on a fork-join pool of {@code threads} workers; {@link #close} shuts it down.
     *
     * @param threads the worker count, 1 … {@link CpuAttentionEngine#MAX_THREADS}
     * @throws IllegalArgumentException when {@code threads} is out of that range
     */
    public CpuHeadRouter(int threads) {
        if (threads <= 0 || threads > CpuAttentionEngine.MAX_THREADS) {
            throw new IllegalArgumentException("CPU threads must be in 1.." + CpuAttentionEngine.MAX_THREADS + ", got " + threads);
        }
        this.threads = threads;
        this.pool = new ForkJoinPool(threads);
    }

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public String device() {
        return "CPU, " + threads + " threads";
    }

    @Override
    public RouterOutput route(Tensor x, Tensor wr, RouterConfig config, DType dtype) {
        if (closed) {
            throw new IllegalStateException("CPU head router is closed");
        }
        HeadRouter.checkInputs(x, wr, config, dtype);
        int b = (int) x.dim(0);
        int l = (int) x.dim(1);
        int d = (int) x.dim(2);
        int hr = config.routedHeads();
        int h = config.heads();
        // On the given values, so that a message can say "in f16 (1000000.0 -> Infinity)".
        HeadRouter.checkLogitBound(x.requireFinite("X", dtype), wr.requireFinite("Wr", dtype), d);
        float[] xs = rounded(x, dtype);
        float[] ws = rounded(wr, dtype);
        long start = System.nanoTime();
        float[] probs = new float[b * l * hr];
        float[] gate = new float[b * l * h];
        int bq = Math.min(config.block(), l); // a block of at least L tokens is the whole sequence
        int blocksPerSeq = (l + bq - 1) / bq;
        run(IntStream.range(0, b * blocksPerSeq), g -> {
            int bb = g / blocksPerSeq;
            int t0 = (g % blocksPerSeq) * bq;
            int t1 = Math.min(t0 + bq, l);
            float[] z = new float[hr];
            float[] acc = new float[hr];
            for (int t = t0; t < t1; t++) {
                int row = bb * l + t;
                logits(xs, ws, row, d, hr, z);
                softmax(z, probs, row * hr);
                for (int j = 0; j < hr; j++) {
                    acc[j] += probs[row * hr + j];
                }
            }
            float n = t1 - t0;
            for (int j = 0; j < hr; j++) {
                acc[j] = acc[j] / n;
            }
            float[] routedGates = gates(acc, config.k());
            for (int t = t0; t < t1; t++) {
                int row = (bb * l + t) * h;
                for (int j = 0; j < config.sharedHeads(); j++) {
                    gate[row + j] = 1f;
                }
                System.arraycopy(routedGates, 0, gate, row + config.sharedHeads(), hr);
            }
        });
        long elapsed = System.nanoTime() - start;
        return new RouterOutput(Tensor.ofFloats(gate, b, l, h), Tensor.ofFloats(probs, b, l, hr),
                RouterStats.of(config, gate, probs), name(), elapsed);
    }

    /** z_j = Σ_c x[row, c] · Wr[c, j], fp32, c ascending. */
    private static void logits(float[] x, float[] w, int row, int d, int hr, float[] z) {
        java.util.Arrays.fill(z, 0f);
        int xo = row * d;
        for (int c = 0; c < d; c++) {
            float xv = x[xo + c];
            int wo = c * hr;
            for (int j = 0; j < hr; j++) {
                z[j] += xv * w[wo + j];
            }
        }
    }

    /** out[j] = exp(z_j − max z) / Σ exp(z_i − max z). */
    static void softmax(float[] z, float[] out, int at) {
        float m = Float.NEGATIVE_INFINITY;
        for (float v : z) {
            m = Math.max(m, v);
        }
        float l = 0f;
        for (int j = 0; j < z.length; j++) {
            float e = (float) Math.exp(z[j] - m);
            out[at + j] = e;
            l += e;
        }
        for (int j = 0; j < z.length; j++) {
            out[at + j] = out[at + j] / l;
        }
    }

    /**
     * The routed heads' gates from (averaged) probabilities: the top k (ties to the lower index), each
     * divided by the kept sum (summed in rank order) and multiplied by k; the others 0.
     */
    static float[] gates(float[] p, int k) {
        boolean[] kept = new boolean[p.length];
        float keptSum = 0f;
        for (int r = 0; r < k; r++) {
            int best = -1;
            for (int j = 0; j < p.length; j++) {
                if (!kept[j] && (best < 0 || p[j] > p[best])) {
                    best = j; // strict '>' keeps the lower index on ties
                }
            }
            kept[best] = true;
            keptSum += p[best];
        }
        float[] g = new float[p.length];
        for (int j = 0; j < p.length; j++) {
            g[j] = kept[j] ? p[j] / keptSum * k : 0f;
        }
        return g;
    }

    private void run(IntStream range, java.util.function.IntConsumer body) {
        try {
            pool.submit(() -> range.parallel().forEach(body)).get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while routing", e);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof RuntimeException r) {
                throw r;
            }
            if (c instanceof Error err) {
                throw err;
            }
            throw new IllegalStateException(c);
        }
    }

    private static float[] rounded(Tensor t, DType dtype) {
        return dtype == DType.F32 || t.dtype() == dtype ? t.toFloatArray() : t.toDType(dtype).toFloatArray();
    }

    @Override
    public void close() {
        closed = true;
        pool.shutdownNow();
    }
}
