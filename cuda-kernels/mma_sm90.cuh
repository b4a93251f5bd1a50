// headroute: Hopper's warpgroup tensor-core product (PTX ISA: wgmma.mma_async, sm_90a only), as the WG
// and WGP tilings of flash_tile_mma.cuh use it: D (64 × 64, fp32) += A (64 × 16, f16/bf16, in registers) ·
// B (16 × 64, f16/bf16, in shared memory, named by a matrix descriptor).
//
// Layouts (the four warps of a warpgroup, warp w holding rows 16w … 16w + 15; g = lane / 4, t = lane % 4):
//   A: each warp's 16 rows as the A-fragment of mma.m16n8k16 (mma_sm80.cuh), 4 × b32;
//   D: each warp's 16 rows as eight m16n8 accumulators side by side, float[8][4]: d[j][e] = D[16w + g +
//      8·(e / 2)][8j + 2t + e % 2], so S and O keep mma.sync's register layout and the softmax is shared;
//   B: no-swizzle core matrices, 8 rows of 16 bytes stored as 128 contiguous bytes. The descriptor's
//      leading byte offset (LBO) steps to the next core matrix along K, the stride byte offset (SBO) along N.
//      K-major (imm-trans-b = 0, B = Kᵀ for S = Q·Kᵀ): a core matrix is 8 n × 8 k; MN-major (imm-trans-b = 1,
//      B = V for O = P·V): 8 k × 8 n. A key tile stored as 16-byte columns of 64 keys (wg_tile_offset) is
//      both: one K tile's and one V tile's core matrices are the same 128-byte blocks.
// wgmma is asynchronous: wgmma_fence() before the first product that reads registers written since,
// wgmma_commit() after the products (one group), wgmma_wait<N>() (at most the N newest groups still
// running) before a group's accumulators are read or written, its A registers reused, or its shared memory
// refilled; wgmma_fence_operands() after the wait ties those registers to it. cp.async writes reach wgmma's (async proxy) reads only after
// fence_proxy_async() by the writing thread and a barrier.
#pragma once
#include "mma_sm80.cuh"

namespace hr {

// A no-swizzle matrix descriptor (PTX ISA: matrix descriptor format): start address, LBO and SBO in 16-byte units
// (bits 0-13, 16-29, 32-45), base offset 0 (bits 49-51), swizzle mode 0 (bits 62-63). Kept as its two 32-bit words:
// the low word (start and LBO, wgmma_desc_lo) and the high word (SBO, wgmma_desc_join). Advancing the start by b
// bytes adds b / 16 to the low word alone: the start field is the CTA's shared address bits 4-17, and an address
// that stays inside the CTA's shared memory (under 2^18 bytes) carries nothing out of it: one 32-bit add per
// product, where a 64-bit add carried into the high word (IADD3 + IMAD.X, and both words moved to uniform registers).
__device__ __forceinline__ uint32_t wgmma_desc_lo(SmemAddr start, uint32_t lbo_bytes) {
#ifdef HR_EMULATION
    const uint32_t base = (uint32_t)::hr_emu::wgmma_desc_base(start);
#else
    const uint32_t base = (start >> 4) & 0x3fffu;
#endif
    return base | (((lbo_bytes >> 4) & 0x3fffu) << 16);
}
__device__ __forceinline__ uint64_t wgmma_desc_join(uint32_t lo, uint32_t sbo_bytes) {
    return ((uint64_t)((sbo_bytes >> 4) & 0x3fffu) << 32) | lo;
}
// x, the same on every lane of the warp (all 32 lanes converged), as ptxas's uniform value: a warp reduction's result
// lands in a uniform register (REDUX), and what is computed from it and constants stays on the uniform datapath. The
// key loop's buffer index is uniform, but ptxas cannot prove it (the loop's branches depend on loads) and kept each
// descriptor in vector registers, moving both words (R2UR) before every wgmma: 48 R2UR per tile in WGPX2 at D = 128.
__device__ __forceinline__ uint32_t warp_uniform(uint32_t x) {
#ifdef HR_EMULATION
    return x;
#else
    return __reduce_or_sync(0xffffffffu, x);
#endif
}
__device__ __forceinline__ uint64_t wgmma_desc(SmemAddr start, uint32_t lbo_bytes, uint32_t sbo_bytes) {
    return wgmma_desc_join(wgmma_desc_lo(start, lbo_bytes), sbo_bytes);
}

#ifdef HR_EMULATION
__device__ __forceinline__ void wgmma_fence() {}
__device__ __forceinline__ void wgmma_commit() { ::hr_emu::wgmma_commit(); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { ::hr_emu::wgmma_wait(N); }
__device__ __forceinline__ void fence_proxy_async() { ::hr_emu::fence_proxy_async(); }
#else
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// Orders this thread's completed shared-memory writes (cp.async, st.shared) before later async-proxy reads.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#endif

// Ties registers that an asynchronous wgmma reads or writes to this point of the program: after
// wgmma_wait, so that the compiler neither reads the accumulators before the wait nor reuses the A
// registers while the tensor cores may still read them (C++ sees the asm statement as their last use).
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[8][4]) {
#ifndef HR_EMULATION
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[j][e])::"memory");
#else
    (void)d;
#endif
}
__device__ __forceinline__ void wgmma_fence_operands(uint32_t (&a)[4]) {
#ifndef HR_EMULATION
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(a[e])::"memory");
#else
    (void)a;
#endif
}

// The 32 accumulators' asm operands of one m64n64 product (d[j][e] as %(4j + e)).
#define HR_WG_D64(d)                                                                                              \
    "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),     \
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), \
        "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), \
        "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), \
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])

// D (+)= A · B, m64n64k16, fp32 accumulation; kTransB: B MN-major; accumulate: D += (else D =).
#define HR_WG_ASM(TYPE)                                                                                           \
    asm volatile(                                                                                                 \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                                             \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                                               \
        " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
        "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"      \
        : HR_WG_D64(d)                                                                                            \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"((int)accumulate), "n"(kTransB ? 1 : 0))

template <typename T>
struct WgmmaOp;

template <>
struct WgmmaOp<__nv_bfloat16> {
    template <bool kTransB>
    static __device__ __forceinline__ void run(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc_b, bool accumulate) {
#ifdef HR_EMULATION
        ::hr_emu::wgmma_m64n64k16(&d[0][0], a, desc_b, kTransB, true, accumulate);
#else
        HR_WG_ASM("bf16");
#endif
    }
};

template <>
struct WgmmaOp<__half> {
    template <bool kTransB>
    static __device__ __forceinline__ void run(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc_b, bool accumulate) {
#ifdef HR_EMULATION
        ::hr_emu::wgmma_m64n64k16(&d[0][0], a, desc_b, kTransB, false, accumulate);
#else
        HR_WG_ASM("f16");
#endif
    }
};

#undef HR_WG_ASM
#undef HR_WG_D64

}  // namespace hr
