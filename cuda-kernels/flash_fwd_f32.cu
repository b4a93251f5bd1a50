// headroute: fused flash attention forward in fp32 on CUDA cores: the kernels of the fp32 family.
// Each resolves its block's (batch, head, query rows) and its key tiles, then runs the one shared
// inner loop, hr_f32::attend (flash_tile_f32.cuh):
//   hr_flash_fwd_f32_*    dense/causal key tiles (tiles above a causal diagonal never visited), plain
//                         or compacted query rows;
//   hr_flash_sparse_f32_* the listed key tiles of a block-sparse layout (full: no mask; partial: bits),
//                         plain query rows (whole grid or a work list);
//   hr_flash_sparse_merge_f32_* compacted query rows over a block-sparse layout, their original tiles'
//                         lists merged in the kernel.
#include "flash_tile_f32.cuh"

namespace {

using hr_f32::kBc;
using hr_f32::kBr;
using hr_f32::kThreads;

template <int DMAX>
__device__ __forceinline__ void flash_dense(const AttnParams& p) {
    int qtile, h, b;
    if (!hr_block_tile(p, p.causal != 0, qtile, h, b)) return;  // past a device-sized work list
    const HrRows rows = hr_rows(p, b, h, qtile, kBr);
    if (rows.idx == nullptr) {
        float* O = static_cast<float*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
        if (hr_skip_gated_tile(p, O, b, h, rows.base, kBr)) return;
    }
    const HrDenseKeys<kBc> keys(p, rows.row(0), rows.row(rows.count - 1));
    hr_f32::attend<DMAX>(p, b, h, rows, keys);
}

template <int DMAX>
__device__ __forceinline__ void flash_sparse(const AttnParams& p) {
    int qtile, h, b;
    if (!hr_block_tile(p, p.causal != 0, qtile, h, b)) return;  // past a device-sized work list
    const HrRows rows = hr_plain_rows(p, qtile, kBr);
    float* O = static_cast<float*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
    if (hr_skip_gated_tile(p, O, b, h, rows.base, kBr)) return;
    const HrSparseKeys<kBr, kBc> keys(p, h, qtile);
    hr_f32::attend<DMAX>(p, b, h, rows, keys);
}

// Compacted query rows over a block-sparse layout, their original tiles' lists merged in the kernel.
template <int DMAX>
__device__ __forceinline__ void flash_sparse_merge(const AttnParams& p) {
    int qtile, h, b;
    if (!hr_block_tile(p, p.causal != 0, qtile, h, b)) return;  // past a device-sized work list
    const HrRows rows = hr_rows(p, b, h, qtile, kBr);
    HR_DYNAMIC_SMEM(smem_raw);
    const HrMergedKeys<kBr, kBc> keys(p, h, rows, smem_raw + hr_merge_offset((int)sizeof(hr_f32::Smem<DMAX>)));
    hr_f32::attend<DMAX>(p, b, h, rows, keys);
}

}  // namespace

// Head dims up to 64, 128 and 256; the host picks the smallest that fits and sizes shared memory
// with sizeof(Smem<DMAX>): about 29 KB, 54 KB and 103 KB (above 48 KB it must opt in).
#define HR_FLASH_F32(DMAX)                                                                                       \
    extern "C" __global__ void __launch_bounds__(kThreads, 2) hr_flash_fwd_f32_d##DMAX(const AttnParams p) {    \
        flash_dense<DMAX>(p);                                                                                      \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(kThreads, 2) hr_flash_sparse_f32_d##DMAX(const AttnParams p) { \
        flash_sparse<DMAX>(p);                                                                                     \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(kThreads, 2)                                                      \
        hr_flash_sparse_merge_f32_d##DMAX(const AttnParams p) {                                                    \
        flash_sparse_merge<DMAX>(p);                                                                               \
    }

HR_FLASH_F32(64)
HR_FLASH_F32(128)
HR_FLASH_F32(256)
