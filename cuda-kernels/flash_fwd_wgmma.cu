// headroute: the flash forward kernels in the WG tiling (flash_tile_mma.cuh): Hopper's warpgroup
// wgmma.mma_async for both products, fp16 and bf16, D = 64 and 128. sm_90a machine code only (the Makefile
// builds this module for sm_90a alone: wgmma exists on no other architecture), so the host plans these
// kernels only on a compute capability 9.0 device (FlashPlan.Tiling.WG). The same three kinds, contract,
// key tiles and query rows as flash_fwd_mma.cu's W4 kernels, and the same code (hr_mma::flash_dense,
// flash_sparse, flash_sparse_merge over the one inner loop):
//   hr_flash_fwd_wg_*          dense/causal;
//   hr_flash_sparse_wg_*       the listed key tiles of a block-sparse layout;
//   hr_flash_sparse_merge_wg_* compacted rows over a block-sparse layout, lists merged in the kernel
//                              (2 blocks per SM asked for, as in W4).
#include "flash_tile_mma.cuh"

#define HR_FLASH_WG(T, D, SUFFIX)                                                                                     \
    extern "C" __global__ void __launch_bounds__(hr_mma::WG<D>::kThreads) hr_flash_fwd_wg_##SUFFIX(const AttnParams p) { \
        hr_mma::flash_dense<T, hr_mma::WG<D>>(p);                                                                     \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(hr_mma::WG<D>::kThreads)                                             \
        hr_flash_sparse_wg_##SUFFIX(const AttnParams p) {                                                             \
        hr_mma::flash_sparse<T, hr_mma::WG<D>>(p);                                                                    \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(hr_mma::WG<D>::kThreads, 2)                                          \
        hr_flash_sparse_merge_wg_##SUFFIX(const AttnParams p) {                                                       \
        hr_mma::flash_sparse_merge<T, hr_mma::WG<D>>(p);                                                              \
    }                                                                                                                 \
    static_assert(hr_mma::WG<D>::kSmemBytes <= 227 * 1024, "shared memory of the wg_" #SUFFIX " kernels exceeds sm_90")

HR_FLASH_WG(__nv_bfloat16, 64, bf16_d64);
HR_FLASH_WG(__nv_bfloat16, 128, bf16_d128);
HR_FLASH_WG(__half, 64, f16_d64);
HR_FLASH_WG(__half, 128, f16_d128);
