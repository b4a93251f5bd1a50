/*
 * A tiny stand-in for libcublas.so.13, used only by the shim's tests: a handful of functions
 * with the real cuBLAS signatures and behaviour that a test can recognise. Everything else
 * the shim exports is deliberately absent, so calling it must end in the shim's abort.
 */
#include <stdint.h>

typedef int cublasStatus_t;
typedef void *cublasHandle_t;
typedef void *cudaStream_t;

#define STATUS_SUCCESS 0
#define STATUS_NOT_INITIALIZED 1
#define STANDIN_VERSION 130042

/* The handle value the stand-in hands out; calls with any other handle fail, which proves
 * the handle made the round trip through JCublas2 intact. */
#define STANDIN_HANDLE ((cublasHandle_t) (uintptr_t) 0x13c0b1a5u)

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
    if (handle == 0) {
        return STATUS_NOT_INITIALIZED;
    }
    *handle = STANDIN_HANDLE;
    return STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    return handle == STANDIN_HANDLE ? STATUS_SUCCESS : STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int *version) {
    if (handle != STANDIN_HANDLE || version == 0) {
        return STATUS_NOT_INITIALIZED;
    }
    *version = STANDIN_VERSION;
    return STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
    (void) stream;
    return handle == STANDIN_HANDLE ? STATUS_SUCCESS : STATUS_NOT_INITIALIZED;
}
