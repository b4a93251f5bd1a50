// headroute: the one flat parameter record of the attention kernels.
//
// Mirrored field by field (same order, same offsets) by io.headroute.engine.cuda.AttentionParams on the
// Java side, which writes it little-endian into the kernel's by-value argument. Pointers first, then
// 64-bit strides, then 32-bit sizes and scalars, so there is no padding to disagree about.
#pragma once
#include <cstddef>
#include <cstdint>

struct AttnParams {
    const void* q;          // (B, H, L, D) in the kernel's dtype, rows 16-byte aligned
    const void* k;          // (B, Hkv, S, D)
    const void* v;          // (B, Hkv, S, D)
    void* o;                // (B, H, L, D), same dtype as q
    float* lse;             // (B, H, L) natural-log log-sum-exp of the scaled scores; nullable
    const float* gate;      // (B, L, H) row multipliers; nullable (then every gate is 1)
    const int* tiles;       // optional work list of (b, h, query tile) triples; nullable = the whole grid

    int64_t q_batch_stride, q_head_stride, q_row_stride;  // in elements
    int64_t k_batch_stride, k_head_stride, k_row_stride;
    int64_t v_batch_stride, v_head_stride, v_row_stride;
    int64_t o_batch_stride, o_head_stride, o_row_stride;

    int batch, heads, kv_heads;  // H % Hkv == 0; query head h reads kv head h / (H / Hkv)
    int q_len, kv_len;           // L ≤ S; query i sits at position i + (S − L)
    int head_dim;
    int causal;                  // 1: key j allowed only when j ≤ i + (S − L)
    int num_tiles;               // entries in `tiles` (when non-null)
    float scale;                 // softmax scale (1/sqrt(D) by default)
    float scale_log2;            // scale · log2(e): the kernels use exp2
    int reserved0, reserved1;    // keeps sizeof a multiple of 8
};

static_assert(sizeof(void*) == 8, "64-bit device pointers expected");
static_assert(offsetof(AttnParams, q_batch_stride) == 56, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, batch) == 152, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, scale) == 184, "AttnParams layout changed: update AttentionParams.java");
static_assert(sizeof(AttnParams) == 200, "AttnParams layout changed: update AttentionParams.java");

// Rows skipped for a zero gate, and rows without any allowed key, report this log-sum-exp.
__device__ __forceinline__ float hr_neg_inf() { return __int_as_float(0xff800000); }

// Resolves the (batch, head, query tile) of this block: from the work list when there is one, else
// from the grid (x = query tile, y = head, z = batch). `reverse` runs the last query tiles first, which
// under a causal mask are the longest, so the tail of the grid is short work.
__device__ __forceinline__ void hr_block_tile(const AttnParams& p, bool reverse, int& qtile, int& h, int& b) {
    if (p.tiles != nullptr) {
        const int* t = p.tiles + 3 * blockIdx.x;
        b = t[0];
        h = t[1];
        qtile = t[2];
    } else {
        qtile = reverse ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
        h = blockIdx.y;
        b = blockIdx.z;
    }
}

// The gate of query row i of (b, h); 1 without a gate.
__device__ __forceinline__ float hr_gate(const AttnParams& p, int b, int i, int h) {
    return p.gate == nullptr ? 1.f : p.gate[((int64_t)b * p.q_len + i) * p.heads + h];
}

// Query tiles whose rows all have gate 0 do no work: this writes their zeros and lse −inf and returns
// true (the block then returns). Every thread of the block must call it: it contains a barrier.
template <typename T>
__device__ __forceinline__ bool hr_skip_gated_tile(const AttnParams& p, T* O, int b, int h, int i0, int rows) {
    bool live = false;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        const int i = i0 + r;
        live |= i < p.q_len && hr_gate(p, b, i, h) != 0.f;
    }
    if (__syncthreads_or(live)) return false;
    const T zero = T(0.f);
    const int d = p.head_dim;
    for (int e = threadIdx.x; e < rows * d; e += blockDim.x) {
        const int i = i0 + e / d;
        if (i < p.q_len) O[i * p.o_row_stride + e % d] = zero;
    }
    if (p.lse != nullptr)
        for (int r = threadIdx.x; r < rows && i0 + r < p.q_len; r += blockDim.x)
            p.lse[((int64_t)b * p.heads + h) * p.q_len + i0 + r] = hr_neg_inf();
    return true;
}
