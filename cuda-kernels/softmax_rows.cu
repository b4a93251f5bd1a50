// headroute: the row-wise softmax of the materialized baseline.
//
// cuBLAS writes S = scale·Q·Kᵀ into a (B·H, L, S) buffer; this kernel applies the pattern and the
// causal rule, computes a numerically stable softmax per row, multiplies by the row's gate, and writes
// the log-sum-exp. A row with no allowed key, or gate 0, becomes zeros with lse −inf — never NaN. Then
// cuBLAS computes O = P·V. One block per row. Scores are stored in the input dtype (P overwrites S in
// place) or, for fp16/bf16 inputs on request, in fp32; P must then be in the input dtype for the P·V
// GEMM, so it goes to a second buffer (in place would overwrite scores other threads still read).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "attention_params.cuh"
#include "row_ops.cuh"

// Token-level patterns evaluated in the kernel; block-level ones (bigbird, layouts) go through the
// block-sparse path.
enum : int { HR_PATTERN_DENSE = 0, HR_PATTERN_CAUSAL = 1, HR_PATTERN_WINDOW = 2, HR_PATTERN_LONGFORMER = 3 };

struct SoftmaxParams {
    void* scores;          // (B·H, L, S) row-major, row stride = kv_len; overwritten by P when `probs` is null
    void* probs;           // P, (B·H, L, S) in the input dtype; nullable (then P overwrites the scores)
    float* lse;            // (B·H·L) natural-log log-sum-exp; nullable
    const float* gate;     // (B, L, H); nullable
    int heads, q_len, kv_len;
    int pattern;           // HR_PATTERN_*
    int window, globals;   // W of window/longformer, G of longformer
    int causal;            // j ≤ p added on top of the pattern
    int rows;              // B·H·L
};
static_assert(sizeof(SoftmaxParams) == 64, "SoftmaxParams layout changed: update SoftmaxParams.java");

namespace {

constexpr int kThreads = 256;

using hr_row::from_float;
using hr_row::to_float;

__device__ __forceinline__ bool allowed(const SoftmaxParams& p, int pos, int j) {
    bool ok;
    switch (p.pattern) {
        case HR_PATTERN_CAUSAL: ok = j <= pos; break;
        case HR_PATTERN_WINDOW: ok = abs(pos - j) <= p.window; break;
        case HR_PATTERN_LONGFORMER: ok = abs(pos - j) <= p.window || j < p.globals || pos < p.globals; break;
        default: ok = true; break;
    }
    return ok && (!p.causal || j <= pos);
}

template <bool IS_MAX>
__device__ __forceinline__ float block_reduce(float x, float* red) {
    return hr_row::block_reduce<IS_MAX, kThreads>(x, red);
}

// TS: the scores' dtype; TP: P's (TP == TS: in place, else into p.probs).
template <typename TS, typename TP>
__device__ __forceinline__ void softmax_rows(const SoftmaxParams& p) {
    __shared__ float red[kThreads / 32];
    const int64_t row = blockIdx.x;
    const int i = (int)(row % p.q_len);
    const int bh = (int)(row / p.q_len);
    const int h = bh % p.heads;
    const int b = bh / p.heads;
    const int pos = i + (p.kv_len - p.q_len);
    const TS* s = static_cast<const TS*>(p.scores) + row * p.kv_len;
    TP* out = static_cast<TP*>(p.probs != nullptr ? p.probs : p.scores) + row * p.kv_len;
    const float g = p.gate == nullptr ? 1.f : p.gate[((int64_t)b * p.q_len + i) * p.heads + h];

    float mx = hr_neg_inf();
    if (g != 0.f)
        for (int j = threadIdx.x; j < p.kv_len; j += kThreads)
            if (allowed(p, pos, j)) mx = fmaxf(mx, to_float(s[j]));
    mx = block_reduce<true>(mx, red);

    float sum = 0.f;
    if (mx != hr_neg_inf())
        for (int j = threadIdx.x; j < p.kv_len; j += kThreads)
            if (allowed(p, pos, j)) sum += expf(to_float(s[j]) - mx);
    sum = block_reduce<false>(sum, red);

    const bool empty = sum == 0.f;  // no allowed key, or gate 0
    const float f = empty ? 0.f : g / sum;
    for (int j = threadIdx.x; j < p.kv_len; j += kThreads) {
        const float e = !empty && allowed(p, pos, j) ? expf(to_float(s[j]) - mx) * f : 0.f;
        out[j] = from_float<TP>(e);  // in place, each thread overwrites only the scores it read itself
    }
    if (p.lse != nullptr && threadIdx.x == 0) p.lse[row] = empty ? hr_neg_inf() : mx + logf(sum);
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) hr_softmax_rows_f32(const SoftmaxParams p) {
    softmax_rows<float, float>(p);
}
extern "C" __global__ void __launch_bounds__(kThreads) hr_softmax_rows_f16(const SoftmaxParams p) {
    softmax_rows<__half, __half>(p);
}
extern "C" __global__ void __launch_bounds__(kThreads) hr_softmax_rows_bf16(const SoftmaxParams p) {
    softmax_rows<__nv_bfloat16, __nv_bfloat16>(p);
}
// fp32 scores of fp16/bf16 inputs; P into p.probs in the input dtype.
extern "C" __global__ void __launch_bounds__(kThreads) hr_softmax_rows_f32_to_f16(const SoftmaxParams p) {
    softmax_rows<float, __half>(p);
}
extern "C" __global__ void __launch_bounds__(kThreads) hr_softmax_rows_f32_to_bf16(const SoftmaxParams p) {
    softmax_rows<float, __nv_bfloat16>(p);
}
