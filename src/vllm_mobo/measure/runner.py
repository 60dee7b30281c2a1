"""Run one candidate in its own process group, with a timeout, and write its ``metrics.json`` atomically.

The worker is :mod:`.offline` or :mod:`.online` (``benchmark.mode``), started by :mod:`.supervisor`: in a session
of its own, killed if the runner dies, with an attempt tag every process it starts inherits (the online worker's
API server and vLLM's engine processes) and an attempt file in the run's state folder (``<run>/.attempts``).
When the worker ends, times out or the runner is interrupted, the runner stops every process of the attempt and
removes the file; before it starts, it stops what earlier attempts of this host left when their runner was killed.

Whatever happens to the worker (an exception, an out-of-memory kill, a hang past the timeout), the runner writes
a metrics file: ``status: ok`` with the measurements, or ``status: failed`` with the kind of failure, the reason
and the tail of the worker's log. The search reads failures as infeasible points and never proposes them again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import hardware
from ..engine_args import devices_used, merge
from ..io import write_json_atomic
from ..records import SCHEMA_VERSION, candidate_name
from . import supervisor
from .gpus import claim_gpus
from .model import has_tokenizer, model_location, vocab_size, write_synthetic_tokenizer

_OOM = re.compile(r"out of memory|OutOfMemoryError|Cannot allocate memory|MemoryError|No available memory for the cache blocks", re.I)


#: The worker module of each benchmark mode.
WORKERS = {"offline": "vllm_mobo.measure.offline", "online": "vllm_mobo.measure.online"}


#: Seconds of cool-down before each window that ``benchmark.cooldown_s: auto`` means, per device (see the schema).
AUTO_COOLDOWN_S = {"cuda": 15.0, "cpu": 0.0}


def resolve_cooldown(cooldown_s: float | str, device: str) -> float:
    """``benchmark.cooldown_s`` in seconds: a number as given; ``auto`` by device (:data:`AUTO_COOLDOWN_S`)."""
    return AUTO_COOLDOWN_S[device] if cooldown_s == "auto" else float(cooldown_s)


def build_spec(config: dict, candidate: dict, model_dir: str | None) -> dict:
    """The worker's input: engine args (fixed + candidate), model, workload, measurement settings (the window's
    minimum length, detokenisation, the cool-down resolved for the device), and the GPUs:
    ``gpus_pinned`` (the candidate's TP x PP GPUs, see :func:`.hardware.choose_gpus`) and ``gpu_indices`` (the
    GPUs metered: those, or with ``energy.gpu_scope: node`` every GPU of the node), both NVML indices."""
    wl = config["workload"]
    bench = config["benchmark"]
    mode = bench["mode"]
    model, model_args = model_location(wl["model"], model_dir, serving=mode == "online")
    engine_args = merge(config.get("engine_args", {}), candidate["config"], model_args)
    engine_args.setdefault("seed", wl.get("seed", 0))
    if wl.get("max_model_len"):
        engine_args.setdefault("max_model_len", wl["max_model_len"])
    device = hardware.resolve_device(bench["device"])
    pinned, metered = [], []
    if device == "cuda":
        pinned = hardware.choose_gpus(devices_used(engine_args))
        scope = config["energy"].get("gpu_scope", "used")
        metered = list(range(len(hardware.gpu_uuids()))) if scope == "node" else pinned
    spec = {
        "mode": mode,
        "model": model,
        "engine_args": engine_args,
        "workload": wl,
        "vocab_size": vocab_size(wl["model"], model),
        "warmup_prompts": bench["warmup_prompts"],
        "cooldown_s": resolve_cooldown(bench["cooldown_s"], device),
        "min_window_s": bench["min_window_s"],
        "detokenize": bench["detokenize"],
        "energy": config["energy"],
        "device": device,
        "gpus_pinned": pinned,
        "gpu_indices": metered,
    }
    if mode == "online":
        spec["online"] = bench["online"]
    return spec


def record_header(config: dict, candidate: dict, iteration: int, spec: dict) -> dict:
    """The part of a metrics record known before the run: who, what, where (software and hardware)."""
    assert candidate["name"] == candidate_name(candidate["config"]), "candidate name does not match its config"
    return {
        "schema_version": SCHEMA_VERSION,
        "run": config["run"],
        "iteration": iteration,
        "candidate": candidate["name"],
        "config": candidate["config"],
        "engine_args": spec["engine_args"],
        "mode": config["benchmark"]["mode"],
        "device": spec["device"],
        "devices_used": devices_used(spec["engine_args"]),
        "software": hardware.software_versions(),
        "hardware": hardware.describe_hardware(spec["gpu_indices"]),
        "gpus_pinned": spec["gpus_pinned"],
        "gpus_metered": spec["gpu_indices"],
        "workload": {k: v for k, v in config["workload"].items() if k != "model"},
        "model": spec["model"] if "path" in config["workload"]["model"] else "architecture (dummy weights)",
    }


def worker_environment(spec: dict) -> dict:
    """The worker's (and the API server's) environment: on CUDA, CUDA_VISIBLE_DEVICES set to the candidate's GPUs
    (by UUID) and CUDA_DEVICE_ORDER=PCI_BUS_ID (so that CUDA's numbering matches NVML's, as in the metered
    indices); on the CPU build, the KV-cache size and one group of cores per TP/PP rank."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if spec["device"] == "cuda" and spec.get("gpus_pinned"):
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = hardware.cuda_visible_devices(spec["gpus_pinned"])
    if spec["device"] == "cpu":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.get("cpu_kvcache_space_gib", 1)))
        ranks = devices_used(spec["engine_args"])
        if ranks > 1:
            env.setdefault("VLLM_CPU_OMP_THREADS_BIND", hardware.cpu_bind_groups(ranks))
    return env


def classify_failure(returncode: int | None, timed_out: bool, log_tail: str) -> tuple[str, str]:
    """(kind, reason) for a worker that produced no result."""
    if timed_out:
        return "timeout", "the benchmark exceeded benchmark.timeout_s and was killed"
    if returncode is not None and returncode < 0:
        sig = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        kind = "oom" if sig == "SIGKILL" else "crash"
        return kind, f"the worker was killed by {sig}" + (" (likely the kernel's out-of-memory killer)" if kind == "oom" else "")
    lines = [l for l in log_tail.strip().splitlines() if l.strip()]
    errors = [i for i, l in enumerate(lines) if re.search(r"(Error|Exception)\b", l)]
    if errors:  # the last error line and the detail lines after it (e.g. pydantic's field and allowed values)
        detail = [l.strip() for l in lines[errors[-1]:errors[-1] + 4] if not l.lstrip().startswith(("File ", "^"))]
        last = " | ".join(detail)
    else:
        last = (lines or [f"exit status {returncode}"])[-1].strip()
    return ("oom" if _OOM.search(log_tail) else "exception"), last[:500]


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _append_server_log(server_log: Path, log) -> None:
    if server_log.exists():
        log.write("[vllm-mobo] ---------------- API server log ----------------\n")
        log.write(server_log.read_text(errors="replace"))
        log.write("[vllm-mobo] ---------------- end of API server log ---------\n")
        log.flush()


#: Seconds an interrupted worker gets to stop its API server before it is killed.
INTERRUPT_GRACE_S = 15.0
#: Seconds what is left of an attempt gets after SIGTERM once the worker has ended (its result is on disk, or it
#: timed out): vLLM's own shutdown of orphaned engine processes takes 5-10 s and measures nothing.
AFTER_EXIT_GRACE_S = 1.0


def run_candidate(config: dict, candidate: dict, iteration: int, out_path: Path | str, log_path: Path | str,
                  model_dir: str | None = None, worker_module: str | None = None,
                  state_dir: Path | str | None = None) -> dict:
    """Benchmark ``candidate`` (``{"name", "config"}``) and write ``out_path``; return the metrics written.
    The worker module is the one of ``benchmark.mode`` (:data:`WORKERS`) unless given; the attempt file goes to
    ``state_dir`` (default: the run's, see :func:`.supervisor.state_dir_for`)."""
    out_path, log_path = Path(out_path), Path(log_path)
    state_dir = Path(state_dir) if state_dir is not None else supervisor.state_dir_for(out_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    worker_module = worker_module or WORKERS[config["benchmark"]["mode"]]
    try:
        spec = build_spec(config, candidate, model_dir)
    except ValueError as exc:  # e.g. more GPUs needed than visible
        record = {"schema_version": SCHEMA_VERSION, "run": config["run"], "iteration": iteration,
                  "candidate": candidate["name"], "config": candidate["config"], "mode": config["benchmark"]["mode"],
                  "status": "failed", "failure": {"kind": "setup", "reason": str(exc), "returncode": None,
                                                  "log_tail": ""}, "metrics": None, "energy": None}
        write_json_atomic(out_path, record)
        return record
    spec["cpu_kvcache_space_gib"] = config["benchmark"].get("cpu_kvcache_space_gib", 1)
    gpu_claim = contextlib.ExitStack()
    if spec["device"] == "cuda" and "CUDA_VISIBLE_DEVICES" not in os.environ:
        # Run locally (no scheduler named this job's GPUs): hold the candidate's GPUs by lock file, so that
        # concurrent benchmarks get disjoint GPUs. Under SLURM, CUDA_VISIBLE_DEVICES already names the job's own.
        claimed = gpu_claim.enter_context(claim_gpus(len(spec["gpus_pinned"]), hardware.visible_gpu_indices(),
                                                     timeout_s=config["benchmark"]["timeout_s"]))
        if spec["gpu_indices"] == spec["gpus_pinned"]:  # energy scope "used": meter the GPUs held
            spec["gpu_indices"] = claimed
        spec["gpus_pinned"] = claimed
    model_cfg = config["workload"]["model"]
    if spec["mode"] == "online" and "architecture" in model_cfg and not has_tokenizer(spec["model"]):
        # a model directory written before the tokenizer was: a server of dummy weights needs one
        write_synthetic_tokenizer(spec["model"], int(model_cfg.get("tokenizer_vocab_size") or spec["vocab_size"]))
    record = record_header(config, candidate, iteration, spec)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    # The worker's files live beside the result, so its command line names the run it belongs to.
    with gpu_claim, tempfile.TemporaryDirectory(dir=out_path.parent.resolve(), prefix=".worker-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        server_log = Path(tmp) / "server.log"
        if spec["mode"] == "online":
            spec.update(server_log=str(server_log))
        spec_path.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        timed_out = False
        with open(log_path, "a") as log:
            supervisor.stop_leftovers(state_dir, log=lambda line: (log.write(line + "\n"), log.flush()))
            log.write(f"[vllm-mobo] candidate {candidate['name']} engine_args={json.dumps(spec['engine_args'])}\n")
            log.flush()
            worker, interrupted, defer = None, [], [True]

            def _interrupt(signum, frame):
                if not interrupted:  # the first signal counts; raised at once unless starting or stopping
                    interrupted.append(signum)
                    if not defer:
                        raise SystemExit(128 + signum)

            previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
            try:
                worker = supervisor.start([sys.executable, "-m", worker_module, str(spec_path), str(result_path)],
                                          stdout=log, stderr=subprocess.STDOUT, env=worker_environment(spec),
                                          state_dir=state_dir, label=f"candidate {candidate['name']}",
                                          parent_death=signal.SIGKILL)
                defer.clear()
                if interrupted:
                    raise SystemExit(128 + interrupted[0])
                timed_out = worker.wait(timeout=config["benchmark"]["timeout_s"]) is None
            finally:
                defer.append(True)
                # the worker, its API server and vLLM's engine processes; interrupted: leave nothing, write nothing
                if worker is not None:
                    worker.finish(grace_s=INTERRUPT_GRACE_S if interrupted else AFTER_EXIT_GRACE_S)
                for s, h in previous.items():
                    signal.signal(s, h)
                log.flush()
                worker_tail = _tail(log_path)  # the worker's own last words decide the failure's kind and reason
                _append_server_log(server_log, log)
        if interrupted:  # a signal while the worker was being stopped
            raise SystemExit(128 + interrupted[0])
        record["timing"] = {"wall_s": time.perf_counter() - t0}
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        if result is not None and "failure" in result:  # a failure the worker recognised (online mode)
            record.update(status="failed", failure={**result["failure"], "returncode": worker.returncode},
                          metrics=None, energy=None)
        elif result is not None:  # a worker that hangs in shutdown after writing still counts
            record.update(status="ok", failure=None, metrics=result["measurements"], energy=result["energy"],
                          resolved_engine_args=result["resolved_engine_args"])
            record["timing"].update(result["timing"])
            for key in ("energy_per_rate", "server", "power_timeline"):
                if key in result:
                    record[key] = result[key]
        else:
            kind, reason = classify_failure(worker.returncode, timed_out, worker_tail)
            record.update(status="failed", failure={"kind": kind, "reason": reason, "returncode": worker.returncode,
                                                    "log_tail": _tail(log_path)}, metrics=None, energy=None)
    write_json_atomic(out_path, record)
    return record
