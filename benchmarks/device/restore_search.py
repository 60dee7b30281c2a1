"""Set up a working directory from a search run elsewhere (benchmarks/device/run_on_gpu.sh): to profile a finished
search (``run_on_gpu.sh profile``) or, with ``--resume``, to go on with an unfinished one (``run_on_gpu.sh pipeline
CONFIG RESULTS``: the next device call picks the search up at the first iteration whose benchmarks are missing).

    python3 benchmarks/device/restore_search.py CONFIG WORKDIR [RESULTS] [PROFILE_YAML] [--resume] [--set YAML]

Writes WORKDIR/config.yaml (CONFIG, with PROFILE_YAML -- a YAML mapping such as
``{configs: [knee, {tensor_parallel_size: 2}]}`` -- merged into its ``profile`` section, and ``--set YAML`` -- a
mapping such as ``{optimizer: {budget: 6}, confirm: {max_configs: 1}}`` -- merged key by key into the whole config)
and, when RESULTS is given, restores the search into WORKDIR/results/<run>/ from either
  - a ``results-<name>.tgz`` written by ``run_on_gpu.sh pipeline`` (results/ and logs/), or
  - a flattened copy as committed under docs/gpu/<date>-*/: ``metrics/iter_<N>__<candidate>.json``,
    ``proposal_iter_<N>.json``, ``observations.csv``, ``pareto.csv``, ``hypervolume.csv``, and ``confirm/`` (the
    confirmation stage's folder as the pipeline wrote it, finished or not: its repeats on disk are kept).
Every restored file gets one modification time, so Snakemake sees them as up to date. With ``--resume``, a last
proposal that ended the search because its budget was reached is removed when the config's budget is larger now,
so that the search goes on. A plain script, not a rule.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tarfile
from pathlib import Path

import yaml


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in: mappings key by key, anything else replaced."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def reopen_budget_stop(run_dir: Path, budget: int) -> str | None:
    """Remove the last proposal if it stopped the search at a budget smaller than ``budget`` (so that Snakemake
    proposes that iteration again); return what was removed, or None."""
    proposals = sorted(run_dir.glob("iter_*/proposal.json"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not proposals:
        return None
    last = yaml.safe_load(proposals[-1].read_text())
    done = len(list(run_dir.glob("iter_*/*/metrics.json")))
    if last.get("stop") and "budget" in str(last.get("reason", "")) and done < budget:
        proposals[-1].unlink()
        return f"{proposals[-1]} ({last['reason']}; {done} evaluated, budget now {budget})"
    return None


def main(argv: list[str]) -> int:
    resume = "--resume" in argv
    argv = [a for a in argv if a != "--resume"]
    overrides = None
    if "--set" in argv:
        i = argv.index("--set")
        overrides = yaml.safe_load(argv[i + 1]) if i + 1 < len(argv) else None
        if not isinstance(overrides, dict):
            print(f"--set needs a YAML mapping, got {argv[i + 1:i + 2]}", file=sys.stderr)
            return 2
        argv = argv[:i] + argv[i + 2:]
    cfg_path, work = Path(argv[0]), Path(argv[1])
    results = argv[2] if len(argv) > 2 and argv[2] else None
    overlay = argv[3] if len(argv) > 3 and argv[3] else None
    work.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(cfg_path.read_text())
    if overlay:
        extra = yaml.safe_load(overlay)
        if not isinstance(extra, dict):
            print(f"PROFILE_YAML must be a mapping, got {overlay!r}", file=sys.stderr)
            return 2
        cfg["profile"] = {**(cfg.get("profile") or {}), **extra}
    if overrides:
        cfg = merge(cfg, overrides)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_dir = work / "results" / cfg["run"]
    if results:
        src = Path(results)
        if src.is_file():
            with tarfile.open(src) as tar:
                tar.extractall(work, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(work)
        elif (src / "metrics").is_dir():
            run_dir.mkdir(parents=True, exist_ok=True)
            for m in sorted((src / "metrics").glob("iter_*__*.json")):
                it, cand = re.fullmatch(r"iter_(\d+)__(.+)\.json", m.name).groups()
                (run_dir / f"iter_{it}" / cand).mkdir(parents=True, exist_ok=True)
                shutil.copy(m, run_dir / f"iter_{it}" / cand / "metrics.json")
            for p in sorted(src.glob("proposal_iter_*.json")):
                it = re.fullmatch(r"proposal_iter_(\d+)\.json", p.name).group(1)
                (run_dir / f"iter_{it}").mkdir(parents=True, exist_ok=True)
                shutil.copy(p, run_dir / f"iter_{it}" / "proposal.json")
            for name in ("observations.csv", "pareto.csv", "hypervolume.csv", "skipped.csv"):
                if (src / name).exists():
                    shutil.copy(src / name, run_dir / name)
            if (src / "confirm").is_dir():
                shutil.copytree(src / "confirm", run_dir / "confirm", dirs_exist_ok=True)
        else:
            print(f"{src}: neither a results tarball nor a directory with metrics/", file=sys.stderr)
            return 2
    model = cfg["workload"]["model"]
    if "architecture" in model and not (run_dir / "model" / "config.json").exists():
        # what the model_config rule writes: written here so that no benchmark looks older than its input
        from vllm_mobo.measure.model import write_model_dir

        write_model_dir(model, run_dir / "model")
    if results:
        stamp = 1_764_000_000  # one time for every file of the search: Snakemake sees it finished
        for p in [run_dir, *run_dir.rglob("*")]:
            if "profiles" not in p.relative_to(run_dir).parts:
                os.utime(p, (stamp, stamp))
    if resume:
        done = len(list(run_dir.glob("iter_*/*/metrics.json")))
        budget = (cfg.get("optimizer") or {}).get("budget")
        reopened = reopen_budget_stop(run_dir, int(budget)) if budget is not None else None
        if reopened:
            print(f"search reopened: removed {reopened}")
        print(f"{work}: config.yaml and the unfinished search in {run_dir} ({done} benchmarks restored)")
        return 0
    missing = [n for n in ("pareto.csv", "observations.csv", "iter_0/proposal.json") if not (run_dir / n).exists()]
    if missing:
        print(f"no finished search in {run_dir} (missing {', '.join(missing)}): run `run_on_gpu.sh pipeline` first "
              "or pass RESULTS", file=sys.stderr)
        return 1
    print(f"{work}: config.yaml (profile: {cfg.get('profile', {})}) and the search in {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
