// headroute: fused flash attention forward on tensor cores, fp16 and bf16: the kernels of the
// tensor-core family. Each resolves its block's (batch, head, query rows) and its key tiles, then runs
// the one shared inner loop, hr_mma::attend (flash_tile_mma.cuh):
//   hr_flash_fwd_*   dense/causal key tiles: under a causal mask tiles wholly above the diagonal are
//                    never loaded, only the diagonal and the end of S pay for a mask; query rows plain
//                    (whole grid or a work list of gate-active tiles) or compacted (q_rows);
//   hr_flash_sparse_* the listed key tiles of a block-sparse layout: full tiles without a mask,
//                    partial ones with their bits; plain query rows (whole grid or a work list);
//   hr_flash_sparse_merge_* compacted query rows over a block-sparse layout, the lists of the rows'
//                    original tiles merged in the kernel.
// Tilings (flash_tile_mma.cuh): every kernel in W4 (64-row blocks: hr_flash_fwd_bf16_d128, ...); the
// dense/causal ones for D ≥ 64 also in W2 (64 rows: hr_flash_fwd_w2_bf16_d128, ...), and for D = 64 and
// 128 in W4X2 (128 rows: hr_flash_fwd_w4x2_bf16_d128, ...), whose work lists and compacted tiles then
// count 128 rows. The host picks (FlashPlan); the device check times all three. The WG and WGP tilings
// (wgmma, sm_90a only) are a module of their own, flash_fwd_wgmma.cu.
#include "flash_tile_mma.cuh"

// The dense/causal, block-sparse and merging kernels of each dtype and head dim in W4 (HR_FLASH_MMA_KERNELS,
// flash_tile_mma.cuh), named without a tiling prefix.
HR_FLASH_MMA_KERNELS(W4, , __nv_bfloat16, 32, bf16_d32);
HR_FLASH_MMA_KERNELS(W4, , __nv_bfloat16, 64, bf16_d64);
HR_FLASH_MMA_KERNELS(W4, , __nv_bfloat16, 96, bf16_d96);
HR_FLASH_MMA_KERNELS(W4, , __nv_bfloat16, 128, bf16_d128);
HR_FLASH_MMA_KERNELS(W4, , __half, 32, f16_d32);
HR_FLASH_MMA_KERNELS(W4, , __half, 64, f16_d64);
HR_FLASH_MMA_KERNELS(W4, , __half, 96, f16_d96);
HR_FLASH_MMA_KERNELS(W4, , __half, 128, f16_d128);

// The dense/causal kernel alone (HR_FLASH_MMA_DENSE, flash_tile_mma.cuh) in W2 for D = 64, 96 and 128 and in
// W4X2 (128-row blocks) for D = 64 and 128. Not the sparse kernel, whose mask words and list pointers made ptxas
// spill (W2 at D = 128), nor D = 32 (W2 spilled on sm_86/sm_89; and little to gain there).
HR_FLASH_MMA_DENSE(W2, w2_, __nv_bfloat16, 64, bf16_d64);
HR_FLASH_MMA_DENSE(W2, w2_, __nv_bfloat16, 96, bf16_d96);
HR_FLASH_MMA_DENSE(W2, w2_, __nv_bfloat16, 128, bf16_d128);
HR_FLASH_MMA_DENSE(W2, w2_, __half, 64, f16_d64);
HR_FLASH_MMA_DENSE(W2, w2_, __half, 96, f16_d96);
HR_FLASH_MMA_DENSE(W2, w2_, __half, 128, f16_d128);
HR_FLASH_MMA_DENSE(W4X2, w4x2_, __nv_bfloat16, 64, bf16_d64);
HR_FLASH_MMA_DENSE(W4X2, w4x2_, __nv_bfloat16, 128, bf16_d128);
HR_FLASH_MMA_DENSE(W4X2, w4x2_, __half, 64, f16_d64);
HR_FLASH_MMA_DENSE(W4X2, w4x2_, __half, 128, f16_d128);
