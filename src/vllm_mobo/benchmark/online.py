"""The benchmark worker for online (serving) mode: run in its own process by :mod:`.runner`.

``python -m vllm_mobo.benchmark.online SPEC.json RESULT.json``:

1. starts vLLM's OpenAI-compatible API server (``python -m vllm.entrypoints.openai.api_server``; the ``vllm``
   command is missing on the CPU build) with the candidate's engine arguments on a free loopback port, as a
   subprocess in its own process group, its output in ``spec["server_log"]`` and its PID in
   ``spec["server_pid_file"]`` (so that the runner can stop the group even if this worker is killed);
2. waits for ``GET /health``; a server that exits or is not healthy within ``online.server_start_timeout_s`` is a
   failed candidate, with the tail of its log as the reason;
3. sends a warm-up batch (not measured), then, for each request rate in ascending order, drives the server with
   vLLM's own load generator, the ``benchmark`` coroutine of ``vllm.benchmarks.serve`` (Poisson arrivals, or all
   at once for ``inf``), with the workload's prompts as token ids, and meters energy over exactly that call
   (:class:`~vllm_mobo.energy.EnergySession` rooted at the server's PID, so the CPU/RAM estimates attribute the
   server's process tree);
4. stops the server through its process group (SIGTERM, then SIGKILL after a grace period), also on failure and
   on SIGTERM/SIGINT, and writes RESULT.json: the measurements, or ``{"failure": {...}}`` for a known failure.

The energy window is the ``benchmark`` call: it holds the load and, around it, vLLM's client set-up inside that
call (an aiohttp session, one ``GET /metrics`` before and after, the metrics computation: tens of milliseconds;
``energy_window_s - duration_s`` records it per rate). Python start-up, vLLM imports, the server start, the
warm-up and the prompt generation are all outside it.

Rates and SLOs: rates run from low to high on the same server. A rate *meets the SLOs* when no request failed and
the p99 TTFT and p99 TPOT are within ``online.slo``. The candidate's headline metrics (those the optimiser and
tables read) are the highest rate that meets the SLOs; without SLOs, the highest rate. With SLOs, rates above the
first violating one are not run (a higher load does not bring latency down). If even the lowest rate violates
them, the headline is that rate with ``slo_met: false``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from ..energy import EnergySession, summarize
from ..io import write_json_atomic
from .workload import make_requests

HOST = "127.0.0.1"
PERCENTILES = (50, 90, 99)
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
STOP_GRACE_S = 10.0
PORT_ATTEMPTS = 3
_ADDRESS_IN_USE = "Address already in use"


class BenchmarkFailure(Exception):
    """A known way for a candidate to fail: ``kind``, a one-line reason, and a log tail."""

    def __init__(self, kind: str, reason: str, log_tail: str = ""):
        super().__init__(reason)
        self.kind, self.reason, self.log_tail = kind, reason, log_tail

    def to_dict(self) -> dict:
        return {"kind": self.kind, "reason": self.reason, "log_tail": self.log_tail}


# --------------------------------------------------------------------------------------------------- ports


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a listening socket could bind ``host:port`` now (with SO_REUSEADDR, as vLLM's server binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """A port the kernel reports free now (another process may still take it before the server binds it: the
    server's start is then retried on a new port, see :func:`start_server`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def choose_port(requested: int, host: str = HOST) -> tuple[int, str | None]:
    """``requested`` if it is free; otherwise (or for 0) a free port, with a note saying so."""
    if requested and port_is_free(requested, host):
        return requested, None
    port = free_port(host)
    return port, (f"port {requested} on {host} is taken; using free port {port} instead" if requested else None)


# ------------------------------------------------------------------------------------------- server command


def _serve_parser():
    """vLLM's own argument parser of the API server, or None if this vLLM version hides it."""
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # older vLLM
        try:
            from vllm.utils import FlexibleArgumentParser
        except ImportError:
            return None
    for module in ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args"):
        try:
            make = importlib.import_module(module).make_arg_parser
        except (ImportError, AttributeError):
            continue
        try:
            return make(FlexibleArgumentParser())
        except Exception:  # noqa: BLE001 - a parser we cannot build only costs the introspection
            return None
    return None


def engine_cli_args(engine_args: dict, parser=None) -> list[str]:
    """Engine arguments (``vllm.EngineArgs`` names and Python values, as offline mode passes them to
    ``vllm.LLM``) as API-server flags. Booleans become ``--x``/``--no-x`` (``store_true`` flags: ``--x`` or
    nothing), dicts and lists JSON; ``None`` is left out. An unknown argument is passed through as ``--x value``
    and the server rejects it (a failed candidate with the server's message)."""
    actions = {opt: a for a in (parser._actions if parser else []) for opt in a.option_strings}
    out: list[str] = []
    for key, value in engine_args.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        action = actions.get(flag)
        if isinstance(value, bool):
            if isinstance(action, argparse._StoreTrueAction):
                if value:
                    out.append(flag)
            elif isinstance(action, argparse._StoreFalseAction):
                if not value:
                    out.append(flag)
            elif action is None or isinstance(action, argparse.BooleanOptionalAction):
                out.append(flag if value else f"--no-{flag[2:]}")
            else:
                out += [flag, str(value).lower()]
        elif isinstance(value, (dict, list)):
            out += [flag, json.dumps(value)]
        else:
            out += [flag, str(value)]
    return out


def server_command(model: str, engine_args: dict, port: int, parser=None, host: str = HOST) -> list[str]:
    args = {k: v for k, v in engine_args.items() if k not in ("model", "host", "port")}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", host,
           "--port", str(port), *engine_cli_args(args, parser)]
    if parser is not None and any("--disable-uvicorn-access-log" in a.option_strings for a in parser._actions):
        cmd.append("--disable-uvicorn-access-log")  # one line per request otherwise
    return cmd


# ---------------------------------------------------------------------------------------------------- server


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _last_error(tail: str) -> str:
    lines = [l.strip() for l in tail.splitlines() if l.strip()]
    errors = [l for l in lines if "Error" in l or "error:" in l or "Exception" in l]
    return ((errors or lines or ["(empty log)"])[-1])[:500]


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is still in process group ``pgid``."""
    import psutil

    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return False


def kill_group(pgid: int, grace_s: float = STOP_GRACE_S, reap=None) -> None:
    """SIGTERM the process group ``pgid``, wait up to ``grace_s`` for its processes to end, then SIGKILL what is
    left. ``reap`` (e.g. ``Popen.poll`` of the leader) is called while waiting, so that our own child does not
    linger as a zombie. Process groups are addressed by the leader's PID only, never by name."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if reap:
            reap()
        if not group_alive(pgid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _terminate_with_parent() -> None:
    """In the server, before exec: receive SIGTERM when the worker dies (e.g. killed by its runner's
    PR_SET_PDEATHSIG without a chance to clean up); the API server then shuts its engine processes down."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the runner's clean-up by the recorded PID still applies
        pass


class Server:
    """One API server process (group) with its log; :meth:`stop` is idempotent."""

    def __init__(self, cmd: list[str], port: int, log_path: Path, env: dict | None = None,
                 pid_file: Path | None = None):
        self.cmd, self.port, self.log_path, self.env, self.pid_file = cmd, port, Path(log_path), env, pid_file
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"[vllm-mobo] server command: {' '.join(self.cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True,
                                         preexec_fn=_terminate_with_parent)
        if self.pid_file:
            self.pid_file.write_text(str(self.proc.pid))

    def wait_healthy(self, timeout_s: float, poll_s: float = 0.5) -> float:
        """Seconds until ``GET /health`` answered 200. Raises :class:`BenchmarkFailure` (``server_exit``, with
        ``address_in_use`` set when the port was taken, or ``server_timeout``)."""
        t0 = time.monotonic()
        url = f"http://{HOST}:{self.port}/health"
        while True:
            code = self.proc.poll()
            if code is not None:
                tail = _tail(self.log_path)
                exc = BenchmarkFailure("server_exit", f"the API server exited with status {code} before it was "
                                       f"healthy: {_last_error(tail)}", tail)
                exc.address_in_use = _ADDRESS_IN_USE in tail
                raise exc
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic() - t0
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() - t0 > timeout_s:
                tail = _tail(self.log_path)
                raise BenchmarkFailure("server_timeout", f"the API server was not healthy after {timeout_s:g} s "
                                       f"(benchmark.online.server_start_timeout_s); last log line: "
                                       f"{_last_error(tail)}", tail)
            time.sleep(poll_s)

    def stop(self) -> None:
        if self.proc is None:
            return
        kill_group(self.proc.pid, reap=self.proc.poll)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def start_server(spec: dict, parser, env: dict | None = None) -> tuple[Server, float, list[str]]:
    """Start a server and wait until healthy; returns (server, seconds to healthy, port notes). A server that
    fails to bind its port (another process took it after it was chosen) is restarted on a new free port, up
    to :data:`PORT_ATTEMPTS` times."""
    online = spec["online"]
    notes = []
    requested = int(online.get("port", 0))
    for attempt in range(PORT_ATTEMPTS):
        port, note = choose_port(requested if attempt == 0 else 0)
        if note:
            notes.append(note)
            print(f"[vllm-mobo] {note}", flush=True)
        if spec.get("server_command"):  # tests: a stand-in server, "{port}" replaced by the port
            cmd = [a.replace("{port}", str(port)) for a in spec["server_command"]]
        else:
            cmd = server_command(spec["model"], spec["engine_args"], port, parser)
        server = Server(cmd, port, Path(spec["server_log"]), env=env,
                        pid_file=Path(spec["server_pid_file"]) if spec.get("server_pid_file") else None)
        server.start()
        print(f"[vllm-mobo] API server pid {server.pid} starting on {HOST}:{port}", flush=True)
        try:
            return server, server.wait_healthy(online["server_start_timeout_s"]), notes
        except BenchmarkFailure as exc:
            server.stop()
            if getattr(exc, "address_in_use", False) and attempt + 1 < PORT_ATTEMPTS:
                notes.append(f"port {port} was taken when the server bound it; retrying on another port")
                print(f"[vllm-mobo] {notes[-1]}", flush=True)
                continue
            raise
        except BaseException:  # interrupted (SIGTERM/SIGINT raise SystemExit) while waiting: stop it too
            server.stop()
            raise
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------------------ load


def sample_requests(spec: dict, count: int | None = None, seed_offset: int = 0) -> list:
    """The workload's requests (the same generator as offline mode) as vLLM ``SampleRequest`` with token-id
    prompts: exact prompt lengths, no tokenizer round trip."""
    from vllm.benchmarks.datasets import SampleRequest

    requests = make_requests(spec["workload"], spec["vocab_size"], count=count, seed_offset=seed_offset)
    return [SampleRequest(prompt=r.prompt_token_ids, prompt_len=len(r.prompt_token_ids),
                          expected_output_len=r.output_len) for r in requests]


def load_tokenizer(model: str):
    """The model's tokenizer through vLLM (the synthetic one beside dummy weights), or None. vLLM's load
    generator uses it only to print its latency table and, in versions whose requests carry no token usage, to
    count output tokens; this worker counts from the server's usage report."""
    for module in ("vllm.tokenizers", "vllm.transformers_utils.tokenizer"):
        try:
            return importlib.import_module(module).get_tokenizer(model)
        except Exception:  # noqa: BLE001 - no tokenizer only costs the printed table
            continue
    return None


def run_load(base_url: str, model: str, requests: list, rate: float, goodput: dict, seed: int,
             tokenizer=None) -> dict:
    """One call of vLLM's serving benchmark coroutine (``vllm bench serve``'s load generator) with the given
    requests at ``rate`` (Poisson arrivals; ``inf``: all at once). Arguments this vLLM version does not know are
    left out, so the same code drives older releases."""
    from vllm.benchmarks import serve

    kwargs = dict(
        task_type=getattr(serve, "TaskType", None) and serve.TaskType.GENERATION,
        endpoint_type="openai", backend="openai", api_url=f"{base_url}/v1/completions", base_url=base_url,
        model_id=model, model_name=None, tokenizer=tokenizer, input_requests=requests, logprobs=None,
        request_rate=rate, burstiness=1.0, disable_tqdm=True, num_warmups=0, profile=False,
        selected_percentile_metrics=list(LATENCY_METRICS), selected_percentiles=[float(p) for p in PERCENTILES],
        ignore_eos=True, goodput_config_dict=goodput, max_concurrency=None, lora_modules=None,
        extra_headers=None, extra_body={"temperature": 0.0}, ready_check_timeout_sec=0,
    )
    params = inspect.signature(serve.benchmark).parameters
    missing = [p for p, v in params.items() if v.default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise RuntimeError(f"vllm.benchmarks.serve.benchmark needs arguments this worker does not know: {missing}")
    np.random.seed(seed)  # the Poisson inter-arrival times come from NumPy's global generator
    return asyncio.run(serve.benchmark(**{k: v for k, v in kwargs.items() if k in params}))


def _percentiles(values: list[float], name: str) -> dict:
    if not values:
        return {f"{name}_ms_mean": float("nan"), **{f"{name}_ms_p{p}": float("nan") for p in PERCENTILES}}
    arr = np.asarray(values, dtype=float) * 1000.0
    return {f"{name}_ms_mean": float(arr.mean()), **{f"{name}_ms_p{p}": float(np.percentile(arr, p)) for p in PERCENTILES}}


def latency_metrics(result: dict) -> dict:
    """Percentiles of the successful requests, with vLLM's definitions: TTFT; TPOT = (latency - TTFT) / (output
    tokens - 1) for requests with more than one output token; ITL, every gap between streamed chunks; E2E
    latency."""
    ok = [i for i, e in enumerate(result["errors"]) if not e and result["output_lens"][i] > 0]
    ttft = [result["ttfts"][i] for i in ok]
    # vLLM >= 0.3x returns each request's latency; 0.26 (seen on the GPU machine) does not: there it is the time
    # of the last streamed chunk, TTFT plus every inter-chunk gap, which is how vLLM measures it.
    latencies = result.get("latencies") or [t + sum(gaps) for t, gaps in zip(result["ttfts"], result["itls"])]
    e2el = [latencies[i] for i in ok]
    tpot = [(latencies[i] - result["ttfts"][i]) / (result["output_lens"][i] - 1)
            for i in ok if result["output_lens"][i] > 1]
    itl = [x for i in ok for x in result["itls"][i]]
    return {**_percentiles(ttft, "ttft"), **_percentiles(tpot, "tpot"), **_percentiles(itl, "itl"),
            **_percentiles(e2el, "e2el")}


def slo_check(metrics: dict, slo: dict) -> tuple[bool, list[str]]:
    """(met, violations): no failed request, and every configured p99 within its bound."""
    violations = []
    if metrics["failed_requests"]:
        violations.append(f"{metrics['failed_requests']} of {metrics['num_requests']} requests failed")
    for key in ("ttft_ms_p99", "tpot_ms_p99"):
        bound = slo.get(key)
        if bound is not None and not metrics[key] <= bound:  # NaN violates too
            violations.append(f"{key} {metrics[key]:.1f} > {bound:g}")
    return not violations, violations


def rate_label(rate: float):
    return "inf" if math.isinf(rate) else rate


def measure_rate(spec: dict, server: Server, model_id: str, requests: list, rate: float, index: int,
                 tokenizer=None) -> dict:
    """Load at one rate with the energy meters over exactly that call; the metrics of that rate."""
    slo = spec["online"].get("slo") or {}
    goodput = {name: slo[key] for name, key in (("ttft", "ttft_ms_p99"), ("tpot", "tpot_ms_p99")) if slo.get(key)}
    if spec.get("cooldown_s"):
        time.sleep(spec["cooldown_s"])
    meters = EnergySession.from_config(spec["energy"], root_pid=server.pid, gpu_indices=spec.get("gpu_indices"))
    base_url = f"http://{HOST}:{server.port}"
    print(f"[vllm-mobo] rate {rate_label(rate)} req/s: {len(requests)} requests", flush=True)
    meters.start()
    t0 = time.perf_counter()
    result = run_load(base_url, model_id, requests, rate, goodput, seed=spec["workload"].get("seed", 0) + index,
                      tokenizer=tokenizer)
    window_s = time.perf_counter() - t0
    readings = meters.stop()
    energy = summarize(readings)

    completed, failed = int(result["completed"]), int(result.get("failed", len(requests) - result["completed"]))
    if completed == 0:
        errors = [e for e in result.get("errors", []) if e]
        tail = _tail(server.log_path)
        raise BenchmarkFailure("requests_failed", f"all {len(requests)} requests failed at rate {rate_label(rate)}: "
                               f"{(errors or ['no error message'])[0].strip().splitlines()[-1][:300]}", tail)
    duration = float(result["duration"])
    out_tokens, in_tokens = int(result["total_output_tokens"]), int(result["total_input_tokens"])
    m = {
        "request_rate": rate_label(rate),
        "num_requests": len(requests),
        "completed_requests": completed,
        "failed_requests": failed,
        "prompt_tokens": in_tokens,
        "output_tokens": out_tokens,
        "elapsed_s": duration,
        "energy_window_s": window_s,
        "client_overhead_in_window_s": window_s - duration,
        "output_tokens_per_s": out_tokens / duration,
        "total_tokens_per_s": (in_tokens + out_tokens) / duration,
        "requests_per_s": completed / duration,
        "goodput": float(result["request_goodput"]) if result.get("request_goodput") is not None else completed / duration,
        "energy_j": energy["total_j"],
        "joules_per_output_token": energy["total_j"] / out_tokens if out_tokens else float("nan"),
        "joules_per_token": energy["total_j"] / (in_tokens + out_tokens),
        "mean_power_w": energy["total_j"] / window_s,
        **latency_metrics(result),
    }
    m["goodput_fraction"] = m["goodput"] / m["requests_per_s"] if m["requests_per_s"] else 0.0
    m["slo_met"], m["slo_violations"] = slo_check(m, slo)
    m["energy"] = energy
    print(f"[vllm-mobo] rate {rate_label(rate)}: {m['output_tokens_per_s']:.1f} out tok/s, "
          f"TTFT p99 {m['ttft_ms_p99']:.1f} ms, TPOT p99 {m['tpot_ms_p99']:.2f} ms, "
          f"{m['joules_per_output_token']:.4g} J/out token, SLOs {'met' if m['slo_met'] else 'violated'}", flush=True)
    return m


def sorted_rates(rates: list) -> list[float]:
    return sorted({float(r) for r in rates})  # float("inf") sorts last; "inf" and .inf are one rate


def select_headline(per_rate: list[dict], slo: dict) -> dict:
    """The highest rate that met the SLOs (the highest rate without SLOs); else the lowest rate."""
    met = [m for m in per_rate if m["slo_met"]] if slo else per_rate
    return (met or per_rate[:1])[-1]


def run(spec: dict, server_env: dict | None = None) -> dict:
    online = spec["online"]
    slo = online.get("slo") or {}
    parser = None if spec.get("server_command") else _serve_parser()
    t_start = time.perf_counter()
    server = None
    try:
        server, startup_s, port_notes = start_server(spec, parser, env=server_env)
        print(f"[vllm-mobo] API server healthy after {startup_s:.1f} s", flush=True)
        model_id = spec["model"]
        t_ready = time.perf_counter()
        tokenizer = None if spec.get("server_command") else load_tokenizer(model_id)
        warm = sample_requests(spec, count=spec["warmup_prompts"], seed_offset=1)
        if warm:
            run_load(f"http://{HOST}:{server.port}", model_id, warm, float("inf"), {}, seed=0, tokenizer=tokenizer)
        t_warm = time.perf_counter()

        requests = sample_requests(spec, count=online.get("num_prompts") or spec["workload"]["num_prompts"])
        per_rate, skipped = [], []
        rates = sorted_rates(online["request_rates"])
        for i, rate in enumerate(rates):
            if slo and per_rate and not per_rate[-1]["slo_met"]:
                skipped = [rate_label(r) for r in rates[i:]]
                print(f"[vllm-mobo] SLOs violated at rate {per_rate[-1]['request_rate']}: rates {skipped} not run",
                      flush=True)
                break
            per_rate.append(measure_rate(spec, server, model_id, requests, rate, i, tokenizer))
        resolved = resolved_from_log(server.log_path)
    finally:
        if server is not None:
            server.stop()
    headline = select_headline(per_rate, slo)
    measurements = {k: v for k, v in headline.items() if k != "energy"}
    measurements.update(
        slo=slo, slo_as_constraint=bool(online.get("slo_as_constraint", True)) and bool(slo),
        rates=[{k: v for k, v in m.items() if k != "energy"} for m in per_rate], rates_not_run=skipped,
        rate_selection="highest rate meeting the SLOs" if slo else "highest rate",
    )
    return {
        "measurements": measurements,
        "energy": headline["energy"],
        "energy_per_rate": [{"request_rate": m["request_rate"], **m["energy"]} for m in per_rate],
        "timing": {"engine_init_s": startup_s, "warmup_s": t_warm - t_ready,
                   "measured_s": sum(m["energy_window_s"] for m in per_rate), "total_s": time.perf_counter() - t_start},
        "resolved_engine_args": resolved,
        "server": {"command": server.cmd, "port": server.port, "port_notes": port_notes},
    }


#: Values the engine prints at start-up ("Initializing a V1 LLM engine ... with config: ..."), as engine args.
_LOG_FIELDS = {"enable_prefix_caching": "enable_prefix_caching", "enable_chunked_prefill": "enable_chunked_prefill",
               "tensor_parallel_size": "tensor_parallel_size", "pipeline_parallel_size": "pipeline_parallel_size",
               "max_seq_len": "max_model_len", "dtype": "dtype"}


def resolved_from_log(log_path: Path) -> dict:
    """The engine settings the server resolved, read from its start-up log (the server runs in another process,
    so ``LLM.llm_engine.vllm_config`` is out of reach): the engine's config line, and the scheduler's
    ``max_num_batched_tokens`` line. Fields this vLLM version does not print are absent."""
    import re

    text = Path(log_path).read_text(errors="replace") if Path(log_path).exists() else ""
    out: dict = {}
    line = next((l for l in text.splitlines() if "with config:" in l), "")
    for field, name in _LOG_FIELDS.items():
        m = re.search(rf"\b{field}=([^,\s]+)", line)
        if m:
            v = m.group(1)
            out[name] = {"True": True, "False": False}.get(v, int(v) if v.isdigit() else v)
    m = re.search(r"max_num_batched_tokens=(\d+)", text)
    if m:
        out["max_num_batched_tokens"] = int(m.group(1))
    return out


def _raise_on_signal(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through run()'s finally: the server group is stopped


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, _raise_on_signal)
    try:
        result = run(spec)
    except BenchmarkFailure as exc:
        print(f"[vllm-mobo] FAILED ({exc.kind}): {exc.reason}", flush=True)
        result = {"failure": exc.to_dict()}
    write_json_atomic(result_path, result)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
