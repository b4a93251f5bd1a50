#!/usr/bin/env python3
"""Tests of scripts/device_check.py's summary on fabricated device-check work folders (no GPU, no torch here).

Each test writes what the steps would have written (bench/runs.tsv and the bench JSON files, torch.json,
compare/results.json) and reads the summary it prints. Run: python3 -B tests/python/test_device_check.py
(DeviceBundleTest does), or python3 -m pytest tests/python.
"""
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import device_check as dc  # noqa: E402

RUNS_HEADER = ["name", "heads", "dim", "len", "causal", "pattern", "algos", "rc", "secs", "status", "route", "block_size"]


def m(algorithm, gflops=None, ms=None, status="ok", rel=0.0, tiling=None, reference=False, **extra):
    """A bench JSON measurement as AttentionBenchmark writes it."""
    row = {"algorithm": algorithm, "status": status, "rel_l2_vs_first": rel, "reference": reference}
    if tiling:
        row["tiling"] = tiling
    if gflops is not None:
        row["gflops"] = gflops
        row["median_ms"] = ms
    if status == "ok" or status.startswith("wrong"):
        row["output_finite"] = not status.startswith("wrong")
    row.update(extra)
    return row


class Work:
    """A device-check work folder: bench runs, torch rows and compare results, then the summary's text."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="device-check-test-")
        os.makedirs(os.path.join(self.dir, "bench"))
        self.runs = []

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def bench(self, name, h, d, n, causal, pattern, algos, measurements=None, status="ok", route="", bs="", config=None,
              doc=None, log=""):
        """One bench run: its runs.tsv row and (unless measurements and doc are None) its JSON."""
        self.runs.append([name, str(h), str(d), str(n), "1" if causal else "0", pattern, algos,
                          "0" if status == "ok" else "1", "1", status, route, str(bs)])
        with open(os.path.join(self.dir, "bench", "runs.tsv"), "w") as f:
            f.write("\t".join(RUNS_HEADER) + "\n")
            for r in self.runs:
                f.write("\t".join(r) + "\n")
        if doc is None and measurements is not None:
            cfg = {"dtype": "bf16", "block_size": int(bs) if bs else 64}
            cfg.update(config or {})
            doc = {"config": cfg, "measurements": measurements}
        if doc is not None:
            with open(os.path.join(self.dir, "bench", name + ".json"), "w") as f:
                json.dump(doc, f)
        if log:
            with open(os.path.join(self.dir, "bench", name + ".log"), "w") as f:
                f.write(log)

    def torch(self, rows):
        with open(os.path.join(self.dir, "torch.json"), "w") as f:
            json.dump({"rows": rows}, f)

    def compare(self, results, shape=None):
        os.makedirs(os.path.join(self.dir, "compare"), exist_ok=True)
        with open(os.path.join(self.dir, "compare", "results.json"), "w") as f:
            json.dump({"source": "test", "shape": shape or {"B": 1, "H": 4, "L": 1000, "S": 1000, "D": 64},
                       "window": dc.COMPARE_WINDOW, "results": results}, f)

    def summary(self):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            self_rc = dc.main(["summary", self.dir])
        assert self_rc == 0
        return buf.getvalue()


def row(text, *head):
    """The fields of the summary line whose first fields are head (as strings), or None."""
    want = [str(x) for x in head]
    for ln in text.splitlines():
        f = ln.split()
        if f[:len(want)] == want:
            return f
    return None


def sdpa(h, d, n, causal, backend, tflops=None, status="ok"):
    return {"shape": {"B": 1, "H": h, "L": n, "S": n, "D": d}, "causal": causal, "backend": backend, "status": status,
            "tflops": tflops if status == "ok" else None, "median_ms": 1.0 if status == "ok" else None}


class WorkTest(unittest.TestCase):
    def setUp(self):
        self.w = Work()

    def tearDown(self):
        self.w.close()


class BenchRowChecksTest(WorkTest):
    """Finding 2: the first row of a run is checked too; a disagreement makes both rows suspect."""

    def test_a_disagreement_marks_the_row_and_the_reference(self):
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized",
                     [m("flash", 300000, 1.0, reference=True), m("materialized", 100000, 3.0, rel=3e-2)])
        t = self.w.summary()
        f = row(t, "16x128", 4096, "no")
        self.assertEqual(f[3], "disagree", t)  # flash
        self.assertEqual(f[10], "disagree", t)  # mater.
        self.assertIn("16x128 L=4096 dense: materialized vs flash: rel L2 3.0e-02 > 1e-02", t)

    def test_within_tolerance_both_count(self):
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized",
                     [m("flash", 300000, 1.0, reference=True), m("materialized", 100000, 3.0, rel=4e-3)])
        f = row(self.w.summary(), "16x128", 4096, "no")
        self.assertEqual((f[3], f[10]), ("300", "100"))

    def test_a_non_finite_output_is_wrong_even_first(self):
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized",
                     [m("flash", 300000, 1.0, status="wrong: 3 of 8388608 output values are NaN or infinite",
                        rel=float("nan")),
                      m("materialized", 100000, 3.0, reference=True)])
        t = self.w.summary()
        f = row(t, "16x128", 4096, "no")
        self.assertEqual((f[3], f[10]), ("WRONG", "100"), t)
        self.assertIn("flash: output has NaN/inf", t)

    def test_non_finite_flag_alone_is_wrong(self):
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized",
                     [m("flash", 300000, 1.0, reference=True), m("materialized", 100000, 3.0, rel=1e-3, output_finite=False)])
        f = row(self.w.summary(), "16x128", 4096, "no")
        self.assertEqual((f[3], f[10]), ("300", "WRONG"))

    def test_a_later_run_does_not_clear_a_mark(self):
        # The baseline run's flash disagrees with materialized; the tilings run's flash agrees with W2: flash stays
        # suspect at this shape (its row of the baseline run is not cleared by a later one), and W2, checked only
        # against that flash, is unverified (review 148d761, finding 3).
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized",
                     [m("flash", 300000, 1.0, reference=True), m("materialized", 100000, 3.0, rel=5e-2)])
        self.w.bench("t", 16, 128, 4096, False, "dense", "flash",
                     [m("flash", 310000, 1.0, reference=True), m("flash", 250000, 1.2, rel=1e-3, tiling="w2")])
        t = self.w.summary()
        f = row(t, "16x128", 4096, "no")
        self.assertEqual((f[3], f[4], f[10]), ("disagree", "unverif.", "disagree"), t)
        self.assertIn("16x128 L=4096 dense: flash_w2: agreed with flash, which is marked disagree at this shape:"
                      " unverified, not counted", t)
        self.assertIn("32x64 L=32768 causal (no flash result that counts)", t)
        self.assertIn("16x128 L=4096 dense (no flash result that counts)", t)

    def test_a_disagreeing_tiling_marks_the_engines_flash_too(self):
        self.w.bench("t", 16, 128, 4096, False, "dense", "flash",
                     [m("flash", 310000, 1.0, reference=True), m("flash", 250000, 1.2, rel=1e-3, tiling="w2"),
                      m("flash", 900000, 0.4, rel=0.2, tiling="wgpx2")])
        f = row(self.w.summary(), "16x128", 4096, "no")
        self.assertEqual((f[3], f[4], f[9]), ("disagree", "unverif.", "disagree"))

    def test_a_disagreeing_tiling_leaves_the_baselines_flash_standing(self):
        # Review 148d761, finding 4: the marks of the tilings run are its own; the baseline run's flash (checked
        # against materialized) and materialized still count.
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized",
                     [m("flash", 400000, 1.0, reference=True), m("materialized", 100000, 4.0, rel=1e-3)])
        self.w.bench("t", 16, 128, 4096, False, "dense", "flash",
                     [m("flash", 400000, 1.0, reference=True), m("flash", 240000, 1.0, rel=1e-3, tiling="w2"),
                      m("flash", 900000, 1.0, rel=0.5, tiling="wgpx2")])
        self.w.torch([sdpa(16, 128, 4096, False, b, 450.0 if b == "CUDNN_ATTENTION" else 350.0)
                      for b in dc.SDPA_BACKENDS])
        t = self.w.summary()
        f = row(t, "16x128", 4096, "no")
        self.assertEqual((f[3], f[4], f[9], f[10]), ("400", "unverif.", "disagree", "100"), t)
        self.assertEqual(f[-1], "0.89", t)

    def test_wrong_sticks_across_runs_of_a_label(self):
        # NaN/inf is the kernel's own fault, not an ambiguous pair: the baseline's time of the same label goes too.
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized",
                     [m("flash", 400000, 1.0, reference=True), m("materialized", 100000, 4.0, rel=1e-3)])
        self.w.bench("t", 16, 128, 4096, False, "dense", "flash",
                     [m("flash", status="wrong: 3 of 8 output values are NaN or infinite", rel=None),
                      m("flash", 240000, 1.0, reference=True, tiling="w2")])
        t = self.w.summary()
        f = row(t, "16x128", 4096, "no")
        # materialized agreed only with that flash: unverified.
        self.assertEqual((f[3], f[4], f[10]), ("WRONG", "240", "unverif."), t)
        self.assertIn("flash: output has NaN/inf in run t, so run b's time does not count either", t)

    def test_json_without_the_reference_key_takes_the_first_row_that_ran(self):
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized", doc={"config": {}, "measurements": [
            {"algorithm": "flash", "status": "ok", "gflops": 300000, "median_ms": 1.0, "rel_l2_vs_first": 0.0},
            {"algorithm": "materialized", "status": "ok", "gflops": 100000, "median_ms": 3.0, "rel_l2_vs_first": 0.5}]})
        f = row(self.w.summary(), "16x128", 4096, "no")
        self.assertEqual((f[3], f[10]), ("disagree", "disagree"))

    def test_a_missing_row_of_a_run_that_ended_well_is_missing_not_ok(self):
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized", [m("flash", 300000, 1.0, reference=True)])
        f = row(self.w.summary(), "16x128", 4096, "no")
        self.assertEqual(f[10], "missing")

    def test_a_failed_run_shows_its_status(self):
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized", None, status="timeout after 60s")
        f = row(self.w.summary(), "16x128", 4096, "no")
        self.assertEqual((f[3], f[10]), ("timeout", "timeout"))

    def test_plan_refusal_and_out_of_memory_at_run_differ(self):
        self.w.bench("b", 16, 128, 32768, False, "dense", "flash,materialized",
                     [m("flash", 300000, 1.0, reference=True),
                      m("materialized", status="does not fit (memory plan): the materialized path needs 34.00 GiB")])
        self.w.bench("c", 16, 128, 32768, True, "dense", "flash,materialized",
                     [m("flash", 300000, 1.0, reference=True),
                      m("materialized", status="out of memory at run: out of device memory on GPU 0: tried to ...")])
        t = self.w.summary()
        self.assertEqual(row(t, "16x128", 32768, "no")[10], "no", t)  # "no fit"
        self.assertEqual(row(t, "16x128", 32768, "no")[11], "fit", t)
        self.assertEqual(row(t, "16x128", 32768, "yes")[10], "oom", t)

    def test_short_status(self):
        self.assertEqual(dc.short_status("does not fit (memory plan): needs 3 GiB"), "no fit")
        self.assertEqual(dc.short_status("out of memory at run: out of device memory on GPU 0"), "oom")
        self.assertEqual(dc.short_status("oom: CUDA out of memory"), "oom")
        self.assertEqual(dc.short_status("wrong: 1 of 4 output values are NaN or infinite"), "WRONG")
        self.assertEqual(dc.TOLERANCE, {"f32": 1e-5, "f16": 2e-3, "bf16": 1e-2})
        # Review 148d761, finding 9: at most 8 characters (the table's columns), "timeout" only for a timeout.
        self.assertEqual(dc.short_status("unsupported: the wgmma tilings need sm_90 (this card is sm_89)"), "unsupp.")
        self.assertEqual(dc.short_status("error: CUDA error: the launch timed out (CUDA_ERROR_LAUNCH_TIMEOUT)"), "error")
        self.assertEqual(dc.short_status("timeout after 60s"), "timeout")
        self.assertEqual(dc.short_status("interrupted by the step's end"), "interrup")
        for st in ("unsupported: x", "skipped: y", "exit 137: z", "does not fit (memory plan)", "error: w" * 9):
            self.assertLessEqual(len(dc.short_status(st)), 8, st)

    def test_an_error_just_over_the_tolerance_never_shows_as_it(self):
        self.assertEqual(dc.fmt_err(0.01004, 1e-2), "1.004e-02")
        self.assertEqual(dc.fmt_err(0.0123, 1e-2), "1.2e-02")
        self.assertEqual(dc.fmt_err(1e-2, 1e-2), "1.0e-02")
        self.assertEqual(dc.fmt_err(float("nan"), 1e-2), "NaN")
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized",
                     [m("flash", 300000, 1.0, reference=True), m("materialized", 100000, 3.0, rel=0.01004)])
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=routed_doc(0.40, 2.1, 0.01004))
        self.w.compare([cmp("dense", "cuda", "flash", "bf16", 0.01004)])
        t = self.w.summary()
        self.assertIn("materialized vs flash: rel L2 1.004e-02 > 1e-02", t)
        self.assertIn("rel L2 1.004e-02 vs bf16 1e-02: OUTSIDE", t)
        self.assertEqual(row(t, "cuda", "flash", "bf16")[3:5], ["1.004e-02", "FAIL"], t)


class TorchComparisonTest(WorkTest):
    """Finding 1: "torch best" is the best of every SDPA backend that can run the shape, or no ratio is printed."""

    def flash(self, n, tf=300000):
        self.w.bench("b%d" % n, 16, 128, n, False, "dense", "flash", [m("flash", tf, 1.0, reference=True)])

    def test_every_backend_ran_or_refused(self):
        self.flash(4096)
        self.w.torch([sdpa(16, 128, 4096, False, "FLASH_ATTENTION", 400.0), sdpa(16, 128, 4096, False, "EFFICIENT_ATTENTION", 300.0),
                      sdpa(16, 128, 4096, False, "CUDNN_ATTENTION", status="unsupported: No available kernel"),
                      sdpa(16, 128, 4096, False, "MATH", 50.0)])
        f = row(self.w.summary(), "16x128", 4096, "no")
        self.assertEqual(f[11:], ["400", "(flash)", "0.75"])

    def test_a_backend_skipped_for_time_leaves_the_shape_unmeasured(self):
        self.flash(32768)
        # MATH is not timed above L = 8192 by design: not missing. cuDNN skipped for time: missing.
        self.w.torch([sdpa(16, 128, 32768, False, "FLASH_ATTENTION", 400.0), sdpa(16, 128, 32768, False, "EFFICIENT_ATTENTION", 300.0),
                      sdpa(16, 128, 32768, False, "CUDNN_ATTENTION", status="skipped: time budget"),
                      sdpa(16, 128, 32768, False, "MATH", status="skipped: MATH materializes L x S scores (L > 8192)")])
        t = self.w.summary()
        self.assertEqual(" ".join(row(t, "16x128", 32768, "no")[13:]), "<=0.75 partial (cudnn skip)", t)

    def test_a_backend_without_a_row_or_out_of_memory_is_missing(self):
        self.flash(4096)
        self.w.torch([sdpa(16, 128, 4096, False, "FLASH_ATTENTION", 400.0),
                      sdpa(16, 128, 4096, False, "CUDNN_ATTENTION", status="oom: CUDA out of memory"),
                      sdpa(16, 128, 4096, False, "MATH", 50.0)])
        f = row(self.w.summary(), "16x128", 4096, "no")
        self.assertEqual(" ".join(f[13:]), "<=0.75 partial (effic no row, cudnn oom)")

    def test_a_ratio_near_a_bar_shows_enough_digits(self):
        self.flash(4096, tf=199990)
        self.w.torch([sdpa(16, 128, 4096, False, b, 400.0) for b in dc.SDPA_BACKENDS])
        self.assertEqual(row(self.w.summary(), "16x128", 4096, "no")[-1], "0.49998")
        self.assertEqual(dc.fmt_vs(0.4254, 0.425, digits=3), "0.4254")
        self.assertEqual(dc.fmt_vs(0.4250, 0.425, digits=3), "0.425")
        self.assertEqual(dc.fmt_vs(0.42496, 0.425, digits=3), "0.42496")
        self.assertEqual(dc.fmt_vs(7.9999, 8), "7.9999")
        self.assertEqual(dc.fmt_vs(8.2, 8), "8.20")

    def test_torch_best_without_a_row_that_ran_says_why(self):
        # Review 148d761, finding 9: not the first backend's status in "torch best", but "none ran" and each status.
        self.flash(4096)
        self.w.torch([sdpa(16, 128, 4096, False, "FLASH_ATTENTION", status="error: RuntimeError: boom"),
                      sdpa(16, 128, 4096, False, "EFFICIENT_ATTENTION", status="unsupported: No available kernel"),
                      sdpa(16, 128, 4096, False, "CUDNN_ATTENTION", status="oom: CUDA out of memory"),
                      sdpa(16, 128, 4096, False, "MATH", status="skipped: time budget")])
        f = row(self.w.summary(), "16x128", 4096, "no")
        self.assertEqual(" ".join(f[11:]), "none ran - (flash error, cudnn oom, math skip)")

    def test_backends_as_torch_reference_times_them(self):
        import torch_reference as ref
        self.assertEqual(dc.SDPA_BACKENDS, ref.BACKENDS)
        self.assertEqual(dc.MATH_MAX_LEN, ref.MATH_MAX_LEN)


class MemoryLinesTest(WorkTest):
    """Finding 6: the issue's own figure for the materialized scores, apart; the peaks named for what they are."""

    IO = 4 * 16 * 32768 * 128 * 2 + 16 * 32768 * 4  # Q+K+V+O in bf16, lse in fp32

    def test_flash_within_five_percent_and_materialized_against_the_issues_figure(self):
        self.w.bench("b", 16, 128, 32768, False, "dense", "flash,materialized",
                     [m("flash", 300000, 1.0, reference=True, peak_device_bytes=self.IO + (1 << 20)),
                      m("materialized", 100000, 3.0, rel=1e-3, peak_device_bytes=(33 << 30), score_dtype="bf16")])
        t = self.w.summary()
        self.assertIn("(pool peak = the engine's device-pool accounting: bytes headroute held during a call; "
                      "no device-level figure)", t)
        self.assertIn("  flash pool peak 515.0 MiB, Q+K+V+O+lse 514.0 MiB: 1.002x (goal <= 1.05: met)", t)
        self.assertIn("  materialized pool peak 33.00 GiB; the issue's figure, 16 heads x 32768^2 scores x 2 B = 32.00 GiB"
                      " (scores alone): 1.031x; with Q+K+V+O+lse 32.50 GiB: 1.015x", t)

    def test_a_peak_just_over_the_goal_is_not_shown_as_it(self):
        self.w.bench("b", 16, 128, 32768, False, "dense", "flash",
                     [m("flash", 300000, 1.0, reference=True, peak_device_bytes=int(self.IO * 1.0504))])
        self.assertIn(": 1.0504x (goal <= 1.05: NOT met)", self.w.summary())

    def test_fp32_scores(self):
        self.w.bench("b", 16, 128, 32768, False, "dense", "flash,materialized",
                     [m("flash", 300000, 1.0, reference=True),
                      m("materialized", 100000, 3.0, rel=1e-3, peak_device_bytes=(97 << 30), score_dtype="f32")])
        t = self.w.summary()
        self.assertIn("16 heads x 32768^2 scores x 4 B = 64.00 GiB (scores alone): 1.516x; with Q+K+V+O+lse and P in bf16"
                      " 96.50 GiB: 1.005x", t)
        self.assertIn("  flash pool peak not measured", t)


def cmp(variant, backend, algo, dtype, rel, verdict=None):
    return {"variant": variant, "backend": backend, "algo": algo, "dtype": dtype, "rel_l2": rel,
            "verdict": verdict or ("ok" if rel is not None and rel <= dc.TOLERANCE[dtype] else "FAIL")}


class SweepCorrectnessTest(WorkTest):
    """Finding 2: the density sweep's sparse runs have no row to compare with; the compare step's window cases check
    the same kernels on the same kind of pattern, and the density table says so, with their status."""

    def sweep(self):
        self.w.bench("d", 16, 128, 32768, False, "dense", "flash", [m("flash", 440000, 20.0, reference=True)])
        self.w.bench("w", 16, 128, 32768, False, "window:1682", "sparse", [m("sparse", 3500000, 2.5, reference=True)])

    def test_the_density_table_names_its_check_and_its_status(self):
        self.sweep()
        self.w.compare([cmp("window", "cuda", "sparse-bs64", "bf16", 3.1e-3),
                        cmp("window", "cuda", "sparse-wgpx2-bs128", "bf16", 2.5e-2)])
        t = self.w.summary()
        self.assertIn("correctness: the sweep's runs time sparse alone (no row to compare with); checked by the compare"
                      " step's window:150 cases (B=1 H=4 L=S=1000 D=64, bf16 vs float64, tol 1e-2): sparse (the engine's"
                      " tiling, 64-blocks) ok (3.1e-03); wgpx2 (128-blocks) FAIL (2.5e-02)", t)
        f = row(t, "cuda", "sparse-wgpx2-bs128", "bf16")
        self.assertEqual(f[3:], ["-", "-", "2.5e-02", "FAIL"], t)
        self.assertIn("window:150", row(t, "backend", "algo", "dtype"))

    def test_without_the_compare_step_the_sweep_is_unchecked(self):
        self.sweep()
        t = self.w.summary()
        self.assertIn("sparse (the engine's tiling, 64-blocks) no compare step; wgpx2 (128-blocks) no compare step", t)
        self.w.compare([cmp("dense", "cpu", "flash", "f32", 1e-7),
                        cmp("window", "cuda", "sparse-bs64", "bf16", None, "skipped: step budget used up")])
        t = self.w.summary()
        self.assertIn("sparse (the engine's tiling, 64-blocks) skip; wgpx2 (128-blocks) not run", t)

    def test_numpy_window_reference_is_the_masked_softmax(self):
        try:
            import numpy as np
        except ImportError:
            self.skipTest("no numpy")
        d = os.path.join(self.w.dir, "compare")
        with contextlib.redirect_stdout(io.StringIO()):
            self.assertEqual(0, dc.main(["make-compare", d]))
        meta = dc.read_json(os.path.join(d, "meta.json"))
        self.assertEqual(meta["window"], dc.COMPARE_WINDOW)
        self.assertEqual(meta["references"]["window"], "o_ref_window_f64.npy")
        q, k, v = (np.load(os.path.join(d, x + ".npy")).astype(np.float64) for x in "qkv")
        o = np.load(os.path.join(d, "o_ref_window_f64.npy"))
        # Row 500 of head 2 by hand: keys 350..650 only.
        s = q[0, 2, 500] @ k[0, 2, 350:651].T / 8.0
        p = np.exp(s - s.max())
        self.assertTrue(np.allclose(o[0, 2, 500], (p / p.sum()) @ v[0, 2, 350:651], rtol=0, atol=1e-12))
        # compare-eval takes a window output against it.
        os.makedirs(os.path.join(d, "out"))
        np.save(os.path.join(d, "out", "w.npy"), o.astype(np.float32))
        with open(os.path.join(d, "runs.tsv"), "w") as f:
            f.write("variant\tbackend\talgo\tdtype\trc\tsecs\tstatus\tfile\n")
            f.write("window\tcuda\tsparse-bs64\tbf16\t0\t1\tok\tw.npy\n")
        with contextlib.redirect_stdout(io.StringIO()):
            self.assertEqual(0, dc.main(["compare-eval", d]))
        res = dc.read_json(os.path.join(d, "results.json"))
        self.assertEqual(res["window"], dc.COMPARE_WINDOW)
        self.assertEqual(res["results"][0]["verdict"], "ok")

    def test_the_same_window_as_torch_reference(self):
        import torch_reference as ref
        self.assertEqual(dc.COMPARE_WINDOW, ref.COMPARE_WINDOW)
        self.assertEqual(dc.COMPARE_SHAPE, ref.COMPARE_SHAPE)


class DensityTableTest(WorkTest):
    """Finding 4: each row's block density beside its token density, the FLOP convention of TF/s; finding 8: the Flex
    column says its direction."""

    def test_layout_block_density_counts_blocks_with_any_allowed_pair(self):
        for n, w, b in ((300, 20, 64), (1000, 150, 128), (1000, 150, 64), (257, 0, 64), (130, 500, 64)):
            nb = (n + b - 1) // b
            hit = sum(1 for qb in range(nb) for kb in range(nb)
                      if any(abs(i - j) <= w for i in range(qb * b, min(n, qb * b + b))
                             for j in range(kb * b, min(n, kb * b + b))))
            self.assertAlmostEqual(dc.layout_block_density(n, w, b), hit / float(nb * nb), msg=(n, w, b))
        self.assertEqual(dc.layout_block_density(1000, None, 64), 1.0)

    def test_windows_as_the_bench_step_and_torch_reference_choose_them(self):
        import torch_reference as ref
        for dens in ref.FLEX_DENSITIES:
            self.assertEqual(dc.window_for_density(32768, dens), ref.window_for_density(32768, dens))
            w = ref.window_for_density(32768, dens)
            self.assertAlmostEqual(dc.window_density(32768, w), ref.window_density(32768, w))

    def test_rows_show_the_kernels_block_density_and_the_flop_convention(self):
        self.w.bench("d", 16, 128, 32768, False, "dense", "flash",
                     [m("flash", 440000, 20.0, reference=True), m("flash", 730000, 12.0, rel=1e-3, tiling="wgpx2")])
        # The kernel's own tile counts: 11 of 100 (query tile, key tile) pairs run.
        self.w.bench("w", 16, 128, 32768, False, "window:1682", "sparse",
                     [m("sparse", 3500000, 2.5, reference=True, key_tiles_visited=11, key_tiles_skipped=89)])
        self.w.bench("x", 16, 128, 32768, False, "window:1682", "sparse",
                     [m("sparse", 3400000, 2.6, reference=True),
                      m("sparse", 6250000, 1.5005, rel=2e-3, tiling="wgpx2")], bs=128)
        self.w.torch([{"backend": "FLEX", "window": 1682, "median_ms": 1.5, "status": "ok", "block_size": 128,
                       "block_density": 0.1124, "target_density": 0.1}])
        self.w.compare([cmp("window", "cuda", "sparse-bs64", "bf16", 3e-3),
                        cmp("window", "cuda", "sparse-wgpx2-bs128", "bf16", 3e-3)])
        t = self.w.summary()
        self.assertIn("TF/s = effective TFLOP/s on token-density FLOPs (4*B*H*L*S*D x token density), the count"
                      " FlexAttention's rows use too", t)
        self.assertIn("speed vs flex = flex ms / our faster sparse ms on flex's block size: >= 1 is faster than Flex", t)
        self.assertIn("the issue's 10% and 50% rows are the token-density ones, W=1682 (token 10%), W=9598 (token 50%)", t)
        f = row(t, "W", "token", "blocks")
        self.assertEqual(f[-3:], ["speed", "vs", "flex"])
        f = row(t, 1682)
        # token 10.0%, blocks 11.0% (the kernel's), 2.50 ms, 350 TF/s (3500 x token density 0.1), x-best: the best
        # dense flash (WGPX2, 12 ms) / 2.5; wgpx2 on 128-blocks: blocks from the layout (c), 1.50 ms, 12 / 1.5005;
        # flex 11.2%, 1.50 ms; 1.5 / 1.5005 shows as 0.9997 (never 1.00).
        self.assertIn("x-best = the best dense flash ms (flash_wgpx2 12.00 ms, the verdict's denominator; a tiling whose dense compare"
                      " check FAILED is left out) / sparse ms", t)
        self.assertEqual(f[1:], ["10.0%", "11.0%", "2.50", "350", "4.80", "%.1f%%c" % (100 * dc.layout_block_density(
            32768, 1682, 128)), "1.50", "7.997", "11.2%", "1.50", "0.9997"], t)

    def test_a_disagreeing_sweep_row_counts_nowhere_and_says_why(self):
        self.w.bench("x", 16, 128, 32768, False, "window:9598", "sparse",
                     [m("sparse", 3400000, 2.6, reference=True), m("sparse", 6250000, 1.5, rel=0.3, tiling="wgpx2")], bs=128)
        t = self.w.summary()
        f = row(t, 9598)
        self.assertEqual((f[3], f[7]), ("disagree", "disagree"), t)
        self.assertIn("  W=9598: sparse_wgpx2 vs sparse: rel L2 3.0e-01 > 1e-02", t)

    def test_flex_that_could_not_be_imported_says_why(self):
        # Review 148d761, finding 9: FlexAttention's rows without a window (its import failed) still give the reason.
        self.w.bench("d", 16, 128, 32768, False, "dense", "flash", [m("flash", 440000, 20.0, reference=True)])
        self.w.bench("w10", 16, 128, 32768, False, "window:1682", "sparse", [m("sparse", 3500000, 2.5, reference=True)])
        self.w.torch([{"backend": "FLEX", "target_density": x, "block_size": 128, "causal": False,
                       "status": "unsupported: ImportError: cannot import name 'flex_attention'",
                       "shape": {"B": 1, "H": 16, "L": 32768, "S": 32768, "D": 128}} for x in (0.05, 0.1, 0.25, 0.5)])
        t = self.w.summary()
        self.assertEqual(row(t, 1682)[-2:], ["unsupp.", "-"], t)
        self.assertIn("(speed vs flex, >= 1 faster): 10% - (flex unsupported: ImportError: cannot import name"
                      " 'flex_attention'), 50% - (flex unsupported: ImportError", t)

    def test_dense_row_and_flex_without_our_run(self):
        self.w.bench("d", 16, 128, 32768, False, "dense", "flash", [m("flash", 440000, 20.0, reference=True)])
        self.w.bench("s", 16, 128, 32768, False, "dense", "sparse",
                     [m("sparse", 440000, 21.0, reference=True, key_tiles_visited=262144, key_tiles_skipped=0)])
        self.w.torch([{"backend": "FLEX", "window": 830, "median_ms": 2.0, "status": "ok", "block_size": 128}])
        t = self.w.summary()
        self.assertEqual(row(t, "None")[1:4], ["100.0%", "100.0%", "21.00?"], t)  # ?: no compare step
        self.assertEqual(row(t, 830)[1:], ["5.0%", "-", "-", "-", "-", "-", "-", "-", "-", "2.00", "-"], t)


def routed_doc(ratio, overhead, rel, target=0.425, dtype="bf16", dense_ms=40.0):
    return {"config": {"dtype": dtype, "route": {"shared_heads": 2, "routed_heads": 14, "k": 4}},
            "routed": {"median_ms": dense_ms * ratio, "query_tiles": 100, "rows_skipped": 5},
            "dense": {"median_ms": dense_ms}, "routed_over_dense": ratio, "target_routed_over_dense": target,
            "router_overhead_percent": overhead, "rel_l2_routed_vs_gated_dense": rel,
            "meets_target": ratio <= target, "meets_overhead_target": overhead <= 5}


class RoutedTableTest(WorkTest):
    """Finding 3: the routed verdict needs the output right; the table shows the error and what is met."""

    def test_correct_and_fast_is_met(self):
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=routed_doc(0.41, 2.1, 3e-3))
        t = self.w.summary()
        self.assertIn("rel L2 = routed output vs gate x dense output (tolerance bf16 1e-2", t)
        self.assertEqual(row(t, "2:4")[1:], ["16.40", "40.00", "0.410", "0.425", "2.1", "3.0e-03", "yes/yes", "100", "/", "5"])

    def test_fast_but_wrong_meets_nothing(self):
        # The JSON's own flags (from before its bench judged correctness) say met: the summary judges from the numbers.
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=routed_doc(0.41, 2.1, 2e-2))
        self.w.bench("b", 16, 128, 32768, False, "dense", "flash", route="2:4:64", doc=routed_doc(0.41, 2.1, float("nan")))
        t = self.w.summary()
        self.assertEqual(row(t, "2:4")[6:9], ["2.0e-02", "OUT", "no/no"], t)
        self.assertEqual(row(t, "2:4:64")[6:9], ["NaN", "OUT", "no/no"], t)

    def test_just_over_the_target_never_shows_as_it(self):
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=routed_doc(0.4254, 5.04, 3e-3))
        f = row(self.w.summary(), "2:4")
        self.assertEqual(f[3:5] + f[5:6] + f[7:8], ["0.4254", "0.425", "5.04", "no/no"])

    def test_a_run_without_json_shows_its_status(self):
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4:64", status="timeout after 60s")
        self.assertEqual(row(self.w.summary(), "2:4:64"), ["2:4:64", "timeout"])

    def test_a_missing_field_is_not_judged(self):
        # Review 148d761, finding 8: a field the JSON lacks is not judged, never NOT met by default.
        d = routed_doc(0.40, 2.1, 3e-3)
        del d["rel_l2_routed_vs_gated_dense"]
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=d)
        d = routed_doc(0.40, 2.1, 3e-3)
        del d["router_overhead_percent"]
        del d["target_routed_over_dense"]
        self.w.bench("b", 16, 128, 32768, False, "dense", "flash", route="2:4:64", doc=d)
        t = self.w.summary()
        self.assertIn("  token granularity (2:4): ratio 0.400 vs 0.425: not judged; router 2.1% vs 5%: not judged;"
                      " rel L2 - (missing) vs bf16 1e-02: not judged -> not judged", t)
        self.assertIn("  block granularity (2:4:64): ratio 0.40 vs - (no target): not judged; router - (missing) vs 5%:"
                      " not judged; rel L2 3.0e-03 vs bf16 1e-02: ok -> not judged", t)
        self.assertIn("  verdict: token not judged, block not judged", t)
        self.assertEqual(row(t, "2:4")[6:8], ["-", "-/-"], t)

    def test_a_missing_field_does_not_hide_a_failed_one(self):
        d = routed_doc(0.60, 2.1, 3e-3)
        del d["rel_l2_routed_vs_gated_dense"]
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=d)
        self.w.bench("b", 16, 128, 32768, False, "dense", "flash", route="2:4:64", doc={"config": None, "routed": None})
        t = self.w.summary()
        self.assertIn("ratio 0.600 vs 0.425: NOT met; router 2.1% vs 5%: not judged; rel L2 - (missing) vs bf16 1e-02:"
                      " not judged -> NOT met", t)
        self.assertIn("  verdict: token NOT met, block not judged", t)


class VerdictLinesTest(WorkTest):
    """Finding 7: explicit verdict lines for issues 4, 5 and 6, "not judged" while a case is missing."""

    def issue4(self, skip=(), ours=400000, cudnn_skip=()):
        rows = []
        for h, d, n, c in dc.ISSUE4_SHAPES:
            if (h, d, n, c) not in skip:
                self.w.bench("b%d-%d-%d-%d" % (h, d, n, c), h, d, n, c, "dense", "flash,materialized",
                             [m("flash", ours, 1.0, reference=True), m("materialized", 100000, 4.0, rel=1e-3)])
            for b in dc.SDPA_BACKENDS:
                if b == "MATH" and n > dc.MATH_MAX_LEN:
                    rows.append(sdpa(h, d, n, c, b, status="skipped: MATH materializes L x S scores (L > 8192)"))
                elif b == "CUDNN_ATTENTION" and (h, d, n, c) in cudnn_skip:
                    rows.append(sdpa(h, d, n, c, b, status="skipped: time budget"))
                else:
                    rows.append(sdpa(h, d, n, c, b, 500.0 if b == "CUDNN_ATTENTION" else 350.0))
        self.w.torch(rows)

    def test_issue4_judged_on_all_twelve_shapes(self):
        self.issue4(ours=400000)
        t = self.w.summary()
        self.assertIn("ours/torch measured on 12 of 12", t)
        self.assertIn("  first bar (ours >= 0.5 x torch): met on 12 of 12 measured -> met", t)
        self.assertIn("  goal (ours >= 1.0 x torch): met on 0 of 12 measured; below: 16x128 L=4096 dense 0.80", t)
        self.assertIn("-> NOT met (12 of 12 below)", t)

    def test_issue4_not_met_as_soon_as_a_measured_shape_fails(self):
        # Review 148d761, finding 5: shapes missing do not hold back a NOT met.
        self.issue4(skip={(32, 64, 32768, True)}, cudnn_skip={(16, 128, 4096, True)}, ours=249990)
        t = self.w.summary()
        self.assertIn("ours/torch measured on 10 of 12, 1 partial", t)
        # 249.99 / 500 = 0.49998: below the first bar, and shown so; the partial shape's 249.99 / 350 is not below it.
        self.assertIn("  first bar (ours >= 0.5 x torch): met on 0 of 10 measured; below: 16x128 L=4096 dense 0.49998", t)
        self.assertIn("-> NOT met (10 of 12 below)", t)
        self.assertIn("32x64 L=32768 dense 0.50, 16x128 L=4096 causal <=0.71 -> NOT met (11 of 12 below)", t)
        self.assertIn("  partial: 16x128 L=4096 causal <=0.71 (cudnn skip)", t)
        self.assertIn("  not measured: 32x64 L=32768 causal (no flash result that counts)", t)
        self.assertIn("  memory at L=32768 (H16 D128): not judged (no flash peak measured)", t)

    def test_issue4_not_met_against_a_partial_baseline_already_below(self):
        # ours 150 against the 350 of the backends that ran (cuDNN skipped for time on one shape): 0.43 < 0.5 already,
        # and the true best can only be higher.
        self.issue4(cudnn_skip={(16, 128, 4096, True)}, ours=150000)
        t = self.w.summary()
        self.assertIn("16x128 L=4096 causal <=0.43 -> NOT met (12 of 12 below)", t)
        self.assertEqual(" ".join(row(t, "16x128", 4096, "yes")[13:]), "<=0.43 partial (cudnn skip)", t)

    def test_issue4_not_judged_only_when_nothing_fails_and_something_is_missing(self):
        self.issue4(skip={(32, 64, 32768, True)}, cudnn_skip={(16, 128, 4096, True)}, ours=400000)
        t = self.w.summary()
        # 400 / 500 = 0.8 on the 10 measured, <= 400 / 350 on the partial one: nothing below the first bar.
        self.assertIn("  first bar (ours >= 0.5 x torch): met on 10 of 10 measured -> not judged (10 of 12 measured,"
                      " none below)", t)
        self.assertIn("  goal (ours >= 1.0 x torch): met on 0 of 10 measured; below:", t)
        self.assertIn("  not measured: 32x64 L=32768 causal (no flash result that counts)", t)

    def test_issue4_leaves_out_a_tiling_whose_compare_check_failed(self):
        # Review 148d761, finding 3: WGPX2 is the fastest, but its float64 check failed on the dense case: it does not
        # count on the dense shapes (the causal ones keep it); W2 was not checked: it counts, and the line says so.
        self.issue4(ours=400000)
        for h, d, n, c in dc.ISSUE4_SHAPES:
            self.w.bench("t%d-%d-%d-%d" % (h, d, n, c), h, d, n, c, "dense", "flash",
                         [m("flash", 400000, 1.0, reference=True), m("flash", 410000, 1.0, rel=1e-3, tiling="w2"),
                          m("flash", 900000, 0.5, rel=1e-3, tiling="wgpx2")])
        self.w.compare([cmp("dense", "cuda", "flash", "bf16", 3e-3), cmp("causal", "cuda", "flash", "bf16", 3e-3),
                        cmp("dense", "cuda", "flash-wgpx2", "bf16", 0.3), cmp("causal", "cuda", "flash-wgpx2", "bf16", 3e-3)])
        t = self.w.summary()
        self.assertEqual(row(t, "16x128", 4096, "no")[9], "900!", t)
        self.assertEqual(row(t, "16x128", 4096, "no")[-1], "0.82", t)  # 410 (W2) / 500
        self.assertEqual(row(t, "16x128", 4096, "yes")[-1], "1.80", t)  # 900 / 500
        self.assertIn("  compare-step float64 check (bf16, dense/causal) of the flash columns: a column whose check"
                      " FAILED does not count on that kind of shape: flash ok/ok, flash_wgpx2 FAIL/ok; not run:"
                      " flash_w2 (neither helps nor hurts)", t)
        self.assertIn("  goal (ours >= 1.0 x torch): met on 6 of 12 measured", t)

    def test_issue4_without_the_compare_step_says_so(self):
        self.issue4(ours=400000)
        self.assertIn("  compare-step float64 check of the flash tilings: no compare step (neither helps nor hurts: every"
                      " measured column counts)", self.w.summary())

    def sweep(self, checks=("ok", "ok"), flex=True):
        self.w.bench("d", 16, 128, 32768, False, "dense", "flash",
                     [m("flash", 440000, 20.0, reference=True), m("flash", 730000, 12.0, rel=1e-3, tiling="wgpx2")])
        self.w.bench("w10", 16, 128, 32768, False, "window:1682", "sparse", [m("sparse", 3500000, 2.5, reference=True)])
        self.w.bench("w50", 16, 128, 32768, False, "window:9598", "sparse", [m("sparse", 800000, 7.0, reference=True)])
        self.w.bench("x10", 16, 128, 32768, False, "window:1682", "sparse",
                     [m("sparse", 3400000, 2.6, reference=True), m("sparse", 6250000, 1.45, rel=2e-3, tiling="wgpx2")], bs=128)
        self.w.bench("x50", 16, 128, 32768, False, "window:9598", "sparse",
                     [m("sparse", 700000, 8.0, reference=True), m("sparse", 900000, 6.5, rel=2e-3, tiling="wgpx2")], bs=128)
        self.w.compare([cmp("window", "cuda", "sparse-bs64", "bf16", 3e-3 if checks[0] == "ok" else 5e-2),
                        cmp("window", "cuda", "sparse-wgpx2-bs128", "bf16", 3e-3 if checks[1] == "ok" else 5e-2)])
        if flex:
            self.w.torch([{"backend": "FLEX", "window": 1682, "median_ms": 1.45, "status": "ok", "block_size": 128},
                          {"backend": "FLEX", "window": 9598, "median_ms": 13.0, "status": "ok", "block_size": 128}])

    def test_issue5_sparse_vs_dense_and_flex(self):
        self.sweep()
        t = self.w.summary()
        # Best sparse (WGPX2, 1.45 ms) against the best dense flash (WGPX2, 12 ms): 8.28; at 50%: 12 / 6.5.
        self.assertIn("  10% (W=1682: token 10.0%, blocks 10.5%c (sparse) / 11.0%c (wgpx2)): best sparse 1.45 ms (wgpx2) vs"
                      " best dense flash 12.00 ms (flash_wgpx2): 8.28x (goal >= 8): met", t)
        self.assertIn("best sparse 6.50 ms (wgpx2) vs best dense flash 12.00 ms (flash_wgpx2): 1.85x (goal >= 1.8): met", t)
        self.assertIn("  sparse vs dense flash: 10% met, 50% met", t)
        # Flex on 128-blocks against our 128-block runs (WGPX2's here): 1.45 / 1.45 and 13 / 6.5.
        self.assertIn("(speed vs flex, >= 1 faster): 10% 1.00, 50% 2.00", t)
        self.assertIn("    first bar (>= 0.5): met on 2 of 2 measured -> met", t)
        self.assertIn("    goal (>= 1.0): met on 2 of 2 measured -> met", t)

    def test_issue5_counts_only_checked_columns(self):
        self.sweep(checks=("ok", "FAIL"))
        t = self.w.summary()
        self.assertIn("window check of its own tiling and block size is ok: sparse-bs64 ok, sparse-wgpx2-bs128 FAIL)", t)
        self.assertIn("best sparse 2.50 ms (sparse) vs best dense flash 12.00 ms (flash_wgpx2): 4.80x (goal >= 8): NOT met", t)
        # Against Flex only our 128-block runs count: the WGPX2 column here, whose check failed.
        self.assertIn("(speed vs flex, >= 1 faster): 10% - (our run on it: check sparse-wgpx2-bs128 FAIL), 50% - (our run"
                      " on it: check sparse-wgpx2-bs128 FAIL)", t)
        self.assertIn("    goal (>= 1.0): met on 0 of 0 measured -> not judged (0 of 2 measured, none below)", t)

    def test_density_table_marks_columns_whose_check_failed_or_did_not_run(self):
        # Review 148d761, finding 7: the table divides by the verdict's denominator (the best dense flash, WGPX2's
        # 12 ms), and marks the numbers of a column whose own check FAILED (!) or did not run (?).
        self.sweep(checks=("ok", "FAIL"))
        t = self.w.summary()
        self.assertEqual(row(t, 1682)[3:9], ["2.50", "350", "4.80", "11.0%c", "1.45!", "8.28!"], t)
        self.assertEqual(row(t, 1682)[-1], "1.00!", t)  # speed vs flex: the 128-block WGPX2 column's
        self.assertIn("best sparse 2.50 ms (sparse) vs best dense flash 12.00 ms (flash_wgpx2): 4.80x (goal >= 8)", t)
        self.w.compare([cmp("window", "cuda", "sparse-bs64", "bf16", 3e-3)])
        self.assertEqual(row(self.w.summary(), 1682)[7:9], ["1.45?", "8.28?"])

    def test_issue5_leaves_out_a_dense_flash_whose_compare_check_failed(self):
        # The fastest dense flash (WGPX2, 12 ms) failed its dense float64 check: the denominator is the engine's
        # flash (20 ms), in the verdict and in the table alike.
        self.sweep()
        self.w.compare([cmp("window", "cuda", "sparse-bs64", "bf16", 3e-3),
                        cmp("window", "cuda", "sparse-wgpx2-bs128", "bf16", 3e-3),
                        cmp("dense", "cuda", "flash-wgpx2", "bf16", 0.3)])
        t = self.w.summary()
        self.assertIn("best sparse 1.45 ms (wgpx2) vs best dense flash 20.00 ms (flash): 13.79x (goal >= 8): met", t)
        self.assertIn("the best dense flash ms (flash 20.00 ms, the verdict's denominator;", t)
        self.assertEqual(row(t, 1682)[5], "8.00", t)  # 20 / 2.5

    def test_issue5_not_judged_without_its_runs(self):
        self.w.bench("d", 16, 128, 32768, False, "dense", "flash", [m("flash", 440000, 20.0, reference=True)])
        t = self.w.summary()
        self.assertNotIn("issue 5 (", t.split("verdicts")[0])
        self.assertIn("  10% (W=1682: token 10.0%): not measured (no run)", t)
        self.assertIn("  sparse vs dense flash: 10% not judged, 50% not judged", t)
        self.assertIn("    first bar (>= 0.5): met on 0 of 0 measured -> not judged (0 of 2 measured, none below)", t)

    def test_issue5_a_bad_128_block_run_leaves_the_64_block_sweep_standing(self):
        # Review 148d761, finding 4: the 128-block run's WGPX2 bug marks that run's rows only.
        self.w.bench("d", 16, 128, 32768, False, "dense", "flash", [m("flash", 440000, 20.0, reference=True)])
        self.w.bench("w10", 16, 128, 32768, False, "window:1682", "sparse", [m("sparse", 3500000, 2.4, reference=True)])
        self.w.bench("x10", 16, 128, 32768, False, "window:1682", "sparse",
                     [m("sparse", 3400000, 2.6, reference=True), m("sparse", 6250000, 1.5, rel=0.3, tiling="wgpx2")],
                     bs=128)
        self.w.compare([cmp("window", "cuda", "sparse-bs64", "bf16", 3e-3),
                        cmp("window", "cuda", "sparse-wgpx2-bs128", "bf16", 5e-2)])
        t = self.w.summary()
        self.assertEqual(row(t, 1682)[3], "2.40", t)
        self.assertIn("  10% (W=1682: token 10.0%, blocks 10.5%c (sparse)): best sparse 2.40 ms (sparse) vs best dense"
                      " flash 20.00 ms (flash): 8.33x (goal >= 8): met", t)

    def test_issue5_gates_each_column_by_its_own_block_size(self):
        # Review 148d761, finding 6: the 64-block sweep timed out, so the 128-block run's engine-tiling row takes the
        # sparse column: the 64-block check (ok) says nothing of it; its own case (sparse-bs128) did not run.
        self.w.bench("d", 16, 128, 32768, False, "dense", "flash", [m("flash", 440000, 20.0, reference=True)])
        self.w.bench("w10", 16, 128, 32768, False, "window:1682", "sparse", None, status="timeout after 60s")
        self.w.bench("x10", 16, 128, 32768, False, "window:1682", "sparse",
                     [m("sparse", 3400000, 2.4, reference=True), m("sparse", 6250000, 3.0, rel=2e-3, tiling="wgpx2")],
                     bs=128)
        self.w.compare([cmp("window", "cuda", "sparse-bs64", "bf16", 3e-3),
                        cmp("window", "cuda", "sparse-wgpx2-bs128", "bf16", 5e-2)])
        self.w.torch([{"backend": "FLEX", "window": 1682, "median_ms": 2.0, "status": "ok", "block_size": 128}])
        t = self.w.summary()
        self.assertIn("  10% (W=1682: token 10.0%, blocks 11.0%c (sparse) / 11.0%c (wgpx2)): not measured (no sparse"
                      " result that counts: sparse check sparse-bs128 not run, wgpx2 check sparse-wgpx2-bs128 FAIL)", t)
        self.assertIn("10% - (our run on it: check sparse-bs128 not run, check sparse-wgpx2-bs128 FAIL)", t)

    def test_issue5_label_without_block_densities(self):
        self.w.bench("d", 16, 128, 32768, False, "dense", "flash", [m("flash", 440000, 20.0, reference=True)])
        self.w.bench("w10", 16, 128, 32768, False, "window:1682", "sparse", None, status="timeout after 60s")
        t = self.w.summary()
        self.assertIn("  10% (W=1682: token 10.0%): not measured (no sparse result that counts:", t)

    def test_the_last_line_recaps_the_verdicts(self):
        # Review 148d761, finding 10: the one line that survives a cut of the output carries the verdicts too.
        self.issue4(ours=400000)
        self.sweep(flex=False)
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=routed_doc(0.40, 2.1, 3e-3))
        os.makedirs(os.path.join(self.w.dir, "state"))
        with open(os.path.join(self.w.dir, "state", "info.txt"), "w") as f:
            f.write("card: NVIDIA H200\ncommit: abc1234\n")
        with open(os.path.join(self.w.dir, "steps.tsv"), "w") as f:
            f.write("step\tstatus\tsecs\tnote\nbench\tok\t100\t\ntorch\tpartial\t90\t\n")
        last = self.w.summary().rstrip("\n").splitlines()[-1]
        self.assertEqual(last, "recap   NVIDIA H200 | commit abc1234 | bench:ok torch:partial | issue4 bar met, goal NOT met,"
                               " mem not judged | issue5 10% NOT met, 50% NOT met, flex bar not judged, flex goal not judged |"
                               " issue6 token met,"
                               " block not judged")

    def test_issue6_token_and_block(self):
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=routed_doc(0.4254, 2.1, 3e-3))
        self.w.bench("b", 16, 128, 32768, False, "dense", "flash", route="2:4:64", doc=routed_doc(0.40, 4.2, 2e-3))
        t = self.w.summary()
        self.assertIn("  token granularity (2:4): ratio 0.4254 vs 0.425: NOT met; router 2.1% vs 5%: met; rel L2 3.0e-03 vs"
                      " bf16 1e-02: ok -> NOT met", t)
        self.assertIn("  block granularity (2:4:64): ratio 0.400 vs 0.425: met; router 4.2% vs 5%: met; rel L2 2.0e-03 vs"
                      " bf16 1e-02: ok -> met", t)
        self.assertIn("  verdict: token NOT met, block met", t)

    def test_issue6_wrong_output_and_missing_run(self):
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=routed_doc(0.30, 1.0, 0.2))
        t = self.w.summary()
        self.assertIn("  token granularity (2:4): ratio 0.300 vs 0.425: not counted; router 1.0% vs 5%: not counted; rel L2"
                      " 2.0e-01 vs bf16 1e-02: OUTSIDE -> NOT met", t)
        self.assertIn("  block granularity (2:4:64): not measured (no run)", t)
        self.assertIn("  verdict: token NOT met, block not judged", t)


class RobustReadingTest(WorkTest):
    """Review 148d761, finding 1: a number written as Jackson writes a non-finite double, or a JSON of an unexpected
    shape, never loses the summary: each section fails on its own, and summary.md is written whatever escapes."""

    def test_num_reads_jacksons_non_finite_strings(self):
        self.assertEqual(dc.num(3), 3.0)
        self.assertEqual(dc.num(2.5), 2.5)
        self.assertTrue(dc.num("NaN") != dc.num("NaN"))
        self.assertEqual(dc.num("Infinity"), float("inf"))
        self.assertEqual(dc.num("-Infinity"), float("-inf"))
        for x in (None, True, "1.5", "nan", [], {}):
            self.assertIsNone(dc.num(x), x)
        self.assertIsNone(dc.finite("NaN"))
        self.assertEqual(dc.count(64.0), 64)
        self.assertIsNone(dc.count(1.5))

    def test_routed_rel_nan_as_a_string_is_outside_the_tolerance(self):
        d = routed_doc(0.40, 2.1, 3e-3)
        d["rel_l2_routed_vs_gated_dense"] = "NaN"
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=d)
        t = self.w.summary()
        self.assertEqual(row(t, "2:4")[6:9], ["NaN", "OUT", "no/no"], t)
        self.assertIn("rel L2 NaN vs bf16 1e-02: OUTSIDE -> NOT met", t)
        self.assertTrue(os.path.exists(os.path.join(self.w.dir, "summary.md")))

    def test_routed_overhead_infinity_is_not_met(self):
        d = routed_doc(0.40, 2.1, 3e-3)
        d["router_overhead_percent"] = "Infinity"
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=d)
        self.assertIn("router inf% vs 5%: NOT met", self.w.summary())

    def test_bench_numbers_as_strings_and_null_parts(self):
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash,materialized",
                     [m("flash", 300000, 1.0, reference=True), m("materialized", 100000, 3.0, rel="NaN")])
        self.w.bench("z", 16, 128, 4096, True, "dense", "flash", doc={"config": None, "measurements": None})
        self.w.bench("e", 16, 128, 16384, False, "dense", "flash", doc={"config": {"dtype": "bf16"}})
        with open(os.path.join(self.w.dir, "bench", "e.json"), "w") as f:
            f.write("")  # a run killed while writing
        t = self.w.summary()
        self.assertEqual(row(t, "16x128", 4096, "no")[3], "disagree", t)
        self.assertIn("materialized vs flash: rel L2 NaN > 1e-02", t)
        self.assertEqual(row(t, "16x128", 16384, "no")[3], "bad", t)  # "bad JSON"
        self.assertIn("16x128 L=16384 dense: e.json unreadable (JSONDecodeError", t)

    def test_torch_json_of_another_shape_says_unreadable(self):
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash", [m("flash", 300000, 1.0, reference=True)])
        for doc in ({"rows": None}, [], "x"):
            with open(os.path.join(self.w.dir, "torch.json"), "w") as f:
                json.dump(doc, f)
            self.assertIn("torch.json unreadable (no \"rows\" list): no torch rows", self.w.summary())
        with open(os.path.join(self.w.dir, "torch.json"), "w") as f:
            f.write('{"rows": [')
        self.assertIn("torch.json unreadable (JSONDecodeError", self.w.summary())

    def test_a_section_that_raises_leaves_one_line_and_the_rest_renders(self):
        self.w.bench("r", 16, 128, 32768, False, "dense", "flash", route="2:4", doc=routed_doc(0.40, 2.1, 3e-3))
        saved = dc.routed_lines

        def broken(routed):
            raise TypeError("'<=' not supported between instances of 'str' and 'float'")
        dc.routed_lines = broken
        try:
            t = self.w.summary()
        finally:
            dc.routed_lines = saved
        self.assertIn("section routed failed: TypeError: '<=' not supported between instances of 'str' and 'float'"
                      " (device_check.py:", t)
        self.assertIn("  token granularity (2:4): ratio 0.400 vs 0.425: met", t)
        self.assertTrue(t.rstrip().splitlines()[-1].startswith("recap"), t)
        saved = dc.issue6_lines
        dc.issue6_lines = lambda out: 1 / 0
        try:
            t = self.w.summary()
        finally:
            dc.issue6_lines = saved
        self.assertIn("section issue 6 verdict failed: ZeroDivisionError: division by zero", t)
        self.assertTrue(t.rstrip().splitlines()[-1].endswith("| issue6 section failed"), t)

    def test_a_malformed_bench_row_is_named_and_the_rest_renders(self):
        # A step cut while writing runs.tsv leaves a short or garbled row: named under the table, the rest counted.
        self.w.bench("b", 16, 128, 4096, False, "dense", "flash", [m("flash", 400000, 1.0, reference=True)])
        with open(os.path.join(self.w.dir, "bench", "runs.tsv"), "a") as f:
            f.write("cut\t16\tsixteen\n")
        t = self.w.summary()
        self.assertNotIn("section bench", t)
        self.assertEqual(row(t, "16x128", 4096, "no")[3], "400", t)
        self.assertIn("  bench/runs.tsv line 3 is malformed, left out: name=cut", t)

    def test_summary_md_is_written_whatever_escapes(self):
        saved = dc.render_summary

        def broken(out, lines):
            lines.append("== headroute device check: summary ==")
            raise RuntimeError("boom")
        dc.render_summary = broken
        err = io.StringIO()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                rc = dc.main(["summary", self.w.dir])
        finally:
            dc.render_summary = saved
        self.assertEqual(rc, 1)
        with open(os.path.join(self.w.dir, "summary.md")) as f:
            md = f.read()
        self.assertIn("== headroute device check: summary ==\nsummary failed: RuntimeError: boom", md)
        self.assertIn("RuntimeError: boom", err.getvalue())


class GuardedResultsTest(WorkTest):
    """Review 148d761, finding 2: compare/results.json and sanitizer/results.json cut short (a step killed while it
    wrote them) show as unreadable, and the steps write them atomically."""

    def test_truncated_compare_and_sanitizer_results_show_as_unreadable(self):
        self.w.bench("d", 16, 128, 32768, False, "dense", "flash", [m("flash", 440000, 20.0, reference=True)])
        self.w.bench("w", 16, 128, 32768, False, "window:1682", "sparse", [m("sparse", 3500000, 2.5, reference=True)])
        os.makedirs(os.path.join(self.w.dir, "compare"))
        open(os.path.join(self.w.dir, "compare", "results.json"), "w").close()
        os.makedirs(os.path.join(self.w.dir, "sanitizer"))
        with open(os.path.join(self.w.dir, "sanitizer", "results.json"), "w") as f:
            f.write('[{"tool": "memcheck", "algo": "flash"')
        t = self.w.summary()
        self.assertIn("compare: compare/results.json unreadable (JSONDecodeError: Expecting value", t)
        self.assertIn("  sanitizer/results.json unreadable (JSONDecodeError:", t)
        self.assertIn("block size is ok: sparse-bs64 unreadable, sparse-wgpx2-bs128 unreadable)", t)
        self.assertIn("not measured (no sparse result that counts: sparse check sparse-bs64 unreadable, wgpx2 no run)", t)

    def test_results_with_null_fields(self):
        self.w.compare(None)
        self.w.bench("w", 16, 128, 32768, False, "window:1682", "sparse", [m("sparse", 3500000, 2.5, reference=True)])
        self.assertIn("block size is ok: sparse-bs64 not run, sparse-wgpx2-bs128 not run)", self.w.summary())

    def test_the_steps_write_results_atomically(self):
        d = os.path.join(self.w.dir, "san")
        os.makedirs(d)
        with open(os.path.join(d, "runs.tsv"), "w") as f:
            f.write("tool\talgo\tdtype\trc\tsecs\tstatus\tlog\n")
            f.write("memcheck\tflash\tbf16\t0\t1\tok\tm.log\n")
        with open(os.path.join(d, "m.log"), "w") as f:
            f.write("========= ERROR SUMMARY: 0 errors\n")
        replaced = []
        saved = os.replace

        def spy(src, dst):
            replaced.append((os.path.basename(src), os.path.basename(dst)))
            return saved(src, dst)
        os.replace = spy
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                dc.main(["sanitizer-eval", d])
        finally:
            os.replace = saved
        self.assertIn(("results.json.tmp", "results.json"), replaced)
        self.assertEqual(dc.read_json(os.path.join(d, "results.json"))[0]["errors"], 0)


if __name__ == "__main__":
    unittest.main()
