// headroute: the head router's softmax, top-k and renormalization (mixture-of-heads routing).
//
// cuBLAS writes the router logits Z = X·Wr, (B·L, Hr) float32. For each group of tokens (one token,
// or a query block of Bq tokens; the last block of a sequence may be shorter) one warp computes
//   P_t = softmax(Z_t) over the Hr routed heads, per token t,
//   P̄   = mean of P_t over the group's tokens,
//   K    = the k largest entries of P̄ (ties → the lower head index),
//   g_j  = k · P̄_j / Σ_{i∈K} P̄_i for j ∈ K, else 0,
// and writes the gate (B, L, H): 1 for the Hs shared heads 0..Hs−1, g_j for routed head Hs + j, to
// every token of the group. Lane l owns routed heads l and l + 32, so Hr ≤ 64.
// CPU twin: io.headroute.routing.CpuHeadRouter (same order of operations, fp32).
#include <cstddef>
#include <cstdint>

struct RouterParams {
    const float* logits;  // (B·L, Hr) row-major: Z = X·Wr
    float* gate;          // (B, L, H) row-major, H = Hs + Hr
    float* probs;         // (B·L, Hr) per-token probabilities P_t, for statistics; nullable
    int batch, q_len;     // B, L
    int heads;            // H
    int shared;           // Hs: heads 0..Hs−1 always get gate 1
    int routed;           // Hr ≤ 64
    int k;                // heads kept per group, 1 ≤ k ≤ Hr
    int block;            // Bq tokens per group (1 = per token)
    int groups;           // B · ceil(L / Bq)
};
static_assert(sizeof(RouterParams) == 56, "RouterParams layout changed: update RouterParams.java");
static_assert(offsetof(RouterParams, batch) == 24, "RouterParams layout changed: update RouterParams.java");

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kPerLane = 2;  // routed heads per lane
static_assert(32 * kPerLane == 64, "Hr ≤ 64 is what RouterParams.java checks");

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// (v, j) beats (w, i) when v > w, or v == w and j < i: the top-k order with ties to the lower index.
__device__ __forceinline__ bool beats(float v, int j, float w, int i) { return v > w || (v == w && j < i); }

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) hr_router_topk(const RouterParams p) {
    const int lane = threadIdx.x & 31;
    const int64_t group = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (group >= p.groups) return;  // whole warps leave together
    // The host clamps Bq to L (RouterParams.encode); written so that no Bq overflows int all the same.
    const int blocks_per_seq = p.q_len / p.block + (p.q_len % p.block != 0);
    const int b = (int)(group / blocks_per_seq);
    const int t0 = (int)(group % blocks_per_seq) * p.block;
    const int t1 = (int)min((int64_t)t0 + p.block, (int64_t)p.q_len);

    // P̄_j = Σ_t P_t,j / n, summed in token order
    float acc[kPerLane] = {0.f, 0.f};
    for (int t = t0; t < t1; ++t) {
        const int64_t row = (int64_t)b * p.q_len + t;
        const float* z = p.logits + row * p.routed;
        float zj[kPerLane];
        float m = neg_inf();
#pragma unroll
        for (int s = 0; s < kPerLane; ++s) {
            const int j = lane + 32 * s;
            zj[s] = j < p.routed ? z[j] : neg_inf();
            m = fmaxf(m, zj[s]);
        }
        // m = max_j Z_t,j ; l = Σ_j exp(Z_t,j − m) ; P_t,j = exp(Z_t,j − m) / l
        m = warp_max(m);
        float e[kPerLane];
        float l = 0.f;
#pragma unroll
        for (int s = 0; s < kPerLane; ++s) {
            e[s] = lane + 32 * s < p.routed ? expf(zj[s] - m) : 0.f;
            l += e[s];
        }
        l = warp_sum(l);
#pragma unroll
        for (int s = 0; s < kPerLane; ++s) {
            const int j = lane + 32 * s;
            const float pj = e[s] / l;
            acc[s] += pj;
            if (p.probs != nullptr && j < p.routed) p.probs[row * p.routed + j] = pj;
        }
    }
    const float n = (float)(t1 - t0);
    float avg[kPerLane];
#pragma unroll
    for (int s = 0; s < kPerLane; ++s) avg[s] = acc[s] / n;

    // K: k rounds of a warp-wide argmax over the heads not yet kept; Σ_K P̄ summed in rank order.
    bool kept[kPerLane] = {false, false};
    float kept_sum = 0.f;
    for (int r = 0; r < p.k; ++r) {
        float best = -1.f;  // every probability is ≥ 0
        int best_j = 0x7fffffff;
#pragma unroll
        for (int s = 0; s < kPerLane; ++s) {
            const int j = lane + 32 * s;
            if (j < p.routed && !kept[s] && beats(avg[s], j, best, best_j)) {
                best = avg[s];
                best_j = j;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float v = __shfl_xor_sync(0xffffffffu, best, o);
            const int j = __shfl_xor_sync(0xffffffffu, best_j, o);
            if (beats(v, j, best, best_j)) {
                best = v;
                best_j = j;
            }
        }
        kept_sum += best;
#pragma unroll
        for (int s = 0; s < kPerLane; ++s)
            if (lane + 32 * s == best_j) kept[s] = true;
    }

    // g_j = P̄_j / Σ_K P̄ · k on the kept heads, 0 elsewhere; shared heads 1.
    float g[kPerLane];
#pragma unroll
    for (int s = 0; s < kPerLane; ++s) g[s] = kept[s] ? avg[s] / kept_sum * (float)p.k : 0.f;
    for (int t = t0; t < t1; ++t) {
        float* out = p.gate + ((int64_t)b * p.q_len + t) * p.heads;
        for (int h = lane; h < p.shared; h += 32) out[h] = 1.f;
#pragma unroll
        for (int s = 0; s < kPerLane; ++s) {
            const int j = lane + 32 * s;
            if (j < p.routed) out[p.shared + j] = g[s];
        }
    }
}
