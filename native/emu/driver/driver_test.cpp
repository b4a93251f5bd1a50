// Tests of the fake libcuda.so.1 (with stub_kernels.cpp) and libcublas.so.13, linked directly.
// Run by `make -C native/emu/driver test`. Exits non-zero on the first failed check.
#include <cuda.h>
#include <library_types.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#undef cuEventElapsedTime
extern "C" CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end);

// cuBLAS as the fake exports it (cublas_api.h is not installed here); enum values as in cuBLAS.
extern "C" {
typedef struct HrCublas* cublasHandle_t;
int cublasCreate_v2(cublasHandle_t* handle);
int cublasDestroy_v2(cublasHandle_t handle);
int cublasGetVersion_v2(cublasHandle_t handle, int* version);
int cublasSetStream_v2(cublasHandle_t handle, CUstream stream);
int cublasGetMathMode(cublasHandle_t handle, int* mode);
int cublasSetMathMode(cublasHandle_t handle, int mode);
int cublasGemmEx(cublasHandle_t handle, int transa, int transb, int m, int n, int k, const void* alpha, const void* A,
                 cudaDataType Atype, int lda, const void* B, cudaDataType Btype, int ldb, const void* beta, void* C,
                 cudaDataType Ctype, int ldc, int computeType, int algo);
int cublasGemmStridedBatchedEx(cublasHandle_t handle, int transa, int transb, int m, int n, int k, const void* alpha,
                               const void* A, cudaDataType Atype, int lda, long long strideA, const void* B,
                               cudaDataType Btype, int ldb, long long strideB, const void* beta, void* C,
                               cudaDataType Ctype, int ldc, long long strideC, int batchCount, int computeType,
                               int algo);
}
constexpr int OP_N = 0, OP_T = 1, COMPUTE_32F = 68, COMPUTE_64F = 70, GEMM_DEFAULT = -1;
constexpr int ST_OK = 0, ST_NOT_INITIALIZED = 1, ST_INVALID = 7, ST_NOT_SUPPORTED = 15;

namespace {

int checks = 0;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        checks++;                                                                     \
        if (!(cond)) {                                                                \
            std::fprintf(stderr, "driver_test: %s:%d: CHECK(%s) failed\n", __FILE__, \
                         __LINE__, #cond);                                            \
            std::exit(1);                                                             \
        }                                                                             \
    } while (0)
#define EXPECT_RC(call, want) CHECK((call) == (want))
#define OK(call) EXPECT_RC(call, CUDA_SUCCESS)

constexpr size_t kTestMemory = 1 << 20;  // HR_EMU_MEMORY_BYTES for this test

// Runs fn in a child process; returns the signal that killed it, or 0 if it exited normally.
template <typename Fn>
int child_signal(Fn fn) {
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

void test_before_init() {
    int n = 0;
    CUdeviceptr p = 0;
    CUdevice d = 0;
    EXPECT_RC(cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);
    EXPECT_RC(cuDeviceGet(&d, 0), CUDA_ERROR_NOT_INITIALIZED);
    EXPECT_RC(cuMemAlloc(&p, 16), CUDA_ERROR_NOT_INITIALIZED);
    EXPECT_RC(cuInit(1), CUDA_ERROR_INVALID_VALUE);
    OK(cuInit(0));
}

CUcontext test_device_and_context() {
    int n = 0, v = 0;
    OK(cuDeviceGetCount(&n));
    CHECK(n == 1);
    OK(cuDriverGetVersion(&v));
    CHECK(v == 13000);
    CUdevice d = -1;
    EXPECT_RC(cuDeviceGet(&d, 1), CUDA_ERROR_INVALID_DEVICE);
    EXPECT_RC(cuDeviceGet(&d, -1), CUDA_ERROR_INVALID_DEVICE);
    OK(cuDeviceGet(&d, 0));
    CHECK(d == 0);
    char name[64];
    OK(cuDeviceGetName(name, sizeof name, d));
    CHECK(std::strcmp(name, "headroute CPU emulator") == 0);
    char shortName[9];
    OK(cuDeviceGetName(shortName, sizeof shortName, d));
    CHECK(std::strcmp(shortName, "headrout") == 0);
    EXPECT_RC(cuDeviceGetName(name, sizeof name, 1), CUDA_ERROR_INVALID_DEVICE);
    size_t total = 0;
    OK(cuDeviceTotalMem(&total, d));
    CHECK(total == kTestMemory);
    struct {
        CUdevice_attribute attr;
        int want;
    } attrs[] = {
        {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 9}, {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0},
        {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 132},   {CU_DEVICE_ATTRIBUTE_WARP_SIZE, 32},
        {CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 1024}, {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK, 48 * 1024},
        {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, 227 * 1024},
    };
    for (auto& a : attrs) {
        int got = -1;
        OK(cuDeviceGetAttribute(&got, a.attr, d));
        CHECK(got == a.want);
    }
    int got = 0;
    EXPECT_RC(cuDeviceGetAttribute(&got, CU_DEVICE_ATTRIBUTE_MAX, d), CUDA_ERROR_INVALID_VALUE);
    EXPECT_RC(cuDeviceGetAttribute(&got, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 3), CUDA_ERROR_INVALID_DEVICE);

    CUdeviceptr p = 0;
    EXPECT_RC(cuMemAlloc(&p, 16), CUDA_ERROR_INVALID_CONTEXT);  // nothing current yet
    EXPECT_RC(cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
    CUcontext ctx = nullptr, again = nullptr, cur = nullptr;
    EXPECT_RC(cuCtxSetCurrent(reinterpret_cast<CUcontext>(&got)), CUDA_ERROR_INVALID_CONTEXT);
    EXPECT_RC(cuDevicePrimaryCtxRetain(&ctx, 1), CUDA_ERROR_INVALID_DEVICE);
    OK(cuDevicePrimaryCtxRetain(&ctx, d));
    OK(cuDevicePrimaryCtxRetain(&again, d));
    CHECK(ctx != nullptr && ctx == again);
    OK(cuDevicePrimaryCtxRelease(d));
    OK(cuCtxSetCurrent(ctx));
    OK(cuCtxGetCurrent(&cur));
    CHECK(cur == ctx);
    OK(cuCtxSynchronize());
    // Current is per thread, as in the driver.
    std::thread([&] {
        CUcontext other = ctx;
        OK(cuCtxGetCurrent(&other));
        CHECK(other == nullptr);
        CUdeviceptr q = 0;
        EXPECT_RC(cuMemAlloc(&q, 16), CUDA_ERROR_INVALID_CONTEXT);
    }).join();
    return ctx;
}

void test_memory() {
    size_t free0 = 0, total = 0;
    OK(cuMemGetInfo(&free0, &total));
    CHECK(total == kTestMemory && free0 == kTestMemory);
    CUdeviceptr p = 0;
    EXPECT_RC(cuMemAlloc(&p, 0), CUDA_ERROR_INVALID_VALUE);
    OK(cuMemAlloc(&p, 100));
    CHECK(p % 16 == 0);
    size_t free1 = 0;
    OK(cuMemGetInfo(&free1, &total));
    CHECK(free1 == free0 - 100);
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(p);
    for (int i = 0; i < 112; i++) {
        CHECK(bytes[i] == 0xFF);  // poison, rounded up to 16
    }
    float poisoned;
    std::memcpy(&poisoned, bytes, 4);
    CHECK(std::isnan(poisoned));
    // The data ends (rounded to 16) at a PROT_NONE page: the first byte past it faults, the last inside does not.
    CHECK(child_signal([&] { *reinterpret_cast<volatile unsigned char*>(p + 111) = 1; }) == 0);
    CHECK(child_signal([&] { (void) *reinterpret_cast<volatile unsigned char*>(p + 112); }) == SIGSEGV);

    CUdeviceptr big = 0, big2 = 0;
    OK(cuMemAlloc(&big, kTestMemory / 2));
    EXPECT_RC(cuMemAlloc(&big2, kTestMemory / 2), CUDA_ERROR_OUT_OF_MEMORY);  // 100 bytes short
    OK(cuMemFree(big));
    OK(cuMemAlloc(&big2, kTestMemory / 2));
    OK(cuMemFree(big2));
    EXPECT_RC(cuMemFree(big2), CUDA_ERROR_INVALID_VALUE);  // double free
    EXPECT_RC(cuMemFree(p + 16), CUDA_ERROR_INVALID_VALUE);  // not an allocation's start
    OK(cuMemFree(p));
    OK(cuMemGetInfo(&free1, &total));
    CHECK(free1 == free0);

    void* host = nullptr;
    OK(cuMemAllocHost(&host, 1000));
    CHECK(reinterpret_cast<uintptr_t>(host) % static_cast<uintptr_t>(sysconf(_SC_PAGESIZE)) == 0);
    std::memset(host, 7, 1000);
    OK(cuMemFreeHost(host));
    EXPECT_RC(cuMemFreeHost(host), CUDA_ERROR_INVALID_VALUE);
}

// The global lock keeps the books straight when threads allocate and free at once.
void test_threads(CUcontext ctx) {
    std::vector<std::thread> threads;
    std::vector<int> failures(4, 0);
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([ctx, t, &failures] {
            if (cuCtxSetCurrent(ctx) != CUDA_SUCCESS) {
                failures[t]++;
                return;
            }
            for (int i = 0; i < 500; i++) {
                CUdeviceptr p = 0;
                size_t n = 16 + static_cast<size_t>((i * 37 + t * 101) % 4000);
                if (cuMemAlloc(&p, n) != CUDA_SUCCESS || cuMemsetD8Async(p, static_cast<unsigned char>(t), n, nullptr) != CUDA_SUCCESS
                    || reinterpret_cast<unsigned char*>(p)[n - 1] != t || cuMemFree(p) != CUDA_SUCCESS) {
                    failures[t]++;
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    for (int f : failures) {
        CHECK(f == 0);
    }
    size_t free = 0, total = 0;
    OK(cuMemGetInfo(&free, &total));
    CHECK(free == total);
}

void test_copies_and_memsets(CUstream s) {
    CUdeviceptr d = 0;
    OK(cuMemAlloc(&d, 64 * sizeof(float)));
    std::vector<float> src(64), dst(64, -1.0f);
    for (int i = 0; i < 64; i++) {
        src[i] = static_cast<float>(i) * 0.5f;
    }
    OK(cuMemcpyHtoDAsync(d, src.data(), 64 * sizeof(float), s));
    OK(cuMemcpyDtoH(dst.data(), d, 64 * sizeof(float)));
    CHECK(dst == src);
    std::vector<float> part(3, 0.0f);
    OK(cuMemcpyDtoHAsync(part.data(), d + 10 * sizeof(float), 3 * sizeof(float), s));
    CHECK(part[0] == 5.0f && part[2] == 6.0f);
    EXPECT_RC(cuMemcpyDtoH(dst.data(), d, 65 * sizeof(float)), CUDA_ERROR_INVALID_VALUE);  // past the end
    EXPECT_RC(cuMemcpyHtoDAsync(d + 4, src.data(), 64 * sizeof(float), s), CUDA_ERROR_INVALID_VALUE);
    EXPECT_RC(cuMemcpyDtoH(dst.data(), reinterpret_cast<CUdeviceptr>(src.data()), 4), CUDA_ERROR_INVALID_VALUE);
    EXPECT_RC(cuMemcpyHtoDAsync(d, src.data(), 4, reinterpret_cast<CUstream>(&part)), CUDA_ERROR_INVALID_HANDLE);

    // 2D: a 3 × 5 float block from a host matrix of pitch 8 floats to device rows of pitch 6, at (x=1, y=2).
    std::vector<float> hostm(8 * 6);
    for (size_t i = 0; i < hostm.size(); i++) {
        hostm[i] = static_cast<float>(100 + i);
    }
    OK(cuMemsetD32Async(d, 0, 64, s));
    CUDA_MEMCPY2D c;
    std::memset(&c, 0, sizeof c);
    c.srcMemoryType = CU_MEMORYTYPE_HOST;
    c.srcHost = hostm.data();
    c.srcXInBytes = 2 * sizeof(float);
    c.srcY = 1;
    c.srcPitch = 8 * sizeof(float);
    c.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    c.dstDevice = d;
    c.dstXInBytes = 1 * sizeof(float);
    c.dstY = 2;
    c.dstPitch = 6 * sizeof(float);
    c.WidthInBytes = 5 * sizeof(float);
    c.Height = 3;
    OK(cuMemcpy2DAsync(&c, s));
    OK(cuMemcpyDtoH(dst.data(), d, 64 * sizeof(float)));
    for (int r = 0; r < 10; r++) {
        for (int x = 0; x < 6; x++) {
            float want = 0.0f;
            if (r >= 2 && r < 5 && x >= 1 && x < 6) {
                want = hostm[(r - 2 + 1) * 8 + (x - 1 + 2)];
            }
            CHECK(dst[r * 6 + x] == want);
        }
    }
    // Device to host, back out of the same block; a device range past the allocation is refused.
    std::vector<float> back(15, 0.0f);
    CUDA_MEMCPY2D b;
    std::memset(&b, 0, sizeof b);
    b.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    b.srcDevice = d;
    b.srcXInBytes = sizeof(float);
    b.srcY = 2;
    b.srcPitch = 6 * sizeof(float);
    b.dstMemoryType = CU_MEMORYTYPE_HOST;
    b.dstHost = back.data();
    b.dstPitch = 5 * sizeof(float);
    b.WidthInBytes = 5 * sizeof(float);
    b.Height = 3;
    OK(cuMemcpy2DAsync(&b, s));
    for (int r = 0; r < 3; r++) {
        for (int x = 0; x < 5; x++) {
            CHECK(back[r * 5 + x] == hostm[(r + 1) * 8 + (x + 2)]);
        }
    }
    b.srcY = 9;  // rows 9..11 of pitch 6 floats end past 64 floats
    EXPECT_RC(cuMemcpy2DAsync(&b, s), CUDA_ERROR_INVALID_VALUE);
    b.srcY = 2;
    b.srcMemoryType = CU_MEMORYTYPE_ARRAY;
    EXPECT_RC(cuMemcpy2DAsync(&b, s), CUDA_ERROR_NOT_SUPPORTED);

    // Memsets: element widths, bounds and alignment.
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(d);
    OK(cuMemsetD8Async(d + 1, 0xAB, 3, s));
    CHECK(bytes[0] == 0 && bytes[1] == 0xAB && bytes[3] == 0xAB && bytes[4] == 0);
    OK(cuMemsetD16Async(d + 8, 0x7E00, 5, s));
    uint16_t h[6];
    std::memcpy(h, bytes + 8, sizeof h);
    CHECK(h[0] == 0x7E00 && h[4] == 0x7E00 && h[5] == 0);
    OK(cuMemsetD32Async(d + 32, 0x7FC00000u, 56, s));
    OK(cuMemcpyDtoH(dst.data(), d, 64 * sizeof(float)));
    CHECK(dst[7] == 0.0f && std::isnan(dst[8]) && std::isnan(dst[63]));
    EXPECT_RC(cuMemsetD32Async(d + 32, 0, 57, s), CUDA_ERROR_INVALID_VALUE);
    EXPECT_RC(cuMemsetD32Async(d + 2, 0, 1, s), CUDA_ERROR_INVALID_VALUE);
    EXPECT_RC(cuMemsetD16Async(d + 1, 0, 1, s), CUDA_ERROR_INVALID_VALUE);
    OK(cuMemsetD8Async(d, 0, 0, s));

    // 2-D memsets: rows of Width elements, Pitch bytes apart; the gaps between rows untouched.
    OK(cuMemsetD32Async(d, 0, 64, s));
    OK(cuMemsetD2D8Async(d + 2, 16, 0x11, 3, 4, s));  // bytes 2..4 of rows 0..3 (pitch 16 bytes)
    CHECK(bytes[1] == 0 && bytes[2] == 0x11 && bytes[4] == 0x11 && bytes[5] == 0 && bytes[50] == 0x11 && bytes[66] == 0);
    OK(cuMemsetD2D16Async(d + 64, 12, 0x3C00, 2, 3, s));  // 2 halves per row, rows 12 bytes apart
    uint16_t h2[18];
    std::memcpy(h2, bytes + 64, sizeof h2);
    CHECK(h2[0] == 0x3C00 && h2[1] == 0x3C00 && h2[2] == 0 && h2[6] == 0x3C00 && h2[12] == 0x3C00 && h2[13] == 0x3C00
          && h2[14] == 0);
    OK(cuMemsetD2D32Async(d + 128, 64, 0x7FC00000u, 4, 2, s));  // rows 16 floats apart
    OK(cuMemcpyDtoH(dst.data(), d, 64 * sizeof(float)));
    CHECK(std::isnan(dst[32]) && std::isnan(dst[35]) && dst[36] == 0.0f && std::isnan(dst[48]) && std::isnan(dst[51])
          && dst[52] == 0.0f);
    EXPECT_RC(cuMemsetD2D32Async(d + 128, 8, 0, 4, 2, s), CUDA_ERROR_INVALID_VALUE);     // pitch < row
    EXPECT_RC(cuMemsetD2D32Async(d + 128, 64, 0, 4, 3, s), CUDA_ERROR_INVALID_VALUE);    // past the end
    EXPECT_RC(cuMemsetD2D16Async(d + 1, 4, 0, 1, 1, s), CUDA_ERROR_INVALID_VALUE);       // misaligned
    OK(cuMemsetD2D8Async(d, 1, 0, 0, 5, s));
    OK(cuMemFree(d));
}

void test_streams_and_events(CUstream s) {
    CUevent a = nullptr, b = nullptr, untimed = nullptr, fresh = nullptr;
    OK(cuEventCreate(&a, CU_EVENT_DEFAULT));
    OK(cuEventCreate(&b, CU_EVENT_DEFAULT));
    OK(cuEventCreate(&untimed, CU_EVENT_DISABLE_TIMING));
    OK(cuEventCreate(&fresh, CU_EVENT_DEFAULT));
    OK(cuEventRecord(a, s));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    OK(cuEventRecord(b, nullptr));
    OK(cuEventRecord(untimed, s));
    OK(cuEventSynchronize(b));
    OK(cuEventQuery(untimed));  // work runs when queued: complete
    OK(cuEventQuery(fresh));    // never recorded: complete, as on a GPU
    float ms = -1;
    OK(cuEventElapsedTime(&ms, a, b));
    CHECK(ms >= 19.0f && ms < 10000.0f);
    EXPECT_RC(cuEventElapsedTime(&ms, a, fresh), CUDA_ERROR_INVALID_HANDLE);  // never recorded
    EXPECT_RC(cuEventElapsedTime(&ms, a, untimed), CUDA_ERROR_INVALID_HANDLE);
    OK(cuStreamWaitEvent(s, b, 0));
    OK(cuStreamSynchronize(s));
    CUstream other = nullptr;
    OK(cuStreamCreate(&other, CU_STREAM_DEFAULT));
    OK(cuStreamWaitEvent(other, a, 0));
    OK(cuStreamDestroy(other));
    EXPECT_RC(cuStreamDestroy(other), CUDA_ERROR_INVALID_HANDLE);
    EXPECT_RC(cuStreamSynchronize(other), CUDA_ERROR_INVALID_HANDLE);
    for (CUevent e : {a, b, untimed, fresh}) {
        OK(cuEventDestroy(e));
    }
    EXPECT_RC(cuEventDestroy(a), CUDA_ERROR_INVALID_HANDLE);
    EXPECT_RC(cuEventRecord(a, s), CUDA_ERROR_INVALID_HANDLE);
    EXPECT_RC(cuEventQuery(a), CUDA_ERROR_INVALID_HANDLE);
}

struct FillArgs {
    float* out;
    int n;
    float value;
};

void test_modules_and_launch(CUstream s) {
    const unsigned char image[] = {0x50, 0xed, 0x55, 0xba};  // any bytes: the emulator ignores the image
    CUmodule mod = nullptr;
    OK(cuModuleLoadData(&mod, image));
    CUfunction f = nullptr, f2 = nullptr;
    EXPECT_RC(cuModuleGetFunction(&f, mod, "no_such_kernel"), CUDA_ERROR_NOT_FOUND);
    OK(cuModuleGetFunction(&f, mod, "hr_emu_test_fill"));
    OK(cuModuleGetFunction(&f2, mod, "hr_emu_test_fill"));
    CHECK(f == f2);

    CUdeviceptr d = 0;
    OK(cuMemAlloc(&d, 400 * sizeof(float)));
    FillArgs args{reinterpret_cast<float*>(d), 300, 2.5f};
    void* params[] = {&args};
    OK(cuLaunchKernel(f, 3, 1, 1, 128, 1, 1, 0, s, params, nullptr));
    std::vector<float> out(400);
    OK(cuMemcpyDtoH(out.data(), d, 400 * sizeof(float)));
    for (int i = 0; i < 400; i++) {
        CHECK(i < 300 ? out[i] == 2.5f : std::isnan(out[i]));  // the rest keeps its poison
    }

    // Shared memory: 48 KiB without opting in; above needs the attribute, at most 227 KiB.
    OK(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 48 * 1024, s, params, nullptr));
    EXPECT_RC(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 48 * 1024 + 1, s, params, nullptr), CUDA_ERROR_INVALID_VALUE);
    OK(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 100 * 1024));
    OK(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 100 * 1024, s, params, nullptr));
    EXPECT_RC(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 100 * 1024 + 1, s, params, nullptr), CUDA_ERROR_INVALID_VALUE);
    EXPECT_RC(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 227 * 1024 + 1),
              CUDA_ERROR_INVALID_VALUE);
    OK(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 227 * 1024));
    OK(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 227 * 1024, s, params, nullptr));
    EXPECT_RC(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 64), CUDA_ERROR_NOT_SUPPORTED);

    // Block and grid limits, extra, and a kernel that fails.
    EXPECT_RC(cuLaunchKernel(f, 1, 1, 1, 1025, 1, 1, 0, s, params, nullptr), CUDA_ERROR_INVALID_VALUE);
    EXPECT_RC(cuLaunchKernel(f, 1, 1, 1, 32, 32, 2, 0, s, params, nullptr), CUDA_ERROR_INVALID_VALUE);
    EXPECT_RC(cuLaunchKernel(f, 1, 65536, 1, 32, 1, 1, 0, s, params, nullptr), CUDA_ERROR_INVALID_VALUE);
    EXPECT_RC(cuLaunchKernel(f, 0, 1, 1, 32, 1, 1, 0, s, params, nullptr), CUDA_ERROR_INVALID_VALUE);
    void* extra[] = {CU_LAUNCH_PARAM_END};
    EXPECT_RC(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, s, nullptr, extra), CUDA_ERROR_NOT_SUPPORTED);
    FillArgs bad{reinterpret_cast<float*>(d), -1, 0.0f};
    void* badParams[] = {&bad};
    std::fprintf(stderr, "driver_test: the next line should be an hr-emu error for n = -1\n");
    EXPECT_RC(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, s, badParams, nullptr), CUDA_ERROR_LAUNCH_FAILED);

    OK(cuModuleUnload(mod));
    EXPECT_RC(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, s, params, nullptr), CUDA_ERROR_INVALID_HANDLE);
    EXPECT_RC(cuModuleUnload(mod), CUDA_ERROR_INVALID_HANDLE);
    OK(cuMemFree(d));
}

void test_error_names() {
    const char* s = nullptr;
    OK(cuGetErrorName(CUDA_ERROR_OUT_OF_MEMORY, &s));
    CHECK(std::strcmp(s, "CUDA_ERROR_OUT_OF_MEMORY") == 0);
    OK(cuGetErrorString(CUDA_ERROR_INVALID_VALUE, &s));
    CHECK(std::strcmp(s, "invalid argument") == 0);
    EXPECT_RC(cuGetErrorName(static_cast<CUresult>(123456), &s), CUDA_ERROR_INVALID_VALUE);
}

// ---- cuBLAS ----

float half_to_float(uint16_t h) {
    int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v = e == 0 ? std::ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp(1024 + m, e - 25);
    return static_cast<float>((h & 0x8000) ? -v : v);
}

// Reference rounding, independent of the fake's bit tricks: scale to units of the ulp and let nearbyint
// round (to nearest even in the default mode).
uint16_t float_to_half_ref(float f) {
    if (std::isnan(f)) {
        return 0x7E00;
    }
    const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
    const double a = std::fabs(static_cast<double>(f));
    if (a >= 65520.0) {  // halfway between 65504 and 2^16 and above: inf
        return sign | 0x7C00;
    }
    if (a < 0x1p-14) {  // subnormal, in units of 2^-24 (1024 units is the smallest normal)
        return sign | static_cast<uint16_t>(std::nearbyint(a * 0x1p24));
    }
    int ex = 0;
    std::frexp(a, &ex);  // a = m · 2^ex, m in [0.5, 1)
    const int e = ex - 1;
    const double q = std::nearbyint(std::ldexp(a, 10 - e));  // in [1024, 2048]; 2048 carries into the exponent
    return sign | static_cast<uint16_t>(((e + 15) << 10) + static_cast<int>(q) - 1024);
}

float bf16_to_float(uint16_t b) {
    uint32_t x = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

struct Matrix {  // column-major storage of one dtype, with its float values
    cudaDataType t;
    std::vector<unsigned char> bytes;
    std::vector<float> value;
};

int elem_bytes(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

uint16_t to_bits(cudaDataType t, float v) {
    if (t == CUDA_R_16F) {
        return float_to_half_ref(v);
    }
    uint32_t x;
    std::memcpy(&x, &v, 4);
    return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

float from_bits(cudaDataType t, const unsigned char* p) {
    if (t == CUDA_R_32F) {
        float f;
        std::memcpy(&f, p, 4);
        return f;
    }
    uint16_t h;
    std::memcpy(&h, p, 2);
    return t == CUDA_R_16F ? half_to_float(h) : bf16_to_float(h);
}

Matrix random_matrix(std::mt19937& rng, cudaDataType t, size_t n) {
    std::normal_distribution<float> g;
    Matrix m{t, std::vector<unsigned char>(n * elem_bytes(t)), std::vector<float>(n)};
    for (size_t i = 0; i < n; i++) {
        float v = g(rng);
        if (t == CUDA_R_32F) {
            std::memcpy(&m.bytes[i * 4], &v, 4);
        } else {
            uint16_t h = to_bits(t, v);
            std::memcpy(&m.bytes[i * 2], &h, 2);
        }
        m.value[i] = from_bits(t, &m.bytes[i * elem_bytes(t)]);
    }
    return m;
}

double tolerance(cudaDataType t) { return t == CUDA_R_32F ? 1e-5 : t == CUDA_R_16F ? 2e-3 : 1e-2; }

// One strided-batched GEMM on random data, checked element by element against a double reference.
void check_gemm(cublasHandle_t h, std::mt19937& rng, cudaDataType ab, cudaDataType ct, bool ta, bool tb, int m, int n,
                int k, float alpha, float beta, int batch) {
    const int rowsA = ta ? k : m, colsA = ta ? m : k, rowsB = tb ? n : k, colsB = tb ? k : n;
    const int lda = rowsA + 3, ldb = rowsB + 1, ldc = m + 2;
    const long long sA = static_cast<long long>(lda) * colsA + 5, sB = static_cast<long long>(ldb) * colsB + 7,
                    sC = static_cast<long long>(ldc) * n + 1;
    Matrix A = random_matrix(rng, ab, sA * batch), B = random_matrix(rng, ab, sB * batch), C = random_matrix(rng, ct, sC * batch);
    if (beta == 0.0f) {  // NaN C: beta = 0 must not read it
        std::fill(C.bytes.begin(), C.bytes.end(), 0xFF);
    }
    std::vector<unsigned char> before = C.bytes;
    int rc = cublasGemmStridedBatchedEx(h, ta ? OP_T : OP_N, tb ? OP_T : OP_N, m, n, k, &alpha, A.bytes.data(), ab, lda, sA,
                                        B.bytes.data(), ab, ldb, sB, &beta, C.bytes.data(), ct, ldc, sC, batch,
                                        COMPUTE_32F, GEMM_DEFAULT);
    CHECK(rc == ST_OK);
    for (int bi = 0; bi < batch; bi++) {
        for (long long idx = 0; idx < sC; idx++) {
            const long long at = bi * sC + idx;
            const int i = static_cast<int>(idx % ldc), j = static_cast<int>(idx / ldc);
            const float got = from_bits(ct, &C.bytes[at * elem_bytes(ct)]);
            if (i >= m || j >= n) {  // padding between columns and batches is untouched
                CHECK(std::memcmp(&C.bytes[at * elem_bytes(ct)], &before[at * elem_bytes(ct)], elem_bytes(ct)) == 0);
                continue;
            }
            double acc = 0;
            for (int p = 0; p < k; p++) {
                double a = A.value[bi * sA + (ta ? static_cast<long long>(i) * lda + p : static_cast<long long>(p) * lda + i)];
                double b = B.value[bi * sB + (tb ? static_cast<long long>(p) * ldb + j : static_cast<long long>(j) * ldb + p)];
                acc += a * b;
            }
            double want = alpha * acc + (beta != 0.0f ? beta * static_cast<double>(C.value[at]) : 0.0);
            if (!(std::fabs(got - want) <= tolerance(ct) * std::fabs(want) + 1e-6)) {
                std::fprintf(stderr, "gemm ab=%d c=%d %c%c m=%d n=%d k=%d batch %d: C(%d,%d) = %.9g, want %.9g\n", ab, ct,
                             ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, bi, i, j, got, want);
                CHECK(false);
            }
            checks++;
        }
    }
}

void test_cublas() {
    cublasHandle_t h = nullptr;
    CHECK(cublasCreate_v2(&h) == ST_OK && h != nullptr);
    int version = 0, mode = -1;
    CHECK(cublasGetVersion_v2(h, &version) == ST_OK && version == 130000);
    CHECK(cublasGetMathMode(h, &mode) == ST_OK && mode == 0);
    CHECK(cublasSetMathMode(h, 2) == ST_OK && cublasGetMathMode(h, &mode) == ST_OK && mode == 2);
    CHECK(cublasSetMathMode(h, 9) == ST_INVALID);
    CHECK(cublasSetStream_v2(h, nullptr) == ST_OK);

    std::mt19937 rng(1234);
    const cudaDataType combos[][2] = {{CUDA_R_32F, CUDA_R_32F},
                                      {CUDA_R_16F, CUDA_R_16F},
                                      {CUDA_R_16F, CUDA_R_32F},
                                      {CUDA_R_16BF, CUDA_R_16BF},
                                      {CUDA_R_16BF, CUDA_R_32F}};
    for (auto& c : combos) {
        for (int t = 0; t < 4; t++) {
            check_gemm(h, rng, c[0], c[1], t & 1, t & 2, 37, 29, 45, 1.0f, 0.0f, 1);
            check_gemm(h, rng, c[0], c[1], t & 1, t & 2, 13, 70, 300, 0.75f, 1.0f, 3);  // k spans two blocks
        }
    }
    check_gemm(h, rng, CUDA_R_32F, CUDA_R_32F, false, true, 130, 66, 7, -2.0f, 0.5f, 2);  // m, n span blocks

    // Round to nearest even on the way to f16 / bf16: 1 + half an ulp goes down, 1 + 1.5 ulp goes up.
    struct {
        cudaDataType t;
        float tail;
        uint16_t want;
    } ties[] = {{CUDA_R_16F, 0x1p-11f, 0x3C00}, {CUDA_R_16F, 0x3p-11f, 0x3C02},
                {CUDA_R_16BF, 0x1p-8f, 0x3F80}, {CUDA_R_16BF, 0x3p-8f, 0x3F82}};
    for (auto& tie : ties) {
        float a[2] = {1.0f, 1.0f}, b[2] = {1.0f, tie.tail}, one = 1.0f, zero = 0.0f;
        uint16_t c = 0xFFFF;
        CHECK(cublasGemmEx(h, OP_T, OP_N, 1, 1, 2, &one, a, CUDA_R_32F, 2, b, CUDA_R_32F, 2, &zero, &c, tie.t, 1,
                           COMPUTE_32F, GEMM_DEFAULT) == ST_NOT_SUPPORTED);  // f32 inputs need an f32 C
        uint16_t ah[2] = {to_bits(tie.t, 1.0f), to_bits(tie.t, 1.0f)}, bh[2] = {to_bits(tie.t, 1.0f), to_bits(tie.t, tie.tail)};
        CHECK((tie.t == CUDA_R_16F ? half_to_float(bh[1]) : bf16_to_float(bh[1])) == tie.tail);
        CHECK(cublasGemmEx(h, OP_T, OP_N, 1, 1, 2, &one, ah, tie.t, 2, bh, tie.t, 2, &zero, &c, tie.t, 1, COMPUTE_32F,
                           GEMM_DEFAULT) == ST_OK);
        CHECK(c == tie.want);
    }

    // alpha = 0 reads neither A nor B: C = beta·C even with NaN inputs.
    float nanA[4], nanB[4], cc[4] = {1, 2, 3, 4}, zero = 0.0f, two = 2.0f;
    std::fill(nanA, nanA + 4, NAN);
    std::fill(nanB, nanB + 4, NAN);
    CHECK(cublasGemmEx(h, OP_N, OP_N, 2, 2, 2, &zero, nanA, CUDA_R_32F, 2, nanB, CUDA_R_32F, 2, &two, cc, CUDA_R_32F, 2,
                       COMPUTE_32F, GEMM_DEFAULT) == ST_OK);
    CHECK(cc[0] == 2 && cc[3] == 8);

    // Argument checks.
    float one = 1.0f;
    CHECK(cublasGemmEx(h, OP_N, OP_N, 2, 2, 2, &one, nanA, CUDA_R_32F, 1, nanB, CUDA_R_32F, 2, &zero, cc, CUDA_R_32F, 2,
                       COMPUTE_32F, GEMM_DEFAULT) == ST_INVALID);  // lda < m
    CHECK(cublasGemmEx(h, 7, OP_N, 2, 2, 2, &one, nanA, CUDA_R_32F, 2, nanB, CUDA_R_32F, 2, &zero, cc, CUDA_R_32F, 2,
                       COMPUTE_32F, GEMM_DEFAULT) == ST_INVALID);
    CHECK(cublasGemmEx(h, OP_N, OP_N, 2, 2, 2, &one, nanA, CUDA_R_32F, 2, nanB, CUDA_R_32F, 2, &zero, cc, CUDA_R_32F, 2,
                       COMPUTE_64F, GEMM_DEFAULT) == ST_NOT_SUPPORTED);
    CHECK(cublasGemmEx(h, OP_N, OP_N, 2, 2, 2, &one, nanA, CUDA_R_16F, 2, nanB, CUDA_R_16BF, 2, &zero, cc, CUDA_R_32F, 2,
                       COMPUTE_32F, GEMM_DEFAULT) == ST_NOT_SUPPORTED);
    CHECK(cublasGemmStridedBatchedEx(h, OP_N, OP_N, 2, 2, 2, &one, nanA, CUDA_R_32F, 2, 0, nanB, CUDA_R_32F, 2, 0, &zero, cc,
                                     CUDA_R_32F, 2, 0, -1, COMPUTE_32F, GEMM_DEFAULT) == ST_INVALID);

    // Not a test of speed (that is for benchmarks): how long a 1000 × 1000 × 128 f16 GEMM takes here, for the report.
    {
        const int m = 1000, n = 1000, k = 128;
        std::vector<uint16_t> a(static_cast<size_t>(k) * m, 0x3C00), b(static_cast<size_t>(k) * n, 0x3C00);
        std::vector<float> c(static_cast<size_t>(m) * n);
        auto t0 = std::chrono::steady_clock::now();
        CHECK(cublasGemmEx(h, OP_T, OP_N, m, n, k, &one, a.data(), CUDA_R_16F, k, b.data(), CUDA_R_16F, k, &zero, c.data(),
                           CUDA_R_32F, m, COMPUTE_32F, GEMM_DEFAULT) == ST_OK);
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        CHECK(c[0] == 128.0f && c.back() == 128.0f);
        std::printf("driver_test: 1000x1000x128 f16->f32 GEMM took %.3f s\n", s);
    }

    CHECK(cublasDestroy_v2(h) == ST_OK);
    CHECK(cublasDestroy_v2(h) == ST_NOT_INITIALIZED);
    CHECK(cublasGetVersion_v2(h, &version) == ST_NOT_INITIALIZED);
}

}  // namespace

int main() {
    setenv("HR_EMU_MEMORY_BYTES", "1048576", 1);  // read once, on first use
    test_before_init();
    CUcontext ctx = test_device_and_context();
    test_memory();
    test_threads(ctx);
    CUstream s = nullptr;
    OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    test_copies_and_memsets(s);
    test_streams_and_events(s);
    test_modules_and_launch(s);
    OK(cuStreamDestroy(s));
    test_error_names();
    test_cublas();
    std::printf("driver_test: %d checks passed\n", checks);
    return 0;
}
