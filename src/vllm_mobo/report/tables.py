"""From per-candidate ``metrics.json`` files to tables: observations, the Pareto set, hypervolume per iteration, and
the highlighted configurations of a front (best per objective, knee) for 2 to 4 objectives."""

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


def in_words(parts: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``: a list as a sentence names it."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1] if parts else ""


def knee_rule(k: int) -> str:
    """How :func:`knee_index` picks the knee of a front of ``k`` objectives, in words for the reports."""
    if k == 2:
        return ("the point of the front farthest from the line between the best configuration of each objective "
                "(log objectives scaled to [0, 1] over the front), so the one that gives up least of either objective")
    return ("the point of the front nearest the ideal point (the best value of every objective) once each log "
            "objective is scaled to [0, 1] over the front (compromise programming, Euclidean distance), so the one "
            "that gives up least over all objectives together")


def knee_index(Y: np.ndarray) -> int:
    """Row of the knee of a front ``Y`` (n, k), minimised log objectives: :func:`knee_rule`.

    k = 2: farthest from the line through the two extremes (Das 1999's normal-boundary distance). k >= 3: nearest
    the ideal point of the min-max normalised front (compromise programming, Zeleny 1973), ties to the first row.
    Hand-written: pymoo 0.6's ``CompromiseProgramming`` returns no point, and its ``HighTradeoffPoints`` returns a
    possibly empty set of outliers that needs neighbourhoods a front of a few points does not have."""
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    Z = (Y - lo) / np.where(hi > lo, hi - lo, 1.0)
    if Y.shape[1] != 2:
        return int(np.argmin(np.linalg.norm(Z, axis=1)))
    a, b = Z[np.argmin(Z[:, 0])], Z[np.argmin(Z[:, 1])]
    d = b - a
    norm_d = np.linalg.norm(d)
    dist = np.abs(d[0] * (Z[:, 1] - a[1]) - d[1] * (Z[:, 0] - a[0])) / norm_d if norm_d > 0 else np.zeros(len(Z))
    return int(np.argmax(dist))


def highlighted_configs(pareto: pd.DataFrame, objectives: list[dict]) -> dict[str, str]:
    """Names of the best configuration for each objective (``best <metric>``) and of the ``knee`` of the front
    (:func:`knee_index`), for any number of objectives."""
    if pareto.empty:
        return {}
    Y = log_objectives_min(pareto[[o["metric"] for o in objectives]].to_numpy(), [o["direction"] for o in objectives])
    out = {}
    for j, o in enumerate(objectives):
        out[f"best {o['metric']}"] = pareto["candidate"].iloc[int(np.argmin(Y[:, j]))]
    out["knee"] = pareto["candidate"].iloc[knee_index(Y)]
    return out
