package io.headroute.engine.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.headroute.SystemProperty;
import io.headroute.engine.AttentionShape;
import io.headroute.engine.ShapeException;
import io.headroute.pattern.Pattern;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The Java side of the kernels' contract, checked against the CUDA sources: parameter struct layouts,
 * kernel names and shared-memory sizes. Runs without a GPU.
 */
class KernelContractTest {
    private static String source(String file) throws IOException {
        return Files.readString(Path.of("cuda-kernels", file));
    }

    /**
     * A kernel file with the project headers it includes, each once, after it: where {@link #defines} looks for
     * the macros that stamp kernels out (HR_FLASH_MMA_KERNELS lives in flash_tile_mma.cuh).
     */
    static String withHeaders(String file) throws IOException {
        StringBuilder text = new StringBuilder();
        java.util.Set<String> seen = new java.util.HashSet<>();
        java.util.ArrayDeque<String> todo = new java.util.ArrayDeque<>(List.of(file));
        while (!todo.isEmpty()) {
            String f = todo.poll();
            if (!seen.add(f) || !Files.exists(Path.of("cuda-kernels", f))) {
                continue;
            }
            String src = source(f);
            text.append(src).append('\n');
            Matcher inc = java.util.regex.Pattern.compile("(?m)^#include \"([\\w.]+)\"").matcher(src);
            while (inc.find()) {
                todo.add(inc.group(1));
            }
        }
        return text.toString();
    }

    /** The number after {@code what} and {@code op} in the source, e.g. "sizeof(AttnParams) == 200". */
    private static int number(String text, String what, String op) {
        Matcher m = java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(what) + "\\s*" + op + "\\s*(\\d+)")
                .matcher(text);
        assertTrue(m.find(), "no '" + what + " " + op + " N' in the CUDA source");
        return Integer.parseInt(m.group(1));
    }

    /** A value a static_assert pins. */
    private static int asserted(String text, String what) {
        return number(text, what, "==");
    }

    /** An enumerator's value. */
    private static int enumValue(String text, String name) {
        return number(text, name, "=");
    }

    @Test
    void attnParamsLayoutMatchesTheCudaStruct() throws IOException {
        String h = source("attention_params.cuh");
        assertEquals(AttentionParams.SIZE, asserted(h, "sizeof(AttnParams)"));
        assertEquals(AttentionParams.OFFSET_STRIDES, asserted(h, "offsetof(AttnParams, q_batch_stride)"));
        assertEquals(AttentionParams.OFFSET_SIZES, asserted(h, "offsetof(AttnParams, batch)"));
        assertEquals(AttentionParams.OFFSET_SCALE, asserted(h, "offsetof(AttnParams, scale)"));
        assertEquals(AttentionParams.OFFSET_SPARSE, asserted(h, "offsetof(AttnParams, kv_offsets)"));
        assertEquals(AttentionParams.OFFSET_ROWS, asserted(h, "offsetof(AttnParams, q_rows)"));
        assertEquals(AttentionParams.OFFSET_TILES_TOTAL, asserted(h, "offsetof(AttnParams, tiles_total)"));
        assertEquals(AttentionParams.OFFSET_LAYOUT_HEADS, asserted(h, "offsetof(AttnParams, layout_heads)"));
    }

    @Test
    void gateWorkParamsLayoutMatchesTheCudaStruct() throws IOException {
        String cu = source("gate_work.cu");
        assertEquals(GateWork.PARAMS_SIZE, asserted(cu, "sizeof(GateWorkParams)"));
        assertEquals(GateWork.OFFSET_SIZES, asserted(cu, "offsetof(GateWorkParams, batch)"));
        assertEquals(GateWork.MODE_TILES, enumValue(cu, "HR_WORK_TILES"));
        assertEquals(GateWork.MODE_ROWS, enumValue(cu, "HR_WORK_ROWS"));
        byte[] b = GateWork.encode(0x10, 0x20, 0x30, 0x40, 0x50, 2, 77, 5, 64, GateWork.MODE_ROWS);
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(GateWork.PARAMS_SIZE, b.length);
        assertEquals(0x50, bb.getLong(32));
        int[] expect = {2, 77, 5, 64, GateWork.MODE_ROWS};
        for (int i = 0; i < expect.length; i++) {
            assertEquals(expect[i], bb.getInt(GateWork.OFFSET_SIZES + 4 * i), "int field " + i);
        }
        for (String k : new String[] {"hr_gate_tile_flags", "hr_gate_compact_rows", "hr_gate_work_list"}) {
            assertTrue(defines(cu, k), k + " is not defined in gate_work.cu");
        }
    }

    @Test
    void maskKindsMatchTheKernelsEnum() throws IOException {
        String h = source("attention_params.cuh");
        assertEquals(0, enumValue(h, "HR_MASK_NONE"));
        assertEquals(1, enumValue(h, "HR_MASK_RULE"));
        assertEquals(2, enumValue(h, "HR_MASK_BITS"));
    }

    /**
     * Whether the CUDA source defines {@code kernel}: written out, or stamped out by a macro whose body
     * pastes a prefix onto one of its parameters ({@code hr_flash_fwd_##SUFFIX(}) and which is invoked
     * with the matching argument.
     */
    static boolean defines(String cu, String kernel) {
        if (cu.contains(" " + kernel + "(")) {
            return true;
        }
        Matcher def = java.util.regex.Pattern.compile("#define (\\w+)\\(([^)]*)\\)").matcher(cu);
        while (def.find()) {
            String macro = def.group(1);
            List<String> params = new ArrayList<>();
            for (String x : def.group(2).split(",")) {
                params.add(x.trim());
            }
            // A name pasted from pieces (hr_flash_fwd_##PREFIX##SUFFIX): each piece a literal or a parameter.
            Matcher paste = java.util.regex.Pattern.compile("(\\w+(?:##\\w+)+)\\(").matcher(cu.substring(def.end()));
            while (paste.find()) {
                String[] pieces = paste.group(1).split("##");
                Matcher call = java.util.regex.Pattern.compile("(?m)^" + macro + "\\(([^)]*)\\)").matcher(cu);
                while (call.find()) {
                    String[] args = call.group(1).split(",");
                    if (args.length != params.size()) {
                        continue;
                    }
                    StringBuilder name = new StringBuilder();
                    for (String piece : pieces) {
                        int at = params.indexOf(piece);
                        name.append(at < 0 ? piece : args[at].trim());
                    }
                    if (name.toString().equals(kernel)) {
                        return true;
                    }
                }
            }
        }
        return false;
    }

    @Test
    void attnParamsEncodeEveryFieldAtItsOffset() {
        byte[] b = AttentionParams.encode(new AttentionParams.Pointers(0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0, 0x7000),
                new AttentionParams.Sparse(0x8000, 0x9000, 0xA000, 0xB000, 8), new AttentionParams.Rows(0xC000, 0xD000),
                AttentionParams.Strides.contiguous(8, 2, 77, 300, 64), 3, 8, 2, 77, 300, 64, true, 11, 0.125f);
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(AttentionParams.SIZE, b.length);
        assertEquals(0x1000, bb.getLong(0));
        assertEquals(0x4000, bb.getLong(24));
        assertEquals(0, bb.getLong(40), "no gate");
        assertEquals(0x7000, bb.getLong(48));
        long[] sparseAndRows = {0x8000, 0x9000, 0xA000, 0xB000, 0xC000, 0xD000};
        for (int i = 0; i < sparseAndRows.length; i++) {
            assertEquals(sparseAndRows[i], bb.getLong(AttentionParams.OFFSET_SPARSE + 8 * i), "pointer " + (7 + i));
        }
        assertEquals(AttentionParams.OFFSET_ROWS, AttentionParams.OFFSET_SPARSE + 32);
        assertEquals(0, bb.getLong(AttentionParams.OFFSET_TILES_TOTAL), "the host-given num_tiles counts");
        assertEquals(AttentionParams.OFFSET_TILES_TOTAL + 8, AttentionParams.OFFSET_STRIDES, "the last pointer");
        assertEquals(8, bb.getInt(AttentionParams.OFFSET_LAYOUT_HEADS), "layout heads");
        assertEquals(AttentionParams.SIZE, AttentionParams.OFFSET_LAYOUT_HEADS + 8, "layout_heads is the last field");
        assertEquals(0, bb.getInt(AttentionParams.OFFSET_LAYOUT_HEADS + 4), "tail padding");
        // A device-built list: its length at a device int, the host's num_tiles the maximal grid.
        byte[] dw = AttentionParams.encode(new AttentionParams.Pointers(0x1000, 0x2000, 0x3000, 0x4000, 0, 0x6000, 0x7000),
                AttentionParams.Sparse.NONE, new AttentionParams.Rows(0xC000, 0xD000), 0xE000,
                AttentionParams.Strides.contiguous(8, 2, 77, 300, 64), 3, 8, 2, 77, 300, 64, true, 48, 0.125f);
        ByteBuffer dwb = ByteBuffer.wrap(dw).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(0x7000, dwb.getLong(48), "tiles");
        assertEquals(0xC000, dwb.getLong(AttentionParams.OFFSET_ROWS), "q_rows");
        assertEquals(0xD000, dwb.getLong(AttentionParams.OFFSET_ROWS + 8), "q_counts");
        assertEquals(0xE000, dwb.getLong(AttentionParams.OFFSET_TILES_TOTAL), "tiles_total");
        assertEquals(8L * 77 * 64, dwb.getLong(AttentionParams.OFFSET_STRIDES), "strides follow tiles_total");
        assertEquals(48, dwb.getInt(AttentionParams.OFFSET_SIZES + 7 * 4), "num_tiles");
        assertEquals(0.125f, dwb.getFloat(AttentionParams.OFFSET_SCALE));
        int s = AttentionParams.OFFSET_STRIDES;
        assertEquals(8L * 77 * 64, bb.getLong(s), "q batch stride");
        assertEquals(77L * 64, bb.getLong(s + 8), "q head stride");
        assertEquals(64, bb.getLong(s + 16), "q row stride");
        assertEquals(2L * 300 * 64, bb.getLong(s + 24), "k batch stride");
        assertEquals(300L * 64, bb.getLong(s + 32), "k head stride");
        assertEquals(77L * 64, bb.getLong(s + 9 * 8 + 8), "o head stride");
        int z = AttentionParams.OFFSET_SIZES;
        int[] expect = {3, 8, 2, 77, 300, 64, 1, 11};
        for (int i = 0; i < expect.length; i++) {
            assertEquals(expect[i], bb.getInt(z + 4 * i), "int field " + i);
        }
        assertEquals(0.125f, bb.getFloat(AttentionParams.OFFSET_SCALE));
        assertEquals(0.125f / (float) Math.log(2), bb.getFloat(AttentionParams.OFFSET_SCALE + 4), 1e-7f, "scale · log2 e");
    }

    @Test
    void softmaxParamsLayoutMatchesTheCudaStruct() throws IOException {
        assertEquals(SoftmaxParams.SIZE, asserted(source("softmax_rows.cu"), "sizeof(SoftmaxParams)"));
        byte[] b = SoftmaxParams.encode(0x10, 0x18, 0x20, 0x30, 4, 77, 300, Patterns.parse("longformer:5:3").withCausal(), 616);
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        long[] pointers = {0x10, 0x18, 0x20, 0x30}; // scores, probs, lse, gate: the struct's order
        for (int i = 0; i < pointers.length; i++) {
            assertEquals(pointers[i], bb.getLong(8 * i), "pointer " + i);
        }
        int[] expect = {4, 77, 300, SoftmaxParams.LONGFORMER, 5, 3, 1, 616};
        for (int i = 0; i < expect.length; i++) {
            assertEquals(expect[i], bb.getInt(32 + 4 * i), "int field " + i);
        }
        // The struct's field order in the source: the Java encoding above follows it.
        String cu = source("softmax_rows.cu");
        int at = cu.indexOf("struct SoftmaxParams {");
        String body = cu.substring(at, cu.indexOf("};", at));
        assertTrue(body.indexOf("void* scores;") < body.indexOf("void* probs;")
                && body.indexOf("void* probs;") < body.indexOf("float* lse;")
                && body.indexOf("float* lse;") < body.indexOf("const float* gate;"), body);
    }

    @Test
    void softmaxPatternKindsMatchTheKernelsEnum() throws IOException {
        String cu = source("softmax_rows.cu");
        assertEquals(SoftmaxParams.DENSE, enumValue(cu, "HR_PATTERN_DENSE"));
        assertEquals(SoftmaxParams.CAUSAL, enumValue(cu, "HR_PATTERN_CAUSAL"));
        assertEquals(SoftmaxParams.WINDOW, enumValue(cu, "HR_PATTERN_WINDOW"));
        assertEquals(SoftmaxParams.LONGFORMER, enumValue(cu, "HR_PATTERN_LONGFORMER"));
        assertThrows(UnsupportedOperationException.class, () -> SoftmaxParams.rule(Patterns.parse("bigbird:64:1:1:1:1")));
    }

    @ParameterizedTest(name = "{0} D={1}")
    @CsvSource({"f32, 16, hr_flash_fwd_f32_d64, 32", "f32, 64, hr_flash_fwd_f32_d64, 32", "f32, 100, hr_flash_fwd_f32_d128, 32",
            "f32, 256, hr_flash_fwd_f32_d256, 32", "bf16, 64, hr_flash_fwd_bf16_d64, 64", "f16, 128, hr_flash_fwd_f16_d128, 64",
            "bf16, 32, hr_flash_fwd_bf16_d32, 64", "f16, 96, hr_flash_fwd_f16_d96, 64"})
    void flashPlanPicksAKernelThatExists(String dtype, int d, String kernel, int rows) throws IOException {
        DType dt = DType.parse(dtype);
        FlashPlan p = FlashPlan.of(new AttentionShape(2, 16, 4, 1000, 1000, d), dt, new Pattern.Causal());
        assertEquals(kernel, p.kernel());
        assertEquals(rows, p.blockRows());
        assertEquals((1000 + rows - 1) / rows, p.gridX());
        assertEquals(16, p.gridY());
        assertEquals(2, p.gridZ());
        String cu = withHeaders(p.module() + ".cu");
        assertTrue(defines(cu, kernel), kernel + " is not defined in " + p.module() + ".cu");
        FlashPlan sp = FlashPlan.sparse(new AttentionShape(2, 16, 4, 1000, 1000, d), dt);
        assertEquals(kernel.replace("hr_flash_fwd_", "hr_flash_sparse_"), sp.kernel());
        assertEquals(p.sharedBytes(), sp.sharedBytes(), "the sparse kernel shares the dense kernel's tiles");
        assertTrue(defines(cu, sp.kernel()), sp.kernel() + " is not defined in " + p.module() + ".cu");
        assertTrue(!defines(cu, kernel + "x"), "the definition check is not fooled by a longer name");
        // The kernel that merges compacted rows' key lists on the device: same tiles, its state after them.
        FlashPlan mp = FlashPlan.sparseMerge(new AttentionShape(2, 16, 4, 1000, 1000, d), dt);
        assertEquals(kernel.replace("hr_flash_fwd_", "hr_flash_sparse_merge_"), mp.kernel());
        assertTrue(defines(cu, mp.kernel()), mp.kernel() + " is not defined in " + p.module() + ".cu");
        assertTrue(mp.isSparse() && mp.mergesOnDevice() && !sp.mergesOnDevice());
        int keyTiles = (1000 + sp.tileKeys() - 1) / sp.tileKeys();
        assertEquals(FlashPlan.mergeOffset(sp.sharedBytes()) + FlashPlan.mergeSharedBytes(sp.blockRows(), keyTiles), mp.sharedBytes());
        assertEquals(sp.blockRows(), mp.blockRows());
        assertEquals(sp.gridX(), mp.gridX());
    }

    @Test
    void theMergeStateMatchesTheCudaFormula() throws IOException {
        String h = source("attention_params.cuh");
        assertEquals(FlashPlan.mergeSharedBytes(64, 512), asserted(h, "hr_merge_smem_bytes(64, 512)"));
        assertEquals(FlashPlan.mergeSharedBytes(32, 33), asserted(h, "hr_merge_smem_bytes(32, 33)"));
        assertEquals(FlashPlan.mergeOffset(69633), asserted(h, "hr_merge_offset(69633)"));
        assertEquals(FlashPlan.mergeOffset(69632), 69632);
        // A bitmap over S's key tiles: refused in one line where it would pass 227 KB (S of about 10^8).
        AttentionShape huge = new AttentionShape(1, 1, 1, 64, 100_000_000, 128);
        UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                () -> FlashPlan.sparseMerge(huge, DType.BF16));
        assertTrue(e.getMessage().contains("route per block"), e.getMessage());
        assertFalse(FlashPlan.sparseMergeFits(huge, DType.BF16), "run() then keeps the tile list");
        AttentionShape long32k = new AttentionShape(1, 16, 16, 32768, 32768, 128);
        assertTrue(FlashPlan.sparseMergeFits(long32k, DType.BF16));
        assertTrue(FlashPlan.sparseMerge(long32k, DType.BF16).sharedBytes() <= FlashPlan.MAX_SHARED_BYTES);
    }

    @Test
    void theW2TilingPlansItsOwnKernelWhereOneExists() throws IOException {
        String cu = withHeaders("flash_fwd_mma.cu");
        for (DType dt : new DType[] {DType.F16, DType.BF16}) {
            for (int d : new int[] {64, 96, 128}) {
                AttentionShape sh = new AttentionShape(1, 8, 2, 300, 300, d);
                FlashPlan w2 = FlashPlan.of(sh, dt, new Pattern.Causal(), FlashPlan.Tiling.W2);
                FlashPlan w4 = FlashPlan.of(sh, dt, new Pattern.Causal(), FlashPlan.Tiling.W4);
                assertEquals("hr_flash_fwd_w2_" + dt.cliName() + "_d" + d, w2.kernel());
                assertTrue(defines(cu, w2.kernel()), w2.kernel() + " is not defined in flash_fwd_mma.cu");
                assertEquals(64, w2.threads(), "2 warps");
                assertEquals(128, w4.threads(), "4 warps");
                // Qi and one key and one value buffer (W2) against two of each (W4), rows padded by 8 elements.
                assertEquals((64 + 2 * 64) * (d + 8) * 2, w2.sharedBytes());
                assertEquals((64 + 4 * 64) * (d + 8) * 2, w4.sharedBytes());
                assertEquals(w4.blockRows(), w2.blockRows(), "the same 64-row tiles: work lists and layouts are shared");
                assertEquals(w4.gridX(), w2.gridX());
                assertEquals(FlashPlan.of(sh, dt, new Pattern.Causal()), w4, "W4 is the default");
            }
        }
        // Kernels with one tiling ignore the choice: fp32, the block-sparse kernels, D = 32.
        AttentionShape sh = new AttentionShape(1, 2, 2, 100, 100, 64);
        AttentionShape d32 = new AttentionShape(1, 2, 2, 100, 100, 32);
        assertEquals("hr_flash_fwd_bf16_d32", FlashPlan.of(d32, DType.BF16, new Pattern.Dense(), FlashPlan.Tiling.W2).kernel());
        assertEquals(FlashPlan.of(sh, DType.F32, new Pattern.Dense()), FlashPlan.of(sh, DType.F32, new Pattern.Dense(),
                FlashPlan.Tiling.W2));
        assertEquals("hr_flash_sparse_bf16_d64", FlashPlan.sparse(sh, DType.BF16).kernel());
        assertTrue(FlashPlan.Tiling.W2.appliesTo(DType.BF16, 128, false) && FlashPlan.Tiling.W2.appliesTo(DType.F16, 64, false));
        assertTrue(!FlashPlan.Tiling.W2.appliesTo(DType.BF16, 32, false) && !FlashPlan.Tiling.W2.appliesTo(DType.F32, 64, false)
                && !FlashPlan.Tiling.W2.appliesTo(DType.BF16, 64, true));
        assertTrue(FlashPlan.Tiling.W4.appliesTo(DType.F32, 256, true), "every kernel has W4");
        assertEquals(FlashPlan.Tiling.W2, FlashPlan.Tiling.parse("w2"));
        assertThrows(IllegalArgumentException.class, () -> FlashPlan.Tiling.parse("w8"));
    }

    /** -Dheadroute.tiling picks the tiling engines start in (and the static plans assume); a bad name is one line. */
    @Test
    void theTilingPropertyPicksTheStartingTiling() {
        try (SystemProperty tiling = SystemProperty.set(CudaAttentionEngine.TILING_PROPERTY, null)) {
            assertEquals(FlashPlan.Tiling.W4, CudaAttentionEngine.startTiling());
            tiling.put("w4x2");
            assertEquals(FlashPlan.Tiling.W4X2, CudaAttentionEngine.startTiling());
            AttentionShape sh = new AttentionShape(2, 8, 2, 300, 300, 64);
            assertEquals(2L * 8 * 3, CudaAttentionEngine.gridTiles(sh, DType.BF16, io.headroute.engine.Algorithm.FLASH,
                    new Pattern.Causal()), "the static plans follow the starting tiling");
            tiling.put("w9");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, CudaAttentionEngine::startTiling);
            assertEquals("-Dheadroute.tiling=w9: unknown tiling 'w9' (expected w4, w2, w4x2, wg, wgp, wgx2 or wgpx2)", e.getMessage());
        }
    }

    @Test
    void theW4x2TilingPlans128RowBlocks() throws IOException {
        String cu = withHeaders("flash_fwd_mma.cu");
        for (DType dt : new DType[] {DType.F16, DType.BF16}) {
            for (int d : new int[] {64, 128}) {
                AttentionShape sh = new AttentionShape(2, 8, 2, 300, 300, d);
                FlashPlan p = FlashPlan.of(sh, dt, new Pattern.Dense(), FlashPlan.Tiling.W4X2);
                assertEquals("hr_flash_fwd_w4x2_" + dt.cliName() + "_d" + d, p.kernel());
                assertTrue(defines(cu, p.kernel()), p.kernel() + " is not defined in flash_fwd_mma.cu");
                assertEquals(128, p.threads(), "4 warps");
                assertEquals(128, p.blockRows());
                assertEquals(64, p.tileKeys(), "key tiles stay 64 keys");
                assertEquals(3, p.gridX(), "ceil(300 / 128) query tiles");
                assertEquals(16, p.blocks() / p.gridX());
                // Qi of 128 rows, one key and one value buffer of 64 rows, rows padded by 8 elements.
                assertEquals((128 + 2 * 64) * (d + 8) * 2, p.sharedBytes());
            }
            // D = 96 (and 32) have no W4X2 kernel: W4 runs.
            AttentionShape d96 = new AttentionShape(1, 2, 2, 100, 100, 96);
            assertEquals(FlashPlan.of(d96, dt, new Pattern.Dense()), FlashPlan.of(d96, dt, new Pattern.Dense(), FlashPlan.Tiling.W4X2));
            assertTrue(!FlashPlan.Tiling.W4X2.appliesTo(dt, 96, false) && !FlashPlan.Tiling.W4X2.appliesTo(dt, 32, false)
                    && !FlashPlan.Tiling.W4X2.appliesTo(dt, 128, true));
        }
        assertTrue(!FlashPlan.Tiling.W4X2.appliesTo(DType.F32, 64, false));
        assertEquals(64, FlashPlan.Tiling.W2.blockRows());
        assertEquals(FlashPlan.Tiling.W4X2, FlashPlan.Tiling.parse("w4x2"));
        assertEquals("hr_flash_sparse_bf16_d128", FlashPlan.sparse(new AttentionShape(1, 2, 2, 100, 100, 128), DType.BF16).kernel());
    }

    /**
     * WG and WGP: W4's 64-row blocks with wgmma, their kernels in a module of their own (flash_fwd_wgmma.cu, built
     * for sm_90a alone); key/value tiles unpadded (16-byte columns of 64 keys), two buffers each (WGP: three), Qi
     * padded as in W4.
     */
    @Test
    void theWgTilingPlansTheWgmmaModule() throws IOException {
        String cu = withHeaders("flash_fwd_wgmma.cu");
        for (FlashPlan.Tiling tiling : new FlashPlan.Tiling[] {FlashPlan.Tiling.WG, FlashPlan.Tiling.WGP}) {
            String prefix = tiling.cliName() + "_";
            for (DType dt : new DType[] {DType.F16, DType.BF16}) {
                for (int d : new int[] {64, 128}) {
                    AttentionShape sh = new AttentionShape(2, 8, 2, 300, 300, d);
                    FlashPlan p = FlashPlan.of(sh, dt, new Pattern.Causal(), tiling);
                    assertEquals("hr_flash_fwd_" + prefix + dt.cliName() + "_d" + d, p.kernel());
                    assertEquals(FlashPlan.WGMMA_MODULE, p.module());
                    assertTrue(defines(cu, p.kernel()), p.kernel() + " is not defined in flash_fwd_wgmma.cu");
                    assertEquals(128, p.threads(), "one warpgroup");
                    assertEquals(64, p.blockRows());
                    assertEquals(5, p.gridX(), "ceil(300 / 64) query tiles");
                    int stages = tiling == FlashPlan.Tiling.WGP ? 3 : 2; // the pipelined loop triple-buffers
                    assertEquals((64 * (d + 8) + 2 * stages * 64 * d) * 2, p.sharedBytes(),
                            "Qi padded, " + stages + " K and " + stages + " V tiles unpadded");
                    // The block-sparse kernels too, plain and merging, in the same module and block shape.
                    FlashPlan sp = FlashPlan.sparse(sh, dt, tiling);
                    assertEquals("hr_flash_sparse_" + prefix + dt.cliName() + "_d" + d, sp.kernel());
                    assertTrue(defines(cu, sp.kernel()), sp.kernel() + " is not defined in flash_fwd_wgmma.cu");
                    assertEquals(List.of(FlashPlan.WGMMA_MODULE, 128, 64, p.sharedBytes(), 5), List.of(sp.module(), sp.threads(),
                            sp.blockRows(), sp.sharedBytes(), sp.gridX()));
                    FlashPlan mg = sp.merging(sh);
                    assertEquals("hr_flash_sparse_merge_" + prefix + dt.cliName() + "_d" + d, mg.kernel());
                    assertTrue(defines(cu, mg.kernel()) && mg.mergesOnDevice(), mg.kernel());
                    assertEquals(FlashPlan.mergeOffset(sp.sharedBytes()) + FlashPlan.mergeSharedBytes(64, 5), mg.sharedBytes());
                }
                AttentionShape d96 = new AttentionShape(1, 2, 2, 100, 100, 96);
                assertEquals(FlashPlan.of(d96, dt, new Pattern.Dense()), FlashPlan.of(d96, dt, new Pattern.Dense(), tiling));
                assertEquals(FlashPlan.sparse(d96, dt), FlashPlan.sparse(d96, dt, tiling), "W4 runs where WG has no kernel");
                assertTrue(!tiling.appliesTo(dt, 96, false) && tiling.appliesTo(dt, 128, true));
                assertTrue(!FlashPlan.Tiling.W2.appliesTo(dt, 128, true) && !FlashPlan.Tiling.W4X2.appliesTo(dt, 128, true),
                        "W2 and W4X2 have no sparse kernels");
            }
            assertTrue(tiling.wgmma() && !tiling.appliesTo(DType.F32, 64, false));
        }
        assertTrue(!FlashPlan.Tiling.W4.wgmma() && !FlashPlan.Tiling.W4X2.wgmma());
        assertEquals("flash_fwd_mma", FlashPlan.of(new AttentionShape(1, 2, 2, 100, 100, 96), DType.BF16, new Pattern.Dense(),
                FlashPlan.Tiling.WG).module(), "W4 runs where WG has no kernel");
        assertEquals(FlashPlan.Tiling.WG, FlashPlan.Tiling.parse("wg"));
        assertEquals(FlashPlan.Tiling.WGP, FlashPlan.Tiling.parse("wgp"));
        // The Makefile builds this module for sm_90a only, and the kernels' shared memory is the planned one.
        String make = Files.readString(Path.of("Makefile"));
        assertTrue(make.contains("$(KERNEL_DIR)/flash_fwd_wgmma.fatbin: GENCODE := -gencode arch=compute_90a,code=sm_90a"), make);
        String tile = source("flash_tile_mma.cuh");
        assertTrue(tile.contains("using WG = Tiling<D, 4, 1, 2, true, true>;"), "WG: 4 warps x 16 rows, two stages, Qi in registers");
        assertTrue(tile.contains("using WGP = Tiling<D, 4, 1, 3, true, true, true>;"), "WGP: WG pipelined, three stages");
        assertTrue(tile.contains("static constexpr int kKVElems = Wgmma ? kBc * D : kBc * kStride;"), "unpadded wgmma tiles");
    }

    /**
     * WGX2 and WGPX2: WG and WGP with two warpgroups on 128-row blocks (256 threads), dense/causal, block-sparse and
     * merging kernels, in the wgmma module; Qi of 128 padded rows, two K and two V tiles unpadded as in WG (WGPX2:
     * three of each); the merge
     * state for 128 rows after them, and the merging kernel asks for one block per SM (two would cap its registers
     * at 128).
     */
    @Test
    void theTwoWarpgroupTilingsPlan128RowBlocks() throws IOException {
        String cu = withHeaders("flash_fwd_wgmma.cu");
        for (FlashPlan.Tiling tiling : new FlashPlan.Tiling[] {FlashPlan.Tiling.WGX2, FlashPlan.Tiling.WGPX2}) {
            for (DType dt : new DType[] {DType.F16, DType.BF16}) {
                for (int d : new int[] {64, 128}) {
                    AttentionShape sh = new AttentionShape(2, 8, 2, 300, 300, d);
                    FlashPlan p = FlashPlan.of(sh, dt, new Pattern.Causal(), tiling);
                    assertEquals("hr_flash_fwd_" + tiling.cliName() + "_" + dt.cliName() + "_d" + d, p.kernel());
                    assertEquals(FlashPlan.WGMMA_MODULE, p.module());
                    assertTrue(defines(cu, p.kernel()), p.kernel() + " is not defined in flash_fwd_wgmma.cu");
                    assertEquals(256, p.threads(), "two warpgroups");
                    assertEquals(128, p.blockRows());
                    assertEquals(64, p.tileKeys(), "key tiles stay 64 keys");
                    assertEquals(3, p.gridX(), "ceil(300 / 128) query tiles");
                    int stages = tiling == FlashPlan.Tiling.WGPX2 ? 3 : 2; // the pipelined loop triple-buffers
                    assertEquals((128 * (d + 8) + 2 * stages * 64 * d) * 2, p.sharedBytes(),
                            "Qi padded, " + stages + " K and " + stages + " V tiles unpadded");
                    // The block-sparse kernels too, plain and merging, in the same module and block shape.
                    FlashPlan sp = FlashPlan.sparse(sh, dt, tiling);
                    assertEquals("hr_flash_sparse_" + tiling.cliName() + "_" + dt.cliName() + "_d" + d, sp.kernel());
                    assertTrue(defines(cu, sp.kernel()), sp.kernel() + " is not defined in flash_fwd_wgmma.cu");
                    assertEquals(List.of(FlashPlan.WGMMA_MODULE, 256, 128, p.sharedBytes(), 3), List.of(sp.module(), sp.threads(),
                            sp.blockRows(), sp.sharedBytes(), sp.gridX()));
                    FlashPlan mg = sp.merging(sh);
                    assertEquals("hr_flash_sparse_merge_" + tiling.cliName() + "_" + dt.cliName() + "_d" + d, mg.kernel());
                    assertTrue(defines(cu, mg.kernel()) && mg.mergesOnDevice(), mg.kernel());
                    assertEquals(FlashPlan.mergeOffset(sp.sharedBytes()) + FlashPlan.mergeSharedBytes(128, 5), mg.sharedBytes());
                    assertEquals(tiling, tiling.resolve(dt, d, true));
                    assertEquals(tiling, tiling.resolve(dt, d, false));
                    assertTrue(tiling.appliesTo(dt, d, true) && tiling.appliesTo(dt, d, false));
                }
                // D = 96: no wgmma kernel at all, W4 runs (fp32 likewise).
                AttentionShape d96 = new AttentionShape(1, 2, 2, 100, 100, 96);
                assertEquals(FlashPlan.of(d96, dt, new Pattern.Dense()), FlashPlan.of(d96, dt, new Pattern.Dense(), tiling));
                assertEquals(FlashPlan.sparse(d96, dt), FlashPlan.sparse(d96, dt, tiling));
                assertEquals(FlashPlan.Tiling.W4, tiling.resolve(dt, 96, true));
            }
            assertTrue(tiling.wgmma() && !tiling.appliesTo(DType.F32, 64, false));
            assertEquals(FlashPlan.Tiling.W4, tiling.resolve(DType.F32, 64, false));
            assertEquals(128, FlashPlan.blockRows(DType.BF16, 128, false, tiling), "work lists count 128-row tiles");
            assertEquals(128, FlashPlan.blockRows(DType.BF16, 128, true, tiling), "the sparse kernels' too");
            assertEquals(64, FlashPlan.blockRows(DType.BF16, 96, true, tiling), "W4's where the tiling has no kernel");
            assertEquals(32, FlashPlan.blockRows(DType.F32, 64, false, tiling), "fp32: its own 32-row blocks");
            assertEquals(tiling, FlashPlan.Tiling.parse(tiling.cliName()));
        }
        assertEquals("wgx2", FlashPlan.Tiling.WGX2.cliName());
        assertEquals("wgpx2", FlashPlan.Tiling.WGPX2.cliName());
        String tile = source("flash_tile_mma.cuh");
        assertTrue(tile.contains("using WGX2 = Tiling<D, 8, 1, 2, true, true>;"), "WGX2: 8 warps x 16 rows, two stages");
        assertTrue(tile.contains("using WGPX2 = Tiling<D, 8, 1, 3, true, true, true>;"), "WGPX2: WGX2 pipelined, three stages");
        assertTrue(tile.contains("__launch_bounds__(hr_mma::TL<D>::kThreads, hr_mma::TL<D>::kThreads == 256 ? 1 : 2)"),
                "the merging kernels of 256 threads ask for one block per SM");
    }

    @Test
    void flashSharedMemoryMatchesTheKernelsLayout() {
        // flash_fwd_mma.cu: (Br·(D+8) + 4·Bc·(D+8)) 2-byte elements, Br = Bc = 64.
        FlashPlan p = FlashPlan.of(new AttentionShape(1, 1, 1, 64, 64, 128), DType.BF16, new Pattern.Dense());
        assertEquals((64 * 136 + 4 * 64 * 136) * 2, p.sharedBytes());
        // flash_fwd_f32.cu: float q[32][DMAX], k[32][DMAX+1], v[32][DMAX+1], p[32][32].
        FlashPlan f = FlashPlan.of(new AttentionShape(1, 1, 1, 64, 64, 64), DType.F32, new Pattern.Dense());
        assertEquals(4 * (32 * 64 + 2 * 32 * 65 + 32 * 32), f.sharedBytes());
    }

    @Test
    void flashPlanRefusesWhatTheKernelsCannotDo() {
        AttentionShape d256 = new AttentionShape(1, 1, 1, 64, 64, 256);
        UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                () -> FlashPlan.of(d256, DType.BF16, new Pattern.Dense()));
        assertTrue(e.getMessage().contains("use --dtype f32"), e.getMessage());
        assertThrows(UnsupportedOperationException.class,
                () -> FlashPlan.of(new AttentionShape(1, 1, 1, 64, 64, 320), DType.F32, new Pattern.Dense()));
        assertThrows(UnsupportedOperationException.class,
                () -> FlashPlan.of(new AttentionShape(1, 1, 1, 64, 64, 48), DType.F16, new Pattern.Dense()));
        UnsupportedOperationException w = assertThrows(UnsupportedOperationException.class,
                () -> FlashPlan.of(new AttentionShape(1, 1, 1, 64, 64, 64), DType.F32, Patterns.parse("window:8")));
        assertTrue(w.getMessage().contains("block-sparse"), w.getMessage());
        assertTrue(FlashPlan.causal(new Pattern.Dense().withCausal()));
        assertTrue(FlashPlan.causal(new Pattern.Causal()));
        assertTrue(!FlashPlan.causal(new Pattern.Dense()));
    }

    @Test
    void materializedPlanCountsTheScoreMatrix() {
        // 16 heads × 32768² scores × 2 bytes: the figure the README quotes for bf16.
        MaterializedPlan p = MaterializedPlan.of(new AttentionShape(1, 16, 16, 32768, 32768, 128), DType.BF16, false);
        assertEquals(16L * 32768 * 32768 * 2, p.scoreBytes());
        assertEquals(DType.BF16, p.scoreDType());
        long io = 4L * 16 * 32768 * 128 * 2 + 4L * 16 * 32768;
        assertEquals(io, p.ioBytes());
        // fp32 scores: S in fp32 (4 bytes) and P in bf16 (2 bytes) beside it.
        MaterializedPlan f = MaterializedPlan.of(new AttentionShape(1, 16, 16, 32768, 32768, 128), DType.BF16, false, true);
        assertEquals(DType.F32, f.scoreDType());
        assertEquals(16L * 32768 * 32768 * (4 + 2), f.scoreBytes());
        assertTrue(f.separateProbs(DType.BF16));
        assertEquals(io, f.ioBytes());
        // fp32 inputs: the option changes nothing.
        MaterializedPlan g = MaterializedPlan.of(new AttentionShape(2, 3, 1, 50, 70, 16), DType.F32, true, true);
        assertEquals(MaterializedPlan.of(new AttentionShape(2, 3, 1, 50, 70, 16), DType.F32, true), g);
        assertTrue(!g.separateProbs(DType.F32));
    }

    /** Caller memory the kernels cannot address is refused before any launch (on a GPU: a sticky misaligned-address error). */
    @Test
    void deviceCallsNeedAlignedMemory() {
        AttentionShape sh = new AttentionShape(1, 2, 2, 100, 100, 64);
        AttentionParams.Strides st = AttentionParams.Strides.contiguous(2, 2, 100, 100, 64);
        java.util.function.Function<long[], CudaAttentionEngine.DeviceCall> call = a -> new CudaAttentionEngine.DeviceCall(a[0], a[1],
                a[2], a[3], a[4], a[5], 1 << 20, st, sh, new Pattern.Dense(), 0.125f, DType.BF16, io.headroute.engine.Algorithm.FLASH, 64);
        long base = 1L << 32;
        CudaAttentionEngine.checkAlignment(call.apply(new long[] {base, base + 512, base + 1024, base + 1536, base + 2048, base + 4096}));
        for (int i = 0; i < 6; i++) {
            long[] a = {base, base + 512, base + 1024, base + 1536, base + 2048, base + 4096};
            a[i] += i == 3 || i == 4 ? 2 : 8;
            String what = new String[] {"q", "k", "v", "o", "gate", "workspace"}[i];
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CudaAttentionEngine.checkAlignment(
                    call.apply(a)), what);
            assertTrue(e.getMessage().contains(i < 4 ? what + " at 0x" : "must be 4-byte and the workspace"), e.getMessage());
        }
        // A row stride of 36 bf16 elements (72 bytes) breaks 16-byte copies; in f32 (read as single floats) D = 3 is fine.
        AttentionParams.Strides odd = new AttentionParams.Strides(st.q(), new long[] {7200, 3600, 36}, st.v(), st.o());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CudaAttentionEngine.checkAlignment(
                new CudaAttentionEngine.DeviceCall(base, base, base, base, 0, 0, 0, odd, sh, new Pattern.Dense(), 0.125f, DType.BF16,
                        io.headroute.engine.Algorithm.FLASH, 64)));
        assertEquals("k's row stride of 36 elements (72 bytes) is not a multiple of 16 bytes (" + sh + ")", e.getMessage());
        AttentionShape d3 = new AttentionShape(1, 2, 2, 100, 100, 3);
        CudaAttentionEngine.checkAlignment(new CudaAttentionEngine.DeviceCall(base + 4, base + 8, base + 12, base + 4, 0, 0, 0,
                AttentionParams.Strides.contiguous(2, 2, 100, 100, 3), d3, new Pattern.Dense(), 0.5f, DType.F32,
                io.headroute.engine.Algorithm.FLASH, 64));
    }

    /** DeviceCall.of takes shape, dtype and contiguous strides from device tensors and refuses ones that do not fit. */
    @Test
    void deviceCallsFromTensorsAreChecked() {
        long base = 1L << 32;
        java.util.function.BiFunction<DType, long[], io.headroute.cuda.DeviceTensor> t = (dt, shape) ->
                io.headroute.cuda.DeviceTensor.borrow(null, base, dt, shape);
        long[] q = {2, 6, 77, 64};
        long[] kv = {2, 3, 150, 64};
        CudaAttentionEngine.DeviceCall c = CudaAttentionEngine.DeviceCall.of(t.apply(DType.BF16, q), t.apply(DType.BF16, kv),
                t.apply(DType.BF16, kv), t.apply(DType.BF16, q), t.apply(DType.F32, new long[] {2, 77, 6}),
                t.apply(DType.U8, new long[] {4096}), new Pattern.Dense(), 0.125f, io.headroute.engine.Algorithm.FLASH, 64, 1);
        assertEquals(new AttentionShape(2, 6, 3, 77, 150, 64), c.shape());
        assertEquals(DType.BF16, c.dtype());
        assertEquals(4096, c.workspaceBytes());
        assertEquals(1, c.gateBlock());
        assertArrayEquals(new long[] {6 * 77 * 64, 77 * 64, 64}, c.strides().q());
        assertArrayEquals(new long[] {3 * 150 * 64, 150 * 64, 64}, c.strides().k());
        CudaAttentionEngine.DeviceCall none = CudaAttentionEngine.DeviceCall.of(t.apply(DType.F32, q), t.apply(DType.F32, kv),
                t.apply(DType.F32, kv), t.apply(DType.F32, q), null, null, new Pattern.Dense(), 0.125f,
                io.headroute.engine.Algorithm.FLASH, 64, 0);
        assertEquals(0, none.gate());
        assertEquals(0, none.workspace());
        String[][] bad = {
            {"k", "q and o (B, H, L, D), k and v (B, Hkv, S, D) do not fit: q (2, 6, 77, 64), k (2, 3, 150, 32)"},
            {"v", "q and o (B, H, L, D), k and v (B, Hkv, S, D) do not fit: q (2, 6, 77, 64), k (2, 3, 150, 64), v (2, 3, 149, 64)"},
            {"o", "q and o (B, H, L, D), k and v (B, Hkv, S, D) do not fit"},
            {"batch", "q and o (B, H, L, D), k and v (B, Hkv, S, D) do not fit: q (2, 6, 77, 64), k (1, 3, 150, 64)"},
            {"dtype", "q, k, v and o must have one dtype"},
            {"gate", "the gate must be (B, L, H) = (2, 77, 6) float32, got DeviceTensor[f32 [2, 6, 77], borrowed]"},
            {"gate16", "the gate must be (B, L, H) = (2, 77, 6) float32, got DeviceTensor[bf16 [2, 77, 6], borrowed]"},
            {"3d", "o must be a 4-d device tensor, got DeviceTensor[bf16 [2, 6, 77], borrowed]"},
        };
        for (String[] b : bad) {
            io.headroute.cuda.DeviceTensor dq = t.apply(DType.BF16, q);
            io.headroute.cuda.DeviceTensor dk = t.apply(DType.BF16, b[0].equals("k") ? new long[] {2, 3, 150, 32}
                    : b[0].equals("batch") ? new long[] {1, 3, 150, 64} : kv);
            io.headroute.cuda.DeviceTensor dv = t.apply(b[0].equals("dtype") ? DType.F16 : DType.BF16,
                    b[0].equals("v") ? new long[] {2, 3, 149, 64} : b[0].equals("batch") ? new long[] {1, 3, 150, 64} : kv);
            io.headroute.cuda.DeviceTensor dout = t.apply(DType.BF16, b[0].equals("o") ? new long[] {2, 6, 76, 64}
                    : b[0].equals("3d") ? new long[] {2, 6, 77} : q);
            io.headroute.cuda.DeviceTensor g = b[0].equals("gate") ? t.apply(DType.F32, new long[] {2, 6, 77})
                    : b[0].equals("gate16") ? t.apply(DType.BF16, new long[] {2, 77, 6}) : null;
            ShapeException e = assertThrows(ShapeException.class, () -> CudaAttentionEngine.DeviceCall.of(dq, dk, dv, dout, g, null,
                    new Pattern.Dense(), 0.125f, io.headroute.engine.Algorithm.FLASH, 64, 0), b[0]);
            assertTrue(e.getMessage().startsWith(b[1]), b[0] + ": " + e.getMessage());
        }
    }
}
