"""The benchmark worker for offline batch mode: run in its own process by :mod:`.runner`.

``python -m vllm_mobo.measure.offline SPEC.json RESULT.json`` builds ``vllm.LLM`` with the candidate's engine
arguments, generates a warm-up batch (not timed), waits ``cooldown_s``, then times one window with the energy
meters running over exactly that window: ``generate`` over the workload (``workload.num_prompts`` requests) and,
while the window is shorter than ``min_window_s``, over further full batches from the same generator with fresh
seeds, back to back. It writes the raw measurements to RESULT.json: the window (``window_s``, also ``elapsed_s``),
the batches and requests it held, ``min_window_s`` and ``detokenize``. vLLM spawns its engine and worker
processes, hence the ``__main__`` guard.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..io import write_json_atomic
from .energy import EnergySession, summarize
from .energy.timeline import TIMELINE_TAIL_S, TimelineSampler
from .workload import WARMUP_SEED_OFFSET, make_requests, window_seed_offset

#: NVTX ranges around the warm-up and the whole timed window (every batch); profiling reads the window from them.
NVTX_WARMUP = "vllm-mobo:warmup"
NVTX_MEASURE = "vllm-mobo:measure"

#: Engine settings vLLM resolved, read back after start-up: (section of VllmConfig, attribute, engine-arg name).
RESOLVED_FIELDS = [
    ("scheduler_config", "max_num_seqs", "max_num_seqs"),
    ("scheduler_config", "max_num_batched_tokens", "max_num_batched_tokens"),
    ("scheduler_config", "enable_chunked_prefill", "enable_chunked_prefill"),
    ("scheduler_config", "chunked_prefill_enabled", "enable_chunked_prefill"),
    ("cache_config", "block_size", "block_size"),
    ("cache_config", "enable_prefix_caching", "enable_prefix_caching"),
    ("parallel_config", "tensor_parallel_size", "tensor_parallel_size"),
    ("parallel_config", "pipeline_parallel_size", "pipeline_parallel_size"),
    ("model_config", "max_model_len", "max_model_len"),
    ("model_config", "dtype", "dtype"),
]


def resolved_engine_args(llm) -> dict:
    """The values vLLM actually used (its defaults filled in), as far as this vLLM version exposes them."""
    engine = getattr(llm, "llm_engine", None)
    vconf = getattr(engine, "vllm_config", None)
    out = {}
    for section, attr, name in RESOLVED_FIELDS:
        value = getattr(getattr(vconf, section, None), attr, None)
        if value is not None and name not in out:
            out[name] = value if isinstance(value, (bool, int, float)) else str(value)
    return out


def nvtx_range(name: str):
    """An NVTX range (``vllm-mobo:warmup``, ``vllm-mobo:measure``) that Nsight Systems profiles are cut to
    (vllm_mobo.profiling); a no-op context without CUDA (the CPU build) and nearly free when no profiler listens."""
    import contextlib

    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.nvtx.range(name)
    except Exception:  # no NVTX in this torch build
        pass
    return contextlib.nullcontext()


def run(spec: dict) -> dict:
    """Start the engine of ``spec``, measure it once (:func:`measure`) and return the result."""
    from vllm import LLM

    t_start = time.perf_counter()
    extra = {}
    if spec.get("cuda_profiler"):
        # Under Nsight Systems (vllm_mobo.profiling): every engine worker calls cudaProfilerStart/Stop around the
        # measured window, and nsys flushes each process's CUDA trace at the stop (--flush-on-cudaprofilerstop,
        # on by default), so kernels of workers that vLLM's shutdown later kills are not lost.
        extra["profiler_config"] = {"profiler": "cuda"}
    llm = LLM(model=spec["model"], **spec["engine_args"], **extra)
    engine_init_s = time.perf_counter() - t_start
    print(f"[vllm-mobo] engine ready in {engine_init_s:.1f} s", flush=True)
    return measure(llm, spec, engine_init_s)


def measure(llm, spec: dict, engine_init_s: float) -> dict:
    """Warm up (untimed), cool down (``cooldown_s``), then one timed window (:func:`timed_window`) with the energy
    meters running over exactly that window; the raw measurements, energy, timing and the engine arguments vLLM
    resolved. Output tokens are counted from token ids; with ``detokenize`` false (the default) vLLM does not turn
    them into text, as ``vllm bench throughput --disable-detokenize``."""
    from vllm import SamplingParams

    detokenize = bool(spec.get("detokenize", False))
    min_window_s = float(spec.get("min_window_s") or 0.0)
    t_ready = time.perf_counter()

    def as_inputs(requests):
        prompts = [{"prompt_token_ids": r.prompt_token_ids} for r in requests]
        params = [SamplingParams(max_tokens=r.output_len, min_tokens=r.output_len, ignore_eos=True,
                                 temperature=0.0, detokenize=detokenize) for r in requests]
        return prompts, params

    timeline = TimelineSampler.from_config(spec["energy"], root_pid=os.getpid(),
                                           gpu_indices=spec.get("gpu_indices") or None).start()
    warm = make_requests(spec["workload"], spec["vocab_size"], count=spec["warmup_prompts"],
                         seed_offset=WARMUP_SEED_OFFSET)
    if warm:
        prompts, params = as_inputs(warm)
        with nvtx_range(NVTX_WARMUP), timeline.phase("warmup"):
            llm.generate(prompts, params, use_tqdm=False)
    t_warm = time.perf_counter()
    if spec.get("cooldown_s"):
        print(f"[vllm-mobo] cool-down: {spec['cooldown_s']:g} s before the timed window", flush=True)
        with timeline.phase("cooldown"):
            time.sleep(spec["cooldown_s"])

    def batch(k: int) -> tuple[list, list, list]:
        requests = make_requests(spec["workload"], spec["vocab_size"], seed_offset=window_seed_offset(k))
        return (requests, *as_inputs(requests))

    first = batch(0)  # prepared before the meters start; later batches (milliseconds each) inside the window
    meters = EnergySession.from_config(spec["energy"], root_pid=os.getpid(), gpu_indices=spec.get("gpu_indices") or None)
    print(f"[vllm-mobo] timed window: batches of {len(first[0])} requests until it lasts >= {min_window_s:g} s",
          flush=True)
    if spec.get("cuda_profiler"):
        llm.start_profile()  # returns once every worker has called cudaProfilerStart
    meters.start()
    started_at = time.time()
    t0 = time.perf_counter()
    with nvtx_range(NVTX_MEASURE), timeline.phase("window", "timed window"):
        counts = timed_window(llm, first, batch, min_window_s, t0)
    elapsed = time.perf_counter() - t0
    readings = meters.stop()
    power_timeline = timeline.stop(tail_s=TIMELINE_TAIL_S)
    if spec.get("cuda_profiler"):
        llm.stop_profile()  # each worker's cudaProfilerStop: nsys flushes its CUDA trace now

    n, prompt_tokens, output_tokens = counts["num_requests"], counts["prompt_tokens"], counts["output_tokens"]
    energy = summarize(readings)
    return {
        "measurements": {
            "num_requests": n,
            "batches": counts["batches"],
            "prompt_tokens": prompt_tokens,
            "output_tokens": output_tokens,
            "window_s": elapsed,
            "elapsed_s": elapsed,
            "min_window_s": min_window_s,
            "detokenize": detokenize,
            "output_tokens_per_s": output_tokens / elapsed,
            "total_tokens_per_s": (prompt_tokens + output_tokens) / elapsed,
            "requests_per_s": n / elapsed,
            "energy_j": energy["total_j"],
            "joules_per_output_token": energy["total_j"] / output_tokens,
            "joules_per_token": energy["total_j"] / (prompt_tokens + output_tokens),
            "mean_power_w": energy["total_j"] / elapsed,
        },
        "energy": energy,
        "timing": {"engine_init_s": engine_init_s, "warmup_s": t_warm - t_ready, "measured_s": elapsed,
                   "cooldown_s": float(spec.get("cooldown_s") or 0.0), "window_started_at": started_at},
        "resolved_engine_args": resolved_engine_args(llm),
        "power_timeline": power_timeline,
    }


#: Batches one timed window holds at most, whatever ``min_window_s`` asks: a guard against a ``generate`` that
#: returns at once. The window's time is bounded by ``benchmark.timeout_s`` (the runner kills the worker).
MAX_WINDOW_BATCHES = 10_000


def timed_window(llm, first: tuple, batch, min_window_s: float, t0: float) -> dict:
    """``generate`` over ``first`` (requests, prompts, params), then over further full batches ``batch(1)``,
    ``batch(2)``, ... back to back until ``min_window_s`` seconds have passed since ``t0``; one progress line per
    batch. Returns batches, requests, prompt and output tokens of the whole window."""
    counts = {"batches": 0, "num_requests": 0, "prompt_tokens": 0, "output_tokens": 0}
    current = first
    while True:
        requests, prompts, params = current
        t_batch = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        now = time.perf_counter()
        counts["batches"] += 1
        counts["num_requests"] += len(requests)
        counts["prompt_tokens"] += sum(len(r.prompt_token_ids) for r in requests)
        counts["output_tokens"] += sum(len(o.outputs[0].token_ids) for o in outputs)
        print(f"[vllm-mobo] batch {counts['batches']}: {len(requests)} requests in {now - t_batch:.2f} s; "
              f"window {now - t0:.2f} s of >= {min_window_s:g} s", flush=True)
        if now - t0 >= min_window_s:
            return counts
        if counts["batches"] >= MAX_WINDOW_BATCHES:
            print(f"[vllm-mobo] window ends after {MAX_WINDOW_BATCHES} batches, short of {min_window_s:g} s",
                  flush=True)
            return counts
        current = batch(counts["batches"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    result = run(spec)
    write_json_atomic(result_path, result)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: vLLM's shutdown can hang; the runner kills the process group afterwards.
    os._exit(code)
