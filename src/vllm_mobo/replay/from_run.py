"""A replay table from a finished pipeline run (``results/<run>/``): partial unless the run evaluated every valid
configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..config import expand_search_space
from ..io import read_json
from ..records import VLLM_DEFAULT, load_records
from ..search.space import Platform, SearchSpace
from .table import ReplayError, ReplayTable, read_csv, valid_names


def table_from_run(results_dir: str | Path, out_dir: str | Path, meta: dict | None = None,
                   config: dict | str | Path | None = None) -> ReplayTable:
    """Write a replay table (``table.csv`` + ``meta.yaml``) from a finished pipeline run and return it loaded.

    Rows: every evaluated configuration of ``observations.csv`` (ok or failed) and every configuration of
    ``skipped.csv`` as ``invalid``; valid configurations the run never evaluated have no row, so the table is
    partial unless the run evaluated them all. ``meta`` (name, description, ...) is completed from the run: the
    search space, engine args, workload and objectives from its ``config`` (a dict, or a path; default: the
    ``config.yaml`` two levels above ``results_dir`` when its ``run`` is this run), the platform from the first
    proposal, hardware and software from a ``metrics.json`` of a successful benchmark."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if config is None:
        guess = results_dir.parent.parent / "config.yaml"
        if guess.is_file() and (yaml.safe_load(guess.read_text()) or {}).get("run") == results_dir.name:
            config = guess
        else:
            raise ReplayError(f"{results_dir}: pass the run's config (no config.yaml of run {results_dir.name} at {guess})")
    if not isinstance(config, dict):
        config = yaml.safe_load(Path(config).read_text())
    config = {**config, "search_space": expand_search_space(config["search_space"])}  # a preset name or mapping
    obs = read_csv(results_dir / "observations.csv")
    skipped = read_csv(results_dir / "skipped.csv") if (results_dir / "skipped.csv").is_file() else pd.DataFrame()
    proposal = read_json(results_dir / "iter_0" / "proposal.json")
    metrics_files = sorted(results_dir.glob("iter_*/*/metrics.json"))
    records = load_records(metrics_files)
    example = next((r for r in records if r.ok), records[0] if records else None)

    keys = list(config["search_space"])
    inv = pd.DataFrame({"candidate": skipped.get("candidate", pd.Series(dtype=str))})
    for k in keys:
        inv[k] = skipped[k] if k in skipped else np.nan
    inv["status"] = "invalid"
    inv["failure_kind"] = "invalid"
    inv["failure_reason"] = skipped.get("reason", pd.Series(dtype=str))
    inv["is_vllm_default"] = False
    table = pd.concat([obs.drop(columns=[c for c in ("iteration",) if c in obs]), inv], ignore_index=True)
    table = table.drop_duplicates("candidate", keep="first").sort_values("candidate", kind="stable")

    platform = proposal.get("platform") or {}
    plat = Platform(platform.get("device", "cpu"), int(platform.get("num_devices", 1)), platform.get("max_model_len"))
    n_valid = len(valid_names(SearchSpace(config["search_space"]), plat, config.get("engine_args") or {}))
    measured = int(((table["status"] != "invalid") & (table["candidate"] != VLLM_DEFAULT)).sum())
    hw = example.hardware if example else {}
    # the GPUs of the platform the run searched (the proposal's), not of the first record: with gpu_scope `used`
    # a record names only its candidate's GPUs, so vLLM's default on one of two GPUs lists one
    gpus = hw.get("gpus") or []
    hardware = {"cpu_model": hw.get("cpu_model"), "cpu_cores_usable": hw.get("cpu_cores_usable"),
                "memory_gib": hw.get("memory_gib"), "gpu_model": gpus[0].get("name") if gpus else None,
                "gpu_count": (plat.num_devices if plat.device == "cuda" else None) if gpus else None,
                "driver": gpus[0].get("driver") if gpus else None}
    provenance = {}
    for s in (example.energy.sources if example and example.energy else ()):
        provenance[s.source] = s.provenance
    full_meta = {
        "name": out_dir.name,
        "description": f"converted from the pipeline run {results_dir} by vllm_mobo.replay.from_run.table_from_run",
        "synthetic": False,
        "date": None,
        "hardware": {k: v for k, v in hardware.items() if v is not None},
        "software": dict(example.software if example else {}),
        "workload": {k: v for k, v in (config.get("workload") or {}).items() if k != "model"}
        | {"model": (example.model if example else None) or str((config.get("workload") or {}).get("model", ""))},
        "search_space": config["search_space"],
        "engine_args": config.get("engine_args") or {},
        "platform": {"device": plat.device, "num_devices": plat.num_devices, "max_model_len": plat.max_model_len},
        "objectives": config.get("objectives") or [{"metric": "output_tokens_per_s", "direction": "maximize"},
                                                   {"metric": "joules_per_output_token", "direction": "minimize"}],
        "measurement": f"{example.mode if example else 'offline'} benchmarks of the pipeline (one at a time)",
        "energy_provenance": provenance,
        "coverage": {"valid_configurations": n_valid, "measured": measured, "partial": measured < n_valid,
                     "source_run": str(results_dir)},
    }
    if records:
        dates = sorted(p.stat().st_mtime for p in metrics_files)
        full_meta["date"] = pd.Timestamp(dates[-1], unit="s").strftime("%Y-%m-%d")
    full_meta.update(meta or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "table.csv", index=False)
    (out_dir / "meta.yaml").write_text(yaml.safe_dump(full_meta, sort_keys=False))
    return ReplayTable.load(out_dir)

