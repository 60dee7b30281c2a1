"""Kernel names to categories and the per-GPU breakdown of the measured window (GEMM, attention, communication, memory, other, idle)."""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..measure.offline import NVTX_MEASURE

CATEGORIES = ("gemm", "attention", "communication", "memory", "other")
CATEGORY_LABELS = {"gemm": "GEMM", "attention": "attention", "communication": "communication (NCCL/all-reduce)",
                   "memory": "memory copies", "other": "other kernels", "idle": "GPU idle"}


CATEGORY_LABELS = {"gemm": "GEMM", "attention": "attention", "communication": "communication (NCCL/all-reduce)",
                   "memory": "memory copies", "other": "other kernels", "idle": "GPU idle"}


#: (category, pattern) in the order they are tried; the first match wins (case-insensitive ``re.search``).
#: Communication first (an all-reduce may be a CUTLASS kernel), attention before GEMM (FlashAttention 3 kernels
#: are ``cutlass::device_kernel<flash::...>``).
KERNEL_PATTERNS: list[tuple[str, str]] = [
    ("communication", r"nccl|cross_device_reduce|all_?reduce|all_?gather|reduce_?scatter|sendrecv|all_?to_?all"
                      r"|custom_?ar\b|multimem"),
    ("attention", r"flash|fmha|attention|attn|reshape_and_cache|paged_?attention|mla_"),
    ("gemm", r"nvjet|gemm|gemv|cutlass|cublas|sm\d+_xmma|xmma_|s16816|h16816|matmul|scaled_mm|marlin"
             r"|splitkreduce|triton_tem_fused_\w*mm"),
    ("memory", r"^\[cuda mem|memcpy|memset|copy_kernel|catarraybatchedcopy"),
]
_COMPILED = [(cat, re.compile(p, re.I)) for cat, p in KERNEL_PATTERNS]


_COMPILED = [(cat, re.compile(p, re.I)) for cat, p in KERNEL_PATTERNS]


BREAKDOWN_COLUMNS = (["candidate", "roles", "tensor_parallel_size", "pipeline_parallel_size", "gpu", "source",
                      "window_ns"] + [f"{c}_ns" for c in CATEGORIES] + ["idle_ns", "busy_ns", "overlap_scale"]
                     + [f"{c}_raw_ns" for c in CATEGORIES] + [f"{c}_pct" for c in (*CATEGORIES, "idle")])


def read_stats_csv(source: Path | str) -> pd.DataFrame:
    """A ``nsys stats --format csv`` table as a DataFrame, from a path or the text itself. Lines before the header
    (nsys's "Processing [...] with [...]" and NOTICE lines) are skipped; a report without data ("SKIPPED: ...",
    or nothing) gives an empty frame. Time columns stay in ns as nsys writes them."""
    if isinstance(source, Path) or ("\n" not in str(source) and os.path.exists(str(source))):
        opener = gzip.open if str(source).endswith(".gz") else open
        with opener(source, "rt", errors="replace") as fh:
            text = fh.read()
    else:
        text = str(source)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        fields = next(csv.reader([line]), [])
        if len(fields) >= 3 and any(f.endswith("(ns)") for f in fields) and (
                "Name" in fields or "Operation" in fields):
            return pd.read_csv(io.StringIO("\n".join(lines[i:])))
    return pd.DataFrame()


def classify_kernel(name: str) -> str:
    """The category of a kernel (or memory operation) name: the first of :data:`KERNEL_PATTERNS` that matches,
    else ``other``."""
    for cat, pattern in _COMPILED:
        if pattern.search(str(name)):
            return cat
    return "other"


def _col(df: pd.DataFrame, *names: str) -> str:
    for n in names:
        if n in df.columns:
            return n
    raise KeyError(f"none of {names} in the columns {list(df.columns)}")


def kernel_breakdown(kern_sum: pd.DataFrame, mem_sum: pd.DataFrame | None = None) -> dict[str, float]:
    """Category -> total ns from ``cuda_gpu_kern_sum`` (kernels, by name) and ``cuda_gpu_mem_time_sum`` (memcpy and
    memset, all ``memory``), summed over every GPU. Every row lands in exactly one category, so the categories
    add up to the reports' total."""
    out = {c: 0.0 for c in CATEGORIES}
    for df, name_col in ((kern_sum, "Name"), (mem_sum, "Operation")):
        if df is None or df.empty:
            continue
        total, names = df[_col(df, "Total Time (ns)")], df[_col(df, name_col, "Name")]
        for n, t in zip(names, total):
            out["memory" if name_col == "Operation" else classify_kernel(n)] += float(t)
    return out


def measure_window(nvtx: pd.DataFrame, name: str = NVTX_MEASURE) -> tuple[int, int] | None:
    """(start, end) ns of the last NVTX range called ``name`` in a ``nvtx_pushpop_trace`` table (nsys writes the
    default domain as a leading ``:``); None without one."""
    if nvtx is None or nvtx.empty or "Name" not in nvtx.columns:
        return None
    rows = nvtx[nvtx["Name"].astype(str).str.endswith(name)]
    if rows.empty:
        return None
    last = rows.sort_values(_col(rows, "Start (ns)")).iloc[-1]
    end = last["End (ns)"] if "End (ns)" in rows.columns else last["Start (ns)"] + last["Duration (ns)"]
    return int(last["Start (ns)"]), int(end)


def _union_length(starts: np.ndarray, ends: np.ndarray) -> float:
    if len(starts) == 0:
        return 0.0
    order = np.argsort(starts)
    s, e = starts[order], ends[order]
    total, cur_s, cur_e = 0.0, s[0], e[0]
    for a, b in zip(s[1:], e[1:]):
        if a > cur_e:
            total += cur_e - cur_s
            cur_s, cur_e = a, b
        else:
            cur_e = max(cur_e, b)
    return float(total + cur_e - cur_s)


def _breakdown_row(raw: dict[str, float], window: float | None, busy: float | None) -> dict:
    """Category ns (scaled for stream overlap), idle and shares of the window, from raw category sums."""
    s = sum(raw.values())
    row = {f"{c}_raw_ns": raw[c] for c in CATEGORIES}
    if window is None:  # no window: shares of the GPU time the summaries hold, no idle
        scale, idle, denom = 1.0, np.nan, s
    else:
        scale = busy / s if s > busy > 0 else 1.0
        idle, denom = max(window - busy, 0.0), window
    for c in CATEGORIES:
        row[f"{c}_ns"] = raw[c] * scale
        row[f"{c}_pct"] = 100.0 * raw[c] * scale / denom if denom else np.nan
    row.update(window_ns=window if window is not None else np.nan, busy_ns=busy if busy is not None else s,
               idle_ns=idle, overlap_scale=scale, idle_pct=100.0 * idle / denom if denom and window else np.nan)
    return row


def per_gpu_breakdown(trace: pd.DataFrame, window: tuple[int, int], devices: int = 0) -> pd.DataFrame:
    """One row per GPU from a ``cuda_gpu_trace`` table (kernels and memory operations, all processes): the
    category times, busy and idle time of the GPU within ``window`` (ns, events clipped to it). ``devices``: the
    GPUs the configuration used; one without any event in the window is a row of idle time."""
    w0, w1 = window
    length = float(w1 - w0)
    rows = []
    if trace is not None and not trace.empty:
        start = trace[_col(trace, "Start (ns)")].astype(float).to_numpy()
        end = start + trace[_col(trace, "Duration (ns)")].astype(float).fillna(0).to_numpy()
        s, e = np.clip(start, w0, w1), np.clip(end, w0, w1)
        keep = e > s
        t = pd.DataFrame({"device": trace["Device"].astype(str).to_numpy()[keep] if "Device" in trace else "GPU",
                          "name": trace["Name"].astype(str).to_numpy()[keep], "s": s[keep], "e": e[keep]})
        t["category"] = t["name"].map(classify_kernel)
        for dev, g in t.groupby("device", sort=True):
            raw = {c: float((g.loc[g["category"] == c, "e"] - g.loc[g["category"] == c, "s"]).sum())
                   for c in CATEGORIES}
            rows.append({"gpu": dev, **_breakdown_row(raw, length, _union_length(g["s"].to_numpy(),
                                                                                 g["e"].to_numpy()))})
    for i in range(len(rows), devices):
        # No event of this GPU reached the report: its engine process was not traced, which says nothing about
        # how busy the GPU was. Unknown, not idle: the row is empty and means over GPUs skip it.
        rows.append({"gpu": f"GPU {i}: no kernels captured", "window_ns": length, "busy_ns": np.nan,
                     "idle_ns": np.nan, "overlap_scale": np.nan, "idle_pct": np.nan,
                     **{f"{c}_{u}": np.nan for c in CATEGORIES for u in ("ns", "pct")}})
    return pd.DataFrame(rows)


def capture_status(breakdown: pd.DataFrame) -> tuple[str, str | None]:
    """("profiled", note) when nsys captured GPU work in the measured window (the note says when only some of the
    configuration's GPUs were captured); ("no kernels captured", why) when it captured none."""
    if breakdown.empty:
        return "failed", "nsys stats exported no kernel data"
    captured = breakdown["busy_ns"].fillna(0) > 0 if "busy_ns" in breakdown else pd.Series(True, breakdown.index)
    if not captured.any():
        return ("no kernels captured", "nsys recorded no GPU kernel of the engine in the measured window (its "
                "processes were not traced); left out of the comparison")
    if not captured.all():
        return "profiled", (f"kernels of {int(captured.sum())} of {len(captured)} GPUs captured; the other GPUs' "
                            "rows are empty (not traced), not idle")
    return "profiled", None


def summary_breakdown(kern_sum: pd.DataFrame, mem_sum: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row ``all GPUs`` from the summaries (no window, so no idle): the fallback when no trace is usable."""
    return pd.DataFrame([{"gpu": "all GPUs", **_breakdown_row(kernel_breakdown(kern_sum, mem_sum), None, None)}])


def breakdown_from_exports(out_dir: Path, window: tuple[int, int] | None, devices: int) -> pd.DataFrame:
    """The per-GPU breakdown of one profile from its exported CSVs (the trace clipped to the window), or the
    all-GPU summary when there is no window or no trace. The trace CSV is gzipped afterwards (it is large)."""
    trace_csv, trace_gz = out_dir / "cuda_gpu_trace.csv", out_dir / "cuda_gpu_trace.csv.gz"
    if trace_csv.exists():
        with open(trace_csv, "rb") as src, gzip.open(trace_gz, "wb") as dst:
            shutil.copyfileobj(src, dst)
        trace_csv.unlink()
    if window is not None and trace_gz.exists():
        df = per_gpu_breakdown(read_stats_csv(trace_gz), window, devices)
        if not df.empty:
            return df.assign(source=f"cuda_gpu_trace within NVTX {NVTX_MEASURE}")
    kern = out_dir / "cuda_gpu_kern_sum.csv"
    if kern.exists():
        mem = out_dir / "cuda_gpu_mem_time_sum.csv"
        return summary_breakdown(read_stats_csv(kern), read_stats_csv(mem) if mem.exists() else None).assign(
            source="cuda_gpu_kern_sum + cuda_gpu_mem_time_sum (no measure window: no idle time)")
    return pd.DataFrame()
