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

The main loop is the natural loop (the basic blocks of a back edge whose target dominates it) holding the
most tensor-core instructions (HMMA, or HGMMA on sm_90a), then the most FFMA; --contains OPCODE picks by
another opcode. Among loops holding as many, the smallest (the innermost that holds them all). Its blocks
are the ones on a path around the loop wherever ptxas placed them: the warp-divergent fallback of a shuffle
(after the function's end) counts, code placed between the loop's blocks that leaves it does not; a branch
from such a fallback back into the loop's middle closes no loop of its own.

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
BRANCH = re.compile(r"\bBRA(?:\.\w+)*\s+(?:[^`]*,\s*)?`?\(?(\.L_x_\d+)")


def blocks_of(ins, labels):
    """Basic blocks as (first, last) instruction indices, in address order, and each one's successors (block
    numbers): a block starts at a label or after a branch or EXIT; an unpredicated BRA or EXIT does not fall through."""
    index = {a: i for i, (a, _, _) in enumerate(ins)}
    starts = {0}
    for i, (_, s, labs) in enumerate(ins):
        if labs:
            starts.add(i)
        if BRANCH.search(s) or "EXIT" in s:
            starts.add(i + 1)
    starts = sorted(x for x in starts if x < len(ins))
    blocks = [(b, (starts[k + 1] if k + 1 < len(starts) else len(ins)) - 1) for k, b in enumerate(starts)]
    number = {b: k for k, (b, _) in enumerate(blocks)}
    succ = []
    for k, (_, last) in enumerate(blocks):
        s = ins[last][1]
        out = []
        m = BRANCH.search(s)
        if m and m.group(1) in labels:
            out.append(number[index[labels[m.group(1)]]])
        ends = (m or "EXIT" in s) and not s.startswith("@") and not s.startswith("BRA.DIV")
        if not ends and k + 1 < len(blocks):
            out.append(k + 1)
        succ.append(out)
    return blocks, succ


def natural_loops(blocks, succ):
    """{header: set of blocks} for every back edge tail -> header whose header dominates its tail (a branch from an
    out-of-line block back into a loop's middle closes no loop of its own); back edges to one header merge."""
    n = len(blocks)
    pred = [[] for _ in range(n)]
    for a, out in enumerate(succ):
        for b in out:
            pred[b].append(a)

    def reachable(without):
        seen, stack = {0}, [0]
        while stack:
            for b in succ[stack.pop()]:
                if b != without and b not in seen:
                    seen.add(b)
                    stack.append(b)
        return seen

    loops = {}
    for tail, out in enumerate(succ):
        for head in out:
            if head > tail or (head != 0 and tail in reachable(head)):
                continue  # not backward, or head does not dominate tail
            body, stack = {head, tail}, [tail] if tail != head else []
            while stack:
                for p in pred[stack.pop()]:
                    if p not in body:
                        body.add(p)
                        stack.append(p)
            loops.setdefault(head, set()).update(body)
    return loops


def main_loop(ins, labels, contains=None):
    """The main loop's instruction indices (sorted; None if none): of the natural loops, the one holding the most
    `contains` opcodes (default: HMMA + HGMMA, then FFMA), the smallest among equals (the innermost that holds them
    all). Its blocks placed elsewhere (e.g. a shuffle's warp-divergent fallback after the function's end) count."""
    blocks, succ = blocks_of(ins, labels)
    best = None
    for head, body in natural_loops(blocks, succ).items():
        idx = sorted(i for k in body for i in range(blocks[k][0], blocks[k][1] + 1))
        c = collections.Counter(opcode(ins[i][1]) for i in idx)
        key = (c[contains], 0) if contains else (sum(c[t] for t in TENSOR), c["FFMA"])
        if contains and key[0] == 0:
            continue
        if best is None or (key, -len(idx)) > best[0]:
            best = ((key, -len(idx)), idx)
    return best[1] if best else None


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
    loop = main_loop(ins, labels, args.contains)
    if loop is None:
        sys.exit("sass_loop: %s has no loop" % args.kernel + (" holding %s" % args.contains if args.contains else ""))

    print("%s: %d instructions; main loop %x-%x, %d instructions" % (args.kernel, len(ins), ins[loop[0]][0],
                                                                     ins[loop[-1]][0], len(loop)))
    block, name = [], None

    def flush():
        if block:
            c = collections.Counter(opcode(s) for _, s in block)
            last = block[-1][1]
            end = last if "BRA" in last or "EXIT" in last else ""
            print("  %-12s %5x n=%-4d %-60s %s" % (name or "", block[0][0], len(block),
                                                   " ".join("%s:%d" % kv for kv in c.most_common(7)), end))

    prev = None
    for i in loop:
        a, s, labs = ins[i]
        if labs or (prev is not None and i != prev + 1):
            flush()
            block, name = [], labs[-1] if labs else None
        block.append((a, s))
        if "BRA" in s or "EXIT" in s:
            flush()
            block, name = [], None
        prev = i
    flush()
    total = collections.Counter(opcode(ins[i][1]) for i in loop)
    print("  all paths: %d instructions: %s" % (len(loop), " ".join("%s:%d" % kv for kv in total.most_common(12))))
    c = counts(total)
    print("  counts: total %(total)d tensor %(tensor)d mufu %(mufu)d other %(other)d r2ur %(r2ur)d" % c)


if __name__ == "__main__":
    main()
