// headroute: the one inner loop of the fp32 attention kernels (CUDA cores), shared by the dense/causal
// and the block-sparse kernels, which differ only in the key tiles they hand it (HrDenseKeys,
// HrSparseKeys, HrMergedKeys in attention_params.cuh).
//
// The exact-precision path (fp32 ≤ 1e-5 relative against the CPU engine) and the fallback for head
// dimensions the tensor-core kernels do not take. One block of 128 threads (4 warps) owns Br = 32
// query rows; warp w owns rows 8w … 8w+7 whole, so every row reduction is a warp shuffle. Key tiles of
// Bc = 32 keys are visited with the online softmax of FlashAttention-2; scores never leave the chip.
// Both products run over the warp's 8 rows at once: a K or V element read from shared memory feeds 8
// FMAs and Q and P come as 16-byte broadcasts (0.2 to 0.4 shared loads per FMA, against 2 when each score
// and each output element was its own loop), and every sum keeps its order (d, then c, ascending).
#pragma once
#include "attention_params.cuh"
#include "dynamic_smem.cuh"

namespace hr_f32 {

constexpr int kBr = 32;      // query rows per block
constexpr int kBc = 32;      // keys per tile (= warp size: lane c owns key column c)
constexpr int kThreads = 128;
constexpr int kRowsPerWarp = kBr / (kThreads / 32);

// Shared memory for head dims up to DMAX: Qi (Br × D), Kj and Vj (Bc × (D + 1): the odd row
// length puts the 32 lanes' K[c][d] reads in 32 different banks), P (Br × Bc).
template <int DMAX>
struct Smem {
    float q[kBr][DMAX];
    float k[kBc][DMAX + 1];
    float v[kBc][DMAX + 1];
    float p[kBr][kBc];
};

// Attention of the block's query rows (b, h, rows) over the key tiles of `keys`: writes O (times the
// gate) and lse of every valid row; rows without any allowed key get zeros and −inf.
template <int DMAX, class Keys>
__device__ __forceinline__ void attend(const AttnParams& p, int b, int h, const HrRows& rows, const Keys& keys) {
    HR_DYNAMIC_SMEM(smem_raw);
    Smem<DMAX>& sm = *reinterpret_cast<Smem<DMAX>*>(smem_raw);
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int D = p.head_dim;
    const int kvh = h / (p.heads / p.kv_heads);
    const int offset = p.kv_len - p.q_len;  // position of query i is i + offset

    const float* Q = static_cast<const float*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const float* K = static_cast<const float*>(p.k) + b * p.k_batch_stride + kvh * p.k_head_stride;
    const float* V = static_cast<const float*>(p.v) + b * p.v_batch_stride + kvh * p.v_head_stride;
    float* O = static_cast<float*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;

    // Qi, pre-scaled by scale·log2(e) so that exp2 gives the softmax numerators.
    for (int e = tid; e < kBr * D; e += kThreads) {
        const int r = e / D, d = e % D;
        sm.q[r][d] = r < rows.count ? Q[rows.row(r) * p.q_row_stride + d] * p.scale_log2 : 0.f;
    }

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

    const int n_tiles = keys.count();
    // A staged source's tile t + 1 is read during tile t (its bits are staged then); the others' on the spot.
    int kt_staged = Keys::kStaged && n_tiles > 0 ? keys.tile(0) : 0;
    for (int t = 0; t < n_tiles; ++t) {
        const int kt = Keys::kStaged ? kt_staged : keys.tile(t);
        const int j0 = kt * kBc;
        __syncthreads();  // the previous tile's Kj, Vj and P are no longer read
        for (int e = tid; e < kBc * D; e += kThreads) {
            const int c = e / D, d = e % D;
            const int j = j0 + c;
            sm.k[c][d] = j < p.kv_len ? K[j * p.k_row_stride + d] : 0.f;
            sm.v[c][d] = j < p.kv_len ? V[j * p.v_row_stride + d] : 0.f;
        }
        __syncthreads();  // Kj, Vj (and on the first tile Qi) are in shared memory

        const int mask = keys.mask(t, kt);
        const unsigned long long* bits = mask == HR_MASK_BITS ? keys.bits(t) : nullptr;
        // Bits staged in shared memory: the next tile's go to the other buffer, read after the next barrier.
        if constexpr (Keys::kStaged) {
            if (t + 1 < n_tiles) {
                kt_staged = keys.tile(t + 1);
                keys.stage(t + 1, kt_staged);
            }
        }
        const int j = j0 + lane;
        // S = Qi·Kjᵀ for the warp's rows at once: each Kj[c][d] read from shared memory serves all of them,
        // each Qi[r][d … d+3] is one 16-byte broadcast. Every score still sums d = 0, 1, … in order.
        float s[kRowsPerWarp];
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) s[rr] = 0.f;
        const int d4 = D & ~3;
        for (int d = 0; d < d4; d += 4) {
            const float k0 = sm.k[lane][d], k1 = sm.k[lane][d + 1], k2 = sm.k[lane][d + 2], k3 = sm.k[lane][d + 3];
#pragma unroll
            for (int rr = 0; rr < kRowsPerWarp; ++rr) {
                const float4 q = *reinterpret_cast<const float4*>(&sm.q[warp * kRowsPerWarp + rr][d]);
                s[rr] = fmaf(q.w, k3, fmaf(q.z, k2, fmaf(q.y, k1, fmaf(q.x, k0, s[rr]))));
            }
        }
        for (int d = d4; d < D; ++d) {
            const float kd = sm.k[lane][d];
#pragma unroll
            for (int rr = 0; rr < kRowsPerWarp; ++rr) s[rr] = fmaf(sm.q[warp * kRowsPerWarp + rr][d], kd, s[rr]);
        }
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) {
            const int r = warp * kRowsPerWarp + rr;
            if (mask != HR_MASK_NONE) {
                bool allowed;
                if (mask == HR_MASK_BITS) {
                    allowed = ((bits[r] >> lane) & 1ull) != 0;
                } else {
                    const int pos = r < rows.count ? rows.row(r) + offset : 0x7fffffff;
                    allowed = j < p.kv_len && (!p.causal || j <= pos);
                }
                s[rr] = allowed ? s[rr] : hr_neg_inf();
            }
            // m_new = max(m, rowmax S); P = exp2(S − m_new); l = l·exp2(m − m_new) + rowsum P
            float mx = s[rr];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float m_new = fmaxf(m[rr], mx);
            const float m_use = m_new == hr_neg_inf() ? 0.f : m_new;  // not −inf − −inf = NaN
            const float alpha = exp2f(m[rr] - m_use);
            const float pr = exp2f(s[rr] - m_use);
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
        // O[r][d] += Σ_c P[r][c] · Vj[c][d], lane owning d = lane + 32x: each Vj[c][d] read serves all the
        // warp's rows, each P[r][c … c+3] is one 16-byte broadcast; every sum runs c = 0, 1, … in order.
        for (int c = 0; c < kBc; c += 4) {
            float v[4][kDPerLane];
#pragma unroll
            for (int cc = 0; cc < 4; ++cc)
#pragma unroll
                for (int x = 0; x < kDPerLane; ++x) v[cc][x] = lane + 32 * x < D ? sm.v[c + cc][lane + 32 * x] : 0.f;
#pragma unroll
            for (int rr = 0; rr < kRowsPerWarp; ++rr) {
                const float4 pr = *reinterpret_cast<const float4*>(&sm.p[warp * kRowsPerWarp + rr][c]);
#pragma unroll
                for (int x = 0; x < kDPerLane; ++x)
                    acc[rr][x] = fmaf(pr.w, v[3][x], fmaf(pr.z, v[2][x], fmaf(pr.y, v[1][x], fmaf(pr.x, v[0][x], acc[rr][x]))));
            }
        }
    }

    // O = acc / l · gate; lse = (m + log2 l)·ln 2; empty or gated-out rows give zeros and −inf.
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const int r = warp * kRowsPerWarp + rr;
        if (r >= rows.count) continue;
        const int i = rows.row(r);
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

}  // namespace hr_f32
