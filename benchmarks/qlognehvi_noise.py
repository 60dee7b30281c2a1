"""qlognehvi on a replay table with its GPs' noise inferred (``optimizer.noise: null``, the default) against a
given noise level (a mapping metric -> relative sd of one measurement): HV ratio at 12 and 25 evaluations and
evaluations to 95% (median over seeds), the optimiser benchmark's own measures (:mod:`vllm_mobo.replay.compare`).

    .venv/bin/python benchmarks/qlognehvi_noise.py TABLE OUT [LABEL=JSON ...] [--budget N]

Each LABEL=JSON is the ``optimizer`` block added for one variant, e.g.
``measured='{"noise": {"output_tokens_per_s": 0.23, "joules_per_output_token": 0.065}}'``; without any, only the
inferred noise runs. Prints one row per variant and writes OUT/<label>/ (the benchmark's files) and
OUT/noise_variants.csv. ``--budget`` (default 30): evaluations per search, at most the table's rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from vllm_mobo.replay.compare import Settings, run_benchmark

COLUMNS = ["hv_ratio_at_12_median", "hv_ratio_at_25_median", "hv_ratio_median", "evals_to_95_median",
           "reached_95_share"]


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("table")
    ap.add_argument("out", type=Path)
    ap.add_argument("variants", nargs="*", metavar="LABEL=JSON")
    ap.add_argument("--budget", type=int, default=30, help="evaluations per search, at most the table's rows")
    a = ap.parse_args(argv)
    table, out, budget = a.table, a.out, a.budget
    variants = dict(v.split("=", 1) for v in a.variants) or {"inferred": "{}"}
    rows = []
    for label, optimizer in variants.items():
        settings = Settings(budget=budget, batch_size=4, initial_design=5, seeds=10, strategies=["qlognehvi"],
                            optimizer=json.loads(optimizer))
        run_benchmark([table], settings, out / label, jobs=2, pdf_path=None, echo=lambda *a: None)
        summary = pd.read_csv(out / label / "summary.csv").iloc[0]
        rows.append({"variant": label, "optimizer": optimizer, **{c: summary[c] for c in COLUMNS}})
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "noise_variants.csv", index=False)
    print(frame.drop(columns="optimizer").to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1:])
