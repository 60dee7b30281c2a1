"""The strategy comparison scored: reach of 95% of the true front's hypervolume, values at given budgets, median
and IQR over seeds, and the project's target checked clause by clause.

Two yardsticks, each a column of the traces (:mod:`.compare`): ``hv_ratio``, with the reference point just beyond
the true front's nadir (:meth:`.table.ReplayTable.front_reference_point`), judges; ``hv_ratio_all_rows_ref``, with
the lenient reference point of earlier reports (nadir of every feasible row + 10%), is kept beside it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..resources import resource
from .table import ReplayTable

#: Every strategy the benchmark knows (names as in the config's ``optimizer.strategy``).
STRATEGIES = ["qlognehvi", "ehvi", "ehvi-energy", "parego", "random", "sobol", "nsga2", "optuna", "optuna-gp"]
#: The exact 2-D EHVI of earlier versions: the default must do no worse than it on 2-objective tables.
EXACT_EHVI = "ehvi"
THRESHOLD = 0.95
#: The target (median of >= 10 seeds, batch 4, ``hv_ratio``): the default strategy reaches 95% within this many
#: evaluations ...
TARGET_EVALUATIONS = 20
#: ... is ahead of every other strategy run at these evaluation counts, and no worse than EXACT_EHVI.
CHECK_AT = (12, 25)
#: The yardsticks: (column of the traces, suffix of its summary columns).
YARDSTICKS = (("hv_ratio", ""), ("hv_ratio_all_rows_ref", "_all_rows_ref"))

_CENSOR = 1e300


def default_strategy() -> str:
    """The schema's default ``optimizer.strategy``: the strategy the target is about ("ours")."""
    import yaml  # the schema read directly: vllm_mobo.config imports jsonschema, seconds to start

    with open(resource("config.schema.yaml")) as fh:
        return yaml.safe_load(fh)["properties"]["optimizer"]["properties"]["strategy"]["default"]


def quantiles(values, qs=(0.25, 0.5, 0.75)) -> list[float]:
    """Quantiles where inf means "not reached": an interpolation touching inf is inf (censored)."""
    v = np.asarray([x for x in values if not (isinstance(x, float) and math.isnan(x))], dtype=float)
    if not len(v):
        return [float("nan")] * len(qs)
    v = np.where(np.isinf(v), _CENSOR, v)
    return [float("inf") if q >= _CENSOR / 10 else float(q) for q in np.quantile(v, qs)]


def reach(trace: pd.DataFrame, threshold: float = THRESHOLD, column: str = "hv_ratio") -> tuple[float, float]:
    """(evaluations, cumulative search energy J) at the first evaluation whose ``column`` is at least ``threshold``
    in one run's trace; (inf, inf) when the run never got there."""
    t = trace.sort_values("evaluation")
    hit = t[t[column] >= threshold - 1e-12]
    if hit.empty:
        return float("inf"), float("inf")
    first = hit.iloc[0]
    return float(first["evaluation"]), float(first["cumulative_energy_j"])


def value_at(trace: pd.DataFrame, evaluations: int, column: str = "hv_ratio") -> float:
    """A run's ``column`` after ``evaluations`` evaluations (its last value if the run ended earlier)."""
    t = trace[trace["evaluation"] <= evaluations]
    return float(t.sort_values("evaluation")[column].iloc[-1]) if len(t) else 0.0


def summarize(traces: pd.DataFrame, budget: int, check_at: tuple[int, ...] = CHECK_AT) -> pd.DataFrame:
    """Per table x strategy, for each yardstick (:data:`YARDSTICKS`; one missing from the traces is left out):
    HV ratio at the budget and after each of ``check_at`` evaluations, evaluations to reach 95% (median, IQR; a
    seed that never reached counts as not reached, inf) and the share of seeds that reached it; with the judging
    yardstick also the search energy to 95% and the share of the true Pareto points found at the budget."""
    check_at = (check_at,) if isinstance(check_at, int) else tuple(check_at)
    out = []
    for (tbl, strat), g in traces.groupby(["table", "strategy"], sort=False):
        runs = [t for _, t in g.groupby("seed")]
        row = {"table": tbl, "strategy": strat, "seeds": len(runs), "budget": budget,
               "evaluations_median": float(np.median([t["evaluation"].max() for t in runs]))}
        for col, sfx in YARDSTICKS:
            if col not in g:
                continue
            q = quantiles([value_at(t, budget, col) for t in runs])
            row.update({f"{col}_q25": q[0], f"{col}_median": q[1], f"{col}_q75": q[2]})
            for k in check_at:
                q = quantiles([value_at(t, k, col) for t in runs])
                row.update({f"{col}_at_{k}_q25": q[0], f"{col}_at_{k}_median": q[1], f"{col}_at_{k}_q75": q[2]})
            reached = [reach(t, column=col) for t in runs]
            ev = [r[0] for r in reached]
            q = quantiles(ev)
            row.update({f"evals_to_95{sfx}_q25": q[0], f"evals_to_95{sfx}_median": q[1],
                        f"evals_to_95{sfx}_q75": q[2],
                        f"reached_95{sfx}_share": float(np.mean([np.isfinite(x) for x in ev]))})
            if not sfx:
                q = quantiles([r[1] for r in reached])
                row.update({"energy_to_95_j_q25": q[0], "energy_to_95_j_median": q[1], "energy_to_95_j_q75": q[2]})
        row.update({
            "pareto_found_share_median": float(np.median([value_at(t, budget, "pareto_found_share") for t in runs])),
            "true_pareto_size": int(g["true_pareto_size"].iloc[0]),
            "search_energy_at_budget_j_median": float(np.median([value_at(t, budget, "cumulative_energy_j")
                                                                  for t in runs])),
            "noise": bool(g["noise"].iloc[0]),
        })
        out.append(row)
    return pd.DataFrame(out)


def target_wording(ours: str, check_at: tuple[int, ...] = CHECK_AT) -> str:
    """The target in one sentence (the summary, the report and the docs say it alike)."""
    at = " and at ".join(str(k) for k in check_at)
    return (f"median of at least 10 seeds, batch 4, HV ratio to the table's true front with the reference point "
            f"beyond the true front's nadir: the default strategy ({ours}) reaches 95% in at most "
            f"{TARGET_EVALUATIONS} evaluations, is ahead of every baseline at {at} evaluations, and is no worse than "
            f"{EXACT_EHVI} on 2-objective tables")


def target_check(summary: pd.DataFrame, tables: dict[str, ReplayTable], ours: str | None = None,
                 skipped: dict[str, str] | None = None, check_at: tuple[int, ...] = CHECK_AT) -> list[dict]:
    """The target (:func:`target_wording`), clause by clause, per table: ``{"table", "clause", "met" (yes / no /
    not run / n/a), "numbers"}``, on the judging yardstick (``hv_ratio``). The numbers give ours at each of
    ``check_at`` evaluations beside the best baseline there, and, where a clause is not met, by how much."""
    ours = ours or default_strategy()
    skipped = skipped or {}
    out = []

    def why_not(strat, tbl):
        return skipped.get(strat) or skipped.get(f"{strat} on {tbl}") or "not requested"

    budget = int(summary["budget"].iloc[0]) if len(summary) else 0
    for name, table in tables.items():
        rows = summary[summary["table"] == name].set_index("strategy")

        def cell(strat, col, rows=rows):
            return float(rows.at[strat, col]) if strat in rows.index and col in rows else None

        def add(clause, met, numbers, name=name):
            out.append({"table": name, "clause": clause, "met": met, "numbers": numbers})

        if ours not in rows.index:
            for clause in _clauses(ours, check_at, len(table.objectives)):
                add(clause, "not run", f"{ours} was not run: {why_not(ours, name)}")
            continue
        at = {k: cell(ours, f"hv_ratio_at_{k}_median") for k in check_at}
        at_text = ", ".join(f"{at[k]:.3f} at {k}" for k in check_at)
        ev = cell(ours, "evals_to_95_median")
        clauses = _clauses(ours, check_at, len(table.objectives))
        # 1. reach
        numbers = (f"median {ev:g} evaluations" if np.isfinite(ev) else f"not reached within {budget} in the median "
                   f"seed (median HV ratio at the budget {cell(ours, 'hv_ratio_median'):.3f})")
        numbers += f" (reached in {cell(ours, 'reached_95_share'):.0%} of seeds); median HV ratio {at_text}"
        met = bool(np.isfinite(ev) and ev <= TARGET_EVALUATIONS)
        if not met:
            numbers += ("; short of the target by " + (f"{ev - TARGET_EVALUATIONS:g} evaluations" if np.isfinite(ev)
                        else f"more than {budget - TARGET_EVALUATIONS} evaluations"))
        if table.partial:
            met = False
            numbers += (f"; a PARTIAL table: the search only chose among its {len(table.candidates())} measured "
                        f"rows of {table.valid_size()} valid configurations, so the clause cannot be met on it")
        add(clauses[0], "yes" if met else "no", numbers)
        # 2. ahead of every baseline at each check point
        baselines = [s for s in rows.index if s != ours]
        not_run = [s for s in STRATEGIES if s != ours and s not in rows.index and why_not(s, name) != "not requested"]
        absent = ("; not run: " + ", ".join(f"{s} ({why_not(s, name)})" for s in not_run)) if not_run else ""
        for k, clause in zip(check_at, clauses[1:]):
            if not baselines:
                add(clause, "not run", "no baseline was run" + absent)
            elif budget < k:
                add(clause, "not run", f"the budget of {budget} is below {k} evaluations")
            else:
                add(clause, *_lead(ours, at[k], {s: cell(s, f"hv_ratio_at_{k}_median") for s in baselines}, k, absent))
        # 3. no worse than the exact EHVI on 2-objective tables
        if len(clauses) > len(check_at) + 1:
            add(clauses[-1], *_versus_exact(ours, name, len(table.objectives), cell, check_at, why_not))
    return out


def _clauses(ours: str, check_at: tuple[int, ...], n_objectives: int) -> list[str]:
    return ([f"{ours} reaches 95% within {TARGET_EVALUATIONS} evaluations (median)"]
            + [f"{ours} ahead of every baseline at {k} evaluations (median HV ratio)" for k in check_at]
            + [f"{ours} no worse than {EXACT_EHVI} (2-objective table)" if n_objectives == 2
               else f"{ours} no worse than {EXACT_EHVI} (2-objective tables only)"])


def _lead(ours: str, a: float, rivals: dict[str, float], k: int, absent: str) -> tuple[str, str]:
    """(met, numbers) of "ahead of every baseline at k evaluations": strictly higher median than the best."""
    best = max(rivals, key=lambda s: rivals[s])
    b = rivals[best]
    others = ", ".join(f"{s} {v:.3f}" for s, v in sorted(rivals.items(), key=lambda kv: -kv[1]))
    if a > b:
        return "yes", f"{ours} {a:.3f}, ahead of the best baseline ({best} {b:.3f}) by {a - b:.3f}; baselines: {others}{absent}"
    how = f"level with {best} at {b:.3f} (a tie, not a lead)" if a == b else f"behind {best} ({b:.3f}) by {b - a:.3f}"
    return "no", f"{ours} {a:.3f}, {how}; baselines: {others}{absent}"


def _versus_exact(ours, table_name, n_objectives, cell, check_at, why_not) -> tuple[str, str]:
    """(met, numbers) of "no worse than the exact EHVI": median HV ratio at each check point at least its, and
    median evaluations to 95% at most its."""
    if n_objectives != 2:
        return "n/a", f"a {n_objectives}-objective table; {EXACT_EHVI} is the exact 2-objective EHVI"
    if ours == EXACT_EHVI:
        return "n/a", f"the default strategy is {EXACT_EHVI} itself"
    if cell(EXACT_EHVI, "evals_to_95_median") is None:
        return "not run", f"{EXACT_EHVI} was not run: {why_not(EXACT_EHVI, table_name)}"
    worse, parts = [], []
    for k in check_at:
        a, b = cell(ours, f"hv_ratio_at_{k}_median"), cell(EXACT_EHVI, f"hv_ratio_at_{k}_median")
        parts.append(f"HV ratio at {k}: {ours} {a:.3f}, {EXACT_EHVI} {b:.3f}")
        if a < b:
            worse.append(f"{b - a:.3f} lower at {k}")
    a, b = cell(ours, "evals_to_95_median"), cell(EXACT_EHVI, "evals_to_95_median")
    parts.append(f"evaluations to 95%: {ours} {a:g}, {EXACT_EHVI} {b:g}".replace("inf", "not reached"))
    if a > b:
        worse.append(f"{a - b:g} more evaluations to 95%" if np.isfinite(a) else "95% not reached where it was")
    return ("no", "; ".join(parts) + "; worse by " + ", ".join(worse)) if worse else ("yes", "; ".join(parts))
