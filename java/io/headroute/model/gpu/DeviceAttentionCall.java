package io.headroute.model.gpu;

import io.headroute.engine.Algorithm;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;

/**
 * One attention call on device memory, in the contract's terms, with explicit strides so that Q, K, V
 * and O are read and written where the projections put them, without copies. Layouts as the
 * scheduler uses them: Q and O rows (b, t) hold the layer's active heads side by side, (B, L, H', D),
 * so q's strides are {L·H'·D, D, H'·D}; K and V likewise over the active key/value heads.
 *
 * @param q                 device address of q's first element (dtype elements)
 * @param k                 device address of k's first element
 * @param v                 device address of v's first element
 * @param o                 device address of o's first element, written by the call
 * @param gate              (B, L, heads) float32, contiguous, or 0 for no gate
 * @param workspace         device scratch of {@code workspaceBytes} bytes the call may use (0 if none)
 * @param workspaceBytes    the workspace's size in bytes ({@link DeviceAttention#workspaceBytes} of the call)
 * @param qStrides          {batch, head, row} strides of q in elements
 * @param kStrides          {batch, head, row} strides of k in elements
 * @param vStrides          {batch, head, row} strides of v in elements
 * @param oStrides          {batch, head, row} strides of o in elements
 * @param batch             B
 * @param heads             H' of the call, a multiple of kvHeads
 * @param kvHeads           Hkv' of the call
 * @param qLen              L
 * @param kvLen             S (= L in a model layer)
 * @param headDim           D
 * @param pattern           the pattern with the causal rule folded in; head i of the call is head i here
 * @param scale             softmax scale
 * @param dtype             the dtype of q, k, v and o: f32, f16 or bf16
 * @param algorithm         the algorithm
 * @param gateBlock         how the gate may vary, which decides the work list built on the device from it:
 *                          0: none (whole grid); 1: row by row (per-token routing, a caller's gate); Bq &gt; 1:
 *                          constant over aligned blocks of Bq query rows (block routing); see
 *                          {@link MemoryPlan#gateBlock}
 */
public record DeviceAttentionCall(long q, long k, long v, long o, long gate, long workspace, long workspaceBytes,
        long[] qStrides, long[] kStrides, long[] vStrides, long[] oStrides, int batch, int heads, int kvHeads, int qLen,
        int kvLen, int headDim, Pattern pattern, float scale, DType dtype, Algorithm algorithm, int gateBlock) {}
