// headroute: fused flash attention forward on tensor cores, fp16 and bf16: the kernels of the
// tensor-core family. Each resolves its block's (batch, head, query rows) and its key tiles, then runs
// the one shared inner loop, hr_mma::attend (flash_tile_mma.cuh):
//   hr_flash_fwd_*   dense/causal key tiles: under a causal mask tiles wholly above the diagonal are
//                    never loaded, only the diagonal and the end of S pay for a mask; query rows plain
//                    (whole grid or a work list of gate-active tiles) or compacted (q_rows);
//   hr_flash_sparse_* the listed key tiles of a block-sparse layout: full tiles without a mask,
//                    partial ones with their bits; query rows plain or compacted
//                    (then one host-merged list per launched block).
#include "flash_tile_mma.cuh"

namespace {

using hr_mma::kBc;
using hr_mma::kBr;
using hr_mma::kThreads;

template <typename T, int D>
__device__ __forceinline__ void flash_dense(const AttnParams& p) {
    int qtile, h, b;
    if (!hr_block_tile(p, p.causal != 0, qtile, h, b)) return;  // past a device-sized work list
    const HrRows rows = hr_rows(p, b, h, qtile, kBr);
    if (rows.idx == nullptr) {
        T* O = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
        if (hr_skip_gated_tile(p, O, b, h, rows.base, kBr)) return;
    }
    const HrDenseKeys<kBc> keys(p, rows.row(0), rows.row(rows.count - 1));
    hr_mma::attend<T, D>(p, b, h, rows, keys);
}

template <typename T, int D>
__device__ __forceinline__ void flash_sparse(const AttnParams& p) {
    int qtile, h, b;
    if (!hr_block_tile(p, p.causal != 0, qtile, h, b)) return;  // past a device-sized work list
    const HrRows rows = hr_rows(p, b, h, qtile, kBr);
    if (rows.idx == nullptr) {
        T* O = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
        if (hr_skip_gated_tile(p, O, b, h, rows.base, kBr)) return;
    }
    const HrSparseKeys<kBr, kBc> keys(p, h, qtile);
    hr_mma::attend<T, D>(p, b, h, rows, keys);
}

}  // namespace

#define HR_FLASH_MMA(T, D, SUFFIX)                                                                        \
    extern "C" __global__ void __launch_bounds__(kThreads) hr_flash_fwd_##SUFFIX(const AttnParams p) {    \
        flash_dense<T, D>(p);                                                                               \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(kThreads) hr_flash_sparse_##SUFFIX(const AttnParams p) { \
        flash_sparse<T, D>(p);                                                                              \
    }                                                                                                       \
    static_assert(hr_mma::Tile<D>::kSmemBytes <= 227 * 1024, "shared memory of the " #SUFFIX " kernels exceeds sm_90")

HR_FLASH_MMA(__nv_bfloat16, 32, bf16_d32);
HR_FLASH_MMA(__nv_bfloat16, 64, bf16_d64);
HR_FLASH_MMA(__nv_bfloat16, 96, bf16_d96);
HR_FLASH_MMA(__nv_bfloat16, 128, bf16_d128);
HR_FLASH_MMA(__half, 32, f16_d32);
HR_FLASH_MMA(__half, 64, f16_d64);
HR_FLASH_MMA(__half, 96, f16_d96);
HR_FLASH_MMA(__half, 128, f16_d128);
