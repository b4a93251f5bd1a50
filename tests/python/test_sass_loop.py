#!/usr/bin/env python3
"""Tests of scripts/sass_loop.py's choice of a kernel's main loop, on fabricated `nvdisasm -c` text (no CUDA here).

The sm_90a attention kernels' key loop issues HGMMA, not HMMA; counting FFMA, the tool once took the range from a
shuffle's out-of-line fallback back to its target inside the key loop (the end of the function) for the main loop. Run: python3 -B tests/python/test_sass_loop.py
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


# A key loop (.L_x_1: two HGMMA, two R2UR, one MUFU, one FFMA), then an epilogue loop with three FFMA (.L_x_3), then
# an out-of-line shuffle fallback (one FFMA) that branches back into the key loop (.L_x_2 ... BRA .L_x_4).
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
    def parsed(self, text=KERNEL):
        return sass_loop.parse(sass_loop.kernel_lines(text, "hr_k"))

    def test_key_loop_is_the_one_holding_hgmma_with_its_fallback(self):
        ins, labels = self.parsed()
        loop = sass_loop.main_loop(ins, labels)
        # .L_x_1 to the back edge, and the fallback after EXIT (it returns into the loop), not the epilogue loop
        self.assertEqual([ins[i][0] for i in loop], [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0xe0, 0xf0, 0x100])

    def test_a_branch_back_into_a_loop_closes_no_loop(self):
        ins, labels = self.parsed()
        blocks, succ = sass_loop.blocks_of(ins, labels)
        heads = sorted(ins[blocks[h][0]][0] for h in sass_loop.natural_loops(blocks, succ))
        self.assertEqual(heads, [0x10, 0x90])  # .L_x_1 and .L_x_3; .L_x_4 (the fallback's target) heads none

    def test_contains_picks_by_opcode(self):
        ins, labels = self.parsed()
        loop = sass_loop.main_loop(ins, labels, "FFMA")
        self.assertEqual([ins[i][0] for i in loop], [0x90, 0xa0, 0xb0, 0xc0])  # three FFMA against the key loop's two
        self.assertIsNone(sass_loop.main_loop(ins, labels, "LDGSTS"))

    def test_without_tensor_cores_the_most_ffma(self):
        ins, labels = self.parsed(KERNEL.replace("HGMMA", "HFMA2"))
        loop = sass_loop.main_loop(ins, labels)
        self.assertEqual(ins[loop[0]][1], "FFMA R9, R9, R9, R9")  # the epilogue loop

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
        self.assertIn("main loop 10-100, 11 instructions", text)
        self.assertIn("counts: total 11 tensor 2 mufu 1 other 8 r2ur 2", text)


if __name__ == "__main__":
    unittest.main()
