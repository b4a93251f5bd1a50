#!/usr/bin/env python3
"""Tests of scripts/sass_loop.py's choice of a kernel's main loop, on fabricated `nvdisasm -c` text (no CUDA here).

The sm_90a attention kernels' key loop issues HGMMA, not HMMA, and holds fewer FFMA than the epilogue's
warp-divergent fallback loop; the tool once picked the latter. Run: python3 -B tests/python/test_sass_loop.py
(DeviceBundleTest does), or python3 -m pytest tests/python.
"""
import contextlib
import io
import os
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import sass_loop  # noqa: E402


def sass(kernel, body):
    """nvdisasm -c text of one kernel: body is a list of labels ('.L_x_N') and instructions, addressed 16 apart."""
    out, addr = [".text.%s:" % kernel], 0
    for x in body:
        if x.startswith(".L_x_"):
            out.append("%s:" % x)
        else:
            out.append("        /*%04x*/                   %s ;  /* 0x000fe20000000f00 */" % (addr, x))
            addr += 16
    return "\n".join(out) + "\n"


# A key loop (.L_x_1: two HGMMA, R2UR, one MUFU, one FFMA), then an epilogue loop with more FFMA (.L_x_3), then an
# out-of-line shuffle fallback that branches back into the key loop (.L_x_2 ... BRA .L_x_4).
KERNEL = sass("hr_k", [
    "MOV R1, c[0x0][0x28]",
    ".L_x_1",
    "R2UR UR4, R2",
    "HGMMA.64x64x16.F32.BF16 R24, R136, gdesc[UR4], RZ, !UPT",
    "R2UR UR4, R3",
    "HGMMA.64x64x16.F32.BF16 R24, R140, gdesc[UR4], R24, gsb0",
    "BRA.DIV UR5, `(.L_x_2)",
    ".L_x_4",
    "MUFU.EX2 R5, R5",
    "FFMA R6, R5, R7, R8",
    "@!P0 BRA `(.L_x_1)",
    ".L_x_3",
    "FFMA R9, R9, R9, R9",
    "FFMA R9, R9, R9, R9",
    "FFMA R9, R9, R9, R9",
    "@P1 BRA `(.L_x_3)",
    "EXIT",
    ".L_x_2",
    "SHFL.BFLY PT, R5, R5, 0x1, 0x1f",
    "FFMA R9, R9, R9, R9",
    "BRA `(.L_x_4)",
])


class MainLoopTest(unittest.TestCase):
    def parsed(self):
        return sass_loop.parse(sass_loop.kernel_lines(KERNEL, "hr_k"))

    def test_key_loop_is_the_one_holding_hgmma(self):
        ins, labels = self.parsed()
        lo, hi = sass_loop.main_loop(ins, labels)
        self.assertEqual((ins[lo][0], ins[hi][0]), (0x10, 0x80))

    def test_contains_picks_by_opcode(self):
        ins, labels = self.parsed()
        lo, hi = sass_loop.main_loop(ins, labels, "SHFL")
        self.assertEqual(ins[lo][1].split()[0], "MUFU.EX2")  # the fallback's range: from .L_x_4 to its branch back
        self.assertEqual(ins[hi][1], "BRA `(.L_x_4)")
        self.assertEqual(sass_loop.main_loop(ins, labels, "LDGSTS"), (None, None))

    def test_without_tensor_cores_the_most_ffma(self):
        # Counting FFMA alone picks the fallback's range (five FFMA, the epilogue loop's among them): the old choice
        # on the sm_90a kernels, whose key loop holds HGMMA and no HMMA.
        ins, labels = sass_loop.parse(sass_loop.kernel_lines(KERNEL.replace("HGMMA", "HFMA2"), "hr_k"))
        lo, hi = sass_loop.main_loop(ins, labels)
        self.assertEqual((ins[lo][0], ins[hi][1]), (0x60, "BRA `(.L_x_4)"))
        without_fallback = KERNEL.replace("HGMMA", "HFMA2").split(".L_x_2:")[0]
        ins, labels = sass_loop.parse(sass_loop.kernel_lines(without_fallback, "hr_k"))
        lo, hi = sass_loop.main_loop(ins, labels)
        self.assertEqual((ins[lo][1], hi - lo), ("FFMA R9, R9, R9, R9", 3))  # the epilogue loop

    def test_counts_line(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "k.sass")
            with open(path, "w") as f:
                f.write(KERNEL)
            out = io.StringIO()
            sys.argv = ["sass_loop.py", path, "hr_k"]
            with contextlib.redirect_stdout(out):
                sass_loop.main()
        text = out.getvalue()
        self.assertIn("main loop 10-80", text)
        self.assertIn("counts: total 8 tensor 2 mufu 1 other 5 r2ur 2", text)


if __name__ == "__main__":
    unittest.main()
