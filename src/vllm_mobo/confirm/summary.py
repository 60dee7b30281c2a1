"""The confirmation stage's tables and text: the measurements, the confirmed front (from the means) and each front
configuration against vLLM's default, with intervals.

Files (``results/<run>/confirm/``): ``measurements.csv`` (one row per repeat and configuration), ``summary.csv``
(:func:`.stats.summary_table`), ``front.csv`` (:func:`confirmed_front`), ``default_comparison.csv``
(:func:`default_comparison`) and ``noise.json`` (:func:`noise_record`).
"""

from __future__ import annotations

import math
import time

import pandas as pd

from ..records import VLLM_DEFAULT, Record, metric_label, observation_row
from ..report.analysis import fmt
from ..report.tables import pareto_table
from .stats import difference, drift, noise_level


def measurements_table(records: list[Record], configs: list[dict], space_keys: list[str]) -> pd.DataFrame:
    """One row per measurement: the repeat, the roles of its configuration, its observation row and its machine."""
    roles = {c["name"]: "; ".join(c["roles"]) for c in configs}
    return pd.DataFrame([{"repeat": r.iteration, "roles": roles.get(r.candidate, ""), **observation_row(r, space_keys)}
                         for r in records])


def machines(measurements: pd.DataFrame) -> list[str]:
    """The distinct machines (host and GPUs) of the measurements: one when the comparison is sound."""
    pairs = measurements[["hostname", "gpu_uuids"]].fillna("").drop_duplicates()
    return [f"{h}" + (f" (GPUs {g})" if g else "") for h, g in pairs.itertuples(index=False)]


def means_table(measurements: pd.DataFrame, summary: pd.DataFrame, objectives: list[dict]) -> pd.DataFrame:
    """One row per configuration: its roles, the mean and interval of each objective, and whether every repeat was
    usable (``feasible``: ran and met its SLOs)."""
    rows = []
    for name, group in measurements.groupby("candidate", sort=False):
        row = {"candidate": name, "roles": group["roles"].iloc[0], "iteration": 0, "status": "ok",
               "repeats": len(group), "usable": int(group["feasible"].astype(bool).sum())}
        row["feasible"] = row["usable"] == row["repeats"]
        for o in objectives:
            s = summary[(summary["candidate"] == name) & (summary["metric"] == o["metric"])].iloc[0]
            row.update({o["metric"]: s["mean"], f"{o['metric']}_sd": s["sd"], f"{o['metric']}_ci_low": s["ci_low"],
                        f"{o['metric']}_ci_high": s["ci_high"]})
        rows.append(row)
    return pd.DataFrame(rows)


def confirmed_front(means: pd.DataFrame, objectives: list[dict]) -> pd.DataFrame:
    """The configurations no other dominates on the means, among those whose every repeat was usable."""
    front = pareto_table(means, objectives)
    return front.drop(columns=["iteration", "status", "feasible"], errors="ignore")


COMPARISON_COLUMNS = ["candidate", "roles", "metric", "direction", "n", "n_default", "method", "difference", "ci_low",
                      "ci_high", "difference_pct", "ci_low_pct", "ci_high_pct", "verdict"]


def default_comparison(measurements: pd.DataFrame, objectives: list[dict]) -> pd.DataFrame:
    """Every configuration against vLLM's default, per objective (:func:`.stats.difference`); empty without a
    usable default."""
    usable = measurements[measurements["feasible"].astype(bool)]
    ref = usable[usable["candidate"] == VLLM_DEFAULT]
    rows = []
    if ref.empty:
        return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    for name, group in usable.groupby("candidate", sort=False):
        if name == VLLM_DEFAULT:
            continue
        # pair round by round where both have the same usable rounds (interleaved: drift cancels in each pair)
        paired = sorted(group["repeat"]) == sorted(ref["repeat"]) and group["repeat"].is_unique
        a, b = group.sort_values("repeat"), ref.sort_values("repeat")
        for o in objectives:
            d = difference(a[o["metric"]].astype(float), b[o["metric"]].astype(float), o["direction"], paired)
            rows.append({"candidate": name, "roles": group["roles"].iloc[0], "metric": o["metric"],
                         "direction": o["direction"], **d})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def noise_record(summary: pd.DataFrame, measurements: pd.DataFrame, objectives: list[dict], repeats: int,
                 machine: list[str]) -> dict:
    """``noise.json``: the relative noise of one measurement per objective, for the optimiser, and the drift over
    the stage."""
    metrics = [o["metric"] for o in objectives]
    return {"what": "relative standard deviation of one measurement (sd/mean), pooled over the confirmed "
                    "configurations' fresh-engine repeats; drift: mean change from the first to the last round",
            "repeats": repeats, "machine": machine, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "objectives": noise_level(summary, metrics), "drift": drift(measurements, metrics)}


def _pct(value: float) -> str:
    return f"{value:+.1f}%"


def comparison_sentences(summary: pd.DataFrame, comparison: pd.DataFrame, objectives: list[dict],
                         repeats: int) -> list[str]:
    """vLLM's default and each configuration against it in words, with the 95% intervals."""
    if summary.empty:
        return ["The confirmation stage measured nothing."]
    ref = summary[summary["candidate"] == VLLM_DEFAULT].set_index("metric")
    if ref.empty or (ref["n"] < 1).any():
        return ["vLLM's default configuration has no usable confirmation measurement: no difference to it can be "
                "stated."]
    vals = ", ".join(f"{fmt(ref.loc[o['metric'], 'mean'])} {metric_label(o['metric'])} (95% CI "
                     f"{fmt(ref.loc[o['metric'], 'ci_low'])} to {fmt(ref.loc[o['metric'], 'ci_high'])})"
                     for o in objectives)
    out = [f"vLLM's default configuration, measured {repeats} times with a fresh engine each time, reached {vals}."]
    if comparison.empty:
        out.append("No other configuration had usable confirmation measurements"
                   + (": the search's front was vLLM's default alone." if len(summary["candidate"].unique()) == 1
                      else ".")
                   + " No configuration of the search is shown to beat it.")
    for name, group in comparison.groupby("candidate", sort=False):
        parts = []
        for _, c in group.iterrows():
            span = f"{_pct(c['difference_pct'])} (95% CI {_pct(c['ci_low_pct'])} to {_pct(c['ci_high_pct'])})" \
                if math.isfinite(c["ci_low_pct"]) else _pct(c["difference_pct"])
            parts.append(f"{metric_label(c['metric'])} {span}, {c['method']}: {c['verdict']}")
        out.append(f"{name} ({group['roles'].iloc[0]}) against vLLM's default: " + "; ".join(parts) + ".")
    return out


def front_display(front: pd.DataFrame, objectives: list[dict]) -> pd.DataFrame:
    """The confirmed front as the reports show it: candidate, roles, and per objective ``mean [low, high]``."""
    rows = []
    for _, r in front.iterrows():
        row = {"candidate": r["candidate"], "roles": r.get("roles", "")}
        for o in objectives:
            m = o["metric"]
            row[metric_label(m)] = f"{fmt(r[m])} [{fmt(r[m + '_ci_low'])}, {fmt(r[m + '_ci_high'])}]"
        rows.append(row)
    return pd.DataFrame(rows, columns=["candidate", "roles"] + [metric_label(o["metric"]) for o in objectives])


def read_confirmation(files: dict, objectives: list[dict], repeats: int) -> dict:
    """What the notebook and the LaTeX report show of the stage, from its files (``confirm_summary``,
    ``confirm_front``, ``confirm_comparison``, ``confirm_measurements``, ``confirm_figure``)."""
    files = dict(files.items())  # a dict, or Snakemake's named input
    summary = pd.read_csv(files["confirm_summary"])
    comparison = pd.read_csv(files["confirm_comparison"])
    measurements = pd.read_csv(files["confirm_measurements"])
    return {"text": comparison_sentences(summary, comparison, objectives, repeats),
            "front": front_display(pd.read_csv(files["confirm_front"]), objectives),
            "machines": machines(measurements), "repeats": repeats,
            "measurements": len(measurements), "figure": files.get("confirm_figure")}
