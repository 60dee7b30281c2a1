"""Analysis of a finished run, shared by the notebook, the LaTeX report, the exports and the tests.

Every function takes the run's tables (``observations.csv``, ``pareto.csv``) and/or its ``metrics.json`` records
and returns a table or text. Text is generated from the data: sentences are chosen by what the data say, numbers
come from the tables, and energy is always called *estimated* when any source of it was estimated.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import read_json
from ..records import Record, load_records, machine_label, metric_label, record_index
from .energy import energy_qualifier, estimated_sources, measured_sources
from .knobs import FEW_OBSERVATIONS, knob_columns
from .tables import feasible_rows, in_words

#: Online-mode latency columns: ``ttft_ms_p50``, ``tpot_ms_p99``, ``e2el_ms_p99``, ``itl_ms_p95`` ...
LATENCY_COLUMN = re.compile(r"^(?P<metric>[a-z][a-z0-9]*)_ms_p(?P<percentile>\d+(?:\.\d+)?)$")


def enrich_observations(obs: pd.DataFrame, records: list[Record], keys) -> pd.DataFrame:
    """``obs`` with a column for each engine argument of ``keys`` that it lacks (or has empty), filled from the
    engine arguments vLLM resolved for each run (``resolved_engine_args`` of ``metrics.json``): e.g. the tensor and
    pipeline parallel sizes of a run whose search space did not include them. Rows without a record stay empty."""
    out = obs.copy()
    index = record_index(records)
    for key in keys:
        if key in out.columns and out[key].notna().all():
            continue
        values = []
        for i, (_, row) in enumerate(out.iterrows()):
            current = out[key].iloc[i] if key in out.columns else np.nan
            if pd.notna(current):
                values.append(current)
                continue
            rec = index.get((int(row["iteration"]), row["candidate"]))
            value = rec.engine_arg(key) if rec else None
            values.append(np.nan if value is None else value)
        out[key] = values
    return out


# --------------------------------------------------------------------------------------------------- latency


def latency_columns(obs: pd.DataFrame) -> dict[str, list[tuple[float, str]]]:
    """Online-mode latency metric -> [(percentile, column)], for the columns that hold at least one value."""
    out: dict[str, list[tuple[float, str]]] = {}
    for col in obs.columns:
        m = LATENCY_COLUMN.match(col)
        if m and obs[col].notna().any():
            out.setdefault(m["metric"], []).append((float(m["percentile"]), col))
    return {k: sorted(v) for k, v in sorted(out.items())}


# --------------------------------------------------------------------------------------- hardware & software


def _distinct(records: list[Record], key: str) -> list:
    seen, out = set(), []
    for r in records:
        v = getattr(r, key)
        s = json.dumps(v, sort_keys=True)
        if v is not None and s not in seen:
            seen.add(s)
            out.append(v)
    return out


def platform_table(records: list[Record]) -> pd.DataFrame:
    """(what, value) rows: device, hardware and software versions of the runs (every distinct value)."""
    rows = []
    for dev in _distinct(records, "device"):
        rows.append(("device", str(dev)))
    for section in ("hardware", "software"):
        for d in _distinct(records, section):
            for k, v in d.items():
                if isinstance(v, list):
                    v = ", ".join(json.dumps(x) if isinstance(x, dict) else str(x) for x in v) or "none"
                if (section + ": " + k, str(v)) not in rows:
                    rows.append((f"{section}: {k}", str(v)))
    return pd.DataFrame(rows, columns=["what", "value"])


# ------------------------------------------------------------------------------------------------ the search


def search_summary(obs: pd.DataFrame, proposals: list[dict]) -> dict:
    """Evaluations, failures, iterations and the reason the search stopped (from the last proposal)."""
    last = proposals[-1] if proposals else {}
    # The space's sizes as judged by the last proposal that proposed something: a stop proposal (budget reached)
    # needs no validity check, and one written on another machine (a search finished elsewhere) would judge the
    # space against that machine.
    sized = next((p for p in reversed(proposals) if p.get("candidates")), last)
    return {
        "evaluations": len(obs),
        "ok": int((obs["status"] == "ok").sum()) if len(obs) else 0,
        "failed": int((obs["status"] != "ok").sum()) if len(obs) else 0,
        "iterations": int(obs["iteration"].nunique()) if len(obs) else 0,
        "strategy": last.get("strategy", ""),
        "stop_reason": last.get("reason", ""),
        "space_size": sized.get("space_size"),
        "valid_size": sized.get("valid_size"),
    }


def limitations(obs: pd.DataFrame, records: list[Record], space_keys, summary: dict) -> list[str]:
    """What the reader should not conclude from this run, each item following from the data."""
    out = []
    ok = feasible_rows(obs)
    est = estimated_sources(obs)
    if est:
        out.append("Energy of " + ", ".join(s.upper() for s in est) + " is estimated from models (CPU time x W per "
                   "core, resident memory x W/GB), not measured: absolute joules are indicative; rankings assume "
                   "the model holds equally for every configuration.")
    if not measured_sources(obs) and not est:
        out.append("No energy source was recorded.")
    if len(ok) < FEW_OBSERVATIONS:
        out.append(f"Only {len(ok)} configuration(s) ran successfully: the front and the knob effects rest on few "
                   "points.")
    if summary.get("valid_size") and summary["evaluations"] < summary["valid_size"]:
        out.append(f"{summary['evaluations']} of {summary['valid_size']} valid configurations were evaluated; "
                   "the front is the best found, not necessarily the true one.")
    counts = obs.groupby(knob_columns(obs, space_keys) or ["candidate"], dropna=False).size() if len(obs) else []
    if len(obs) and (counts == 1).all():
        out.append("Each configuration was benchmarked once: run-to-run noise is not quantified.")
    models = {r.model for r in records}
    if any(str(m).startswith("architecture") for m in models):
        out.append("The model is an architecture with dummy (random) weights: throughput and energy reflect its "
                   "size, not a real checkpoint; use the commands with a real model path.")
    modes = {r.mode for r in records}
    if modes == {"offline"}:
        out.append("Only offline (batch) throughput was measured: no request latency percentiles.")
    devices = {r.device for r in records}
    if devices == {"cpu"}:
        out.append("The engine ran on vLLM's CPU build: results do not transfer to GPUs.")
    if summary.get("failed"):
        out.append(f"{summary['failed']} configuration(s) failed and are excluded from the front.")
    machines = pd.Series([machine_label(r.machine) for r in records], dtype=object).value_counts(sort=False)
    if len(machines) > 1:
        where = "; ".join(f"{n} on {m}" for m, n in machines.items())
        out.append(f"The configurations were measured on {len(machines)} machines ({where}). Cards of one model "
                   "can differ by more than the configurations do (two H200s gave 9% and 15% different J/token for "
                   "the same two configurations under one workload; GPU energy measured, CPU and RAM estimated): a "
                   "difference between configurations measured on different machines mixes configuration and "
                   "machine. The confirmation stage measures what it compares on one machine.")
    return out


# ----------------------------------------------------------------------------------------------------- LaTeX

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "-": "-{}",  # no en/em-dash ligatures: ``--max-num-seqs`` stays as typed
}


def latex_escape(value) -> str:
    """Text safe for LaTeX: every special character escaped (underscores in names and engine arguments)."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(value))


def fmt(value, digits: int = 4) -> str:
    """A number as tables show it: ``digits`` significant digits, no exponent for ordinary magnitudes."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "--"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}g}" if 1e-4 <= abs(value) < 1e7 or value == 0 else f"{float(value):.3e}"
    return str(value)


def pareto_display(pareto: pd.DataFrame, objectives: list[dict], space_keys) -> pd.DataFrame:
    """The Pareto set as the report shows it: candidate, the objectives (formatted), the knobs."""
    cols = ["candidate"] + [o["metric"] for o in objectives] + knob_columns(pareto, space_keys) \
        + (["energy_provenance"] if "energy_provenance" in pareto else [])
    return pareto[cols].map(fmt) if len(pareto) else pd.DataFrame(columns=cols)


def read_run(results_dir: str | Path) -> dict:
    """The tables and records of a finished run directory (``results/<run>``), for notebooks and tests."""
    d = Path(results_dir)
    return {
        "observations": pd.read_csv(d / "observations.csv"),
        "pareto": pd.read_csv(d / "pareto.csv"),
        "hypervolume": pd.read_csv(d / "hypervolume.csv"),
        "records": load_records(sorted(d.glob("iter_*/*/metrics.json"))),
        "proposals": [read_json(p) for p in sorted(d.glob("iter_*/proposal.json"),
                                                   key=lambda p: int(p.parent.name.split("_")[1]))],
    }


def summary_text(obs: pd.DataFrame, summary: dict, objectives: list[dict], run: str) -> list[str]:
    """The opening paragraph: what was searched, how many runs, why the search stopped."""
    named = [f"{metric_label(o['metric'])} ({o['direction']})" for o in objectives]
    goals = " against ".join(named) if len(named) == 2 else in_words(named)
    out = [f"Run {run} benchmarked {summary['evaluations']} vLLM engine configuration(s) with the real engine "
           f"({summary['ok']} successful, {summary['failed']} failed) over {summary['iterations']} iteration(s) of "
           f"{summary['strategy'] or 'the'} search for the Pareto front of {goals}."]
    if summary.get("stop_reason"):
        out.append(f"The search stopped because: {summary['stop_reason']}.")
    q = energy_qualifier(obs)
    if q in ("estimated", "partly estimated"):
        out.append(f"Energy in this analysis is {q.upper()}: see the energy section for how it was obtained.")
    return out
