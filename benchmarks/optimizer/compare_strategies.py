#!/usr/bin/env python
"""Compare search strategies by replaying measured tables (no GPU, no vLLM): how many benchmarks, and how much
benchmark energy, each strategy needs to find the true Pareto front.

    python benchmarks/optimizer/compare_strategies.py --table benchmarks/replay/tables/cpu-2core-tiny-llama \\
        --seeds 10 --budget 50 --jobs 2

Writes traces.csv, summary.csv/.md/.tex, target_check.csv, settings.json and figures/ under --out, and the PDF
report (report/optimizer-benchmark.pdf unless --pdf none). The logic is vllm_mobo.replay.compare; the same
benchmark is the Snakemake target `optimizer_benchmark` (workflow/rules/optimizer_benchmark.smk).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))  # runnable from a checkout without installing the package

from vllm_mobo.replay.compare import Settings, run_benchmark  # noqa: E402
from vllm_mobo.replay.scoring import STRATEGIES  # noqa: E402

DEFAULT_TABLE = REPO / "benchmarks" / "replay" / "tables" / "cpu-2core-tiny-llama"


def parse_args(argv=None) -> argparse.Namespace:
    d = Settings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--table", action="append", dest="tables", metavar="DIR",
                   help=f"a replay table directory (repeatable; default {DEFAULT_TABLE.relative_to(REPO)})")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help="comma-separated strategies (names of optimizer.strategy); missing ones are skipped, said so")
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds per strategy and table")
    p.add_argument("--budget", type=int, default=d.budget, help="evaluations per search (vLLM's default included)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--initial-design", type=int, default=d.initial_design)
    p.add_argument("--no-vllm-default", action="store_true", help="leave vLLM's default out of the initial design")
    p.add_argument("--front-includes-default", action="store_true",
                   help="judge against the front of every row, vLLM's default included (default: the search space's "
                        "configurations only; every strategy evaluates the default first without searching for it)")
    p.add_argument("--noise", action="store_true",
                   help="replay with lognormal measurement noise from the table's repeats.csv (seeded)")
    p.add_argument("--out", default=str(REPO / "results" / "optimizer-benchmark"), help="output directory")
    p.add_argument("--pdf", default=str(REPO / "report" / "optimizer-benchmark.pdf"),
                   help="the PDF report ('none': no PDF)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    settings = Settings(budget=a.budget, batch_size=a.batch_size, initial_design=a.initial_design,
                        include_vllm_default=not a.no_vllm_default, noise=a.noise,
                        front_includes_default=a.front_includes_default, seeds=a.seeds,
                        strategies=[s.strip() for s in a.strategies.split(",") if s.strip()])
    run_benchmark(a.tables or [DEFAULT_TABLE], settings, a.out, jobs=a.jobs,
                  pdf_path=None if a.pdf.lower() == "none" else a.pdf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
