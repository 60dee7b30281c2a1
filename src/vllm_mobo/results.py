"""From per-candidate ``metrics.json`` files to tables: observations, the Pareto set, hypervolume per iteration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .io import read_json
from .optimizer.pareto import hypervolume, pareto_mask
from .optimizer.propose import Observation, log_objectives_min, reference_point
from .space import VLLM_DEFAULT

METRIC_COLUMNS = ["output_tokens_per_s", "total_tokens_per_s", "requests_per_s", "joules_per_output_token",
                  "joules_per_token", "energy_j", "elapsed_s", "output_tokens", "prompt_tokens", "num_requests"]
#: Online (serving) mode only; NaN for offline rows. Latencies in ms over the successful requests of the headline
#: rate; goodput in requests/s meeting every SLO.
LATENCY_COLUMNS = [f"{m}_ms_{p}" for m in ("ttft", "tpot", "itl", "e2el") for p in ("p50", "p90", "p99", "mean")]
ONLINE_COLUMNS = ["request_rate", "goodput", "goodput_fraction", "failed_requests", *LATENCY_COLUMNS,
                  "energy_window_s", "mean_power_w"]


def slo_feasible(record: dict) -> bool:
    """False when an online record missed its SLOs and they are constraints; True otherwise."""
    metrics = record.get("metrics") or {}
    return not (metrics.get("slo_as_constraint") and metrics.get("slo_met") is False)


def energy_label(energy: dict | None) -> str:
    """``gpu:measured cpu:estimated ram:estimated``: the provenance of every source, for tables and figures."""
    if not energy:
        return ""
    return " ".join(f"{s['source']}:{s['provenance']}" for s in energy["sources"])


def observation_row(record: dict, space_keys: list[str]) -> dict:
    row = {"iteration": record["iteration"], "candidate": record["candidate"], "status": record["status"],
           "failure_kind": (record.get("failure") or {}).get("kind", ""),
           "failure_reason": (record.get("failure") or {}).get("reason", "")}
    resolved = record.get("resolved_engine_args") or {}
    for key in space_keys:
        row[key] = record["config"].get(key, resolved.get(key))
    row["is_vllm_default"] = record["candidate"] == VLLM_DEFAULT
    metrics = record.get("metrics") or {}
    for col in METRIC_COLUMNS:
        row[col] = metrics.get(col, np.nan)
    row["mode"] = record.get("mode", "offline")
    for col in ONLINE_COLUMNS:
        value = metrics.get(col, np.nan)
        row[col] = float(value) if col == "request_rate" and value is not None else value  # "inf" -> inf
    row["slo_met"] = metrics.get("slo_met", np.nan) if record["status"] == "ok" else np.nan
    row["slo_violations"] = "; ".join(metrics.get("slo_violations") or [])
    row["feasible"] = record["status"] == "ok" and slo_feasible(record)
    row["energy_idle_subtracted"] = bool((record.get("energy") or {}).get("idle_subtracted", False))
    for src in ("gpu", "cpu", "ram"):
        entry = next((s for s in ((record.get("energy") or {}).get("sources", [])) if s["source"] == src), None)
        row[f"energy_{src}_j"] = entry["joules"] if entry else np.nan
        row[f"energy_{src}_provenance"] = entry["provenance"] if entry else ""
    row["energy_provenance"] = energy_label(record.get("energy"))
    timing = record.get("timing") or {}
    row["engine_init_s"] = timing.get("engine_init_s", np.nan)
    row["wall_s"] = timing.get("wall_s", np.nan)
    row["device"] = record.get("device")
    row["devices_used"] = record.get("devices_used")
    row["vllm_version"] = (record.get("software") or {}).get("vllm")
    return row


def observations_table(metric_paths: list[Path | str], space_keys: list[str]) -> pd.DataFrame:
    rows = [observation_row(read_json(p), space_keys) for p in metric_paths]
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["iteration", "candidate"], kind="stable").reset_index(drop=True)
    return df


def to_observations(records: list[dict], objectives: list[dict]) -> list[Observation]:
    """Metrics records -> optimiser observations (raw objective values in the order of ``objectives``).

    A failed run, and an online run that missed its SLOs while they are constraints (``slo_met: false``), are
    infeasible: ``ok=False`` without objective values, learnt by the feasibility model and never re-proposed.
    ``cost_j`` is :func:`record_evaluation_energy_j` (None when unknown), the cost ``ehvi-energy`` models."""
    out = []
    for r in records:
        ok = r["status"] == "ok" and slo_feasible(r)
        values = tuple(float(r["metrics"][o["metric"]]) for o in objectives) if ok else None
        if ok and any(not np.isfinite(v) or v <= 0 for v in values):
            ok, values = False, None  # e.g. zero energy measured: not a usable point
        cost = record_evaluation_energy_j(r)
        out.append(Observation(r["candidate"], r["config"], ok, values, r.get("resolved_engine_args"),
                               cost_j=cost if np.isfinite(cost) and cost > 0 else None))
    return out


def evaluation_energy_j(energy_j: float | None, window_s: float | None, wall_s: float | None) -> float:
    """What one evaluation itself cost in joules, ESTIMATED: the measured window's mean power (``energy_j`` over
    ``window_s``) times the evaluation's whole wall time (engine start-up, warm-up, measured window, shutdown).
    Start-up draws less than a loaded window, so this overstates it somewhat; it is the search-energy axis of the
    optimiser benchmark and the cost that energy-aware acquisition divides by. NaN when the evaluation measured no
    energy (a failure): callers fill that with a model of their own."""
    try:
        energy_j, window_s, wall_s = float(energy_j), float(window_s), float(wall_s)
    except (TypeError, ValueError):
        return float("nan")
    if not (np.isfinite(energy_j) and np.isfinite(window_s) and np.isfinite(wall_s)) or window_s <= 0:
        return float("nan")
    return energy_j / window_s * max(wall_s, window_s)


def record_evaluation_energy_j(record: dict) -> float:
    """:func:`evaluation_energy_j` of a metrics record (``metrics.json``); the window is the energy window of
    online mode, else the timed generate call."""
    metrics = record.get("metrics") or {}
    window = metrics.get("energy_window_s", metrics.get("elapsed_s"))
    return evaluation_energy_j(metrics.get("energy_j"), window, (record.get("timing") or {}).get("wall_s"))


def feasible_rows(obs: pd.DataFrame) -> pd.DataFrame:
    """Observations that ran and met their SLOs (online mode with SLOs as constraints): the ones a front holds."""
    ok = obs["status"] == "ok"
    if "feasible" in obs:
        ok &= obs["feasible"].astype(bool)
    return obs[ok].copy()


def pareto_table(obs: pd.DataFrame, objectives: list[dict]) -> pd.DataFrame:
    """The feasible observations that no other feasible observation dominates, best first objective first."""
    ok = feasible_rows(obs)
    if ok.empty:
        return ok
    Y = log_objectives_min(ok[[o["metric"] for o in objectives]].to_numpy(), [o["direction"] for o in objectives])
    front = ok[pareto_mask(Y)].copy()
    first = objectives[0]
    return front.sort_values(first["metric"], ascending=first["direction"] == "minimize").reset_index(drop=True)


def hypervolume_by_iteration(obs: pd.DataFrame, objectives: list[dict]) -> pd.DataFrame:
    """Hypervolume of everything found up to each iteration, in log-objective space, with one reference point
    (the nadir of all feasible observations plus 10% of the range) for every iteration, so values compare."""
    ok = feasible_rows(obs)
    iterations = sorted(obs["iteration"].unique()) if len(obs) else []
    if ok.empty:
        return pd.DataFrame({"iteration": iterations, "evaluations": np.nan, "hypervolume": 0.0})
    directions = [o["direction"] for o in objectives]
    Y_all = log_objectives_min(ok[[o["metric"] for o in objectives]].to_numpy(), directions)
    ref = reference_point(Y_all)
    rows = []
    for it in iterations:
        upto = ok[ok["iteration"] <= it]
        Y = log_objectives_min(upto[[o["metric"] for o in objectives]].to_numpy(), directions)
        hv = hypervolume(Y[pareto_mask(Y)], ref) if len(Y) else 0.0
        rows.append({"iteration": it, "evaluations": int((obs["iteration"] <= it).sum()), "hypervolume": hv,
                     "pareto_size": int(pareto_mask(Y).sum()) if len(Y) else 0})
    return pd.DataFrame(rows)


def highlighted_configs(pareto: pd.DataFrame, objectives: list[dict]) -> dict[str, str]:
    """Names of the best configuration for each objective and of the knee of the front (the front point farthest
    from the line between the two extremes, in normalised log-objective space)."""
    if pareto.empty:
        return {}
    Y = log_objectives_min(pareto[[o["metric"] for o in objectives]].to_numpy(), [o["direction"] for o in objectives])
    out = {}
    for j, o in enumerate(objectives):
        out[f"best {o['metric']}"] = pareto["candidate"].iloc[int(np.argmin(Y[:, j]))]
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    Z = (Y - lo) / np.where(hi > lo, hi - lo, 1.0)
    a, b = Z[np.argmin(Z[:, 0])], Z[np.argmin(Z[:, 1])]
    d = b - a
    norm_d = np.linalg.norm(d)
    dist = np.abs(d[0] * (Z[:, 1] - a[1]) - d[1] * (Z[:, 0] - a[0])) / norm_d if norm_d > 0 else np.zeros(len(Z))
    out["knee"] = pareto["candidate"].iloc[int(np.argmax(dist))]
    return out
