// headroute: the tensor-core primitives of the attention kernels, as inline PTX for sm_80 and newer
// (PTX ISA: mma.sync m16n8k16 with fp32 accumulation, ldmatrix, cp.async).
//
// Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A 16×16 (row-major), 4 × b32: a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B 16×8  (col-major), 2 × b32: b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C 16×8  fp32,        4 × f32: c0, c1 = C[g][2t], C[g][2t+1]; c2, c3 = C[g+8][2t], C[g+8][2t+1]
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace hr {

#ifdef HR_EMULATION
// A shared-memory address as the cp.async and ldmatrix forms below take it, plus byte offsets: a 32-bit
// shared-window address on the GPU (one register, where a generic pointer takes two), a pointer here.
using SmemAddr = unsigned char*;
__device__ __forceinline__ SmemAddr smem_at(const void* p) { return static_cast<unsigned char*>(const_cast<void*>(p)); }
__device__ __forceinline__ void cp_async_16_at(SmemAddr smem, const void* gmem, int src_bytes) {
    ::hr_emu::cp_async_16(smem, gmem, src_bytes);
}
// The CPU emulator (native/emu/runtime) executes these warp-wide with the same fragment layouts.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
    ::hr_emu::cp_async_16(smem, gmem, src_bytes);
}
__device__ __forceinline__ void cp_async_commit() { ::hr_emu::cp_async_commit(); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { ::hr_emu::cp_async_wait(N); }
__device__ __forceinline__ void ldmatrix_x4_at(uint32_t (&r)[4], SmemAddr smem) { ::hr_emu::ldmatrix_x4(r, smem, false); }
__device__ __forceinline__ void ldmatrix_x4_trans_at(uint32_t (&r)[4], SmemAddr smem) { ::hr_emu::ldmatrix_x4(r, smem, true); }
__device__ __forceinline__ SmemAddr opaque_addr(SmemAddr a) { return a; }
__device__ __forceinline__ void sync_block_any_site() { ::hr_emu::sync_threads(nullptr); }
#else
using SmemAddr = uint32_t;
__device__ __forceinline__ SmemAddr smem_at(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// 16 bytes global → shared, bypassing L1; src_bytes = 0 writes zeros (rows past the end).
__device__ __forceinline__ void cp_async_16_at(SmemAddr smem, const void* gmem, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
    cp_async_16_at(smem_at(smem), gmem, src_bytes);
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Four 8×8 b16 matrices; lanes 8m … 8m+7 give the row addresses of matrix m, register m receives it.
__device__ __forceinline__ void ldmatrix_x4_at(uint32_t (&r)[4], SmemAddr smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem));
}

// The same, each 8×8 matrix transposed on the way into registers.
__device__ __forceinline__ void ldmatrix_x4_trans_at(uint32_t (&r)[4], SmemAddr smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem));
}

// The address, hidden from the optimizer: addresses derived from it inside a loop are then computed
// where they are used, not hoisted out of the loop into registers of their own (a loop-invariant tile
// base would otherwise pin one register per ldmatrix address of the unrolled loop body).
__device__ __forceinline__ SmemAddr opaque_addr(SmemAddr a) {
    asm volatile("" : "+r"(a));
    return a;
}

// A block-wide barrier that threads may reach from different places in the code (barrier.sync without
// .aligned): __syncthreads() is bar.sync, the .aligned form, whose threads must all execute the same
// instruction (PTX ISA, barrier), so two paths that meet at one barrier each use this instead.
__device__ __forceinline__ void sync_block_any_site() { asm volatile("barrier.sync 0;\n" ::: "memory"); }

#endif  // HR_EMULATION

// 2^x, a result below 2^-126 flushed to zero: one MUFU.EX2 (exp2f wraps it in a fix-up for subnormal
// results, three more instructions per call). The softmax loses nothing measurable: its terms are relative
// to a row maximum whose own term is at least 1, and fp16 P cannot hold such values at all.
__device__ __forceinline__ float exp2_ftz(float x) {
#ifdef HR_EMULATION
    const float y = exp2f(x);
    return y < 1.17549435e-38f ? 0.f : y;
#else
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
#endif
}

template <typename T>
struct MmaOp;

// C += A·B, m16n8k16, bf16 inputs, fp32 accumulation.
template <>
struct MmaOp<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef HR_EMULATION
        ::hr_emu::mma_m16n8k16(c, a, b0, b1, true);
#else
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
    }
    // Two floats → one b32 holding (lo, hi) rounded to nearest even.
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t*>(&v);
    }
};

// C += A·B, m16n8k16, fp16 inputs, fp32 accumulation.
template <>
struct MmaOp<__half> {
    static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef HR_EMULATION
        ::hr_emu::mma_m16n8k16(c, a, b0, b1, false);
#else
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t*>(&v);
    }
};

}  // namespace hr
