package io.headroute.cuda.blas;

import io.headroute.cuda.CudaDevice;
import io.headroute.cuda.CudaException;
import io.headroute.cuda.CudaStream;
import io.headroute.cuda.DevicePointers;
import io.headroute.tensor.DType;
import jcuda.Pointer;
import jcuda.cudaDataType;
import jcuda.jcublas.JCublas2;
import jcuda.jcublas.cublasComputeType;
import jcuda.jcublas.cublasGemmAlgo;
import jcuda.jcublas.cublasHandle;
import jcuda.jcublas.cublasOperation;
import jcuda.jcublas.cublasStatus;
import jcuda.runtime.cudaStream_t;

/**
 * One cuBLAS handle for one device, bound to the caller's stream on every call. GEMMs in fp32, fp16
 * and bf16, always with fp32 accumulation. Matrices are column-major in cuBLAS's sense; the callers
 * translate their row-major views. Before the first handle the process is prepared by
 * {@link CublasLoader} (native cuBLAS 12, or the shim to cuBLAS 13). Closed once.
 */
public final class Cublas implements AutoCloseable {
    private final CudaDevice device;
    private final cublasHandle handle = new cublasHandle();
    private final CublasLoader.Resolution source;
    private boolean closed;

    private Cublas(CudaDevice device, CublasLoader.Resolution source) {
        this.device = device;
        this.source = source;
        device.makeCurrent();
        JCublas2.setExceptionsEnabled(false);
        check(JCublas2.cublasCreate(handle), "cublasCreate");
    }

    /**
     * A handle on {@code device}; throws {@link UnsupportedOperationException} naming the reason when no
     * cuBLAS can be loaded (the GEMM paths are then unavailable here, the rest of the GPU engine is not).
     *
     * @param device the device whose primary context the handle lives in; not closed with the handle
     * @return the handle, owned by the caller
     * @throws io.headroute.cuda.CudaException when cublasCreate fails
     */
    public static Cublas create(CudaDevice device) {
        CublasLoader.Resolution r = CublasLoader.resolve();
        if (r.source() == CublasLoader.Source.ABSENT) {
            throw new UnsupportedOperationException("cuBLAS is unavailable, so the GEMM paths (materialized attention) "
                    + "cannot run: " + r.detail());
        }
        return new Cublas(device, r);
    }

    /** {@return where this cuBLAS came from (native 12 or the shim to 13), with the library's path} */
    public CublasLoader.Resolution source() {
        return source;
    }

    /** {@return cuBLAS's version number, e.g. 130001} */
    public int version() {
        int[] v = new int[1];
        check(JCublas2.cublasGetVersion(handle(), v), "cublasGetVersion");
        return v[0];
    }

    private static int cudaType(DType t) {
        return switch (t) {
            case F32 -> cudaDataType.CUDA_R_32F;
            case F16 -> cudaDataType.CUDA_R_16F;
            case BF16 -> cudaDataType.CUDA_R_16BF;
            default -> throw new IllegalArgumentException("cuBLAS GEMM needs f32, f16 or bf16, got " + t.cliName());
        };
    }

    /**
     * C[i] = alpha · op(A[i]) · op(B[i]) + beta · C[i] for i &lt; batch (column-major, m × n result,
     * k inner), A and B of type {@code ab}, C of type {@code c}, fp32 accumulation. Addresses are raw
     * device addresses; strides are in elements. Enqueued on {@code stream}; not waited for.
     *
     * @param stream  the stream the GEMMs run on
     * @param transA  whether A is transposed
     * @param transB  whether B is transposed
     * @param m       rows of op(A) and C
     * @param n       columns of op(B) and C
     * @param k       columns of op(A), rows of op(B)
     * @param alpha   the product's factor
     * @param a       device address of A[0]
     * @param lda     A's leading dimension, in elements
     * @param strideA elements from A[i] to A[i + 1]
     * @param b       device address of B[0]
     * @param ldb     B's leading dimension, in elements
     * @param strideB elements from B[i] to B[i + 1]
     * @param beta    C's factor (0: C is only written)
     * @param c       device address of C[0]
     * @param ldc     C's leading dimension, in elements
     * @param strideC elements from C[i] to C[i + 1]
     * @param batch   the number of products
     * @param ab      the dtype of A and B: f32, f16 or bf16
     * @param cType   the dtype of C: f32, f16 or bf16
     * @throws io.headroute.cuda.CudaException when cuBLAS refuses or fails
     */
    public void gemmStridedBatched(CudaStream stream, boolean transA, boolean transB, int m, int n, int k, float alpha,
            long a, int lda, long strideA, long b, int ldb, long strideB, float beta, long c, int ldc, long strideC,
            int batch, DType ab, DType cType) {
        bind(stream);
        // The _new entry points take a cublasComputeType; JCublas2's plain GemmEx/GemmStridedBatchedEx expect a
        // legacy cudaDataType there and answer CUBLAS_COMPUTE_32F with NOT_SUPPORTED without calling cuBLAS.
        int rc = JCublas2.cublasGemmStridedBatchedEx_new(handle(), op(transA), op(transB), m, n, k, Pointer.to(new float[] {alpha}),
                DevicePointers.of(a), cudaType(ab), lda, strideA, DevicePointers.of(b), cudaType(ab), ldb, strideB,
                Pointer.to(new float[] {beta}), DevicePointers.of(c), cudaType(cType), ldc, strideC, batch,
                cublasComputeType.CUBLAS_COMPUTE_32F, cublasGemmAlgo.CUBLAS_GEMM_DEFAULT);
        check(rc, "cublasGemmStridedBatchedEx(" + (transA ? "T" : "N") + (transB ? "T" : "N") + ", m=" + m + ", n=" + n
                + ", k=" + k + ", batch=" + batch + ", " + ab.cliName() + "->" + cType.cliName() + ")");
    }

    /**
     * C = alpha · op(A) · op(B) + beta · C (column-major), fp32 accumulation: the projections' GEMM. Enqueued on
     * {@code stream}; not waited for.
     *
     * @param stream the stream the GEMM runs on
     * @param transA whether A is transposed
     * @param transB whether B is transposed
     * @param m      rows of op(A) and C
     * @param n      columns of op(B) and C
     * @param k      columns of op(A), rows of op(B)
     * @param alpha  the product's factor
     * @param a      device address of A
     * @param lda    A's leading dimension, in elements
     * @param b      device address of B
     * @param ldb    B's leading dimension, in elements
     * @param beta   C's factor (0: C is only written)
     * @param c      device address of C
     * @param ldc    C's leading dimension, in elements
     * @param ab     the dtype of A and B: f32, f16 or bf16
     * @param cType  the dtype of C: f32, f16 or bf16
     * @throws io.headroute.cuda.CudaException when cuBLAS refuses or fails
     */
    public void gemm(CudaStream stream, boolean transA, boolean transB, int m, int n, int k, float alpha, long a, int lda,
            long b, int ldb, float beta, long c, int ldc, DType ab, DType cType) {
        bind(stream);
        int rc = JCublas2.cublasGemmEx_new(handle(), op(transA), op(transB), m, n, k, Pointer.to(new float[] {alpha}),
                DevicePointers.of(a), cudaType(ab), lda, DevicePointers.of(b), cudaType(ab), ldb, Pointer.to(new float[] {beta}),
                DevicePointers.of(c), cudaType(cType), ldc, cublasComputeType.CUBLAS_COMPUTE_32F,
                cublasGemmAlgo.CUBLAS_GEMM_DEFAULT);
        check(rc, "cublasGemmEx(" + (transA ? "T" : "N") + (transB ? "T" : "N") + ", m=" + m + ", n=" + n + ", k=" + k
                + ", " + ab.cliName() + "->" + cType.cliName() + ")");
    }

    private static int op(boolean trans) {
        return trans ? cublasOperation.CUBLAS_OP_T : cublasOperation.CUBLAS_OP_N;
    }

    private void bind(CudaStream stream) {
        device.makeCurrent();
        check(JCublas2.cublasSetStream(handle(), new cudaStream_t(stream.handle())), "cublasSetStream");
    }

    private cublasHandle handle() {
        if (closed) {
            throw new IllegalStateException("cuBLAS handle on " + device.describe() + " is closed");
        }
        return handle;
    }

    private void check(int status, String op) {
        if (status != cublasStatus.CUBLAS_STATUS_SUCCESS) {
            throw new CudaException(op + " on " + device.describe() + " failed: " + cublasStatus.stringFor(status) + " ("
                    + status + "); cuBLAS from " + source.source() + " (" + source.detail() + ")");
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        device.makeCurrent();
        check(JCublas2.cublasDestroy(handle), "cublasDestroy");
    }
}
