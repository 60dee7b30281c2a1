"""One profile per highlighted configuration under ``nsys profile``, reduced to status and breakdown tables."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..measure.offline import NVTX_MEASURE
from .breakdown import CATEGORIES, breakdown_from_exports, capture_status
from .configs import ROLE_LABELS, parallel_sizes, select_configs
from ..measure import supervisor
from .nsys import NSYS_DEVICE_PATH, _run, export_stats, find_nsys, nsys_environment, profile_command, unavailable_reason

STATUS_COLUMNS = ["candidate", "roles", "iteration", "tensor_parallel_size", "pipeline_parallel_size", "status",
                  "reason", "report", "window_s", "stats_filter", "profiled_output_tokens_per_s"]
BREAKDOWN_COLUMNS = (["candidate", "roles", "tensor_parallel_size", "pipeline_parallel_size", "gpu", "source",
                      "window_ns"] + [f"{c}_ns" for c in CATEGORIES] + ["idle_ns", "busy_ns", "overlap_scale"]
                     + [f"{c}_raw_ns" for c in CATEGORIES] + [f"{c}_pct" for c in (*CATEGORIES, "idle")])


def profile_config(config: dict, entry: dict, out_dir: Path, nsys: str, model_dir: str | None, log,
                   ) -> tuple[dict, pd.DataFrame]:
    """Profile one selected configuration: its status row and its breakdown rows."""
    from ..measure.runner import build_spec, worker_environment

    prof = config["profile"]
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(config))
    cfg["benchmark"]["mode"] = "offline"  # the profile is of the offline batch, whatever the search measured
    if prof.get("num_prompts"):
        cfg["workload"]["num_prompts"] = int(prof["num_prompts"])
    spec = build_spec(cfg, {"name": entry["candidate"], "config": entry["config"]}, model_dir)
    spec["cpu_kvcache_space_gib"] = cfg["benchmark"].get("cpu_kvcache_space_gib", 1)
    spec["cuda_profiler"] = spec["device"] == "cuda"  # flush every worker's trace at the window's end (offline.py)
    spec["min_window_s"] = 0  # one batch of profile.num_prompts: the profile explains where time goes, not how much
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
            from .. import hardware
            from ..measure.gpus import claim_gpus

            claimed = gpu_claim.enter_context(claim_gpus(len(spec["gpus_pinned"]), hardware.visible_gpu_indices(),
                                                         timeout_s=timeout))
            if spec["gpu_indices"] == spec["gpus_pinned"]:
                spec["gpu_indices"] = claimed
            spec["gpus_pinned"] = claimed
            spec_path.write_text(json.dumps(spec, indent=2))
        code, timed_out = _run(profile_command(nsys, rep_base, spec_path, result_path, prof["cuda_graph_trace"]),
                               log, timeout, env=nsys_environment(worker_environment(spec), spawn=True),
                               state_dir=supervisor.state_dir_for(rep_base), label=f"profile of {entry['candidate']}")
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
