package io.headroute.model.gpu;

import io.headroute.cuda.memory.Bytes;
import io.headroute.cuda.memory.DevicePool;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionShape;
import io.headroute.model.HeadSelection;
import io.headroute.model.LayerSpec;
import io.headroute.model.ModelConfig;
import io.headroute.model.PackedWeights;
import io.headroute.model.RotaryTable;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The device memory a {@link LayerScheduler} will hold for a model, computed without running: from the
 * config, B, L, where the weights live and whether gates are given. It lists every buffer the scheduler
 * allocates (the scheduler allocates exactly these), so the predicted peak is exact in the pool's
 * accounting (requests rounded up to {@link DevicePool#ROUNDING} bytes) on a pool whose cache holds no other
 * sizes: the cache may serve a request with a free block up to 1/8 larger, counted at its size (passes of
 * different L on one pool measured up to 5% above the plan):
 *
 * <ul>
 *   <li>{@code weights}: every layer's packed, pruned weights (resident), or two slots of the largest
 *       layer (just in time; one slot for a one-layer model);</li>
 *   <li>{@code residual}: the residual stream (B, L, d_model), updated in place: the output projection
 *       accumulates into it (GEMM with beta = 1), which is the residual add;</li>
 *   <li>{@code rope}: the (L, D/2) cos/sin table, float32;</li>
 *   <li>{@code norm}, {@code q}, {@code k}, {@code v}, {@code attn_out}: per-layer scratch sized for the
 *       layer with the most active heads and reused by every layer, so nothing grows with the number of
 *       layers;</li>
 *   <li>{@code gate}: one layer's compacted gate (B, L, active heads) float32, when gates are given or a
 *       layer is routed;</li>
 *   <li>{@code router}: for a model with routed layers, the router's logits (B, L, Hr) and its gate
 *       (B, L, H), float32, shared by the routed layers (the router weights travel in the layer's
 *       {@code weights} image);</li>
 *   <li>{@code attn_workspace}: the largest workspace an attention call asks for (materialized: the
 *       score matrices; flash and sparse: a sparse layout's arrays and a gated call's device work
 *       list), when any.</li>
 * </ul>
 * cuBLAS's own workspace and the CUDA context are outside the pool and not counted.
 */
public final class MemoryPlan {
    /** Pool tag of the packed layer weights. */
    public static final String WEIGHTS = "weights";
    /** Pool tag of the residual stream (B, L, d_model). */
    public static final String RESIDUAL = "residual";
    /** Pool tag of the rotary cos/sin table. */
    public static final String ROPE = "rope";
    /** Pool tag of the normed input (B, L, d_model). */
    public static final String NORM = "norm";
    /** Pool tag of the queries (B, L, active heads, D). */
    public static final String Q = "q";
    /** Pool tag of the keys (B, L, active key/value heads, D). */
    public static final String K = "k";
    /** Pool tag of the values (B, L, active key/value heads, D). */
    public static final String V = "v";
    /** Pool tag of the attention output before Wo (B, L, active heads, D). */
    public static final String ATTN_OUT = "attn_out";
    /** Pool tag of one layer's compacted gate, float32. */
    public static final String GATE = "gate";
    /** Pool tag of the attention workspace. */
    public static final String WORKSPACE = "attn_workspace";
    /** Pool tag of the router's logits and gate. */
    public static final String ROUTER = "router";

    /**
     * One device buffer: its tag and the bytes requested.
     *
     * @param tag   the pool tag, one of this class's constants
     * @param bytes the bytes requested (before the pool's rounding)
     */
    public record Buffer(String tag, long bytes) {
        /** {@return the bytes the pool accounts for it: {@code bytes} rounded up to {@link DevicePool#ROUNDING}} */
        public long accountedBytes() {
            return roundUp(bytes);
        }
    }

    /** Device scratch one attention call needs ({@link DeviceAttention#workspaceBytes}'s signature). */
    @FunctionalInterface
    public interface Workspace {
        /**
         * {@return the workspace bytes of one call, 0 for none}
         *
         * @param shape     the call's sizes
         * @param dtype     the compute dtype
         * @param algorithm the algorithm
         * @param pattern   the call's effective pattern
         * @param gateBlock 0, 1 or the router block Bq ({@link DeviceAttentionCall#gateBlock})
         */
        long bytes(AttentionShape shape, DType dtype, Algorithm algorithm, Pattern pattern, int gateBlock);

        /** The standard algorithms' needs ({@link DeviceAttention}'s default). */
        Workspace STANDARD = (s, d, a, p, g) -> a == Algorithm.MATERIALIZED
                ? (long) s.batch() * s.heads() * s.qLen() * s.kvLen() * d.byteSize()
                : 0;
    }

    private final ModelConfig config;
    private final int batch;
    private final int len;
    private final WeightPlacement placement;
    private final List<Buffer> weights;
    private final List<Buffer> scratch;
    private final long residentWeights;

    private MemoryPlan(ModelConfig config, int batch, int len, WeightPlacement placement, List<Buffer> weights,
            List<Buffer> scratch) {
        this.config = config;
        this.batch = batch;
        this.len = len;
        this.placement = placement;
        this.weights = List.copyOf(weights);
        this.scratch = List.copyOf(scratch);
        this.residentWeights = sum(weightBuffers(config, WeightPlacement.RESIDENT));
    }

    /**
     * The plan with the standard attention workspace.
     *
     * @param c         the model config
     * @param batch     B
     * @param len       L
     * @param placement where the weights live
     * @param gates     whether the caller gives gates
     * @return the plan
     */
    public static MemoryPlan of(ModelConfig c, int batch, int len, WeightPlacement placement, boolean gates) {
        return of(c, batch, len, placement, gates, Workspace.STANDARD);
    }

    /**
     * The plan with the workspaces {@code ws} reports (a bound attention's).
     *
     * @param c         the model config
     * @param batch     B
     * @param len       L
     * @param placement where the weights live
     * @param gates     whether the caller gives gates
     * @param ws        each attention call's workspace
     * @return the plan
     */
    public static MemoryPlan of(ModelConfig c, int batch, int len, WeightPlacement placement, boolean gates, Workspace ws) {
        return new MemoryPlan(c, batch, len, placement, weightBuffers(c, placement), scratchBuffers(c, batch, len, gates, ws));
    }

    /**
     * How a layer's gate may vary, as its attention calls are told ({@link DeviceAttentionCall#gateBlock}):
     * a routed layer's router block Bq (1 per token), 1 for a gate the caller gives (any rows), 0 without a gate.
     *
     * @param s         the layer
     * @param gateGiven whether the caller gives the layer a gate
     * @return Bq, 1 or 0
     */
    public static int gateBlock(LayerSpec s, boolean gateGiven) {
        return s.routed() ? s.router().block() : gateGiven ? 1 : 0;
    }

    /** Pool rounding, as {@link DevicePool} applies it. */
    static long roundUp(long bytes) {
        return (Math.max(bytes, 1) + DevicePool.ROUNDING - 1) / DevicePool.ROUNDING * DevicePool.ROUNDING;
    }

    /**
     * {@return the bytes the pool accounts for the weights of {@code c} in {@code placement}} (a pass's scratch
     * aside).
     *
     * @param c         the model config
     * @param placement where the weights live
     */
    public static long weightBytes(ModelConfig c, WeightPlacement placement) {
        return sum(weightBuffers(c, placement));
    }

    /** The weight buffers, allocated when the scheduler is built and held until it closes. */
    static List<Buffer> weightBuffers(ModelConfig c, WeightPlacement placement) {
        List<Buffer> out = new ArrayList<>();
        long max = 0;
        for (int i = 0; i < c.layerCount(); i++) {
            long bytes = PackedWeights.offsets(c, i)[PackedWeights.TOTAL];
            max = Math.max(max, bytes);
            if (placement == WeightPlacement.RESIDENT) {
                out.add(new Buffer(WEIGHTS, bytes));
            }
        }
        if (placement == WeightPlacement.JUST_IN_TIME) {
            for (int i = 0; i < Math.min(2, c.layerCount()); i++) {
                out.add(new Buffer(WEIGHTS, max));
            }
        }
        return out;
    }

    /**
     * The buffers of one forward pass, in allocation order; freed when it ends. {@code gates}: whether
     * the caller gives gates (routed layers make their own).
     */
    static List<Buffer> scratchBuffers(ModelConfig c, int batch, int len, boolean gates, Workspace ws) {
        long rows = (long) batch * len;
        long es = c.dtype().byteSize();
        int maxQ = 0;
        int maxKv = 0;
        int maxHr = 0;
        long maxWs = 0;
        for (LayerSpec s : c.layers()) {
            if (s.routed()) {
                maxHr = Math.max(maxHr, s.router().routedHeads());
            }
            HeadSelection sel = HeadSelection.of(c, s);
            maxQ = Math.max(maxQ, sel.headCount());
            maxKv = Math.max(maxKv, sel.kvHeadCount());
            for (HeadSelection.Call call : sel.calls()) {
                AttentionShape shape = new AttentionShape(batch, call.qCount(), call.kvCount(), len, len, c.headDim());
                Pattern p = sel.pattern(s.pattern(), call, len);
                maxWs = Math.max(maxWs, ws.bytes(shape, c.dtype(), s.algorithm(), s.causal() ? p.withCausal() : p,
                        gateBlock(s, gates)));
            }
        }
        List<Buffer> out = new ArrayList<>();
        out.add(new Buffer(RESIDUAL, rows * c.dModel() * es));
        out.add(new Buffer(ROPE, RotaryTable.byteSize(len, c.headDim())));
        out.add(new Buffer(NORM, rows * c.dModel() * es));
        out.add(new Buffer(Q, rows * maxQ * c.headDim() * es));
        out.add(new Buffer(K, rows * maxKv * c.headDim() * es));
        out.add(new Buffer(V, rows * maxKv * c.headDim() * es));
        out.add(new Buffer(ATTN_OUT, rows * maxQ * c.headDim() * es));
        if (gates || maxHr > 0) {
            out.add(new Buffer(GATE, rows * maxQ * 4));
        }
        if (maxHr > 0) {
            out.add(new Buffer(ROUTER, rows * maxHr * 4)); // logits
            out.add(new Buffer(ROUTER, rows * c.heads() * 4)); // the router's gate over all H heads
        }
        if (maxWs > 0) {
            out.add(new Buffer(WORKSPACE, maxWs));
        }
        return out;
    }

    private static long sum(List<Buffer> bs) {
        long n = 0;
        for (Buffer b : bs) {
            n += b.accountedBytes();
        }
        return n;
    }

    /** {@return the weight buffers then the scratch buffers, in the order the scheduler allocates them; unmodifiable} */
    public List<Buffer> buffers() {
        List<Buffer> all = new ArrayList<>(weights);
        all.addAll(scratch);
        return Collections.unmodifiableList(all);
    }

    /** {@return the predicted peak bytes per tag (every buffer is live at the peak); unmodifiable} */
    public Map<String, Long> bytesByTag() {
        Map<String, Long> m = new LinkedHashMap<>();
        for (Buffer b : buffers()) {
            m.merge(b.tag(), b.accountedBytes(), Long::sum);
        }
        return Collections.unmodifiableMap(m);
    }

    /** {@return the predicted peak of the pool's allocated bytes during a forward pass} */
    public long totalBytes() {
        return sum(weights) + sum(scratch);
    }

    /** {@return the device bytes of the weights under this plan's placement} */
    public long weightBytes() {
        return sum(weights);
    }

    /** {@return the device bytes just-in-time weights save against resident ones (0 for a resident plan)} */
    public long savedByJustInTime() {
        return residentWeights - sum(weights);
    }

    /** {@return where the weights live} */
    public WeightPlacement placement() {
        return placement;
    }

    /** {@return the model config planned for} */
    public ModelConfig config() {
        return config;
    }

    /** {@return B} */
    public int batch() {
        return batch;
    }

    /** {@return L} */
    public int length() {
        return len;
    }

    /**
     * {@return whether the plan's total fits in {@code freeBytes}}
     *
     * @param freeBytes the device memory available
     */
    public boolean fits(long freeBytes) {
        return totalBytes() <= freeBytes;
    }

    /**
     * {@return "needs 41.30 GiB, card has 79.10 GiB free"}, for messages
     *
     * @param freeBytes the device memory available
     */
    public String fitMessage(long freeBytes) {
        return "needs " + Bytes.format(totalBytes()) + ", card has " + Bytes.format(freeBytes) + " free";
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("memory plan (B=" + batch + ", L=" + len + ", " + config.layerCount() + " layers, "
                + placement.cliName() + " weights): " + Bytes.format(totalBytes()));
        bytesByTag().forEach((t, b) -> sb.append("; ").append(t).append(' ').append(Bytes.format(b)));
        if (placement == WeightPlacement.JUST_IN_TIME) {
            sb.append("; just-in-time weights save ").append(Bytes.format(savedByJustInTime()));
        }
        return sb.toString();
    }
}
