"""Which objective pairs trade off: Spearman rank correlation of each pair, both taken in minimisation form, over
the measured front and over every feasible observation.

In minimisation form a *negative* correlation means that where one objective gets better the other gets worse: the
pair trades off. A positive one means they improve together (one could drop out of the search without losing
much). Rank correlation, because it does not care about units or log scales. The verdict comes from the front when
it holds at least :data:`MIN_POINTS` configurations, else from the feasible observations, else there are too few
points to say. Beside it, exact at any size: how many pairs of front configurations conflict on the two objectives
(one strictly better on the first and strictly worse on the second). ``tradeoffs.csv`` holds one row per objective
pair (:data:`COLUMNS`).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..records import metric_label
from ..search.optimizer.pareto import to_minimisation
from .tables import feasible_rows

#: |rho| from which a relation is called a trade-off (rho <= -THRESHOLD) or improving together (rho >= THRESHOLD):
#: a moderate rank correlation; weaker ones are "no clear relation" on the few points a search measures.
THRESHOLD = 0.4
#: Fewest points a rank correlation is computed on: with 3 points rho only takes the values 0, +-0.5 and +-1.
MIN_POINTS = 4
COLUMNS = ["objective_a", "objective_b", "direction_a", "direction_b", "n_front", "rho_front", "n_feasible",
           "rho_feasible", "basis", "verdict", "front_pairs", "front_pairs_conflicting"]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two columns; NaN with fewer than :data:`MIN_POINTS` points or a constant column."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < MIN_POINTS or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return round(float(spearmanr(a, b).statistic), 9)  # 0.3999999... of 4 points is the 0.4 it means


def conflicting_pairs(a: np.ndarray, b: np.ndarray) -> int:
    """Pairs of points (minimised ``a``, ``b``) where one is strictly better on ``a`` and strictly worse on ``b``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return int(sum((a[i] - a[j]) * (b[i] - b[j]) < 0 for i, j in combinations(range(len(a)), 2)))


def verdict(rho: float) -> str:
    if np.isnan(rho):
        return "too few points"
    if rho <= -THRESHOLD:
        return "trade off"
    return "improve together" if rho >= THRESHOLD else "no clear relation"


def tradeoff_table(obs: pd.DataFrame, front: pd.DataFrame, objectives: list[dict]) -> pd.DataFrame:
    """One row per objective pair (in config order): rho over the front (``front``: ``pareto.csv``) and over the
    feasible observations, which of them the verdict rests on (``basis``: front, feasible observations or none)
    and the verdict (trade off, improve together, no clear relation, too few points)."""
    ok = feasible_rows(obs) if len(obs) else obs
    metrics, directions = [o["metric"] for o in objectives], [o["direction"] for o in objectives]
    sets = {name: to_minimisation(df[metrics].to_numpy(float), directions) if len(df) else np.empty((0, len(metrics)))
            for name, df in (("front", front), ("feasible", ok))}
    rows = []
    for i, j in combinations(range(len(objectives)), 2):
        rho = {name: rank_correlation(Y[:, i], Y[:, j]) for name, Y in sets.items()}
        basis = next((b for b in ("front", "feasible") if not np.isnan(rho[b])), "none")
        rows.append({"objective_a": metrics[i], "objective_b": metrics[j], "direction_a": directions[i],
                     "direction_b": directions[j], "n_front": len(sets["front"]), "rho_front": rho["front"],
                     "n_feasible": len(sets["feasible"]), "rho_feasible": rho["feasible"],
                     "basis": {"front": "front", "feasible": "feasible observations"}.get(basis, "none"),
                     "verdict": verdict(rho.get(basis, float("nan"))),
                     "front_pairs": len(sets["front"]) * (len(sets["front"]) - 1) // 2,
                     "front_pairs_conflicting": conflicting_pairs(sets["front"][:, i], sets["front"][:, j])})
    return pd.DataFrame(rows, columns=COLUMNS)


def _rho(value: float, n: int, where: str) -> str:
    return f"too few {where} ({n}) for rho" if np.isnan(value) else f"rho = {value:+.2f} over the {n} {where}"


def tradeoff_text(table: pd.DataFrame) -> list[str]:
    """One sentence per pair, and the rule, for the notebook and the LaTeX report."""
    if table.empty:
        return []
    out = []
    for _, r in table.iterrows():
        pair = f"{metric_label(r['objective_a'])} and {metric_label(r['objective_b'])}"
        says = {"trade off": "trade off", "improve together": "improve together (no trade-off)",
                "no clear relation": "show no clear relation", "too few points": "cannot be judged yet"}[r["verdict"]]
        where = "" if r["basis"] == "none" else f" on the {r['basis']}"
        conflicts = f"; on the front {int(r['front_pairs_conflicting'])} of {int(r['front_pairs'])} pair(s) of " \
            "configurations conflict on them" if r["front_pairs"] else ""
        out.append(f"{pair} {says}{where} (Spearman: {_rho(r['rho_front'], r['n_front'], 'front points')}; "
                   f"{_rho(r['rho_feasible'], r['n_feasible'], 'feasible observations')}{conflicts}).")
    out.append(f"Rule: Spearman's rank correlation of the two objectives, both oriented so that smaller is better; "
               f"rho <= -{THRESHOLD:g} is a trade-off, rho >= {THRESHOLD:g} improving together, anything between "
               f"no clear relation; judged on the front where it has at least {MIN_POINTS} configurations, else on "
               "all feasible observations." + (" On the front of two objectives rho is -1 by construction: the "
                                               "feasible observations say how strongly they conflict over the space."
                                               if len(table) == 1 else ""))
    return out
