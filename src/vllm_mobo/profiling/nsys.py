"""Nsight Systems itself: finding ``nsys``, the profile and ``nsys stats`` commands, exporting the reports."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

from ..measure import supervisor
from ..measure.offline import NVTX_MEASURE
from .breakdown import measure_window, read_stats_csv

#: Where Nsight Systems lives on the lent GPU machine (off PATH; ../shared/device/README.md).
NSYS_DEVICE_PATH = "/opt/nvidia/nsight-compute/2025.3.1/host/target-linux-x64/nsys"
#: Its importer (QdstrmImporter) needs libdw.so.1, unpacked there by the device's install.sh.
LIBDW_DIRS = ("/tmp/dw/usr/lib/x86_64-linux-gnu",)


#: Its importer (QdstrmImporter) needs libdw.so.1, unpacked there by the device's install.sh.
LIBDW_DIRS = ("/tmp/dw/usr/lib/x86_64-linux-gnu",)


#: The ``nsys stats`` reports exported per profile (file ``<report>.csv`` in the candidate's directory).
STATS_REPORTS = ("nvtx_pushpop_trace", "cuda_gpu_kern_sum", "cuda_gpu_mem_time_sum", "cuda_gpu_trace")


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


def profile_command(nsys: str, out_base: Path | str, spec_path: Path | str, result_path: Path | str,
                    cuda_graph_trace: str = "node", python: str | None = None) -> list[str]:
    """``nsys profile`` around the offline worker. ``-s none --cpuctxsw none``: no CPU sampling (a 2-second run
    otherwise writes gigabytes); ``--trace-fork-before-exec``: vLLM's spawned EngineCore and TP/PP workers are
    traced; ``--cuda-graph-trace node``: kernels inside CUDA graphs (vLLM's decode steps) are recorded one by one
    rather than as one graph launch."""
    return [nsys, "profile", "-s", "none", "--cpuctxsw", "none", "-t", "cuda,nvtx",
            "--trace-fork-before-exec=true", f"--cuda-graph-trace={cuda_graph_trace}", "--force-overwrite=true",
            "-o", str(out_base), python or sys.executable, "-m", "vllm_mobo.profiling.worker", str(spec_path),
            str(result_path)]


def stats_command(nsys: str, report: str, rep: Path | str, window: tuple[int, int] | None = None) -> list[str]:
    """``nsys stats`` of one report as CSV on stdout; ``window`` (ns) adds ``--filter-time start/end``."""
    cmd = [nsys, "stats", "--report", report, "--format", "csv", "--output", "-"]
    if window is not None:
        cmd += [f"--filter-time={int(window[0])}/{int(window[1])}"]
    return cmd + [str(rep)]


#: Seconds nsys gets after SIGINT to write its report, when a profile runs past its time limit.
NSYS_INTERRUPT_GRACE_S = 60.0


def _run(cmd: list[str], log, timeout: float, env: dict | None = None, stdout=None,
         state_dir: Path | str | None = None, label: str = "") -> tuple[int | None, bool]:
    """Run ``cmd`` under :mod:`vllm_mobo.measure.supervisor` (a session of its own, killed if this process dies);
    (return code, timed out). On timeout it gets SIGINT first (nsys still writes its report), then SIGKILL; nothing
    it started outlives the call. With ``state_dir`` (an ``nsys profile`` of a run) it is an attempt of that state
    folder, started after the leftovers of interrupted attempts there are stopped."""
    log.write("[vllm-mobo] $ " + " ".join(cmd) + "\n")
    log.flush()
    if state_dir is not None:
        supervisor.stop_leftovers(state_dir, log=lambda line: (log.write(line + "\n"), log.flush()))
    proc = supervisor.start(cmd, stdout=stdout or log, stderr=log, env=env, state_dir=state_dir, label=label,
                            parent_death=signal.SIGKILL)
    try:
        code = proc.wait(timeout)
        if code is not None:
            return code, False
        proc.stop(grace_s=NSYS_INTERRUPT_GRACE_S, first=signal.SIGINT)
        return proc.returncode, True
    finally:
        proc.finish()


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
