"""Where the energy goes: joules per source with their provenance, and the words the reports use for them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..records import ESTIMATED, MEASURED, SOURCES, Record, provenance_summary
from .tables import feasible_rows


def _sources_with(obs: pd.DataFrame, provenance: str) -> list[str]:
    ok = feasible_rows(obs)
    return [s for s in SOURCES if (ok.get(f"energy_{s}_provenance", pd.Series(dtype=object)) == provenance).any()]


def estimated_sources(obs: pd.DataFrame) -> list[str]:
    """Energy sources whose joules were estimated in at least one successful run."""
    return _sources_with(obs, ESTIMATED)


def measured_sources(obs: pd.DataFrame) -> list[str]:
    """Energy sources whose joules were measured in at least one successful run."""
    return _sources_with(obs, MEASURED)


def energy_qualifier(obs: pd.DataFrame) -> str:
    """How to call the run's energy numbers (:func:`vllm_mobo.records.provenance_summary` over its sources)."""
    return provenance_summary([ESTIMATED] * bool(estimated_sources(obs)) + [MEASURED] * bool(measured_sources(obs)))


def energy_by_source(obs: pd.DataFrame) -> pd.DataFrame:
    """Per successful configuration and energy source: joules, joules per output token and provenance."""
    ok = feasible_rows(obs)
    rows = []
    for _, r in ok.iterrows():
        for s in SOURCES:
            j = r.get(f"energy_{s}_j", np.nan)
            if pd.isna(j):
                continue
            prov = r.get(f"energy_{s}_provenance", "")
            rows.append({"iteration": int(r["iteration"]), "candidate": r["candidate"], "source": s,
                         "joules": float(j), "joules_per_output_token": float(j) / float(r["output_tokens"]),
                         "provenance": prov if isinstance(prov, str) and prov else "unknown"})
    return pd.DataFrame(rows, columns=["iteration", "candidate", "source", "joules", "joules_per_output_token",
                                       "provenance"])


def energy_methods(records: list[Record]) -> dict[str, tuple[str, str]]:
    """Source -> (candidate, how its energy was obtained): the ``method`` string of the first record having it."""
    out = {}
    for r in records:
        for s in (r.energy.sources if r.energy else ()):
            out.setdefault(s.source, (r.candidate, s.method or s.provenance))
    return out


def energy_text(obs: pd.DataFrame, records: list[Record] | None = None) -> list[str]:
    """Paragraphs on where the energy goes, with the provenance of every source."""
    e = energy_by_source(obs)
    if e.empty:
        return ["No energy was recorded for any successful run."]
    total = e.groupby("source")["joules"].sum()
    share = 100.0 * total / total.sum()
    prov = e.groupby("source")["provenance"].agg(lambda s: "/".join(sorted(set(s))))
    order = share.sort_values(ascending=False).index
    parts = [f"{s.upper()} {share[s]:.1f}% ({prov[s]})" for s in order]
    n = e["candidate"].nunique()
    out = [f"Across the {n} successful run(s), the energy splits as: " + ", ".join(parts) + "."]
    absent = [s.upper() for s in SOURCES if s not in total.index]
    if absent:
        out.append("No energy was recorded for " + ", ".join(absent) + " (no such device or meter).")
    est = estimated_sources(obs)
    if est:
        out.append("Every energy number that includes " + ", ".join(s.upper() for s in est)
                   + " is ESTIMATED from a model, not measured; compare configurations with each other, not with "
                   "a power meter.")
    if records:
        methods = energy_methods(records)
        for s in order:
            if s in methods:
                out.append(f"{s.upper()}, e.g. for {methods[s][0]}: {methods[s][1]}.")
    return out
