#!/usr/bin/env python3
"""The engine-args translator and the process supervisor on a real GPU build of vLLM (run on the device machine).

    PYTHONPATH=src python3 benchmarks/device/supervisor_check.py $OUT

1. ``engine_args``: the shipped GPU configs' spaces checked against this vLLM's parser; a misspelt key and a value
   of the wrong type each give their line; every flag of :func:`to_flags` parses back to its value.
2. The exported command: :func:`vllm_mobo.engine_args.serve_command` of a non-default configuration started as it
   is (the real ``vllm serve``) on one GPU; the engine's resolved arguments read back from ``GET /server_info``.
3. A leftover engine on two GPUs: a runner-like parent starts a worker (through the supervisor, with an attempt
   file) that builds a TP=2 ``vllm.LLM``; the parent's process group is killed with SIGKILL (as ``kill -9`` of
   Snakemake's group); what stays on the GPUs is recorded (nvidia-smi); then :func:`stop_leftovers` runs and the
   GPUs are recorded again.

Every step appends one JSON line to ``OUT/supervisor_check.jsonl`` as it ends; logs go to ``OUT/*.log``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from vllm_mobo import engine_args as E  # noqa: E402
from vllm_mobo.config import expand_search_space  # noqa: E402
from vllm_mobo.measure import supervisor  # noqa: E402

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/out")
OUT.mkdir(parents=True, exist_ok=True)
MODEL = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 1024,
         "intermediate_size": 2816, "num_hidden_layers": 4, "num_attention_heads": 16, "num_key_value_heads": 8,
         "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "torch_dtype": "bfloat16"}


def emit(step: str, **data) -> None:
    line = {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}
    with open(OUT / "supervisor_check.jsonl", "a") as fh:
        fh.write(json.dumps(line, default=str) + "\n")
    print(json.dumps(line, default=str)[:2000], flush=True)


def gpu_apps() -> list[dict]:
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory,gpu_uuid",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
    rows = []
    for line in out.strip().splitlines():
        pid, name, mem, uuid = [x.strip() for x in line.split(",")]
        rows.append({"pid": int(pid), "name": name, "used_mib": int(mem), "gpu": uuid})
    return rows


def gpu_memory() -> list[int]:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def wait_healthy(port: int, proc: supervisor.Supervised, timeout_s: float = 420) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError("server not healthy")


def step_validation() -> None:
    for path in sorted((REPO / "benchmarks" / "configs").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        emit("validation", config=path.name, problems=E.problems(expand_search_space(cfg.get("search_space") or {}),
                                                                  cfg.get("engine_args") or {}))
    bad = E.problems({"block_sze": [16, 32], "max_num_seqs": ["many", 64]}, {"enable_chunked_prefill": "yes"})
    emit("validation", config="misspelt and mistyped", problems=bad, vllm=E.vllm_version())
    parser = E.serve_parser()
    args = {"max_num_seqs": 7, "block_size": 32, "enable_prefix_caching": False, "enable_chunked_prefill": False,
            "enforce_eager": True, "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5,
            "max_num_batched_tokens": 4096, "disable_log_stats": True}
    parsed = vars(parser.parse_args(["--model", "m", *E.to_flags(args, parser)]))
    emit("round_trip", flags=E.to_flags(args, parser),
         mismatches={k: (v, parsed.get(k)) for k, v in args.items() if parsed.get(k) != v})


def step_exported_command(model_dir: Path) -> None:
    given = {"max_num_seqs": 7, "block_size": 32, "enable_prefix_caching": False, "enable_chunked_prefill": False,
             "max_num_batched_tokens": 4096}
    engine_args = E.merge({"enforce_eager": True, "max_model_len": 2048, "load_format": "dummy",
                           "gpu_memory_utilization": 0.5}, given)
    command = E.serve_command(str(model_dir), engine_args, multiline=True)
    port = 18123
    argv = [*shlex.split(command.replace("\\\n", " ")), "--port", str(port)]
    if shutil.which("vllm") is None:  # the console script is not on PATH: the module it runs
        argv[:1] = [sys.executable, "-c", "from vllm.entrypoints.cli.main import main; main()"]
    env = dict(os.environ, VLLM_SERVER_DEV_MODE="1", CUDA_VISIBLE_DEVICES="0")
    log = open(OUT / "exported_command.log", "w")
    proc = supervisor.start(argv, env=env, stdout=log, stderr=subprocess.STDOUT, state_dir=OUT / "attempts",
                            label="exported command")
    try:
        healthy_s = wait_healthy(port, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info?config_format=json", timeout=60) as r:
            info = json.loads(r.read())
    finally:
        stopped = proc.finish()
    cfg = info.get("vllm_config") or {}
    sched, cache = cfg.get("scheduler_config") or {}, cfg.get("cache_config") or {}
    resolved = {"max_num_seqs": sched.get("max_num_seqs"),
                "max_num_batched_tokens": sched.get("max_num_batched_tokens"),
                "enable_chunked_prefill": sched.get("enable_chunked_prefill"), "block_size": cache.get("block_size"),
                "enable_prefix_caching": cache.get("enable_prefix_caching")}
    emit("exported_command", command=command, healthy_s=round(healthy_s, 1), given=given, resolved=resolved,
         match={k: resolved.get(k) == v for k, v in given.items()}, stopped_pids=stopped, gpu_apps_after=gpu_apps())


WORKER = """
import sys, time
from vllm import LLM
llm = LLM(model=sys.argv[1], tensor_parallel_size=2, load_format="dummy", enforce_eager=True, max_model_len=2048,
          gpu_memory_utilization=0.5)
print("READY", flush=True)
time.sleep(3600)
"""

RUNNER = """
import sys
sys.path.insert(0, sys.argv[3])
from vllm_mobo.measure import supervisor
w = supervisor.start([sys.executable, "-c", sys.argv[1], sys.argv[2]], state_dir=sys.argv[4],
                     label="candidate tp2 (device check)", stdout=open(sys.argv[5], "w"), stderr=-2)
w.wait()
"""


def step_leftovers(model_dir: Path) -> None:
    state = OUT / "attempts-tp2"
    worker_log = OUT / "tp2_worker.log"
    base = gpu_memory()
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, WORKER, str(model_dir), str(REPO / "src"), str(state),
                               str(worker_log)], start_new_session=True)
    t0 = time.monotonic()
    while "READY" not in (worker_log.read_text() if worker_log.exists() else ""):
        if time.monotonic() - t0 > 480 or runner.poll() is not None:
            emit("leftovers", error="the TP=2 engine did not start", log_tail=worker_log.read_text()[-3000:]
                 if worker_log.exists() else "")
            supervisor.stop_leftovers(state)
            return
        time.sleep(2)
    loaded = gpu_memory()
    apps = gpu_apps()
    tree = [{"pid": p.pid, "name": p.name(), "sid": os.getsid(p.pid)}
            for p in psutil.Process(runner.pid).children(recursive=True)]
    os.killpg(runner.pid, signal.SIGKILL)  # kill -9 of the "Snakemake" process group
    runner.wait()
    time.sleep(15)
    left = gpu_apps()
    alive = [t for t in tree
             if psutil.pid_exists(t["pid"]) and psutil.Process(t["pid"]).status() != psutil.STATUS_ZOMBIE]
    emit("leftovers_before", gpu_memory_idle_mib=base, gpu_memory_loaded_mib=loaded, gpu_apps_loaded=apps,
         process_tree=tree, after_kill_minus_9={"gpu_apps": left, "alive": alive, "gpu_memory_mib": gpu_memory()},
         attempt_files=sorted(p.name for p in state.glob("*")))
    lines = []
    stopped = supervisor.stop_leftovers(state, log=lines.append)
    time.sleep(5)
    emit("leftovers_after", stop_leftovers_log=lines, stopped=stopped, gpu_apps=gpu_apps(),
         gpu_memory_mib=gpu_memory(), attempt_files=sorted(p.name for p in state.glob("*")))


def main() -> int:
    from vllm_mobo.measure.model import write_model_dir

    model_dir = write_model_dir({"architecture": MODEL}, "/tmp/supervisor-check-model")
    emit("start", vllm=E.vllm_version(), gpus=subprocess.run(["nvidia-smi", "-L"], capture_output=True,
                                                              text=True).stdout.strip().splitlines())
    for step in (step_validation, lambda: step_exported_command(model_dir), lambda: step_leftovers(model_dir)):
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - one failed step is recorded, the next still runs
            emit("error", step=getattr(step, "__name__", "step"), error=f"{type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
