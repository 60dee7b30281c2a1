"""Measure every valid configuration of a config's search space with the real engine: a replay table.

The optimiser benchmark (:mod:`vllm_mobo.replay.table`) replays measured tables so that strategies compare at no
engine cost; this module measures one. Unlike the pipeline (one process per candidate, engine core in a process
of its own), the sweep starts engines one after another in a single process with vLLM's engine core in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``): on the CPU build that cuts a candidate's start-up from ~40 s to ~5 s,
which is what makes the 432-point space measurable in about an hour on two cores. The measurement itself is the
pipeline's (:func:`vllm_mobo.measure.offline.measure`: same workload, warm-up, energy meters, record format).

``python -m vllm_mobo.replay.sweep CONFIG OUT_DIR [--max-engines N]`` measures at most N engines and
exits (exit status 3 while work remains), so a driver (``vllm-mobo measure-table``) restarts it in a
fresh process: memory an engine leaves behind cannot pile up, and a hard crash (a segfault) loses one
candidate, which the driver records as failed from ``OUT_DIR/current.json``. Everything is resumable: each
finished candidate is a file ``OUT_DIR/records/<candidate>.json`` (failures included); repeats of a few
candidates (for the replay's noise model) are ``OUT_DIR/repeats/<candidate>-r<k>.json``.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..config import load_config
from ..io import read_json, write_json_atomic
from ..measure.model import write_model_dir
from ..measure.runner import build_spec, record_header, worker_environment
from ..records import VLLM_DEFAULT, candidate_name, observation_row, provenance_summary
from ..search.plan import platform_for, valid_and_skipped

#: Exit status of a sweep process that stopped at --max-engines with work left.
MORE_TO_DO = 3


def planned_runs(config: dict, repeat_candidates: int, repeats: int, seed: int = 0) -> list[tuple[dict, str]]:
    """Every (candidate, path relative to the output folder) to measure, in the order to measure them: vLLM's
    default first, then every valid configuration and ``repeats`` more runs of ``repeat_candidates``
    configurations (vLLM's default always among them), all shuffled with ``seed``.

    Shuffled, not in the space's order: a machine's speed drifts over an hour-long sweep (the 2-core CPU table of
    2026-12-01 measured vLLM's default at 1,838 and later 1,100 tok/s), and in the space's order that drift lands
    on neighbouring configurations together, a ridge a model takes for an effect of the knobs (that table's
    residuals from the knobs' main effects correlate 0.43 in tokens/s and 0.26 in estimated J/token from one
    measurement to the next, permutation p < 0.001; ``benchmarks/table_drift.py``). In random order it is noise,
    spread over the space as it is over the repeats."""
    _, valid, _ = valid_and_skipped(config, platform_for(config))
    everything = [{"name": VLLM_DEFAULT, "config": {}}] + [{"name": candidate_name(c), "config": c} for c in valid]
    runs = [(c, f"records/{c['name']}.json") for c in everything]
    rng = np.random.default_rng(seed)
    picked = [everything[0]] + [everything[1 + i] for i in
                                rng.choice(len(valid), size=min(max(repeat_candidates - 1, 0), len(valid)), replace=False)]
    for k in range(1, repeats + 1):
        runs += [(c, f"repeats/{c['name']}-r{k}.json") for c in picked[:repeat_candidates]]
    return runs[:1] + [runs[1 + i] for i in rng.permutation(len(runs) - 1)]


def _set_environment(spec: dict) -> None:
    """The environment the pipeline's worker would get (KV-cache size, one core group per rank), applied to this
    process before the engine starts: variables left by the previous engine are cleared first."""
    os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
    os.environ.update({k: v for k, v in worker_environment(spec).items() if k.startswith(("VLLM_", "CUDA_"))})


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def measure_one(config: dict, candidate: dict, model_dir: Path, timeout_s: float) -> dict:
    """One engine: start, measure (warm-up and timed window as in the pipeline), shut down; the metrics record,
    ``status: failed`` with the exception on any failure."""
    from vllm import LLM

    from ..measure.offline import measure

    spec = build_spec(config, candidate, str(model_dir))
    spec["cpu_kvcache_space_gib"] = config["benchmark"].get("cpu_kvcache_space_gib", 1)
    record = record_header(config, candidate, 0, spec)
    record["measurement_method"] = "table sweep: engines in turn in one process, engine core in-process"
    _set_environment(spec)
    t0 = time.perf_counter()
    llm = None
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(timeout_s))
    try:
        llm = LLM(model=spec["model"], **spec["engine_args"])
        result = measure(llm, spec, time.perf_counter() - t0)
        record.update(status="ok", failure=None, metrics=result["measurements"], energy=result["energy"],
                      resolved_engine_args=result["resolved_engine_args"], timing=result["timing"])
    except _Timeout:
        record.update(status="failed", metrics=None, energy=None,
                      failure={"kind": "timeout", "reason": f"exceeded benchmark.timeout_s ({timeout_s:g} s)"})
    except Exception as exc:  # the engine refused the configuration or died: a failure of the candidate
        kind = "oom" if "memory" in str(exc).lower() else "exception"
        record.update(status="failed", metrics=None, energy=None,
                      failure={"kind": kind, "reason": f"{type(exc).__name__}: {exc}"[:500]})
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception as exc:  # reported, not fatal: the next engine starts anyway
                print(f"[table-sweep] shutdown of {candidate['name']} raised {exc!r}", flush=True)
            del llm
        gc.collect()
    record.setdefault("timing", {})["wall_s"] = time.perf_counter() - t0
    return record


def sweep(config: dict, out_dir: Path, *, max_engines: int | None, repeat_candidates: int, repeats: int,
          deadline: float | None = None) -> bool:
    """Measure what is not measured yet (at most ``max_engines``; no engine started after ``deadline``, a
    ``time.time()``); True when every planned run has a file."""
    model_dir = out_dir / "model"
    if not (model_dir / "config.json").exists():
        write_model_dir(config["workload"]["model"], model_dir)
    runs = planned_runs(config, repeat_candidates, repeats, seed=config["optimizer"]["seed"])
    todo = [(c, rel) for c, rel in runs if not (out_dir / rel).exists()]
    done_before = len(runs) - len(todo)
    for n, (candidate, rel) in enumerate(todo[:max_engines] if max_engines else todo):
        if deadline is not None and time.time() >= deadline:
            break
        write_json_atomic(out_dir / "current.json", {"candidate": candidate, "path": rel})
        record = measure_one(config, candidate, model_dir, config["benchmark"]["timeout_s"])
        write_json_atomic(out_dir / rel, record)
        m = record.get("metrics") or {}
        summary = (f"{m['output_tokens_per_s']:.0f} tok/s, {m['joules_per_output_token']:.4f} J/tok "
                   f"({provenance_summary(s['provenance'] for s in record['energy']['sources'])})"
                   if record["status"] == "ok" else f"FAILED {record['failure']['kind']}: {record['failure']['reason'][:120]}")
        print(f"[table-sweep] [{done_before + n + 1}/{len(runs)}] {rel}: {summary} "
              f"(wall {record['timing']['wall_s']:.1f} s)", flush=True)
    (out_dir / "current.json").unlink(missing_ok=True)
    return all((out_dir / rel).exists() for _, rel in runs)


def record_crash(out_dir: Path, returncode: int) -> str | None:
    """After a sweep process died without writing its candidate: record that candidate as failed (crash)."""
    current = out_dir / "current.json"
    if not current.exists():
        return None
    info = read_json(current)
    sig = -returncode if returncode < 0 else None
    reason = (f"the process was killed by {signal.Signals(sig).name}" if sig in signal.valid_signals()
              else f"the process exited with status {returncode} mid-run")
    record = {"candidate": info["candidate"]["name"], "config": info["candidate"]["config"], "iteration": 0,
              "status": "failed", "metrics": None, "energy": None, "timing": {},
              "failure": {"kind": "crash", "reason": reason, "returncode": returncode}}
    write_json_atomic(out_dir / info["path"], record)
    current.unlink()
    return info["candidate"]["name"]


def write_table(config: dict, out_dir: Path, name: str, description: str) -> pd.DataFrame:
    """``table.csv`` (every configuration of the space: measured ok/failed, and ``invalid`` rows with the validity
    rule's reason), ``repeats.csv`` (every measurement of the repeated candidates, ``repeat`` 0 being the table's)
    and ``meta.yaml``: the replay table format of :mod:`vllm_mobo.replay.table`."""
    space, valid, skipped = valid_and_skipped(config, platform_for(config))
    keys = space.keys
    records = {p.stem: read_json(p) for p in sorted((out_dir / "records").glob("*.json"))}
    rows = [observation_row(r, keys) for r in records.values()]
    for _, s in skipped.iterrows():
        row = {"iteration": 0, "candidate": s["candidate"], "status": "invalid", "failure_kind": "invalid",
               "failure_reason": s["reason"], "is_vllm_default": False, "feasible": False}
        row.update({k: s[k] for k in keys})
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("candidate", kind="stable").reset_index(drop=True)
    table.to_csv(out_dir / "table.csv", index=False)

    rep_rows = []
    for p in sorted((out_dir / "repeats").glob("*.json")):
        cand, k = p.stem.rsplit("-r", 1)
        rep_rows.append({**observation_row(read_json(p), keys), "repeat": int(k)})
        if not any(r["candidate"] == cand and r["repeat"] == 0 for r in rep_rows):
            rep_rows.append({**observation_row(records[cand], keys), "repeat": 0})
    if rep_rows:
        pd.DataFrame(rep_rows).sort_values(["candidate", "repeat"]).to_csv(out_dir / "repeats.csv", index=False)

    ok = [r for r in records.values() if r["status"] == "ok"]
    sample = ok[0] if ok else {}
    plat = platform_for(config)
    energy_sources = sorted({f"{s['source']}: {s['provenance']} ({s['method'].split(':')[0]})"
                             for r in ok for s in r["energy"]["sources"]})
    meta = {
        "name": name,
        "description": description,
        "date": datetime.fromtimestamp(max(p.stat().st_mtime for p in (out_dir / "records").glob("*.json")),
                                       timezone.utc).strftime("%Y-%m-%d"),
        "hardware": sample.get("hardware"),
        "software": sample.get("software"),
        "workload": {k: v for k, v in config["workload"].items()},
        "engine_args": config.get("engine_args", {}),
        "search_space": config["search_space"],
        "platform": {"device": plat.device, "num_devices": plat.num_devices, "max_model_len": plat.max_model_len},
        "objectives": config["objectives"],
        "mode": config["benchmark"]["mode"],
        "counts": {"space": len(space), "valid": len(valid), "invalid": len(skipped), "measured": len(records),
                   "ok": len(ok), "failed": len(records) - len(ok),
                   "repeat_runs": len(rep_rows) - len({r['candidate'] for r in rep_rows})},
        "measurement_method": (
            "vllm_mobo.replay.sweep: every valid configuration and vLLM's default, engines started one "
            "after another in one process (engine core in-process, VLLM_ENABLE_V1_MULTIPROCESSING=0; at most "
            "a few engines per process), the pipeline's offline measurement (warm-up, then the timed generate of the "
            "whole workload with the energy meters over that window); single measurement per configuration, "
            "repeats.csv holds fresh-engine repeats of a few configurations for the noise model; measured in "
            "the seeded random order of planned_runs (vLLM's default first)"),
        "energy_provenance": energy_sources,
    }
    (out_dir / "meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--max-engines", type=int, default=None)
    ap.add_argument("--repeat-candidates", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=0)
    ap.add_argument("--deadline", type=float, default=None, help="start no engine after this time.time()")
    args = ap.parse_args(argv)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    config = load_config(args.config)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    complete = sweep(config, args.out_dir, max_engines=args.max_engines,
                     repeat_candidates=args.repeat_candidates, repeats=args.repeats, deadline=args.deadline)
    return 0 if complete else MORE_TO_DO


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # vLLM's teardown can hang; everything is on disk
