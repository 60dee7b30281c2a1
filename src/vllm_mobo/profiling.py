"""Nsight Systems profiles of the highlighted configurations, reduced to where the GPU time goes (issue 7).

After the search, the ``profile`` rule runs the offline benchmark of a few configurations again under
``nsys profile``: the energy-optimal, throughput-optimal and knee configurations of the Pareto front and vLLM's
default (``profile.configs``; one run per distinct configuration). The worker (:func:`worker_main`, which runs
:func:`vllm_mobo.benchmark.offline.run` and then shuts the engine down cleanly) marks the warm-up and the measured ``generate`` call with the NVTX ranges :data:`NVTX_WARMUP` and
:data:`NVTX_MEASURE` (see offline.py). Everything is kept under ``results/<run>/profiles/<candidate>/``:
``profile.nsys-rep``, the ``nsys stats`` exports as CSV and the worker's result.

Every process's trace
    nsys writes a process's CUDA trace when the process ends cleanly or calls ``cudaProfilerStop``; vLLM's
    shutdown may kill an EngineCore or TP/PP worker first, and its kernels were then missing (first 4-GPU run:
    no kernels for two of four configurations, one of two GPUs for another). So the engine is built with
    ``profiler_config={"profiler": "cuda"}`` and the measured ``generate`` is wrapped in ``llm.start_profile()``
    / ``llm.stop_profile()``: every worker calls cudaProfilerStart/Stop, and nsys flushes at the stop
    (``--flush-on-cudaprofilerstop``, its default). Workers are spawned (``VLLM_WORKER_MULTIPROC_METHOD=spawn``),
    as vLLM's profiling guide advises under nsys.

The measured window
    vLLM runs its kernels in other processes (EngineCore, and one worker per TP/PP rank) than the one that pushes
    the NVTX ranges, and ``nsys stats --filter-nvtx`` keeps only the events of the process that owns the range.
    So the window is read from ``nvtx_pushpop_trace`` (start and end of the last ``vllm-mobo:measure`` range, in
    the session's nanoseconds, which every process shares) and applied to every GPU: the per-GPU breakdown clips
    the ``cuda_gpu_trace`` rows (kernels, memcpy, memset) to it. The summaries ``cuda_gpu_kern_sum`` and
    ``cuda_gpu_mem_time_sum`` are exported with ``--filter-time <start>/<end>`` (falling back to the unfiltered
    summary, which then includes start-up, if this nsys refuses the filter; ``stats_filter`` in status.csv says
    which).

The breakdown (per GPU, over the window)
    Each kernel name is put in one category by the first matching pattern of :data:`KERNEL_PATTERNS` (checked in
    order, case-insensitive): communication (NCCL and vLLM's custom all-reduce), attention (FlashAttention
    ``flash``/``fmha``/``attention``, KV-cache writes), GEMM (cuBLAS ``nvjet``, ``gemm``, ``cutlass``,
    ``sm90_xmma`` ...), memory (memcpy/memset operations and copy kernels), else other (Triton-fused
    elementwise/norm kernels, sampling, ...). Idle is the part of the window in which no kernel or copy ran on
    that GPU (window minus the union of their intervals). Where kernels of several streams overlap, the category
    times add up to more than the busy time; they are then scaled by ``overlap_scale`` = busy / sum so that the
    categories plus idle make up the window (the raw sums are kept in ``*_raw_ns``).

Where nsys or a GPU is absent (``profile.enabled: false`` too) nothing runs and ``status.csv`` says plainly why
("not profiled: nsys not found"); the rest of the pipeline and both reports go on.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

#: Where Nsight Systems lives on the lent GPU machine (off PATH; ../shared/device/README.md).
NSYS_DEVICE_PATH = "/opt/nvidia/nsight-compute/2025.3.1/host/target-linux-x64/nsys"
#: Its importer (QdstrmImporter) needs libdw.so.1, unpacked there by the device's install.sh.
LIBDW_DIRS = ("/tmp/dw/usr/lib/x86_64-linux-gnu",)

NVTX_WARMUP = "vllm-mobo:warmup"
NVTX_MEASURE = "vllm-mobo:measure"

#: The roles ``profile.configs`` may name. An entry may also be a mapping of engine args (e.g.
#: ``{tensor_parallel_size: 2}``): that configuration is profiled as well (role ``requested``), benchmarked in the
#: search or not (then the profiled run's own throughput is the one compared).
ROLES = ("energy_optimal", "throughput_optimal", "knee", "vllm_default")
ROLE_LABELS = {"energy_optimal": "energy-optimal", "throughput_optimal": "throughput-optimal", "knee": "knee",
               "vllm_default": "vLLM default", "requested": "requested"}

CATEGORIES = ("gemm", "attention", "communication", "memory", "other")
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

STATUS_COLUMNS = ["candidate", "roles", "iteration", "tensor_parallel_size", "pipeline_parallel_size", "status",
                  "reason", "report", "window_s", "stats_filter", "profiled_output_tokens_per_s"]
BREAKDOWN_COLUMNS = (["candidate", "roles", "tensor_parallel_size", "pipeline_parallel_size", "gpu", "source",
                      "window_ns"] + [f"{c}_ns" for c in CATEGORIES] + ["idle_ns", "busy_ns", "overlap_scale"]
                     + [f"{c}_raw_ns" for c in CATEGORIES] + [f"{c}_pct" for c in (*CATEGORIES, "idle")])

#: The ``nsys stats`` reports exported per profile (file ``<report>.csv`` in the candidate's directory).
STATS_REPORTS = ("nvtx_pushpop_trace", "cuda_gpu_kern_sum", "cuda_gpu_mem_time_sum", "cuda_gpu_trace")


# ------------------------------------------------------------------------------------------- finding nsys


def find_nsys(configured: str | None = None) -> str | None:
    """The nsys executable: ``profile.nsys`` if given (a path or a name on PATH), else ``nsys`` on PATH, else
    the known path on the lent GPU machine if it exists; None when there is none."""
    if configured:
        found = shutil.which(configured)
        return found if found else (configured if os.access(configured, os.X_OK) else None)
    return shutil.which("nsys") or (NSYS_DEVICE_PATH if os.access(NSYS_DEVICE_PATH, os.X_OK) else None)


def unavailable_reason(enabled: bool, nsys: str | None, device: str, configured: str | None = None) -> str | None:
    """Why nothing can be profiled here, as the sentence the reports show; None when profiling can run."""
    if not enabled:
        return "not profiled: profiling is disabled (profile.enabled: false)"
    missing = []
    if nsys is None:
        missing.append(f"nsys not found ({configured})" if configured else "nsys not found")
    if device != "cuda":
        missing.append("no GPU")
    return "not profiled: " + " and ".join(missing) if missing else None


def nsys_environment(base: dict | None = None, spawn: bool = False) -> dict:
    """The environment for nsys: libdw's directory on LD_LIBRARY_PATH where it exists (the importer needs it);
    ``spawn``: vLLM's workers started by spawn rather than fork, as vLLM's profiling guide advises under nsys
    (a forked CUDA process is not traced reliably; Nsight Systems' release notes)."""
    env = dict(os.environ if base is None else base)
    if spawn:
        env.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    extra = [d for d in LIBDW_DIRS if os.path.isdir(d)]
    if extra:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(extra + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    return env


# --------------------------------------------------------------------------------------- which configurations


def role_candidates(pareto: pd.DataFrame, objectives: list[dict]) -> dict[str, str]:
    """Role -> candidate name for the roles of :data:`ROLES` that the front defines (vLLM's default always)."""
    from .results import highlighted_configs
    from .space import VLLM_DEFAULT

    best = highlighted_configs(pareto, objectives) if len(pareto) else {}
    out = {}
    for o in objectives:
        role = "energy_optimal" if o["metric"].startswith("joules") else "throughput_optimal"
        if f"best {o['metric']}" in best and role not in out:
            out[role] = best[f"best {o['metric']}"]
    if "knee" in best:
        out["knee"] = best["knee"]
    out["vllm_default"] = VLLM_DEFAULT
    return out


def select_configs(pareto: pd.DataFrame, records: list[dict], objectives: list[dict],
                   roles: list) -> list[dict]:
    """The configurations to profile, one entry per distinct candidate in the order of ``roles`` (role names, or
    mappings of engine args): ``{"candidate", "roles", "config", "iteration", "record"}``. A role the run does
    not define (e.g. no successful configuration) is an entry with ``candidate`` None."""
    from .space import VLLM_DEFAULT, candidate_name

    by_role = role_candidates(pareto, objectives)
    by_name = {}
    for r in records:
        if r.get("status") == "ok" or r["candidate"] not in by_name:
            by_name[r["candidate"]] = r
    out: list[dict] = []
    for role in roles:
        explicit = dict(role) if isinstance(role, dict) else None
        if explicit is not None:
            name, role = candidate_name(explicit), "requested"
        else:
            name = by_role.get(role)
        if name is None:
            out.append({"candidate": None, "roles": [role], "config": None, "iteration": None, "record": None})
            continue
        same = next((e for e in out if e["candidate"] == name), None)
        if same:
            same["roles"].append(role)
            continue
        rec = by_name.get(name)
        config = rec["config"] if rec else (explicit if explicit is not None else ({} if name == VLLM_DEFAULT
                                                                                    else None))
        out.append({"candidate": name, "roles": [role], "config": config,
                    "iteration": rec["iteration"] if rec else None, "record": rec})
    return out


def parallel_sizes(entry: dict, fixed: dict | None = None) -> tuple[int, int]:
    """(TP, PP) of a selected configuration: as vLLM resolved them, else its engine args, else 1."""
    rec = entry.get("record") or {}
    args = {**(fixed or {}), **(entry.get("config") or {}), **(rec.get("engine_args") or {}),
            **(rec.get("resolved_engine_args") or {})}
    return int(args.get("tensor_parallel_size") or 1), int(args.get("pipeline_parallel_size") or 1)


# ------------------------------------------------------------------------------------------------ commands


def profile_command(nsys: str, out_base: Path | str, spec_path: Path | str, result_path: Path | str,
                    cuda_graph_trace: str = "node", python: str | None = None) -> list[str]:
    """``nsys profile`` around the offline worker. ``-s none --cpuctxsw none``: no CPU sampling (a 2-second run
    otherwise writes gigabytes); ``--trace-fork-before-exec``: vLLM's spawned EngineCore and TP/PP workers are
    traced; ``--cuda-graph-trace node``: kernels inside CUDA graphs (vLLM's decode steps) are recorded one by one
    rather than as one graph launch."""
    return [nsys, "profile", "-s", "none", "--cpuctxsw", "none", "-t", "cuda,nvtx",
            "--trace-fork-before-exec=true", f"--cuda-graph-trace={cuda_graph_trace}", "--force-overwrite=true",
            "-o", str(out_base), python or sys.executable, "-m", "vllm_mobo.profiling", "worker", str(spec_path),
            str(result_path)]


def stats_command(nsys: str, report: str, rep: Path | str, window: tuple[int, int] | None = None) -> list[str]:
    """``nsys stats`` of one report as CSV on stdout; ``window`` (ns) adds ``--filter-time start/end``."""
    cmd = [nsys, "stats", "--report", report, "--format", "csv", "--output", "-"]
    if window is not None:
        cmd += [f"--filter-time={int(window[0])}/{int(window[1])}"]
    return cmd + [str(rep)]


def _run(cmd: list[str], log, timeout: float, env: dict | None = None, stdout=None) -> tuple[int | None, bool]:
    """Run ``cmd`` in its own process group; (return code, timed out). The group is killed on timeout."""
    log.write("[vllm-mobo] $ " + " ".join(cmd) + "\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=stdout or log, stderr=log, env=env, start_new_session=True)
    try:
        proc.wait(timeout=timeout)
        return proc.returncode, False
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGINT, 60), (signal.SIGKILL, 10)):  # SIGINT first: nsys still writes its file
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        return proc.returncode, True
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of the group outlives the call
        except (ProcessLookupError, PermissionError):
            pass


# ------------------------------------------------------------------------------------------ parsing the CSVs


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


# ---------------------------------------------------------------------------------------------- one profile


def export_stats(nsys: str, rep: Path, out_dir: Path, log, timeout: float = 900) -> dict:
    """The ``nsys stats`` CSVs of one report into ``out_dir``: returns the window, the filter the summaries got
    and the paths. The SQLite export nsys makes beside the report is removed afterwards (it is rebuilt on
    demand and is several times the report's size)."""
    env = nsys_environment()
    sqlite = rep.with_suffix(".sqlite")
    sqlite.unlink(missing_ok=True)  # never reuse an export of an earlier report
    paths, info = {}, {"window": None, "stats_filter": "none"}

    def export(report: str, window=None) -> Path | None:
        path = out_dir / f"{report}.csv"
        with open(path, "w") as fh:
            code, timed_out = _run(stats_command(nsys, report, rep, window), log, timeout, env=env, stdout=fh)
        if code != 0 or timed_out:
            log.write(f"[vllm-mobo] nsys stats {report} failed (exit {code}{', timed out' if timed_out else ''})\n")
            return None
        df = read_stats_csv(path)
        df.to_csv(path, index=False)  # the bare table, without nsys's progress lines
        return path

    paths["nvtx_pushpop_trace"] = export("nvtx_pushpop_trace")
    if paths["nvtx_pushpop_trace"]:
        info["window"] = measure_window(read_stats_csv(paths["nvtx_pushpop_trace"]))
    for report in ("cuda_gpu_kern_sum", "cuda_gpu_mem_time_sum"):
        paths[report] = export(report, info["window"]) if info["window"] else None
        if paths[report]:
            info["stats_filter"] = f"--filter-time {info['window'][0]}/{info['window'][1]} (NVTX {NVTX_MEASURE})"
        else:
            paths[report] = export(report)
            if paths[report] and info["window"]:
                info["stats_filter"] = "none (this nsys refused --filter-time: the summaries include start-up)"
    paths["cuda_gpu_trace"] = export("cuda_gpu_trace", info["window"]) if info["window"] else None
    if not paths["cuda_gpu_trace"]:
        paths["cuda_gpu_trace"] = export("cuda_gpu_trace")
    sqlite.unlink(missing_ok=True)
    info["paths"] = paths
    return info


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


def profile_config(config: dict, entry: dict, out_dir: Path, nsys: str, model_dir: str | None, log,
                   ) -> tuple[dict, pd.DataFrame]:
    """Profile one selected configuration: its status row and its breakdown rows."""
    from .benchmark.runner import build_spec, worker_environment

    prof = config["profile"]
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(config))
    cfg["benchmark"]["mode"] = "offline"  # the profile is of the offline batch, whatever the search measured
    if prof.get("num_prompts"):
        cfg["workload"]["num_prompts"] = int(prof["num_prompts"])
    spec = build_spec(cfg, {"name": entry["candidate"], "config": entry["config"]}, model_dir)
    spec["cpu_kvcache_space_gib"] = cfg["benchmark"].get("cpu_kvcache_space_gib", 1)
    spec["cuda_profiler"] = spec["device"] == "cuda"  # flush every worker's trace at the window's end (offline.py)
    spec_path, result_path = out_dir / "spec.json", out_dir / "result.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    result_path.unlink(missing_ok=True)
    rep_base = out_dir / "profile"
    rep = rep_base.with_suffix(".nsys-rep")
    rep.unlink(missing_ok=True)
    timeout = float(prof.get("timeout_s") or (cfg["benchmark"]["timeout_s"] + 300))
    t0 = time.perf_counter()
    with contextlib.ExitStack() as gpu_claim:
        if spec["device"] == "cuda" and "CUDA_VISIBLE_DEVICES" not in os.environ:
            # as the runner does locally: hold the GPUs by lock file, so no other benchmark of the machine shares them
            from .benchmark import hardware
            from .cluster import claim_gpus

            claimed = gpu_claim.enter_context(claim_gpus(len(spec["gpus_pinned"]), hardware.visible_gpu_indices(),
                                                         timeout_s=timeout))
            if spec["gpu_indices"] == spec["gpus_pinned"]:
                spec["gpu_indices"] = claimed
            spec["gpus_pinned"] = claimed
            spec_path.write_text(json.dumps(spec, indent=2))
        code, timed_out = _run(profile_command(nsys, rep_base, spec_path, result_path, prof["cuda_graph_trace"]),
                               log, timeout, env=nsys_environment(worker_environment(spec), spawn=True))
    row = {"report": str(rep), "stats_filter": ""}
    if not rep.exists():
        why = "timed out" if timed_out else f"exit status {code}"
        return {**row, "status": "failed", "reason": f"nsys wrote no report ({why}); see the profile log",
                "report": ""}, pd.DataFrame()
    log.write(f"[vllm-mobo] {entry['candidate']}: profiled in {time.perf_counter() - t0:.0f} s, "
              f"{rep.stat().st_size / 1e6:.1f} MB\n")
    log.flush()
    info = export_stats(nsys, rep, out_dir, log)
    window = info["window"]
    tp, pp = parallel_sizes(entry, config.get("engine_args"))
    breakdown = breakdown_from_exports(out_dir, window, tp * pp)
    notes, throughput = [], np.nan
    if not result_path.exists():
        notes.append("the worker wrote no result (see the profile log)")
    else:
        throughput = json.loads(result_path.read_text())["measurements"]["output_tokens_per_s"]
    if window is None:
        notes.append(f"no NVTX range {NVTX_MEASURE} found: summaries include start-up, no idle time")
    status, note = capture_status(breakdown)
    if note:
        notes.append(note)
    return {**row, "status": status, "reason": "; ".join(notes) if notes else "profiled under nsys",
            "window_s": (window[1] - window[0]) / 1e9 if window else np.nan,
            "stats_filter": info["stats_filter"], "profiled_output_tokens_per_s": throughput}, breakdown


def profile_key(config: dict, entry: dict) -> dict:
    """What a profile depends on: a profile taken with the same key is reused (``profile.reuse``)."""
    prof = config["profile"]
    return json.loads(json.dumps({
        "config": entry["config"], "engine_args": config.get("engine_args") or {},
        "workload": {**config["workload"], "num_prompts": prof.get("num_prompts") or config["workload"]["num_prompts"]},
        "warmup_prompts": config["benchmark"]["warmup_prompts"], "cuda_graph_trace": prof["cuda_graph_trace"],
    }, sort_keys=True, default=str))


def profile_all(config: dict, pareto: pd.DataFrame, records: list[dict], device: str, profiles_dir: Path | str,
                model_dir: str | None, log) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every selected configuration profiled (or the reason why not): (status table, breakdown table)."""
    prof = config["profile"]
    profiles_dir = Path(profiles_dir)
    entries = select_configs(pareto, records, config["objectives"], prof["configs"])
    nsys = find_nsys(prof.get("nsys")) if prof["enabled"] else None
    reason = unavailable_reason(prof["enabled"], nsys, device, prof.get("nsys"))
    log.write(f"[vllm-mobo] nsys: {nsys or 'none on PATH nor at ' + NSYS_DEVICE_PATH}; benchmark device: {device}; "
              f"{reason or 'profiling'}\n")
    status, parts = [], []
    for e in entries:
        tp, pp = parallel_sizes(e, config.get("engine_args"))
        base = {"candidate": e["candidate"] or "", "roles": ", ".join(ROLE_LABELS.get(r, r) for r in e["roles"]),
                "iteration": e["iteration"], "tensor_parallel_size": tp, "pipeline_parallel_size": pp,
                "report": "", "window_s": np.nan, "stats_filter": ""}
        if e["candidate"] is None:
            status.append({**base, "status": "not profiled",
                           "reason": "not profiled: no configuration has this role (no successful run)"})
            continue
        if reason:
            status.append({**base, "status": "not profiled", "reason": reason})
            continue
        if e["config"] is None:
            status.append({**base, "status": "not profiled", "reason": "not profiled: its metrics.json is missing"})
            continue
        out_dir = profiles_dir / e["candidate"]
        key = profile_key(config, e)
        done = out_dir / "profiled.json"
        if prof.get("reuse", True) and done.exists() and json.loads(done.read_text()).get("key") == key:
            row = json.loads(done.read_text())["row"]  # profiled earlier with the same settings: kept
            bd = pd.read_csv(out_dir / "breakdown.csv") if (out_dir / "breakdown.csv").exists() else pd.DataFrame()
            log.write(f"[vllm-mobo] {e['candidate']}: reusing the profile in {out_dir} (profile.reuse)\n")
        else:
            try:
                row, bd = profile_config(config, e, out_dir, nsys, model_dir, log)
            except Exception as exc:  # one configuration's failure never fails the pipeline
                import traceback

                traceback.print_exc(file=log)
                row, bd = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}, pd.DataFrame()
            if row.get("status") == "profiled":
                bd.to_csv(out_dir / "breakdown.csv", index=False)
                done.write_text(json.dumps({"key": key, "row": row}, indent=2, default=float))
        status.append({**base, **row})
        if not bd.empty:
            parts.append(bd.assign(candidate=e["candidate"], roles=base["roles"], tensor_parallel_size=tp,
                                   pipeline_parallel_size=pp))
    st = pd.DataFrame(status, columns=STATUS_COLUMNS)
    bd = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=BREAKDOWN_COLUMNS)
    return st, bd.reindex(columns=BREAKDOWN_COLUMNS)


# --------------------------------------------------------------------------------------------- explanation


def status_sentences(status: pd.DataFrame) -> list[str]:
    """What was profiled, in sentences: "not profiled: nsys not found" when nothing was."""
    if status.empty:
        return ["not profiled: no configuration was selected (profile.configs is empty)"]
    done = status[status["status"] == "profiled"]
    out = []
    reasons = status.loc[status["status"] != "profiled", "reason"].dropna().unique().tolist()
    if done.empty and len(reasons) == 1:
        return [f"{reasons[0]} (configurations: {', '.join(c for c in status['candidate'] if c)})."]
    if len(done):
        out.append("Profiled under Nsight Systems: " + "; ".join(
            f"{r.candidate} ({r.roles}, TP={r.tensor_parallel_size}, PP={r.pipeline_parallel_size})"
            for r in done.itertuples()) + ".")
    for r in status[status["status"] != "profiled"].itertuples():
        out.append(f"{r.candidate or r.roles}: {r.status}: {r.reason}.")
    return out


def _mean_pct(bd: pd.DataFrame, cand: str, col: str) -> float:
    return float(bd.loc[bd["candidate"] == cand, col].mean())


def _describe(bd: pd.DataFrame, cand: str) -> str:
    rows = bd[bd["candidate"] == cand]
    has_idle = rows["idle_pct"].notna().any()
    parts = [f"{CATEGORY_LABELS[c]} {_mean_pct(bd, cand, f'{c}_pct'):.1f}%" for c in CATEGORIES]
    if has_idle:
        parts.append(f"idle {_mean_pct(bd, cand, 'idle_pct'):.1f}%")
    what = "of the measured window, mean over its GPUs" if has_idle else "of its GPU time (no measured window)"
    return ", ".join(parts) + f" ({what})"


def explain(status: pd.DataFrame, breakdown: pd.DataFrame, observations: pd.DataFrame,
            objectives: list[dict]) -> list[str]:
    """A short explanation, from the profiles and the benchmark results only, of why TP or PP wins for this
    workload; it says plainly when nothing was profiled or no TP/PP > 1 configuration was."""
    out = status_sentences(status)
    prof = status[status["status"] == "profiled"]
    bd = breakdown[breakdown["candidate"].isin(prof["candidate"])] if len(breakdown) else breakdown
    if prof.empty or bd.empty:
        out.append("No configuration was profiled, so no TP > 1 or PP > 1 configuration was either: these "
                   "results hold no kernel-level evidence of why TP or PP wins for this workload.")
        return out
    obs = pd.DataFrame()
    if "candidate" in observations:
        ok = observations[observations["status"] == "ok"] if "status" in observations else observations
        obs = ok.drop_duplicates("candidate", keep="last").set_index("candidate")

    def metrics(cand: str) -> str:
        if cand not in obs.index:
            return "not benchmarked in the search"
        r = obs.loc[cand]
        r = r.iloc[0] if isinstance(r, pd.DataFrame) else r
        return ", ".join(f"{float(r[o['metric']]):.4g} {o['metric'].replace('_', ' ')}" for o in objectives
                         if o["metric"] in r and pd.notna(r[o["metric"]]))

    for r in prof.itertuples():
        if r.candidate in set(bd["candidate"]):
            out.append(f"{r.candidate} (TP={r.tensor_parallel_size}, PP={r.pipeline_parallel_size}; "
                       f"{metrics(r.candidate)}): {_describe(bd, r.candidate)}.")
    tp = prof[prof["tensor_parallel_size"] > 1]
    pp = prof[prof["pipeline_parallel_size"] > 1]
    if tp.empty and pp.empty:
        out.append("None of the profiled configurations uses TP > 1 or PP > 1 (each ran on one GPU), so these "
                   "profiles cannot show why TP or PP wins for this workload. To compare them, add e.g. "
                   "{tensor_parallel_size: 2} and {pipeline_parallel_size: 2} to profile.configs.")
        return out
    has_idle = bd["idle_pct"].notna().any()

    def overhead(cand: str) -> float:
        return _mean_pct(bd, cand, "communication_pct") + (_mean_pct(bd, cand, "idle_pct") if has_idle else 0.0)

    for label, group, comm_what, idle_what in (
            ("TP", tp, "the all-reduces TP needs after each attention and MLP block", "no kernel or copy running"),
            ("PP", pp, "sending activations between stages", "pipeline bubbles: one stage waiting for the other")):
        for r in group.itertuples():
            comm = _mean_pct(bd, r.candidate, "communication_pct")
            idle = _mean_pct(bd, r.candidate, "idle_pct")
            size = r.tensor_parallel_size if label == "TP" else r.pipeline_parallel_size
            out.append(f"Under {label}={size} ({r.candidate}) each GPU spends {comm:.1f}% of its time in "
                       f"communication kernels ({comm_what})" + (f" and is idle {idle:.1f}% of the measured "
                                                                 f"window ({idle_what})" if has_idle else "")
                       + ", on average over its GPUs.")
    if tp.empty or pp.empty:
        missing = "PP > 1" if pp.empty else "TP > 1"
        out.append(f"No {missing} configuration was profiled, so the profiles cannot compare TP with PP here.")
        return out
    thr = next((o for o in objectives if not o["metric"].startswith("joules")), objectives[0])
    a, b = tp.iloc[0]["candidate"], pp.iloc[0]["candidate"]
    va = vb = None
    if a in obs.index and b in obs.index and thr["metric"] in obs.columns:
        va, vb = float(obs.loc[a, thr["metric"]]), float(obs.loc[b, thr["metric"]])
    elif "profiled_output_tokens_per_s" in prof and prof[prof["candidate"].isin([a, b])][
            "profiled_output_tokens_per_s"].notna().sum() == 2:  # not both benchmarked: the profiled runs' own
        thr = {"metric": "output_tokens_per_s (measured under nsys)", "direction": "maximize"}
        va, vb = (float(prof.loc[prof["candidate"] == c, "profiled_output_tokens_per_s"].iloc[0]) for c in (a, b))
    if va is not None:
        better_tp = (va > vb) == (thr["direction"] == "maximize")
        win, lose = (a, b) if better_tp else (b, a)
        won = "TP" if better_tp else "PP"
        ow, ol = overhead(win), overhead(lose)
        what = "communication + idle" if has_idle else "communication"
        if ow < ol:
            out.append(f"{won} wins on {thr['metric'].replace('_', ' ')} for this workload ({win}: "
                       f"{va if better_tp else vb:.4g} vs {lose}: {vb if better_tp else va:.4g}), consistent with "
                       f"the profiles: its GPUs lose {ow:.1f}% of their time to {what}, against {ol:.1f}%.")
        else:
            out.append(f"{won} wins on {thr['metric'].replace('_', ' ')} ({win}: {va if better_tp else vb:.4g} "
                       f"vs {lose}: {vb if better_tp else va:.4g}) although its GPUs lose as much or more time "
                       f"to {what} ({ow:.1f}% vs {ol:.1f}%): the difference lies in the compute kernels "
                       f"themselves (GEMM {_mean_pct(bd, win, 'gemm_pct'):.1f}% vs "
                       f"{_mean_pct(bd, lose, 'gemm_pct'):.1f}%, attention {_mean_pct(bd, win, 'attention_pct'):.1f}% "
                       f"vs {_mean_pct(bd, lose, 'attention_pct'):.1f}%), not in communication or bubbles.")
    else:
        out.append(f"{a} or {b} has no benchmark result in the search, so which of TP and PP wins is not known "
                   "from this run.")
    return out


def patterns_text() -> str:
    """The classification rules in one line, for the reports."""
    return "; ".join(f"{CATEGORY_LABELS[c]}: /{p}/" for c, p in KERNEL_PATTERNS) + \
        "; anything else: other kernels. First match wins, case-insensitive."


def pattern_list() -> list[dict]:
    """The classification rules as (category, alternatives) for the LaTeX report, breakable between them."""
    return [{"category": CATEGORY_LABELS[c], "alternatives": p.split("|")} for c, p in KERNEL_PATTERNS]


# ------------------------------------------------------------------------------------------------- figure


def gpu_label(device: str) -> str:
    """``NVIDIA H100 80GB HBM3 (1)`` (nsys's device column) -> ``GPU 1``; other labels unchanged."""
    m = re.search(r"\((\d+)\)$", str(device))
    return f"GPU {m.group(1)}" if m else str(device)


COLORS = {"gemm": "#4c72b0", "attention": "#dd8452", "communication": "#c44e52", "memory": "#8172b3",
          "other": "#937860", "idle": "#d0d0d0"}


def breakdown_figure(status: pd.DataFrame, breakdown: pd.DataFrame, path_png: str, path_pdf: str | None = None,
                     title: str = "") -> None:
    """Stacked bars, one per profiled configuration and GPU: the share of the measured window spent in each
    category and idle. Without profiles: a figure that says why (the status sentence)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["pdf.fonttype"] = 42
    import matplotlib.pyplot as plt
    import textwrap

    if breakdown is None or breakdown.empty:
        fig, ax = plt.subplots(figsize=(8, 2.6))
        ax.axis("off")
        text = "\n".join(textwrap.fill(s, 90) for s in status_sentences(status))
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True)
        ax.set_title(("GPU time breakdown (Nsight Systems) — " + title).strip(" —"), fontsize=11)
    else:
        bd = breakdown.reset_index(drop=True)
        labels = [f"{r.candidate}\n{r.roles}; TP{int(r.tensor_parallel_size)} PP{int(r.pipeline_parallel_size)}"
                  f" · {gpu_label(r.gpu)}" for r in bd.itertuples()]
        cats = list(CATEGORIES) + (["idle"] if bd["idle_pct"].notna().any() else [])
        fig, ax = plt.subplots(figsize=(10, 1.2 + 0.55 * len(bd)))
        left = np.zeros(len(bd))
        for c in cats:
            vals = bd[f"{c}_pct"].fillna(0).to_numpy(dtype=float)
            ax.barh(range(len(bd)), vals, left=left, color=COLORS[c], label=CATEGORY_LABELS[c], edgecolor="white")
            for i, v in enumerate(vals):
                if v >= 6:
                    ax.text(left[i] + v / 2, i, f"{v:.0f}%", ha="center", va="center", fontsize=7, color="white")
            left += vals
        ax.set_yticks(range(len(bd)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, max(100.0, float(left.max())))
        ax.set_xlabel("% of the measured window per GPU" if "idle" in cats else "% of GPU kernel + copy time")
        ax.legend(ncol=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / max(len(bd), 1)))
        ax.set_title(("GPU time breakdown (Nsight Systems) — " + title).strip(" —"), fontsize=11)
    fig.tight_layout()
    fig.savefig(path_png, dpi=130)
    if path_pdf:
        fig.savefig(path_pdf)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- the reports


def read_tables(status_csv: Path | str, breakdown_csv: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    status = pd.read_csv(status_csv, keep_default_na=False, na_values=[""])
    status["candidate"] = status["candidate"].fillna("")
    bd = pd.read_csv(breakdown_csv)
    return status, bd


def latex_section(status_csv, breakdown_csv, explanation_txt, figure_pdf) -> dict:
    """What the report's profiling section shows: sentences, the status and breakdown tables, the figure."""
    from . import analysis as A
    from .report import Raw, table

    status, bd = read_tables(status_csv, breakdown_csv)
    text = [p for p in Path(explanation_txt).read_text().split("\n\n") if p.strip()]
    st = status[["candidate", "roles", "tensor_parallel_size", "pipeline_parallel_size", "status", "reason"]]
    st = st.rename(columns={"tensor_parallel_size": "TP", "pipeline_parallel_size": "PP"})
    ctx = {"text": [" ".join(p.split()) for p in text], "status": table(st.fillna("").map(A.fmt)),
           "breakdown": None, "figure": None, "patterns": pattern_list()}
    if not bd.empty:
        cols = ["candidate", "gpu"] + [f"{c}_pct" for c in (*CATEGORIES, "idle")]
        t = bd[cols].copy()
        t["gpu"] = t["gpu"].map(gpu_label)
        t = t.rename(columns={f"{c}_pct": f"{CATEGORY_LABELS[c].split(' (')[0]} %" for c in (*CATEGORIES, "idle")})
        ctx["breakdown"] = table(t.map(lambda v: f"{v:.1f}" if isinstance(v, float) and not np.isnan(v)
                                       else ("" if isinstance(v, float) else v)))
        ctx["figure"] = Raw(Path(figure_pdf).as_posix())
    return ctx


# ------------------------------------------------------------------------------------------------ the worker


def worker_main(argv: list[str]) -> int:
    """``python -m vllm_mobo.profiling worker SPEC RESULT``: the offline benchmark (with its NVTX ranges), then a
    clean engine shutdown so that nsys receives the trace of every process (offline.py's own ``os._exit`` would
    leave the EngineCore to be killed). A watchdog exits anyway if vLLM's shutdown hangs."""
    import gc
    import threading

    from .benchmark.offline import run

    spec_path, result_path = Path(argv[0]), Path(argv[1])
    result = run(json.loads(spec_path.read_text()))
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, result_path)
    print(f"[vllm-mobo] profile run: {result['measurements']['output_tokens_per_s']:.1f} output tok/s",
          flush=True)
    watchdog = threading.Timer(90.0, lambda: os._exit(0))
    watchdog.daemon = True
    watchdog.start()
    gc.collect()  # the LLM is gone with run()'s frame: vLLM shuts its engine processes down here
    time.sleep(2.0)
    # Whatever is left (an EngineCore or TP/PP worker vLLM did not stop) gets SIGTERM, so it exits through its
    # own handlers and its CUDA trace reaches nsys; SIGKILL only after 20 s. nsys ends when all have exited.
    import psutil

    left = psutil.Process().children(recursive=True)
    for proc in left:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(left, timeout=20)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "worker":
        sys.exit(worker_main(sys.argv[2:]))
    print("usage: python -m vllm_mobo.profiling worker SPEC.json RESULT.json", file=sys.stderr)
    sys.exit(2)
