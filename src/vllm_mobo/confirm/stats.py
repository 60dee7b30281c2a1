"""Repeat statistics: per configuration and objective the mean, standard deviation and 95% confidence interval,
the difference of each configuration to vLLM's default with its interval, and the noise level of each objective.

Intervals are Student's t intervals of the mean (``scipy.stats.t``); differences are Welch's (unequal variances,
``scipy.stats.ttest_ind(equal_var=False).confidence_interval``), also given in % of the default's mean (the
default's mean taken as exact there). A difference whose interval holds 0 is *not distinguishable* from the noise.
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


def difference(values, reference, direction: str) -> dict:
    """Mean of ``values`` minus mean of ``reference`` with Welch's 95% interval, the same in % of the reference's
    mean, and the verdict for an objective of ``direction``: ``better``, ``worse`` or ``not distinguishable``."""
    a = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    b = np.asarray([v for v in reference if math.isfinite(v)], dtype=float)
    out = {"n": len(a), "n_default": len(b), "difference": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if len(a) and len(b):
        out["difference"] = float(a.mean() - b.mean())
    if len(a) >= 2 and len(b) >= 2:
        if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
            out["ci_low"] = out["ci_high"] = out["difference"]
        else:
            ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(LEVEL)
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


def noise_level(summary: pd.DataFrame, metrics: list[str]) -> dict:
    """Per metric, the pooled relative standard deviation of one measurement (root mean square of each
    configuration's sd/mean), from the configurations with at least two usable repeats."""
    out = {}
    for metric in metrics:
        rel = summary[(summary["metric"] == metric) & summary["rel_sd"].notna()]
        out[metric] = {"relative_sd": float(np.sqrt((rel["rel_sd"] ** 2).mean())) if len(rel) else None,
                       "configurations": int(len(rel)), "max_relative_sd": float(rel["rel_sd"].max()) if len(rel) else None}
    return out
