"""From per-candidate ``metrics.json`` files to tables: observations, the Pareto set, hypervolume per iteration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..records import load_record, observation_row
from ..search.optimizer.observations import log_objectives_min, reference_point
from ..search.optimizer.pareto import hypervolume, pareto_mask


def observations_table(metric_paths: list[Path | str], space_keys: list[str]) -> pd.DataFrame:
    """``observations.csv``: one row per metrics file, by iteration then candidate."""
    rows = [observation_row(load_record(p), space_keys) for p in metric_paths]
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["iteration", "candidate"], kind="stable").reset_index(drop=True)
    return df


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
