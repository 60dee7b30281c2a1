"""How one server's windows at a constant rate change over its life (with or without overload in between).

For each named configuration of a config in online mode: one API server (as the online worker starts it), its
warm-up, then ``--windows`` timed windows at ``--rate`` one after the other, each of fresh requests (the worker's
own window, :func:`vllm_mobo.measure.online.measure_rate`, with the config's ``min_window_s`` and cool-down).
With ``--overload RATE --overload-windows N``, N windows at RATE (a capacity search's failing steps) come
between the first and the second half. Prints per window p99 and p90 TTFT, p99 TPOT and J/output token
(ESTIMATED on the CPU build), then the first half of the windows at ``--rate`` against the second; ``--csv``
is rewritten after every window. ``vllm-default`` names vLLM's default configuration::

    .venv/bin/python benchmarks/server_age.py benchmarks/configs/cpu_online3_table.yaml OUT \\
        seqs32-mbt8192-chunk1 vllm-default --rate 8 --windows 12 --csv OUT/server-age.csv

This is why capacity mode measures the target rates first (the worker's docstring): a window's figures depend
on how long its server has been serving. Cores: nothing else may run beside it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import pandas as pd

from vllm_mobo.config import load_config
from vllm_mobo.engine_args import serve_parser
from vllm_mobo.measure import online
from vllm_mobo.measure.load import load_tokenizer, run_load, sample_requests
from vllm_mobo.measure.model import write_model_dir
from vllm_mobo.measure.runner import build_spec, worker_environment
from vllm_mobo.measure.server import start_server
from vllm_mobo.measure.workload import WARMUP_SEED_OFFSET
from vllm_mobo.records import candidate_name
from vllm_mobo.search.plan import platform_for, valid_and_skipped

COLUMNS = ["ttft_ms_p99", "ttft_ms_p90", "tpot_ms_p99", "joules_per_output_token", "window_s"]


def windows(config: dict, name: str, candidate: dict, model_dir: Path, plan: list[float], log_dir: Path,
            rows: list[dict], csv: Path | None) -> None:
    """One window per rate of ``plan`` on one fresh server of ``candidate``, after its warm-up; each window's
    row is appended to ``rows`` (and ``csv`` rewritten) as it ends."""
    spec = build_spec(config, {"name": name, "config": candidate}, str(model_dir))
    spec["cpu_kvcache_space_gib"] = config["benchmark"].get("cpu_kvcache_space_gib", 1)
    spec["server_log"] = str(log_dir / f"{name}-server.log")
    server, _, _ = start_server(spec, serve_parser(), env=worker_environment(spec))
    try:
        load = online.Load(spec, server, load_tokenizer(spec["model"]))
        warm = sample_requests(spec, count=spec["warmup_prompts"], seed_offset=WARMUP_SEED_OFFSET)
        run_load(load.base_url, spec["model"], warm, float("inf"), {}, seed=0, tokenizer=load.tokenizer)
        for i, rate in enumerate(plan):
            m = online.measure_rate(spec, load, rate)
            rows.append({"configuration": name, "window": i, "request_rate": rate,
                         **{k: m[k] for k in COLUMNS}, "energy": m["energy"]["provenance"]})
            if csv:
                pd.DataFrame(rows).to_csv(csv, index=False)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("out", type=Path)
    ap.add_argument("candidates", nargs="+", help="configuration names of the config's space")
    ap.add_argument("--rate", type=float, default=8.0, help="requests/s of every window (default 8)")
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--overload", type=float, help="requests/s of the windows between the halves")
    ap.add_argument("--overload-windows", type=int, default=0)
    ap.add_argument("--csv", type=Path)
    a = ap.parse_args(argv)
    if a.overload_windows and not a.overload:
        raise SystemExit("--overload-windows needs --overload RATE")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # unwinds: the server is stopped
    config = load_config(a.config)
    if config["benchmark"]["mode"] != "online":
        raise SystemExit(f"benchmark.mode must be online, got {config['benchmark']['mode']!r}")
    _, valid, _ = valid_and_skipped(config, platform_for(config))
    by_name = {candidate_name(c): c for c in [{}, *valid]}
    unknown = [n for n in a.candidates if n not in by_name]
    if unknown:
        raise SystemExit(f"not valid configurations of the config's search space: {unknown}")
    a.out.mkdir(parents=True, exist_ok=True)
    model_dir = a.out / "model"
    if not (model_dir / "config.json").exists():
        write_model_dir(config["workload"]["model"], model_dir)
    half = a.windows // 2
    plan = [a.rate] * half + [a.overload] * a.overload_windows + [a.rate] * (a.windows - half)
    rows = []
    for name in a.candidates:
        windows(config, name, by_name[name], model_dir, plan, a.out, rows, a.csv)
    frame = pd.DataFrame(rows)
    print(frame.round(4).to_string(index=False))
    frame = frame[frame.request_rate == a.rate].copy()
    frame["half"] = ["first" if w < half else "second" for w in frame.window]
    print(f"\nmedian per half of each server's {a.windows} windows at {a.rate:g} req/s "
          f"(J/token {frame.energy.iloc[0].upper() if frame.energy.iloc[0] != 'measured' else 'measured'}):")
    print(frame.groupby(["configuration", "half"])[COLUMNS[:4]].median().round(4).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
