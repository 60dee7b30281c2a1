"""The target rate against the same rate at the capacity ramp's start, on one server.

In capacity mode (``benchmark.online.capacity``) each server measures the target rates (``request_rates``) and
runs the capacity ramp, which starts at ``start_rate``. Where the first target rate equals ``start_rate``, every
run measures that rate twice on one server. Since 2026-12-03 the targets come first (the server's first window)
and the ramp starts right after them; before, the ramp came first and the targets after the whole search, which
is how the committed CSVs docs/optimizer-benchmark/target-after-search-*.csv were measured (their ``window``
labels: "ramp start", the first window, and "target after search"). This script runs the named configurations
of a config ``--repeats`` times each (a fresh server every time, in a seeded random order, as the pipeline's
worker does), then prints both windows of every run side by side: p99 TTFT, p99 TPOT and J/output token (CPU
energy is ESTIMATED on the CPU build) and the window's length. Finished runs are kept in OUT and not measured
again::

    .venv/bin/python benchmarks/target_after_search.py benchmarks/configs/cpu_online3_table.yaml OUT \\
        seqs32-mbt8192-chunk1 seqs16-mbt8192-chunk1 --repeats 2

Cores: nothing else may run beside it (the CPU engine's threads collapse when a core is shared).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vllm_mobo.config import load_config
from vllm_mobo.io import read_json
from vllm_mobo.measure.model import write_model_dir
from vllm_mobo.measure.runner import run_candidate
from vllm_mobo.records import Record, candidate_name
from vllm_mobo.search.plan import platform_for, valid_and_skipped

def measure(config: dict, names: list[str], repeats: int, out: Path, seed: int) -> None:
    _, valid, _ = valid_and_skipped(config, platform_for(config))
    by_name = {candidate_name(c): c for c in valid}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"not valid configurations of the config's search space: {unknown}")
    model_dir = out / "model"
    if not (model_dir / "config.json").exists():
        write_model_dir(config["workload"]["model"], model_dir)
    runs = [(n, k) for k in range(1, repeats + 1) for n in names]
    for i in np.random.default_rng(seed).permutation(len(runs)):
        name, k = runs[i]
        path = out / f"{name}-r{k}.json"
        if path.exists():
            continue
        t0 = time.time()
        record = run_candidate(config, {"name": name, "config": by_name[name]}, 0, path, out / f"{name}-r{k}.log",
                               model_dir=str(model_dir), state_dir=out / "state")
        print(f"{name} r{k}: {record.get('status')} ({time.time() - t0:.0f} s)", flush=True)


def pairs(out: Path, rate: float) -> pd.DataFrame:
    """Per run: the target window at ``rate`` (the server's first) and the capacity search's first step at
    ``rate`` (the ramp's start, right after the targets), from the run's record."""
    rows = []
    for path in sorted(out.glob("*-r*.json")):
        record = Record.from_dict(read_json(path))
        ramp = next((s for s in record.metrics.get("capacity_steps", []) if s["request_rate"] == rate), None)
        target = next((r for r in record.metrics.get("rates", []) if r["request_rate"] == rate and r["measured"]),
                      None)
        if not record.ok or ramp is None or target is None:
            continue
        energy = record.energy.provenance
        for label, window in (("target (first window)", target), ("ramp start (after the targets)", ramp)):
            rows.append({"configuration": record.candidate, "repeat": int(path.stem.rsplit("-r", 1)[1]),
                         "window": label, "request_rate": rate, "window_s": window["window_s"],
                         "ttft_ms_p99": window["ttft_ms_p99"], "tpot_ms_p99": window["tpot_ms_p99"],
                         "joules_per_output_token": window["joules_per_output_token"],
                         "energy": energy if energy == "measured" else energy.upper(),
                         "capacity_requests_per_s": record.metrics["capacity_requests_per_s"]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("out", type=Path)
    ap.add_argument("candidates", nargs="+",
                    help="configuration names of the config's space (e.g. seqs32-mbt8192-chunk1)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--csv", type=Path, help="also write the pairs here")
    a = ap.parse_args(argv)
    config = load_config(a.config)
    online = config["benchmark"]["online"]
    rate = float(online["request_rates"][0])
    if float(online["capacity"]["start_rate"]) != rate:
        raise SystemExit(f"benchmark.online.request_rates[0] ({rate:g}) must equal capacity.start_rate "
                         f"({online['capacity']['start_rate']}) for the comparison")
    a.out.mkdir(parents=True, exist_ok=True)
    measure(config, a.candidates, a.repeats, a.out, a.seed)
    frame = pairs(a.out, rate)
    if a.csv:
        frame.to_csv(a.csv, index=False)
    first = frame[frame.window == "target (first window)"].set_index(["configuration", "repeat"])
    after = frame[frame.window == "ramp start (after the targets)"].set_index(["configuration", "repeat"])
    print(frame.pivot_table(index=["configuration", "repeat"], columns="window",
                            values=["ttft_ms_p99", "tpot_ms_p99", "joules_per_output_token"]).round(4).to_string())
    ttft, joules = after.ttft_ms_p99 / first.ttft_ms_p99, after.joules_per_output_token / first.joules_per_output_token
    print(f"{len(first)} runs at {rate:g} req/s; the ramp's start against the target: p99 TTFT higher in "
          f"{int((ttft > 1).sum())} "
          f"(ratio {ttft.min():.1f}-{ttft.max():.1f}), J/output token higher in {int((joules > 1).sum())} (ratio "
          f"{joules.min():.3f}-{joules.max():.3f}), p99 TPOT higher in "
          f"{int((after.tpot_ms_p99 > first.tpot_ms_p99).sum())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
