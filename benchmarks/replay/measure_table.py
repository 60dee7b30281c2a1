#!/usr/bin/env python3
"""Measure a replay table: every valid configuration of CONFIG's search space (and vLLM's default) with the real
engine, then write table.csv, repeats.csv and meta.yaml (the format of vllm_mobo.replay.table).

    .venv/bin/python benchmarks/replay/measure_table.py config.yaml benchmarks/replay/tables/NAME \
        --description "..." [--max-engines 20] [--repeat-candidates 12 --repeats 2]

Runs `python -m vllm_mobo.replay.sweep` again and again (at most --max-engines engines per process)
until every run has a file; a process that dies mid-candidate gets that candidate recorded as a crash. Resumable:
run the same command again after an interruption.
"""

import argparse
import subprocess
import sys
from pathlib import Path

from vllm_mobo.replay.sweep import MORE_TO_DO, record_crash, write_table
from vllm_mobo.config import load_config


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--description", default="")
    ap.add_argument("--max-engines", type=int, default=20)
    ap.add_argument("--repeat-candidates", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    config = load_config(args.config)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    crashes_in_a_row = 0
    while True:
        proc = subprocess.run([sys.executable, "-m", "vllm_mobo.replay.sweep", args.config,
                               str(args.out_dir), "--max-engines", str(args.max_engines),
                               "--repeat-candidates", str(args.repeat_candidates), "--repeats", str(args.repeats)])
        if proc.returncode == 0:
            break
        if proc.returncode != MORE_TO_DO:
            crashed = record_crash(args.out_dir, proc.returncode)
            print(f"[measure-table] sweep process ended with status {proc.returncode}; recorded {crashed} as a crash",
                  flush=True)
            crashes_in_a_row = crashes_in_a_row + 1 if crashed else 99
            if crashes_in_a_row > 5:
                print("[measure-table] giving up: the sweep keeps dying", file=sys.stderr)
                return 1
        else:
            crashes_in_a_row = 0
    table = write_table(config, args.out_dir, args.out_dir.name, args.description)
    print(table["status"].value_counts().to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
