// headroute: the flash forward kernels in the WG and WGP tilings (flash_tile_mma.cuh): Hopper's warpgroup
// wgmma.mma_async for both products, fp16 and bf16, D = 64 and 128; WGP also runs each tile's P·V on the
// tensor cores while the next tile's softmax runs. sm_90a machine code only (the Makefile builds this
// module for sm_90a alone: wgmma exists on no other architecture), so the host plans these kernels only on
// a compute capability 9.0 device (FlashPlan.Tiling.WG, WGP). The same three kinds, contract, key tiles and
// query rows as flash_fwd_mma.cu's W4 kernels, and the same code (hr_mma::flash_dense, flash_sparse,
// flash_sparse_merge over the one inner loop):
//   hr_flash_fwd_{wg,wgp}_*          dense/causal;
//   hr_flash_sparse_{wg,wgp}_*       the listed key tiles of a block-sparse layout;
//   hr_flash_sparse_merge_{wg,wgp}_* compacted rows over a block-sparse layout, lists merged in the kernel
//                                    (2 blocks per SM asked for, as in W4).
#include "flash_tile_mma.cuh"

HR_FLASH_MMA_KERNELS(WG, wg_, __nv_bfloat16, 64, bf16_d64);
HR_FLASH_MMA_KERNELS(WG, wg_, __nv_bfloat16, 128, bf16_d128);
HR_FLASH_MMA_KERNELS(WG, wg_, __half, 64, f16_d64);
HR_FLASH_MMA_KERNELS(WG, wg_, __half, 128, f16_d128);
HR_FLASH_MMA_KERNELS(WGP, wgp_, __nv_bfloat16, 64, bf16_d64);
HR_FLASH_MMA_KERNELS(WGP, wgp_, __nv_bfloat16, 128, bf16_d128);
HR_FLASH_MMA_KERNELS(WGP, wgp_, __half, 64, f16_d64);
HR_FLASH_MMA_KERNELS(WGP, wgp_, __half, 128, f16_d128);
