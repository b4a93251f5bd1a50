#!/usr/bin/env python3
"""The main loop of a kernel in SASS: its basic blocks, their sizes and opcode mix.

A static view of what the key-tile loop issues per tile (the tensor-core kernels' loop is one tile per
iteration), for comparing two builds without a GPU. Input: a cubin (run through nvdisasm) or the text of
`nvdisasm -c` / `cuobjdump -sass`.

    nvcc -cubin -O3 -std=c++17 -arch=sm_80 -Icuda-kernels -o /tmp/mma.cubin cuda-kernels/flash_fwd_mma.cu
    scripts/sass_loop.py /tmp/mma.cubin hr_flash_fwd_bf16_d128
    nvcc -cubin -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -Icuda-kernels -o /tmp/wg.cubin \
        cuda-kernels/flash_fwd_wgmma.cu
    NVDISASM=/path/to/nvdisasm scripts/sass_loop.py /tmp/wg.cubin hr_flash_fwd_wgpx2_bf16_d128

nvdisasm comes with the CUDA toolkit (not with the nvcc-only install on the CI machines); NVDISASM names
another. --legacy-elf rewrites the cubin's ELF header to the older ABI (version 7) first, which lets an
older nvdisasm (e.g. CUDA 11.8's) read a CUDA 13 sm_80 cubin; its sm_90 output has gaps, so use sm_80.
CUDA 12.4's nvdisasm reads CUDA 13's sm_90a cubins as they are.

The main loop is the backward branch's range holding the most tensor-core instructions (HMMA, or HGMMA on
sm_90a), else the most FFMA; --contains OPCODE picks by another opcode. Among loops holding as many, the
shortest (the innermost that holds them all). Blocks placed after the function's body that branch back into
the loop (e.g. the warp-divergent fallback of a shuffle) are not part of the range, and a loop that such a
branch seems to close wins only if it holds more of them (the key loop holds every HGMMA of a tile).

A block line: its label, first address, instruction count, most frequent opcodes, and the branch that
ends it. A tile takes one path through the loop's blocks; which one depends on the mask and rescale
branches, so the reader adds up the path (the totals line is the whole loop, every path; the counts line
splits it into tensor-core, MUFU and other instructions, and counts the R2UR moves into uniform registers).
"""
import argparse
import collections
import os
import re
import struct
import subprocess
import sys
import tempfile


def disassemble(cubin, legacy):
    tool = os.environ.get("NVDISASM", "nvdisasm")
    path = cubin
    if legacy:
        data = bytearray(open(cubin, "rb").read())
        flags = struct.unpack_from("<I", data, 0x30)[0]
        sm = (flags >> 8) & 0xFF  # ABI 8 keeps the SM in bits 8-15
        data[8] = 7
        struct.pack_into("<I", data, 0x30, sm | (sm << 16) | 0x500)
        fd, path = tempfile.mkstemp(suffix=".cubin")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    try:
        return subprocess.run([tool, "-c", path], check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        sys.exit("sass_loop: %s not found: it comes with the full CUDA toolkit, not the nvcc-only install (set NVDISASM, "
                 "or pass the text of `cuobjdump -sass` instead of a cubin)" % tool)
    except subprocess.CalledProcessError as e:
        sys.exit("sass_loop: %s -c %s failed: %s" % (tool, path, (e.stderr or "").strip()[:300]))
    finally:
        if path != cubin:
            os.unlink(path)


def kernel_lines(text, name):
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith(".text."):
            inside = line.strip() == ".text.%s:" % name
            continue
        if inside:
            out.append(line)
    if not out:
        sys.exit("sass_loop: no kernel %s in the disassembly" % name)
    return out


def opcode(ins):
    return re.sub(r"^@!?U?P\w+\s+", "", ins).split()[0].split(".")[0]


TENSOR = ("HMMA", "HGMMA")


def main_loop(ins, labels, contains=None):
    """(first, last) instruction index of the main loop: of the ranges closed by a backward branch, the one holding
    the most `contains` opcodes (default: HMMA + HGMMA, else FFMA), the shortest among equals; (None, None) if none
    holds any (or there is no backward branch)."""
    index = {a: i for i, (a, _, _) in enumerate(ins)}
    loops = []
    for i, (a, s, _) in enumerate(ins):
        m = re.search(r"BRA\s+(?:`\()?(\.L_x_\d+)", s)
        if m and labels.get(m.group(1), 1 << 62) <= a:
            lo = index[labels[m.group(1)]]
            body = collections.Counter(opcode(x[1]) for x in ins[lo:i + 1])
            if contains:
                key = (body[contains], 0)
            else:
                key = (sum(body[t] for t in TENSOR), body["FFMA"])
            loops.append((key, -(i - lo), lo, i))
    if contains:
        loops = [x for x in loops if x[0][0] > 0]
    if not loops:
        return None, None
    _, _, lo, hi = max(loops)
    return lo, hi


def counts(total):
    """The loop's opcode counts split as the overhead review reads them."""
    tensor = sum(total[t] for t in TENSOR)
    n = sum(total.values())
    return {"total": n, "tensor": tensor, "mufu": total["MUFU"], "other": n - tensor - total["MUFU"],
            "r2ur": total["R2UR"]}


def parse(lines):
    """(instructions as (address, text, labels just before it), label -> address) of a kernel's SASS lines."""
    ins, labels, pending = [], {}, []
    for line in lines:
        m = re.match(r"^\s*(\.L_x_\d+):", line)
        if m:
            pending.append(m.group(1))
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", line)
        if m:
            addr = int(m.group(1), 16)
            for p in pending:
                labels[p] = addr
            ins.append((addr, m.group(2), pending))
            pending = []
    return ins, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="a cubin, or a SASS text file (.sass/.txt)")
    ap.add_argument("kernel")
    ap.add_argument("--legacy-elf", action="store_true", help="rewrite the ELF header for an older nvdisasm")
    ap.add_argument("--contains", metavar="OPCODE",
                    help="the main loop is the one holding the most of this opcode (e.g. HGMMA, LDGSTS)")
    args = ap.parse_args()
    if args.input.endswith((".sass", ".txt")):
        with open(args.input) as f:
            text = f.read()
    else:
        text = disassemble(args.input, args.legacy_elf)

    ins, labels = parse(kernel_lines(text, args.kernel))
    lo, hi = main_loop(ins, labels, args.contains)
    if lo is None:
        sys.exit("sass_loop: %s has no loop" % args.kernel + (" holding %s" % args.contains if args.contains else ""))

    print("%s: %d instructions; main loop %x-%x" % (args.kernel, len(ins), ins[lo][0], ins[hi][0]))
    block, name = [], None

    def flush():
        if block:
            c = collections.Counter(opcode(s) for _, s in block)
            last = block[-1][1]
            end = last if "BRA" in last or "EXIT" in last else ""
            print("  %-12s %5x n=%-4d %-60s %s" % (name or "", block[0][0], len(block),
                                                   " ".join("%s:%d" % kv for kv in c.most_common(7)), end))

    for a, s, labs in ins[lo:hi + 1]:
        if labs:
            flush()
            block, name = [], labs[-1]
        block.append((a, s))
        if "BRA" in s or "EXIT" in s:
            flush()
            block, name = [], None
    flush()
    total = collections.Counter(opcode(s) for _, s, _ in ins[lo:hi + 1])
    print("  all paths: %d instructions: %s" % (hi - lo + 1, " ".join("%s:%d" % kv for kv in total.most_common(12))))
    c = counts(total)
    print("  counts: total %(total)d tensor %(tensor)d mufu %(mufu)d other %(other)d r2ur %(r2ur)d" % c)


if __name__ == "__main__":
    main()
