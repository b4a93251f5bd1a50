#!/usr/bin/env python3
"""Tests of bench/torch_reference.py's FlexAttention rows against a stand-in torch (no torch here).

The stand-in models what matters to the rows: torch.compile "recompiles" whenever the block mask's mask
function is one it has not seen (torch.compile guards on the function's identity and on the constants it
closes over), and each call evaluates the mask function as it is at that moment, the way the kernel
evaluates partial blocks. Run: python3 -B tests/python/test_torch_reference.py (DeviceBundleTest does).
"""
import contextlib
import os
import sys
import types
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import torch_reference as ref  # noqa: E402


class Scalar:
    """A 0-d integer 'tensor' (also used for the index arguments of a mask function)."""

    def __init__(self, value):
        self.value = value

    def fill_(self, value):
        self.value = value
        return self

    def __sub__(self, other):
        return Scalar(self.value - val(other))

    def abs(self):
        return Scalar(abs(self.value))

    def __le__(self, other):
        return self.value <= val(other)


def val(x):
    return x.value if isinstance(x, Scalar) else x


def window_of(mask_mod, n):
    """The largest W with mask_mod(q=0, k=W) true, checking the band is contiguous at its edge."""
    lo, hi = 0, n - 1
    if not mask_mod(0, 0, Scalar(0), Scalar(0)):
        return -1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mask_mod(0, 0, Scalar(0), Scalar(mid)):
            lo = mid
        else:
            hi = mid - 1
    return lo


class FakeTorch:
    def __init__(self, n, fail_shared=False):
        self.n = n
        self.fail_shared = fail_shared
        self.compiled_for = []  # mask functions torch.compile has compiled for, in order
        self.calls = []  # (window seen by the call)
        self.masks = []  # window seen when each block mask was built
        self.int32 = "int32"
        self.bfloat16 = "bfloat16"
        torch = self

        class OutOfMemoryError(RuntimeError):
            pass

        class Event:
            def __init__(self, enable_timing=False):
                self.t = 0.0

            def record(self):
                torch.clock += 1.0
                self.t = torch.clock

            def synchronize(self):
                pass

            def elapsed_time(self, other):
                return other.t - self.t

        self.clock = 0.0
        self.cuda = types.SimpleNamespace(
            OutOfMemoryError=OutOfMemoryError, Event=Event, empty_cache=lambda: None,
            reset_peak_memory_stats=lambda: None, synchronize=lambda: None, max_memory_allocated=lambda: 1 << 30)

    def zeros(self, shape, dtype=None, device=None):
        assert shape == ()
        return Scalar(0)

    def randn(self, *shape, device=None, dtype=None):
        return object()

    def compile(self, fn):
        def compiled(q, k, v, block_mask=None):
            mod = block_mask.mask_mod
            if mod not in self.compiled_for:
                if self.fail_shared and mod.__closure__:
                    raise RuntimeError("captured tensors are not supported (stand-in)")
                self.compiled_for.append(mod)
            self.calls.append(window_of(mod, self.n))
        return compiled

    def flex_module(self):
        torch = self

        class BlockMask:
            def __init__(self, mask_mod):
                self.mask_mod = mask_mod

            def sparsity(self):
                return 90.0

        def create_block_mask(mask_mod, B=None, H=None, Q_LEN=None, KV_LEN=None, device=None, BLOCK_SIZE=None):
            assert (Q_LEN, KV_LEN, BLOCK_SIZE) == (torch.n, torch.n, ref.FLEX_BLOCK)
            torch.masks.append(window_of(mask_mod, torch.n))
            return BlockMask(mask_mod)

        return types.SimpleNamespace(create_block_mask=create_block_mask, flex_attention=lambda *a, **k: None)


class Doc:
    def __init__(self):
        self.rows = []

    def row(self, row):
        self.rows.append(row)


@contextlib.contextmanager
def modules(mods):
    """sys.modules with the stand-in modules in place, restored afterwards."""
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def run_flex(fake, budget=0.0):
    with modules({"torch": fake, "torch.nn": types.ModuleType("torch.nn"),
                  "torch.nn.attention": types.ModuleType("torch.nn.attention"),
                  "torch.nn.attention.flex_attention": fake.flex_module()}):
        args = ref.parse_args(["--warmup", "1", "--repeats", "3"])
        doc = Doc()
        deadline = ref.time.time() + budget if budget else 0.0
        ref.flex_rows(fake, args, doc, deadline)
        return doc.rows


class FlexRowsTest(unittest.TestCase):
    def windows(self):
        return [ref.window_for_density(ref.FLEX_LEN, d) for d in ref.FLEX_ORDER]

    def test_one_compile_for_every_density_and_each_call_sees_its_row_window(self):
        fake = FakeTorch(ref.FLEX_LEN)
        rows = run_flex(fake)
        self.assertEqual([r["status"] for r in rows], ["ok"] * len(ref.FLEX_ORDER))
        self.assertEqual(len(fake.compiled_for), 1, "flex_attention compiled more than once")
        self.assertEqual([r["window"] for r in rows], self.windows())
        self.assertEqual(fake.masks, self.windows(), "a block mask was built with another row's window")
        per_row = 1 + 1 + 3  # the compiling call, warm-up, repeats
        self.assertEqual(len(fake.calls), per_row * len(rows))
        for i, w in enumerate(self.windows()):
            self.assertEqual(fake.calls[i * per_row:(i + 1) * per_row], [w] * per_row,
                             "row %d's calls ran with another window" % i)
        for r in rows:
            self.assertEqual(r["mask_mod"], "shared (W in a device tensor)")
            self.assertAlmostEqual(r["density"], ref.window_density(ref.FLEX_LEN, r["window"]))
            self.assertEqual(r["median_ms"], 1.0)
            self.assertGreater(r["tflops"], 0)

    def test_falls_back_to_a_constant_window_and_says_why(self):
        fake = FakeTorch(ref.FLEX_LEN, fail_shared=True)
        rows = run_flex(fake)
        self.assertEqual([r["status"] for r in rows], ["ok"] * len(ref.FLEX_ORDER))
        self.assertIn("captured tensors are not supported", rows[0]["shared_mask_error"])
        self.assertNotIn("shared_mask_error", rows[1])
        self.assertEqual({r["mask_mod"] for r in rows}, {"constant W (one compile per density)"})
        self.assertEqual(len(fake.compiled_for), len(rows))
        self.assertEqual(fake.masks[-len(rows):], self.windows())
        per_row = 1 + 1 + 3
        self.assertEqual(fake.calls[-per_row:], [self.windows()[-1]] * per_row)

    def test_budget_after_the_first_compile_asks_for_less(self):
        fake = FakeTorch(ref.FLEX_LEN)
        rows = run_flex(fake, budget=30.0)  # less than a compile needs: nothing starts
        self.assertTrue(all(r["status"].startswith("skipped: time budget (flex needs ~45 s") for r in rows), rows)
        self.assertEqual(fake.calls, [])


class FlopsTest(unittest.TestCase):
    """Causal FLOPs count the pairs of the bottom-right-aligned mask, as headroute's AttentionShape.causalPairs does
    (AttentionShapeTest pins the same numbers)."""

    def test_half_only_at_equal_lengths(self):
        self.assertEqual(ref.flops(1, 16, 32768, 32768, 128, True), ref.flops(1, 16, 32768, 32768, 128, False) / 2)
        self.assertEqual(ref.flops(1, 16, 32768, 32768, 128, False), 4.0 * 16 * 32768 * 32768 * 128)

    def test_fewer_queries_than_keys(self):
        self.assertEqual(ref.causal_pairs(64, 96), 64 * 96 - 64 * 64 / 2)
        self.assertEqual(ref.flops(2, 2, 64, 96, 16, True), 4.0 * 2 * 2 * 16 * (64 * 32 + 64 * 64 / 2))

    def test_more_queries_than_keys(self):
        self.assertEqual(ref.causal_pairs(160, 96), 96 * 96 / 2)
        self.assertEqual(ref.causal_pairs(160, 96), ref.causal_pairs(96, 96))


class SdpaOrderTest(unittest.TestCase):
    def test_anchor_length_first_then_the_longest(self):
        fake = FakeTorch(ref.FLEX_LEN)
        seen = []
        fake.randn = lambda *shape, device=None, dtype=None: shape
        functional = types.ModuleType("torch.nn.functional")
        functional.scaled_dot_product_attention = lambda q, k, v, is_causal=False: seen.append(q[2])
        attention = types.ModuleType("torch.nn.attention")
        attention.SDPBackend = types.SimpleNamespace(**{b: b for b in ref.BACKENDS})

        class Kernel:
            def __init__(self, backend):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        attention.sdpa_kernel = Kernel
        nn = types.ModuleType("torch.nn")
        nn.functional, nn.attention = functional, attention
        fake.nn = nn
        doc = Doc()
        with modules({"torch": fake, "torch.nn": nn, "torch.nn.functional": functional, "torch.nn.attention": attention}):
            ref.sdpa_rows(fake, ref.parse_args(["--warmup", "0", "--repeats", "1"]), doc, 0.0)
            parts = {}
            for part in ("anchor", "rest"):
                d = Doc()
                ref.sdpa_rows(fake, ref.parse_args(["--warmup", "0", "--repeats", "1"]), d, 0.0, part)
                parts[part] = sorted({r["shape"]["L"] for r in d.rows})
        self.assertEqual(parts, {"anchor": [16384], "rest": [4096, 32768]})
        lens = []
        for r in doc.rows:
            if not lens or lens[-1] != r["shape"]["L"]:
                lens.append(r["shape"]["L"])
        self.assertEqual(lens, [16384, 32768, 4096])
        self.assertEqual(sorted(set(seen)), [4096, 16384, 32768])
        math_rows = [r for r in doc.rows if r["backend"] == "MATH"]
        self.assertTrue(all(r["status"].startswith("skipped") for r in math_rows if r["shape"]["L"] > ref.MATH_MAX_LEN))
        self.assertTrue(all(r["status"] == "ok" for r in doc.rows if r["backend"] != "MATH"), doc.rows[:2])

    def test_main_runs_the_anchor_then_flex_then_the_other_lengths(self):
        calls = []
        fake = types.SimpleNamespace(__version__="2.11", version=types.SimpleNamespace(cuda="13.0"),
                                     cuda=types.SimpleNamespace(is_available=lambda: True, get_device_name=lambda: "fake"),
                                     backends=types.SimpleNamespace(cuda=types.SimpleNamespace(
                                         matmul=types.SimpleNamespace(allow_tf32=True))))
        saved = (ref.sdpa_rows, ref.flex_rows, ref.make_compare)
        ref.sdpa_rows = lambda torch, args, doc, deadline, part=None: calls.append("sdpa:%s" % part)
        ref.flex_rows = lambda torch, args, doc, deadline: calls.append("flex")
        ref.make_compare = lambda torch, args, doc: calls.append("compare")
        try:
            import tempfile
            with tempfile.TemporaryDirectory() as d, modules({"torch": fake}):
                self.assertEqual(0, ref.main(["--json", os.path.join(d, "t.json"), "--device", "cuda"]))
        finally:
            ref.sdpa_rows, ref.flex_rows, ref.make_compare = saved
        self.assertEqual(calls, ["compare", "sdpa:anchor", "flex", "sdpa:rest"])



class SdpaFailureStatusTest(unittest.TestCase):
    """Review 148d761, finding 5: only messages that say the backend cannot run the inputs are "unsupported" (left out of
    torch's best); any other failure is an error (the shape's baseline is then partial)."""

    def test_refusals_are_unsupported(self):
        for msg in ("No available kernel. Aborting execution.",
                    "No viable backend for scaled_dot_product_attention was found.",
                    "cuDNN Frontend error: CUDNN_STATUS_NOT_SUPPORTED",
                    "CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: CUDNN_STATUS_ARCH_MISMATCH"):
            self.assertTrue(ref.sdpa_failure_status(RuntimeError(msg)).startswith("unsupported: RuntimeError: "), msg)

    def test_other_failures_are_errors(self):
        for msg in ("cuDNN Frontend error: [cudnn_frontend] Error: No execution plans support the graph.",
                    "CUDA error: operation not supported on global/shared address space",
                    "CUDA error: the launch timed out and was terminated (CUDA_ERROR_LAUNCH_TIMEOUT)",
                    "Expected query, key, and value to have the same dtype"):
            self.assertTrue(ref.sdpa_failure_status(RuntimeError(msg)).startswith("error: RuntimeError: "), msg)


if __name__ == "__main__":
    unittest.main()
