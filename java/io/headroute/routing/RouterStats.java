package io.headroute.routing;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Arrays;

/**
 * Router statistics over N = B·L tokens, measured from a gate (B, L, H) and the per-token router
 * probabilities (B, L, Hr). For routed head i (head Hs + i):
 * <ul>
 *   <li>{@code tokenShare[i]}: fraction of tokens whose gate for the head is non-zero (the head is in
 *       their top k; a kept probability that underflows to 0 gives gate 0, is skipped by attention and
 *       is not counted);</li>
 *   <li>{@code f[i] = tokenShare[i] / k}, so Σ f = 1 (Switch Transformer / mixture-of-heads normalization);</li>
 *   <li>{@code meanGate[i]}: the gate averaged over all N tokens, zeros included (Σ over heads = k);</li>
 *   <li>{@code meanProbability[i] = P_i}: the router probability averaged over all N tokens.</li>
 * </ul>
 * {@code loadBalance = Hr · Σ f_i · P_i}: 1.0 for perfectly balanced routing (f_i = P_i = 1/Hr), larger
 * when tokens crowd onto a few heads (Hr when k = 1 and every token goes to one head with certainty). {@code activeHeadFraction}: non-zero gate entries over
 * N·H, measured (the configuration's nominal value is (Hs + k)/H).
 *
 * @param config             the routing the statistics were measured for
 * @param tokens             N = B·L
 * @param tokenShare         per routed head, the share of tokens routed to it, in [0, 1]; Hr entries
 * @param f                  per routed head, tokenShare / k; Hr entries summing to 1 (when no kept gate underflows)
 * @param meanGate           per routed head, the mean gate over all N tokens; Hr entries
 * @param meanProbability    per routed head, the mean router probability P_i; Hr entries summing to 1
 * @param loadBalance        Hr · Σ f_i · P_i, 1 when balanced, up to Hr
 * @param activeHeadFraction non-zero gate entries over N·H, shared heads included
 */
public record RouterStats(RouterConfig config, long tokens, double[] tokenShare, double[] f, double[] meanGate,
        double[] meanProbability, double loadBalance, double activeHeadFraction) {
    /**
     * Copies the arrays, so that the record is immutable.
     *
     * @param config             the routing
     * @param tokens             N
     * @param tokenShare         Hr shares; copied
     * @param f                  Hr normalized shares; copied
     * @param meanGate           Hr mean gates; copied
     * @param meanProbability    Hr mean probabilities; copied
     * @param loadBalance        the load-balance value
     * @param activeHeadFraction the measured active fraction
     */
    public RouterStats {
        tokenShare = tokenShare.clone();
        f = f.clone();
        meanGate = meanGate.clone();
        meanProbability = meanProbability.clone();
    }

    /**
     * Statistics of {@code gate} (N × H, row-major) and {@code probs} (N × Hr, row-major) for
     * {@code config}; sums in double. With no tokens every statistic is 0.
     *
     * @param config the routing that made the gate
     * @param gate   N × H gate values
     * @param probs  N × Hr router probabilities
     * @return the statistics over the N tokens
     * @throws IllegalArgumentException when {@code gate} and {@code probs} do not hold the same number of tokens
     */
    public static RouterStats of(RouterConfig config, float[] gate, float[] probs) {
        int h = config.heads();
        int hr = config.routedHeads();
        int hs = config.sharedHeads();
        if (gate.length % h != 0 || probs.length % hr != 0 || gate.length / h != probs.length / hr) {
            throw new IllegalArgumentException("gate of " + gate.length + " values and probabilities of " + probs.length
                    + " do not describe the same tokens for H = " + h + ", Hr = " + hr);
        }
        long n = gate.length / h;
        long[] routed = new long[hr];
        double[] gateSum = new double[hr];
        double[] probSum = new double[hr];
        long active = 0;
        for (long t = 0; t < n; t++) {
            int row = (int) (t * h);
            for (int j = 0; j < h; j++) {
                float g = gate[row + j];
                if (g != 0f) {
                    active++;
                }
                if (j >= hs) {
                    int i = j - hs;
                    if (g != 0f) {
                        routed[i]++;
                    }
                    gateSum[i] += g;
                    probSum[i] += probs[(int) (t * hr) + i];
                }
            }
        }
        double[] share = new double[hr];
        double[] f = new double[hr];
        double[] meanGate = new double[hr];
        double[] meanP = new double[hr];
        double balance = 0;
        for (int i = 0; i < hr; i++) {
            share[i] = n == 0 ? 0 : routed[i] / (double) n;
            f[i] = share[i] / config.k();
            meanGate[i] = n == 0 ? 0 : gateSum[i] / n;
            meanP[i] = n == 0 ? 0 : probSum[i] / n;
            balance += f[i] * meanP[i];
        }
        return new RouterStats(config, n, share, f, meanGate, meanP, hr * balance,
                n == 0 ? 0 : active / ((double) n * h));
    }

    /**
     * Writes the statistics into {@code n}: tokens, load balance, active heads, and one object per routed head.
     *
     * @param n the JSON object to add the fields {@code tokens}, {@code load_balance},
     *          {@code active_head_fraction}, {@code active_head_fraction_nominal} and {@code routed_heads} to
     */
    public void writeJson(ObjectNode n) {
        n.put("tokens", tokens);
        n.put("load_balance", loadBalance);
        n.put("active_head_fraction", activeHeadFraction);
        n.put("active_head_fraction_nominal", config.activeFraction());
        ArrayNode heads = n.putArray("routed_heads");
        for (int i = 0; i < config.routedHeads(); i++) {
            ObjectNode h = heads.addObject();
            h.put("head", config.sharedHeads() + i);
            h.put("token_share", tokenShare[i]);
            h.put("f", f[i]);
            h.put("mean_gate", meanGate[i]);
            h.put("mean_probability", meanProbability[i]);
        }
    }

    /** {@return per routed head, the share of tokens routed to it, a copy} */
    @Override
    public double[] tokenShare() {
        return tokenShare.clone();
    }

    /** {@return per routed head, tokenShare / k, a copy} */
    @Override
    public double[] f() {
        return f.clone();
    }

    /** {@return per routed head, the gate averaged over all tokens, a copy} */
    @Override
    public double[] meanGate() {
        return meanGate.clone();
    }

    /** {@return per routed head, the router probability averaged over all tokens, a copy} */
    @Override
    public double[] meanProbability() {
        return meanProbability.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof RouterStats s && config.equals(s.config) && tokens == s.tokens
                && Arrays.equals(tokenShare, s.tokenShare) && Arrays.equals(f, s.f) && Arrays.equals(meanGate, s.meanGate)
                && Arrays.equals(meanProbability, s.meanProbability) && Double.compare(loadBalance, s.loadBalance) == 0
                && Double.compare(activeHeadFraction, s.activeHeadFraction) == 0;
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(f) * 31 + Long.hashCode(tokens);
    }

    @Override
    public String toString() {
        return "RouterStats[" + config + ", " + tokens + " tokens, load balance " + loadBalance + ", active heads "
                + activeHeadFraction + "]";
    }
}
