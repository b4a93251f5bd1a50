// headroute: fused flash attention forward in fp32 on CUDA cores.
//
// The exact-precision path (fp32 ≤ 1e-5 relative against the CPU engine) and the fallback for head
// dimensions the tensor-core kernel does not take. One block of 128 threads (4 warps) owns BR = 32
// query rows; warp w owns rows 8w … 8w+7 whole, so every row reduction is a warp shuffle. Key tiles of
// BC = 32 keys are visited with the online softmax of FlashAttention-2; scores never leave the chip.
#include "attention_params.cuh"

namespace {

constexpr int BR = 32;            // query rows per block
constexpr int BC = 32;            // keys per tile (= warp size: lane c owns key column c)
constexpr int kThreads = 128;
constexpr int kRowsPerWarp = BR / (kThreads / 32);

// Shared memory for head dims up to DMAX: Qi (BR × D), Kj and Vj (BC × (D + 1): the odd row
// length puts the 32 lanes' K[c][d] reads in 32 different banks), P (BR × BC).
template <int DMAX>
struct F32Smem {
    float q[BR][DMAX];
    float k[BC][DMAX + 1];
    float v[BC][DMAX + 1];
    float p[BR][BC];
};

template <int DMAX>
__device__ __forceinline__ void flash_fwd_f32(const AttnParams& p) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    F32Smem<DMAX>& sm = *reinterpret_cast<F32Smem<DMAX>*>(smem_raw);
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int D = p.head_dim;

    int qtile, h, b;
    hr_block_tile(p, p.causal != 0, qtile, h, b);
    const int i0 = qtile * BR;
    const int kvh = h / (p.heads / p.kv_heads);
    const int offset = p.kv_len - p.q_len;  // position of query i is i + offset

    const float* Q = static_cast<const float*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const float* K = static_cast<const float*>(p.k) + b * p.k_batch_stride + kvh * p.k_head_stride;
    const float* V = static_cast<const float*>(p.v) + b * p.v_batch_stride + kvh * p.v_head_stride;
    float* O = static_cast<float*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;

    if (hr_skip_gated_tile(p, O, b, h, i0, BR)) return;

    // Qi, pre-scaled by scale·log2(e) so that exp2 gives the softmax numerators.
    for (int e = tid; e < BR * D; e += kThreads) {
        const int r = e / D, d = e % D;
        const int i = i0 + r;
        sm.q[r][d] = i < p.q_len ? Q[i * p.q_row_stride + d] * p.scale_log2 : 0.f;
    }

    // Last key any row of this tile may see (causal), hence the number of key tiles to visit.
    const int last_row = min(i0 + BR, p.q_len) - 1;
    int kv_end = p.kv_len;
    if (p.causal) kv_end = min(kv_end, last_row + offset + 1);
    const int n_tiles = (kv_end + BC - 1) / BC;

    constexpr int kDPerLane = (DMAX + 31) / 32;
    float acc[kRowsPerWarp][kDPerLane];
    float m[kRowsPerWarp], l[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        m[r] = hr_neg_inf();
        l[r] = 0.f;
#pragma unroll
        for (int x = 0; x < kDPerLane; ++x) acc[r][x] = 0.f;
    }

    for (int t = 0; t < n_tiles; ++t) {
        const int j0 = t * BC;
        __syncthreads();  // the previous tile's Kj, Vj and P are no longer read
        for (int e = tid; e < BC * D; e += kThreads) {
            const int c = e / D, d = e % D;
            const int j = j0 + c;
            sm.k[c][d] = j < p.kv_len ? K[j * p.k_row_stride + d] : 0.f;
            sm.v[c][d] = j < p.kv_len ? V[j * p.v_row_stride + d] : 0.f;
        }
        __syncthreads();  // Kj, Vj (and on the first tile Qi) are in shared memory

        const int j = j0 + lane;
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) {
            const int r = warp * kRowsPerWarp + rr;
            const int i = i0 + r;
            // S[r][c] = Qi[r] · Kj[c] (already scaled)
            float s = 0.f;
            for (int d = 0; d < D; ++d) s = fmaf(sm.q[r][d], sm.k[lane][d], s);
            const bool allowed = j < p.kv_len && (!p.causal || j <= i + offset);
            s = allowed ? s : hr_neg_inf();
            // m_new = max(m, rowmax S); P = exp2(S − m_new); l = l·exp2(m − m_new) + rowsum P
            float mx = s;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float m_new = fmaxf(m[rr], mx);
            const float m_use = m_new == hr_neg_inf() ? 0.f : m_new;  // not −inf − −inf = NaN
            const float alpha = exp2f(m[rr] - m_use);
            const float pr = exp2f(s - m_use);
            float sum = pr;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            l[rr] = l[rr] * alpha + sum;
            m[rr] = m_new;
            sm.p[r][lane] = pr;
#pragma unroll
            for (int x = 0; x < kDPerLane; ++x) acc[rr][x] *= alpha;
        }
        __syncwarp();  // this warp's P rows are written before its lanes read them
        // O[r][d] += Σ_c P[r][c] · Vj[c][d], lane owning d = lane + 32x
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) {
            const int r = warp * kRowsPerWarp + rr;
#pragma unroll
            for (int x = 0; x < kDPerLane; ++x) {
                const int d = lane + 32 * x;
                if (d < D) {
                    float o = acc[rr][x];
                    for (int c = 0; c < BC; ++c) o = fmaf(sm.p[r][c], sm.v[c][d], o);
                    acc[rr][x] = o;
                }
            }
        }
    }

    // O = acc / l · gate; lse = (m + log2 l)·ln 2; empty or gated-out rows give zeros and −inf.
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const int i = i0 + warp * kRowsPerWarp + rr;
        if (i >= p.q_len) continue;
        const float g = hr_gate(p, b, i, h);
        const bool empty = l[rr] == 0.f || g == 0.f;
        const float f = empty ? 0.f : g / l[rr];
#pragma unroll
        for (int x = 0; x < kDPerLane; ++x) {
            const int d = lane + 32 * x;
            if (d < D) O[i * p.o_row_stride + d] = acc[rr][x] * f;
        }
        if (p.lse != nullptr && lane == 0)
            p.lse[((int64_t)b * p.heads + h) * p.q_len + i] =
                empty ? hr_neg_inf() : (m[rr] + log2f(l[rr])) * 0.69314718055994531f;
    }
}

}  // namespace

// Head dims up to 64, 128 and 256; the host picks the smallest that fits and sizes shared memory
// with sizeof(F32Smem<DMAX>): about 29 KB, 54 KB and 103 KB (above 48 KB it must opt in).
extern "C" __global__ void __launch_bounds__(kThreads, 2) hr_flash_fwd_f32_d64(const AttnParams p) { flash_fwd_f32<64>(p); }
extern "C" __global__ void __launch_bounds__(kThreads, 2) hr_flash_fwd_f32_d128(const AttnParams p) { flash_fwd_f32<128>(p); }
extern "C" __global__ void __launch_bounds__(kThreads, 2) hr_flash_fwd_f32_d256(const AttnParams p) { flash_fwd_f32<256>(p); }
