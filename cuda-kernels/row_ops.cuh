// headroute: pieces shared by the one-block-per-row kernels (softmax_rows.cu, block_ops.cu): float
// conversions of the storage dtypes and a block-wide reduction.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace hr_row {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Block-wide max (IS_MAX) or sum of one float per thread, for blocks of THREADS threads; `red` holds
// one slot per warp. Warps reduce by a shuffle tree, then every thread adds the warps' partials in
// warp order, so all threads get the same value, computed in the same order on every launch.
template <bool IS_MAX, int THREADS>
__device__ __forceinline__ float block_reduce(float x, float* red) {
    static_assert(THREADS % 32 == 0, "whole warps");
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float y = __shfl_xor_sync(0xffffffffu, x, o);
        x = IS_MAX ? fmaxf(x, y) : x + y;
    }
    const int warp = threadIdx.x >> 5;
    if ((threadIdx.x & 31) == 0) red[warp] = x;
    __syncthreads();  // every warp's partial is in `red`
    x = red[0];
    for (int w = 1; w < THREADS / 32; ++w) x = IS_MAX ? fmaxf(x, red[w]) : x + red[w];
    __syncthreads();  // `red` may be reused by the next reduction
    return x;
}

}  // namespace hr_row
