"""The benchmark worker for online (serving) mode: run in its own process by :mod:`.runner`.

``python -m vllm_mobo.measure.online SPEC.json RESULT.json``:

1. starts vLLM's OpenAI-compatible API server (``python -m vllm.entrypoints.openai.api_server``; the ``vllm``
   command is missing on the CPU build) with the candidate's engine arguments on a free loopback port, through
   :mod:`.supervisor` (a session of its own inside the runner's attempt, so that the runner stops it even if this
   worker is killed), its output in ``spec["server_log"]``;
2. waits for ``GET /health``; a server that exits or is not healthy within ``online.server_start_timeout_s`` is a
   failed candidate, with the tail of its log as the reason;
3. sends a warm-up batch (not measured), then measures rates on that one server (see below), each in one timed
   window driven by vLLM's own load generator, the ``benchmark`` coroutine of ``vllm.benchmarks.serve`` (Poisson
   arrivals, or all at once for ``inf``), with the workload's prompts as token ids;
4. stops the server with its engine processes (SIGTERM, then SIGKILL after a grace period), also on failure and
   on SIGTERM/SIGINT, and writes RESULT.json: the measurements, or ``{"failure": {...}}`` for a known failure.

**A window** (:func:`measure_rate`): after ``cooldown_s``, the energy meters
(:class:`~vllm_mobo.measure.energy.EnergySession` rooted at the server's PID, so the CPU/RAM estimates attribute the
server's process tree) run over calls of the load generator until the calls have lasted ``min_window_s``
(``benchmark.min_window_s``, passed by the runner; 0 when a spec lacks it): at a finite rate the first call holds
``max(num_prompts, ceil(rate x min_window_s))`` requests (vLLM sends the last one at ``count / rate`` s, so one
call is enough); all at once (``inf``), batches of ``num_prompts`` follow each other. Every call's requests are
fresh ones from the workload's generator (a new seed per call, never the warm-up's). Each rate records its window
(``window_s``, the meters' window; ``elapsed_s``, the load itself), its requests and calls (``batches``). Python
start-up, vLLM imports, the server start, the warm-up and the first call's prompts are outside every window (the
prompts of further calls are made inside it: milliseconds each).

A rate *meets the SLOs* when no request failed and the p99 TTFT and p99 TPOT are within ``online.slo``.

**Rates without capacity** (``online.capacity.enabled: false``): the ``request_rates`` from low to high. The
headline metrics (those the optimiser and tables read) are the highest rate that meets the SLOs; without SLOs, the
highest rate. With SLOs, rates above the first violating one are not run. If even the lowest rate violates them,
the headline is that rate with ``slo_met: false``.

**Capacity** (``online.capacity.enabled: true``, SLOs required): first each of ``request_rates`` (the target
rates) is measured from low to high on the fresh server, until one violates the SLOs (the rates above it are
entered as not sustainable, unmeasured); then :mod:`.capacity` searches the highest rate that meets the SLOs (a
geometric ramp from ``start_rate``, then bisection, bounded by ``max_steps`` and ``max_time_s``), one window per
step. Targets come first because a server's later windows are slower than its first ones (on the CPU build p99
TTFT grew over a server's windows even at a constant 8 req/s, without overload): measured first, every
candidate's targets follow the same warm-up, whatever its capacity search then does. The headline is the step at
the capacity (``slo_met: false`` and capacity 0 when ``start_rate`` already violates the SLOs); metrics.json adds
``capacity_requests_per_s``, ``capacity_output_tokens_per_s`` (also ``_per_device``),
``joules_per_output_token_at_capacity``, the bracket and how the search ended, every step
(``capacity_steps``), every target rate (``rates``) and the first target rate's figures as
``joules_per_output_token_at_target``, ``ttft_ms_p99_at_target`` and ``tpot_ms_p99_at_target``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..engine_args import devices_used, serve_parser
from ..io import write_json_atomic
from . import capacity as cap
from .capacity import rate_label, sorted_rates
from .energy import EnergySession, summarize
from .energy.timeline import TIMELINE_TAIL_S, TimelineSampler
from .failure import BenchmarkFailure
from .load import (latency_metrics, load_tokenizer, merge_results, run_load, sample_requests, slo_check,
                   window_requests)
from .server import HOST, Server, _tail, resolved_from_log, start_server
from .workload import WARMUP_SEED_OFFSET, window_seed_offset

#: Calls of the load generator one window holds at most: a guard against calls that return at once.
MAX_WINDOW_CALLS = 10_000


class Load:
    """The load generator pointed at one running server; every batch of requests it makes is fresh (a seed of its
    own, never the warm-up's)."""

    def __init__(self, spec: dict, server: Server, tokenizer=None, timeline: TimelineSampler | None = None):
        self.spec, self.server, self.tokenizer = spec, server, tokenizer
        self.base_url = f"http://{HOST}:{server.port}"
        self.batches = 0
        self.timeline = timeline or TimelineSampler([], 0.0)  # marks the phases of the server's power timeline

    def requests(self, count: int) -> tuple[list, int]:
        """``count`` fresh requests and their seed offset."""
        offset = window_seed_offset(self.batches)
        self.batches += 1
        return sample_requests(self.spec, count=count, seed_offset=offset), offset

    def send(self, batch: tuple[list, int], rate: float, goodput: dict) -> dict:
        """One call of vLLM's load generator with ``batch`` at ``rate``; its result."""
        requests, offset = batch
        return run_load(self.base_url, self.spec["model"], requests, rate, goodput,
                        seed=self.spec["workload"].get("seed", 0) + offset, tokenizer=self.tokenizer)


def measure_rate(spec: dict, load: Load, rate: float) -> dict:
    """One timed window at ``rate`` (see the module docstring) with the energy meters over exactly that window;
    the metrics of that rate, its energy under ``energy``."""
    online = spec["online"]
    slo = online.get("slo") or {}
    goodput = {name: slo[key] for name, key in (("ttft", "ttft_ms_p99"), ("tpot", "tpot_ms_p99")) if slo.get(key)}
    min_window_s = float(spec.get("min_window_s") or 0.0)
    num_prompts = online.get("num_prompts") or spec["workload"]["num_prompts"]
    if spec.get("cooldown_s"):
        with load.timeline.phase("cooldown"):
            time.sleep(spec["cooldown_s"])
    meters = EnergySession.from_config(spec["energy"], root_pid=load.server.pid, gpu_indices=spec.get("gpu_indices"))
    batch = load.requests(window_requests(rate, min_window_s, num_prompts))  # made before the meters start
    print(f"[vllm-mobo] rate {rate_label(rate)} req/s: {len(batch[0])} requests, window >= {min_window_s:g} s",
          flush=True)
    results, sent = [], 0
    meters.start()
    t0 = time.perf_counter()
    with load.timeline.phase("window", f"{rate:g} req/s"):
        while True:
            results.append(load.send(batch, rate, goodput))
            sent += len(batch[0])
            loaded_s = sum(r["duration"] for r in results)
            if loaded_s >= min_window_s or len(results) >= MAX_WINDOW_CALLS:
                break
            # a further call inside the window: num_prompts more at once, or the rest of the window at the rate
            batch = load.requests(window_requests(rate, min_window_s - loaded_s,
                                                  num_prompts if math.isinf(rate) else 1))
    window_s = time.perf_counter() - t0
    readings = meters.stop()
    energy = summarize(readings)
    result = merge_results(results)

    completed, failed = int(result["completed"]), int(result.get("failed", sent - result["completed"]))
    if completed == 0:
        errors = [e for e in result.get("errors", []) if e]
        tail = _tail(load.server.log_path)
        raise BenchmarkFailure("requests_failed", f"all {sent} requests failed at rate {rate_label(rate)}: "
                               f"{(errors or ['no error message'])[0].strip().splitlines()[-1][:300]}", tail)
    duration = float(result["duration"])
    out_tokens, in_tokens = int(result["total_output_tokens"]), int(result["total_input_tokens"])
    m = {
        "request_rate": rate_label(rate),
        "num_requests": sent,
        "batches": len(results),
        "completed_requests": completed,
        "failed_requests": failed,
        "prompt_tokens": in_tokens,
        "output_tokens": out_tokens,
        "elapsed_s": duration,
        "window_s": window_s,
        "min_window_s": min_window_s,
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
    print(f"[vllm-mobo] rate {rate_label(rate)}: {sent} requests in {len(results)} call(s), window {window_s:.1f} s, "
          f"{m['output_tokens_per_s']:.1f} out tok/s, TTFT p99 {m['ttft_ms_p99']:.1f} ms, TPOT p99 "
          f"{m['tpot_ms_p99']:.2f} ms, {m['joules_per_output_token']:.4g} J/out token, "
          f"SLOs {'met' if m['slo_met'] else 'violated'}", flush=True)
    return m


def select_headline(per_rate: list[dict], slo: dict) -> dict:
    """The highest rate that met the SLOs (the highest rate without SLOs); else the lowest rate."""
    met = [m for m in per_rate if m["slo_met"]] if slo else per_rate
    return (met or per_rate[:1])[-1]


def _without_energy(m: dict) -> dict:
    return {k: v for k, v in m.items() if k != "energy"}


def measure_rates(spec: dict, load: Load) -> dict:
    """``request_rates`` from low to high; the headline is the highest rate that meets the SLOs."""
    online = spec["online"]
    slo = online.get("slo") or {}
    per_rate, skipped = [], []
    rates = sorted_rates(online["request_rates"])
    for i, rate in enumerate(rates):
        if slo and per_rate and not per_rate[-1]["slo_met"]:
            skipped = [rate_label(r) for r in rates[i:]]
            print(f"[vllm-mobo] SLOs violated at rate {per_rate[-1]['request_rate']}: rates {skipped} not run",
                  flush=True)
            break
        per_rate.append(measure_rate(spec, load, rate))
    headline = select_headline(per_rate, slo)
    measurements = {**_without_energy(headline), "rates": [_without_energy(m) for m in per_rate],
                    "rates_not_run": skipped,
                    "rate_selection": "highest rate meeting the SLOs" if slo else "highest rate"}
    return {"measurements": measurements, "energy": headline["energy"],
            "energy_per_rate": [{"request_rate": m["request_rate"], **m["energy"]} for m in per_rate],
            "measured_s": sum(m["window_s"] for m in per_rate)}


def measure_capacity(spec: dict, load: Load) -> dict:
    """The target rates on the fresh server, then the capacity search (:mod:`.capacity`) on it."""
    online = spec["online"]
    settings = cap.Settings.from_config(online["capacity"])
    targets, not_run = cap.measure_targets(lambda rate: measure_rate(spec, load, rate), online["request_rates"])
    if not_run:
        print(f"[vllm-mobo] target rates {not_run} not run: not sustainable (a lower target rate violated the SLOs)",
              flush=True)
    print(f"[vllm-mobo] capacity search: {asdict(settings)}", flush=True)
    outcome = cap.search(lambda rate: measure_rate(spec, load, rate), settings)
    print(f"[vllm-mobo] capacity {outcome.capacity:.4g} requests/s, bracket [{outcome.low}, {outcome.high}]: "
          f"{cap.ENDS[outcome.end]}", flush=True)
    headline = outcome.best or outcome.steps[0]
    measured = [*(t for t in targets if t["measured"]), *outcome.steps]
    measurements = {
        **{k: v for k, v in _without_energy(headline).items() if k not in ("step", "rate", "phase", "step_s")},
        **cap.capacity_metrics(outcome, devices_used(spec["engine_args"])),
        **cap.at_target_metrics(targets, online["request_rates"][0]),
        "capacity_settings": asdict(settings),
        "capacity_steps": [_without_energy(s) for s in outcome.steps],
        "rates": [_without_energy(t) for t in targets], "rates_not_run": not_run,
        "rate_selection": "capacity under the SLOs (benchmark.online.capacity)",
    }
    return {"measurements": measurements, "energy": headline["energy"],
            "energy_per_rate": [{"request_rate": m["request_rate"], "phase": m.get("phase", "target"), **m["energy"]}
                                for m in measured],
            "measured_s": sum(m["window_s"] for m in measured)}


def run(spec: dict, server_env: dict | None = None) -> dict:
    online = spec["online"]
    slo = online.get("slo") or {}
    parser = None if spec.get("server_command") else serve_parser()
    t_start = time.perf_counter()
    server = None
    try:
        server, startup_s, port_notes = start_server(spec, parser, env=server_env)
        print(f"[vllm-mobo] API server healthy after {startup_s:.1f} s", flush=True)
        t_ready = time.perf_counter()
        timeline = TimelineSampler.from_config(spec["energy"], root_pid=server.pid,
                                               gpu_indices=spec.get("gpu_indices") or None)
        load = Load(spec, server, None if spec.get("server_command") else load_tokenizer(spec["model"]),
                    timeline.start())
        warm = sample_requests(spec, count=spec["warmup_prompts"], seed_offset=WARMUP_SEED_OFFSET)
        if warm:
            with timeline.phase("warmup"):
                run_load(load.base_url, spec["model"], warm, float("inf"), {}, seed=0, tokenizer=load.tokenizer)
        t_warm, started_at = time.perf_counter(), time.time()
        if (online.get("capacity") or {}).get("enabled"):
            body = measure_capacity(spec, load)
        else:
            body = measure_rates(spec, load)
        power_timeline = timeline.stop(tail_s=TIMELINE_TAIL_S)
        resolved = resolved_from_log(server.log_path)
    finally:
        if server is not None:
            server.stop()
    body["measurements"].update(slo=slo, slo_as_constraint=bool(online.get("slo_as_constraint", True)) and bool(slo))
    return {
        "measurements": body["measurements"],
        "energy": body["energy"],
        "energy_per_rate": body["energy_per_rate"],
        "timing": {"engine_init_s": startup_s, "warmup_s": t_warm - t_ready, "measured_s": body["measured_s"],
                   "total_s": time.perf_counter() - t_start, "window_started_at": started_at},
        "resolved_engine_args": resolved,
        "server": {"command": server.cmd, "port": server.port, "port_notes": port_notes},
        "power_timeline": power_timeline,
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
