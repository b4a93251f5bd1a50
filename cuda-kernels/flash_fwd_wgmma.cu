// headroute: the dense/causal flash forward kernels in the WG tiling (flash_tile_mma.cuh): Hopper's
// warpgroup wgmma.mma_async for both products, fp16 and bf16, D = 64 and 128. sm_90a machine code only
// (the Makefile builds this module for sm_90a alone: wgmma exists on no other architecture), so the host
// plans these kernels only on a compute capability 9.0 device (FlashPlan.Tiling.WG). Same contract, key
// tiles and query rows as hr_flash_fwd_* in flash_fwd_mma.cu, and the same code: hr_mma::flash_dense.
#include "flash_tile_mma.cuh"

#define HR_FLASH_WG(T, D, SUFFIX)                                                                                  \
    extern "C" __global__ void __launch_bounds__(hr_mma::WG<D>::kThreads) hr_flash_fwd_wg_##SUFFIX(const AttnParams p) { \
        hr_mma::flash_dense<T, hr_mma::WG<D>>(p);                                                                    \
    }                                                                                                                \
    static_assert(hr_mma::WG<D>::kSmemBytes <= 227 * 1024, "shared memory of hr_flash_fwd_wg_" #SUFFIX " exceeds sm_90")

HR_FLASH_WG(__nv_bfloat16, 64, bf16_d64);
HR_FLASH_WG(__nv_bfloat16, 128, bf16_d128);
HR_FLASH_WG(__half, 64, f16_d64);
HR_FLASH_WG(__half, 128, f16_d128);
