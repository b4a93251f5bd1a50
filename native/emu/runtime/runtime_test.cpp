// Tests of the emulator's device semantics (cuda_emu.h, emu_runtime.cpp) with small kernels defined
// here: shuffles, barriers (and the errors for divergent ones), cp.async's deferred copies, ldmatrix and
// mma.sync and wgmma against a plain matrix product, shared-memory checks. `make -C native/emu test` runs it.
#include "dynamic_smem.cuh"
#include "mma_sm80.cuh"
#include "mma_sm90.cuh"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

extern "C" int hr_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                             unsigned smem_bytes, void** args, char* err, size_t err_len);

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        failures++;
        std::printf("FAIL %s\n", what.c_str());
    }
}

struct Buf {
    int* out;
    const void* in;
    int n;
    int mode;
};

std::string launch(const char* name, unsigned grid, unsigned threads, unsigned smem, Buf b) {
    void* args[] = {&b};
    char err[600] = "";
    return hr_emu_launch(name, grid, 1, 1, threads, 1, 1, smem, args, err, sizeof err) == 0 ? "" : std::string(err);
}

}  // namespace

// out[tid] = value of lane (lane ^ 5) and of lane − 3 (own below 3), per warp; then __any_sync of
// "thread 40" (true on one lane of warp 1 only) and of a false predicate.
extern "C" __global__ void t_shuffles(const Buf b) {
    const int v = 1000 * (int)blockIdx.x + (int)threadIdx.x;
    b.out[4 * threadIdx.x] = __shfl_xor_sync(0xffffffffu, v, 5);
    b.out[4 * threadIdx.x + 1] = __shfl_up_sync(0xffffffffu, v, 3);
    b.out[4 * threadIdx.x + 2] = __any_sync(0xffffffffu, threadIdx.x == 40);
    b.out[4 * threadIdx.x + 3] = __any_sync(0xffffffffu, 0);
}

// Each thread writes shared[tid], a barrier, then reads its neighbour's; __syncthreads_or of one thread.
extern "C" __global__ void t_barrier(const Buf b) {
    __shared__ int s[256];
    s[threadIdx.x] = (int)threadIdx.x * 3;
    __syncthreads();
    b.out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
    b.out[blockDim.x + threadIdx.x] = __syncthreads_or(threadIdx.x == 77);
    b.out[2 * blockDim.x + threadIdx.x] = __syncthreads_or(0);
}

// mode 0: half the threads skip a barrier; mode 1: thread 0 exits before a barrier; mode 2: half a warp
// shuffles; mode 3: two warp-aligned halves meet at one barrier from two __syncthreads (bar.sync is .aligned);
// mode 4: one of them barrier.sync.
extern "C" __global__ void t_divergent(const Buf b) {
    if (b.mode == 0 && threadIdx.x < 64) __syncthreads();
    if (b.mode == 1 && threadIdx.x == 0) return;
    if (b.mode == 1) __syncthreads();
    if (b.mode == 2 && threadIdx.x < 16) b.out[0] = __shfl_xor_sync(0xffffffffu, 1, 1);
    if (b.mode == 3 || b.mode == 4) {
        if (threadIdx.x < 64) {
            __syncthreads();
        } else if (b.mode == 3) {
            __syncthreads();
        } else {
            hr::sync_block_any_site();
        }
    }
}

// Two warp-aligned halves meet at one barrier from two call sites of barrier.sync (no .aligned): allowed.
extern "C" __global__ void t_any_site(const Buf b) {
    __shared__ int s[128];
    s[threadIdx.x] = (int)threadIdx.x;
    if (threadIdx.x < 64) {
        hr::sync_block_any_site();
    } else {
        hr::sync_block_any_site();
    }
    b.out[threadIdx.x] = s[(threadIdx.x + 64) % 128];
}

// cp.async of 16 bytes per thread into shared memory; reads before and after the wait.
extern "C" __global__ void t_cp_async(const Buf b) {
    HR_DYNAMIC_SMEM(smem);
    const int t = threadIdx.x;
    hr::cp_async_16(smem + 16 * t, static_cast<const unsigned char*>(b.in) + 16 * t, t % 2 == 0 ? 16 : 0);
    hr::cp_async_commit();
    int before;
    std::memcpy(&before, smem + 16 * t, 4);
    hr::cp_async_wait<0>();
    int after;
    std::memcpy(&after, smem + 16 * t, 4);
    b.out[2 * t] = before;
    b.out[2 * t + 1] = after;
}

// mode 0: ldmatrix at a misaligned shared address; mode 1: past the end of shared memory.
extern "C" __global__ void t_bad_shared(const Buf b) {
    HR_DYNAMIC_SMEM(smem);
    uint32_t r[4];
    hr::ldmatrix_x4_at(r, hr::smem_at(smem + (b.mode == 0 ? 8 : 1024)));
    b.out[threadIdx.x] = (int)r[0];
}

// One warp: C (16×8, fp32) = A (16×16, row-major in `in`) · B (16×8, given as Bᵀ 8×16 row-major after A),
// fragments loaded with ldmatrix from shared memory, the way the attention kernels do.
template <typename T>
__device__ void mma_product(const Buf& b) {
    HR_DYNAMIC_SMEM(smem);
    T* sA = reinterpret_cast<T*>(smem);
    T* sB = sA + 16 * 16;
    const T* g = static_cast<const T*>(b.in);
    const int lane = threadIdx.x;
    for (int i = lane; i < 16 * 16 + 8 * 16; i += 32) sA[i] = g[i];
    __syncwarp();
    uint32_t a[4], kb[4];
    hr::ldmatrix_x4_at(a, hr::smem_at(sA + ((lane & 7) + ((lane >> 3) & 1) * 8) * 16 + (lane >> 4) * 8));
    // Bᵀ rows 0–7 (keys), the two k halves: matrices 0 and 1 (2 and 3 repeat them).
    hr::ldmatrix_x4_at(kb, hr::smem_at(sB + (lane & 7) * 16 + ((lane >> 3) & 1) * 8));
    float c[4] = {1.f, 1.f, 1.f, 1.f};
    hr::MmaOp<T>::run(c, a, kb[0], kb[1]);
    const int gi = lane >> 2, t4 = lane & 3;
    float* out = reinterpret_cast<float*>(b.out);
    out[gi * 8 + 2 * t4] = c[0];
    out[gi * 8 + 2 * t4 + 1] = c[1];
    out[(gi + 8) * 8 + 2 * t4] = c[2];
    out[(gi + 8) * 8 + 2 * t4 + 1] = c[3];
}

extern "C" __global__ void t_mma_bf16(const Buf b) { mma_product<__nv_bfloat16>(b); }
extern "C" __global__ void t_mma_f16(const Buf b) { mma_product<__half>(b); }

// Transposed ldmatrix: thread lane gets matrix m's elements (2(lane%4) + h, lane/4) of a row-major 8×8.
extern "C" __global__ void t_ldmatrix_trans(const Buf b) {
    HR_DYNAMIC_SMEM(smem);
    uint16_t* s = reinterpret_cast<uint16_t*>(smem);
    const int lane = threadIdx.x;
    for (int i = lane; i < 4 * 64; i += 32) s[i] = (uint16_t)i;
    __syncwarp();
    uint32_t r[4];
    hr::ldmatrix_x4_trans_at(r, hr::smem_at(s + (lane >> 3) * 64 + (lane & 7) * 8));
    for (int m = 0; m < 4; ++m) b.out[4 * lane + m] = (int)r[m];
}

// One ldmatrix .x4 whose lane l reads row l at b.n bytes apart (0: every lane the same row), for the
// wavefront count of HR_EMU_STATS.
extern "C" __global__ void t_ldmatrix_banks(const Buf b) {
    HR_DYNAMIC_SMEM(smem);
    const int lane = threadIdx.x;
    for (int i = lane; i < 32 * 512 / 4; i += 32) reinterpret_cast<int*>(smem)[i] = i;
    __syncwarp();
    uint32_t r[4];
    hr::ldmatrix_x4_at(r, hr::smem_at(smem + lane * b.n));
    b.out[lane] = (int)r[0];
}

// One warpgroup: D (64×64, fp32) = A·B + A·B (two chained wgmma), A (64×16, row-major in `in`) built into
// each warp's A-fragments, B (16×64, row-major after A) stored in shared memory as no-swizzle core matrices,
// K-major (b.mode 0: LBO 128, SBO 256) or MN-major (mode 1: LBO 1024, SBO 128). out: D row-major, then
// D's first register as read between the issue and the wait (NaN on every thread).
extern "C" __global__ void t_wgmma(const Buf b) {
    HR_DYNAMIC_SMEM(smem);
    const uint16_t* g = static_cast<const uint16_t*>(b.in);
    const bool mn = b.mode == 1;
    const uint32_t lbo = mn ? 1024 : 128, sbo = mn ? 128 : 256;
    uint16_t* sb = reinterpret_cast<uint16_t*>(smem);
    for (int i = threadIdx.x; i < 16 * 64; i += blockDim.x) {
        const int k = i / 64, n = i % 64;
        const int at = (n / 8) * sbo + (k / 8) * lbo + (mn ? (k % 8) * 16 + (n % 8) * 2 : (n % 8) * 16 + (k % 8) * 2);
        sb[at / 2] = g[64 * 16 + i];
    }
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gi = lane >> 2, t = lane & 3;
    auto a_at = [&](int r, int k) { return (uint32_t)g[(16 * warp + r) * 16 + k]; };
    const uint32_t a[4] = {a_at(gi, 2 * t) | a_at(gi, 2 * t + 1) << 16, a_at(gi + 8, 2 * t) | a_at(gi + 8, 2 * t + 1) << 16,
                           a_at(gi, 2 * t + 8) | a_at(gi, 2 * t + 9) << 16, a_at(gi + 8, 2 * t + 8) | a_at(gi + 8, 2 * t + 9) << 16};
    float d[8][4];
    const uint64_t desc = hr::wgmma_desc(hr::smem_at(smem), lbo, sbo);
    hr::wgmma_fence();
    if (mn) {
        hr::WgmmaOp<__nv_bfloat16>::run<true>(d, a, desc, false);
        hr::WgmmaOp<__nv_bfloat16>::run<true>(d, a, desc, true);
    } else {
        hr::WgmmaOp<__nv_bfloat16>::run<false>(d, a, desc, false);
        hr::WgmmaOp<__nv_bfloat16>::run<false>(d, a, desc, true);
    }
    hr::wgmma_commit();
    const float early = d[0][0];
    hr::wgmma_wait<0>();
    float* out = reinterpret_cast<float*>(b.out);
    for (int j = 0; j < 8; ++j)
        for (int e = 0; e < 4; ++e) out[(16 * warp + gi + 8 * (e >> 1)) * 64 + 8 * j + 2 * t + (e & 1)] = d[j][e];
    out[64 * 64 + threadIdx.x] = early;
}

// A all ones (bf16); one wgmma m64n64k16 on B at the start of shared memory (K-major, LBO 128, SBO sbo),
// committed as a group of its own.
constexpr uint32_t kOnes = 0x3f803f80u;
__device__ void wgmma_group(float (&d)[8][4], const uint32_t (&a)[4], unsigned char* smem, uint32_t sbo) {
    hr::wgmma_fence();
    hr::WgmmaOp<__nv_bfloat16>::run<false>(d, a, hr::wgmma_desc(hr::smem_at(smem), 128, sbo), false);
    hr::wgmma_commit();
}

// The hazards of an asynchronous wgmma: mode 0 writes an accumulator, mode 1 an A register, between the
// wgmma and its wait (both errors); mode 2 touches neither (fine). With two warpgroups (256 threads): mode 3,
// warp 6 gives another descriptor than warps 4, 5 and 7 (an error); mode 4, warp 2 commits a second group
// its warpgroup does not (an error); mode 5, the second warpgroup uses another descriptor than the first
// (fine: each warpgroup issues its own instruction).
extern "C" __global__ void t_wgmma_hazard(const Buf b) {
    HR_DYNAMIC_SMEM(smem);
    for (int i = threadIdx.x; i < 1024; i += blockDim.x) reinterpret_cast<uint16_t*>(smem)[i] = 0x3f80;
    __syncthreads();
    const int warp = threadIdx.x >> 5;
    uint32_t a[4] = {kOnes, kOnes, kOnes, kOnes};
    float d[8][4];
    wgmma_group(d, a, smem, (b.mode == 3 && warp == 6) || (b.mode == 5 && warp >= 4) ? 128 : 256);
    if (b.mode == 4 && warp == 2) hr::wgmma_commit();
    if (b.mode == 0) d[3][1] = 1.f;
    if (b.mode == 1) a[2] = 0;
    hr::wgmma_wait<0>();
    b.out[threadIdx.x] = (int)d[0][0];
}

// B copied into shared memory by cp.async (every thread 16 of its 2048 bytes), then read by a wgmma: mode 0 with
// each thread's fence.proxy.async after its wait (fine), mode 1 without (an error: the async proxy need not see
// the copies).
extern "C" __global__ void t_wgmma_proxy(const Buf b) {
    HR_DYNAMIC_SMEM(smem);
    hr::cp_async_16(smem + 16 * threadIdx.x, static_cast<const unsigned char*>(b.in) + 16 * threadIdx.x, 16);
    hr::cp_async_commit();
    hr::cp_async_wait<0>();
    if (b.mode == 0) hr::fence_proxy_async();
    __syncthreads();
    const uint32_t a[4] = {kOnes, kOnes, kOnes, kOnes};
    float d[8][4];
    wgmma_group(d, a, smem, 256);
    hr::wgmma_wait<0>();
    b.out[threadIdx.x] = (int)d[0][0];
}

// A cp.async into shared memory that a wgmma reads as B: mode 0 before the wait that retires the wgmma (an
// error: the tensor cores may still read it), mode 1 after the wait and a barrier (fine: every warp's wgmma is
// retired); mode 2 a plain store there before the wait (an error, found at the wait), mode 3 a plain store of the
// value already there (no change: fine).
extern "C" __global__ void t_wgmma_war(const Buf b) {
    HR_DYNAMIC_SMEM(smem);
    for (int i = threadIdx.x; i < 1024; i += blockDim.x) reinterpret_cast<uint16_t*>(smem)[i] = 0x3f80;
    hr::fence_proxy_async();
    __syncthreads();
    const uint32_t a[4] = {kOnes, kOnes, kOnes, kOnes};
    float d[8][4];
    wgmma_group(d, a, smem, 256);
    if (b.mode == 1) {
        hr::wgmma_wait<0>();
        __syncthreads();
    }
    if (b.mode >= 2) {
        if (threadIdx.x == 5) reinterpret_cast<uint16_t*>(smem)[300] = b.mode == 2 ? 0x4000 : 0x3f80;
    } else {
        hr::cp_async_16(smem + 16 * (threadIdx.x % 8), b.in, 16);
    }
    hr::cp_async_commit();
    hr::wgmma_wait<0>();
    hr::cp_async_wait<0>();
    b.out[threadIdx.x] = (int)d[0][0];
}

HR_EMU_REGISTER(t_shuffles)
HR_EMU_REGISTER(t_barrier)
HR_EMU_REGISTER(t_divergent)
HR_EMU_REGISTER(t_any_site)
HR_EMU_REGISTER(t_cp_async)
HR_EMU_REGISTER(t_bad_shared)
HR_EMU_REGISTER(t_mma_bf16)
HR_EMU_REGISTER(t_mma_f16)
HR_EMU_REGISTER(t_ldmatrix_trans)
HR_EMU_REGISTER(t_ldmatrix_banks)
HR_EMU_REGISTER(t_wgmma)
HR_EMU_REGISTER(t_wgmma_hazard)
HR_EMU_REGISTER(t_wgmma_proxy)
HR_EMU_REGISTER(t_wgmma_war)

template <typename T>
void test_mma(const char* kernel, float (*to_float)(uint16_t), uint16_t (*from_float)(float)) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    std::vector<uint16_t> in(16 * 16 + 8 * 16);
    for (auto& x : in) x = from_float(nd(rng));
    std::vector<float> out(16 * 8, -1.f);
    const std::string e = launch(kernel, 1, 32, 2 * (unsigned)in.size(), Buf{reinterpret_cast<int*>(out.data()), in.data(), 0, 0});
    check(e.empty(), std::string(kernel) + " launched: " + e);
    double worst = 0;
    for (int r = 0; r < 16; ++r) {
        for (int n = 0; n < 8; ++n) {
            double s = 1.0;
            for (int k = 0; k < 16; ++k) s += (double)to_float(in[r * 16 + k]) * to_float(in[256 + n * 16 + k]);
            worst = std::max(worst, std::abs(s - out[r * 8 + n]) / (1.0 + std::abs(s)));
        }
    }
    check(worst < 1e-6, std::string(kernel) + ": C = A·B + 1 (worst " + std::to_string(worst) + ")");
}

// t_wgmma in both B layouts against a plain product (each chains D = A·B, then D += A·B).
void test_wgmma() {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    std::vector<uint16_t> in(64 * 16 + 16 * 64);
    for (auto& x : in) x = hr_emu_half::float_to_bf16(nd(rng));
    for (int mode = 0; mode < 2; ++mode) {
        std::vector<float> out(64 * 64 + 128, -1.f);
        const std::string e = launch("t_wgmma", 1, 128, 4096, Buf{reinterpret_cast<int*>(out.data()), in.data(), 0, mode});
        check(e.empty(), "t_wgmma launched: " + e);
        double worst = 0;
        for (int r = 0; r < 64; ++r)
            for (int n = 0; n < 64; ++n) {
                double s = 0;
                for (int k = 0; k < 16; ++k)
                    s += (double)hr_emu_half::bf16_to_float(in[r * 16 + k]) * hr_emu_half::bf16_to_float(in[1024 + k * 64 + n]);
                worst = std::max(worst, std::abs(2 * s - out[r * 64 + n]) / (1.0 + std::abs(2 * s)));
            }
        check(worst < 1e-6, std::string("wgmma ") + (mode ? "MN" : "K") + "-major: D = 2·A·B (worst " + std::to_string(worst) + ")");
        bool nan = true;
        for (int t = 0; t < 128; ++t) nan &= std::isnan(out[4096 + t]);
        check(nan, "wgmma accumulators read NaN between issue and wait_group");
    }
    for (int mode = 0; mode < 6; ++mode) {
        std::vector<int> out(256, -1);
        const unsigned threads = mode < 3 ? 128 : 256;
        const std::string e = launch("t_wgmma_hazard", 1, threads, 4096, Buf{out.data(), nullptr, 0, mode});
        const bool fine = mode == 2 || mode == 5;
        check(fine ? e.empty() && out[0] == 16 && out[threads - 1] == 16 : !e.empty(),
              "wgmma hazard mode " + std::to_string(mode) + ": " + e);
        if (!fine) std::printf("  (wgmma hazard %d: %s)\n", mode, e.c_str());
    }
    const std::vector<uint16_t> ones(1024, 0x3f80);  // bf16 1.0
    for (int mode = 0; mode < 2; ++mode) {
        std::vector<int> out(128, -1);
        const std::string e = launch("t_wgmma_proxy", 1, 128, 2048, Buf{out.data(), ones.data(), 0, mode});
        check(mode == 0 ? e.empty() && out[0] == 16 && out[127] == 16 : e.find("without a fence.proxy.async") != std::string::npos,
              "wgmma after cp.async, mode " + std::to_string(mode) + ": " + e);
        if (mode == 1) std::printf("  (wgmma proxy 1: %s)\n", e.c_str());
    }
    for (int mode = 0; mode < 4; ++mode) {
        std::vector<int> out(128, -1);
        const std::string e = launch("t_wgmma_war", 1, 128, 2048, Buf{out.data(), ones.data(), 0, mode});
        const bool ok = mode == 0   ? e.find("not yet retired") != std::string::npos
                        : mode == 2 ? e.find("changed between the wgmma and the wgmma.wait_group") != std::string::npos
                                    : e.empty() && out[0] == 16;
        check(ok, "store over a wgmma's B, mode " + std::to_string(mode) + ": " + e);
        if (mode == 0 || mode == 2) std::printf("  (wgmma war %d: %s)\n", mode, e.c_str());
    }
}

int main() {
    {
        std::vector<int> out(4 * 64);
        check(launch("t_shuffles", 1, 64, 0, Buf{out.data(), nullptr, 0, 0}).empty(), "shuffles launched");
        bool ok = true, any = true;
        for (int t = 0; t < 64; ++t) {
            const int lane = t & 31, base = t & ~31;
            ok &= out[4 * t] == base + (lane ^ 5);
            ok &= out[4 * t + 1] == (lane >= 3 ? t - 3 : t);
            any &= out[4 * t + 2] == (t >= 32 ? 1 : 0) && out[4 * t + 3] == 0;
        }
        check(ok, "__shfl_xor_sync / __shfl_up_sync values");
        check(any, "__any_sync: one lane's predicate reaches its whole warp, no other");
    }
    {
        std::vector<int> out(3 * 160);
        check(launch("t_barrier", 2, 160, 0, Buf{out.data(), nullptr, 0, 0}).empty(), "barrier launched");
        bool ok = true;
        for (int t = 0; t < 160; ++t) {
            ok &= out[t] == ((t + 1) % 160) * 3;
            ok &= out[160 + t] == 1 && out[320 + t] == 0;
        }
        check(ok, "__syncthreads orders shared memory; __syncthreads_or");
    }
    for (int mode = 0; mode < 5; ++mode) {
        std::vector<int> out(4);
        const std::string e = launch("t_divergent", 1, 128, 0, Buf{out.data(), nullptr, 0, mode});
        check(!e.empty(), "divergent mode " + std::to_string(mode) + " is an error");
        if (mode >= 3) check(e.find("from different places") != std::string::npos, "mode " + std::to_string(mode) + ": " + e);
        std::printf("  (divergent %d: %s)\n", mode, e.c_str());
    }
    {
        std::vector<int> out(128);
        check(launch("t_any_site", 1, 128, 0, Buf{out.data(), nullptr, 0, 0}).empty(), "barrier.sync from two places");
        bool ok = true;
        for (int t = 0; t < 128; ++t) ok &= out[t] == (t + 64) % 128;
        check(ok, "barrier.sync from two places orders shared memory");
    }
    {
        std::vector<int> in(4 * 64), out(2 * 64);
        for (size_t i = 0; i < in.size(); ++i) in[i] = 7 + (int)i;
        check(launch("t_cp_async", 1, 64, 16 * 64, Buf{out.data(), in.data(), 0, 0}).empty(), "cp.async launched");
        bool ok = true;
        for (int t = 0; t < 64; ++t) {
            ok &= out[2 * t] == -1;                                  // 0xFF poison: not copied before the wait
            ok &= out[2 * t + 1] == (t % 2 == 0 ? in[4 * t] : 0);    // src-size 0 zero-fills
        }
        check(ok, "cp.async lands at wait_group, zero-fills with src-size 0");
    }
    for (int mode = 0; mode < 2; ++mode) {
        std::vector<int> out(32);
        const std::string e = launch("t_bad_shared", 1, 32, 1024, Buf{out.data(), nullptr, 0, mode});
        check(!e.empty(), "bad shared access " + std::to_string(mode) + " is an error");
        std::printf("  (bad shared %d: %s)\n", mode, e.c_str());
    }
    test_mma<__nv_bfloat16>("t_mma_bf16", hr_emu_half::bf16_to_float, hr_emu_half::float_to_bf16);
    test_mma<__half>("t_mma_f16", hr_emu_half::f16_to_float, hr_emu_half::float_to_f16);
    test_wgmma();
    {
        std::vector<int> out(4 * 32);
        check(launch("t_ldmatrix_trans", 1, 32, 512, Buf{out.data(), nullptr, 0, 0}).empty(), "ldmatrix.trans launched");
        bool ok = true;
        for (int lane = 0; lane < 32; ++lane) {
            for (int m = 0; m < 4; ++m) {
                const int r0 = 2 * (lane & 3), c = lane >> 2;
                const uint32_t want = (uint32_t)(m * 64 + r0 * 8 + c) | ((uint32_t)(m * 64 + (r0 + 1) * 8 + c) << 16);
                ok &= (uint32_t)out[4 * lane + m] == want;
            }
        }
        check(ok, "ldmatrix .trans layout");
    }
    {
        // Wavefronts of one ldmatrix .x4 (the sixth field of HR_EMU_STATS): rows 128 bytes apart share their
        // 4 banks (8 per matrix), rows padded to 144 bytes do not (1 per matrix), the same row is a broadcast
        // (1), rows 64 bytes apart fall on 2 groups of banks (4 per matrix).
        char file[] = "/tmp/hr_emu_stats_XXXXXX";
        const int fd = mkstemp(file);
        check(fd >= 0, "a temporary stats file");
        if (fd >= 0) close(fd);
        setenv("HR_EMU_STATS", file, 1);
        std::vector<int> out(32);
        const int strides[] = {128, 144, 0, 64};
        const long long want[] = {32, 4, 4, 16};
        for (int i = 0; i < 4; ++i) {
            check(launch("t_ldmatrix_banks", 1, 32, 32 * 512, Buf{out.data(), nullptr, strides[i], 0}).empty(),
                  "ldmatrix banks launched");
        }
        // And the last two fields, __any_sync votes and true votes: t_shuffles votes twice per warp, and only
        // warp 1's first vote (thread 40) is true.
        std::vector<int> shuffled(4 * 64);
        check(launch("t_shuffles", 1, 64, 0, Buf{shuffled.data(), nullptr, 0, 0}).empty(), "shuffles launched");
        // And the ninth, wgmma warpgroup instructions: t_wgmma issues two.
        std::vector<uint16_t> wg_in(2048, 0x3f80);
        std::vector<float> wg_out(64 * 64 + 128);
        check(launch("t_wgmma", 1, 128, 4096, Buf{reinterpret_cast<int*>(wg_out.data()), wg_in.data(), 0, 0}).empty(), "t_wgmma launched");
        unsetenv("HR_EMU_STATS");
        FILE* f = std::fopen(file, "r");
        check(f != nullptr, "HR_EMU_STATS written");
        for (int i = 0; f != nullptr && i < 6; ++i) {
            char name[64];
            long long blocks, mma, ldm, cp, waves, votes, votes_true, wgmma, overlaps;
            const bool read = std::fscanf(f, "%63s %lld %lld %lld %lld %lld %lld %lld %lld %lld", name, &blocks, &mma, &ldm, &cp,
                                          &waves, &votes, &votes_true, &wgmma, &overlaps) == 10;
            if (i == 5) {
                check(read && wgmma == 2 && mma == 0 && overlaps == 0,
                      "t_wgmma: " + std::to_string(read ? wgmma : -1) + " wgmma, expected 2, none left running at its wait");
                continue;
            }
            if (i == 4) {
                check(read && votes == 4 && votes_true == 1,
                      "t_shuffles: " + std::to_string(read ? votes : -1) + " votes, " + std::to_string(read ? votes_true : -1)
                          + " true, expected 4 and 1");
                continue;
            }
            check(read && ldm == 1 && waves == want[i] && votes == 0 && wgmma == 0,
                  "ldmatrix rows " + std::to_string(strides[i]) + " bytes apart: " + std::to_string(read ? waves : -1)
                      + " wavefronts, expected " + std::to_string(want[i]));
        }
        if (f != nullptr) std::fclose(f);
        std::remove(file);
    }
    {
        // binary16 / bfloat16 rounding corner cases.
        using namespace hr_emu_half;
        check(float_to_f16(65504.f) == 0x7bff && float_to_f16(65520.f) == 0x7c00, "f16 max and overflow");
        check(float_to_f16(5.9604644775390625e-8f) == 0x0001 && float_to_f16(2.98023223876953125e-8f) == 0x0000,
              "f16 smallest subnormal, tie to even at half of it");
        check(float_to_f16(1.f + 1.f / 2048) == 0x3c00 && float_to_f16(1.f + 3.f / 2048) == 0x3c02, "f16 ties to even");
        check(f16_to_float(0x0001) == 5.9604644775390625e-8f && f16_to_float(0xfc00) == -INFINITY, "f16 decode");
        check(float_to_bf16(1.f + 1.f / 256) == 0x3f80 && float_to_bf16(1.f + 3.f / 256) == 0x3f82, "bf16 ties to even");
        check((float_to_bf16(NAN) & 0x7fc0) == 0x7fc0, "bf16 NaN stays NaN");
    }
    std::printf("%s: %d failure(s)\n", failures == 0 ? "runtime_test passed" : "runtime_test FAILED", failures);
    return failures == 0 ? 0 : 1;
}
