#!/usr/bin/env python3
"""Helpers of scripts/device-check.sh: tensor files, result parsing and the summary table.

Standard library only (numpy is used when present, never required), so that it runs on whatever
python3 the GPU machine has. Subcommands:

  npy-random DIR --shape B,H,L,D [--seed N]  q.npy, k.npy, v.npy: float32 standard normal
  make-compare DIR [--seed N]                comparison inputs and float64 references (dense, causal, window) with numpy
                                             (the fallback when bench/torch_reference.py made none)
  compare-eval DIR                           relative L2 errors of DIR/out/*.npy (runs.tsv) against the
                                             references; writes DIR/results.json
  junit DIR [--log LOG]                      counts of the JUnit XML reports in DIR (one line), or, where
                                             the console launcher's --details=flat log LOG saw more tests
                                             (a run cut off before its report), the log's, with the test
                                             still running
  sanitizer-eval DIR                         error counts of DIR/*.log (runs.tsv); writes DIR/results.json
  ncu-eval DIR                               the flash kernels' Nsight Compute figures from DIR/sections.csv
                                             and DIR/metrics.csv; writes DIR/results.txt and results.json
  summary OUT                                the summary table: printed, and written to OUT/summary.md
"""
import argparse
import glob
import json
import math
import os
import random
import re
import struct
import sys
import xml.etree.ElementTree as ET

COMPARE_SHAPE = (1, 4, 1000, 64)
COMPARE_WINDOW = 150  # bench/torch_reference.py's: the window reference's W (|q - k| <= W)
# Relative L2 error allowed per dtype: the GPU tests' (CudaAttentionGpuTest.tolerance) and headroute's
# AttentionBenchmark.tolerance, for the compare step, the bench rows' agreement and the routed output.
TOLERANCE = {"f32": 1e-5, "f16": 2e-3, "bf16": 1e-2}


# ------------------------------------------------------------------------------------------ .npy files

def write_npy(path, values, shape, descr="<f4"):
    fmt = {"<f4": "f", "<f8": "d"}[descr]
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join("%d, " % n for n in shape) if len(shape) != 1 else "%d," % shape[0])
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        f.write(struct.pack("<%d%s" % (len(values), fmt), *values))
    os.replace(tmp, path)


def read_npy(path):
    """(values as a flat list of floats, shape) of a little-endian f4/f8/f2 C-order .npy file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise ValueError("%s is not a .npy file" % path)
    major = data[6]
    if major == 1:
        hlen, start = struct.unpack("<H", data[8:10])[0], 10
    else:
        hlen, start = struct.unpack("<I", data[8:12])[0], 12
    header = data[start:start + hlen].decode("latin1")
    descr = re.search(r"'descr':\s*'([^']+)'", header).group(1)
    if re.search(r"'fortran_order':\s*True", header):
        raise ValueError("%s: Fortran order is not supported" % path)
    shape = tuple(int(x) for x in re.search(r"'shape':\s*\(([^)]*)\)", header).group(1).replace(" ", "").split(",") if x)
    fmt = {"<f4": "f", "<f8": "d", "<f2": "e"}.get(descr)
    if fmt is None:
        raise ValueError("%s: dtype %s is not supported" % (path, descr))
    n = 1
    for s in shape:
        n *= s
    body = data[start + hlen:]
    return list(struct.unpack("<%d%s" % (n, fmt), body[:n * struct.calcsize(fmt)])), shape


def rel_l2(x, ref):
    try:
        import numpy as np
        a = np.asarray(x, dtype=np.float64).ravel()
        b = np.asarray(ref, dtype=np.float64).ravel()
        if a.shape != b.shape:
            raise ValueError("sizes differ: %d vs %d" % (a.size, b.size))
        den = float(np.sqrt(np.sum(b * b)))
        num = float(np.sqrt(np.sum((a - b) ** 2)))
    except ImportError:
        if len(x) != len(ref):
            raise ValueError("sizes differ: %d vs %d" % (len(x), len(ref)))
        num = math.sqrt(sum((a - b) ** 2 for a, b in zip(x, ref)))
        den = math.sqrt(sum(b * b for b in ref))
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    return num / den


def load(path):
    try:
        import numpy as np
        arr = np.load(path)
        return arr.astype(np.float64).ravel(), tuple(arr.shape)
    except ImportError:
        return read_npy(path)


def cmd_npy_random(a):
    os.makedirs(a.dir, exist_ok=True)
    shape = tuple(int(x) for x in a.shape.split(","))
    n = 1
    for s in shape:
        n *= s
    rnd = random.Random(a.seed)
    for name in ("q", "k", "v"):
        write_npy(os.path.join(a.dir, name + ".npy"), [rnd.gauss(0.0, 1.0) for _ in range(n)], shape)
    # A gate (B, L, H) that switches most rows off and the first 64 rows of head 0 whole (a skipped tile):
    # the work-list and row-compaction paths of the kernels.
    b, h, l = shape[0], shape[1], shape[2]
    gate = []
    for bb in range(b):
        for i in range(l):
            for hh in range(h):
                off = (hh == 0 and i < 64) or rnd.random() < 0.8
                gate.append(0.0 if off else 0.5 + rnd.random())
    write_npy(os.path.join(a.dir, "gate.npy"), gate, (b, l, h))
    print("wrote q, k, v %s and gate %s float32 to %s" % (shape, (b, l, h), a.dir))
    return 0


def cmd_make_compare(a):
    try:
        import numpy as np
    except ImportError:
        print("make-compare: numpy is missing; no comparison inputs", file=sys.stderr)
        return 3
    os.makedirs(a.dir, exist_ok=True)
    b, h, n, d = COMPARE_SHAPE
    rng = np.random.default_rng(a.seed)
    q, k, v = (rng.standard_normal((b, h, n, d)).astype(np.float32) for _ in range(3))
    for name, t in (("q", q), ("k", k), ("v", v)):
        np.save(os.path.join(a.dir, name + ".npy"), t)
    scale = 1.0 / math.sqrt(d)
    refs = {}
    idx = np.arange(n)
    masks = {"dense": None, "causal": np.tril(np.ones((n, n), dtype=bool)),
             "window": np.abs(idx[:, None] - idx[None, :]) <= COMPARE_WINDOW}
    for variant, mask in masks.items():
        s = np.einsum("bhld,bhsd->bhls", q.astype(np.float64), k.astype(np.float64)) * scale
        if mask is not None:
            s = np.where(mask, s, -np.inf)
        s = s - s.max(axis=-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=-1, keepdims=True)
        o = np.einsum("bhls,bhsd->bhld", p, v.astype(np.float64))
        np.save(os.path.join(a.dir, "o_ref_%s_f64.npy" % variant), o)
        np.save(os.path.join(a.dir, "o_ref_%s_f32.npy" % variant), o.astype(np.float32))
        refs[variant] = "o_ref_%s_f64.npy" % variant
    meta = {"source": "numpy %s float64 (fallback: no torch reference)" % np.__version__, "seed": a.seed,
            "shape": {"B": b, "H": h, "L": n, "S": n, "D": d}, "scale": scale,
            "inputs": {"q": "q.npy", "k": "k.npy", "v": "v.npy"}, "dtype": "float32", "references": refs,
            "window": COMPARE_WINDOW, "patterns": {"dense": "dense", "causal": "causal", "window": "window:%d" % COMPARE_WINDOW}}
    write_json(os.path.join(a.dir, "meta.json"), meta)
    print("make-compare: numpy float64 references in %s" % a.dir)
    return 0


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_json_guarded(path):
    """(doc, None) of a JSON file, or (None, why) where it cannot be read (empty, or cut short: a step killed while it
    wrote it before writes were atomic, or a disk that filled)."""
    try:
        return read_json(path), None
    except (OSError, ValueError) as e:
        return None, "%s: %s" % (type(e).__name__, " ".join(str(e).split())[:100])


def write_atomic(path, text):
    """Writes text to path through a temporary file and a rename: a reader never sees it half written, and a step
    killed while writing leaves the previous file (or none), never a truncated one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path, doc):
    write_atomic(path, json.dumps(doc, indent=1))


# Jackson (the bench JSON's writer) writes a non-finite double as a string.
NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def num(x):
    """A JSON number as a float: an int or a float, or the string Jackson writes for a non-finite double ("NaN",
    "Infinity", "-Infinity"); None for anything else (missing, null, a boolean, other text). Every number the summary
    reads from a JSON file goes through here, so that no comparison meets a string."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str):
        return NON_FINITE.get(x)
    return None


def finite(x):
    """num(x) where it is finite, else None (a time or a throughput that is NaN or infinite is no result)."""
    v = num(x)
    return v if v is not None and math.isfinite(v) else None


def count(x):
    """num(x) as an int where it is a finite whole number, else None (block sizes, tile counts, byte counts)."""
    v = finite(x)
    return int(v) if v is not None and v == int(v) else None


def obj(x):
    """x where it is a JSON object, else {} (a null or a list where an object was expected)."""
    return x if isinstance(x, dict) else {}


def seq(x):
    """x where it is a JSON array, else []."""
    return x if isinstance(x, list) else []


def text_of(x):
    """x where it is a string, else "" (a status field that is null or a number)."""
    return x if isinstance(x, str) else ""


def read_text(path):
    with open(path, errors="replace") as f:
        return f.read()


def read_tsv(path):
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        lines = [ln.rstrip("\n") for ln in f if ln.strip()]
    if not lines:
        return rows
    keys = lines[0].split("\t")
    for ln in lines[1:]:
        vals = ln.split("\t")
        rows.append(dict(zip(keys, vals + [""] * (len(keys) - len(vals)))))
    return rows


def cmd_compare_eval(a):
    meta_path = os.path.join(a.dir, "meta.json")
    meta = read_json(meta_path) if os.path.exists(meta_path) else {}
    results = []
    refs = {}
    for r in read_tsv(os.path.join(a.dir, "runs.tsv")):
        res = dict(r)
        tol = TOLERANCE.get(r["dtype"], 1e-2)
        res["tol"] = tol
        out = os.path.join(a.dir, "out", r["file"])
        if r["rc"] != "0" or not os.path.exists(out):
            res["verdict"] = r.get("status") or ("fail (exit %s)" % r["rc"])
            res["rel_l2"] = None
        else:
            try:
                if r["variant"] not in refs:
                    refs[r["variant"]] = load(os.path.join(a.dir, meta["references"][r["variant"]]))
                ref, ref_shape = refs[r["variant"]]
                o, shape = load(out)
                if tuple(shape) != tuple(ref_shape):
                    raise ValueError("shape %s, reference %s" % (shape, ref_shape))
                err = rel_l2(o, ref)
                res["rel_l2"] = err
                res["verdict"] = "ok" if err <= tol else "FAIL"
            except Exception as e:  # noqa: BLE001
                res["rel_l2"] = None
                res["verdict"] = "error: %s" % e
        results.append(res)
    doc = {"source": meta.get("source"), "shape": meta.get("shape"), "window": meta.get("window"), "results": results}
    write_json(os.path.join(a.dir, "results.json"), doc)
    for r in results:
        print("%-7s %-5s %-13s %-5s %-10s %s" % (r["variant"], r["backend"], r["algo"], r["dtype"],
                                                  "-" if r["rel_l2"] is None else "%.2e" % r["rel_l2"], r["verdict"]))
    bad = [r for r in results if r["verdict"] != "ok"]
    return 1 if bad else 0


# ------------------------------------------------------------------------------------------------ JUnit

def junit_counts(folder):
    c = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "failed": [], "files": 0}
    for path in sorted(glob.glob(os.path.join(folder, "TEST-*.xml"))):
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            c.setdefault("parse_errors", []).append("%s: %s" % (os.path.basename(path), e))
            continue
        c["files"] += 1
        suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
        for s in suites:
            for case in s.iter("testcase"):
                c["tests"] += 1
                name = "%s#%s" % (case.get("classname", "?"), case.get("name", "?"))
                fail = case.find("failure")
                err = case.find("error")
                if fail is not None or err is not None:
                    node = fail if fail is not None else err
                    c["failures" if fail is not None else "errors"] += 1
                    msg = " ".join((node.get("message") or node.get("type") or "").split())
                    c["failed"].append("%s: %s" % (name, msg[:110]))
                elif case.find("skipped") is not None:
                    c["skipped"] += 1
    c["passed"] = c["tests"] - c["failures"] - c["errors"] - c["skipped"]
    return c


def console_counts(log):
    """Counts from the console launcher's --details=flat output, which it prints as tests finish (the XML
    report and the tree come only at the end, so a run cut off by a timeout leaves just this): tests
    finished (an "=> Exception" line after a Finished line: TestAbortedException is a skip, an assertion a
    failure, anything else an error), and those started but never finished (running when it stopped)."""
    c = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "failed": [], "files": 0, "running": []}
    if not os.path.exists(log):
        c["passed"] = 0
        return c
    lines = read_text(log).splitlines()
    started = {}
    for i, ln in enumerate(lines):
        m = re.match(r"^(Started|Finished|Skipped):\s+(.*) \((\[engine:.*\])\)\s*$", ln)
        if not m:
            continue
        kind, name, uid = m.groups()
        if not re.search(r"\[(method|test-template-invocation|dynamic-test):", uid):
            continue  # a container
        cls = re.search(r"\[class:([^\]]+)\]", uid)
        full = "%s#%s" % (cls.group(1) if cls else "?", name)
        if kind == "Started":
            started[uid] = full
            continue
        c["tests"] += 1
        if kind == "Skipped":
            c["skipped"] += 1
            continue
        started.pop(uid, None)
        e = re.match(r"^\s+=> Exception: (\S+?)(?:: (.*))?$", lines[i + 1] if i + 1 < len(lines) else "")
        if e:
            if "TestAbortedException" in e.group(1):
                c["skipped"] += 1
            else:
                c["failures" if "Assertion" in e.group(1) else "errors"] += 1
                c["failed"].append("%s: %s" % (full, " ".join((e.group(2) or e.group(1)).split())[:110]))
    c["running"] = list(started.values())
    c["passed"] = c["tests"] - c["failures"] - c["errors"] - c["skipped"]
    return c


def gpu_test_counts(folder, log):
    """The XML reports' counts, or the console log's (marked from_log) where the log saw more tests: each
    engine's report is written when that engine finishes, so a run cut off leaves the Jupiter tests only
    in the log (and maybe an empty suite engine's report)."""
    c = junit_counts(folder)
    if log and os.path.exists(log):
        lc = console_counts(log)
        if lc["tests"] > c["tests"]:
            lc["from_log"] = True
            return lc
    return c


def cmd_junit(a):
    c = gpu_test_counts(a.dir, a.log)
    if c["files"] == 0 and not c.get("from_log"):
        print("no JUnit XML report in %s and no test in the console log" % a.dir)
        return 1
    print("%d tests: %d passed, %d failed, %d errors, %d skipped%s" % (
        c["tests"], c["passed"], c["failures"], c["errors"], c["skipped"],
        "" if not c.get("from_log") else "; from the console log (cut off before the XML report)%s" % (
            "; still running: " + ", ".join(c["running"])[:120] if c["running"] else "")))
    return 0 if c["failures"] == 0 and c["errors"] == 0 and c["tests"] > 0 and not c.get("from_log") else 1


# -------------------------------------------------------------------------------------------- sanitizer

def sanitizer_counts(log):
    text = read_text(log) if os.path.exists(log) else ""
    res = {"summary": None, "errors": None, "memory": 0, "races": 0, "api": 0}
    m = re.search(r"ERROR SUMMARY:\s*(\d+) errors?", text)
    if m:
        res["errors"] = int(m.group(1))
        res["summary"] = m.group(0)
    m = re.search(r"RACECHECK SUMMARY:\s*(\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)", text)
    if m:
        res["summary"] = m.group(0)
        res["errors"] = int(m.group(2))
        res["race_warnings"] = int(m.group(3))
    res["memory"] = len(re.findall(r"Invalid __(?:global|shared|local)__ (?:read|write)|Misaligned|out of bounds", text))
    res["races"] = len(re.findall(r"(?:Error|Warning): Race reported", text))
    res["api"] = len(re.findall(r"Program hit .* on CUDA API call", text))
    return res


def cmd_sanitizer_eval(a):
    results = []
    for r in read_tsv(os.path.join(a.dir, "runs.tsv")):
        res = dict(r)
        res.update(sanitizer_counts(os.path.join(a.dir, r["log"])))
        results.append(res)
        print("%-9s %-13s %-5s exit %-4s %s" % (r["tool"], r["algo"], r["dtype"], r["rc"],
                                               res["summary"] or r.get("status") or "no sanitizer summary"))
    write_json(os.path.join(a.dir, "results.json"), results)
    return 0


# ------------------------------------------------------------------------------------------------- ncu

NCU_ROWS = ["Duration", "Compute (SM) Throughput", "Memory Throughput", "L1/TEX Cache Throughput",
            "L2 Cache Throughput", "DRAM Throughput", "Issue Slots Busy", "Executed Ipc Active", "L2 Hit Rate",
            "Registers Per Thread", "Theoretical Occupancy", "Achieved Occupancy",
            "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
            "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum",
            "smsp__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active",
            "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active"]
NCU_LABEL = {"sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active": "tensor pipe active % of peak",
             "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active": "wgmma pipe active % of peak",
             "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum": "shared-memory wavefronts",
             "smsp__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active": "XU pipe (exp2) % of peak"}


def ncu_tiling(kernel):
    """w4, w2, w4x2, wg, wgp, wgx2 or wgpx2 from a flash kernel's name (ncu may print it with its parameter list)."""
    name = (kernel or "?").split("(")[0].strip()
    m = re.match(r"hr_flash_fwd_(w2|w4x2|wgpx2|wgx2|wgp|wg)_", name)
    return m.group(1) if m else ("w4" if name.startswith("hr_flash_fwd_") else name)


def ncu_csv_rows(path):
    """The CSV records of an ncu --csv log (its ==PROF== and other tool lines dropped)."""
    import csv
    if not os.path.exists(path):
        return []
    lines = [ln for ln in read_text(path).splitlines(True) if ln.startswith('"')]
    return list(csv.reader(lines))


def ncu_table(dir_):
    """{tiling: {row: "value unit"}} from the details page (sections) and the raw page (metrics)."""
    table = {}
    rows = ncu_csv_rows(os.path.join(dir_, "sections.csv"))
    if rows and "Metric Name" in rows[0] and "Metric Value" in rows[0]:
        h = rows[0]
        ik, im, iu, iv = (h.index("Kernel Name"), h.index("Metric Name"), h.index("Metric Unit"),
                          h.index("Metric Value"))
        for r in rows[1:]:
            if len(r) <= max(ik, im, iu, iv):
                continue
            cell = table.setdefault(ncu_tiling(r[ik]), {})
            name = r[im]
            unit = r[iu].strip()
            # "Memory Throughput" is a % in SpeedOfLight and bytes/s in MemoryWorkloadAnalysis: the first wins.
            # Units that say what the number is (%, time, bytes/s); counts go bare.
            keep = (unit == "%" or unit in ("ns", "nsecond", "us", "usecond", "ms", "msecond", "s", "second")
                    or unit.endswith("byte/s") or unit.endswith("byte/second"))
            cell.setdefault(name, (r[iv] + (" " + unit if keep else "")).strip())
    for raw in ("metrics.csv", "metrics_gmma.csv"):
        rows = ncu_csv_rows(os.path.join(dir_, raw))
        if not rows or "Kernel Name" not in rows[0]:
            continue
        h = rows[0]
        ik = h.index("Kernel Name")
        for r in rows[1:]:
            # The raw page's second record holds the units (no kernel name).
            if len(r) != len(h) or not r[ik] or not r[ik].startswith("hr_"):
                continue
            cell = table.setdefault(ncu_tiling(r[ik]), {})
            for i, name in enumerate(h):
                if "__" in name:
                    cell.setdefault(name, r[i])
    return table


def cmd_ncu_eval(a):
    table = ncu_table(a.dir)
    known = ("w4", "w2", "w4x2", "wg", "wgp", "wgx2", "wgpx2")
    order = [t for t in known if t in table] + sorted(t for t in table if t not in known)
    lines = []
    if not order:
        lines.append("no ncu figures (see ncu/sections.log)")
    else:
        lines.append("Duration: " + ", ".join("%s %s" % (t, table[t].get("Duration", "?")) for t in order))
        lines.append("%-34s %s" % ("flash bf16 H16 D128 L=S=8192", " ".join("%16s" % t for t in order)))
        for row in NCU_ROWS:
            if any(row in table[t] for t in order):
                label = NCU_LABEL.get(row, row)
                lines.append("%-34s %s" % (label, " ".join("%16s" % table[t].get(row, "-")[:16] for t in order)))
    text = "\n".join(lines)
    print(text)
    write_atomic(os.path.join(a.dir, "results.txt"), text + "\n")
    write_json(os.path.join(a.dir, "results.json"), table)
    return 0


# ---------------------------------------------------------------------------------------------- summary

def read_kv(path):
    kv = {}
    if os.path.exists(path):
        for ln in read_text(path).splitlines():
            if ":" in ln:
                k, v = ln.split(":", 1)
                kv[k.strip()] = v.strip()
    return kv


def short_status(text):
    """A table cell of at most 8 characters for a status text: ok, skip, timeout, exit N, no fit (the memory plan
    refused it), oom (out of memory while it ran), WRONG (an output with NaN/inf), unsupp. (unsupported), error, or
    the text's first word cut to 8."""
    t = (text or "?").strip()
    low = t.lower()
    if low.startswith("skip"):
        return "skip"
    if low.startswith("timeout"):
        return "timeout"
    if low.startswith("unsupported"):
        return "unsupp."
    if low.startswith("wrong"):
        return "WRONG"
    if low.startswith("oom") or low.startswith("out of memory"):
        return "oom"
    if "does not fit" in low or "no fit" in low:
        return "no fit"
    m = re.search(r"exit (\d+)", low)
    if m:
        return "exit " + m.group(1)
    return t.split(":")[0][:8]


def fmt_tf(x):
    return "-" if x is None else ("%.1f" % x if x < 100 else "%.0f" % x)


def bench_tolerance(data):
    """The relative L2 distance two rows of a bench run (its dtype) may be apart: TOLERANCE, bf16 by default."""
    return TOLERANCE.get(text_of(obj(obj(data).get("config")).get("dtype")) or "bf16", TOLERANCE["bf16"])


def algo_label(m):
    """A bench measurement's column: flash, materialized, sparse, or flash_w2, sparse_wgpx2, ... for a tiling's row."""
    return (m.get("algorithm") or "") + ("_" + m["tiling"] if m.get("tiling") else "")


def bench_doc(data):
    """A bench JSON as the summary reads it: {"config": {...}, "measurements": [...]}, each measurement's numbers read
    through num (NaN and infinity as Jackson writes them included) and its texts as strings; {} for no JSON."""
    data = obj(data)
    cfg = dict(obj(data.get("config")))
    cfg["block_size"] = count(cfg.get("block_size"))
    for k in ("dtype", "flash_tiling", "sparse_tiling"):
        cfg[k] = text_of(cfg.get(k))
    ms = []
    for m in seq(data.get("measurements")):
        if not isinstance(m, dict):
            continue
        row = dict(m)
        for k in ("algorithm", "tiling", "status", "skipped", "error", "score_dtype"):
            row[k] = text_of(m.get(k))
        for k in ("gflops", "median_ms"):
            row[k] = finite(m.get(k))
        row["rel_l2_vs_first"] = num(m.get("rel_l2_vs_first"))
        for k in ("peak_device_bytes", "key_tiles_visited", "key_tiles_skipped"):
            row[k] = count(m.get(k))
        ms.append(row)
    return {"config": cfg, "measurements": ms} if data else {}


def reference_index(ms):
    """The index of a bench run's reference row: the one marked "reference" (the first finite output), or in a JSON
    from before that key, the first row that ran (rel 0)."""
    for i, m in enumerate(ms):
        if m.get("reference") is True:
            return i
    if any("reference" in m for m in ms):
        return None  # the run has no finite output at all
    for i, m in enumerate(ms):
        if m.get("status") == "ok" and num(m.get("rel_l2_vs_first")) == 0:
            return i
    return None


def run_checks(data):
    """{label: mark} of a bench run's rows that are no result: "WRONG" (an output with NaN or inf, the reference's
    included), "disagree" (further than the dtype's tolerance from the run's reference: then the row AND the
    reference are marked, as two rows cannot tell which is right); and the notes saying why."""
    data = bench_doc(data)
    ms = data.get("measurements", [])
    tol = bench_tolerance(data)
    ref = reference_index(ms)
    marks, notes = {}, []
    for i, m in enumerate(ms):
        label = algo_label(m)
        st = m.get("status") or ""
        if st.startswith("wrong") or m.get("output_finite") is False:
            marks[label] = "WRONG"
            notes.append("%s: output has NaN/inf (%s)" % (label, st or "output_finite false"))
            continue
        if st != "ok" or i == ref or ref is None:
            continue
        rel = num(m.get("rel_l2_vs_first"))
        if rel is None or not (rel <= tol):
            ref_label = algo_label(ms[ref])
            marks[label] = marks.get(label) or "disagree"
            marks[ref_label] = marks.get(ref_label) or "disagree"
            notes.append("%s vs %s: rel L2 %s > %.0e" % (label, ref_label, "NaN" if rel is None else fmt_err(rel, tol),
                                                          tol))
    return marks, notes


def flex_line(rows):
    """How FlexAttention's mask was built and compiled: the shared-W mask compiles once; its fallback once per density."""
    rows = sorted(rows, key=lambda r: r.get("target_density") or 0)
    kinds = sorted({r.get("mask_mod") for r in rows if r.get("mask_mod")})
    comp = ", ".join("%s%%: %.1f s" % (round(100 * (r.get("target_density") or 0)), r["compile_s"]) for r in rows
                     if r.get("compile_s") is not None)
    text = "flex mask: %s; mask + first call %s" % (" / ".join(kinds) or "none built", comp or "-")
    errors = [r["shared_mask_error"] for r in rows if r.get("shared_mask_error")]
    if errors:
        text += "; shared-W mask failed: " + errors[0][:120]
    return text


def memory_lines(cells):
    """Issue 4's memory goal at L = 32768 (bf16 H16 D128 dense): flash's peak against Q+K+V+O (bf16) + lse (fp32),
    goal <= 1.05x; materialized's next to the issue's own figure, its 16 x 32768^2 scores alone, and to the memory
    plan's (those scores, fp32 ones with a bf16 copy of P, plus Q+K+V+O+lse). The peaks are the engine's device-pool
    accounting (the bytes headroute held during a call), not a device-level figure: nothing here measures that."""
    h, d, n = 16, 128, 32768
    c = cells.get((h, d, n, False, "dense"), {})
    io = 4 * h * n * d * 2 + h * n * 4
    lines = ["memory, bf16 H16 D128 L=S=32768 (pool peak = the engine's device-pool accounting: bytes headroute held"
             " during a call; no device-level figure)"]
    fl = c.get("flash", {})
    if fl.get("peak") and fl["peak"] > 0:
        ratio = fl["peak"] / float(io)
        lines.append("  flash pool peak %.1f MiB, Q+K+V+O+lse %.1f MiB: %sx (goal <= 1.05: %s)"
                     % (fl["peak"] / 2.0 ** 20, io / 2.0 ** 20, fmt_vs(ratio, 1.05, digits=3),
                        "met" if ratio <= 1.05 else "NOT met"))
    else:
        lines.append("  flash pool peak not measured (%s)" % fl.get("text", "no run"))
    ma = c.get("materialized", {})
    if ma.get("peak") and ma["peak"] > 0:
        f32 = ma.get("scores") == "f32"
        issue = h * n * n * (4 if f32 else 2)
        # The plan: scores in the input dtype, 2 bytes each; in fp32, S (4) beside P in bf16 (2).
        plan = io + h * n * n * (6 if f32 else 2)
        lines.append("  materialized pool peak %.2f GiB; the issue's figure, 16 heads x 32768^2 scores x %d B = %.2f GiB"
                     " (scores alone): %.3fx; with Q+K+V+O+lse%s %.2f GiB: %.3fx"
                     % (ma["peak"] / 2.0 ** 30, 4 if f32 else 2, issue / 2.0 ** 30, ma["peak"] / float(issue),
                        " and P in bf16" if f32 else "", plan / 2.0 ** 30, ma["peak"] / float(plan)))
    else:
        lines.append("  materialized pool peak not measured (%s); the issue's figure, 16 heads x 32768^2 bf16 scores x 2 B"
                     " = 32.00 GiB" % ma.get("text", "no run"))
    return lines


def window_density(n, w):
    """Token density of |i - j| <= W on an n x n grid: allowed pairs / n^2 (torch_reference.py's window_density)."""
    return (n * (2 * w + 1) - w * (w + 1)) / float(n * n)


def window_for_density(s, density):
    """torch_reference.py's window_for_density (the bench step's windows): the smallest W of token density >= density."""
    target = density * s * s
    w = max(0, int(s * (1 - math.sqrt(max(0.0, 1 - density)))) - 2)
    while s * (2 * w + 1) - w * (w + 1) < target and w < s:
        w += 1
    return w


def layout_block_density(n, w, b):
    """Block density of |i - j| <= W (None: dense) in b x b blocks (the last cut short): the blocks with any allowed
    pair over all blocks, as a block-sparse layout (or FlexAttention's block mask) counts them."""
    nb = (n + b - 1) // b
    if w is None:
        return 1.0
    count = 0
    for qb in range(nb):
        q0, q1 = qb * b, min(n, qb * b + b) - 1
        count += min(nb - 1, (q1 + w) // b) - max(0, (q0 - w) // b) + 1
    return count / float(nb * nb)


def tile_density(cell):
    """The block density a sparse run's kernel reports: key tiles run / (run + skipped), or None."""
    run, skipped = (cell.get("tiles") or (None, None))
    if run is None or skipped is None or run < 0 or skipped < 0 or run + skipped == 0:
        return None
    return run / float(run + skipped)


SWEEP_SHAPE = (16, 128, 32768)  # issue 5's: bf16 H16 D128 L=S=32768
SWEEP_GOALS = ((0.10, 8.0), (0.50, 1.8))  # (token density of the row, sparse-over-dense-flash goal)


def density_rows(cells, trows):
    """Issue 5's density sweep, one dict per window W (None: the dense pattern through the sparse kernel): token
    density, our sparse cells (the engine's tiling; WGPX2), their block densities, the dense flash baselines, and
    FlexAttention's row. Cells that are no result (WRONG, disagree) carry no time."""
    h, d, n = SWEEP_SHAPE
    flex = {r.get("window"): r for r in trows if r.get("backend") == "FLEX" and r.get("window") is not None}
    # Rows of a FlexAttention that never ran (its import failed) have a density but no window: the bench step's W.
    for r in trows:
        if r.get("backend") == "FLEX" and r.get("window") is None and r.get("target_density") is not None:
            flex.setdefault(window_for_density(r["shape"].get("L") or n, r["target_density"]), r)
    sweep = {}
    tilings = set()
    checks = []
    for k, v in cells.items():
        if (k[0], k[1], k[2], k[3]) == (h, d, n, False) and "sparse" in v:
            w = int(k[4].split(":")[1]) if k[4].startswith("window:") else None
            sweep[w] = (v["sparse"], v.get("sparse_wgpx2", {}))
            checks += ["W=%s: %s" % (w, c) for c in v.get("checks", [])]
            if v.get("sparse_tiling"):
                tilings.add(v["sparse_tiling"].upper())
    dense = cells.get((h, d, n, False, "dense"), {})
    rows = []
    for w in sorted(set(flex) | set(sweep), key=lambda x: (x is None, x or 0)):
        sp, x2 = sweep.get(w, ({}, {}))
        blocks = []
        for c in (sp, x2):
            bd = tile_density(c)
            blocks.append((bd, "") if bd is not None else
                          ((layout_block_density(n, w, c["bs"]), "c") if c.get("bs") else (None, "")))
        rows.append({"w": w, "token": 1.0 if w is None else window_density(n, w), "sparse": sp, "wgpx2": x2,
                     "blocks": blocks[0], "blocks_x2": blocks[1], "flex": flex.get(w, {})})
    return {"rows": rows, "tilings": sorted(tilings), "dense": dense, "checks": checks}


def fmt_pct(x, mark=""):
    return "-" if x is None else "%.1f%%%s" % (100 * x, mark)


def best_dense_flash(dense, fchecks):
    """(ms, label) of the fastest dense flash column at the sweep's shape (issue 5's denominator), or None. A column
    whose compare-step float64 check of the dense case FAILED does not count (as for issue 4): a wrong kernel's
    time is no baseline."""
    flash = [(dense[a]["ms"], a) for a in FLASH_LABELS
             if dense.get(a, {}).get("ms") and not check_failed(fchecks, a, False)]
    return min(flash) if flash else None


def density_lines(sweep, out):
    """The density table (issue 5)."""
    rows = sweep["rows"]
    if not rows:
        return []
    best = best_dense_flash(sweep["dense"], flash_checks(out)[0])
    checks, check_line = sweep_checks(out)

    def mark(col, cell):
        """"" where the column's own compare-step window check is ok, "!" where it FAILED, "?" where it did not run."""
        v = sweep_check(checks, col, cell)[1]
        return "" if v == "ok" else "!" if v == "FAIL" else "?"

    def ms_x(col, cell):
        ms = cell.get("ms")
        if not ms:
            return cell.get("text", "-"), "-"
        mk = mark(col, cell)
        return "%.2f%s" % (ms, mk), (fmt_vs(best[0] / ms, 8.0, 1.8) + mk) if best else "-"
    goals = ", ".join("W=%d (token %d%%)" % (window_for_density(SWEEP_SHAPE[2], t), round(100 * t)) for t, _ in SWEEP_GOALS)
    lines = ["block-sparse vs density (issue 5), bf16 H16 D128 L=S=32768, window |q-k|<=W (None = dense through the"
             " sparse kernel)",
             "  " + check_line,
             "  token = allowed pairs / L*S; blocks = the kernel's key tiles run / (run + skipped) from its bench JSON"
             " (c: computed from the layout at the run's block size); flex blk = FlexAttention's block mask density;"
             " the issue's 10%% and 50%% rows are the token-density ones, %s: their block densities are at least as high" % goals,
             "  TF/s = effective TFLOP/s on token-density FLOPs (4*B*H*L*S*D x token density), the count FlexAttention's"
             " rows use too; x-best = the best dense flash ms (%s, the verdict's denominator; a tiling whose dense compare check FAILED is left out) / sparse ms (issue 5: >= 8"
             " at 10%%, >= 1.8 at 50%%); ! = the column's own compare-step window check (its tiling and block size)"
             " FAILED, ? = that check did not run: such numbers count nowhere; speed vs flex = flex ms / our faster"
             " sparse ms on flex's block size: >= 1 is faster than Flex (* where only another block size ran: not the"
             " same block mask, counted nowhere)" % ("%s %.2f ms" % (best[1], best[0]) if best else "none measured"),
             "  sparse = the engine's tiling (%s), wgpx2 = sparse[wgpx2] where run" % ("/".join(sweep["tilings"]) or "W4")]

    def sizes(cells, key):
        return "/".join(str(b) for b in sorted({c[key] for c in cells if c.get(key)})) or "-"

    lines.append("  block sizes: sparse %s, wgpx2 %s, flex %s" % (
        sizes([r["sparse"] for r in rows], "bs"), sizes([r["wgpx2"] for r in rows], "bs"),
        sizes([r["flex"] for r in rows], "block_size")))
    fmt = "  %-6s %-7s %-8s %-9s %-7s %-8s %-8s %-9s %-8s %-8s %-9s %s"
    lines.append(fmt % ("W", "token", "blocks", "sparse ms", "TF/s", "x-best", "blocks", "wgpx2 ms", "x-best",
                        "flex blk", "flex ms", "speed vs flex"))
    for r in rows:
        sp, x2, fx = r["sparse"], r["wgpx2"], r["flex"]
        fx_ms = fx.get("median_ms")
        ratio, star, col = speed_vs_flex(r)
        lines.append(fmt % ((r["w"], fmt_pct(r["token"]), fmt_pct(*r["blocks"]), ms_x("sparse", sp)[0],
                             fmt_tf(sp["tf"] * r["token"]) if sp.get("tf") else "-", ms_x("sparse", sp)[1],
                             fmt_pct(*r["blocks_x2"])) + ms_x("wgpx2", x2) + (
            fmt_pct(fx.get("block_density")), "%.2f" % fx_ms if fx_ms else short_status(fx.get("status", "-")),
            fmt_vs(ratio, 0.5, 1.0) + star + mark(col, r[col]) if ratio is not None else "-")))
    for c in sweep["checks"][:6]:
        lines.append("  " + c)
    if any(r["flex"] for r in rows):
        lines.append("  " + flex_line([r["flex"] for r in rows if r["flex"]]))
    return lines


def speed_vs_flex(r):
    """(flex ms / our faster sparse ms on flex's block size, "", its column) - or on another block size, marked "*" - or
    (None, "", None)."""
    fx_ms = r["flex"].get("median_ms")
    timed = [(r[col]["ms"], col) for col in ("sparse", "wgpx2") if r[col].get("ms")]
    if not fx_ms or not timed:
        return None, "", None
    same = [(t, col) for t, col in timed if r[col].get("bs") == r["flex"].get("block_size")]
    if same:
        t, col = min(same)
        return fx_ms / t, "", col
    t, col = min(timed)
    return fx_ms / t, "*" if r["flex"].get("block_size") else "", col


def bench_cells(out):
    """{(H, D, L, causal, pattern): {"flash": cell, "materialized": cell, ...}} from the bench step. A cell is
    {"tf", "ms", ...} for a result, or {"text": why not}. A shape's first result or mark of an algorithm takes its
    column (a tilings run times the engine's own flash again; a later run does not clear a mark). Marks (run_checks)
    belong to their run: "disagree" evicts only that run's rows, never another run's measurement of the same label
    (a disagreeing WGPX2 leaves the baseline run's flash standing); "WRONG" (NaN/inf: the kernel's own output, no
    ambiguous pair) also evicts the label's result of another run at the same block size. A row that agreed with its
    run's reference counts only if that reference is not marked, in its run or in the column the table shows for it:
    otherwise "unverif." (unverified). The shape's "checks" list says why."""
    cells = {}
    wrong = {}  # key -> {(label, block size): run} of outputs with NaN/inf
    for r in read_tsv(os.path.join(out, "bench", "runs.tsv")):
        if r.get("route"):
            continue  # routed runs have their own table (routed_rows)
        key = bench_row_key(r)
        if key is None:
            continue  # malformed_bench_rows names it under the table
        c = cells.setdefault(key, {"run": r.get("status", "")})
        checks = c.setdefault("checks", [])
        run_marks = c.setdefault("run_marks", {})
        name = r["name"]
        path = os.path.join(out, "bench", name + ".json")
        log = os.path.join(out, "bench", name + ".log")
        logtext = read_text(log) if os.path.exists(log) else ""
        data, bad_json = None, False
        if os.path.exists(path):
            try:
                data = bench_doc(read_json(path))
            except (OSError, ValueError) as e:
                bad_json = True
                checks.append("%s.json unreadable (%s)" % (name, one_line(e, 80)))
        data = data or {}
        for k in ("flash_tiling", "sparse_tiling"):
            if data.get("config", {}).get(k):
                c[k] = data["config"][k]
        bs = data.get("config", {}).get("block_size") or 64
        marks, notes = run_checks(data)
        run_marks[name] = marks
        checks.extend(notes)
        ms = data.get("measurements", [])
        ref = reference_index(ms)
        ref_label = algo_label(ms[ref]) if ref is not None else None
        for i, m in enumerate(ms):
            algo = algo_label(m)
            if marks.get(algo) == "WRONG":
                wrong.setdefault(key, {}).setdefault((algo, bs), name)
            prev = c.get(algo, {})
            if "tf" in prev or prev.get("mark"):
                continue  # the shape's first result or mark of the algorithm holds the column
            if algo in marks:
                c[algo] = {"text": marks[algo], "mark": marks[algo], "run": name}
                continue
            st = m.get("status") or m.get("skipped") or m.get("error")
            if st not in ("ok", ""):
                c[algo] = {"text": short_status(st)}
            elif m.get("gflops") is not None:
                c[algo] = {"tf": m["gflops"] / 1000.0, "ms": m.get("median_ms"), "rel": m.get("rel_l2_vs_first"),
                           "peak": m.get("peak_device_bytes"), "scores": m.get("score_dtype"), "bs": bs,
                           "tiles": (m.get("key_tiles_visited"), m.get("key_tiles_skipped")), "run": name,
                           "ref": ref_label if i != ref else None}
        for algo in ("flash", "materialized", "sparse"):
            if algo in c:
                continue
            if algo in r.get("algos", "flash,materialized").split(","):
                if re.search(r"%s[^\n]*(does not fit|not fit)" % algo, logtext, re.I):
                    c[algo] = {"text": "no fit"}
                elif re.search(r"%s[^\n]*out of memory at run" % algo, logtext, re.I):
                    c[algo] = {"text": "oom"}
                elif bad_json:
                    c[algo] = {"text": "bad JSON"}
                elif r.get("status") == "ok":
                    # The run ended well, yet its JSON has no row for the algorithm: missing, not "ok".
                    c[algo] = {"text": "missing"}
                else:
                    c[algo] = {"text": short_status(r.get("status"))}
    for key, c in cells.items():
        # Fast but wrong is not a result: shown as such, never the fastest, in no ratio.
        for (label, bs), run in wrong.get(key, {}).items():
            if c.get(label, {}).get("bs") == bs and "tf" in c[label]:
                c["checks"].append("%s: output has NaN/inf in run %s, so run %s's time does not count either"
                                   % (label, run, c[label]["run"]))
                c[label] = {"text": "WRONG", "mark": "WRONG", "run": c[label]["run"]}
        # Checked only against a reference that is itself marked: unverified.
        for label in list(c):
            cell = c[label]
            if not isinstance(cell, dict) or "tf" not in cell or not cell.get("ref"):
                continue
            ref = cell["ref"]
            mark = c.get("run_marks", {}).get(cell["run"], {}).get(ref) or c.get(ref, {}).get("mark")
            if mark:
                c[label] = {"text": "unverif.", "unverified": True, "run": cell["run"]}
                c["checks"].append("%s: agreed with %s, which is marked %s at this shape: unverified, not counted"
                                   % (label, ref, mark))
    return cells


def bench_row_key(r):
    """(H, D, L, causal, pattern) of a runs.tsv row of the bench step, or None where the row is malformed (a field
    missing or not a number: a step cut while writing it)."""
    try:
        if not r.get("name"):
            return None
        return (int(r["heads"]), int(r["dim"]), int(r["len"]), r["causal"] == "1", r.get("pattern") or "dense")
    except (KeyError, ValueError):
        return None


def malformed_bench_rows(out):
    """Lines naming the bench step's runs.tsv rows that bench_cells leaves out as malformed."""
    lines = []
    for i, r in enumerate(read_tsv(os.path.join(out, "bench", "runs.tsv")), start=2):
        if (r.get("route") and r.get("name")) or (not r.get("route") and bench_row_key(r) is not None):
            continue
        fields = " ".join("%s=%s" % kv for kv in r.items() if kv[1])
        lines.append("  bench/runs.tsv line %d is malformed, left out: %s" % (i, " ".join(fields.split())[:120]))
    return lines


def routed_rows(out):
    """[(route, status, json or None)] of the bench step's routed runs (bench --route)."""
    rows = []
    for r in read_tsv(os.path.join(out, "bench", "runs.tsv")):
        if not r.get("route") or not r.get("name"):
            continue  # a malformed routed row: malformed_bench_rows names it
        data = None
        st = r.get("status", "")
        path = os.path.join(out, "bench", r["name"] + ".json")
        if os.path.exists(path):
            try:
                data = obj(read_json(path)) or None
            except (OSError, ValueError) as e:
                st = "JSON unreadable (%s)" % one_line(e, 80)
        rows.append((r["route"], st, data))
    return rows


# bench/torch_reference.py's SDPA backends, and the length above which it does not time MATH (by design: MATH
# materializes the L x S scores); tests/python/test_device_check.py checks they agree.
SDPA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
MATH_MAX_LEN = 8192
SHORT_BACKEND = {"FLASH_ATTENTION": "flash", "EFFICIENT_ATTENTION": "effic", "CUDNN_ATTENTION": "cudnn", "MATH": "math"}


ROUTER_OVERHEAD_GOAL = 5.0  # percent of the routed attention time (RoutedBenchmark.OVERHEAD_TARGET_PERCENT)


def routed_verdict(data):
    """Issue 6's goals on one routed run's JSON, judged here from its numbers: routed / dense <= its target
    ((Hs + k)/H + 0.05), router overhead <= 5%, each met only with the routed output within the dtype's tolerance of
    gate x dense output (a fast wrong output meets nothing)."""
    v = {"ratio": num(data.get("routed_over_dense")), "target": num(data.get("target_routed_over_dense")),
         "overhead": num(data.get("router_overhead_percent")), "rel": num(data.get("rel_l2_routed_vs_gated_dense")),
         "dtype": text_of(obj(data.get("config")).get("dtype")) or "bf16"}
    v["tol"] = TOLERANCE.get(v["dtype"], TOLERANCE["bf16"])
    # None where the JSON lacks the field: not judged, never a NOT met (nor a met) by default.
    v["correct"] = None if v["rel"] is None else v["rel"] <= v["tol"]
    ratio_ok = None if None in (v["ratio"], v["target"]) else v["ratio"] <= v["target"]
    overhead_ok = None if v["overhead"] is None else v["overhead"] <= ROUTER_OVERHEAD_GOAL

    def state(ok):
        if ok is None or (ok and v["correct"] is None):
            return "not judged"
        if v["correct"] is False:
            return "not counted"
        return "met" if ok else "NOT met"
    v["ratio_state"], v["overhead_state"] = state(ratio_ok), state(overhead_ok)
    v["ratio_met"], v["overhead_met"] = v["ratio_state"] == "met", v["overhead_state"] == "met"
    if v["correct"] is False or False in (ratio_ok, overhead_ok):
        v["verdict"] = "NOT met"
    elif v["ratio_met"] and v["overhead_met"]:
        v["verdict"] = "met"
    else:
        v["verdict"] = "not judged"
    v["met"] = v["verdict"] == "met"
    return v


def routed_lines(routed):
    """The routed table (issue 6)."""
    if not routed:
        return []
    lines = ["routed heads (issue 6), bf16 H16 D128 L=S=32768, flash; routed vs dense ungated in the same run; rel L2 ="
             " routed output vs gate x dense output (tolerance bf16 1e-2; OUT: outside it); met = ratio <= target /"
             " router <= 5%, each only with rel L2 within the tolerance (-: not judged, a field missing)"]
    fmt = "  %-8s %-9s %-9s %-8s %-7s %-9s %-12s %-8s %s"
    lines.append(fmt % ("route", "routed ms", "dense ms", "ratio", "target", "router %", "rel L2", "met", "tiles run / rows skipped"))
    for route, st, data in routed:
        if not data:
            lines.append("  %-8s %s" % (route, short_status(st)))
            continue
        v = routed_verdict(data)
        rt = obj(data.get("routed"))
        rms = finite(rt.get("median_ms"))
        dms = finite(obj(data.get("dense")).get("median_ms"))
        lines.append(fmt % (
            route, "%.2f" % rms if rms else "-", "%.2f" % dms if dms else "-",
            fmt_vs(v["ratio"], v["target"], digits=3) if v["ratio"] is not None and v["target"] is not None else "-",
            "%.3f" % v["target"] if v["target"] is not None else "-",
            fmt_vs(v["overhead"], ROUTER_OVERHEAD_GOAL, digits=1) if v["overhead"] is not None else "-",
            "-" if v["rel"] is None else "%s%s" % (fmt_err(v["rel"], v["tol"]), "" if v["correct"] else " OUT"),
            "/".join("yes" if x == "met" else "-" if x == "not judged" else "no"
                     for x in (v["ratio_state"], v["overhead_state"])),
            "%s / %s" % tuple("-" if count(rt.get(k)) is None else count(rt.get(k)) for k in ("query_tiles", "rows_skipped"))))
    return lines


# Issue 4's shapes: bf16 B=1, (H, D) in {(16, 128), (32, 64)}, L = S in {4K, 16K, 32K}, dense and causal.
ISSUE4_SHAPES = [(h, d, n, c) for h, d in ((16, 128), (32, 64)) for n in (4096, 16384, 32768) for c in (False, True)]
ISSUE6_ROUTES = (("token", "2:4"), ("block", "2:4:64"))


def shape_label(h, d, n, causal):
    return "%dx%d L=%d %s" % (h, d, n, "causal" if causal else "dense")


def bar_verdict(ratios, bounds, bar, expected):
    """One bar over expected cases: "NOT met" as soon as one case is below it (a measured ratio, or an upper bound from
    a partial baseline: the true ratio is lower still), "met" only with every case measured and at or above it, else
    "not judged". Returns (verdict, met, below): met the measured cases at or above the bar, below [(label, text)]."""
    met = sum(1 for _, r in ratios if r >= bar)
    below = [(lab, fmt_vs(r, bar)) for lab, r in ratios if r < bar]
    below += [(lab, "<=" + fmt_vs(b, bar)) for lab, b in bounds if b < bar]
    if below:
        verdict = "NOT met (%d of %d below)" % (len(below), expected)
    elif met == expected:
        verdict = "met"
    else:
        verdict = "not judged (%d of %d measured, none below)" % (len(ratios), expected)
    return verdict, met, below


def issue4_check_line(cells, fchecks, missing):
    """Which flash columns the compare step's float64 check let count on the issue's shapes."""
    labels = [a for a in FLASH_LABELS if any(cells.get((h, d, n, c, "dense"), {}).get(a, {}).get("tf")
                                             for h, d, n, c in ISSUE4_SHAPES)]
    if missing:
        return ("  compare-step float64 check of the flash tilings: %s (neither helps nor hurts: every measured"
                " column counts)" % missing)
    parts, not_run = [], []
    for a in labels:
        v = [fchecks.get((compare_case(a), var)) for var in ("dense", "causal")]
        if v == [None, None]:
            not_run.append(a)
            continue
        parts.append("%s %s" % (a, "/".join("-" if x is None else x if x in ("ok", "FAIL") else short_status(x)
                                            for x in v)))
    line = ("  compare-step float64 check (bf16, dense/causal) of the flash columns: a column whose check FAILED does"
            " not count on that kind of shape: %s" % (", ".join(parts) or "none of them checked"))
    if not_run:
        line += "; not run: %s (neither helps nor hurts)" % ", ".join(not_run)
    return line


def issue4_lines(cells, trows, out):
    fchecks, fmissing = flash_checks(out)
    measured, partial, missing = [], [], []
    for h, d, n, causal in ISSUE4_SHAPES:
        c = ours_vs_torch(cells, trows, h, d, n, causal, fchecks)
        lab = shape_label(h, d, n, causal)
        if c["ratio"] is not None:
            measured.append((lab, c["ratio"]))
        elif c["bound"] is not None:
            partial.append((lab, c["bound"], "(%s)" % ", ".join("%s %s" % x for x in c["missing"])))
        else:
            missing.append("%s (%s)" % (lab, c["why"]))
    lines = ["issue 4 (flash vs PyTorch's fastest SDPA backend, bf16 B=1, %d shapes: H16 D128 and H32 D64, L=S 4K/16K/32K,"
             " dense and causal): ours/torch measured on %d of %d%s" % (
                 len(ISSUE4_SHAPES), len(measured), len(ISSUE4_SHAPES),
                 ", %d partial (<= x: ours over the best backend that ran, an upper bound: it counts only below a bar)"
                 % len(partial) if partial else "")]
    bounds = [(lab, b) for lab, b, _ in partial]
    short = []
    for name, bar in (("first bar", 0.5), ("goal", 1.0)):
        verdict, met, below = bar_verdict(measured, bounds, bar, len(ISSUE4_SHAPES))
        short.append("%s %s" % ("bar" if bar < 1 else "goal", head(verdict)))
        lines.append("  %s (ours >= %.1f x torch): met on %d of %d measured%s -> %s" % (
            name, bar, met, len(measured), "; below: " + ", ".join("%s %s" % x for x in below) if below else "",
            verdict))
    if partial:
        lines.append("  partial: " + "; ".join("%s <=%s %s" % (lab, fmt_vs(b, 0.5, 1.0), why) for lab, b, why in partial))
    if missing:
        lines.append("  not measured: " + "; ".join(missing))
    lines.append(issue4_check_line(cells, fchecks, fmissing))
    fl = cells.get((16, 128, 32768, False, "dense"), {}).get("flash", {})
    io = 4 * 16 * 32768 * 128 * 2 + 16 * 32768 * 4
    if fl.get("peak") and fl["peak"] > 0:
        ratio = fl["peak"] / float(io)
        lines.append("  memory at L=32768 (H16 D128): flash pool peak / (Q+K+V+O+lse) %s (goal <= 1.05): %s" % (
            fmt_vs(ratio, 1.05, digits=3), "met" if ratio <= 1.05 else "NOT met"))
        short.append("mem " + ("met" if ratio <= 1.05 else "NOT met"))
    else:
        lines.append("  memory at L=32768 (H16 D128): not judged (no flash peak measured)")
        short.append("mem not judged")
    return lines, "issue4 " + ", ".join(short)


def issue5_lines(cells, trows, out):
    sweep = density_rows(cells, trows)
    checks = sweep_checks(out)[0]
    best_flash = best_dense_flash(sweep["dense"], flash_checks(out)[0])
    n = SWEEP_SHAPE[2]
    lines = ["issue 5 (block-sparse vs dense flash, bf16 H16 D128 L=S=32768; our sparse counts only where the compare-step"
             " window check of its own tiling and block size is ok: %s)" % ", ".join(
                 "%s %s" % (case, checks[case][0]) for case in sorted(c for c in checks if c))]
    verdict = []
    flex_ratios = []
    for token, goal in SWEEP_GOALS:
        w = window_for_density(n, token)
        r = next((x for x in sweep["rows"] if x["w"] == w), None)
        label = "%d%% (W=%d: token %s" % (round(100 * token), w, fmt_pct(window_density(n, w)))
        if r is None:
            lines.append("  %s): not measured (no run)" % label)
            verdict.append("%d%% not judged" % round(100 * token))
            flex_ratios.append((token, None, "no run"))
            continue
        blocks = ["%s (%s)" % (fmt_pct(*r[b]), col) for b, col in (("blocks", "sparse"), ("blocks_x2", "wgpx2"))
                  if r[b][0] is not None]
        label += (", blocks %s)" % " / ".join(blocks)) if blocks else ")"
        ok = {col: sweep_check(checks, col, r[col])[1] == "ok" for col in ("sparse", "wgpx2")}
        ours = [(r[col]["ms"], col) for col in ("sparse", "wgpx2") if r[col].get("ms") and ok[col]]
        if not ours or not best_flash:
            why = "no dense flash result" if not best_flash else "no sparse result that counts: " + ", ".join(
                "%s %s" % (col, "check %s %s" % sweep_check(checks, col, r[col]) if r[col].get("ms")
                           else r[col].get("text", "no run"))
                for col in ("sparse", "wgpx2"))
            lines.append("  %s: not measured (%s)" % (label, why))
            verdict.append("%d%% not judged" % round(100 * token))
        else:
            ms, col = min(ours)
            x = best_flash[0] / ms
            met = x >= goal
            lines.append("  %s: best sparse %.2f ms (%s) vs best dense flash %.2f ms (%s): %sx (goal >= %g): %s" % (
                label, ms, col, best_flash[0], best_flash[1], fmt_vs(x, goal), goal, "met" if met else "NOT met"))
            verdict.append("%d%% %s" % (round(100 * token), "met" if met else "NOT met"))
        # Against Flex only the same block mask counts (our runs on its block size), and only a checked column.
        fx = r["flex"]
        same = [c for c in ("sparse", "wgpx2") if r[c].get("ms") and fx and r[c].get("bs") == fx.get("block_size")]
        checked = [r[c]["ms"] for c in same if ok[c]]
        if not fx:
            flex_ratios.append((token, None, "no flex row"))
        elif not fx.get("median_ms"):
            flex_ratios.append((token, None, "flex " + (fx.get("status") or "no time")[:80]))
        elif not same:
            flex_ratios.append((token, None, "no run of ours on flex's block size"))
        elif not checked:
            flex_ratios.append((token, None, "our run on it: " + ", ".join(
                "check %s %s" % sweep_check(checks, c, r[c]) for c in same)))
        else:
            flex_ratios.append((token, fx["median_ms"] / min(checked), ""))
    lines.append("  sparse vs dense flash: " + ", ".join(verdict))
    measured = [("%d%%" % round(100 * t), x) for t, x, _ in flex_ratios if x is not None]
    parts = ["%d%% %s" % (round(100 * t), fmt_vs(x, 0.5, 1.0) if x is not None else "- (%s)" % why)
             for t, x, why in flex_ratios]
    lines.append("  vs FlexAttention on the same block mask (speed vs flex, >= 1 faster): %s" % ", ".join(parts))
    short = ["issue5 " + ", ".join(verdict)]
    for name, bar in (("first bar", 0.5), ("goal", 1.0)):
        flex_verdict, met, _ = bar_verdict(measured, [], bar, len(SWEEP_GOALS))
        lines.append("    %s (>= %.1f): met on %d of %d measured -> %s" % (name, bar, met, len(measured), flex_verdict))
        short.append("flex %s %s" % ("bar" if bar < 1 else "goal", head(flex_verdict)))
    return lines, ", ".join(short)


def issue6_lines(out):
    runs = {route: (st, data) for route, st, data in routed_rows(out)}
    lines = ["issue 6 (routed heads: 2 shared + 4 of 14 routed = 6/16 active; routed/dense <= 6/16 + 0.05 = 0.425, router"
             " <= 5% of the routed attention, routed output within the dtype's tolerance of gate x dense)"]
    verdict = []
    for gran, route in ISSUE6_ROUTES:
        st, data = runs.get(route, ("no run", None))
        if not data:
            lines.append("  %s granularity (%s): not measured (%s)" % (gran, route, short_status(st) if st != "no run" else st))
            verdict.append("%s not judged" % gran)
            continue
        v = routed_verdict(data)
        lines.append("  %s granularity (%s): ratio %s vs %s: %s; router %s vs 5%%: %s; rel L2 %s vs %s %.0e: %s -> %s" % (
            gran, route, fmt_vs(v["ratio"], v["target"], digits=3) if v["target"] is not None else fmt_vs(v["ratio"]),
            "%.3f" % v["target"] if v["target"] is not None else "- (no target)", v["ratio_state"],
            "%s%%" % fmt_vs(v["overhead"], ROUTER_OVERHEAD_GOAL, digits=1) if v["overhead"] is not None else "- (missing)",
            v["overhead_state"], fmt_err(v["rel"], v["tol"]) + (" (missing)" if v["rel"] is None else ""), v["dtype"],
            v["tol"], "not judged" if v["correct"] is None else "ok" if v["correct"] else "OUTSIDE", v["verdict"]))
        verdict.append("%s %s" % (gran, v["verdict"]))
    lines.append("  verdict: " + ", ".join(verdict))
    return lines, "issue6 " + ", ".join(verdict)


def head(verdict):
    """A verdict without its parenthesis: met, NOT met or not judged."""
    return verdict.split(" (")[0]


TORCH_NUMBERS = ("tflops", "median_ms", "block_density", "target_density", "density", "compile_s")
TORCH_COUNTS = ("block_size", "window")


def torch_row(r):
    """One torch.json row with its numbers read through num (count: block size, window) and its texts as strings;
    None where it is not a JSON object."""
    if not isinstance(r, dict):
        return None
    row = dict(r)
    for k in TORCH_NUMBERS:
        row[k] = finite(r.get(k))
    for k in TORCH_COUNTS:
        row[k] = count(r.get(k))
    shape = obj(r.get("shape"))
    row["shape"] = {k: count(shape.get(k)) for k in ("B", "H", "L", "S", "D")} if shape else {}
    row["causal"] = r.get("causal") is True
    for k in ("backend", "status", "mask_mod", "shared_mask_error"):
        row[k] = text_of(r.get(k))
    return row


def read_torch(out):
    """(rows, note) of torch.json: its rows read through torch_row, and a line saying why there are none (no file, or
    unreadable: a step killed mid-write), or None."""
    path = os.path.join(out, "torch.json")
    if not os.path.exists(path):
        return [], None
    try:
        doc = read_json(path)
    except (OSError, ValueError) as e:
        return [], "torch.json unreadable (%s): no torch rows" % one_line(e)
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        return [], "torch.json unreadable (no \"rows\" list): no torch rows"
    return [x for x in (torch_row(r) for r in doc["rows"]) if x is not None], None


def one_line(e, limit=160):
    """An exception as one short line: its type and message, and where in this file it was raised."""
    import traceback
    where = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.endswith("device_check.py")]
    msg = " ".join(str(e).split())
    return ("%s: %s" % (type(e).__name__, msg))[:limit] + (" (device_check.py:%d)" % where[-1].lineno if where else "")


def torch_shape(rows, h, d, n, causal):
    """PyTorch's SDPA rows of one shape: (best, missing, seen). best: the fastest row that ran ("ok"); missing: [(backend,
    why)] of each backend that neither ran nor refused the shape ("unsupported") - skipped for time, oom, an error, no
    row at all - so that best may not be the best of every backend; MATH is not expected above MATH_MAX_LEN. seen:
    whether torch.json has any row of the shape."""
    mine = {}
    for r in rows:
        s = r.get("shape") or {}
        if r.get("backend") == "FLEX" or (s.get("H"), s.get("D"), s.get("L"), bool(r.get("causal"))) != (h, d, n, causal):
            continue
        mine.setdefault(r.get("backend"), r)
    best, missing = None, []
    for b in SDPA_BACKENDS:
        r = mine.get(b)
        st = (r or {}).get("status") or ""
        if r is not None and st == "ok" and r.get("tflops"):
            if best is None or r["tflops"] > best["tflops"]:
                best = r
        elif st.startswith("unsupported") or (b == "MATH" and n > MATH_MAX_LEN):
            continue
        else:
            missing.append((SHORT_BACKEND[b], short_status(st) if r is not None else "no row"))
    return best, missing, bool(mine)


FLASH_LABELS = ("flash", "flash_w2", "flash_w4x2", "flash_wg", "flash_wgp", "flash_wgx2", "flash_wgpx2")


# The compare step's window cases that check the density sweep's kernels: (case, the sweep column it checks).
SWEEP_CHECKS = (("sparse-bs64", "sparse (the engine's tiling, 64-blocks)"), ("sparse-wgpx2-bs128", "wgpx2 (128-blocks)"))


def compare_doc(out):
    """(doc, missing) of the compare step's results.json: doc with its results' fields read as strings and rel_l2
    through num; missing None, or why there are no results ("no compare step", "unreadable")."""
    path = os.path.join(out, "compare", "results.json")
    if not os.path.exists(path):
        return {}, "no compare step"
    doc, err = read_json_guarded(path)
    if err:
        return {}, "unreadable"  # the compare section says why
    doc = obj(doc)
    results = []
    for r in seq(doc.get("results")):
        if isinstance(r, dict):
            results.append({"variant": text_of(r.get("variant")), "backend": text_of(r.get("backend")),
                            "algo": text_of(r.get("algo")), "dtype": text_of(r.get("dtype")),
                            "verdict": text_of(r.get("verdict")) or "?", "rel_l2": num(r.get("rel_l2"))})
    return dict(doc, results=results), None


def sweep_checks(out):
    """{case: (verdict, rel L2 or None)} of the compare step's window cases (SWEEP_CHECKS): the density sweep's only
    correctness check (its bench runs time the sparse kernel alone, with no other row to compare with); and the
    line that says so."""
    doc, missing = compare_doc(out)
    found = {r["algo"]: (r["verdict"], r["rel_l2"]) for r in doc.get("results", [])
             if r["variant"] == "window" and r["backend"] == "cuda"}
    res = dict(found)
    res.update({case: found.get(case, (missing or "not run", None)) for case, _ in SWEEP_CHECKS})
    res[None] = (missing or "not run", None)  # any other case

    def text(verdict, rel):
        if verdict == "not run" or verdict == missing:
            return verdict
        return (verdict if verdict in ("ok", "FAIL") else short_status(verdict)) + (
            " (%s)" % fmt_err(rel, TOLERANCE["bf16"]) if rel is not None else "")

    parts = ["%s %s" % (what, text(*res[case])) for case, what in SWEEP_CHECKS]
    s = obj(doc.get("shape")) or dict(zip("BHLD", COMPARE_SHAPE))
    line = ("correctness: the sweep's runs time sparse alone (no row to compare with); checked by the compare step's"
            " window:%s cases (B=%s H=%s L=S=%s D=%s, bf16 vs float64, tol 1e-2): %s"
            % (doc.get("window") or COMPARE_WINDOW, s.get("B", "?"), s.get("H", "?"), s.get("L", "?"), s.get("D", "?"),
               "; ".join(parts)))
    return res, line


def compare_case(label):
    """The compare step's case of a bench column: flash -> flash, flash_w2 -> flash-w2, sparse_wgpx2 -> sparse-wgpx2."""
    return label.replace("_", "-")


def flash_checks(out):
    """({(case, variant): verdict}, missing) of the compare step's float64 checks of the dense kernels: cuda, bf16,
    dense and causal; missing as compare_doc's."""
    doc, missing = compare_doc(out)
    res = {}
    for r in doc.get("results", []):
        if r["backend"] == "cuda" and r["dtype"] == "bf16" and r["variant"] in ("dense", "causal"):
            res[(r["algo"], r["variant"])] = r["verdict"]
    return res, missing


def check_failed(fchecks, label, causal):
    """Whether the compare step's float64 check of a flash column FAILED on the variant of the shape (causal or dense):
    such a column does not count for issue 4. A check not run neither helps nor hurts."""
    return (fchecks or {}).get((compare_case(label), "causal" if causal else "dense")) == "FAIL"


def sweep_case(col, cell):
    """The compare step's window case that checks a density-sweep column's kernel as that cell ran it: its tiling
    (the engine's for "sparse") and its block size: sparse-bs64, sparse-bs128, sparse-wgpx2-bs128, ..."""
    bs = cell.get("bs") or 64
    return "sparse-bs%d" % bs if col == "sparse" else "sparse-%s-bs%d" % (col, bs)


def sweep_check(checks, col, cell):
    """(case, verdict) of a sweep column's cell (sweep_case) in sweep_checks' results."""
    case = sweep_case(col, cell)
    return case, checks.get(case, checks[None])[0]


def ours_vs_torch(cells, trows, h, d, n, causal, fchecks=None):
    """Issue 4's comparison on one shape: {"ours": our fastest flash TF/s (rows that count, and not a tiling whose
    compare-step check FAILED: fchecks), "best": torch's best row, "ratio": ours / best, or None with "why": the ratio
    counts only where every SDPA backend ran or refused the shape}."""
    c = cells.get((h, d, n, causal, "dense"), {})
    ours = max([c[a]["tf"] for a in FLASH_LABELS if c.get(a, {}).get("tf") and not check_failed(fchecks, a, causal)],
               default=None)
    best, missing, seen = torch_shape(trows, h, d, n, causal)
    res = {"ours": ours, "best": best, "missing": missing, "ratio": None, "bound": None}
    if ours is None:
        res["why"] = "no flash result that counts"
    elif not seen:
        res["why"] = "no torch rows"
    elif best is None:
        res["why"] = "no torch backend ran" + (" (%s)" % ", ".join("%s %s" % m for m in missing) if missing else "")
    elif missing:
        # The best of the backends that ran: a missing one can only raise torch's best, so ours / it is an upper
        # bound of the ratio, enough to say NOT met where it is below a bar, never enough to say met.
        res["why"] = "partial (%s)" % ", ".join("%s %s" % m for m in missing)
        res["bound"] = ours / best["tflops"]
    else:
        res["ratio"] = ours / best["tflops"]
    return res


def fmt_vs(x, *thresholds, digits=2):
    """x with enough decimals that it never shows equal to a threshold it is not equal to (0.4254 against 0.425, not
    0.425; 0.4996 against 0.5, not 0.50)."""
    if x is None:
        return "-"
    if x != x:
        return "NaN"
    while digits < 9 and any(x != t and "%.*f" % (digits, x) == "%.*f" % (digits, t) for t in thresholds):
        digits += 1
    return "%.*f" % (digits, x)


def fmt_err(x, tol):
    """A relative error in %.1e, with more digits where it would show equal to the tolerance it is not equal to
    (0.01004 against 1e-2: 1.004e-02, not 1.0e-02); NaN as NaN, "-" for None."""
    if x is None:
        return "-"
    if x != x:
        return "NaN"
    digits = 1
    while digits < 9 and x != tol and "%.*e" % (digits, x) == "%.*e" % (digits, tol):
        digits += 1
    return "%.*e" % (digits, x)


def header_lines(info, steps):
    lines = ["== headroute device check: summary ==",
             "card    %s | %s | cc %s | driver %s | nvcc %s" % (
                 info.get("card", "?"), info.get("memory", "?"), info.get("compute_cap", "?"), info.get("driver", "?"),
                 info.get("nvcc", "?")),
             "commit  %s | bundle %s | %s" % (info.get("commit", "?"), info.get("bundle", "?"), info.get("date", "?")),
             "java    %s" % info.get("java", "?"),
             "cuBLAS  %s" % info.get("cublas", "?"),
             "torch   %s" % info.get("torch", "?"),
             "time    %s s in all (budget %s s for the steps)" % (info.get("total", "?"), info.get("budget", "?")),
             "",
             "%-10s %-8s %5s  %s" % ("step", "status", "secs", "note")]
    for s in steps:
        lines.append("%-10s %-8s %5s  %s" % (s.get("step", "?"), s.get("status", "?"), s.get("secs", "?"),
                                             s.get("note", "")[:96]))
    return lines


def gpu_test_lines(out):
    lines = []
    junit_dir = os.path.join(out, "junit")
    if os.path.isdir(junit_dir):
        c = gpu_test_counts(junit_dir, os.path.join(out, "gpu-tests.log"))
        lines.append("")
        if c["files"] or c.get("from_log"):
            lines.append("GPU tests (tag gpu): %d tests, %d passed, %d failed, %d errors, %d skipped%s" % (
                c["tests"], c["passed"], c["failures"], c["errors"], c["skipped"],
                " (from the console log: the run was cut off before its XML report)" if c.get("from_log") else ""))
            for r in c.get("running", [])[:3]:
                lines.append("  STILL RUNNING when stopped: " + r)
            for f in c["failed"][:8]:
                lines.append("  FAILED " + f)
            if len(c["failed"]) > 8:
                lines.append("  ... and %d more (junit/)" % (len(c["failed"]) - 8))
        else:
            lines.append("GPU tests: no JUnit report (see gpu-tests.log)")
    probe_dir = os.path.join(out, "junit-probe")
    if os.path.isdir(probe_dir):
        # WgmmaProbeGpuTest run first, alone: the wgmma layouts apart from the WG/WGP loop (skipped below sm_90).
        c = junit_counts(probe_dir)
        lines.append("wgmma layout probes (run first): %d tests, %d passed, %d failed, %d errors, %d skipped" % (
            c["tests"], c["passed"], c["failures"], c["errors"], c["skipped"]))
        # All six: which of the single products (layouts) and the chained steps (accumulation, descriptor steps,
        # f16, the cp.async path) fail is the diagnosis.
        for f in c["failed"][:6]:
            lines.append("  FAILED " + f)
    return lines


def sanitizer_lines(out):
    san = os.path.join(out, "sanitizer", "results.json")
    if not os.path.exists(san):
        return []
    # One line per run: the case names tell the tilings and kernels apart (flash-w2, sparse-compact, ...).
    lines = ["", "sanitizer (tool, case, dtype: errors)"]
    doc, err = read_json_guarded(san)
    if err:
        return lines + ["  sanitizer/results.json unreadable (%s): no counts; see sanitizer/*.log" % err]
    for r in seq(doc):
        r = obj(r)
        errors, warnings = count(r.get("errors")), count(r.get("race_warnings"))
        # Error counts only of runs that ended as the sanitizer ends (0: clean, 3: errors found); another exit
        # (the program failed, or the sanitizer could not run it) shows as such, whatever its log counted.
        if errors is not None and str(r.get("rc")) in ("0", "3"):
            what = "%d errors" % errors
            if warnings:
                what += ", %d race warnings" % warnings
        else:
            what = (text_of(r.get("status")) or "exit %s" % r.get("rc"))[:60]
        lines.append("  %-9s %-14s %-4s %s" % (r.get("tool", "?"), r.get("algo", "?"), r.get("dtype", "?"), what))
    return lines


def ncu_lines(out):
    ncu_txt = os.path.join(out, "ncu", "results.txt")
    if not os.path.exists(ncu_txt):
        return []
    return ["", "ncu (Nsight Compute; full CSV in ncu/):"] + ["  " + ln for ln in read_text(ncu_txt).splitlines()[1:]]


def compare_lines(out):
    cmp_path = os.path.join(out, "compare", "results.json")
    if not os.path.exists(cmp_path):
        return []
    doc, err = read_json_guarded(cmp_path)
    if err:
        return ["", "compare: compare/results.json unreadable (%s): no comparison; see compare/out/*.log" % err]
    doc = obj(doc)
    s = obj(doc.get("shape"))
    lines = ["", "compare vs %s, B=%s H=%s L=S=%s D=%s (rel L2; tol f32 1e-5, bf16 1e-2; -bsN: on N-blocks):" % (
        doc.get("source") or "?", s.get("B"), s.get("H"), s.get("L"), s.get("D")),
        "  %-29s %-22s %-22s %-22s" % ("backend algo dtype", "dense", "causal", "window:%s" % (doc.get("window") or "?"))]
    table = {}
    for r in seq(doc.get("results")):
        r = obj(r)
        key = "%s %s %s" % (r.get("backend"), r.get("algo"), r.get("dtype"))
        verdict = text_of(r.get("verdict")) or "?"
        rel = num(r.get("rel_l2"))
        if rel is not None:
            tol = num(r.get("tol")) or TOLERANCE.get(text_of(r.get("dtype")), TOLERANCE["bf16"])
            cell = "%s %s" % (fmt_err(rel, tol), "ok" if verdict == "ok" else verdict)
        else:
            cell = short_status(verdict)
        table.setdefault(key, {})[r.get("variant")] = cell
    for key, v in table.items():
        lines.append("  %-29s %-22s %-22s %s" % (key, v.get("dense", "-")[:22], v.get("causal", "-")[:22],
                                                  v.get("window", "-")[:22]))
    return lines


def bench_table_lines(cells, trows, out):
    fchecks = flash_checks(out)[0]
    lines = ["", "bench bf16 B=1, TFLOP/s (4*B*H*L*S*D; causal 4*B*H*D*(L*S - L^2/2), half at L = S); torch = the fastest"
             " SDPA backend (flash, effic, cudnn, and math up to L=%d: torch_reference.py does not time it above);"
             " ours/torch only where each of them ran or refused the shape (unsupported), else \"<=x partial (what is"
             " missing)\": ours over the best of those that ran, an upper bound (a missing backend can only be faster),"
             " counted only as below a bar" % MATH_MAX_LEN]
    add = lines.append
    # The engine's tiling (-Dheadroute.tiling) as each bench JSON states it; W4 unless set otherwise.
    ran = sorted(set(c["flash_tiling"].upper() for c in cells.values() if c.get("flash_tiling"))) or ["W4"]
    add("flash = the engine's tiling (%s), w2 = W2 (2 warps x 32 rows), w4x2 = W4X2 (4 warps x 32 rows, 128-row"
        " blocks), wg = W4 with wgmma, wgp = wg with P.V overlapping the next softmax, wgx2/wgpx2 = wg/wgp with two"
        " warpgroups on 128-row blocks (wg*: sm_90), same seeded inputs, timed in a run of their own after the"
        " baseline; ours/torch = the fastest tiling / torch best" % "/".join(ran))
    add("WRONG = an output with NaN/inf (that kernel's time from another run of the shape is void too); disagree ="
        " a row further than the dtype's tolerance (bf16 1e-2, rel L2) from its run's reference (the first finite"
        " output: the engine's flash): both it and the reference are marked in that run, as two rows cannot tell"
        " which is right, and neither counts; unverif. = it agreed with its run's reference, but that reference is"
        " marked (in its run, or in the column shown for it): not counted; missing = the run ended well but its JSON"
        " has no such row; no fit = the memory plan refused it; oom = out of memory at run; unsupp. = unsupported; !"
        " = its compare-step float64 check (the dense or causal case, as the row) FAILED: not counted")
    add("%-7s %6s %-6s %8s %8s %8s %8s %8s %8s %8s %8s %14s %s" % (
        "HxD", "L", "causal", "flash", "w2", "w4x2", "wg", "wgp", "wgx2", "wgpx2", "mater.", "torch best", "ours/torch"))
    keys = sorted(set(k for k in cells if k[4] == "dense") | set(
        ((r["shape"]["H"], r["shape"]["D"], r["shape"]["L"], bool(r.get("causal")), "dense")
         for r in trows if None not in (r["shape"].get("H"), r["shape"].get("D"), r["shape"].get("L"))
         and r.get("backend") != "FLEX")),
        key=lambda k: (k[2], k[0], k[3]))
    for k in keys:
        h, d, n, causal, _ = k
        c = cells.get(k, {})
        cmp = ours_vs_torch(cells, trows, h, d, n, causal, fchecks)
        best, missing, seen = torch_shape(trows, h, d, n, causal)
        # Without a row that ran, "torch best" says so and ours/torch says why (each backend's status).
        tnote = "none ran" if seen and not best else "-"
        if cmp["ratio"] is not None:
            ratio = fmt_vs(cmp["ratio"], 0.5, 1.0)
        elif cmp["bound"] is not None:
            ratio = "<=%s %s" % (fmt_vs(cmp["bound"], 0.5, 1.0), cmp["why"])
        elif seen and not best:
            ratio = "- (%s)" % (", ".join("%s %s" % x for x in missing) or "every backend unsupported")
        else:
            ratio = "-"
        cols = [(a, c.get(a, {})) for a in FLASH_LABELS + ("materialized",)]
        add("%-7s %6d %-6s %8s %8s %8s %8s %8s %8s %8s %8s %14s %s" % tuple(
            ["%dx%d" % (h, d), n, "yes" if causal else "no"]
            + [(fmt_tf(x["tf"]) + ("!" if check_failed(fchecks, a, causal) else "")) if "tf" in x else x.get("text", "-")
               for a, x in cols]
            + [("%s (%s)" % (fmt_tf(best["tflops"]), SHORT_BACKEND.get(best["backend"], best["backend"])))
               if best else tnote, ratio]))
    for k in keys:
        for note in cells.get(k, {}).get("checks", [])[:4]:
            add("  %dx%d L=%d %s: %s" % (k[0], k[1], k[2], "causal" if k[3] else "dense", note))
    lines.extend(malformed_bench_rows(out))
    return lines


def render_summary(out, lines):
    """Appends the summary's lines to lines. Each section is rendered on its own: one that raises leaves the line
    "section X failed: <error>" in its place, and the others still render."""
    def section(name, fn, *args, default=None):
        try:
            res = fn(*args)
        except Exception as e:  # noqa: BLE001 - one broken input must not lose the rest of the summary
            lines.append("section %s failed: %s" % (name, one_line(e)))
            return default
        return res

    info = section("info", read_kv, os.path.join(out, "state", "info.txt"), default={})
    steps = section("steps", read_tsv, os.path.join(out, "steps.tsv"), default=[])
    lines.extend(section("header", header_lines, info, steps, default=[]))
    for name, fn in (("GPU tests", gpu_test_lines), ("sanitizer", sanitizer_lines), ("ncu", ncu_lines),
                     ("compare", compare_lines)):
        lines.extend(section(name, fn, out, default=[]))
    trows, tnote = section("torch", read_torch, out, default=([], None))
    cells = section("bench", bench_cells, out, default={})
    if cells or trows or tnote:
        lines.extend(section("bench table", bench_table_lines, cells, trows, out, default=[]))
        if tnote:
            lines.append(tnote)
        lines.append("")
        lines.extend(section("memory", memory_lines, cells, default=[]))
        lines.extend(section("density", lambda: density_lines(density_rows(cells, trows), out), default=[]))
    lines.extend(section("routed", lambda: routed_lines(routed_rows(out)), default=[]))
    # The verdicts last but the recap: the device tool shows only the last 12,000 characters.
    lines.append("")
    lines.append("verdicts (from this run only)")
    verdicts = []
    for n, fn, args in ((4, issue4_lines, (cells, trows, out)), (5, issue5_lines, (cells, trows, out)),
                        (6, issue6_lines, (out,))):
        ls, short = section("issue %d verdict" % n, fn, *args, default=([], "issue%d section failed" % n))
        lines.extend(ls)
        verdicts.append(short)
    lines.append("")
    lines.append("logs and JSON: results.tar.gz beside summary.md (the work folder %s, without .npy files; its"
                 " left-out.txt names anything else left out)" % out)
    # Last, one line: the top of a long summary can fall off the 12,000 characters the device tool shows, and the
    # verdict block with it: the essentials again.
    lines.append(recap_line(info, steps, verdicts))


def recap_line(info, steps, verdicts):
    return " | ".join(["recap   %s" % info.get("card", "?"), "commit %s" % info.get("commit", "?"),
                       " ".join("%s:%s" % (s.get("step", "?"), s.get("status", "?")) for s in steps) or "no steps.tsv"]
                      + verdicts)


def cmd_summary(a):
    out = a.out
    lines = []
    failed = None
    try:
        render_summary(out, lines)
    except Exception as e:  # noqa: BLE001 - whatever escaped the sections: what was rendered is still written
        failed = e
        lines.append("summary failed: %s (the lines above are what was rendered before it)" % one_line(e))
    text = "\n".join(lines)
    print(text)
    write_atomic(os.path.join(out, "summary.md"), "# headroute device check\n\n```\n" + text + "\n```\n")
    if failed is not None:
        import traceback
        traceback.print_exception(type(failed), failed, failed.__traceback__, file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description="helpers of scripts/device-check.sh")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("npy-random")
    s.add_argument("dir")
    s.add_argument("--shape", required=True)
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(fn=cmd_npy_random)
    s = sub.add_parser("make-compare")
    s.add_argument("dir")
    s.add_argument("--seed", type=int, default=1234)
    s.set_defaults(fn=cmd_make_compare)
    s = sub.add_parser("compare-eval")
    s.add_argument("dir")
    s.set_defaults(fn=cmd_compare_eval)
    s = sub.add_parser("junit")
    s.add_argument("dir")
    s.add_argument("--log")
    s.set_defaults(fn=cmd_junit)
    s = sub.add_parser("sanitizer-eval")
    s.add_argument("dir")
    s.set_defaults(fn=cmd_sanitizer_eval)
    s = sub.add_parser("ncu-eval")
    s.add_argument("dir")
    s.set_defaults(fn=cmd_ncu_eval)
    s = sub.add_parser("summary")
    s.add_argument("out")
    s.set_defaults(fn=cmd_summary)
    a = p.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
