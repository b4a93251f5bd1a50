// headroute: the flash forward kernels in the WG, WGP, WGX2 and WGPX2 tilings (flash_tile_mma.cuh): Hopper's
// warpgroup wgmma.mma_async for both products, fp16 and bf16, D = 64 and 128; WGP also runs each tile's P·V on
// the tensor cores while the next tile's softmax runs; WGX2 and WGPX2 are WG and WGP with two warpgroups on
// 128-row blocks. sm_90a machine code only (the Makefile builds this module for sm_90a alone: wgmma exists on
// no other architecture), so the host plans these kernels only on a compute capability 9.0 device
// (FlashPlan.Tiling.wgmma()). The same three kinds, contract, key tiles and
// query rows as flash_fwd_mma.cu's W4 kernels, and the same code (hr_mma::flash_dense, flash_sparse,
// flash_sparse_merge over the one inner loop):
//   hr_flash_fwd_<tiling>_*          dense/causal;
//   hr_flash_sparse_<tiling>_*       the listed key tiles of a block-sparse layout;
//   hr_flash_sparse_merge_<tiling>_* compacted rows over a block-sparse layout, lists merged in the kernel
//                                    (WG, WGP: 2 blocks per SM asked for, as in W4; WGX2, WGPX2: 1);
// for each tiling wg, wgp, wgx2 and wgpx2. WGX2 and WGPX2's blocks are 128 rows: their work lists and compacted
// tiles count 128 rows, and a block-sparse layout is listed for them in 128-row tiles (SparseTiles).
#include "flash_tile_mma.cuh"

HR_FLASH_MMA_KERNELS(WG, wg_, __nv_bfloat16, 64, bf16_d64);
HR_FLASH_MMA_KERNELS(WG, wg_, __nv_bfloat16, 128, bf16_d128);
HR_FLASH_MMA_KERNELS(WG, wg_, __half, 64, f16_d64);
HR_FLASH_MMA_KERNELS(WG, wg_, __half, 128, f16_d128);
HR_FLASH_MMA_KERNELS(WGP, wgp_, __nv_bfloat16, 64, bf16_d64);
HR_FLASH_MMA_KERNELS(WGP, wgp_, __nv_bfloat16, 128, bf16_d128);
HR_FLASH_MMA_KERNELS(WGP, wgp_, __half, 64, f16_d64);
HR_FLASH_MMA_KERNELS(WGP, wgp_, __half, 128, f16_d128);
HR_FLASH_MMA_KERNELS(WGX2, wgx2_, __nv_bfloat16, 64, bf16_d64);
HR_FLASH_MMA_KERNELS(WGX2, wgx2_, __nv_bfloat16, 128, bf16_d128);
HR_FLASH_MMA_KERNELS(WGX2, wgx2_, __half, 64, f16_d64);
HR_FLASH_MMA_KERNELS(WGX2, wgx2_, __half, 128, f16_d128);
HR_FLASH_MMA_KERNELS(WGPX2, wgpx2_, __nv_bfloat16, 64, bf16_d64);
HR_FLASH_MMA_KERNELS(WGPX2, wgpx2_, __nv_bfloat16, 128, bf16_d128);
HR_FLASH_MMA_KERNELS(WGPX2, wgpx2_, __half, 64, f16_d64);
HR_FLASH_MMA_KERNELS(WGPX2, wgpx2_, __half, 128, f16_d128);

// Probes of the wgmma operand layouts alone, for the device check's first run: one warpgroup computes
// D (64 × 64, fp32) = A (64 × 16) · B (16 × 64), bf16, A given row-major and turned into registers in the
// mma.sync A-fragment layout, B stored in shared memory exactly as the WG tiles store keys and values
// (wg_tile_offset) and read through the descriptors attend() builds: hr_wgmma_probe_k as S = Qi·Kjᵀ reads
// Kj (B = Kᵀ, K-major: B[k][n] is key n's element k), hr_wgmma_probe_mn as O = P·Vj reads Vj (B[k][n] is
// key k's element n, MN-major). When the WG kernels disagree with the CPU engine, these say whether the
// layouts are to blame.
struct HrWgmmaProbeParams {
    const __nv_bfloat16* a;  // 64 × 16, row-major
    const __nv_bfloat16* b;  // 16 × 64, row-major
    float* d;                // 64 × 64, row-major
};

namespace {

template <bool kMnMajor>
__device__ __forceinline__ void wgmma_probe(const HrWgmmaProbeParams& p) {
    using hr_mma::kWgColumnBytes;
    using hr_mma::wg_tile_offset;
    HR_DYNAMIC_SMEM(smem);
    // The tile: 64 keys × 64 dims (8 columns of 16 bytes), zeros where B does not reach.
    for (int i = threadIdx.x; i < 64 * 64 / 2; i += 128) reinterpret_cast<uint32_t*>(smem)[i] = 0u;
    __syncthreads();
    for (int i = threadIdx.x; i < 16 * 64; i += 128) {
        const int k = i / 64, n = i % 64;
        // K-major: key n, dim k (a K tile's row n); MN-major: key k, dim n (a V tile's row k).
        const int key = kMnMajor ? k : n, dim = kMnMajor ? n : k;
        *reinterpret_cast<uint16_t*>(smem + wg_tile_offset(key, dim / 8) + 2 * (dim % 8)) = reinterpret_cast<const uint16_t*>(p.b)[i];
    }
    hr::fence_proxy_async();
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    auto pair = [&](int r, int c) {  // A[r][c], A[r][c + 1] as one b32 (the lower element in the low half)
        const uint16_t* x = reinterpret_cast<const uint16_t*>(p.a) + (16 * warp + r) * 16 + c;
        return (uint32_t)x[0] | ((uint32_t)x[1] << 16);
    };
    uint32_t a[4] = {pair(g, 2 * t), pair(g + 8, 2 * t), pair(g, 2 * t + 8), pair(g + 8, 2 * t + 8)};
    float d[8][4] = {};
    // The descriptors of attend(): K tiles (LBO the next column, SBO the next 8 keys), V tiles the other way.
    const uint64_t desc = kMnMajor ? hr::wgmma_desc(hr::smem_at(smem), 128, kWgColumnBytes)
                                   : hr::wgmma_desc(hr::smem_at(smem), kWgColumnBytes, 128);
    hr::wgmma_fence_operands(d);  // registers the product reads are written before the fence (PTX: wgmma.fence)
    hr::wgmma_fence_operands(a);
    hr::wgmma_fence();
    hr::WgmmaOp<__nv_bfloat16>::run<kMnMajor>(d, a, desc, false);
    hr::wgmma_commit();
    hr::wgmma_wait<0>();
    hr::wgmma_fence_operands(d);
    hr::wgmma_fence_operands(a);
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) p.d[(16 * warp + g + 8 * (e >> 1)) * 64 + 8 * j + 2 * t + (e & 1)] = d[j][e];
}

}  // namespace

extern "C" __global__ void __launch_bounds__(128) hr_wgmma_probe_k(const HrWgmmaProbeParams p) { wgmma_probe<false>(p); }
extern "C" __global__ void __launch_bounds__(128) hr_wgmma_probe_mn(const HrWgmmaProbeParams p) { wgmma_probe<true>(p); }

// Probes of the attention loop's own wgmma steps at D = 128, fp16 and bf16, where the single products above
// leave off: the 64-key tile loaded by the kernels' cp.async loader (load_keys_wg) into the second buffer (a
// descriptor start other than the dynamic shared memory's first byte), fenced to the async proxy, and the
// kernels' issue functions, whose descriptors step through k (and, for P·V, the two 64-column halves of O),
// every product accumulating onto D's previous value:
//   hr_wgmma_probe_s_*:  D (64 × 64) = C + Q·Kᵀ by wg_issue_s (8 chained products), Q row-major in registers as
//                        the A-fragments, K the tile (64 keys × 128 dims, row-major in global memory);
//   hr_wgmma_probe_pv_*: D (64 × 128) = C + P·V by wg_pv_wait (8 chained products), P given as fp32 values in
//                        S's accumulator layout and packed by wg_pack_p, V the tile.
struct HrWgmmaChainParams {
    const void* a;   // Q: 64 × 128 of T, row-major; P: 64 × 64 fp32 (values representable in T), row-major
    const void* b;   // K or V: 64 × 128 of T, row-major
    const float* c;  // C: 64 × 64 (S) or 64 × 128 (P·V), row-major
    float* d;        // D, as C
};

namespace {

constexpr int kProbeD = 128;

template <typename T>
__device__ __forceinline__ T* probe_tile(unsigned char* smem) {
    // The second of two key/value buffers of a WG kernel at D = 128.
    return reinterpret_cast<T*>(smem) + hr_mma::WG<kProbeD>::kKVElems;
}

template <typename T>
__device__ __forceinline__ void probe_load_tile(T* tile, const void* b) {
    hr_mma::load_keys_wg<hr_mma::WG<kProbeD>, T>(tile, static_cast<const T*>(b), kProbeD, 0, hr_mma::kBc);
    hr::cp_async_commit();
    hr::cp_async_wait<0>();
    hr::fence_proxy_async();
    __syncthreads();
}

// This thread's accumulators of a 64 × 8J matrix M, row-major with row length ld, read from m (or stored to out):
// x[j][e] = M[16w + g + 8(e / 2)][8j + 2t + e % 2].
template <int J, bool kStore>
__device__ __forceinline__ void probe_block(float (&x)[J][4], const float* m, float* out, int ld) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < J; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int i = (16 * warp + g + 8 * (e >> 1)) * ld + 8 * j + 2 * t + (e & 1);
            if constexpr (kStore) {
                out[i] = x[j][e];
            } else {
                x[j][e] = m[i];
            }
        }
}

template <typename T>
__device__ __forceinline__ void wgmma_probe_s(const HrWgmmaChainParams& p) {
    HR_DYNAMIC_SMEM(smem);
    T* tile = probe_tile<T>(smem);
    probe_load_tile<T>(tile, p.b);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    auto pair = [&](int r, int c) {  // Q[16w + r][c], Q[16w + r][c + 1] as one b32 (the lower element in the low half)
        const uint16_t* x = static_cast<const uint16_t*>(p.a) + (16 * warp + r) * kProbeD + c;
        return (uint32_t)x[0] | ((uint32_t)x[1] << 16);
    };
    uint32_t qf[kProbeD / 16][4];
#pragma unroll
    for (int kk = 0; kk < kProbeD / 16; ++kk) {
        qf[kk][0] = pair(g, 16 * kk + 2 * t);
        qf[kk][1] = pair(g + 8, 16 * kk + 2 * t);
        qf[kk][2] = pair(g, 16 * kk + 2 * t + 8);
        qf[kk][3] = pair(g + 8, 16 * kk + 2 * t + 8);
    }
    float s[hr_mma::kBc / 8][4];
    probe_block<hr_mma::kBc / 8, false>(s, p.c, nullptr, hr_mma::kBc);
    hr::wgmma_fence_operands(s);
#pragma unroll
    for (int kk = 0; kk < kProbeD / 16; ++kk) hr::wgmma_fence_operands(qf[kk]);
    hr::wgmma_fence();
    hr_mma::wg_issue_s<T, kProbeD>(s, qf, hr_mma::wg_k_desc(hr::smem_at(tile)));
    hr::wgmma_commit();
    hr::wgmma_wait<0>();
    hr::wgmma_fence_operands(s);
#pragma unroll
    for (int kk = 0; kk < kProbeD / 16; ++kk) hr::wgmma_fence_operands(qf[kk]);
    probe_block<hr_mma::kBc / 8, true>(s, nullptr, p.d, hr_mma::kBc);
}

template <typename T>
__device__ __forceinline__ void wgmma_probe_pv(const HrWgmmaChainParams& p) {
    HR_DYNAMIC_SMEM(smem);
    T* tile = probe_tile<T>(smem);
    probe_load_tile<T>(tile, p.b);
    float sp[hr_mma::kBc / 8][4];
    probe_block<hr_mma::kBc / 8, false>(sp, static_cast<const float*>(p.a), nullptr, hr_mma::kBc);
    uint32_t pw[hr_mma::kBc / 16][4];
    hr_mma::wg_pack_p<T>(pw, sp);
    float acc_o[kProbeD / 8][4];
    probe_block<kProbeD / 8, false>(acc_o, p.c, nullptr, kProbeD);
    hr_mma::wg_pv_wait<T, kProbeD>(acc_o, pw, hr_mma::wg_v_desc(hr::smem_at(tile)));
    probe_block<kProbeD / 8, true>(acc_o, nullptr, p.d, kProbeD);
}

}  // namespace

// Dynamic shared memory: two D = 128 tiles (the probe uses the second), 32 KiB.
extern "C" __global__ void __launch_bounds__(128) hr_wgmma_probe_s_bf16(const HrWgmmaChainParams p) {
    wgmma_probe_s<__nv_bfloat16>(p);
}
extern "C" __global__ void __launch_bounds__(128) hr_wgmma_probe_s_f16(const HrWgmmaChainParams p) { wgmma_probe_s<__half>(p); }
extern "C" __global__ void __launch_bounds__(128) hr_wgmma_probe_pv_bf16(const HrWgmmaChainParams p) {
    wgmma_probe_pv<__nv_bfloat16>(p);
}
extern "C" __global__ void __launch_bounds__(128) hr_wgmma_probe_pv_f16(const HrWgmmaChainParams p) { wgmma_probe_pv<__half>(p); }
