"""The confirmation stage's measurements: every (repeat, configuration) of the schedule, one fresh engine each.

Each measurement is an ordinary benchmark (:func:`vllm_mobo.measure.runner.run_candidate`) written to
``<confirm>/rep_<r>/<candidate>/metrics.json`` (``iteration`` holds the repeat there). What is on disk is kept: a
confirmation killed midway goes on with the first measurement missing. Measurements are compared only when taken on
the same machine: files measured on another host or on GPUs this machine does not have (a confirmation resumed on
another node) are moved to ``<confirm>/other-hardware/<time>/`` and everything is measured again here.
"""

from __future__ import annotations

import platform
import shutil
import time
from pathlib import Path
from typing import Callable

from .. import hardware
from ..measure.runner import run_candidate
from ..records import Record, load_record
from .plan import schedule


def this_machine() -> dict:
    """Host and the UUIDs of every GPU this job can see."""
    uuids = hardware.gpu_uuids()
    return {"hostname": platform.node(),
            "gpu_uuids": sorted(uuids[i] for i in hardware.visible_gpu_indices() if i < len(uuids))}


def measured_here(record: Record, here: dict) -> bool:
    """Same host, and its GPUs are among this job's."""
    there = record.machine
    return there["hostname"] == here["hostname"] and set(there["gpu_uuids"]) <= set(here["gpu_uuids"])


def measurement_path(confirm_dir: Path | str, repeat: int, name: str) -> Path:
    return Path(confirm_dir) / f"rep_{repeat}" / name / "metrics.json"


def set_aside_foreign(confirm_dir: Path, here: dict, log: Callable[[str], None]) -> Path | None:
    """Move every earlier measurement away when any was taken elsewhere; the folder they went to, or None."""
    paths = sorted(confirm_dir.glob("rep_*/*/metrics.json"))
    foreign = [p for p in paths if not measured_here(load_record(p), here)]
    if not foreign:
        return None
    where = load_record(foreign[0]).machine
    dest = confirm_dir / "other-hardware" / time.strftime("%Y%m%d-%H%M%S")
    dest.mkdir(parents=True)
    for rep in sorted(confirm_dir.glob("rep_*")):
        shutil.move(str(rep), dest / rep.name)
    log(f"[confirm] {len(foreign)} of {len(paths)} earlier measurements were taken on {where['hostname']} "
        f"(GPUs {', '.join(where['gpu_uuids']) or 'none'}), not on this machine ({here['hostname']}, GPUs "
        f"{', '.join(here['gpu_uuids']) or 'none'}): moved to {dest}; measuring everything again here")
    return dest


def run_confirmation(config: dict, configs: list[dict], repeats: int, confirm_dir: Path | str,
                     log_dir: Path | str, model_dir: str | None = None,
                     log: Callable[[str], None] = print) -> list[Path]:
    """Measure what :func:`.plan.schedule` asks that is not on disk yet; the metrics files in schedule order."""
    confirm_dir, log_dir = Path(confirm_dir), Path(log_dir)
    confirm_dir.mkdir(parents=True, exist_ok=True)
    set_aside_foreign(confirm_dir, this_machine(), log)
    order = schedule(configs, repeats)
    paths = []
    for k, (rep, cand) in enumerate(order, 1):
        path = measurement_path(confirm_dir, rep, cand["name"])
        paths.append(path)
        step = f"[confirm {k}/{len(order)}] repeat {rep + 1}/{repeats} of {cand['name']}"
        if path.exists():
            log(f"{step}: measured earlier, kept")
            continue
        t0 = time.perf_counter()
        record = Record.from_dict(run_candidate(config, {"name": cand["name"], "config": cand["config"]}, rep, path,
                                                log_dir / f"rep_{rep}" / f"{cand['name']}.log", model_dir=model_dir))
        outcome = (", ".join(f"{o['metric']} {record.metric(o['metric']):.4g}" for o in config["objectives"])
                   if record.ok else f"FAILED ({record.failure.kind}): {record.failure.reason}")
        log(f"{step}: {outcome} ({time.perf_counter() - t0:.0f} s)")
    return paths
