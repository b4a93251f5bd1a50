// libcublas.so.13 for the CPU emulator: the cuBLAS functions JCublas2 calls for headroute (through the
// native/ shim), with cuBLAS's column-major GEMM semantics computed on the host. Device pointers are
// host addresses (see fake_cuda.cpp), and every call finishes before it returns.
//
// Numerics: products are accumulated in double; alpha·acc + beta·C is formed in double, rounded to
// float (as cuBLAS's fp32 epilogue would hold it), then to C's type with round-to-nearest-even.
//
// cublas_api.h is not installed on the build machine, so its enum values are spelled out below; they
// are the values of JCublas 12.6.0's cublasStatus / cublasOperation / cublasComputeType / cublasMath.
#include <library_types.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

namespace {

typedef int cublasStatus_t;
enum : int {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum : int {
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_PEDANTIC = 69,
    CUBLAS_COMPUTE_32F_FAST_16F = 74,
    CUBLAS_COMPUTE_32F_FAST_16BF = 75,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
};
enum : int { CUBLAS_MATH_MODE_MASK = 15, CUBLAS_MATH_LAST = 3, CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16 };

constexpr int kVersion = 130000;  // what cublasGetVersion reports: "cuBLAS 13.0.0"

struct Handle {
    void* stream = nullptr;
    int math_mode = 0;
};

std::mutex mu;
std::set<Handle*> handles;

bool valid(Handle* h) {
    std::lock_guard<std::mutex> lock(mu);
    return handles.count(h) != 0;
}

float f16_to_float(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {  // subnormal: mant · 2^-24
        float f = static_cast<float>(mant) * (1.0f / 16777216.0f);
        return sign != 0 ? -f : f;
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_f16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) {
        return sign | 0x7E00;  // NaN stays NaN
    }
    if (ax >= 0x477FF000u) {  // rounds to >= 65536 (or is inf): inf
        return sign | 0x7C00;
    }
    if (ax < 0x38800000u) {  // below the smallest normal 2^-14: subnormal or zero, in units of 2^-24
        float a;
        std::memcpy(&a, &ax, 4);
        // a·2^24 < 2^10 is exact (a power-of-two scale), so the rounding below sees the true remainder.
        float scaled = a * 16777216.0f;
        uint32_t q = static_cast<uint32_t>(scaled);
        float rem = scaled - static_cast<float>(q);
        if (rem > 0.5f || (rem == 0.5f && (q & 1) != 0)) {
            q++;
        }
        return sign | static_cast<uint16_t>(q);  // q == 0x400 is the smallest normal, as it should be
    }
    uint32_t exp = (ax >> 23) - 112;
    uint32_t mant = ax & 0x7FFFFF;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1) != 0)) {
        h++;  // a carry into the exponent is the right answer
    }
    return sign | static_cast<uint16_t>(h);
}

float bf16_to_float(uint16_t b) {
    uint32_t bits = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_bf16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) {
        return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN, sign kept
    }
    x += 0x7FFF + ((x >> 16) & 1);
    return static_cast<uint16_t>(x >> 16);
}

double load(const void* base, cudaDataType t, long long i) {
    switch (t) {
        case CUDA_R_32F: return static_cast<const float*>(base)[i];
        case CUDA_R_16F: return f16_to_float(static_cast<const uint16_t*>(base)[i]);
        default: return bf16_to_float(static_cast<const uint16_t*>(base)[i]);
    }
}

void store(void* base, cudaDataType t, long long i, float v) {
    switch (t) {
        case CUDA_R_32F: static_cast<float*>(base)[i] = v; break;
        case CUDA_R_16F: static_cast<uint16_t*>(base)[i] = float_to_f16(v); break;
        default: static_cast<uint16_t*>(base)[i] = float_to_bf16(v); break;
    }
}

bool supported_types(cudaDataType ab, cudaDataType b, cudaDataType c, int compute) {
    if (ab != b) {
        return false;
    }
    bool compute_ok = compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC
                      || compute == CUBLAS_COMPUTE_32F_FAST_16F || compute == CUBLAS_COMPUTE_32F_FAST_16BF
                      || compute == CUBLAS_COMPUTE_32F_FAST_TF32;
    if (!compute_ok) {
        return false;
    }
    switch (ab) {
        case CUDA_R_32F: return c == CUDA_R_32F;
        case CUDA_R_16F: return c == CUDA_R_16F || c == CUDA_R_32F;
        case CUDA_R_16BF: return c == CUDA_R_16BF || c == CUDA_R_32F;
        default: return false;
    }
}

struct Gemm {
    bool ta, tb;
    int m, n, k;
    double alpha, beta;
    const void* a;
    cudaDataType at;
    long long lda;
    const void* b;
    cudaDataType bt;
    long long ldb;
    void* c;
    cudaDataType ct;
    long long ldc;
};

// op(A)(i, p) and op(B)(p, j) in column-major storage.
inline double a_at(const Gemm& g, int i, int p) {
    return load(g.a, g.at, g.ta ? static_cast<long long>(i) * g.lda + p : static_cast<long long>(p) * g.lda + i);
}
inline double b_at(const Gemm& g, int p, int j) {
    return load(g.b, g.bt, g.tb ? static_cast<long long>(p) * g.ldb + j : static_cast<long long>(j) * g.ldb + p);
}

// Blocked so that the inner loop is a contiguous axpy over MB doubles and the packed panels stay in cache.
void run(const Gemm& g) {
    constexpr int MB = 64, NB = 64, KB = 256;
    std::vector<double> ap(static_cast<size_t>(KB) * MB), bp(static_cast<size_t>(NB) * KB), acc(static_cast<size_t>(NB) * MB);
    const bool product = g.alpha != 0.0 && g.k > 0;  // as in cuBLAS, alpha = 0 reads neither A nor B
    for (int i0 = 0; i0 < g.m; i0 += MB) {
        const int mb = std::min(MB, g.m - i0);
        for (int j0 = 0; j0 < g.n; j0 += NB) {
            const int nb = std::min(NB, g.n - j0);
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int p0 = 0; product && p0 < g.k; p0 += KB) {
                const int kb = std::min(KB, g.k - p0);
                for (int p = 0; p < kb; p++) {
                    for (int i = 0; i < mb; i++) {
                        ap[static_cast<size_t>(p) * MB + i] = a_at(g, i0 + i, p0 + p);
                    }
                }
                for (int j = 0; j < nb; j++) {
                    for (int p = 0; p < kb; p++) {
                        bp[static_cast<size_t>(j) * KB + p] = b_at(g, p0 + p, j0 + j);
                    }
                }
                for (int j = 0; j < nb; j++) {
                    double* cj = &acc[static_cast<size_t>(j) * MB];
                    const double* bj = &bp[static_cast<size_t>(j) * KB];
                    for (int p = 0; p < kb; p++) {
                        const double bv = bj[p];
                        const double* ai = &ap[static_cast<size_t>(p) * MB];
                        for (int i = 0; i < MB; i++) {  // full width: the padding lanes are never stored
                            cj[i] += ai[i] * bv;
                        }
                    }
                }
            }
            for (int j = 0; j < nb; j++) {
                for (int i = 0; i < mb; i++) {
                    const long long at = static_cast<long long>(j0 + j) * g.ldc + (i0 + i);
                    double v = g.alpha * acc[static_cast<size_t>(j) * MB + i];
                    if (g.beta != 0.0) {  // beta = 0 must not read C: it may hold NaN
                        v += g.beta * load(g.c, g.ct, at);
                    }
                    store(g.c, g.ct, at, static_cast<float>(v));
                }
            }
        }
    }
}

cublasStatus_t check_gemm(Handle* h, int transa, int transb, int m, int n, int k, const void* alpha, const void* beta,
                          int lda, int ldb, int ldc, cudaDataType at, cudaDataType bt, cudaDataType ct, int compute) {
    if (!valid(h)) {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    auto op_ok = [](int op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; };
    if (!op_ok(transa) || !op_ok(transb) || m < 0 || n < 0 || k < 0 || alpha == nullptr || beta == nullptr) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    // Leading dimensions as cuBLAS checks them: at least the stored row count, and at least 1.
    if (lda < std::max(1, transa == CUBLAS_OP_N ? m : k) || ldb < std::max(1, transb == CUBLAS_OP_N ? k : n)
        || ldc < std::max(1, m)) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!supported_types(at, bt, ct, compute)) {
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

// Opaque to callers; the real cublasHandle_t is a pointer to an incomplete struct.
typedef Handle* cublasHandle_t;

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
    if (handle == nullptr) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    Handle* h = new Handle();
    std::lock_guard<std::mutex> lock(mu);
    handles.insert(h);
    *handle = h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    std::lock_guard<std::mutex> lock(mu);
    if (handles.erase(handle) == 0) {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int* version) {
    if (!valid(handle)) {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    if (version == nullptr) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    *version = kVersion;
    return CUBLAS_STATUS_SUCCESS;
}

// Work is synchronous, so the stream only needs remembering.
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, void* stream) {
    std::lock_guard<std::mutex> lock(mu);
    if (handles.count(handle) == 0) {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

// JCublas2 reads the math mode before every GemmEx to migrate legacy compute types.
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, int* mode) {
    std::lock_guard<std::mutex> lock(mu);
    if (handles.count(handle) == 0) {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    if (mode == nullptr) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    *mode = handle->math_mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, int mode) {
    std::lock_guard<std::mutex> lock(mu);
    if (handles.count(handle) == 0) {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    if ((mode & CUBLAS_MATH_MODE_MASK) > CUBLAS_MATH_LAST
        || (mode & ~(CUBLAS_MATH_MODE_MASK | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)) != 0) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    handle->math_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, int transa, int transb, int m, int n, int k,
                                          const void* alpha, const void* A, cudaDataType Atype, int lda,
                                          long long strideA, const void* B, cudaDataType Btype, int ldb,
                                          long long strideB, const void* beta, void* C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batchCount, int computeType, int algo) {
    (void) algo;  // every algorithm computes the same function
    cublasStatus_t st = check_gemm(handle, transa, transb, m, n, k, alpha, beta, lda, ldb, ldc, Atype, Btype, Ctype,
                                   computeType);
    if (st != CUBLAS_STATUS_SUCCESS) {
        return st;
    }
    if (batchCount < 0) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0 || batchCount == 0) {
        return CUBLAS_STATUS_SUCCESS;
    }
    // Pointer mode is always host: alpha and beta are fp32 host scalars for every 32F compute type.
    Gemm g{transa != CUBLAS_OP_N, transb != CUBLAS_OP_N, m, n, k, *static_cast<const float*>(alpha),
           *static_cast<const float*>(beta), A, Atype, lda, B, Btype, ldb, C, Ctype, ldc};
    auto element_bytes = [](cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; };
    for (int i = 0; i < batchCount; i++) {
        Gemm gi = g;
        gi.a = static_cast<const char*>(A) + static_cast<long long>(i) * strideA * element_bytes(Atype);
        gi.b = static_cast<const char*>(B) + static_cast<long long>(i) * strideB * element_bytes(Btype);
        gi.c = static_cast<char*>(C) + static_cast<long long>(i) * strideC * element_bytes(Ctype);
        run(gi);
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, int transa, int transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType Atype, int lda, const void* B, cudaDataType Btype, int ldb,
                            const void* beta, void* C, cudaDataType Ctype, int ldc, int computeType, int algo) {
    return cublasGemmStridedBatchedEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0, beta,
                                      C, Ctype, ldc, 0, 1, computeType, algo);
}

}  // extern "C"
