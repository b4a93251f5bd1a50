#!/usr/bin/env python3
"""PyTorch reference numbers for headroute's GPU benchmark, and shared inputs for an output comparison.

Runs on the lent GPU machine (PyTorch 2.11 cu130 under a plain python3) as step "torch" of
scripts/device-check.sh, or standalone:

    python3 bench/torch_reference.py --json torch.json            # everything (~1-2 min on an H100)
    python3 bench/torch_reference.py --json torch.json --quick    # a tiny subset (seconds)

What it does, in this order (the JSON file is rewritten after every row, so a timeout keeps the rows
done so far):

1. Comparison inputs (--compare-dir, default: the JSON file's folder + /compare): q, k, v drawn with
   torch.manual_seed(--seed) as float32 (B=1, H=4, L=S=1000, D=64) and saved as .npy, with the float64
   MATH-backend output of dense, causal and window attention (scale 1/sqrt(D); window: |q - k| <= 150,
   headroute's window:150, as a boolean attn_mask), as o_ref_{dense,causal,window}_f64.npy and a float32
   copy (o_ref_*_f32.npy, which headroute's .npy reader accepts). meta.json describes them. Computed on
   the CPU, so this part also runs without a GPU.
2. scaled_dot_product_attention in bf16 on the shapes of the device check's bench step: B=1,
   (H, D) in {(16, 128), (32, 64)}, L=S in {16384, 32768, 4096} (in that order: the anchor length first,
   then FlexAttention (3.), whose first compile needs ~45 s of the budget, then the others, so that a budget
   that runs out drops the short rows), causal and not, once per backend,
   each selected explicitly with torch.nn.attention.sdpa_kernel(SDPBackend.X): FLASH_ATTENTION,
   EFFICIENT_ATTENTION, CUDNN_ATTENTION, MATH (MATH only up to L=8192: it materializes L x S scores).
   A backend that refuses a shape is recorded as "unsupported: ..." (only the messages that say so: see
   sdpa_failure_status), an out-of-memory as "oom", any other failure as "error: ...".
   Inputs are fresh torch.randn per (shape, backend); --warmup untimed calls, then --repeats calls each
   timed with CUDA events; the median is reported. FLOPs = 4*B*H*L*S*D; causal 4*B*H*D*(L*S - L^2/2), half
   of it at L = S (causal_pairs: the same count as headroute bench).
   Peak memory = torch.cuda.max_memory_allocated() over the run (inputs and output included).
3. FlexAttention (torch.compile'd flex_attention with create_block_mask, block size 128) for a
   symmetric sliding window |q - k| <= W at B=1, H=16, D=128, L=S=32768 in bf16, with W chosen to
   allow ~10% and ~50% of the query-key pairs (the same pattern as headroute's window:W). Its TFLOP/s
   count only the allowed pairs (dense FLOPs x token density); the row records W, the token density,
   the block mask's density and compile_s (block mask + first call). One mask function serves every
   density (W lives in a device tensor), so flex_attention compiles once, not once per density; if
   that fails, the rows fall back to a constant W per density and record why (shared_mask_error).

JSON: {"tool", "device", "torch", "cuda", "started", "finished", "config", "rows": [{"shape": {"B","H",
"L","S","D"}, "dtype", "causal", "backend", "median_ms", "times_ms", "tflops", "peak_bytes", "status",
...}], "compare": {...}}. status is "ok", "unsupported: <reason>", "oom", "skipped: <reason>" or
"error: <reason>".

Exit status: 0 when it ran (rows may still say unsupported), 3 when torch cannot be imported, 2 on bad
arguments.
"""
import argparse
import json
import math
import os
import statistics
import struct
import sys
import time

BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
HEAD_CONFIGS = ((16, 128), (32, 64))
LENGTHS = (4096, 16384, 32768)
MATH_MAX_LEN = 8192
ANCHOR_LEN = 16384  # the published anchors' length (FlashAttention-2/3, cuDNN on an H100 at 16K)
FLEX_LEN = 32768
FLEX_HEADS, FLEX_DIM = 16, 128
FLEX_BLOCK = 128
FLEX_DENSITIES = (0.05, 0.10, 0.25, 0.50)  # the same windows as the device check's sparse density sweep
# The order FlexAttention is timed in: issue 5's goals (~10%, ~50%) first, as the time budget may stop the rest.
FLEX_ORDER = (0.10, 0.50, 0.05, 0.25)
COMPARE_SHAPE = (1, 4, 1000, 64)  # B, H, L=S, D
# The window reference's W (|q - k| <= W, headroute's window:W): at L = S = 1000, 64- and 128-blocks that are full,
# partial and skipped, and a last block of each size cut short - the density sweep's pattern at a small size.
COMPARE_WINDOW = 150


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="PyTorch SDPA / FlexAttention reference timings and comparison inputs for headroute.",
        epilog="Writes JSON rows {shape, dtype, causal, backend, median_ms, tflops, peak_bytes, status}.")
    p.add_argument("--json", default="torch.json", metavar="FILE", help="output JSON file (default: %(default)s)")
    p.add_argument("--compare-dir", metavar="DIR",
                   help="folder for the comparison inputs and references (default: <json folder>/compare)")
    p.add_argument("--quick", action="store_true",
                   help="tiny subset: L=1024 and 2048, one head config, flash and efficient only, flex at L=4096")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed calls per row (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, metavar="N", help="timed calls per row, median reported (default: %(default)s)")
    p.add_argument("--lens", metavar="L,L,...", help="override the sequence lengths (comma-separated)")
    p.add_argument("--backends", metavar="B,B,...", help="subset of " + ",".join(BACKENDS) + " (default: all)")
    p.add_argument("--no-sdpa", action="store_true", help="skip the SDPA timings")
    p.add_argument("--no-flex", action="store_true", help="skip FlexAttention")
    p.add_argument("--no-compare", action="store_true", help="skip the comparison inputs")
    p.add_argument("--seed", type=int, default=1234, help="seed of the comparison inputs (default: %(default)s)")
    p.add_argument("--budget", type=float, default=0.0, metavar="SECONDS",
                   help="soft time budget: no new row starts after it (0 = none); flex needs 45 s of it left "
                        "for its first row (the compile), 15 s for each after")
    p.add_argument("--device", default="cuda", help="torch device for the timings (default: %(default)s)")
    a = p.parse_args(argv)
    if a.warmup < 0 or a.repeats < 1:
        p.error("--warmup must be >= 0 and --repeats >= 1")
    if a.lens:
        try:
            a.lens = tuple(int(x) for x in a.lens.split(",") if x)
        except ValueError:
            p.error("--lens takes comma-separated integers")
        if not a.lens or min(a.lens) <= 0:
            p.error("--lens must be positive")
    if a.backends:
        a.backends = tuple(x.strip().upper() for x in a.backends.split(",") if x.strip())
        bad = [b for b in a.backends if b not in BACKENDS]
        if bad:
            p.error("unknown backend(s) %s; choose from %s" % (",".join(bad), ",".join(BACKENDS)))
    return a


# ---------------------------------------------------------------------------------------------- helpers

def causal_pairs(l, s):
    """The (query, key) pairs of a bottom-right-aligned causal mask (headroute's alignment: query i at key position
    i + S - L), counted as a continuous triangle: L*S - L^2/2 when L <= S, S^2/2 when L > S. L*S/2 at L = S.
    The same count as headroute's AttentionShape.causalPairs."""
    l, s = float(l), float(s)
    return l * s - l * l / 2 if l <= s else s * s / 2


def flops(b, h, l, s, d, causal):
    """4*B*H*L*S*D (two matrix products, 2 FLOPs per multiply-add); causal: 4*B*H*D*causal_pairs(L, S)."""
    return 4.0 * b * h * d * (causal_pairs(l, s) if causal else float(l) * s)


def window_for_density(s, density):
    """Smallest W with token density of |i - j| <= W over an s x s grid >= density.

    Allowed pairs = s(2W+1) - W(W+1) (the band, less the two corners cut off at the edges)."""
    target = density * s * s
    w = int(s * (1 - math.sqrt(max(0.0, 1 - density))))
    w = max(0, w - 2)
    while s * (2 * w + 1) - w * (w + 1) < target and w < s:
        w += 1
    return w


def window_density(s, w):
    return (s * (2 * w + 1) - w * (w + 1)) / float(s * s)


# How a backend says it cannot run the inputs: PyTorch's SDPA dispatcher after its per-backend checks fail ("No
# available kernel. Aborting execution.", with the reasons as warnings; "No viable backend for
# scaled_dot_product_attention was found." on other dispatch paths), and cuDNN's statuses for a configuration it does
# not support on this card. Anything else is an error, cuDNN frontend errors such as "No execution plans support the
# graph" included: they have also come from a library that failed to load (libnvrtc), a machine's fault rather than the
# shape's, and a backend that could have run the shape must count as missing (its time unknown), never as refused.
UNSUPPORTED_MESSAGES = ("No available kernel", "No viable backend for scaled_dot_product_attention",
                        "CUDNN_STATUS_NOT_SUPPORTED", "CUDNN_STATUS_ARCH_MISMATCH")


def sdpa_failure_status(exc):
    """A failed SDPA row's status: "unsupported: ..." where the message is one of UNSUPPORTED_MESSAGES, else
    "error: ..."."""
    unsupported = any(m in str(exc) for m in UNSUPPORTED_MESSAGES)
    return ("unsupported: " if unsupported else "error: ") + short(exc)


def short(exc, limit=160):
    text = " ".join(str(exc).split())
    return (type(exc).__name__ + ": " + text)[:limit]


def write_npy(path, tensor):
    """Writes a CPU tensor as .npy (little-endian, C order), with numpy when present."""
    try:
        import numpy as np  # noqa: F401
        arr = tensor.detach().cpu().contiguous().numpy()
        tmp = path + ".tmp.npy"
        np.save(tmp, arr)
        os.replace(tmp, path)
        return
    except ImportError:
        pass
    import torch
    t = tensor.detach().cpu().contiguous()
    if t.dtype == torch.float64:
        descr, fmt = "<f8", "d"
    else:
        t = t.to(torch.float32)
        descr, fmt = "<f4", "f"
    shape = tuple(t.shape)
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join("%d, " % n for n in shape) if len(shape) != 1 else "%d," % shape[0])
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    values = t.reshape(-1).tolist()
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        f.write(struct.pack("<%d%s" % (len(values), fmt), *values))
    os.replace(tmp, path)


class Doc:
    """The JSON document, rewritten atomically after every change."""

    def __init__(self, path, data):
        self.path = path
        self.data = data
        self.save()

    def save(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.path)

    def row(self, row):
        self.data["rows"].append(row)
        self.save()
        shape = row.get("shape", {})
        print("%-20s H=%-3s D=%-4s L=%-6s %-7s %-10s %s" % (
            row.get("backend"), shape.get("H"), shape.get("D"), shape.get("L"),
            "causal" if row.get("causal") else "dense",
            ("%.1f TF/s" % row["tflops"]) if row.get("tflops") else "",
            row.get("status")), flush=True)


# ------------------------------------------------------------------------------------------- the parts

def make_compare(torch, args, doc):
    out = args.compare_dir
    os.makedirs(out, exist_ok=True)
    b, h, n, d = COMPARE_SHAPE
    g = torch.Generator(device="cpu")
    g.manual_seed(args.seed)
    torch.manual_seed(args.seed)
    q = torch.randn(b, h, n, d, dtype=torch.float32, generator=g)
    k = torch.randn(b, h, n, d, dtype=torch.float32, generator=g)
    v = torch.randn(b, h, n, d, dtype=torch.float32, generator=g)
    for name, t in (("q", q), ("k", k), ("v", v)):
        write_npy(os.path.join(out, name + ".npy"), t)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F
    refs = {}
    idx = torch.arange(n)
    window = (idx[:, None] - idx[None, :]).abs() <= COMPARE_WINDOW  # True: the pair takes part
    for variant, causal, mask in (("dense", False, None), ("causal", True, None), ("window", False, window)):
        with sdpa_kernel(SDPBackend.MATH):
            o = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask, is_causal=causal)
        write_npy(os.path.join(out, "o_ref_%s_f64.npy" % variant), o)
        write_npy(os.path.join(out, "o_ref_%s_f32.npy" % variant), o.float())
        refs[variant] = "o_ref_%s_f64.npy" % variant
    meta = {"source": "torch %s, SDPBackend.MATH in float64 on the CPU" % torch.__version__,
            "seed": args.seed, "shape": {"B": b, "H": h, "L": n, "S": n, "D": d}, "scale": 1 / math.sqrt(d),
            "inputs": {"q": "q.npy", "k": "k.npy", "v": "v.npy"}, "dtype": "float32", "references": refs,
            "window": COMPARE_WINDOW, "patterns": {"dense": "dense", "causal": "causal", "window": "window:%d" % COMPARE_WINDOW},
            "causal_alignment": "L = S, so top-left (torch) and bottom-right (headroute) alignment agree"}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    doc.data["compare"] = dict(meta, dir=out)
    doc.save()
    print("compare: wrote q, k, v and float64 references (%s) to %s" % (", ".join(refs), out), flush=True)


def time_calls(torch, fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), times


def sdpa_rows(torch, args, doc, deadline, part=None):
    """SDPA rows; part "anchor": the anchor length's alone, "rest": the others, None: all."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    lens = args.lens or ((1024, 2048) if args.quick else LENGTHS)
    if part == "anchor":
        lens = [n for n in lens if n == ANCHOR_LEN]
    elif part == "rest":
        lens = [n for n in lens if n != ANCHOR_LEN]
    heads = HEAD_CONFIGS[:1] if args.quick else HEAD_CONFIGS
    backends = args.backends or (("FLASH_ATTENTION", "EFFICIENT_ATTENTION") if args.quick else BACKENDS)
    dev = args.device
    # Issue 4's anchor length (16K) first, then the longest: a time budget that runs out drops the short rows.
    for n in sorted(lens, key=lambda x: (x != ANCHOR_LEN, -x)):
        for h, d in heads:
            for causal in (False, True):
                for name in backends:
                    shape = {"B": 1, "H": h, "L": n, "S": n, "D": d}
                    row = {"shape": shape, "dtype": "bf16", "causal": causal, "backend": name,
                           "median_ms": None, "times_ms": [], "tflops": None, "peak_bytes": None,
                           "flops": flops(1, h, n, n, d, causal)}
                    if deadline and time.time() > deadline:
                        row["status"] = "skipped: time budget"
                        doc.row(row)
                        continue
                    if name == "MATH" and n > MATH_MAX_LEN:
                        row["status"] = "skipped: MATH materializes L x S scores (L > %d)" % MATH_MAX_LEN
                        doc.row(row)
                        continue
                    backend = getattr(SDPBackend, name, None)
                    if backend is None:
                        row["status"] = "unsupported: SDPBackend.%s does not exist in torch %s" % (name, torch.__version__)
                        doc.row(row)
                        continue
                    q = k = v = None
                    try:
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats()
                        q = torch.randn(1, h, n, d, device=dev, dtype=torch.bfloat16)
                        k = torch.randn(1, h, n, d, device=dev, dtype=torch.bfloat16)
                        v = torch.randn(1, h, n, d, device=dev, dtype=torch.bfloat16)
                        with sdpa_kernel(backend):
                            med, times = time_calls(
                                torch, lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                args.warmup, args.repeats)
                        row.update(median_ms=med, times_ms=times, tflops=row["flops"] / (med * 1e-3) / 1e12,
                                   peak_bytes=torch.cuda.max_memory_allocated(), status="ok")
                    except torch.cuda.OutOfMemoryError as e:
                        row["status"] = "oom: " + short(e, 120)
                    except RuntimeError as e:
                        row["status"] = sdpa_failure_status(e)
                    except Exception as e:  # noqa: BLE001 - every failure becomes a row
                        row["status"] = "error: " + short(e)
                    finally:
                        del q, k, v
                    doc.row(row)


def flex_rows(torch, args, doc, deadline):
    n = 4096 if args.quick else FLEX_LEN
    h, d = FLEX_HEADS, FLEX_DIM
    base = {"shape": {"B": 1, "H": h, "L": n, "S": n, "D": d}, "dtype": "bf16", "causal": False,
            "backend": "FLEX", "block_size": FLEX_BLOCK, "median_ms": None, "times_ms": [], "tflops": None,
            "peak_bytes": None}
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except Exception as e:  # noqa: BLE001
        for dens in FLEX_DENSITIES:
            doc.row(dict(base, target_density=dens, status="unsupported: " + short(e)))
        return
    compiled = torch.compile(flex_attention)
    # One mask function for every density, reading W from a device tensor updated in place: torch.compile
    # guards on the mask function's identity (and on constants it closes over), so a new function per
    # density would recompile flex_attention each time (the budget allows 45 s per compile; not measured here).
    # Should the shared-tensor mask fail, the rows fall back to a function with W as a constant (one compile per
    # density), and say so.
    width = torch.zeros((), dtype=torch.int32, device=args.device)

    def shared_window(b, hh, qi, ki):
        return (qi - ki).abs() <= width

    shared = True
    compiled_once = False
    for dens in FLEX_ORDER:
        w = window_for_density(n, dens)
        row = dict(base, target_density=dens, window=w, pattern="window:%d" % w, density=window_density(n, w),
                   flops_dense=flops(1, h, n, n, d, False))
        row["flops"] = row["flops_dense"] * row["density"]
        need = 15 if shared and compiled_once else 45
        if deadline and time.time() > deadline - need:
            row["status"] = "skipped: time budget (flex needs ~%d s to %s)" % (
                need, "run" if need < 45 else "compile and run")
            doc.row(row)
            continue
        q = k = v = None
        try:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            q = torch.randn(1, h, n, d, device=args.device, dtype=torch.bfloat16)
            k = torch.randn(1, h, n, d, device=args.device, dtype=torch.bfloat16)
            v = torch.randn(1, h, n, d, device=args.device, dtype=torch.bfloat16)
            t0 = time.time()
            mask = None
            if shared:
                try:
                    width.fill_(w)
                    mask = create_block_mask(shared_window, B=None, H=None, Q_LEN=n, KV_LEN=n, device=args.device,
                                             BLOCK_SIZE=FLEX_BLOCK)
                    compiled(q, k, v, block_mask=mask)  # compiles on the first density only
                    row["mask_mod"] = "shared (W in a device tensor)"
                except torch.cuda.OutOfMemoryError:
                    raise
                except Exception as e:  # noqa: BLE001 - fall back to a constant W, recorded in the row
                    shared = False
                    mask = None
                    row["shared_mask_error"] = short(e)
            if mask is None:
                def constant_window(b, hh, qi, ki, w=w):
                    return (qi - ki).abs() <= w

                mask = create_block_mask(constant_window, B=None, H=None, Q_LEN=n, KV_LEN=n, device=args.device,
                                         BLOCK_SIZE=FLEX_BLOCK)
                compiled(q, k, v, block_mask=mask)  # compile outside the timing
                row["mask_mod"] = "constant W (one compile per density)"
            torch.cuda.synchronize()
            compiled_once = True
            row["compile_s"] = time.time() - t0
            try:
                row["block_density"] = 1.0 - float(mask.sparsity()) / 100.0
            except Exception:  # noqa: BLE001 - older/newer BlockMask without sparsity()
                row["block_density"] = None
            med, times = time_calls(torch, lambda: compiled(q, k, v, block_mask=mask), args.warmup, args.repeats)
            row.update(median_ms=med, times_ms=times, tflops=row["flops"] / (med * 1e-3) / 1e12,
                       tflops_dense_equivalent=row["flops_dense"] / (med * 1e-3) / 1e12,
                       peak_bytes=torch.cuda.max_memory_allocated(), status="ok")
        except torch.cuda.OutOfMemoryError as e:
            row["status"] = "oom: " + short(e, 120)
        except Exception as e:  # noqa: BLE001
            row["status"] = "error: " + short(e)
        finally:
            del q, k, v
        doc.row(row)


def main(argv=None):
    args = parse_args(argv)
    if not args.compare_dir:
        args.compare_dir = os.path.join(os.path.dirname(os.path.abspath(args.json)), "compare")
    started = time.time()
    deadline = started + args.budget if args.budget > 0 else 0.0
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        print("torch_reference: torch cannot be imported: %s" % short(e), file=sys.stderr)
        return 3
    cuda = torch.cuda.is_available() and args.device.startswith("cuda")
    doc = Doc(args.json, {
        "tool": "bench/torch_reference.py",
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if cuda else "none (no CUDA device)",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "finished": None,
        "config": {"quick": args.quick, "warmup": args.warmup, "repeats": args.repeats, "dtype": "bf16",
                   "flop_formula": "4*B*H*L*S*D; causal 4*B*H*D*(L*S - L^2/2) (half at L = S); FLEX: times the token"
                                   " density",
                   "timing": "CUDA events after warm-up, median of repeats"},
        "rows": [], "compare": None})
    print("torch_reference: torch %s (CUDA %s) on %s" % (torch.__version__, torch.version.cuda, doc.data["device"]),
          flush=True)
    if not args.no_compare:
        try:
            make_compare(torch, args, doc)
        except Exception as e:  # noqa: BLE001
            doc.data["compare"] = {"error": short(e, 300)}
            doc.save()
            print("compare: error: %s" % short(e, 300), flush=True)
    if not cuda:
        doc.data["rows"].append({"backend": "ALL", "status": "skipped: no CUDA device visible to torch"})
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        # The anchor length's SDPA rows (issue 4's comparison), then FlexAttention (issue 5's: its first compile
        # needs ~45 s of budget, which SDPA's other lengths used up before it), then SDPA's other lengths.
        if not args.no_sdpa:
            sdpa_rows(torch, args, doc, deadline, "anchor")
        if not args.no_flex:
            flex_rows(torch, args, doc, deadline)
        if not args.no_sdpa:
            sdpa_rows(torch, args, doc, deadline, "rest")
    doc.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc.data["elapsed_s"] = round(time.time() - started, 1)
    doc.save()
    print("torch_reference: %d rows in %.0f s -> %s" % (len(doc.data["rows"]), time.time() - started, args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
