// libcuda.so.1 for the CPU emulator: the CUDA driver API functions that JCuda's native library
// imports for headroute's calls, with device memory = host memory and every operation synchronous.
// Kernels run through hr_emu_launch (native/emu/runtime, or stub_kernels.cpp in this folder's test).
// Compiled against the real cuda.h so that types, enums and struct layouts match.
#include <cuda.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <string>

extern "C" int hr_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                             unsigned bz, unsigned smem_bytes, void** args, char* err, size_t err_len);
extern "C" int hr_emu_has_kernel(const char* name);

// JCuda 12.6 was built against cuda.h 12.6, where cuEventElapsedTime had no _v2; CUDA 13's header renames it.
#undef cuEventElapsedTime
extern "C" CUresult cuEventElapsedTime(float* pMilliseconds, CUevent hStart, CUevent hEnd);

namespace {

constexpr int kDriverVersion = 13000;
constexpr const char* kDeviceName = "headroute CPU emulator";
constexpr size_t kDefaultSharedPerBlock = 48 * 1024;
constexpr size_t kOptinSharedPerBlock = 227 * 1024;
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned char kPoison = 0xFF;  // NaN in f32, f16 and bf16

struct Alloc {
    void* map;       // what mmap returned
    size_t map_len;  // data pages + guard page
    size_t bytes;    // the size as asked for
    size_t placed;   // bytes rounded up to 16: the data ends exactly at the guard page
};

struct Context {
    int retained = 0;
};

struct Stream {
    unsigned flags;
};

struct Event {
    unsigned flags;
    bool recorded = false;
    double ms = 0;  // host monotonic time of the last record
};

struct Module {
    std::set<struct Function*> functions;
};

struct Function {
    Module* module;
    std::string name;
    int max_dynamic_smem = static_cast<int>(kDefaultSharedPerBlock);
};

std::mutex mu;
bool initialized = false;
Context primary;
thread_local CUcontext current = nullptr;
std::map<uintptr_t, Alloc> allocs;  // keyed by the device address (start of the placed data)
size_t live_bytes = 0;
std::set<void*> host_allocs;
std::set<Stream*> streams;
std::set<Event*> events;
std::set<Module*> modules;
std::set<Function*> functions;

CUcontext primary_handle() { return reinterpret_cast<CUcontext>(&primary); }

size_t total_memory() {
    static const size_t total = [] {
        const char* s = std::getenv("HR_EMU_MEMORY_BYTES");
        if (s != nullptr && *s != '\0') {
            char* end = nullptr;
            unsigned long long v = std::strtoull(s, &end, 10);
            if (end != nullptr && *end == '\0' && v > 0) {
                return static_cast<size_t>(v);
            }
            std::fprintf(stderr, "hr-emu: ignoring HR_EMU_MEMORY_BYTES=%s (not a positive integer)\n", s);
        }
        return static_cast<size_t>(16) << 30;
    }();
    return total;
}

size_t page_size() {
    static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return p;
}

double now_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

CUresult need_init() { return initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED; }

// Calls that the real driver runs in the current context fail the same way without one.
CUresult need_context() {
    if (!initialized) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    if (current == nullptr || primary.retained == 0) {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    return CUDA_SUCCESS;
}

bool is_device_range(uintptr_t p, size_t n) {
    auto it = allocs.upper_bound(p);
    if (it == allocs.begin()) {
        return false;
    }
    --it;
    uintptr_t start = it->first;
    return p >= start && n <= it->second.bytes && p - start <= it->second.bytes - n;
}

bool is_stream(CUstream s) {
    if (s == nullptr || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD) {
        return true;
    }
    return streams.count(reinterpret_cast<Stream*>(s)) != 0;
}

bool is_event(CUevent e) { return e != nullptr && events.count(reinterpret_cast<Event*>(e)) != 0; }

bool is_function(CUfunction f) { return f != nullptr && functions.count(reinterpret_cast<Function*>(f)) != 0; }

CUresult memset_n(CUdeviceptr dst, const void* value, size_t width, size_t n, CUstream stream) {
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!is_stream(stream)) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (n == 0) {
        return CUDA_SUCCESS;
    }
    if (dst % width != 0 || n > SIZE_MAX / width || !is_device_range(dst, n * width)) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    unsigned char* p = reinterpret_cast<unsigned char*>(dst);
    for (size_t i = 0; i < n; i++) {
        std::memcpy(p + i * width, value, width);
    }
    return CUDA_SUCCESS;
}

// Height rows of n elements, `pitch` bytes apart (cuMemsetD2D*): every row inside one allocation.
CUresult memset_2d(CUdeviceptr dst, size_t pitch, const void* value, size_t width, size_t n, size_t height, CUstream stream) {
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!is_stream(stream)) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (n == 0 || height == 0) {
        return CUDA_SUCCESS;
    }
    if (dst % width != 0 || pitch % width != 0 || n > SIZE_MAX / width || pitch < n * width
        || height - 1 > (SIZE_MAX - n * width) / pitch || !is_device_range(dst, (height - 1) * pitch + n * width)) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    for (size_t r = 0; r < height; r++) {
        unsigned char* row = reinterpret_cast<unsigned char*>(dst + r * pitch);
        for (size_t i = 0; i < n; i++) {
            std::memcpy(row + i * width, value, width);
        }
    }
    return CUDA_SUCCESS;
}

// One side of a 2D copy: where its rows start and whether they are valid.
CUresult copy2d_side(CUmemorytype type, const void* host, CUdeviceptr device, size_t x, size_t y, size_t pitch,
                     size_t width, size_t height, unsigned char** base) {
    uintptr_t start;
    if (type == CU_MEMORYTYPE_HOST) {
        start = reinterpret_cast<uintptr_t>(host);
    } else if (type == CU_MEMORYTYPE_DEVICE || type == CU_MEMORYTYPE_UNIFIED) {
        start = static_cast<uintptr_t>(device);
    } else {
        return CUDA_ERROR_NOT_SUPPORTED;  // CUDA arrays are not emulated
    }
    if (start == 0 || (height > 1 && pitch < width)) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    start += y * pitch + x;
    if (type != CU_MEMORYTYPE_HOST && height > 0 && !is_device_range(start, (height - 1) * pitch + width)) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    *base = reinterpret_cast<unsigned char*>(start);
    return CUDA_SUCCESS;
}

CUresult copy_checked(void* dst, bool dst_device, const void* src, bool src_device, size_t n) {
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (n == 0) {
        return CUDA_SUCCESS;
    }
    if (dst == nullptr || src == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if ((dst_device && !is_device_range(reinterpret_cast<uintptr_t>(dst), n))
        || (src_device && !is_device_range(reinterpret_cast<uintptr_t>(src), n))) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    std::memmove(dst, src, n);
    return CUDA_SUCCESS;
}

bool attribute_value(CUdevice_attribute attr, int* v) {
    switch (attr) {
        case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = kMaxThreadsPerBlock; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: *v = 1024; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: *v = 1024; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: *v = 64; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: *v = 2147483647; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: *v = 65535; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: *v = 65535; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: *v = kDefaultSharedPerBlock; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *v = kOptinSharedPerBlock; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: *v = 228 * 1024; return true;
        case CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK: *v = 1024; return true;
        case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: *v = 65536; return true;
        case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *v = 32; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_PITCH: *v = 2147483647; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: *v = 65536; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: *v = 65536; return true;
        case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: *v = 1980000; return true;
        case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: *v = 2619000; return true;
        case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: *v = 5120; return true;
        case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: *v = 50 * 1024 * 1024; return true;
        case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT: *v = 512; return true;
        case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = 132; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: *v = 2048; return true;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: *v = 32; return true;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = 9; return true;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = 0; return true;
        case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: *v = 3; return true;
        case CU_DEVICE_ATTRIBUTE_GPU_OVERLAP: *v = 1; return true;
        case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: *v = 1; return true;
        case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: *v = 1; return true;
        case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: *v = 1; return true;
        case CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED: *v = 1; return true;
        case CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED: *v = 1; return true;
        case CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED: *v = 1; return true;
        case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: *v = 1; return true;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED: *v = 1; return true;
        case CU_DEVICE_ATTRIBUTE_KERNEL_EXEC_TIMEOUT: *v = 0; return true;
        case CU_DEVICE_ATTRIBUTE_INTEGRATED: *v = 0; return true;
        case CU_DEVICE_ATTRIBUTE_TCC_DRIVER: *v = 0; return true;
        case CU_DEVICE_ATTRIBUTE_ECC_ENABLED: *v = 0; return true;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_MODE: *v = CU_COMPUTEMODE_DEFAULT; return true;
        case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: *v = 0; return true;
        case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: *v = 0; return true;
        case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: *v = 0; return true;
        case CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD: *v = 0; return true;
        // Managed, pageable and host-registered memory are not emulated: report them absent.
        case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: *v = 0; return true;
        case CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS: *v = 0; return true;
        case CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS: *v = 0; return true;
        default: return false;
    }
}

}  // namespace

extern "C" {

CUresult cuGetErrorName(CUresult error, const char** pStr);

CUresult cuInit(unsigned int Flags) {
    std::lock_guard<std::mutex> lock(mu);
    if (Flags != 0) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    initialized = true;
    return CUDA_SUCCESS;
}

CUresult cuDriverGetVersion(int* driverVersion) {
    if (driverVersion == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    *driverVersion = kDriverVersion;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int* count) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_init();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (count == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    *count = 1;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice* device, int ordinal) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_init();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (device == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (ordinal != 0) {
        return CUDA_ERROR_INVALID_DEVICE;
    }
    *device = 0;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_init();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (dev != 0) {
        return CUDA_ERROR_INVALID_DEVICE;
    }
    if (name == nullptr || len <= 0) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    std::snprintf(name, static_cast<size_t>(len), "%s", kDeviceName);
    return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_init();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (dev != 0) {
        return CUDA_ERROR_INVALID_DEVICE;
    }
    if (bytes == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    *bytes = total_memory();
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int* pi, CUdevice_attribute attrib, CUdevice dev) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_init();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (dev != 0) {
        return CUDA_ERROR_INVALID_DEVICE;
    }
    if (pi == nullptr || !attribute_value(attrib, pi)) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_init();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (dev != 0) {
        return CUDA_ERROR_INVALID_DEVICE;
    }
    if (pctx == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    primary.retained++;
    *pctx = primary_handle();
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_init();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (dev != 0) {
        return CUDA_ERROR_INVALID_DEVICE;
    }
    if (primary.retained == 0) {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    // The real driver destroys the context (and its memory) at zero; here memory stays, so leaks still show.
    primary.retained--;
    return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext ctx) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_init();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (ctx != nullptr && (ctx != primary_handle() || primary.retained == 0)) {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    current = ctx;
    return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext* pctx) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_init();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (pctx == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    *pctx = current;
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void) {
    std::lock_guard<std::mutex> lock(mu);
    return need_context();  // everything already ran
}

CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (free == nullptr || total == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    *total = total_memory();
    *free = total_memory() - live_bytes;
    return CUDA_SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (dptr == nullptr || bytesize == 0) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (bytesize > total_memory() - live_bytes) {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    const size_t page = page_size();
    const size_t placed = (bytesize + 15) & ~static_cast<size_t>(15);
    const size_t data_pages = (placed + page - 1) / page * page;
    const size_t map_len = data_pages + page;
    void* map = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    unsigned char* base = static_cast<unsigned char*>(map);
    if (mprotect(base + data_pages, page, PROT_NONE) != 0) {
        munmap(map, map_len);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    unsigned char* data = base + data_pages - placed;
    std::memset(data, kPoison, placed);
    uintptr_t addr = reinterpret_cast<uintptr_t>(data);
    allocs[addr] = Alloc{map, map_len, bytesize, placed};
    live_bytes += bytesize;
    *dptr = static_cast<CUdeviceptr>(addr);
    return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr dptr) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    auto it = allocs.find(static_cast<uintptr_t>(dptr));
    if (it == allocs.end()) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    munmap(it->second.map, it->second.map_len);
    live_bytes -= it->second.bytes;
    allocs.erase(it);
    return CUDA_SUCCESS;
}

CUresult cuMemAllocHost_v2(void** pp, size_t bytesize) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (pp == nullptr || bytesize == 0) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    void* p = nullptr;
    if (posix_memalign(&p, page_size(), bytesize) != 0) {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    host_allocs.insert(p);
    *pp = p;
    return CUDA_SUCCESS;
}

CUresult cuMemFreeHost(void* p) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (host_allocs.erase(p) == 0) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    std::free(p);
    return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoH_v2(void* dstHost, CUdeviceptr srcDevice, size_t ByteCount) {
    std::lock_guard<std::mutex> lock(mu);
    return copy_checked(dstHost, false, reinterpret_cast<const void*>(srcDevice), true, ByteCount);
}

CUresult cuMemcpyDtoHAsync_v2(void* dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    if (initialized && !is_stream(hStream)) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    return copy_checked(dstHost, false, reinterpret_cast<const void*>(srcDevice), true, ByteCount);
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void* srcHost, size_t ByteCount, CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    if (initialized && !is_stream(hStream)) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    return copy_checked(reinterpret_cast<void*>(dstDevice), true, srcHost, false, ByteCount);
}

CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D* c, CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!is_stream(hStream)) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (c == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (c->WidthInBytes == 0 || c->Height == 0) {
        return CUDA_SUCCESS;
    }
    unsigned char* src = nullptr;
    unsigned char* dst = nullptr;
    rc = copy2d_side(c->srcMemoryType, c->srcHost, c->srcDevice, c->srcXInBytes, c->srcY, c->srcPitch, c->WidthInBytes,
                     c->Height, &src);
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    rc = copy2d_side(c->dstMemoryType, c->dstHost, c->dstDevice, c->dstXInBytes, c->dstY, c->dstPitch, c->WidthInBytes,
                     c->Height, &dst);
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    for (size_t row = 0; row < c->Height; row++) {
        std::memmove(dst + row * c->dstPitch, src + row * c->srcPitch, c->WidthInBytes);
    }
    return CUDA_SUCCESS;
}

CUresult cuMemsetD8Async(CUdeviceptr dstDevice, unsigned char uc, size_t N, CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    return memset_n(dstDevice, &uc, 1, N, hStream);
}

CUresult cuMemsetD16Async(CUdeviceptr dstDevice, unsigned short us, size_t N, CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    return memset_n(dstDevice, &us, 2, N, hStream);
}

CUresult cuMemsetD32Async(CUdeviceptr dstDevice, unsigned int ui, size_t N, CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    return memset_n(dstDevice, &ui, 4, N, hStream);
}

CUresult cuMemsetD2D8Async(CUdeviceptr dstDevice, size_t dstPitch, unsigned char uc, size_t Width, size_t Height,
                           CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    return memset_2d(dstDevice, dstPitch, &uc, 1, Width, Height, hStream);
}

CUresult cuMemsetD2D16Async(CUdeviceptr dstDevice, size_t dstPitch, unsigned short us, size_t Width, size_t Height,
                            CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    return memset_2d(dstDevice, dstPitch, &us, 2, Width, Height, hStream);
}

CUresult cuMemsetD2D32Async(CUdeviceptr dstDevice, size_t dstPitch, unsigned int ui, size_t Width, size_t Height,
                            CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    return memset_2d(dstDevice, dstPitch, &ui, 4, Width, Height, hStream);
}

CUresult cuStreamCreate(CUstream* phStream, unsigned int Flags) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (phStream == nullptr || (Flags & ~static_cast<unsigned>(CU_STREAM_NON_BLOCKING)) != 0) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    Stream* s = new Stream{Flags};
    streams.insert(s);
    *phStream = reinterpret_cast<CUstream>(s);
    return CUDA_SUCCESS;
}

CUresult cuStreamDestroy_v2(CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    Stream* s = reinterpret_cast<Stream*>(hStream);
    if (streams.erase(s) == 0) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    delete s;
    return CUDA_SUCCESS;
}

CUresult cuStreamSynchronize(CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    return is_stream(hStream) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!is_stream(hStream) || !is_event(hEvent)) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    return Flags == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cuEventCreate(CUevent* phEvent, unsigned int Flags) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    const unsigned known = CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
    if (phEvent == nullptr || (Flags & ~known) != 0) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    Event* e = new Event{Flags};
    events.insert(e);
    *phEvent = reinterpret_cast<CUevent>(e);
    return CUDA_SUCCESS;
}

CUresult cuEventDestroy_v2(CUevent hEvent) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    Event* e = reinterpret_cast<Event*>(hEvent);
    if (events.erase(e) == 0) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    delete e;
    return CUDA_SUCCESS;
}

CUresult cuEventRecord(CUevent hEvent, CUstream hStream) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!is_event(hEvent) || !is_stream(hStream)) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    Event* e = reinterpret_cast<Event*>(hEvent);
    e->recorded = true;
    e->ms = now_ms();
    return CUDA_SUCCESS;
}

CUresult cuEventSynchronize(CUevent hEvent) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    return is_event(hEvent) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

// Work runs when it is queued, so a recorded event is always complete.
CUresult cuEventQuery(CUevent hEvent) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    return is_event(hEvent) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult cuEventElapsedTime(float* pMilliseconds, CUevent hStart, CUevent hEnd) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (pMilliseconds == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (!is_event(hStart) || !is_event(hEnd)) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    Event* s = reinterpret_cast<Event*>(hStart);
    Event* e = reinterpret_cast<Event*>(hEnd);
    // As the real driver: both recorded, both with timing.
    if (!s->recorded || !e->recorded || ((s->flags | e->flags) & CU_EVENT_DISABLE_TIMING) != 0) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    *pMilliseconds = static_cast<float>(e->ms - s->ms);
    return CUDA_SUCCESS;
}

CUresult cuModuleLoadData(CUmodule* module, const void* image) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (module == nullptr || image == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    Module* m = new Module();
    modules.insert(m);
    *module = reinterpret_cast<CUmodule>(m);
    return CUDA_SUCCESS;
}

CUresult cuModuleUnload(CUmodule hmod) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    Module* m = reinterpret_cast<Module*>(hmod);
    if (modules.erase(m) == 0) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    for (Function* f : m->functions) {
        functions.erase(f);
        delete f;
    }
    delete m;
    return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction* hfunc, CUmodule hmod, const char* name) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (hfunc == nullptr || name == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    Module* m = reinterpret_cast<Module*>(hmod);
    if (modules.count(m) == 0) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (!hr_emu_has_kernel(name)) {
        return CUDA_ERROR_NOT_FOUND;
    }
    for (Function* f : m->functions) {  // the real driver hands out one handle per kernel and module
        if (f->name == name) {
            *hfunc = reinterpret_cast<CUfunction>(f);
            return CUDA_SUCCESS;
        }
    }
    Function* f = new Function{m, name};
    m->functions.insert(f);
    functions.insert(f);
    *hfunc = reinterpret_cast<CUfunction>(f);
    return CUDA_SUCCESS;
}

CUresult cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!is_function(hfunc)) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (attrib != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
        return CUDA_ERROR_NOT_SUPPORTED;  // no other attribute is emulated; say so rather than pretend
    }
    // Static shared memory is unknown here, so the cap is the whole opt-in size.
    if (value < 0 || static_cast<size_t>(value) > kOptinSharedPerBlock) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    reinterpret_cast<Function*>(hfunc)->max_dynamic_smem = value;
    return CUDA_SUCCESS;
}

CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                        unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                        unsigned int sharedMemBytes, CUstream hStream, void** kernelParams, void** extra) {
    std::lock_guard<std::mutex> lock(mu);
    CUresult rc = need_context();
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!is_function(f) || !is_stream(hStream)) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (extra != nullptr) {
        return CUDA_ERROR_NOT_SUPPORTED;  // only kernelParams are emulated
    }
    if (gridDimX == 0 || gridDimY == 0 || gridDimZ == 0 || gridDimX > 2147483647u || gridDimY > 65535
        || gridDimZ > 65535) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (blockDimX == 0 || blockDimY == 0 || blockDimZ == 0 || blockDimX > 1024 || blockDimY > 1024 || blockDimZ > 64
        || static_cast<unsigned long long>(blockDimX) * blockDimY * blockDimZ > kMaxThreadsPerBlock) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    Function* fn = reinterpret_cast<Function*>(f);
    if (sharedMemBytes > static_cast<unsigned>(fn->max_dynamic_smem)) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    char err[1024] = {0};
    int status = hr_emu_launch(fn->name.c_str(), gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ,
                               sharedMemBytes, kernelParams, err, sizeof err);
    if (status != 0) {
        err[sizeof err - 1] = '\0';
        std::fprintf(stderr, "hr-emu: %s grid (%u, %u, %u) block (%u, %u, %u) smem %u: %s\n", fn->name.c_str(),
                     gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes,
                     err[0] != '\0' ? err : "kernel failed (no message)");
        std::fflush(stderr);
        return CUDA_ERROR_LAUNCH_FAILED;
    }
    return CUDA_SUCCESS;
}

CUresult cuGetErrorName(CUresult error, const char** pStr) {
    if (pStr == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    switch (error) {
#define HR_EMU_NAME(e) \
    case e: *pStr = #e; return CUDA_SUCCESS;
        HR_EMU_NAME(CUDA_SUCCESS)
        HR_EMU_NAME(CUDA_ERROR_INVALID_VALUE)
        HR_EMU_NAME(CUDA_ERROR_OUT_OF_MEMORY)
        HR_EMU_NAME(CUDA_ERROR_NOT_INITIALIZED)
        HR_EMU_NAME(CUDA_ERROR_DEINITIALIZED)
        HR_EMU_NAME(CUDA_ERROR_NO_DEVICE)
        HR_EMU_NAME(CUDA_ERROR_INVALID_DEVICE)
        HR_EMU_NAME(CUDA_ERROR_INVALID_IMAGE)
        HR_EMU_NAME(CUDA_ERROR_INVALID_CONTEXT)
        HR_EMU_NAME(CUDA_ERROR_INVALID_HANDLE)
        HR_EMU_NAME(CUDA_ERROR_NOT_FOUND)
        HR_EMU_NAME(CUDA_ERROR_NOT_READY)
        HR_EMU_NAME(CUDA_ERROR_LAUNCH_FAILED)
        HR_EMU_NAME(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES)
        HR_EMU_NAME(CUDA_ERROR_NOT_SUPPORTED)
        HR_EMU_NAME(CUDA_ERROR_UNKNOWN)
#undef HR_EMU_NAME
        default: *pStr = nullptr; return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult cuGetErrorString(CUresult error, const char** pStr) {
    if (pStr == nullptr) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    const char* s = nullptr;
    switch (error) {
        case CUDA_SUCCESS: s = "no error"; break;
        case CUDA_ERROR_INVALID_VALUE: s = "invalid argument"; break;
        case CUDA_ERROR_OUT_OF_MEMORY: s = "out of memory"; break;
        case CUDA_ERROR_NOT_INITIALIZED: s = "initialization error"; break;
        case CUDA_ERROR_DEINITIALIZED: s = "driver shutting down"; break;
        case CUDA_ERROR_NO_DEVICE: s = "no CUDA-capable device is detected"; break;
        case CUDA_ERROR_INVALID_DEVICE: s = "invalid device ordinal"; break;
        case CUDA_ERROR_INVALID_IMAGE: s = "device kernel image is invalid"; break;
        case CUDA_ERROR_INVALID_CONTEXT: s = "invalid device context"; break;
        case CUDA_ERROR_INVALID_HANDLE: s = "invalid resource handle"; break;
        case CUDA_ERROR_NOT_FOUND: s = "named symbol not found"; break;
        case CUDA_ERROR_NOT_READY: s = "device not ready"; break;
        case CUDA_ERROR_LAUNCH_FAILED: s = "unspecified launch failure"; break;
        case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: s = "too many resources requested for launch"; break;
        case CUDA_ERROR_NOT_SUPPORTED: s = "operation not supported"; break;
        case CUDA_ERROR_UNKNOWN: s = "unknown error"; break;
        default: *pStr = nullptr; return CUDA_ERROR_INVALID_VALUE;
    }
    *pStr = s;
    return CUDA_SUCCESS;
}

}  // extern "C"
