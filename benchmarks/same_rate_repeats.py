"""Run-to-run noise of online figures from a finished capacity-search run, without extra measurements.

When the capacity search starts at the target rate (``benchmark.online.capacity.start_rate`` equal to the first of
``request_rates``), every configuration measured that rate twice on one server: the target window and the ramp's
first step (since 2026-12-03 the target comes first; before, it came after the search). Their relative
differences estimate the noise of one window at that rate (same server, so engine start-up variation is not in
it), plus the drift of a server over its windows (on the CPU build its first window ran cheapest in ESTIMATED
J/token: README).

    python benchmarks/same_rate_repeats.py RESULTS_DIR [--csv OUT.csv]

Prints the median, 90th percentile and maximum of |difference| / mean per metric over the configurations (for two
independent normal measurements, the median of |difference| is 0.95 sd), and writes every pair with ``--csv``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from vllm_mobo.records import load_records

METRICS = {"joules_per_output_token": "J/token", "tpot_ms_p99": "p99 TPOT", "ttft_ms_p99": "p99 TTFT",
           "output_tokens_per_s": "output tok/s"}


def pairs(results_dir: Path) -> pd.DataFrame:
    rows = []
    for r in load_records(sorted(results_dir.glob("iter_*/*/metrics.json"))):
        steps, targets = r.metrics.get("capacity_steps") or [], r.metrics.get("rates") or []
        target = next((t for t in targets if t.get("measured", True) and "joules_per_output_token" in t), None)
        if not r.ok or not steps or target is None or float(steps[0]["request_rate"]) != float(target["request_rate"]):
            continue
        first = steps[0]
        row = {"candidate": r.candidate, "rate": float(target["request_rate"])}
        for key in METRICS:
            a, b = float(first.get(key, math.nan)), float(target.get(key, math.nan))
            row[f"{key}_step"], row[f"{key}_target"] = a, b
            row[f"{key}_rel_diff"] = abs(a - b) / ((a + b) / 2) if a + b > 0 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results_dir", type=Path)
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args()
    df = pairs(args.results_dir)
    if df.empty:
        sys.exit(f"{args.results_dir}: no configuration measured its capacity search's first rate again as a target")
    if args.csv:
        df.to_csv(args.csv, index=False)
    print(f"{len(df)} configurations, each measured twice at {df['rate'].iloc[0]:g} req/s on one server")
    for key, label in METRICS.items():
        d = df[f"{key}_rel_diff"].dropna()
        print(f"  {label:>13}: |difference| / mean median {100 * d.median():.1f}%, 90th percentile "
              f"{100 * d.quantile(0.9):.1f}%, max {100 * d.max():.1f}% (one window's relative sd ~ median / 0.95)")


if __name__ == "__main__":
    main()
