"""Does a replay table carry the machine's drift along its measurement order?

For each table (a folder of ``vllm-mobo measure-table``), the successful rows of ``records/`` are put in the order
they were measured (each record's ``timing.window_started_at``), and each objective's log value is fitted by the
knobs' main effects (least squares, one indicator per knob value). If the machine's speed drifted during the sweep,
the residuals of measurements taken one after the other are alike: printed is their lag-1 autocorrelation in
measurement order, its permutation p-value (the residuals shuffled 5,000 times), the Spearman correlation of the
residuals with the time of measurement (a trend) and the correlation of grid neighbours' residuals (rows one step
apart in one knob: where the drift lands in the space); ``energy`` says whether a J/token is measured or
ESTIMATED::

    .venv/bin/python benchmarks/table_drift.py benchmarks/replay/tables/cpu-2core-tiny-llama-3s [TABLE ...]

A sweep in the space's order turns drift into a smooth ridge over neighbouring configurations; the sweep now
measures in a seeded random order (:func:`vllm_mobo.replay.sweep.planned_runs`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from vllm_mobo.io import read_json
from vllm_mobo.records import Record, provenance_summary

OBJECTIVES = ["output_tokens_per_s", "joules_per_output_token"]


def measured_rows(table: Path) -> pd.DataFrame:
    """One row per successful record: candidate, knob values (vLLM's resolved value where the configuration leaves
    a knob out, as vLLM's default does), objectives, the window's start, the energy sources' provenances; in the
    order measured."""
    records = [Record.from_dict(read_json(p)) for p in sorted((table / "records").glob("*.json"))]
    records = [r for r in records if r.ok and r.timing.get("window_started_at")]
    knobs = sorted({k for r in records for k in r.config})
    rows = [{"candidate": r.candidate, "started": r.timing["window_started_at"],
             "energy": ",".join(src.provenance for src in r.energy.sources),
             **{f"knob:{k}": str(r.config.get(k, r.resolved_engine_args.get(k))) for k in knobs},
             **{m: r.metrics.get(m) for m in OBJECTIVES}} for r in records]
    return pd.DataFrame(rows, columns=["candidate", "started", "energy", *[f"knob:{k}" for k in knobs], *OBJECTIVES]
                        ).sort_values("started", kind="stable").reset_index(drop=True)


def lag1(r: np.ndarray) -> float:
    return float(np.corrcoef(r[:-1], r[1:])[0, 1])


def grid_neighbour_correlation(frame: pd.DataFrame, resid: np.ndarray) -> float:
    """Correlation of the residuals of grid neighbours: pairs of rows one step apart in one knob (its values in
    order), equal in every other. Drift along a sweep in the space's order makes it positive; in random order
    it should be about 0 whatever the machine did."""
    knobs = [c for c in frame.columns if c.startswith("knob:")]

    def order(v: str):
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)

    values = {k: sorted(frame[k].unique(), key=order) for k in knobs}
    steps = {k: {v: i for i, v in enumerate(vs)} for k, vs in values.items()}
    at = {tuple(row): i for i, row in enumerate(frame[knobs].itertuples(index=False, name=None))}
    left, right = [], []
    for i, row in enumerate(frame[knobs].itertuples(index=False, name=None)):
        for j, k in enumerate(knobs):
            nxt = steps[k][row[j]] + 1
            if nxt < len(values[k]):
                q = at.get(row[:j] + (values[k][nxt],) + row[j + 1:])
                if q is not None:
                    left.append(resid[i])
                    right.append(resid[q])
    return float(np.corrcoef(left, right)[0, 1]) if len(left) > 2 else float("nan")


def drift(frame: pd.DataFrame, metric: str, permutations: int, rng: np.random.Generator) -> dict:
    knobs = [c for c in frame.columns if c.startswith("knob:")]
    X = pd.get_dummies(frame[knobs], drop_first=True).astype(float)
    X.insert(0, "intercept", 1.0)
    y = np.log(frame[metric].to_numpy(dtype=float))
    beta, *_ = np.linalg.lstsq(X.to_numpy(), y, rcond=None)
    resid = y - X.to_numpy() @ beta
    observed = lag1(resid)
    null = np.array([lag1(rng.permutation(resid)) for _ in range(permutations)])
    energy = "-"
    if metric.startswith("joules"):
        energy = provenance_summary(p for cell in frame["energy"] for p in cell.split(","))
    return {"metric": metric, "energy": energy if energy == "measured" else energy.upper(), "rows": len(y),
            "knob_r2": 1 - resid.var() / y.var(), "lag1_autocorrelation": observed,
            "p_value": (1 + int((null >= observed).sum())) / (1 + permutations),
            "spearman_with_time": spearmanr(frame["started"], resid)[0],
            "grid_neighbour_correlation": grid_neighbour_correlation(frame, resid),
            "sweep_minutes": (frame["started"].max() - frame["started"].min()) / 60}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tables", nargs="+", type=Path)
    ap.add_argument("--permutations", type=int, default=5000)
    a = ap.parse_args(argv)
    out = []
    for table in a.tables:
        frame = measured_rows(table)
        if len(frame) < 8:
            print(f"{table}: {len(frame)} timed successful records, too few", file=sys.stderr)
            continue
        for metric in OBJECTIVES:
            out.append({"table": table.name, **drift(frame, metric, a.permutations, np.random.default_rng(0))})
    if out:
        print(pd.DataFrame(out).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
