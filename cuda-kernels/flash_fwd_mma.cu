// headroute: fused flash attention forward on tensor cores, fp16 and bf16 (FlashAttention-2 style).
//
// A block of 4 warps owns Br = 64 query rows, warp w rows 16w … 16w+15; Qi stays in registers as mma
// A-fragments. Key tiles of Bc = 64 keys stream through shared memory, double-buffered with cp.async:
// tile j+1 is in flight while tile j is multiplied. S = Qi·Kjᵀ and O += P·Vj are mma.sync m16n8k16 with
// fp32 accumulation; P goes from the S accumulators straight into A-fragments (same register layout),
// so scores never touch shared memory. Under a causal mask, key tiles wholly above the diagonal are
// never loaded and only tiles crossing it (or the end of the sequence) evaluate a mask.
#include "attention_params.cuh"
#include "mma_sm80.cuh"

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBr = 16 * kWarps;  // query rows per block
constexpr int kBc = 64;           // keys per tile

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

// Copies rows [row0, row0 + ROWS) of a (rows × D) matrix into shared memory; rows ≥ valid are zeros.
template <int ROWS, int D, typename T>
__device__ __forceinline__ void load_rows(T* smem, const T* g, int64_t row_stride, int row0, int valid) {
    for (int c = threadIdx.x; c < ROWS * Tile<D>::kChunks; c += kThreads) {
        const int r = c / Tile<D>::kChunks;
        const int ch = c % Tile<D>::kChunks;
        const bool in = row0 + r < valid;
        const T* src = in ? g + (row0 + r) * row_stride + ch * 8 : g;
        hr::cp_async_16(smem + r * Tile<D>::kStride + ch * 8, src, in ? 16 : 0);
    }
}

template <typename T, int D>
__device__ __forceinline__ void flash_fwd_mma(const AttnParams& p) {
    using Mma = hr::MmaOp<T>;
    using TL = Tile<D>;
    constexpr int kNT = kBc / 8;  // n-tiles of S per warp (8 keys each)
    constexpr int kDT = D / 8;    // n-tiles of O per warp (8 dims each)

    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* sQ = reinterpret_cast<T*>(smem_raw);
    T* sK = sQ + TL::kQElems;       // two buffers of kKVElems
    T* sV = sK + 2 * TL::kKVElems;  // two buffers of kKVElems

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int g = lane >> 2;  // mma group: rows g and g + 8 of the warp's 16
    const int t4 = lane & 3;  // thread in group: columns 2·t4, 2·t4 + 1 of each n-tile

    int qtile, h, b;
    hr_block_tile(p, p.causal != 0, qtile, h, b);
    const int i0 = qtile * kBr;
    const int kvh = h / (p.heads / p.kv_heads);
    const int offset = p.kv_len - p.q_len;

    const T* Q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const T* K = static_cast<const T*>(p.k) + b * p.k_batch_stride + kvh * p.k_head_stride;
    const T* V = static_cast<const T*>(p.v) + b * p.v_batch_stride + kvh * p.v_head_stride;
    T* O = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;

    if (hr_skip_gated_tile(p, O, b, h, i0, kBr)) return;

    const int last_row = min(i0 + kBr, p.q_len) - 1;
    int kv_end = p.kv_len;
    if (p.causal) kv_end = min(kv_end, last_row + offset + 1);  // later key tiles are above the diagonal
    const int n_tiles = (kv_end + kBc - 1) / kBc;
    // From this key tile on, some (row, key) pair may be masked: a key past the end, or (causal) a key
    // after the position i0 + offset of the tile's first row.
    int first_masked_tile = p.kv_len / kBc;
    if (p.causal) first_masked_tile = min(first_masked_tile, (i0 + offset + 1) / kBc);

    // Qi, Kj=0 and Vj=0 in one cp.async group.
    load_rows<kBr, D>(sQ, Q, p.q_row_stride, i0, p.q_len);
    load_rows<kBc, D>(sK, K, p.k_row_stride, 0, p.kv_len);
    load_rows<kBc, D>(sV, V, p.v_row_stride, 0, p.kv_len);
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
            load_rows<kBc, D>(sK + (1 - buf) * TL::kKVElems, K, p.k_row_stride, (j + 1) * kBc, p.kv_len);
            load_rows<kBc, D>(sV + (1 - buf) * TL::kKVElems, V, p.v_row_stride, (j + 1) * kBc, p.kv_len);
            hr::cp_async_commit();
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
        const bool masked_tile = j >= first_masked_tile;
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                float v = s[nt][e] * p.scale_log2;
                if (masked_tile) {
                    const int key = j * kBc + nt * 8 + 2 * t4 + (e & 1);
                    const int row = i0 + warp * 16 + g + (e >> 1) * 8;
                    const bool ok = key < p.kv_len && (!p.causal || key <= row + offset);
                    v = ok ? v : hr_neg_inf();
                }
                s[nt][e] = v;
            }
        }

        // Online softmax on rows g (e = 0, 1) and g + 8 (e = 2, 3); the 4 threads of a group share a row.
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
    }

    // O = acc / l · gate and lse = (m + log2 l)·ln 2, with l summed over the 4 threads of the row.
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        float lt = l[rr];
        lt += __shfl_xor_sync(0xffffffffu, lt, 1);
        lt += __shfl_xor_sync(0xffffffffu, lt, 2);
        const int i = i0 + warp * 16 + g + rr * 8;
        if (i >= p.q_len) continue;
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

}  // namespace

#define HR_FLASH_MMA(NAME, T, D)                                                               \
    extern "C" __global__ void __launch_bounds__(kThreads) NAME(const AttnParams p) {            \
        flash_fwd_mma<T, D>(p);                                                                  \
    }                                                                                            \
    static_assert(Tile<D>::kSmemBytes <= 227 * 1024, "shared memory of " #NAME " exceeds sm_90")

HR_FLASH_MMA(hr_flash_fwd_bf16_d32, __nv_bfloat16, 32);
HR_FLASH_MMA(hr_flash_fwd_bf16_d64, __nv_bfloat16, 64);
HR_FLASH_MMA(hr_flash_fwd_bf16_d96, __nv_bfloat16, 96);
HR_FLASH_MMA(hr_flash_fwd_bf16_d128, __nv_bfloat16, 128);
HR_FLASH_MMA(hr_flash_fwd_f16_d32, __half, 32);
HR_FLASH_MMA(hr_flash_fwd_f16_d64, __half, 64);
HR_FLASH_MMA(hr_flash_fwd_f16_d96, __half, 96);
HR_FLASH_MMA(hr_flash_fwd_f16_d128, __half, 128);
