"""``vllm-mobo``: the command line of what runs outside Snakemake.

    vllm-mobo check CONFIG                         validate a config, its engine arguments against the installed vLLM
    vllm-mobo export RUN_DIR [--candidate NAME]    a configuration of a finished run as `vllm serve` command + YAML
    vllm-mobo measure-table CONFIG OUT_DIR         measure a replay table (every valid configuration, real engine)
    vllm-mobo compare-strategies --table DIR ...   the optimiser benchmark on replay tables (no engine)
    vllm-mobo collect-profiles WORKDIR             profile tables from finished per-configuration GPU profiles

The search itself runs under Snakemake: ``snakemake --cores all`` (README).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def _check(a: argparse.Namespace) -> int:
    from .config import ConfigError, load_config
    from .engine_args import problems

    try:
        config = load_config(a.config)
    except ConfigError as exc:
        print(f"{a.config}: {exc}", file=sys.stderr)
        return 1
    found = problems(config["search_space"], config.get("engine_args") or {})
    for line in found:
        print(f"{a.config}: {line}", file=sys.stderr)
    if not found:
        print(f"{a.config}: valid")
    return 1 if found else 0


def _export(a: argparse.Namespace) -> int:
    import pandas as pd
    import yaml

    from .engine_args import serve_command
    from .records import load_records
    from .report.export import engine_args_yaml, export_choice, serve_model

    run_dir = Path(a.run_dir)
    records = load_records(sorted(run_dir.glob("iter_*/*/metrics.json")))
    if not records:
        print(f"{run_dir}: no metrics.json under iter_*/: not a run directory", file=sys.stderr)
        return 1
    objectives = yaml.safe_load(Path(a.config).read_text())["objectives"] if a.config else [
        {"metric": "output_tokens_per_s", "direction": "maximize"},
        {"metric": "joules_per_output_token", "direction": "minimize"}]
    front = run_dir / "confirm" / "front.csv"
    choice = export_choice(pd.read_csv(run_dir / "pareto.csv"), records, objectives,
                           pd.read_csv(front) if front.exists() else None, a.candidate)
    if choice is None:
        known = sorted({r.candidate for r in records if r.ok})
        what = repr(a.candidate) if a.candidate else "any configuration, no knee to export"
        print(f"{run_dir}: no successful benchmark of {what}; successful: {', '.join(known)}", file=sys.stderr)
        return 1
    name, rec, args, _ = choice
    model = serve_model(rec, str(run_dir / "model"))
    print(serve_command(model, args, multiline=True))
    if a.yaml:
        Path(a.yaml).write_text(engine_args_yaml(args, f"{name} of {run_dir}"))
    return 0


def _measure_table(a: argparse.Namespace) -> int:
    from .config import load_config
    from .replay.sweep import MORE_TO_DO, record_crash, write_table

    config = load_config(a.config)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if a.time_limit_s is None else time.time() + a.time_limit_s
    crashes_in_a_row = 0
    while True:  # the sweep measures at most --max-engines engines per process, then exits MORE_TO_DO
        proc = subprocess.run([sys.executable, "-m", "vllm_mobo.replay.sweep", a.config, str(a.out_dir),
                               "--max-engines", str(a.max_engines), "--repeat-candidates", str(a.repeat_candidates),
                               "--repeats", str(a.repeats)]
                              + ([] if deadline is None else ["--deadline", str(deadline)]))
        if proc.returncode == 0:
            break
        if proc.returncode == MORE_TO_DO and deadline is not None and time.time() >= deadline:
            print(f"[measure-table] stopped at --time-limit-s {a.time_limit_s:g}: the table is not complete; the same "
                  f"command goes on from {a.out_dir}/records", flush=True)
            return MORE_TO_DO
        if proc.returncode != MORE_TO_DO:
            crashed = record_crash(a.out_dir, proc.returncode)
            print(f"[measure-table] sweep process ended with status {proc.returncode}; recorded {crashed} as a crash",
                  flush=True)
            crashes_in_a_row = crashes_in_a_row + 1 if crashed else 99
            if crashes_in_a_row > 5:
                print("[measure-table] giving up: the sweep keeps dying", file=sys.stderr)
                return 1
        else:
            crashes_in_a_row = 0
    table = write_table(config, a.out_dir, a.out_dir.name, a.description)
    print(table["status"].value_counts().to_string())
    return 0


def _compare_strategies(a: argparse.Namespace) -> int:
    from .replay.compare import Settings, run_benchmark

    settings = Settings(budget=a.budget, batch_size=a.batch_size, initial_design=a.initial_design,
                        include_vllm_default=not a.no_vllm_default, noise=a.noise,
                        front_includes_default=a.front_includes_default, seeds=a.seeds,
                        strategies=[s.strip() for s in a.strategies.split(",") if s.strip()])
    run_benchmark(a.tables, settings, a.out, jobs=a.jobs, pdf_path=None if a.pdf.lower() == "none" else a.pdf)
    return 0


def _collect_profiles(a: argparse.Namespace) -> int:
    from .profiling.collect import collect

    return collect(Path(a.workdir))


def parser() -> argparse.ArgumentParser:
    from .replay.compare import Settings
    from .replay.scoring import STRATEGIES

    p = argparse.ArgumentParser(prog="vllm-mobo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    c = sub.add_parser("check", help="validate a config and its engine arguments against the installed vLLM")
    c.add_argument("config")
    c.set_defaults(func=_check)

    e = sub.add_parser("export", help="a configuration of a finished run as a `vllm serve` command (default: knee)")
    e.add_argument("run_dir", help="results/<run>")
    e.add_argument("--candidate", help="candidate name (default: the knee of the confirmed front where the "
                                        "confirmation ran, else of the search's Pareto front)")
    e.add_argument("--config", help="the run's config, for its objectives (default: the seed's two)")
    e.add_argument("--yaml", help="also write the engine arguments as a `vllm serve --config` YAML file here")
    e.set_defaults(func=_export)

    m = sub.add_parser("measure-table", formatter_class=fmt,
                       help="measure every valid configuration of CONFIG with the real engine: a replay table")
    m.add_argument("config")
    m.add_argument("out_dir", type=Path)
    m.add_argument("--description", default="")
    m.add_argument("--max-engines", type=int, default=20, help="engines per sweep process (restarted until done)")
    m.add_argument("--repeat-candidates", type=int, default=12, help="configurations measured again for the noise")
    m.add_argument("--repeats", type=int, default=2, help="fresh-engine repeats of each of those")
    m.add_argument("--time-limit-s", type=float, default=None,
                   help="start no engine after this many seconds; exit status 3 while the table is incomplete")
    m.set_defaults(func=_measure_table)

    d = Settings()
    s = sub.add_parser("compare-strategies", formatter_class=fmt,
                       help="replay measured tables: how many benchmarks each search strategy needs")
    s.add_argument("--table", action="append", dest="tables", metavar="DIR", required=True,
                   help="a replay table directory (repeatable)")
    s.add_argument("--strategies", default=",".join(STRATEGIES),
                   help="comma-separated strategies (names of optimizer.strategy); missing ones are skipped, said so")
    s.add_argument("--seeds", type=int, default=d.seeds, help="seeds per strategy and table")
    s.add_argument("--budget", type=int, default=d.budget, help="evaluations per search (vLLM's default included)")
    s.add_argument("--batch-size", type=int, default=d.batch_size)
    s.add_argument("--initial-design", type=int, default=d.initial_design)
    s.add_argument("--no-vllm-default", action="store_true", help="leave vLLM's default out of the initial design")
    s.add_argument("--front-includes-default", action="store_true",
                   help="judge against the front of every row, vLLM's default included (default: the search "
                        "space's configurations only)")
    s.add_argument("--noise", action="store_true",
                   help="replay with lognormal measurement noise from the table's repeats.csv (seeded)")
    s.add_argument("--out", default="results/optimizer-benchmark", help="output directory")
    s.add_argument("--pdf", default="report/optimizer-benchmark.pdf", help="the PDF report ('none': no PDF)")
    s.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    s.set_defaults(func=_compare_strategies)

    cp = sub.add_parser("collect-profiles", help="profiles/status.csv and breakdown.csv from finished GPU profiles")
    cp.add_argument("workdir", help="as set up by benchmarks/device/restore_search.py")
    cp.set_defaults(func=_collect_profiles)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
