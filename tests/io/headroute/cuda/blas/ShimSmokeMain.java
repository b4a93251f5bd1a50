package io.headroute.cuda.blas;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import jcuda.Pointer;
import jcuda.jcublas.JCublas2;
import jcuda.jcublas.cublasHandle;
import jcuda.jcublas.cublasOperation;

/**
 * Run in its own JVM by {@link CublasShimTest}: makes JCublas2 reach a libcublas.so.13 stand-in
 * through the shim.
 *
 * <pre>
 * ShimSmokeMain &lt;dir with stand-in libcublas.so.13&gt; &lt;shim libcublas.so.12&gt; [version|sgemm]
 * ShimSmokeMain --shim-only &lt;shim libcublas.so.12&gt;
 * </pre>
 *
 * <p>{@code version} (the default) prints {@code create=0 version=130042 destroy=0}. {@code sgemm}
 * calls cublasSgemm_v2, which the stand-in lacks, so the shim aborts the process. {@code --shim-only}
 * loads the shim without any libcublas.so.13 and calls cublasCreate_v2, which must abort with the
 * dlopen failure.
 */
public final class ShimSmokeMain {
    private ShimSmokeMain() {
    }

    /** Entry point; exit status 2 for bad arguments or an unexpected resolution. */
    public static void main(String[] args) {
        if (args.length == 2 && args[0].equals("--shim-only")) {
            System.load(Path.of(args[1]).toAbsolutePath().toString());
            JCublas2.setExceptionsEnabled(false);
            cublasHandle handle = new cublasHandle();
            int create = JCublas2.cublasCreate(handle);
            System.out.println("create=" + create + " (the shim should have aborted)");
            System.exit(1);
        }
        if (args.length < 2 || args.length > 3) {
            System.err.println("usage: ShimSmokeMain <stand-in dir> <shim path> [version|sgemm]"
                    + " | --shim-only <shim path>");
            System.exit(2);
        }
        Path standinDir = Path.of(args[0]).toAbsolutePath();
        Path shim = Path.of(args[1]).toAbsolutePath();
        String mode = args.length == 3 ? args[2] : "version";
        if (!shim.getFileName().toString().equals(CublasLoader.CUBLAS12) || !Files.isRegularFile(shim)) {
            System.err.println("the shim must be an existing file named " + CublasLoader.CUBLAS12 + ": " + shim);
            System.exit(2);
        }

        CublasLoader.Config config = new CublasLoader.Config(List.of(), List.of(), Optional.of(standinDir),
                Optional.of(shim.getParent()), List.of(), Optional.empty());
        CublasLoader.Resolution resolution = new CublasLoader(config, p -> System.load(p.toString())).load();
        if (resolution.source() != CublasLoader.Source.SHIM_TO_13) {
            System.err.println("unexpected cuBLAS resolution: " + resolution);
            System.exit(2);
        }

        JCublas2.setExceptionsEnabled(false);
        cublasHandle handle = new cublasHandle();
        int create = JCublas2.cublasCreate(handle);
        if (mode.equals("sgemm")) {
            Pointer one = Pointer.to(new float[] {1f});
            Pointer zero = Pointer.to(new float[] {0f});
            int sgemm = JCublas2.cublasSgemm(handle, cublasOperation.CUBLAS_OP_N, cublasOperation.CUBLAS_OP_N,
                    1, 1, 1, one, new Pointer(), 1, new Pointer(), 1, zero, new Pointer(), 1);
            System.out.println("create=" + create + " sgemm=" + sgemm + " (the shim should have aborted)");
            System.exit(1);
        }
        int[] version = new int[1];
        int getVersion = JCublas2.cublasGetVersion(handle, version);
        int destroy = JCublas2.cublasDestroy(handle);
        if (getVersion != 0) {
            System.err.println("cublasGetVersion returned " + getVersion);
        }
        System.out.println("create=" + create + " version=" + version[0] + " destroy=" + destroy);
    }
}
