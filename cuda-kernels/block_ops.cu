// headroute: the element-wise steps of an attention block (the GEMMs are cuBLAS's, attention is the
// attention kernels').
//
//   hr_rmsnorm_{f32,f16,bf16}: out = round(x · (1/√(mean(x²) + eps)) · γ), one block per row (a row whose
//                              fp32 sum of squares overflows is normalized by its largest |x| first).
//   hr_rope_{f32,f16,bf16}:    rotary embedding in place on (B, L, n, D) rows, rotate-half pairs
//                              (i, i + D/2) by angle t·θ_i read from a float32 (L, D/2, {cos, sin}) table.
//
// CPU twins: io.headroute.model.BlockMath.rmsNorm and RotaryTable.apply. The products and sums use
// __fmul_rn/__fadd_rn so that nvcc does not contract them into FMAs: RoPE then rounds exactly as the
// Java code does, and RMSNorm differs only by the order of its sum of squares.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstddef>
#include <cstdint>

#include "row_ops.cuh"

struct RmsNormParams {
    const void* x;        // (rows, d) in the kernel's dtype
    const void* gamma;    // (d)
    void* out;            // (rows, d)
    int64_t rows;
    int d;
    float eps;
};
static_assert(sizeof(RmsNormParams) == 40, "RmsNormParams layout changed: update BlockOpsParams.java");
static_assert(offsetof(RmsNormParams, rows) == 24, "RmsNormParams layout changed: update BlockOpsParams.java");

struct RopeParams {
    void* x;               // (B, L, n, D), rotated in place
    const float* cos_sin;  // (L, D/2, 2): cos(t·θ_i), sin(t·θ_i)
    int64_t row_stride;    // elements from row (b, t) to row (b, t + 1); n·D when contiguous
    int batch, len, heads, head_dim;
};
static_assert(sizeof(RopeParams) == 40, "RopeParams layout changed: update BlockOpsParams.java");
static_assert(offsetof(RopeParams, batch) == 24, "RopeParams layout changed: update BlockOpsParams.java");

namespace {

constexpr int kThreads = 256;

using hr_row::from_float;
using hr_row::to_float;

template <typename T>
__device__ __forceinline__ void rmsnorm(const RmsNormParams& p) {
    __shared__ float red[kThreads / 32];
    const int64_t row = blockIdx.x;
    const T* x = static_cast<const T*>(p.x) + row * p.d;
    const T* gamma = static_cast<const T*>(p.gamma);
    T* out = static_cast<T*>(p.out) + row * p.d;

    // ss = Σ_c x_c²
    float ss = 0.f;
    for (int c = threadIdx.x; c < p.d; c += kThreads) {
        const float v = to_float(x[c]);
        ss = __fadd_rn(ss, __fmul_rn(v, v));
    }
    ss = hr_row::block_reduce<false, kThreads>(ss, red);

    if (ss == INFINITY) {
        // x² overflowed fp32 (|x| beyond ~1e19; the plain form would give zeros): the same function on x/m,
        // m the row's largest |x|: out_c = round((x_c/m) · r' · γ_c), r' = 1/√(Σ(x/m)²/d + eps/m²).
        // ss is the same in every thread, so the whole block takes this branch.
        float m = 0.f;
        for (int c = threadIdx.x; c < p.d; c += kThreads) m = fmaxf(m, fabsf(to_float(x[c])));
        m = hr_row::block_reduce<true, kThreads>(m, red);
        float ssm = 0.f;
        for (int c = threadIdx.x; c < p.d; c += kThreads) {
            const float y = to_float(x[c]) / m;
            ssm = __fadd_rn(ssm, __fmul_rn(y, y));
        }
        ssm = hr_row::block_reduce<false, kThreads>(ssm, red);
        const float rm = 1.f / sqrtf(__fadd_rn(ssm / (float)p.d, p.eps / m / m));
        for (int c = threadIdx.x; c < p.d; c += kThreads)
            out[c] = from_float<T>(__fmul_rn(__fmul_rn(to_float(x[c]) / m, rm), to_float(gamma[c])));
        return;
    }

    // out_c = round(x_c · r · γ_c), r = 1/√(ss/d + eps)
    const float r = 1.f / sqrtf(__fadd_rn(ss / (float)p.d, p.eps));
    for (int c = threadIdx.x; c < p.d; c += kThreads)
        out[c] = from_float<T>(__fmul_rn(__fmul_rn(to_float(x[c]), r), to_float(gamma[c])));
}

template <typename T>
__device__ __forceinline__ void rope(const RopeParams& p) {
    const int half = p.head_dim / 2;
    const int64_t pairs = (int64_t)p.batch * p.len * p.heads * half;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < pairs; e += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(e % half);
        const int64_t rh = e / half;          // (b, t, h)
        const int h = (int)(rh % p.heads);
        const int64_t bt = rh / p.heads;      // (b, t)
        const int t = (int)(bt % p.len);
        T* v = static_cast<T*>(p.x) + bt * p.row_stride + (int64_t)h * p.head_dim;
        const float c = p.cos_sin[2 * ((int64_t)t * half + i)];
        const float s = p.cos_sin[2 * ((int64_t)t * half + i) + 1];
        const float x1 = to_float(v[i]);
        const float x2 = to_float(v[i + half]);
        // (x1, x2) ← (x1·cos − x2·sin, x2·cos + x1·sin)
        v[i] = from_float<T>(__fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s)));
        v[i + half] = from_float<T>(__fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s)));
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) hr_rmsnorm_f32(const RmsNormParams p) { rmsnorm<float>(p); }
extern "C" __global__ void __launch_bounds__(kThreads) hr_rmsnorm_f16(const RmsNormParams p) { rmsnorm<__half>(p); }
extern "C" __global__ void __launch_bounds__(kThreads) hr_rmsnorm_bf16(const RmsNormParams p) { rmsnorm<__nv_bfloat16>(p); }
extern "C" __global__ void __launch_bounds__(kThreads) hr_rope_f32(const RopeParams p) { rope<float>(p); }
extern "C" __global__ void __launch_bounds__(kThreads) hr_rope_f16(const RopeParams p) { rope<__half>(p); }
extern "C" __global__ void __launch_bounds__(kThreads) hr_rope_bf16(const RopeParams p) { rope<__nv_bfloat16>(p); }
