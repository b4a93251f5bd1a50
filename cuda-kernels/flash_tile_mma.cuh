// headroute: the one inner loop of the tensor-core attention kernels (fp16 and bf16,
// FlashAttention-2 style), shared by the dense/causal and the block-sparse kernels, which differ only
// in the key tiles they hand it (HrDenseKeys, HrSparseKeys, HrMergedKeys in attention_params.cuh).
//
// A block owns Br = 64 or 128 query rows; each warp owns 16·M of them. Key tiles of Bc = 64 keys stream
// through shared memory with cp.async. S = Qi·Kjᵀ and O += P·Vj are mma.sync m16n8k16 with fp32
// accumulation; P goes from the S accumulators straight into A-fragments (same register layout), so
// scores never touch shared memory. Only tiles the key source marks pay for an element mask, in one
// branch that full tiles skip. The softmax takes FlashAttention-2's form, P = exp2(c·S − m) in one FFMA
// and one MUFU.EX2 per score (for scale > 0; others scale S first), and rescales O only when a row's
// max grows by more than 2^8 (FlashAttention-4's conditional rescaling). `scripts/sass_loop.py` shows
// what the loop issues per tile. Seven tilings (Tiling below):
//   W4    64 rows, 4 warps × 16; Qi kept in registers; Kj and Vj double-buffered: tile j + 1 is in
//         flight while tile j is multiplied.
//   W2    64 rows, 2 warps × 32: every K or V fragment read from shared memory feeds two m-tiles, half
//         W4's K and V reads per flop; Kj and Vj single-buffered (Vj loads while S = Qi·Kjᵀ is
//         computed, Kj+1 while P·Vj is), so that four blocks fit an SM at D = 128; Qi kept in registers
//         up to D = 64, re-read from shared memory above (the registers hold O's 2·D accumulators).
//   W4X2  128 rows, 4 warps × 32 (FlashAttention-2's forward shape at D = 128): each warp as in W2, and
//         every key/value tile copied into shared memory serves 128 query rows, half the L2-to-SM
//         traffic per flop of the 64-row tilings. Double-buffering spilled (284 bytes at D = 128).
//   WG    Hopper (sm_90a only): W4's 64 rows, Qi in registers and double-buffered tiles, with both products
//         as warpgroup wgmma.mma_async m64n64k16 (mma_sm90.cuh) instead of mma.sync: the four warps issue
//         D/16 + D/16 wgmma per key tile in place of 4·D mma.sync (D per warp) and every ldmatrix of K and V
//         (the tensor cores read Kj and Vj from shared memory themselves). Kj and Vj are stored as 16-byte columns
//         of 64 keys (wg_tile_offset), wgmma's no-swizzle core-matrix layout for both operands. S and O keep
//         the mma.sync register layout, so the mask, softmax and output steps are the same code.
//   WGP   WG pipelined (FlashAttention-3's intra-warpgroup overlap): tile j's S = Qi·Kjᵀ and tile j − 1's
//         O += P·V are issued together as two wgmma groups; the warps wait for S only, and tile j's mask
//         and softmax run while P·V keeps the tensor cores busy. V is copied a tile behind K, O's rescale
//         waits for the P·V group, and the last tile's P·V follows the loop.
//   WGX2  WG with 128 rows: two warpgroups of 64 rows (8 warps), each issuing its own wgmma on the same Kj and
//   WGPX2 Vj tiles (and WGPX2: WGP's loop per warpgroup), so that every key/value tile copied into shared
//         memory serves 128 query rows: half the L2-to-SM traffic per flop of WG and WGP, as W4X2 to W4
//         (FlashAttention-3's two consumer warpgroups, without its producer warp). A warpgroup skips a tile none
//         of its rows may use (wg_vote_slots), so the two issue WG's wgmma between them.
#pragma once
#include "attention_params.cuh"
#include "dynamic_smem.cuh"
#include "mma_sm80.cuh"
#include "mma_sm90.cuh"

namespace hr_mma {

constexpr int kBc = 64;  // keys per tile (one 64-bit mask word per row)
// A row's running max m (log2 units) moves up only when a tile's max exceeds it by more than this: P ≤ 2^8.
constexpr float kRescaleLog2 = 8.f;

template <int D, int Warps, int M, int Stages, bool QRegs, bool Wgmma = false, bool Pipelined = false>
struct Tiling {
    static_assert(D % 32 == 0 && D >= 32 && D <= 128,
                  "head dim must be 32, 64, 96 or 128: Q·Kᵀ steps k by 16 and P·V loads V in 16-column pairs; "
                  "D = 256 would need 128 accumulator registers for O alone");
    static_assert(16 * M * Warps == 64 || 16 * M * Warps == 128, "a block owns 64 or 128 query rows");
    static_assert(Stages == 1 || Stages == 2 || (Stages == 3 && Pipelined),
                  "key/value tiles are single-, double- or (the pipelined loop) triple-buffered");
    static_assert(!Wgmma || ((Warps == 4 || Warps == 8) && M == 1 && QRegs && D % 64 == 0),
                  "wgmma: one or two warpgroups of 64 rows, Qi in registers, O in m64n64 pieces");
    static_assert(!Pipelined || (Wgmma && Stages == 3), "the pipelined loop is the wgmma one, triple-buffered");
    static constexpr int kD = D;
    static constexpr int kWarps = Warps;
    static constexpr int kThreads = 32 * Warps;
    static constexpr int kM = M;  // m-tiles (16 rows each) per warp
    static constexpr int kBr = 16 * M * Warps;  // query rows per block
    static constexpr int kStages = Stages;
    static constexpr bool kQRegs = QRegs;
    static constexpr bool kWgmma = Wgmma;
    static constexpr bool kPipelined = Pipelined;
    static constexpr int kChunks = D / 8;  // 16-byte chunks per row
    // Rows padded by 16 bytes: ldmatrix's 8 row addresses then fall in 8 different 4-bank groups.
    static constexpr int kStride = D + 8;
    static constexpr int kQElems = kBr * kStride;
    // A key/value tile: padded rows, or (wgmma) D/8 columns of 64 keys × 16 bytes, unpadded.
    static constexpr int kKVElems = Wgmma ? kBc * D : kBc * kStride;
    // Qi, then Kj (Stages buffers), then Vj (Stages buffers).
    static constexpr int kSmemBytes = (kQElems + 2 * Stages * kKVElems) * 2;
};

template <int D>
using W4 = Tiling<D, 4, 1, 2, true>;
template <int D>
using W2 = Tiling<D, 2, 2, 1, (D <= 64)>;
template <int D>
using W4X2 = Tiling<D, 4, 2, 1, (D <= 64)>;
template <int D>
using WG = Tiling<D, 4, 1, 2, true, true>;
template <int D>
using WGP = Tiling<D, 4, 1, 3, true, true, true>;
template <int D>
using WGX2 = Tiling<D, 8, 1, 2, true, true>;
template <int D>
using WGPX2 = Tiling<D, 8, 1, 3, true, true, true>;

// The byte offset of key row r's 16-byte chunk ch in a WG tile: chunk columns of kBc keys, so that the 8
// keys r … r + 7 (r % 8 = 0) of one chunk form a core matrix (128 contiguous bytes). For S = Qi·Kjᵀ (B K-major:
// k = head dim) the next core matrix along k is the next column (LBO = kBc·16), along n the next 8 keys
// (SBO = 128); for O = P·Vj (B MN-major: k = keys) the other way round.
__host__ __device__ constexpr int wg_tile_offset(int r, int ch) { return ch * kBc * 16 + r * 16; }
constexpr uint32_t kWgColumnBytes = kBc * 16;

// Copies key rows [row0, row0 + kBc) of a (rows × D) matrix into a WG tile (wg_tile_offset); rows ≥ valid
// are zeros. Lane l of warp w copies row 16·(w % 4) + l % 16, chunks 2·(G·i + w / 4) + l / 16 (G warpgroups): a
// warp reads 32 whole bytes of each of 16 rows per round (full 32-byte sectors) and writes two runs of 256
// contiguous bytes (no bank conflict); a second warpgroup takes every other pair of columns.
template <class TL, typename T>
__device__ __forceinline__ void load_keys_wg(T* smem, const T* g, int64_t row_stride, int row0, int valid) {
    constexpr int kGroups = TL::kThreads / 128;
    static_assert(TL::kThreads % 128 == 0 && TL::kChunks % (2 * kGroups) == 0,
                  "each warpgroup's 4 warps × 16 rows cover the tile's 64 rows, its column pairs whole");
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int r = (kGroups == 1 ? warp : warp & 3) * 16 + (lane & 15);
    const int ch = (kGroups == 1 ? 0 : 2 * (warp >> 2)) + (lane >> 4);
    const T* src = g + (row0 + r) * row_stride + ch * 8;
    const hr::SmemAddr dst = hr::smem_at(smem) + wg_tile_offset(r, ch);
    const bool in = row0 + r < valid;
    const T* from = in ? src : g;  // a row past the end copies nothing (src-size 0) from a valid address
    const int bytes = in ? 16 : 0;
#pragma unroll
    for (int i = 0; i < TL::kChunks / (2 * kGroups); ++i)
        hr::cp_async_16_at(dst + 2 * kGroups * i * kWgColumnBytes, from + 16 * kGroups * i, bytes);
}

// P (the S accumulators after the softmax) as the A-fragments of O += P·Vj: 16 keys per k step.
template <typename T>
__device__ __forceinline__ void wg_pack_p(uint32_t (&pw)[kBc / 16][4], const float (&s)[kBc / 8][4]) {
    using Mma = hr::MmaOp<T>;
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
        pw[kk][0] = Mma::pack(s[2 * kk][0], s[2 * kk][1]);
        pw[kk][1] = Mma::pack(s[2 * kk][2], s[2 * kk][3]);
        pw[kk][2] = Mma::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pw[kk][3] = Mma::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
}

// The m64n64 block hh of O's accumulators (head dims 64hh … 64hh + 63).
template <int D>
__device__ __forceinline__ float (&wg_o_block(float (&acc_o)[D / 8][4], int hh))[8][4] {
    return *reinterpret_cast<float(*)[8][4]>(&acc_o[8 * hh][0]);
}

// The low descriptor words (wgmma_desc_lo) of a K tile at sk (K-major: LBO the next column, SBO the next 8 keys) and
// of a V tile at sv (MN-major: LBO the next 8 keys, SBO the next column). A tile b buffers further on adds b times
// the buffer's bytes / 16 (kDescStep in attend): the key loop builds them once and adds the buffer's offset per tile.
__device__ __forceinline__ uint32_t wg_k_desc(hr::SmemAddr sk) { return hr::wgmma_desc_lo(sk, kWgColumnBytes); }
__device__ __forceinline__ uint32_t wg_v_desc(hr::SmemAddr sv) { return hr::wgmma_desc_lo(sv, 128); }

// Issues S += Qi·Kjᵀ as D/16 wgmma m64n64k16 (after a wgmma_fence; not committed): A = Qi's fragments of k step
// kk (registers, read after the issue: kept until the wait), B = the K tile of low descriptor word kd (wg_k_desc),
// K-major, k step kk = head dims 16kk … 16kk + 15 (columns 2kk and 2kk + 1).
template <typename T, int D>
__device__ __forceinline__ void wg_issue_s(float (&s)[kBc / 8][4], const uint32_t (&qf)[D / 16][4], uint32_t kd) {
    kd = hr::warp_uniform(kd);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
        hr::WgmmaOp<T>::template run<false>(s, qf[kk], hr::wgmma_desc_join(kd + kk * (2 * kWgColumnBytes / 16), 128), true);
}

// Issues O += P·Vj as 4·D/64 wgmma m64n64k16 (after a wgmma_fence; not committed): A = P's fragments of
// 16 keys (registers, which the tensor cores read after the issue: kept until the wait), B = the V tile of low
// descriptor word vd (wg_v_desc), MN-major, keys 16kk … 16kk + 15 and head dims 64hh … 64hh + 63 (columns 8hh … 8hh + 7).
template <typename T, int D>
__device__ __forceinline__ void wg_issue_pv(float (&acc_o)[D / 8][4], const uint32_t (&pw)[kBc / 16][4], uint32_t vd) {
    vd = hr::warp_uniform(vd);
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk)
#pragma unroll
        for (int hh = 0; hh < D / 64; ++hh)
            hr::WgmmaOp<T>::template run<true>(
                wg_o_block<D>(acc_o, hh), pw[kk],
                hr::wgmma_desc_join(vd + (kk * 16 * 16 + hh * 8 * kWgColumnBytes) / 16, kWgColumnBytes), true);
}

// After the wait of a P·Vj group: O's accumulators and P's fragments are the program's again.
template <int D>
__device__ __forceinline__ void wg_fence_pv(float (&acc_o)[D / 8][4], uint32_t (&pw)[kBc / 16][4]) {
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) hr::wgmma_fence_operands(pw[kk]);
#pragma unroll
    for (int hh = 0; hh < D / 64; ++hh) hr::wgmma_fence_operands(wg_o_block<D>(acc_o, hh));
}

// O += P·V now: issued (wg_issue_pv), committed, waited for, and O's accumulators and P's fragments fenced.
template <typename T, int D>
__device__ __forceinline__ void wg_pv_wait(float (&acc_o)[D / 8][4], uint32_t (&pw)[kBc / 16][4], uint32_t vd) {
    wg_fence_pv<D>(acc_o, pw);  // P's packing and O's rescaling are done before the fence (PTX: wgmma.fence)
    hr::wgmma_fence();
    wg_issue_pv<T, D>(acc_o, pw, vd);
    hr::wgmma_commit();
    hr::wgmma_wait<0>();
    wg_fence_pv<D>(acc_o, pw);
}

// Copies key rows [row0, row0 + kBc) of a (rows × D) matrix into shared memory; rows ≥ valid are zeros.
// Issued inside the key loop, where S or O holds most registers. When the block's threads cover whole rows
// per round, each thread walks its rows with one source pointer (one 64-bit add per copy) and constant
// destination offsets from one 32-bit shared address, and only a tile holding the end of the rows (the
// last, when S is not a multiple of kBc) tests rows: the other tiles cost one cp.async and one add per
// copy. (W2 and W4X2 at D = 128, whose O accumulators fill 255 registers, spilled on sm_90 with this
// second path until shared memory was addressed by 32-bit addresses here and in the ldmatrix loads.)
template <class TL, typename T>
__device__ __forceinline__ void load_keys(T* smem, const T* g, int64_t row_stride, int row0, int valid) {
    if constexpr (TL::kThreads % TL::kChunks == 0) {
        constexpr int kStep = TL::kThreads / TL::kChunks;  // rows per round of the block's threads
        constexpr int kRounds = kBc / kStep;
        static_assert(kBc % kStep == 0, "rounds cover the tile");
        constexpr int kRoundBytes = kStep * TL::kStride * (int)sizeof(T);  // destination bytes per round
        const int ch = threadIdx.x % TL::kChunks;
        const int r = threadIdx.x / TL::kChunks;
        const T* src = g + (row0 + r) * row_stride + ch * 8;
        const hr::SmemAddr dst = hr::smem_at(smem + r * TL::kStride + ch * 8);
        const int64_t step = kStep * row_stride;
        if (row0 + kBc <= valid) {
#pragma unroll
            for (int i = 0; i < kRounds; ++i, src += step) hr::cp_async_16_at(dst + i * kRoundBytes, src, 16);
        } else {
            // Two copies in flight per round; fully unrolled, each copy's row test held a register.
#pragma unroll 2
            for (int i = 0; i < kRounds; ++i, src += step) {
                const bool in = row0 + r + i * kStep < valid;
                hr::cp_async_16_at(dst + i * kRoundBytes, in ? src : g, in ? 16 : 0);
            }
        }
    } else {
        for (int c = threadIdx.x; c < kBc * TL::kChunks; c += TL::kThreads) {
            const int r = c / TL::kChunks;
            const int ch = c % TL::kChunks;
            const bool in = row0 + r < valid;
            const T* src = in ? g + (row0 + r) * row_stride + ch * 8 : g;
            hr::cp_async_16(smem + r * TL::kStride + ch * 8, src, in ? 16 : 0);
        }
    }
}

// The key copy of tiling TL.
template <class TL, typename T>
__device__ __forceinline__ void load_tile(T* smem, const T* g, int64_t row_stride, int row0, int valid) {
    if constexpr (TL::kWgmma) {
        load_keys_wg<TL>(smem, g, row_stride, row0, valid);
    } else {
        load_keys<TL>(smem, g, row_stride, row0, valid);
    }
}

// Copies the block's query rows (plain or compacted) into shared memory; rows ≥ count are zeros.
template <class TL, typename T>
__device__ __forceinline__ void load_queries(T* smem, const T* g, int64_t row_stride, const HrRows& rows) {
    for (int c = threadIdx.x; c < TL::kBr * TL::kChunks; c += TL::kThreads) {
        const int r = c / TL::kChunks;
        const int ch = c % TL::kChunks;
        const bool in = r < rows.count;
        const T* src = in ? g + rows.row(r) * row_stride + ch * 8 : g;
        hr::cp_async_16(smem + r * TL::kStride + ch * 8, src, in ? 16 : 0);
    }
}

// The A-fragment of Qi's m-tile `mt` (rows 16·mt … 16·mt + 15) for k step kk, from shared memory; q_lane:
// this lane's row address in Qi (q_lane_bytes in attend), matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
// (rows 0-7, k 8-15), (rows 8-15, k 8-15).
template <class TL, typename T>
__device__ __forceinline__ void load_q_fragment(uint32_t (&a)[4], hr::SmemAddr q_lane, int mt, int kk) {
    hr::ldmatrix_x4_at(a, q_lane + (mt * 16 * TL::kStride + kk * 16) * (int)sizeof(T));
}

// The allowed-key words of the thread's rows (g and g + 8 of each of its warp's M m-tiles) from a tile's
// Br words.
template <int M>
__device__ __forceinline__ void load_bits(unsigned long long (&w)[M][2], const unsigned long long* bits, int warp, int g) {
#pragma unroll
    for (int mi = 0; mi < M; ++mi) {
        w[mi][0] = bits[(warp * M + mi) * 16 + g];
        w[mi][1] = bits[(warp * M + mi) * 16 + g + 8];
    }
}

// The max of S over row g (rr = 0) or g + 8 (rr = 1) of an m-tile, across the 4 threads that share it.
template <int NT>
__device__ __forceinline__ float row_max(const float (&s)[NT][4], int rr) {
    float mx = hr_neg_inf();
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * rr], s[nt][2 * rr + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    return fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
}

// The rule's allowed-key words of the thread's rows in the key tile starting at k0: a prefix of the tile,
// keys < S and, under a causal mask, keys ≤ the row's position i + S − L (rows past the block's count:
// every key < S). Positions are looked up here, on masked tiles only, not held in registers.
template <int M>
__device__ __forceinline__ void rule_words(unsigned long long (&w)[M][2], const AttnParams& p, const HrRows& rows,
                                           int warp, int g, int k0) {
#pragma unroll
    for (int mi = 0; mi < M; ++mi)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            const int r = (warp * M + mi) * 16 + g + rr * 8;
            int lim = p.kv_len - k0;
            if (p.causal && r < rows.count) lim = min(lim, rows.row(r) + (p.kv_len - p.q_len) - k0 + 1);
            w[mi][rr] = lim >= kBc ? ~0ull : lim <= 0 ? 0ull : (1ull << lim) - 1ull;
        }
}

// Whether tiling TL is two warpgroups of wgmma (WGX2, WGPX2).
template <class TL>
constexpr bool kTwoWarpgroups = TL::kWgmma && TL::kWarps == 8;

// Two warpgroups (WGX2, WGPX2): a warpgroup skips a key tile that none of its 64 rows may use — no wgmma, no
// softmax, O and l untouched, as the tile's zero probabilities would leave them — where the block's other rows
// need it: in a block-sparse list of a 128-row tile, a tile listed for the other warpgroup's rows alone (the
// union of two layout rows' lists); under a causal rule, the first warpgroup's share of the block's last
// diagonal tile; and every tile, for a warpgroup with no valid rows. The decision is the warpgroup's alone
// (uniform over its 4 warps: wgmma is one warpgroup instruction), from row positions (a rule tile) or from its
// warps' votes over their rows' mask words (a partial tile), cast before the tile's first barrier into these
// shared slots, one per warp (compacted rows over a sparse layout: the votes HrMergedKeys casts as it stages
// the words, per 32 rows).
//
// Two sets of slots, by tile parity: the pipelined loop has no end-of-tile barrier, so a warp may cast tile j + 1's
// vote while another still reads tile j's.
template <class TL>
__device__ __forceinline__ int* wg_vote_slots(int j) {
    __shared__ int votes[2][TL::kWarps];
    return votes[j & 1];
}

// The pipelined loop's copies for later tiles, queued in iteration j once its softmax is done: K of tile j + 2 and
// V of tile j + 1 (each when it exists), into the buffers that held tiles j − 1 and j − 2, in one cp.async group
// (committed even when empty, so that every iteration commits exactly one). Every thread takes part.
template <class TL, typename T>
__device__ __forceinline__ void load_ahead(T* sK, T* sV, const T* K, const T* V, const AttnParams& p, int j, int n_tiles,
                                           int kt_next, int kt_after) {
    if (j + 2 < n_tiles) load_tile<TL>(sK + ((j + 2) % 3) * TL::kKVElems, K, p.k_row_stride, kt_after * kBc, p.kv_len);
    if (j + 1 < n_tiles) load_tile<TL>(sV + ((j + 1) % 3) * TL::kKVElems, V, p.v_row_stride, kt_next * kBc, p.kv_len);
    hr::cp_async_commit();
}

// Attention of the block's query rows (b, h, rows) over the key tiles of `keys`: writes O (times the
// gate) and lse of every valid row; rows without any allowed key get zeros and −inf.
template <typename T, class TL, class Keys>
__device__ __forceinline__ void attend(const AttnParams& p, int b, int h, const HrRows& rows, const Keys& keys) {
    using Mma = hr::MmaOp<T>;
    constexpr int D = TL::kD;
    constexpr int M = TL::kM;
    constexpr int kNT = kBc / 8;  // n-tiles of S per m-tile (8 keys each)
    constexpr int kDT = D / 8;    // n-tiles of O per m-tile (8 dims each)
    // Qi re-read from shared memory: k steps unrolled by 4, not 8 (fully, ptxas spilled at D = 128).
    [[maybe_unused]] constexpr int kKUnroll = TL::kQRegs || (D / 16) % 4 != 0 ? D / 16 : 4;

    HR_DYNAMIC_SMEM(smem_raw);
    T* sQ = reinterpret_cast<T*>(smem_raw);
    T* sK = sQ + TL::kQElems;                 // kStages buffers of kKVElems
    T* sV = sK + TL::kStages * TL::kKVElems;  // kStages buffers of kKVElems

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int g = lane >> 2;  // mma group: rows g and g + 8 of each m-tile
    const int t4 = lane & 3;  // thread in group: columns 2·t4, 2·t4 + 1 of each n-tile
    const int kvh = h / (p.heads / p.kv_heads);

    const T* Q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const T* K = static_cast<const T*>(p.k) + b * p.k_batch_stride + kvh * p.k_head_stride;
    const T* V = static_cast<const T*>(p.v) + b * p.v_batch_stride + kvh * p.v_head_stride;

    // This thread's rows: m-tile mi of the warp is block m-tile warp·M + mi, and the thread holds its
    // rows g (rr = 0) and g + 8 (rr = 1): local row 16·(warp·M + mi) + g + 8·rr (rule_words).

    // The byte offsets of this lane's ldmatrix row (lanes 8m … 8m+7 address matrix m) in Qi (A-fragments,
    // load_q_fragment), in a K tile (plain loads, B-fragments of S = Qi·Kjᵀ: matrices (n 0-7, k 0-7),
    // (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)) and in a V tile (transposed loads, B-fragments of
    // P·Vj: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15)). WG reads Qi only.
    const int q_lane_bytes = (((lane & 7) + ((lane >> 3) & 1) * 8) * TL::kStride + (lane >> 4) * 8) * (int)sizeof(T);
    [[maybe_unused]] const int k_lane_bytes =
        (((lane & 7) + (lane >> 4) * 8) * TL::kStride + ((lane >> 3) & 1) * 8) * (int)sizeof(T);
    [[maybe_unused]] const int v_lane_bytes =
        (((lane & 7) + ((lane >> 3) & 1) * 8) * TL::kStride + (lane >> 4) * 8) * (int)sizeof(T);

    // Scores in log2 units are c·S; see the mask step in the loop for fold and cm.
    const float c = p.scale_log2;
    const bool fold = c > 0.f;
    const float cm = fold ? c : 1.f;

    const int n_tiles = keys.count();
    // Key tile indices run two ahead of the math (a sparse list is read from global memory), so the
    // address of the next cp.async never waits on a load.
    int kt = n_tiles > 0 ? keys.tile(0) : 0;
    int kt_next = n_tiles > 1 ? keys.tile(1) : 0;
    // Qi and the first key tile (and with two stages its values) in one cp.async group; pipelined, the second
    // key tile and the first values in a second group (then load_ahead: one group per iteration).
    load_queries<TL>(sQ, Q, p.q_row_stride, rows);
    if (n_tiles > 0) {
        load_tile<TL>(sK, K, p.k_row_stride, kt * kBc, p.kv_len);
        if (TL::kStages == 2) load_tile<TL>(sV, V, p.v_row_stride, kt * kBc, p.kv_len);
    }
    hr::cp_async_commit();
    if constexpr (TL::kPipelined) {
        if (n_tiles > 1) load_tile<TL>(sK + TL::kKVElems, K, p.k_row_stride, kt_next * kBc, p.kv_len);
        if (n_tiles > 0) load_tile<TL>(sV, V, p.v_row_stride, kt * kBc, p.kv_len);
        hr::cp_async_commit();
    }

    uint32_t qf[M][TL::kQRegs ? D / 16 : 1][4];  // Qi as A-fragments (kQRegs only)
    float acc_o[M][kDT][4];
    float m[M][2];  // running max of the thread's rows (log2 units)
    float l[M][2];  // this thread's share of the running sums
#pragma unroll
    for (int mi = 0; mi < M; ++mi) {
        m[mi][0] = m[mi][1] = hr_neg_inf();
        l[mi][0] = l[mi][1] = 0.f;
#pragma unroll
        for (int x = 0; x < kDT; ++x) acc_o[mi][x][0] = acc_o[mi][x][1] = acc_o[mi][x][2] = acc_o[mi][x][3] = 0.f;
    }
    // Pipelined (WGP): P of the previous tile, whose P·V runs on the tensor cores while this tile's softmax
    // runs on the others.
    [[maybe_unused]] uint32_t pw_prev[TL::kPipelined ? kNT / 2 : 1][4] = {};
    // Two warpgroups: tiles a warpgroup may skip (wg_vote_slots); its first row; whether pw_prev holds a P whose P·V
    // is still to be issued (WGPX2: a skipped tile leaves none; one warpgroup: every tile but the first).
    constexpr bool kWgSkip = kTwoWarpgroups<TL>;
    static_assert(!kWgSkip || TL::kStages >= 2,
                  "a skipped tile meets the two-stage loop's end barrier, or (three stages) only the loop's first");
    [[maybe_unused]] const int wg_row0 = 64 * (warp >> 2);
    [[maybe_unused]] bool pv_pending = false;
    // wgmma: the low descriptor words of the first K and V buffers; buffer b's add b · kDescStep (wg_k_desc).
    [[maybe_unused]] constexpr uint32_t kDescStep = TL::kKVElems * sizeof(T) / 16;
    [[maybe_unused]] uint32_t k_desc = 0, v_desc = 0;
    if constexpr (TL::kWgmma) {
        k_desc = wg_k_desc(hr::smem_at(sK));
        v_desc = wg_v_desc(hr::smem_at(sV));
    }

    for (int j = 0; j < n_tiles; ++j) {
        // Pipelined: tile j's K in buffer j % 3 and its V likewise (Vj−1, which this tile's P·V reads, in buffer
        // (j + 2) % 3); the copies for later tiles are queued after the softmax (load_ahead).
        const int buf = TL::kPipelined ? j % 3 : TL::kStages == 2 ? (j & 1) : 0;
        [[maybe_unused]] const int pv_buf = TL::kPipelined ? (j + 2) % 3 : 0;
        if (TL::kStages == 2 && j + 1 < n_tiles) {
            // Buffer 1 − buf was last read in iteration j − 1, which ended with a barrier.
            load_tile<TL>(sK + (1 - buf) * TL::kKVElems, K, p.k_row_stride, kt_next * kBc, p.kv_len);
            load_tile<TL>(sV + (1 - buf) * TL::kKVElems, V, p.v_row_stride, kt_next * kBc, p.kv_len);
            hr::cp_async_commit();
        }
        const int kt_after = j + 2 < n_tiles ? keys.tile(j + 2) : 0;
        // This tile's mask, and for a partial tile its rows' allowed-key bits, loaded before the math hides
        // them (bits staged in shared memory are read after the barrier below).
        int mask = keys.mask(j, kt);
        unsigned long long w[M][2];  // allowed-key bits of the thread's rows
#pragma unroll
        for (int mi = 0; mi < M; ++mi) w[mi][0] = w[mi][1] = ~0ull;
        if (!Keys::kStaged && mask == HR_MASK_BITS) load_bits<M>(w, keys.bits(j), warp, g);
        if constexpr (kWgSkip && !Keys::kStaged) {
            // Read after the barrier below, before the next iteration's: one slot per warp and tile parity serves
            // (the pipelined loop has no end barrier: a warp may cast tile j + 1's vote while another reads tile j's).
            if (mask == HR_MASK_BITS) {
                const bool any = __any_sync(0xffffffffu, (w[0][0] | w[0][1]) != 0ull);
                if (lane == 0) wg_vote_slots<TL>(j)[warp] = any;
            }
        }
        if constexpr (TL::kStages >= 2) {
            if (TL::kPipelined || j + 1 < n_tiles) {
                hr::cp_async_wait<1>();  // pipelined: Kj and Vj−1 have landed (the group before last), Kj+1 and Vj may not
            } else {
                hr::cp_async_wait<0>();
            }
            if constexpr (TL::kWgmma) hr::fence_proxy_async();  // this thread's copies, to wgmma's reads
            __syncthreads();  // tile j (and on j = 0, Qi) is visible to every warp
        } else {
            // Only Kj (on j = 0 with Qi) is in flight: it was queued once every warp was done with Kj−1.
            hr::cp_async_wait<0>();
            __syncthreads();  // Kj (and Qi) visible; every warp is done with Vj−1, so its buffer is free
            load_tile<TL>(sV, V, p.v_row_stride, kt * kBc, p.kv_len);
            hr::cp_async_commit();
        }

        if constexpr (Keys::kStaged) {
            load_bits<M>(w, keys.bits(j), warp, g);
            if (j + 1 < n_tiles) keys.stage(j + 1, kt_next);  // read after the next iteration's first barrier
            // A thread whose rows may use every key of the tile skips the element mask.
            bool all = true;
#pragma unroll
            for (int mi = 0; mi < M; ++mi) all &= (w[mi][0] & w[mi][1]) == ~0ull;
            if (all) mask = HR_MASK_NONE;
        }

        if constexpr (TL::kQRegs) {
            if (j == 0) {
#pragma unroll
                for (int mi = 0; mi < M; ++mi)
#pragma unroll
                    for (int kk = 0; kk < D / 16; ++kk)
                        load_q_fragment<TL, T>(qf[mi][kk], hr::smem_at(sQ) + q_lane_bytes, warp * M + mi, kk);
            }
        }
        if constexpr (kWgSkip) {
            // Whether no row of this warpgroup may use tile j (see wg_vote_slots); rows ascend, so under a causal
            // rule the warpgroup's last valid row is the one that reaches furthest.
            bool skip = wg_row0 >= rows.count;
            if (!skip && mask == HR_MASK_RULE && p.causal)
                skip = rows.row(min(wg_row0 + 63, rows.count - 1)) + (p.kv_len - p.q_len) < kt * kBc;
            if constexpr (!Keys::kStaged) {
                if (!skip && mask == HR_MASK_BITS) {
                    const int* v = wg_vote_slots<TL>(j) + (warp & ~3);
                    skip = (v[0] | v[1] | v[2] | v[3]) == 0;
                }
            } else {
                static_assert(Keys::kVotes, "staged words with the votes of their 32-row groups");
                if (!skip) {
                    const int* v = keys.group_votes(j) + 2 * (warp >> 2);
                    skip = (v[0] | v[1]) == 0;
                }
            }
            if (skip) {
                if constexpr (TL::kPipelined) {
                    // The previous tile's P·V reads buffer pv_buf of V, which the next iteration refills: done now.
                    if (pv_pending) {
                        wg_pv_wait<T, D>(acc_o[0], pw_prev, v_desc + pv_buf * kDescStep);
                        pv_pending = false;
                    }
                    load_ahead<TL>(sK, sV, K, V, p, j, n_tiles, kt_next, kt_after);  // this warpgroup's share
                } else {
                    // The other warpgroup's end of tile j (two stages: see the loop's last barrier), met from
                    // another place in the code: not the .aligned barrier of __syncthreads().
                    hr::sync_block_any_site();
                }
                kt = kt_next;
                kt_next = kt_after;
                continue;
            }
        }
        // This lane's ldmatrix rows of the tiles, as 32-bit shared addresses (one register each, where a
        // generic pointer takes two); each load below adds a constant. (WG's products read no ldmatrix rows.)
        [[maybe_unused]] hr::SmemAddr k_lane{}, v_lane{}, q_lane{};
        if constexpr (!TL::kWgmma) {
            k_lane = hr::opaque_addr(hr::smem_at(sK + buf * TL::kKVElems) + k_lane_bytes);
            v_lane = hr::opaque_addr(hr::smem_at(sV + buf * TL::kKVElems) + v_lane_bytes);
            q_lane = hr::opaque_addr(hr::smem_at(sQ) + q_lane_bytes);
        }

        float s[M][kNT][4];
#pragma unroll
        for (int mi = 0; mi < M; ++mi)
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt) s[mi][nt][0] = s[mi][nt][1] = s[mi][nt][2] = s[mi][nt][3] = 0.f;
        if constexpr (TL::kWgmma) {
            // S = Qi · Kjᵀ as D/16 wgmma m64n64k16 (wg_issue_s).
            // Pipelined: then O += Pj−1·Vj−1 in a group of its own, left running through this tile's softmax.
            // PTX: a register the products read (S's zeros, Qi's fragments; pipelined: O and Pj−1, written in the
            // last iteration) is written before wgmma.fence, else the behaviour is undefined; these empty asm
            // statements pin those writes before it. (Not before the P·V issue below: between the S products and
            // their wait, ptxas would take them for writes of wgmma inputs and serialize the products.)
            hr::wgmma_fence_operands(s[0]);
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) hr::wgmma_fence_operands(qf[0][kk]);
            if constexpr (TL::kPipelined) wg_fence_pv<D>(acc_o[0], pw_prev);
            hr::wgmma_fence();
            wg_issue_s<T, D>(s[0], qf[0], k_desc + buf * kDescStep);
            hr::wgmma_commit();
            bool pv_running = false;
            if constexpr (TL::kPipelined) {
                if (kWgSkip ? pv_pending : j > 0) {
                    hr::wgmma_fence();
                    wg_issue_pv<T, D>(acc_o[0], pw_prev, v_desc + pv_buf * kDescStep);
                    hr::wgmma_commit();
                    pv_running = true;
                }
            }
            if (pv_running) {
                hr::wgmma_wait<1>();  // S is done; P·V may still run
            } else {
                hr::wgmma_wait<0>();
            }
            hr::wgmma_fence_operands(s[0]);
        } else {
            // S = Qi · Kjᵀ: B = Kjᵀ is Kj read row-major, so a plain ldmatrix yields B-fragments; each
            // feeds the warp's M m-tiles.
#pragma unroll kKUnroll
            for (int kk = 0; kk < D / 16; ++kk) {
                uint32_t qa[M][4];  // Qi's fragments of this k step: from registers, or re-read from shared memory
#pragma unroll
                for (int mi = 0; mi < M; ++mi) {
                    if constexpr (TL::kQRegs) {
#pragma unroll
                        for (int e = 0; e < 4; ++e) qa[mi][e] = qf[mi][kk][e];
                    } else {
                        load_q_fragment<TL, T>(qa[mi], q_lane, warp * M + mi, kk);
                    }
                }
#pragma unroll
                for (int np = 0; np < kNT / 2; ++np) {
                    uint32_t kb[4];
                    hr::ldmatrix_x4_at(kb, k_lane + (np * 16 * TL::kStride + kk * 16) * (int)sizeof(T));
#pragma unroll
                    for (int mi = 0; mi < M; ++mi) {
                        Mma::run(s[mi][2 * np], qa[mi], kb[0], kb[1]);
                        Mma::run(s[mi][2 * np + 1], qa[mi], kb[2], kb[3]);
                    }
                }
            }
        }
        if constexpr (TL::kStages == 1) {
            __syncthreads();  // every warp is done with Kj: its buffer takes Kj+1 while P·Vj is computed
            if (j + 1 < n_tiles) {
                load_tile<TL>(sK, K, p.k_row_stride, kt_next * kBc, p.kv_len);
                hr::cp_async_commit();
            }
        }

        // Mask and log2 units, in one branch that full tiles skip (with c > 0 and no mask it costs them
        // nothing). Fast path, c = scale·log2(e) > 0: S stays raw, masked keys −inf, the row max is taken
        // over raw S and c is folded into the exponent's FFMA (cm = c). Otherwise S is scaled first (a −inf
        // score times c ≤ 0 would turn into +inf or NaN) and cm = 1.
        if (!fold || mask != HR_MASK_NONE) {
            if (mask == HR_MASK_RULE) rule_words<M>(w, p, rows, warp, g, kt * kBc);
#pragma unroll
            for (int mi = 0; mi < M; ++mi)
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) {
                    // The thread's columns are 2·t4 + 8·nt + {0, 1}: shift once, then test constant bits.
                    const unsigned long long ws = w[mi][rr] >> (2 * t4);
#pragma unroll
                    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            const float v = fold ? s[mi][nt][2 * rr + e] : s[mi][nt][2 * rr + e] * c;
                            s[mi][nt][2 * rr + e] = (ws >> (8 * nt + e)) & 1ull ? v : hr_neg_inf();
                        }
                }
        }

        // Online softmax on rows g (e = 0, 1) and g + 8 (e = 2, 3); the 4 threads of a group share a row.
        // m moves up to the true max (O and l times exp2(m − m_new)) only when some row of the warp would
        // otherwise get P > 2^kRescaleLog2: a stale m keeps P ≤ 256 (no overflow in the fp32 sums or the
        // fp16/bf16 P fragments) and cancels exactly in O / l and lse. Once a row's max settles, its tiles
        // skip the D/2·M multiplies of O (FlashAttention-4's conditional rescaling). The rare rescale
        // takes the row maxima again rather than keep them in registers through the vote.
        // Pipelined: O belongs to the running P·V until its wait, so O's factors wait in alpha_o.
        bool grow = false;  // false while a row is masked: −inf > anything is false
#pragma unroll
        for (int mi = 0; mi < M; ++mi)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) grow |= row_max<kNT>(s[mi], rr) * cm > m[mi][rr] + kRescaleLog2;
        const bool rescale = __any_sync(0xffffffffu, grow);
        [[maybe_unused]] float alpha_o[M][2] = {};
        if (rescale) {
#pragma unroll
            for (int mi = 0; mi < M; ++mi)
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) {
                    const float m_new = fmaxf(m[mi][rr], row_max<kNT>(s[mi], rr) * cm);
                    const float alpha = hr::exp2_ftz(m[mi][rr] - (m_new == hr_neg_inf() ? 0.f : m_new));
                    l[mi][rr] *= alpha;
                    m[mi][rr] = m_new;
                    if constexpr (TL::kPipelined) {
                        alpha_o[mi][rr] = alpha;
                    } else {
#pragma unroll
                        for (int x = 0; x < kDT; ++x) {
                            acc_o[mi][x][2 * rr] *= alpha;
                            acc_o[mi][x][2 * rr + 1] *= alpha;
                        }
                    }
                }
        }
        // P = exp2(cm·S − m); a row masked so far (m = −inf) uses 0 and gets P = 0.
#pragma unroll
        for (int mi = 0; mi < M; ++mi)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                const float m_use = m[mi][rr] == hr_neg_inf() ? 0.f : m[mi][rr];
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < kNT; ++nt) {
                    s[mi][nt][2 * rr] = hr::exp2_ftz(fmaf(s[mi][nt][2 * rr], cm, -m_use));
                    s[mi][nt][2 * rr + 1] = hr::exp2_ftz(fmaf(s[mi][nt][2 * rr + 1], cm, -m_use));
                    sum += s[mi][nt][2 * rr] + s[mi][nt][2 * rr + 1];
                }
                l[mi][rr] += sum;
            }

        if constexpr (TL::kStages == 1) {
            if (j + 1 < n_tiles) {
                hr::cp_async_wait<1>();  // Vj has landed; Kj+1 may still be in flight
            } else {
                hr::cp_async_wait<0>();
            }
            __syncthreads();  // Vj is visible to every warp
        }

        if constexpr (TL::kPipelined) {
            // The copies for later tiles, queued here: their uniform branches end the block of code that holds
            // the exponentials, so that ptxas cannot hoist the wait below (an instruction without inputs) above
            // them, which left the tensor cores idle through the softmax.
            load_ahead<TL>(sK, sV, K, V, p, j, n_tiles, kt_next, kt_after);
            // O's rescale and Pj's packing (into the registers Pj−1·Vj−1 reads: written before its wait, they
            // would serialize the products) wait for Pj−1·Vj−1 to finish; Pj's P·V waits for the next iteration.
            hr::wgmma_wait<0>();
            wg_fence_pv<D>(acc_o[0], pw_prev);
            if (rescale) {
#pragma unroll
                for (int rr = 0; rr < 2; ++rr)
#pragma unroll
                    for (int x = 0; x < kDT; ++x) {
                        acc_o[0][x][2 * rr] *= alpha_o[0][rr];
                        acc_o[0][x][2 * rr + 1] *= alpha_o[0][rr];
                    }
            }
            wg_pack_p<T>(pw_prev, s[0]);
            pv_pending = true;
        } else if constexpr (TL::kWgmma) {
            // O += P · Vj as 4·D/64 wgmma m64n64k16 (wg_issue_pv), waited for at once.
            uint32_t pw[kNT / 2][4];
            wg_pack_p<T>(pw, s[0]);
            wg_pv_wait<T, D>(acc_o[0], pw, v_desc + buf * kDescStep);
        } else {
            // O += P · Vj: P's accumulator layout is the A-fragment layout; Vj needs transposed loads, each
            // feeding the warp's M m-tiles.
#pragma unroll
            for (int kk = 0; kk < kNT / 2; ++kk) {
                uint32_t pa[M][4];
#pragma unroll
                for (int mi = 0; mi < M; ++mi) {
                    pa[mi][0] = Mma::pack(s[mi][2 * kk][0], s[mi][2 * kk][1]);
                    pa[mi][1] = Mma::pack(s[mi][2 * kk][2], s[mi][2 * kk][3]);
                    pa[mi][2] = Mma::pack(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
                    pa[mi][3] = Mma::pack(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < D / 16; ++dp) {
                    uint32_t vb[4];
                    hr::ldmatrix_x4_trans_at(vb, v_lane + (kk * 16 * TL::kStride + dp * 16) * (int)sizeof(T));
#pragma unroll
                    for (int mi = 0; mi < M; ++mi) {
                        Mma::run(acc_o[mi][2 * dp], pa[mi], vb[0], vb[1]);
                        Mma::run(acc_o[mi][2 * dp + 1], pa[mi], vb[2], vb[3]);
                    }
                }
            }
        }
        // Two stages: every warp is done with buffer `buf` before iteration j + 1 refills it. One stage:
        // the next iteration's first barrier does that for Vj, and Kj+1 is already queued. Three (pipelined):
        // iteration j refills the buffers of tiles j − 1 (K, read by S, waited for in iteration j − 1) and j − 2
        // (V, read by P·V, waited for in iteration j − 1) after its first barrier, which every thread reaches
        // only once done with iteration j − 1: no barrier here.
        if constexpr (TL::kStages == 2) {
            if constexpr (kWgSkip) {
                hr::sync_block_any_site();  // a warpgroup that skipped tile j meets this barrier from its skip
            } else {
                __syncthreads();
            }
        }
        kt = kt_next;
        kt_next = kt_after;
    }
    if (n_tiles == 0) hr::cp_async_wait<0>();  // Qi's copy must land before the block exits
    if constexpr (TL::kPipelined) {
        if (n_tiles > 0) {
            // The last tile's O += P·V: its values were the last copy queued. (Two warpgroups: not for one that
            // skipped the last tile; the barrier is every thread's.)
            hr::cp_async_wait<0>();
            hr::fence_proxy_async();
            __syncthreads();
            if (!kWgSkip || pv_pending) wg_pv_wait<T, D>(acc_o[0], pw_prev, v_desc + ((n_tiles - 1) % 3) * kDescStep);
        }
    }

    // O = acc / l · gate and lse = (m + log2 l)·ln 2, with l summed over the 4 threads of the row.
    T* O = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
#pragma unroll
    for (int mi = 0; mi < M; ++mi)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            float lt = l[mi][rr];
            lt += __shfl_xor_sync(0xffffffffu, lt, 1);
            lt += __shfl_xor_sync(0xffffffffu, lt, 2);
            const int r = (warp * M + mi) * 16 + g + rr * 8;
            if (r >= rows.count) continue;
            const int i = rows.row(r);
            const float gv = hr_gate(p, b, i, h);
            const bool empty = lt == 0.f || gv == 0.f;
            const float f = empty ? 0.f : gv / lt;
            T* orow = O + i * p.o_row_stride;
#pragma unroll
            for (int x = 0; x < kDT; ++x) {
                const uint32_t packed = Mma::pack(acc_o[mi][x][2 * rr] * f, acc_o[mi][x][2 * rr + 1] * f);
                *reinterpret_cast<uint32_t*>(orow + x * 8 + 2 * t4) = packed;
            }
            if (p.lse != nullptr && t4 == 0)
                p.lse[((int64_t)b * p.heads + h) * p.q_len + i] =
                    empty ? hr_neg_inf() : (m[mi][rr] + log2f(lt)) * 0.69314718055994531f;
        }
}

// The dense/causal kernel body of tiling TL: the block's key tiles up to the causal diagonal (HrDenseKeys),
// query rows plain (whole grid or a work list; a tile whose gate rows are all zero writes zeros and exits)
// or compacted (q_rows).
template <typename T, class TL>
__device__ __forceinline__ void flash_dense(const AttnParams& p) {
    int qtile, h, b;
    if (!hr_block_tile(p, p.causal != 0, qtile, h, b)) return;  // past a device-sized work list
    const HrRows rows = hr_rows(p, b, h, qtile, TL::kBr);
    if (rows.idx == nullptr) {
        T* O = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
        if (hr_skip_gated_tile(p, O, b, h, rows.base, TL::kBr)) return;
    }
    const HrDenseKeys<kBc> keys(p, rows.row(0), rows.row(rows.count - 1));
    attend<T, TL>(p, b, h, rows, keys);
}

// The block-sparse kernel body of tiling TL: the listed key tiles of the block's query tile (HrSparseKeys),
// plain query rows (whole grid or a work list).
template <typename T, class TL>
__device__ __forceinline__ void flash_sparse(const AttnParams& p) {
    int qtile, h, b;
    if (!hr_block_tile(p, p.causal != 0, qtile, h, b)) return;  // past a device-sized work list
    const HrRows rows = hr_plain_rows(p, qtile, TL::kBr);
    T* O = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
    if (hr_skip_gated_tile(p, O, b, h, rows.base, TL::kBr)) return;
    const HrSparseKeys<TL::kBr, kBc> keys(p, h, qtile);
    attend<T, TL>(p, b, h, rows, keys);
}

// Compacted query rows (q_rows) over a block-sparse layout, their original tiles' lists merged on the
// device (HrMergedKeys): no merged list is ever uploaded, and a work list built on the device needs none.
template <typename T, class TL>
__device__ __forceinline__ void flash_sparse_merge(const AttnParams& p) {
    int qtile, h, b;
    if (!hr_block_tile(p, p.causal != 0, qtile, h, b)) return;  // past a device-sized work list
    const HrRows rows = hr_rows(p, b, h, qtile, TL::kBr);
    HR_DYNAMIC_SMEM(smem_raw);
    const HrMergedKeys<TL::kBr, kBc, kTwoWarpgroups<TL>> keys(p, h, rows, smem_raw + hr_merge_offset(TL::kSmemBytes));
    attend<T, TL>(p, b, h, rows, keys);
}

}  // namespace hr_mma

// The dense/causal, block-sparse and merging kernels of tiling TL, dtype T and head dim D, named
// hr_flash_fwd_<PREFIX><SUFFIX>, hr_flash_sparse_<PREFIX><SUFFIX> and hr_flash_sparse_merge_<PREFIX><SUFFIX>
// (PREFIX empty in W4: hr_flash_fwd_bf16_d128; wg_ in WG: hr_flash_fwd_wg_bf16_d128). The merging kernels of the
// 128-thread tilings ask for 2 blocks per SM: left to itself, ptxas held them to 168 registers at D = 96 on sm_80
// (3 blocks) and spilled; shared memory allows 2 (D = 128) or 3 (D = 96) anyway. Those of the 256-thread tilings
// (WGX2, WGPX2) ask for 1: 2 would cap them at 128 registers, below what their loop holds.
#define HR_FLASH_MMA_KERNELS(TL, PREFIX, T, D, SUFFIX)                                                                \
    extern "C" __global__ void __launch_bounds__(hr_mma::TL<D>::kThreads)                                             \
        hr_flash_fwd_##PREFIX##SUFFIX(const AttnParams p) {                                                           \
        hr_mma::flash_dense<T, hr_mma::TL<D>>(p);                                                                     \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(hr_mma::TL<D>::kThreads)                                             \
        hr_flash_sparse_##PREFIX##SUFFIX(const AttnParams p) {                                                        \
        hr_mma::flash_sparse<T, hr_mma::TL<D>>(p);                                                                    \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(hr_mma::TL<D>::kThreads, hr_mma::TL<D>::kThreads == 256 ? 1 : 2)     \
        hr_flash_sparse_merge_##PREFIX##SUFFIX(const AttnParams p) {                                                  \
        hr_mma::flash_sparse_merge<T, hr_mma::TL<D>>(p);                                                              \
    }                                                                                                                 \
    static_assert(hr_mma::TL<D>::kSmemBytes <= 227 * 1024, "shared memory of the " #PREFIX #SUFFIX " kernels exceeds sm_90")

// The dense/causal kernel alone in tiling TL, named hr_flash_fwd_<PREFIX><SUFFIX> (hr_flash_fwd_w2_bf16_d128, ...):
// the tilings whose block-sparse kernels are not built.
#define HR_FLASH_MMA_DENSE(TL, PREFIX, T, D, SUFFIX)                                                                  \
    extern "C" __global__ void __launch_bounds__(hr_mma::TL<D>::kThreads)                                             \
        hr_flash_fwd_##PREFIX##SUFFIX(const AttnParams p) {                                                           \
        hr_mma::flash_dense<T, hr_mma::TL<D>>(p);                                                                     \
    }                                                                                                                 \
    static_assert(hr_mma::TL<D>::kSmemBytes <= 227 * 1024, "shared memory of the " #PREFIX #SUFFIX " kernel exceeds sm_90")
