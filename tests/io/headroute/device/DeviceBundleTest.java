package io.headroute.device;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.headroute.cli.Main;
import io.headroute.engine.Algorithm;
import io.headroute.engine.AttentionRequest;
import io.headroute.engine.cuda.CudaAttentionEngine;
import io.headroute.engine.cuda.FlashPlan;
import io.headroute.engine.cuda.GateWork;
import io.headroute.pattern.Patterns;
import io.headroute.tensor.DType;
import io.headroute.tensor.Npy;
import java.io.File;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The GPU device check's files: scripts/device-check.sh, its Python helper and bench/torch_reference.py
 * are valid and run where they can (no GPU, no torch here), and - when {@code make device-bundle} has
 * been run - build/device/ holds every part, fits the 48 MiB budget, and its own runtime starts
 * headroute.
 */
class DeviceBundleTest {
    private static final long MAX_BUNDLE_BYTES = 48L * 1024 * 1024;
    private static final String CONSOLE_JAR = "junit-platform-console-standalone-1.14.4.jar";

    private static Path project;

    @TempDir
    Path tmp;

    @BeforeAll
    static void findProject() {
        Path p = Path.of("").toAbsolutePath();
        while (p != null && !Files.isRegularFile(p.resolve("scripts/device-check.sh"))) {
            p = p.getParent();
        }
        project = p;
    }

    private static Path bundle() {
        assumeTrue(project != null, "scripts/device-check.sh not found above " + Path.of("").toAbsolutePath());
        Path b = project.resolve("build/device");
        assumeTrue(Files.isDirectory(b), "no build/device here (make device-bundle has not been run)");
        return b;
    }

    @Test
    void scriptsAreValid() throws Exception {
        assumeTrue(project != null, "scripts/device-check.sh not found");
        assumeTrue(onPath("bash"), "bash is not on the PATH");
        for (String script : List.of("scripts/device-check.sh", "scripts/make-device-bundle.sh")) {
            Result r = run(List.of("bash", "-n", script), Map.of(), 30);
            assertEquals(0, r.exit, script + " has a syntax error:\n" + r.output);
        }
        assumeTrue(onPath("python3"), "python3 is not on the PATH");
        // compile() rather than py_compile: no __pycache__ folders in the tree.
        Result r = run(List.of("python3", "-B", "-c",
                "import sys\nfor f in sys.argv[1:]:\n    compile(open(f).read(), f, 'exec')",
                "bench/torch_reference.py", "scripts/device_check.py"), Map.of(), 30);
        assertEquals(0, r.exit, "a Python file does not compile:\n" + r.output);
        Result help = run(List.of("python3", "-B", "bench/torch_reference.py", "--help"), Map.of(), 30);
        assertEquals(0, help.exit, help.output);
        assertTrue(help.output.contains("--quick") && help.output.contains("--json"), help.output);
        Result bad = run(List.of("python3", "-B", "bench/torch_reference.py", "--backends", "NOPE"), Map.of(), 30);
        assertEquals(2, bad.exit, "a bad --backends value must be a usage error:\n" + bad.output);
    }

    /**
     * torch_reference.py's FlexAttention rows, against a stand-in torch (tests/python/test_torch_reference.py):
     * one compile for all densities, each call masked with its own row's window, the constant-window fallback.
     */
    @Test
    void torchReferenceFlexRows() throws Exception {
        pythonTestsPass("tests/python/test_torch_reference.py", 60);
    }

    /**
     * device_check.py's summary on fabricated work folders (tests/python/test_device_check.py): which rows count, the
     * torch comparison, the memory lines, the density and routed tables, the issues' verdict lines.
     */
    @Test
    void deviceCheckSummaryJudgesOnlyWhatWasMeasured() throws Exception {
        pythonTestsPass("tests/python/test_device_check.py", 120);
    }

    /**
     * sass_loop.py's choice of a kernel's main loop on fabricated SASS (tests/python/test_sass_loop.py): the loop holding
     * the tensor-core instructions (HGMMA on sm_90a), not the epilogue's shuffle fallback.
     */
    @Test
    void sassLoopFindsTheKeyLoop() throws Exception {
        pythonTestsPass("tests/python/test_sass_loop.py", 60);
    }

    /** Runs a Python unittest file of the project; it must end "OK". */
    private void pythonTestsPass(String file, int timeoutSeconds) throws Exception {
        assumeTrue(project != null && onPath("python3"), "python3 or the project not found");
        Result r = run(List.of("python3", "-B", file), Map.of(), timeoutSeconds);
        assertEquals(0, r.exit, r.output);
        assertTrue(r.output.contains("OK"), r.output);
    }

    /**
     * The compare step's window reference (make-compare's numpy fallback; torch_reference.py builds the same mask) is
     * headroute's window:W: the CPU engine in f32, flash and block-sparse on 64- and 128-blocks, is within 1e-5 of it,
     * as compare-eval judges it.
     */
    @Test
    void compareWindowReferenceIsHeadroutesWindowPattern() throws Exception {
        assumeTrue(project != null && onPath("python3"), "python3 or the project not found");
        Path dir = tmp.resolve("compare");
        Result make = run(List.of("python3", "-B", "scripts/device_check.py", "make-compare", dir.toString()), Map.of(), 120);
        assumeTrue(make.exit != 3, "no numpy: " + make.output);
        assertEquals(0, make.exit, make.output);
        String meta = Files.readString(dir.resolve("meta.json"));
        assertTrue(meta.contains("\"window\": 150"), meta);
        Files.createDirectories(dir.resolve("out"));
        StringBuilder tsv = new StringBuilder("variant\tbackend\talgo\tdtype\trc\tsecs\tstatus\tfile\n");
        for (String[] c : new String[][] {{"flash", "64"}, {"sparse", "64"}, {"sparse", "128"}}) {
            String name = "window-cpu-" + c[0] + "-bs" + c[1] + "-f32.npy";
            int exit = Main.run(new PrintWriter(Writer.nullWriter()), new PrintWriter(Writer.nullWriter()), "attend",
                    "--q", dir.resolve("q.npy").toString(), "--k", dir.resolve("k.npy").toString(), "--v",
                    dir.resolve("v.npy").toString(), "--backend", "cpu", "--algo", c[0], "--block-size", c[1], "--pattern",
                    "window:150", "--out", dir.resolve("out").resolve(name).toString());
            assertEquals(Main.OK, exit, name);
            tsv.append("window\tcpu\t").append(c[0]).append("-bs").append(c[1]).append("\tf32\t0\t1\tok\t").append(name)
                    .append('\n');
        }
        Files.writeString(dir.resolve("runs.tsv"), tsv);
        Result eval = run(List.of("python3", "-B", "scripts/device_check.py", "compare-eval", dir.toString()), Map.of(), 120);
        assertEquals(0, eval.exit, "every case within 1e-5 of the window reference:\n" + eval.output);
        assertEquals(3, eval.output.strip().split("\n").length, eval.output);
    }

    /**
     * The sanitizer step's gated cases reach the paths they are named for: on its inputs (npy-random, the
     * same shapes and seeds as scripts/device-check.sh) the engine plans a tile list for "sparse" (77 rows)
     * and row compaction, hence the merging sparse kernel, for "sparse-compact" (300 rows) and "gated"; in WGPX2
     * (128-row tiles) "sparse-wgpx2", on sparse-compact's inputs, gets row compaction too.
     */
    @Test
    void sanitizerGatedCasesGetTheirWorkLists() throws Exception {
        assumeTrue(project != null && onPath("python3"), "python3 or the project not found");
        for (Object[] c : new Object[][] {{"sparse", 77, 7, "window:9", DType.BF16, false, FlashPlan.Tiling.W4},
                {"sparse-compact", 300, 8, "window:9", DType.BF16, true, FlashPlan.Tiling.W4},
                {"gated", 77, 7, "dense", DType.F32, true, FlashPlan.Tiling.W4},
                {"sparse-wgpx2", 300, 8, "window:9", DType.BF16, true, FlashPlan.Tiling.WGPX2}}) {
            Path in = tmp.resolve("in-" + c[0]);
            int l = (Integer) c[1];
            Result npy = run(List.of("python3", "-B", "scripts/device_check.py", "npy-random", in.toString(),
                    "--shape", "1,2," + l + ",64", "--seed", String.valueOf(c[2])), Map.of(), 60);
            assertEquals(0, npy.exit, npy.output);
            DType dt = (DType) c[4];
            AttentionRequest req = AttentionRequest.builder(Npy.read(in.resolve("q.npy")), Npy.read(in.resolve("k.npy")),
                    Npy.read(in.resolve("v.npy"))).gate(Npy.read(in.resolve("gate.npy"))).pattern(Patterns.parse((String) c[3]))
                    .causal(true).dtype(dt).algorithm(c[3].equals("dense") ? Algorithm.FLASH : Algorithm.SPARSE).build();
            boolean compact = (Boolean) c[5];
            FlashPlan.Tiling tiling = (FlashPlan.Tiling) c[6];
            // The work list's device bytes tell the two apart: compaction also holds B·H·L row indices.
            assertEquals(GateWork.buildBytes(1, l, 2, FlashPlan.blockRows(dt, 64, !c[3].equals("dense"), tiling), compact),
                    CudaAttentionEngine.gateWorkBytes(req, tiling), c[0] + ": " + (compact ? "row compaction" : "a tile list") + " expected");
        }
    }

    @Test
    void helperWritesTensorsAndReadsJUnitReports() throws Exception {
        assumeTrue(project != null && onPath("python3"), "python3 or the project not found");
        Path in = tmp.resolve("in");
        Result npy = run(List.of("python3", "-B", "scripts/device_check.py", "npy-random", in.toString(),
                "--shape", "1,2,77,64", "--seed", "7"), Map.of(), 60);
        assertEquals(0, npy.exit, npy.output);
        for (String name : List.of("q", "k", "v")) {
            // float32 (1, 2, 77, 64): 128-byte .npy header (version 1.0, 64-byte aligned) + 9856 values.
            Path f = in.resolve(name + ".npy");
            assertEquals(128 + 4L * 2 * 77 * 64, Files.size(f), f.toString());
        }
        // headroute itself reads them: the CPU engine on the sanitizer's tiny inputs.
        Path o = tmp.resolve("o.npy");
        int exit = Main.run(new PrintWriter(Writer.nullWriter()), new PrintWriter(Writer.nullWriter()),
                "attend", "--q", in.resolve("q.npy").toString(), "--k", in.resolve("k.npy").toString(),
                "--v", in.resolve("v.npy").toString(), "--backend", "cpu", "--out", o.toString());
        assertEquals(Main.OK, exit);
        assertTrue(Files.size(o) > 0);

        Path junit = Files.createDirectories(tmp.resolve("junit"));
        Files.writeString(junit.resolve("TEST-junit-jupiter.xml"), "<?xml version=\"1.0\"?>\n"
                + "<testsuite name=\"JUnit Jupiter\" tests=\"3\">"
                + "<testcase name=\"a()\" classname=\"x.GpuTest\"/>"
                + "<testcase name=\"b()\" classname=\"x.GpuTest\"><failure message=\"boom\" type=\"AssertionError\"/></testcase>"
                + "<testcase name=\"c()\" classname=\"x.GpuTest\"><skipped/></testcase></testsuite>\n");
        Result counts = run(List.of("python3", "-B", "scripts/device_check.py", "junit", junit.toString()), Map.of(), 30);
        assertEquals(1, counts.exit, counts.output);
        assertTrue(counts.output.contains("3 tests: 1 passed, 1 failed, 0 errors, 1 skipped"), counts.output);

        // A run cut off before the XML report: the console launcher's flat log, printed as tests finish.
        Path log = tmp.resolve("gpu-tests.log");
        String c = "([engine:junit-jupiter]/[class:x.GpuTest]";
        Files.writeString(log, "Started:     GpuTest " + c + ")\n"
                + "Started:     a() " + c + "/[method:a()])\nFinished:    a() " + c + "/[method:a()])\n"
                + "Started:     b() " + c + "/[method:b()])\nFinished:    b() " + c + "/[method:b()])\n"
                + "             => Exception: org.opentest4j.AssertionFailedError: boom ==> expected: <1> but was: <2>\n"
                + "             \tat x.GpuTest.b(GpuTest.java:9)\n"
                + "Started:     c() " + c + "/[method:c()])\nFinished:    c() " + c + "/[method:c()])\n"
                + "             => Exception: org.opentest4j.TestAbortedException: Assumption failed: no GPU\n"
                + "Started:     p 1 " + c + "/[test-template:p(int)]/[test-template-invocation:#1])\n");
        Result cut = run(List.of("python3", "-B", "scripts/device_check.py", "junit", tmp.resolve("none").toString(), "--log",
                log.toString()), Map.of(), 30);
        assertEquals(1, cut.exit, cut.output);
        assertTrue(cut.output.contains("3 tests: 1 passed, 1 failed, 0 errors, 1 skipped; from the console log (cut off before the XML report); "
                + "still running: x.GpuTest#p 1"), cut.output);
    }

    /**
     * The ncu step's reader on ncu's CSV shapes: the details page (one record per kernel and metric, tool lines
     * between) and the raw page (one column per metric, a units record, one record per kernel); the kernels
     * are named by tiling.
     */
    @Test
    void helperTablesNsightComputeFigures() throws Exception {
        assumeTrue(project != null && onPath("python3"), "python3 or the project not found");
        Path dir = Files.createDirectories(tmp.resolve("ncu"));
        String head = "\"ID\",\"Process ID\",\"Process Name\",\"Host Name\",\"Kernel Name\",\"Context\",\"Stream\","
                + "\"Block Size\",\"Grid Size\",\"Device\",\"CC\",";
        Files.writeString(dir.resolve("sections.csv"), "==PROF== Connected to process 9 (java)\n"
                + head + "\"Section Name\",\"Metric Name\",\"Metric Unit\",\"Metric Value\"\n"
                + "\"0\",\"9\",\"java\",\"h\",\"hr_flash_fwd_bf16_d128\",\"1\",\"7\",\"(128, 1, 1)\",\"(128, 16, 1)\",\"0\",\"9.0\","
                + "\"GPU Speed Of Light Throughput\",\"Duration\",\"ms\",\"4.12\"\n"
                + "==PROF== Profiling \"hr_flash_fwd_w4x2_bf16_d128\": 100%\n"
                + "\"1\",\"9\",\"java\",\"h\",\"hr_flash_fwd_w4x2_bf16_d128\",\"1\",\"7\",\"(128, 1, 1)\",\"(64, 16, 1)\",\"0\",\"9.0\","
                + "\"GPU Speed Of Light Throughput\",\"Duration\",\"ms\",\"2.91\"\n"
                + "\"1\",\"9\",\"java\",\"h\",\"hr_flash_fwd_w4x2_bf16_d128\",\"1\",\"7\",\"(128, 1, 1)\",\"(64, 16, 1)\",\"0\",\"9.0\","
                + "\"Launch Statistics\",\"Registers Per Thread\",\"register/thread\",\"255\"\n");
        Files.writeString(dir.resolve("metrics.csv"), head
                + "\"sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active\"\n"
                + "\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"%\"\n"
                + "\"0\",\"9\",\"java\",\"h\",\"hr_flash_fwd_bf16_d128\",\"1\",\"7\",\"(128, 1, 1)\",\"(128, 16, 1)\",\"0\",\"9.0\",\"45.1\"\n");
        // The wgmma pipe comes from a run of its own (metrics_gmma.csv), here of the WG and WGPX2 kernels alone.
        Files.writeString(dir.resolve("metrics_gmma.csv"), head
                + "\"sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active\"\n"
                + "\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"%\"\n"
                + "\"3\",\"9\",\"java\",\"h\",\"hr_flash_fwd_wg_bf16_d128\",\"1\",\"7\",\"(128, 1, 1)\",\"(128, 16, 1)\",\"0\",\"9.0\",\"71.5\"\n"
                + "\"6\",\"9\",\"java\",\"h\",\"hr_flash_fwd_wgpx2_bf16_d128\",\"1\",\"7\",\"(256, 1, 1)\",\"(64, 16, 1)\",\"0\",\"9.0\",\"80.2\"\n");
        Result r = run(List.of("python3", "-B", "scripts/device_check.py", "ncu-eval", dir.toString()), Map.of(), 30);
        assertEquals(0, r.exit, r.output);
        assertTrue(r.output.startsWith("Duration: w4 4.12 ms, w4x2 2.91 ms"), r.output);
        assertTrue(r.output.matches("(?s).*\nRegisters Per Thread +- +255 +- +-\n.*"), r.output);
        assertTrue(r.output.matches("(?s).*\ntensor pipe active % of peak +45\\.1 +- +- +-\n.*"), r.output);
        assertTrue(r.output.matches("(?s).*\nwgmma pipe active % of peak +- +- +71\\.5 +80\\.2\\s*"), r.output);
        assertTrue(Files.readString(dir.resolve("results.txt")).startsWith("Duration: w4 4.12 ms"));
    }

    /** The bench table names the tiling the configured flash rows ran in, as each bench JSON states it. */
    @Test
    void summaryLabelsTheFlashColumnWithTheEnginesTiling() throws Exception {
        assumeTrue(project != null && onPath("python3"), "python3 or the project not found");
        Path out = tmp.resolve("summary-tiling");
        Path bench = Files.createDirectories(out.resolve("bench"));
        writeRuns(bench, "b1 16 128 4096 0 dense flash");
        Files.writeString(bench.resolve("b1.json"), "{\"config\": {\"flash_tiling\": \"w4x2\"}, \"measurements\": ["
                + "{\"algorithm\": \"flash\", \"status\": \"ok\", \"gflops\": 300000, \"median_ms\": 1.0},"
                + "{\"algorithm\": \"flash\", \"tiling\": \"w2\", \"status\": \"ok\", \"gflops\": 250000, \"median_ms\": 1.2},"
                + "{\"algorithm\": \"flash\", \"tiling\": \"wgpx2\", \"status\": \"ok\", \"gflops\": 410000, \"median_ms\": 0.7}]}");
        Result r = summary(out);
        assertTrue(r.output.contains("flash = the engine's tiling (W4X2), w2 = W2"), r.output);
        // Columns flash, w2, w4x2, wg, wgp, wgx2, wgpx2: the fastest of them is "ours".
        assertTrue(r.output.matches("(?s).*\n16x128 +4096 no +300 +250 +- +- +- +- +410 .*"), r.output);
    }

    /**
     * The density table: the sparse kernel in the engine's tiling and, where the sweep ran it, in WGPX2, each against
     * the best dense flash of the run (the issue 5 verdict's denominator); "?" where no compare-step check ran.
     */
    @Test
    void summaryTablesTheSparseSweepInEachTilingAgainstTheBestFlash() throws Exception {
        assumeTrue(project != null && onPath("python3"), "python3 or the project not found");
        Path out = tmp.resolve("summary-sweep");
        Path bench = Files.createDirectories(out.resolve("bench"));
        writeRuns(bench, "d 16 128 32768 0 dense flash", "w 16 128 32768 0 window:1682 sparse",
                "v 16 128 32768 0 window:830 sparse");
        Files.writeString(bench.resolve("d.json"), "{\"config\": {\"flash_tiling\": \"w4\"}, \"measurements\": ["
                + "{\"algorithm\": \"flash\", \"status\": \"ok\", \"gflops\": 440000, \"median_ms\": 20.0},"
                + "{\"algorithm\": \"flash\", \"tiling\": \"wgpx2\", \"status\": \"ok\", \"gflops\": 730000, \"median_ms\": 12.0}]}");
        Files.writeString(bench.resolve("w.json"), "{\"config\": {\"sparse_tiling\": \"w4\"}, \"measurements\": ["
                + "{\"algorithm\": \"sparse\", \"status\": \"ok\", \"gflops\": 3500000, \"median_ms\": 2.5},"
                + "{\"algorithm\": \"sparse\", \"tiling\": \"wgpx2\", \"status\": \"ok\", \"gflops\": 6250000, \"median_ms\": 1.4}]}");
        Files.writeString(bench.resolve("v.json"), "{\"config\": {\"sparse_tiling\": \"w4\"}, \"measurements\": ["
                + "{\"algorithm\": \"sparse\", \"status\": \"ok\", \"gflops\": 7000000, \"median_ms\": 1.25}]}");
        Result r = summary(out);
        assertTrue(r.output.contains("sparse = the engine's tiling (W4), wgpx2 = sparse[wgpx2] where run"), r.output);
        // W, token density, blocks (c: from the layout, the JSON has no tile counts), sparse ms, TF/s, x-best (12 / 2.5),
        // blocks, wgpx2 ms, x-best (12 / 1.4), flex blocks, flex ms, speed vs flex; "?": no compare-step check ran.
        assertTrue(r.output.matches("(?s).*\n  1682 +10\\.0% +10\\.5%c +2\\.50\\? +\\S+ +4\\.80\\? +10\\.5%c +1\\.40\\? +8\\.57\\? +- +- +-\n.*"),
                r.output);
        assertTrue(r.output.matches("(?s).*\n  830 +5\\.0% +5\\.2%c +1\\.25\\? +\\S+ +9\\.60\\? +- +- +- +- +- +-\n.*"), r.output);

        // With FlexAttention's rows: its time against our faster sparse time, and how its mask was compiled.
        Files.writeString(out.resolve("torch.json"), "{\"rows\": [{\"backend\": \"FLEX\", \"window\": 1682, \"median_ms\": 5.0, "
                + "\"status\": \"ok\", \"target_density\": 0.1, \"mask_mod\": \"shared (W in a device tensor)\", \"compile_s\": 38.2}, "
                + "{\"backend\": \"FLEX\", \"window\": 830, \"median_ms\": 2.0, \"status\": \"ok\", \"target_density\": 0.05, "
                + "\"mask_mod\": \"shared (W in a device tensor)\", \"compile_s\": 1.5}]}");
        Result f = summary(out);
        assertTrue(f.output.matches("(?s).*\n  1682 +10\\.0% +\\S+ +2\\.50\\? +\\S+ +4\\.80\\? +\\S+ +1\\.40\\? +8\\.57\\? +- +5\\.00 +3\\.57\\?\n.*"),
                f.output);
        assertTrue(f.output.contains("flex mask: shared (W in a device tensor); mask + first call 5%: 1.5 s, 10%: 38.2 s"),
                f.output);

        // Flex on 128-blocks: compared with our run on 128-blocks (WGPX2 here, 1.6 ms, though W4 on 64-blocks took
        // 1.25); where only 64-blocks ran, the ratio is marked.
        writeRuns(bench, "d 16 128 32768 0 dense flash", "v 16 128 32768 0 window:830 sparse",
                "w 16 128 32768 0 window:1682 sparse", "v128 16 128 32768 0 window:830 sparse 128");
        Files.writeString(bench.resolve("v128.json"), "{\"config\": {\"sparse_tiling\": \"w4\", \"block_size\": 128}, "
                + "\"measurements\": [{\"algorithm\": \"sparse\", \"status\": \"ok\", \"gflops\": 5000000, \"median_ms\": 1.7},"
                + "{\"algorithm\": \"sparse\", \"tiling\": \"wgpx2\", \"status\": \"ok\", \"gflops\": 5300000, \"median_ms\": 1.6}]}");
        Files.writeString(out.resolve("torch.json"), "{\"rows\": [{\"backend\": \"FLEX\", \"window\": 1682, \"median_ms\": 5.0, "
                + "\"status\": \"ok\", \"block_size\": 128}, "
                + "{\"backend\": \"FLEX\", \"window\": 830, \"median_ms\": 2.0, \"status\": \"ok\", \"block_size\": 128}]}");
        Result b = summary(out);
        assertTrue(b.output.contains("block sizes: sparse 64, wgpx2 64/128, flex 128"), b.output);
        assertTrue(b.output.matches("(?s).*\n  830 +5\\.0% +\\S+ +1\\.25\\? +\\S+ +9\\.60\\? +\\S+ +1\\.60\\? +\\S+ +- +2\\.00 +1\\.25\\?\n.*"),
                b.output);
        assertTrue(b.output.matches("(?s).*\n  1682 +10\\.0% +\\S+ +2\\.50\\? +\\S+ +4\\.80\\? +\\S+ +1\\.40\\? +8\\.57\\? +- +5\\.00 +3\\.57\\*\\?\n.*"),
                b.output);
    }

    /**
     * bench/runs.tsv as the bench step writes it, one row per "NAME H D L CAUSAL PATTERN ALGOS [BLOCK_SIZE]" (exit 0,
     * status ok, no route).
     */
    private static void writeRuns(Path bench, String... rows) throws java.io.IOException {
        StringBuilder tsv = new StringBuilder("name\theads\tdim\tlen\tcausal\tpattern\talgos\trc\tsecs\tstatus\troute\tblock_size\n");
        for (String row : rows) {
            String[] f = row.split(" ");
            tsv.append(String.join("\t", f[0], f[1], f[2], f[3], f[4], f[5], f[6], "0", "1", "ok", "", f.length > 7 ? f[7] : ""))
                    .append('\n');
        }
        Files.writeString(bench.resolve("runs.tsv"), tsv);
    }

    /** device_check.py's summary of {@code out}, which must succeed. */
    private static Result summary(Path out) throws Exception {
        Result r = run(List.of("python3", "-B", "scripts/device_check.py", "summary", out.toString()), Map.of(), 30);
        assertEquals(0, r.exit, r.output);
        return r;
    }

    @Test
    void deviceCheckEndsWithTheSummary() throws Exception {
        assumeTrue(project != null && onPath("bash") && onPath("python3") && onPath("timeout"),
                "bash, python3 or coreutils' timeout missing");
        Path out = tmp.resolve("out");
        Path work = tmp.resolve("work");
        Map<String, String> env = new HashMap<>();
        env.put("OUT", out.toString());
        env.put("HEADROUTE_WORK", work.toString());
        env.put("HEADROUTE_STEPS", "facts");
        env.put("HEADROUTE_CHECK_BUDGET", "60");
        Result r = run(List.of("bash", "scripts/device-check.sh"), env, 120);
        assertEquals(0, r.exit, r.output);
        // The device tool brings back at most 8 files from $OUT: three, the logs packed in results.tar.gz.
        try (var files = Files.list(out)) {
            assertEquals(List.of("results.tar.gz", "steps.tsv", "summary.md"),
                    files.map(f -> f.getFileName().toString()).sorted().toList(), r.output);
        }
        assertTrue(Files.isRegularFile(work.resolve("facts.log")), r.output);
        Result tar = run(List.of("tar", "-tzf", out.resolve("results.tar.gz").toString()), Map.of(), 30);
        assertEquals(0, tar.exit, tar.output);
        assertTrue(tar.output.contains("work/facts.log"), tar.output);
        assertTrue(tar.output.contains("work/summary.md") && tar.output.contains("work/left-out.txt"), tar.output);
        String[] lines = r.output.strip().split("\n");
        // The recap (card, commit, step statuses, verdicts) is the last line: it survives a cut output's head.
        assertTrue(lines[lines.length - 1].startsWith("recap ") && lines[lines.length - 2].startsWith("logs and JSON"),
                "the summary is not last:\n" + r.output);
        assertTrue(r.output.contains("== headroute device check: summary =="), r.output);
        assertTrue(r.output.matches("(?s).*\nfacts +ok .*"), r.output);
    }

    @Test
    void bundleHasEveryPartAndFits() throws Exception {
        Path b = bundle();
        for (String part : List.of("jre.tar.gz", "MANIFEST.txt", "kernels/ptxas.txt", "native/libcublas.so.12",
                "lib/test/" + CONSOLE_JAR, "lib/test/classes/io/headroute/device/DeviceBundleTest.class",
                // README's GPU program compiled ahead for ReadmeExamplesGpuTest (the runtime has no compiler).
                "lib/test/readme-examples/classes/DeviceAttend.class", "lib/test/readme-examples/sources.sha256")) {
            assertTrue(Files.isRegularFile(b.resolve(part)), "build/device/" + part + " is missing");
        }
        List<String> jars = names(b.resolve("lib"), ".jar");
        assertTrue(jars.stream().anyMatch(n -> n.matches("headroute-.*\\.jar")), "no project jar in " + jars);
        for (String dep : List.of("jcuda-", "jcuda-natives-", "jcublas-", "jcublas-natives-", "log4j-api-", "log4j-core-",
                "picocli-", "jackson-databind-")) {
            assertTrue(jars.stream().anyMatch(n -> n.startsWith(dep)), dep + "*.jar missing from build/device/lib: " + jars);
        }
        // One module per .cu file (make kernels), each in the bundle's project jar (where KernelModule loads it).
        List<String> cu = names(project.resolve("cuda-kernels"), ".cu");
        Path jar = b.resolve("lib").resolve(jars.stream().filter(n -> n.matches("headroute-.*\\.jar")).findFirst().orElseThrow());
        try (java.util.zip.ZipFile z = new java.util.zip.ZipFile(jar.toFile())) {
            for (String c : cu) {
                String f = "io/headroute/kernels/" + c.replaceAll("\\.cu$", ".fatbin");
                assertTrue(z.getEntry(f) != null, f + " is missing from " + jar.getFileName());
            }
        }
        assertFalse(Files.exists(b.resolve("jre")), "build/device/jre/ (an unpacked runtime) would not fit the carry limit");
        String manifest = Files.readString(b.resolve("MANIFEST.txt"));
        assertTrue(manifest.matches("(?s).*\ncommit: [0-9a-f]{40}\n.*|(?s).*\ncommit: unknown\n.*"), manifest);
        for (String key : List.of("dirty: ", "built: ", "jlink_java: ", "jlink_modules: ", "jre.tar.gz")) {
            assertTrue(manifest.contains(key), "MANIFEST.txt lacks " + key);
        }
        long total;
        try (Stream<Path> files = Files.walk(b)) {
            total = files.filter(Files::isRegularFile).mapToLong(DeviceBundleTest::size).sum();
        }
        assertTrue(total <= MAX_BUNDLE_BYTES, "build/device is " + total + " bytes, more than 48 MiB");
    }

    @Test
    void bundledRuntimeRunsHeadroute() throws Exception {
        Path b = bundle();
        assumeTrue(onPath("tar"), "tar is not on the PATH");
        Result untar = run(List.of("tar", "-C", tmp.toString(), "-xzf", b.resolve("jre.tar.gz").toString()), Map.of(), 120);
        assertEquals(0, untar.exit, untar.output);
        String java = tmp.resolve("jre/bin/java").toString();
        Result version = run(List.of(java, "-version"), Map.of(), 60);
        assertEquals(0, version.exit, version.output);
        assertTrue(version.output.contains("\"17"), version.output);
        String cp = b.resolve("lib") + File.separator + "*";
        Result hr = run(List.of(java, "-cp", cp, "io.headroute.cli.Main", "--version"), Map.of(), 60);
        assertEquals(0, hr.exit, hr.output);
        assertEquals("headroute " + Main.VERSION, hr.output.strip());
        Result info = run(List.of(java, "-Dheadroute.cuda.disable=true", "-cp", cp, "io.headroute.cli.Main", "info"), Map.of(), 60);
        assertEquals(0, info.exit, info.output);
        assertTrue(info.output.contains("backend cpu:"), info.output);
    }

    // ------------------------------------------------------------------------------------------ helpers

    private record Result(int exit, String output) {}

    private static Result run(List<String> command, Map<String, String> env, long timeoutSeconds)
            throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(command).directory(project.toFile()).redirectErrorStream(true);
        pb.environment().putAll(env);
        Process p = pb.start();
        p.getOutputStream().close();
        // Read while it runs (a full pipe would block the child), on a thread so the timeout still holds.
        StringBuilder sb = new StringBuilder();
        Thread reader = new Thread(() -> {
            try {
                sb.append(new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
            } catch (IOException e) {
                sb.append("(output unreadable: ").append(e).append(')');
            }
        });
        reader.start();
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
            reader.join(5000);
            throw new AssertionError(command + " did not finish in " + timeoutSeconds + " s:\n" + sb);
        }
        reader.join(10000);
        return new Result(p.exitValue(), sb.toString());
    }

    private static boolean onPath(String tool) {
        String path = System.getenv("PATH");
        if (path == null) {
            return false;
        }
        for (String dir : path.split(File.pathSeparator)) {
            if (Files.isExecutable(Path.of(dir, tool))) {
                return true;
            }
        }
        return false;
    }

    private static List<String> names(Path dir, String suffix) throws IOException {
        if (!Files.isDirectory(dir)) {
            return new ArrayList<>();
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(suffix)).sorted().collect(Collectors.toList());
        }
    }

    private static long size(Path p) {
        try {
            return Files.size(p);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }
}
