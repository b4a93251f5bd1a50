// headroute CPU emulator: what a kernel source (cuda-kernels/*.cu) sees when it is compiled as C++ for
// the host (`g++ -include cuda_emu.h -DHR_EMULATION`). Every CUDA thread of a block runs as a fiber of
// one host thread (emu_runtime.cpp); barriers and warp-wide operations switch fibers, so the kernel
// code runs unchanged, with the semantics of the GPU:
//   __syncthreads / __syncthreads_or: block barrier (error if a thread has exited or another waits on a
//     warp operation: divergent barrier; or if threads reach it from different call sites: bar.sync is
//     .aligned; barrier.sync, hr::sync_block_any_site, may be reached from anywhere);
//   __shfl_xor_sync / __shfl_up_sync / __any_sync / __syncwarp: all 32 lanes must arrive (full masks only);
//   mma.sync m16n8k16 (f16/bf16 -> f32), ldmatrix x4 (and .trans): warp-collective, fragment layouts of
//     the PTX ISA, addresses checked to be 16-byte aligned and inside the block's shared memory;
//   wgmma.mma_async m64n64k16 (f16/bf16 -> f32, A in registers, B by a no-swizzle shared-memory matrix
//     descriptor, K- or MN-major): computed per warp (each warp's 16 rows of A need only B), asynchronous
//     as on the GPU: the accumulators read NaN from the issue until wgmma.wait_group retires their group,
//     and writing them or changing the A registers in between is an error (the tensor cores own both); the
//     four warps of a warpgroup must issue the same wgmma (descriptor, flags), commits and waits; B read
//     from a shared chunk that a cp.async wrote is an error until the writing thread's fence.proxy.async,
//     and so is a cp.async into a chunk a wgmma not yet retired reads;
//   atomicOr on shared memory, __popc, __ffs: as on the GPU;
//   cp.async: the destination is poisoned (0xFF, NaN) when the copy is issued and written only at
//     cp.async.wait_group, so both a read before the wait and a missing barrier before a buffer is
//     refilled read NaN, like a race on the GPU may.
// Dynamic shared memory is filled with 0xFF (NaN) before each block and ends at a guard page.
#pragma once
#ifndef HR_EMULATION
#error "cuda_emu.h is for the CPU emulation build only (-DHR_EMULATION)"
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

// CUDA's 16-byte vector type (vector_types.h), as the kernels load it from shared memory.
struct alignas(16) float4 {
    float x, y, z, w;
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) alignas(n)
// Statically declared shared memory: one variable for all threads. Blocks run one after another, so a
// function-local static is exactly one block's shared variable.
#define __shared__ static

struct hr_emu_dim3 {
    unsigned x, y, z;
};

namespace hr_emu {

const hr_emu_dim3& thread_idx();
const hr_emu_dim3& block_idx();
const hr_emu_dim3& block_dim();
const hr_emu_dim3& grid_dim();

// site: where the kernel reached the barrier ("file:line" of its __syncthreads), or null for barrier.sync (no .aligned).
void sync_threads(const char* site);
int sync_threads_or(int pred, const char* site);
void sync_warp(unsigned mask);
// Warp exchange: every lane deposits `n` (≤ 64) bytes, waits for the other 31, and gets the 32 deposits
// (64 bytes apart, by lane), valid until this lane's next exchange.
const unsigned char* warp_gather(int op, const void* in, size_t n, unsigned mask);
int lane_id();

unsigned char* dynamic_smem();
void check_shared(const void* p, size_t bytes, const char* what);

void cp_async_16(void* smem, const void* gmem, int src_bytes);
void cp_async_commit();
void cp_async_wait(int n);
// fence.proxy.async: this thread's completed cp.async writes become visible to wgmma's (async-proxy) reads.
void fence_proxy_async();

void ldmatrix_x4(uint32_t (&r)[4], const void* smem, bool trans);
void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bf16);
// wgmma: d (32 floats, the m64n64 accumulator layout) = A·B (+ d when scale_d); desc: B's descriptor, whose
// start address is a byte offset into the dynamic shared memory (wgmma_desc_base).
void wgmma_m64n64k16(float* d, const uint32_t (&a)[4], uint64_t desc, bool trans_b, bool bf16, bool scale_d);
void wgmma_commit();
void wgmma_wait(int n);
// The offset of a shared-memory pointer in the launch's dynamic shared memory, as a descriptor start address.
uint64_t wgmma_desc_base(const void* smem);

[[noreturn]] void fail(const char* fmt, ...);

enum Op { OP_SHFL = 1, OP_LDMATRIX = 2, OP_MMA = 3, OP_SYNCWARP = 4, OP_VOTE = 5, OP_WGMMA = 6 };

// Whether some lane's int in a warp exchange's slots (warp_gather's result) is nonzero: __any_sync.
bool any_lane_set(const unsigned char* slots);

template <typename T>
T shfl_from(unsigned mask, T v, int src) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a 32- or 64-bit value");
    const unsigned char* all = warp_gather(OP_SHFL, &v, sizeof(T), mask);
    T r;
    std::memcpy(&r, all + 64 * (src < 0 || src > 31 ? lane_id() : src), sizeof(T));
    return r;
}

}  // namespace hr_emu

#define threadIdx (::hr_emu::thread_idx())
#define blockIdx (::hr_emu::block_idx())
#define blockDim (::hr_emu::block_dim())
#define gridDim (::hr_emu::grid_dim())

// Each call site of __syncthreads is told apart (bar.sync is .aligned: every thread must reach the same one).
#define HR_EMU_STR2(x) #x
#define HR_EMU_STR(x) HR_EMU_STR2(x)
#define __syncthreads() ::hr_emu::sync_threads(__FILE__ ":" HR_EMU_STR(__LINE__))
#define __syncthreads_or(pred) ::hr_emu::sync_threads_or((pred), __FILE__ ":" HR_EMU_STR(__LINE__))
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::hr_emu::sync_warp(mask); }

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    return ::hr_emu::shfl_from(mask, v, ::hr_emu::lane_id() ^ lane_mask);
}

// Nonzero when pred is nonzero on some lane of the warp.
inline int __any_sync(unsigned mask, int pred) {
    const int mine = pred != 0;
    return ::hr_emu::any_lane_set(::hr_emu::warp_gather(::hr_emu::OP_VOTE, &mine, sizeof mine, mask));
}

template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta) {
    // Lanes below delta keep their own value.
    return ::hr_emu::shfl_from(mask, v, ::hr_emu::lane_id() - (int)delta);
}

// Shared-memory atomics: the fibers of a block switch only at barriers and warp operations, so a plain
// read-modify-write is atomic here.
inline unsigned atomicOr(unsigned* a, unsigned v) {
    const unsigned old = *a;
    *a = old | v;
    return old;
}

inline int __popc(unsigned x) { return __builtin_popcount(x); }
// 1 + the index of the lowest set bit; 0 for 0.
inline int __ffs(int x) { return __builtin_ffs(x); }

inline float __int_as_float(int i) { return hr_emu_half::bits_f32((uint32_t)i); }
inline int __float_as_int(float f) { return (int)hr_emu_half::f32_bits(f); }

// Round-to-nearest-even single operations that the compiler must not fuse (-ffp-contract=off).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }

// CUDA's min/max take mixed integer types; the host's std ones do not.
template <typename A, typename B>
inline typename std::common_type<A, B>::type min(A a, B b) {
    using C = typename std::common_type<A, B>::type;
    return (C)a < (C)b ? (C)a : (C)b;
}

template <typename A, typename B>
inline typename std::common_type<A, B>::type max(A a, B b) {
    using C = typename std::common_type<A, B>::type;
    return (C)a > (C)b ? (C)a : (C)b;
}

// The dynamic shared memory of the launch (cuda-kernels/smem.cuh declares it through this).
#define HR_EMU_DYNAMIC_SMEM(name) unsigned char* const name = ::hr_emu::dynamic_smem()

// Registration of a kernel defined in the translation unit: its name, how to call it with the driver's
// argument array (one by-value parameter record), and the size of that record.
namespace hr_emu {

using Entry = void (*)(void** args);
void register_kernel(const char* name, Entry entry, size_t param_bytes);

template <typename P>
inline void invoke(void (*kernel)(P), void** args) {
    using R = typename std::remove_cv<typename std::remove_reference<P>::type>::type;
    kernel(*static_cast<const R*>(args[0]));
}

template <typename P>
constexpr size_t param_bytes(void (*)(P)) {
    return sizeof(typename std::remove_cv<typename std::remove_reference<P>::type>::type);
}

struct Registrar {
    Registrar(const char* name, Entry entry, size_t bytes) { register_kernel(name, entry, bytes); }
};

}  // namespace hr_emu

#define HR_EMU_REGISTER(name)                                                                      \
    static ::hr_emu::Registrar hr_emu_registrar_##name(                                            \
        #name, [](void** args) { ::hr_emu::invoke(&name, args); }, ::hr_emu::param_bytes(&name));
