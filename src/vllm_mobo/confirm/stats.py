"""Repeat statistics: per configuration and objective the mean, standard deviation and 95% confidence interval,
the difference of each configuration to vLLM's default with its interval, and the noise level of each objective.

Intervals are Student's t intervals of the mean (``scipy.stats.t``). Differences are paired where the repeats
pair up (the interleaved rounds A B A B ...: each round's difference, ``scipy.stats.ttest_rel``, so that drift of the
machine over the stage, which moves both configurations of a round alike, cancels), else Welch's (unequal variances,
``scipy.stats.ttest_ind(equal_var=False)``); both are also given in % of the default's mean (the default's mean
taken as exact there). A difference whose interval holds 0 is *not distinguishable* from the noise.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95
NOT_DISTINGUISHABLE = "not distinguishable"


def describe(values) -> dict:
    """n, mean, sd (n-1), relative sd and the 95% interval of the mean of ``values`` (NaN where n < 2)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    sd = float(x.std(ddof=1)) if n >= 2 else math.nan
    if n >= 2 and sd > 0:
        lo, hi = stats.t.interval(LEVEL, n - 1, loc=mean, scale=sd / math.sqrt(n))
    elif n >= 2:  # every repeat identical
        lo = hi = mean
    else:
        lo = hi = math.nan
    return {"n": n, "mean": mean, "sd": sd, "rel_sd": sd / abs(mean) if n >= 2 and mean else math.nan,
            "ci_low": float(lo), "ci_high": float(hi)}


def summary_table(measurements: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (candidate, metric) from the repeats that ran and met their SLOs (``feasible``); ``repeats``
    counts every measurement, ``n`` the ones the statistics use."""
    rows = []
    for name, group in measurements.groupby("candidate", sort=False):
        usable = group[group["feasible"].astype(bool)]
        for metric in metrics:
            rows.append({"candidate": name, "metric": metric, "repeats": len(group),
                         **describe(usable[metric].astype(float))})
    return pd.DataFrame(rows, columns=["candidate", "metric", "repeats", "n", "mean", "sd", "rel_sd", "ci_low",
                                       "ci_high"])


def difference(values, reference, direction: str, paired: bool = False) -> dict:
    """Mean of ``values`` minus mean of ``reference`` with its 95% interval (paired t over the positions of the two
    sequences when ``paired``, which needs them aligned and of equal length; else Welch's), the same in % of the
    reference's mean, and the verdict for an objective of ``direction``: ``better``, ``worse`` or
    ``not distinguishable``."""
    a, b = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if paired and len(a) == len(b):
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
    else:
        paired = False
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    out = {"n": len(a), "n_default": len(b), "method": "paired t (by round)" if paired else "Welch t",
           "difference": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if len(a) and len(b):
        out["difference"] = float(a.mean() - b.mean())
    if len(a) >= 2 and len(b) >= 2:
        spread = (a - b).std(ddof=1) if paired else a.std(ddof=1) + b.std(ddof=1)
        if spread == 0:
            out["ci_low"] = out["ci_high"] = out["difference"]
        else:
            test = stats.ttest_rel(a, b) if paired else stats.ttest_ind(a, b, equal_var=False)
            ci = test.confidence_interval(LEVEL)
            out["ci_low"], out["ci_high"] = float(ci.low), float(ci.high)
    ref = float(b.mean()) if len(b) else math.nan
    for key in ("difference", "ci_low", "ci_high"):
        out[f"{key}_pct"] = 100.0 * out[key] / ref if ref else math.nan
    if not (math.isfinite(out["ci_low"]) and math.isfinite(out["ci_high"])):
        out["verdict"] = NOT_DISTINGUISHABLE + " (fewer than 2 usable repeats)"
    elif out["ci_low"] <= 0 <= out["ci_high"]:
        out["verdict"] = NOT_DISTINGUISHABLE
    else:
        higher = out["ci_low"] > 0
        out["verdict"] = "better" if higher == (direction == "maximize") else "worse"
    return out


def drift(measurements: pd.DataFrame, metrics: list[str]) -> dict:
    """Per metric, the mean change from the first to the last round over the stage, in % of each configuration's
    mean (configurations with a usable first and last round): the machine's drift that interleaving spreads."""
    out = {}
    for metric in metrics:
        changes = []
        for _, group in measurements[measurements["feasible"].astype(bool)].groupby("candidate"):
            g = group.sort_values("repeat")
            if len(g) >= 2 and g["repeat"].iloc[0] != g["repeat"].iloc[-1]:
                changes.append(100.0 * (g[metric].iloc[-1] - g[metric].iloc[0]) / g[metric].mean())
        out[metric] = {"first_to_last_pct": float(np.mean(changes)) if changes else None,
                       "configurations": len(changes)}
    return out


def noise_level(summary: pd.DataFrame, metrics: list[str]) -> dict:
    """Per metric, the pooled relative standard deviation of one measurement (root mean square of each
    configuration's sd/mean), from the configurations with at least two usable repeats."""
    out = {}
    for metric in metrics:
        rel = summary[(summary["metric"] == metric) & summary["rel_sd"].notna()]
        out[metric] = {"relative_sd": float(np.sqrt((rel["rel_sd"] ** 2).mean())) if len(rel) else None,
                       "configurations": int(len(rel)), "max_relative_sd": float(rel["rel_sd"].max()) if len(rel) else None}
    return out
