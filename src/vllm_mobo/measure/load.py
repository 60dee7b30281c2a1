"""vLLM's own load generator (``vllm bench serve``'s ``benchmark`` coroutine) driven with the workload's requests,
how many requests keep a window busy, several calls' results merged into one window's, and the latency
percentiles and SLO check of a result."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import math

import numpy as np

from .workload import make_requests

PERCENTILES = (50, 90, 99)
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")


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


def window_requests(rate: float, seconds: float, minimum: int) -> int:
    """Requests for one call of the load generator that keeps a window at ``rate`` busy for ``seconds``: all at
    once (``inf``), ``minimum``; otherwise at least ``rate x seconds`` (vLLM scales the Poisson arrivals so that the
    last request is sent at ``count / rate`` s) and at least ``minimum``."""
    if math.isinf(rate):
        return max(1, minimum)
    return max(1, minimum, math.ceil(rate * seconds))


_LISTS = ("ttfts", "itls", "output_lens", "errors", "latencies")
_SUMS = ("completed", "total_input_tokens", "total_output_tokens", "duration")


def merge_results(results: list[dict]) -> dict:
    """Several calls' results of the load generator as one: per-request lists joined, counts and durations
    added, goodput weighted by duration (None unless every call has one; ``latencies`` only where every call
    reports them: vLLM 0.26 does not)."""
    if len(results) == 1:
        return results[0]
    merged = {k: sum(r.get(k) or 0 for r in results) for k in _SUMS}
    merged["failed"] = sum(r.get("failed", len(r.get("errors") or []) - r["completed"]) for r in results)
    for k in _LISTS:
        if all(r.get(k) is not None for r in results):
            merged[k] = [x for r in results for x in r[k]]
    goodputs = [r.get("request_goodput") for r in results]
    merged["request_goodput"] = (sum(g * r["duration"] for g, r in zip(goodputs, results)) / merged["duration"]
                                 if None not in goodputs and merged["duration"] > 0 else None)
    return merged
