// headroute: the one inner loop of the tensor-core attention kernels (fp16 and bf16,
// FlashAttention-2 style), shared by the dense/causal and the block-sparse kernels, which differ only
// in the key tiles they hand it (HrDenseKeys, HrSparseKeys in attention_params.cuh).
//
// A block of 4 warps owns Br = 64 query rows, warp w rows 16w … 16w+15; Qi stays in registers as mma
// A-fragments. Key tiles of Bc = 64 keys stream through shared memory, double-buffered with cp.async:
// tile j+1 is in flight while tile j is multiplied. S = Qi·Kjᵀ and O += P·Vj are mma.sync m16n8k16 with
// fp32 accumulation; P goes from the S accumulators straight into A-fragments (same register layout),
// so scores never touch shared memory. Only tiles the key source marks pay for an element mask.
#pragma once
#include "attention_params.cuh"
#include "dynamic_smem.cuh"
#include "mma_sm80.cuh"

namespace hr_mma {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBr = 16 * kWarps;  // query rows per block
constexpr int kBc = 64;           // keys per tile (one 64-bit mask word per row)

template <int D>
struct Tile {
    static_assert(D % 32 == 0 && D >= 32 && D <= 128,
                  "head dim must be 32, 64, 96 or 128: Q·Kᵀ steps k by 16 and P·V loads V in 16-column pairs; "
                  "D = 256 would need 128 accumulator registers for O alone");
    static constexpr int kChunks = D / 8;  // 16-byte chunks per row
    // Rows padded by 16 bytes: ldmatrix's 8 row addresses then fall in 8 different 4-bank groups.
    static constexpr int kStride = D + 8;
    static constexpr int kQElems = kBr * kStride;
    static constexpr int kKVElems = kBc * kStride;
    // Qi, then Kj and Vj twice each (double buffer).
    static constexpr int kSmemBytes = (kQElems + 4 * kKVElems) * 2;
};

// Copies key rows [row0, row0 + kBc) of a (rows × D) matrix into shared memory; rows ≥ valid are zeros.
template <int D, typename T>
__device__ __forceinline__ void load_keys(T* smem, const T* g, int64_t row_stride, int row0, int valid) {
    for (int c = threadIdx.x; c < kBc * Tile<D>::kChunks; c += kThreads) {
        const int r = c / Tile<D>::kChunks;
        const int ch = c % Tile<D>::kChunks;
        const bool in = row0 + r < valid;
        const T* src = in ? g + (row0 + r) * row_stride + ch * 8 : g;
        hr::cp_async_16(smem + r * Tile<D>::kStride + ch * 8, src, in ? 16 : 0);
    }
}

// Copies the block's query rows (plain or compacted) into shared memory; rows ≥ count are zeros.
template <int D, typename T>
__device__ __forceinline__ void load_queries(T* smem, const T* g, int64_t row_stride, const HrRows& rows) {
    for (int c = threadIdx.x; c < kBr * Tile<D>::kChunks; c += kThreads) {
        const int r = c / Tile<D>::kChunks;
        const int ch = c % Tile<D>::kChunks;
        const bool in = r < rows.count;
        const T* src = in ? g + rows.row(r) * row_stride + ch * 8 : g;
        hr::cp_async_16(smem + r * Tile<D>::kStride + ch * 8, src, in ? 16 : 0);
    }
}

// Attention of the block's query rows (b, h, rows) over the key tiles of `keys`: writes O (times the
// gate) and lse of every valid row; rows without any allowed key get zeros and −inf.
template <typename T, int D, class Keys>
__device__ __forceinline__ void attend(const AttnParams& p, int b, int h, const HrRows& rows, const Keys& keys) {
    using Mma = hr::MmaOp<T>;
    using TL = Tile<D>;
    constexpr int kNT = kBc / 8;  // n-tiles of S per warp (8 keys each)
    constexpr int kDT = D / 8;    // n-tiles of O per warp (8 dims each)

    HR_DYNAMIC_SMEM(smem_raw);
    T* sQ = reinterpret_cast<T*>(smem_raw);
    T* sK = sQ + TL::kQElems;       // two buffers of kKVElems
    T* sV = sK + 2 * TL::kKVElems;  // two buffers of kKVElems

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int g = lane >> 2;  // mma group: rows g and g + 8 of the warp's 16
    const int t4 = lane & 3;  // thread in group: columns 2·t4, 2·t4 + 1 of each n-tile
    const int kvh = h / (p.heads / p.kv_heads);
    const int offset = p.kv_len - p.q_len;

    const T* Q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const T* K = static_cast<const T*>(p.k) + b * p.k_batch_stride + kvh * p.k_head_stride;
    const T* V = static_cast<const T*>(p.v) + b * p.v_batch_stride + kvh * p.v_head_stride;
    T* O = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;

    // This thread's two rows (local r_loc[rr] = 16w + g + 8rr) and their absolute positions.
    int pos[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        const int r = warp * 16 + g + rr * 8;
        pos[rr] = r < rows.count ? rows.row(r) + offset : 0x7fffffff;
    }

    const int n_tiles = keys.count();
    // Key tile indices run two ahead of the math (a sparse list is read from global memory), so the
    // address of the next cp.async never waits on a load.
    int kt = n_tiles > 0 ? keys.tile(0) : 0;
    int kt_next = n_tiles > 1 ? keys.tile(1) : 0;
    // Qi and the first key tile in one cp.async group.
    load_queries<D>(sQ, Q, p.q_row_stride, rows);
    if (n_tiles > 0) {
        load_keys<D>(sK, K, p.k_row_stride, kt * kBc, p.kv_len);
        load_keys<D>(sV, V, p.v_row_stride, kt * kBc, p.kv_len);
    }
    hr::cp_async_commit();

    uint32_t qf[D / 16][4];  // Qi as A-fragments, one per 16-wide k step
    float acc_o[kDT][4];
    float m[2] = {hr_neg_inf(), hr_neg_inf()};  // running max of rows g, g+8 (log2 units)
    float l[2] = {0.f, 0.f};                    // this thread's share of the running sums
#pragma unroll
    for (int x = 0; x < kDT; ++x) acc_o[x][0] = acc_o[x][1] = acc_o[x][2] = acc_o[x][3] = 0.f;

    for (int j = 0; j < n_tiles; ++j) {
        const int buf = j & 1;
        if (j + 1 < n_tiles) {
            // Buffer 1 − buf was last read in iteration j − 1, which ended with a barrier.
            load_keys<D>(sK + (1 - buf) * TL::kKVElems, K, p.k_row_stride, kt_next * kBc, p.kv_len);
            load_keys<D>(sV + (1 - buf) * TL::kKVElems, V, p.v_row_stride, kt_next * kBc, p.kv_len);
            hr::cp_async_commit();
        }
        const int kt_after = j + 2 < n_tiles ? keys.tile(j + 2) : 0;
        // This tile's mask, and for a partial tile its rows' allowed-key bits, loaded before the math hides them.
        const int mask = keys.mask(j, kt);
        unsigned long long w[2] = {~0ull, ~0ull};  // allowed-key bits of rows g, g + 8
        if (mask == HR_MASK_BITS) {
            const unsigned long long* bits = keys.bits(j);
            w[0] = bits[warp * 16 + g];
            w[1] = bits[warp * 16 + g + 8];
        }
        if (j + 1 < n_tiles) {
            hr::cp_async_wait<1>();
        } else {
            hr::cp_async_wait<0>();
        }
        __syncthreads();  // tile j (and on j = 0, Qi) is visible to every warp

        if (j == 0) {
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                const int row = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
                const int col = kk * 16 + (lane >> 4) * 8;
                hr::ldmatrix_x4(qf[kk], sQ + row * TL::kStride + col);
            }
        }
        const T* k_tile = sK + buf * TL::kKVElems;
        const T* v_tile = sV + buf * TL::kKVElems;

        // S = Qi · Kjᵀ: B = Kjᵀ is Kj read row-major, so a plain ldmatrix yields B-fragments.
        float s[kNT][4];
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
            for (int np = 0; np < kNT / 2; ++np) {
                uint32_t kb[4];
                const int row = np * 16 + (lane & 7) + (lane >> 4) * 8;
                const int col = kk * 16 + ((lane >> 3) & 1) * 8;
                hr::ldmatrix_x4(kb, k_tile + row * TL::kStride + col);
                Mma::run(s[2 * np], qf[kk], kb[0], kb[1]);
                Mma::run(s[2 * np + 1], qf[kk], kb[2], kb[3]);
            }
        }

        // Scale into log2 units, then mask (after scaling: a negative scale must not turn −inf into +inf).
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                float v = s[nt][e] * p.scale_log2;
                if (mask != HR_MASK_NONE) {
                    const int c = nt * 8 + 2 * t4 + (e & 1);
                    const int key = kt * kBc + c;
                    const bool ok = mask == HR_MASK_BITS
                                        ? ((w[e >> 1] >> c) & 1ull) != 0
                                        : key < p.kv_len && (!p.causal || key <= pos[e >> 1]);
                    v = ok ? v : hr_neg_inf();
                }
                s[nt][e] = v;
            }
        }

        // Online softmax on rows g (e = 0, 1) and g + 8 (e = 2, 3); the 4 threads of a group share a row:
        // m_new = max(m, rowmax S); P = exp2(S − m_new); l = l·exp2(m − m_new) + rowsum P; O *= exp2(m − m_new).
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            float mx = hr_neg_inf();
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * rr], s[nt][2 * rr + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(m[rr], mx);
            const float m_use = m_new == hr_neg_inf() ? 0.f : m_new;  // a row masked so far stays at zero weight
            const float alpha = exp2f(m[rr] - m_use);
            float sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt) {
                s[nt][2 * rr] = exp2f(s[nt][2 * rr] - m_use);
                s[nt][2 * rr + 1] = exp2f(s[nt][2 * rr + 1] - m_use);
                sum += s[nt][2 * rr] + s[nt][2 * rr + 1];
            }
            l[rr] = l[rr] * alpha + sum;
            m[rr] = m_new;
#pragma unroll
            for (int x = 0; x < kDT; ++x) {
                acc_o[x][2 * rr] *= alpha;
                acc_o[x][2 * rr + 1] *= alpha;
            }
        }

        // O += P · Vj: P's accumulator layout is the A-fragment layout; Vj needs transposed loads.
#pragma unroll
        for (int kk = 0; kk < kBc / 16; ++kk) {
            uint32_t pa[4];
            pa[0] = Mma::pack(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = Mma::pack(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = Mma::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = Mma::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t vb[4];
                const int row = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
                const int col = dp * 16 + (lane >> 4) * 8;
                hr::ldmatrix_x4_trans(vb, v_tile + row * TL::kStride + col);
                Mma::run(acc_o[2 * dp], pa, vb[0], vb[1]);
                Mma::run(acc_o[2 * dp + 1], pa, vb[2], vb[3]);
            }
        }
        __syncthreads();  // every warp is done with buffer `buf` before iteration j + 1 refills it
        kt = kt_next;
        kt_next = kt_after;
    }
    if (n_tiles == 0) hr::cp_async_wait<0>();  // Qi's copy must land before the block exits

    // O = acc / l · gate and lse = (m + log2 l)·ln 2, with l summed over the 4 threads of the row.
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        float lt = l[rr];
        lt += __shfl_xor_sync(0xffffffffu, lt, 1);
        lt += __shfl_xor_sync(0xffffffffu, lt, 2);
        const int r = warp * 16 + g + rr * 8;
        if (r >= rows.count) continue;
        const int i = rows.row(r);
        const float gv = hr_gate(p, b, i, h);
        const bool empty = lt == 0.f || gv == 0.f;
        const float f = empty ? 0.f : gv / lt;
        T* orow = O + i * p.o_row_stride;
#pragma unroll
        for (int x = 0; x < kDT; ++x) {
            const uint32_t packed = Mma::pack(acc_o[x][2 * rr] * f, acc_o[x][2 * rr + 1] * f);
            *reinterpret_cast<uint32_t*>(orow + x * 8 + 2 * t4) = packed;
        }
        if (p.lse != nullptr && t4 == 0)
            p.lse[((int64_t)b * p.heads + h) * p.q_len + i] =
                empty ? hr_neg_inf() : (m[rr] + log2f(lt)) * 0.69314718055994531f;
    }
}

}  // namespace hr_mma
