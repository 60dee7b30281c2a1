"""The benchmark worker for online (serving) mode: run in its own process by :mod:`.runner`.

``python -m vllm_mobo.measure.online SPEC.json RESULT.json``:

1. starts vLLM's OpenAI-compatible API server (``python -m vllm.entrypoints.openai.api_server``; the ``vllm``
   command is missing on the CPU build) with the candidate's engine arguments on a free loopback port, through
   :mod:`.supervisor` (a session of its own inside the runner's attempt, so that the runner stops it even if this
   worker is killed), its output in ``spec["server_log"]``;
2. waits for ``GET /health``; a server that exits or is not healthy within ``online.server_start_timeout_s`` is a
   failed candidate, with the tail of its log as the reason;
3. sends a warm-up batch (not measured), then, for each request rate in ascending order, drives the server with
   vLLM's own load generator, the ``benchmark`` coroutine of ``vllm.benchmarks.serve`` (Poisson arrivals, or all
   at once for ``inf``), with the workload's prompts as token ids, and meters energy over exactly that call
   (:class:`~vllm_mobo.measure.energy.EnergySession` rooted at the server's PID, so the CPU/RAM estimates attribute the
   server's process tree);
4. stops the server with its engine processes (SIGTERM, then SIGKILL after a grace period), also on failure and
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

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

from ..engine_args import serve_parser
from ..io import write_json_atomic
from .energy import EnergySession, summarize
from .failure import BenchmarkFailure
from .load import latency_metrics, load_tokenizer, run_load, sample_requests, slo_check
from .server import HOST, Server, _tail, resolved_from_log, start_server


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
    parser = None if spec.get("server_command") else serve_parser()
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
