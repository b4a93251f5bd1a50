package io.headroute.engine.cuda;

import io.headroute.engine.AttentionShape;
import io.headroute.pattern.Pattern;
import io.headroute.tensor.DType;

/**
 * Host-side planning of one flash forward launch: which kernel of which module, its block shape,
 * dynamic shared memory and grid, or a clear refusal. Pure Java, so it is tested on the CPU.
 *
 * @param module      kernel family (fatbin name)
 * @param kernel      function name in the module
 * @param threads     threads per block
 * @param blockRows   query rows per block (B_r)
 * @param sharedBytes dynamic shared memory per block
 * @param gridX       query tiles = ceil(L / B_r)
 * @param gridY       heads
 * @param gridZ       batch
 */
public record FlashPlan(String module, String kernel, int threads, int blockRows, int sharedBytes, int gridX, int gridY,
        int gridZ) {
    /** The module of the wgmma tilings' kernels (WG, WGP, WGX2, WGPX2: cuda-kernels/flash_fwd_wgmma.cu, sm_90a only). */
    public static final String WGMMA_MODULE = "flash_fwd_wgmma";

    /** Head dims of the tensor-core kernel. */
    static final int[] MMA_HEAD_DIMS = {32, 64, 96, 128};
    /** Largest head dim of each fp32 kernel variant. */
    static final int[] F32_HEAD_DIMS = {64, 128, 256};

    /**
     * How the tensor-core kernels spread a block's query rows over warps (cuda-kernels/flash_tile_mma.cuh):
     * {@code W4}, 64 rows as 4 warps × 16 with double-buffered key/value tiles (every kernel has it); {@code W2},
     * 64 rows as 2 warps × 32 with single-buffered tiles, half W4's shared-memory reads of K and V per flop (the
     * f16/bf16 dense/causal kernels for D = 64, 96, 128); {@code W4X2}, 128 rows as 4 warps × 32, each warp as
     * in W2 and each key/value tile copied once for 128 rows, half the 64-row tilings' L2-to-SM traffic per flop
     * (the f16/bf16 dense/causal kernels for D = 64 and 128); {@code WG}, W4's 64 rows with both products as
     * Hopper's warpgroup {@code wgmma.mma_async} (the f16/bf16 dense/causal and block-sparse kernels for D = 64
     * and 128, in their own module {@value #WGMMA_MODULE}, sm_90a machine code only: compute capability 9.0
     * devices); {@code WGP}, WG pipelined: each tile's P·V runs on the tensor cores while the next tile's softmax
     * runs (the same kernels and module); {@code WGX2} and {@code WGPX2}, WG and WGP with two warpgroups on 128-row
     * blocks, each key/value tile copied once for 128 rows as in W4X2 (the same kernels as WG and WGP, module
     * {@value #WGMMA_MODULE}). A kernel without the tiling asked for (fp32, D = 32, the block-sparse kernels in W2 and
     * W4X2) runs in W4, which every kernel has ({@link #resolve}).
     */
    public enum Tiling {
        // Query rows, threads and key/value buffers per block, and wgmma: flash_tile_mma.cuh's Tiling.
        /** 64 rows as 4 warps × 16, double-buffered key/value tiles; every kernel has it, and the default. */
        W4(64, 128, 2, false),
        /** 64 rows as 2 warps × 32, single-buffered; f16/bf16 dense/causal, D = 64, 96, 128. */
        W2(64, 64, 1, false),
        /** 128 rows as 4 warps × 32, single-buffered; f16/bf16 dense/causal, D = 64, 128. */
        W4X2(128, 128, 1, false),
        /** W4's rows on Hopper warpgroup MMA (sm_90a), double-buffered; dense/causal and sparse, D = 64, 128. */
        WG(64, 128, 2, true),
        /** WG pipelined (P·V overlapping the next tile's softmax), triple-buffered. */
        WGP(64, 128, 3, true),
        /** WG with two warpgroups on 128-row blocks. */
        WGX2(128, 256, 2, true),
        /** WGP with two warpgroups on 128-row blocks. */
        WGPX2(128, 256, 3, true);

        private final int rows;
        private final int threads;
        private final int kvStages;
        private final boolean wgmma;

        Tiling(int rows, int threads, int kvStages, boolean wgmma) {
            this.rows = rows;
            this.threads = threads;
            this.kvStages = kvStages;
            this.wgmma = wgmma;
        }

        /** {@return the query rows per block of the kernels in this tiling (the tile of work lists and compacted rows): 64 or 128} */
        public int blockRows() {
            return rows;
        }

        /** {@return the threads per block of this tiling's kernels: 32 per warp of flash_tile_mma.cuh's Tiling} */
        public int threads() {
            return threads;
        }

        /**
         * Key/value tile buffers per block: double-buffered (W4, WG, WGX2), triple-buffered (the pipelined WGP and WGPX2)
         * or single (W2, W4X2).
         */
        int kvStages() {
            return kvStages;
        }

        /** {@return the lower-case name the command line and {@link #parse} use: "w4", "w2", "w4x2", "wg", …} */
        public String cliName() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }

        /**
         * Whether the kernel planned for these has this tiling: W4 every one; W2 the f16/bf16 dense/causal
         * kernels for D = 64, 96 and 128; W4X2 those for D = 64 and 128; WG, WGP, WGX2 and WGPX2 the f16/bf16
         * dense/causal and block-sparse (plain and merging) kernels for D = 64 and 128. (The wgmma tilings run only
         * on compute capability 9.0: {@code CudaAttentionEngine.tilingUnavailable}.)
         *
         * @param dtype   the compute dtype
         * @param headDim D
         * @param sparse  whether the block-sparse kernel runs
         * @return whether that kernel has this tiling
         */
        public boolean appliesTo(DType dtype, int headDim, boolean sparse) {
            if (this == W4) {
                return true;
            }
            boolean mma = dtype == DType.F16 || dtype == DType.BF16;
            return switch (this) {
                case W2 -> mma && !sparse && headDim >= 64 && headDim <= 128;
                case W4X2 -> mma && !sparse && (headDim == 64 || headDim == 128);
                default -> mma && (headDim == 64 || headDim == 128);
            };
        }

        /**
         * The tiling the kernel planned for these runs in when this one is asked for: this one where the kernel has it,
         * else W4 (which every kernel has).
         *
         * @param dtype   the compute dtype
         * @param headDim D
         * @param sparse  whether the block-sparse kernel runs
         * @return this or W4
         */
        public Tiling resolve(DType dtype, int headDim, boolean sparse) {
            return appliesTo(dtype, headDim, sparse) ? this : W4;
        }

        /** {@return whether this tiling's kernels are the wgmma ones (sm_90a, module {@value #WGMMA_MODULE})} */
        public boolean wgmma() {
            return wgmma;
        }

        /** {@return the kernel module (fatbin) of this tiling's kernels: "flash_fwd_mma" or {@value #WGMMA_MODULE}} */
        public String module() {
            return wgmma() ? WGMMA_MODULE : "flash_fwd_mma";
        }

        /**
         * The tiling named {@code s} (w4, w2, w4x2, wg, wgp, wgx2 or wgpx2).
         *
         * @param s the name, lower case, exactly
         * @return the tiling
         * @throws IllegalArgumentException for any other name
         */
        public static Tiling parse(String s) {
            for (Tiling t : values()) {
                if (t.cliName().equals(s)) {
                    return t;
                }
            }
            throw new IllegalArgumentException("unknown tiling '" + s + "' (expected w4, w2, w4x2, wg, wgp, wgx2 or wgpx2)");
        }
    }

    /**
     * Plans the dense/causal flash kernel for {@code shape} in {@code dtype}, refusing what it cannot compute.
     *
     * @param shape   the sizes
     * @param dtype   f32, f16 or bf16
     * @param pattern the effective pattern: dense or causal (with or without the causal rule on top)
     * @return the plan, in W4
     * @throws UnsupportedOperationException for another pattern, dtype or head dim, or H or B above 65535
     */
    public static FlashPlan of(AttentionShape shape, DType dtype, Pattern pattern) {
        return of(shape, dtype, pattern, Tiling.W4);
    }

    /**
     * {@link #of(AttentionShape, DType, Pattern)} in {@code tiling} where the kernel has it (f16/bf16).
     *
     * @param shape   the sizes
     * @param dtype   f32, f16 or bf16
     * @param pattern the effective pattern: dense or causal
     * @param tiling  the tiling asked for (W4 where the kernel lacks it)
     * @return the plan
     * @throws UnsupportedOperationException as {@link #of(AttentionShape, DType, Pattern)}
     */
    public static FlashPlan of(AttentionShape shape, DType dtype, Pattern pattern, Tiling tiling) {
        if (!flashSupports(pattern)) {
            throw new UnsupportedOperationException("pattern " + pattern.spec() + " needs the block-sparse GPU kernel "
                    + "(--algo sparse); the dense flash kernel takes dense and causal");
        }
        return plan(shape, dtype, false, tiling);
    }

    /**
     * Plans the block-sparse kernel (any pattern) for {@code shape} in {@code dtype}.
     *
     * @param shape the sizes
     * @param dtype f32, f16 or bf16
     * @return the plan, in W4
     * @throws UnsupportedOperationException for another dtype or head dim, or H or B above 65535
     */
    public static FlashPlan sparse(AttentionShape shape, DType dtype) {
        return sparse(shape, dtype, Tiling.W4);
    }

    /**
     * {@link #sparse(AttentionShape, DType)} in {@code tiling} where the kernel has it (WG, WGP, WGX2, WGPX2: f16/bf16,
     * D = 64, 128).
     *
     * @param shape  the sizes
     * @param dtype  f32, f16 or bf16
     * @param tiling the tiling asked for (W4 where the kernel lacks it)
     * @return the plan
     * @throws UnsupportedOperationException as {@link #sparse(AttentionShape, DType)}
     */
    public static FlashPlan sparse(AttentionShape shape, DType dtype, Tiling tiling) {
        return plan(shape, dtype, true, tiling);
    }

    /**
     * Plans the block-sparse kernel that merges key lists on the device (hr_flash_sparse_merge_*): compacted
     * query rows (q_rows), each block visiting the key tiles some of its rows may use in their original
     * tiles' lists (the tiles {@link CompactedSparseTiles} lists). Its
     * shared memory adds {@link #mergeSharedBytes} to the sparse kernel's (a bitmap over S's key tiles:
     * refused where that passes sm_90's 227 KB).
     *
     * @param shape the sizes
     * @param dtype f32, f16 or bf16
     * @return the plan, in W4
     * @throws UnsupportedOperationException as {@link #sparse(AttentionShape, DType)}, or when the shared memory does
     *                                       not fit
     */
    public static FlashPlan sparseMerge(AttentionShape shape, DType dtype) {
        return sparse(shape, dtype).merging(shape);
    }

    /**
     * The merging counterpart of this block-sparse plan (the same tiling, rows and layout; {@link #sparseMerge}),
     * refused in one line where its shared memory passes the limit.
     *
     * @param shape the sizes (S sets the bitmap's size)
     * @return the merging plan
     * @throws IllegalStateException         when this is not a plain block-sparse plan
     * @throws UnsupportedOperationException when the shared memory would pass 227 KB
     */
    public FlashPlan merging(AttentionShape shape) {
        if (!isSparse() || mergesOnDevice()) {
            throw new IllegalStateException(kernel + " is not a plain block-sparse kernel");
        }
        int shared = mergeShared(this, shape);
        if (shared > MAX_SHARED_BYTES) {
            throw new UnsupportedOperationException("S = " + shape.kvLen() + " keys: the merged sparse kernel would need " + shared
                    + " bytes of shared memory (at most " + MAX_SHARED_BYTES + "); route per block of " + blockRows
                    + " rows instead of per token");
        }
        return new FlashPlan(module, kernel.replace("hr_flash_sparse_", "hr_flash_sparse_merge_"), threads, blockRows, shared, gridX,
                gridY, gridZ);
    }

    /**
     * {@return whether {@link #sparseMerge} plans this call (its shared memory fits)}; refuses what {@link #sparse}
     * refuses.
     *
     * @param shape the sizes
     * @param dtype f32, f16 or bf16
     */
    public static boolean sparseMergeFits(AttentionShape shape, DType dtype) {
        return sparse(shape, dtype).mergeFits(shape);
    }

    /**
     * {@return whether {@link #merging} plans this block-sparse plan's merging counterpart for {@code shape}}
     *
     * @param shape the sizes
     */
    public boolean mergeFits(AttentionShape shape) {
        return mergeShared(this, shape) <= MAX_SHARED_BYTES;
    }

    private static int mergeShared(FlashPlan sparse, AttentionShape shape) {
        int keyTiles = (int) ((shape.kvLen() + (long) sparse.tileKeys() - 1) / sparse.tileKeys());
        return mergeOffset(sparse.sharedBytes) + mergeSharedBytes(sparse.blockRows, keyTiles);
    }

    /** Dynamic shared memory a block may opt into on sm_90 (227 KB; less on sm_86/sm_89, where the driver refuses more). */
    static final int MAX_SHARED_BYTES = 227 * 1024;

    /** Where the merge state starts after a kernel's {@code bytes} of shared memory (attention_params.cuh hr_merge_offset). */
    static int mergeOffset(int bytes) {
        return (bytes + 15) / 16 * 16;
    }

    /**
     * Shared memory of HrMergedKeys (attention_params.cuh hr_merge_smem_bytes): two key tiles' words per row,
     * six ints of cursors per row, a bitmap over the key tiles, two key tiles' votes per 32 rows.
     */
    static int mergeSharedBytes(int blockRows, int keyTiles) {
        return 2 * blockRows * 8 + blockRows * 6 * 4 + (keyTiles + 31) / 32 * 4 + 2 * (blockRows / 32) * 4;
    }

    /** {@return whether this is the block-sparse kernel that merges compacted rows' key lists on the device} */
    public boolean mergesOnDevice() {
        return kernel.startsWith("hr_flash_sparse_merge_");
    }

    private static FlashPlan plan(AttentionShape shape, DType dtype, boolean sparse, Tiling tiling) {
        String family = sparse ? "hr_flash_sparse_" : "hr_flash_fwd_";
        int d = shape.headDim();
        int rows;
        int threads = 128;
        int shared;
        String kernel;
        String module;
        switch (dtype) {
            case F32 -> {
                int dmax = 0;
                for (int c : F32_HEAD_DIMS) {
                    if (d <= c) {
                        dmax = c;
                        break;
                    }
                }
                if (dmax == 0) {
                    throw new UnsupportedOperationException("head dim D = " + d + " exceeds the fp32 flash kernel's 256");
                }
                rows = tileRows(dtype);
                shared = 4 * (32 * dmax + 2 * 32 * (dmax + 1) + 32 * 32);
                kernel = family + "f32_d" + dmax;
                module = "flash_fwd_f32";
            }
            case F16, BF16 -> {
                boolean ok = false;
                for (int c : MMA_HEAD_DIMS) {
                    ok |= c == d;
                }
                if (!ok) {
                    throw new UnsupportedOperationException("head dim D = " + d + " is not supported by the " + dtype.cliName()
                            + " tensor-core kernel (it takes 32, 64, 96 and 128); use --dtype f32 (any D up to 256)");
                }
                // Qi's rows padded by 8 elements, then Kj and Vj in kvStages buffers each (two, three or one):
                // padded rows, or the wgmma tilings' unpadded 16-byte columns.
                Tiling t = tiling.resolve(dtype, d, sparse);
                rows = t.blockRows();
                int kvRow = t.wgmma() ? d : d + 8;
                shared = 2 * (rows * (d + 8) + 2 * t.kvStages() * tileRows(dtype) * kvRow);
                threads = t.threads();
                kernel = family + (t == Tiling.W4 ? "" : t.cliName() + "_") + dtype.cliName() + "_d" + d;
                module = t.module();
            }
            default -> throw new UnsupportedOperationException("flash attention needs f32, f16 or bf16, got " + dtype.cliName());
        }
        if (shape.heads() > 65535 || shape.batch() > 65535) {
            throw new UnsupportedOperationException("H = " + shape.heads() + " and B = " + shape.batch()
                    + " must each be at most 65535 (grid y and z)");
        }
        int tiles = (int) (((long) shape.qLen() + rows - 1) / rows);
        return new FlashPlan(module, kernel, threads, rows, shared, tiles, shape.heads(), shape.batch());
    }

    /**
     * Keys per kernel tile, and query rows of every kernel but the 128-row tilings' (W4X2, WGX2, WGPX2): 32 for the fp32
     * kernels, 64 for the tensor-core ones; the same for every head dim, so a sparse layout's tiles are
     * known without a supported D.
     *
     * @param dtype the compute dtype
     * @return 32 for f32, 64 otherwise
     */
    public static int tileRows(DType dtype) {
        return dtype == DType.F32 ? 32 : 64;
    }

    /**
     * Query rows per block of the kernel planned for these in {@code tiling} (the {@link Tiling#blockRows()} of the
     * tiling it runs in, {@link Tiling#resolve}; {@link #tileRows} in fp32), without checking that a kernel takes the
     * head dim: for work-list sizes planned off the device.
     *
     * @param dtype   the compute dtype
     * @param headDim D
     * @param sparse  whether the block-sparse kernel runs
     * @param tiling  the engine's tiling
     * @return Br: 32, 64 or 128
     */
    public static int blockRows(DType dtype, int headDim, boolean sparse, Tiling tiling) {
        return dtype == DType.F32 ? tileRows(dtype) : tiling.resolve(dtype, headDim, sparse).blockRows();
    }

    /** The flash kernels evaluate dense and causal (with or without --causal on top). */
    static boolean flashSupports(Pattern p) {
        Pattern inner = p instanceof Pattern.CausalOf c ? c.inner() : p;
        return inner instanceof Pattern.Dense || inner instanceof Pattern.Causal;
    }

    /** Whether the kernel must apply the causal rule. */
    static boolean causal(Pattern p) {
        return p instanceof Pattern.Causal || p instanceof Pattern.CausalOf;
    }

    /** {@return the keys per key tile (B_c): 64 on tensor cores, 32 in fp32 (the fp32 kernels' {@link #blockRows()})} */
    public int tileKeys() {
        return module.equals("flash_fwd_f32") ? tileRows(DType.F32) : tileRows(DType.F16);
    }

    /** {@return whether this is a block-sparse kernel (plain or merging)} */
    public boolean isSparse() {
        return kernel.startsWith("hr_flash_sparse_");
    }

    /**
     * Key tiles the dense/causal kernel visits for query rows firstRow … lastRow (ascending positions),
     * exactly as HrDenseKeys computes them.
     *
     * @param firstRow the first query row
     * @param lastRow  the last query row (none when below firstRow)
     * @param qLen     L
     * @param kvLen    S
     * @param causal   whether the causal rule cuts the keys
     * @param tileKeys Bc
     * @return the key tiles from key 0 up to the last row's last allowed key (all of S without causal)
     */
    public static int denseKeyTiles(int firstRow, int lastRow, int qLen, int kvLen, boolean causal, int tileKeys) {
        if (lastRow < firstRow) {
            return 0;
        }
        int end = kvLen;
        if (causal) {
            end = Math.min(end, lastRow + (kvLen - qLen) + 1);
        }
        return (end + tileKeys - 1) / tileKeys;
    }

    /** {@return query tiles × heads × batch: the blocks launched} */
    public long blocks() {
        return (long) gridX * gridY * gridZ;
    }
}
