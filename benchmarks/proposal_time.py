"""Seconds per proposal at 50 observations, per strategy: the optimiser's own time, no engine.

For each strategy (the command line's, default every registered one) and each search-space preset of
``src/vllm_mobo/resources/search_spaces.yaml`` (``--spaces``, default ``seed`` and ``gpu``), one call of
:func:`vllm_mobo.search.optimizer.propose.propose_batch` is timed: a later iteration (not the shared initial
design), a batch of ``--batch`` (4) picked from every unevaluated valid configuration of the space on the platform
(``--device``/``--num-devices``: CUDA, 2 devices, as the lent ``nvidia-h200-x2`` kind), after ``--observations``
(50) distinct valid configurations with SYNTHETIC objective values. The figure is the median (and range) over
``--repeats`` calls, each with its own search seed; the first call of each strategy warms imports and is not timed.

The synthetic objectives (made-up numbers, not measurements, 2 to 4 of them with ``--objectives``) are smooth
functions of the encoded configuration with 5% lognormal noise; about 10% of the observations are failures, so the
feasibility models are fitted as in a real search. A strategy's time depends on the observations only through
their number and the space, not on the numbers themselves.

Time depends on the machine and its load: run it on the machine kind the target is about, with its cores free
(the load average is printed beside the figures)::

    .venv/bin/python benchmarks/proposal_time.py                      # every strategy, seed and gpu spaces
    .venv/bin/python benchmarks/proposal_time.py qlognehvi ehvi --repeats 5 --out results/proposal_time.csv

A strategy whose optional dependency is missing, or which cannot take the number of objectives, is skipped with a
message.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from vllm_mobo.config import search_space_presets
from vllm_mobo.records import candidate_name
from vllm_mobo.search.optimizer.observations import Observation
from vllm_mobo.search.optimizer.propose import propose_batch
from vllm_mobo.search.optimizer.strategies import REQUIREMENTS, STRATEGIES
from vllm_mobo.search.space import Platform, SearchSpace

DIRECTIONS = ["maximize", "minimize", "minimize", "minimize"]


def synthetic_observations(space: SearchSpace, valid: list[dict], n: int, n_objectives: int,
                           rng: np.random.Generator) -> list[Observation]:
    """``n`` distinct valid configurations with SYNTHETIC values: a random smooth function of the encoding per
    objective (positive, log-linear with one interaction), 5% noise, ~10% failures."""
    X = space.encode(valid)
    idx = rng.choice(len(valid), size=min(n, len(valid)), replace=False)
    w = rng.normal(0, 1, size=(n_objectives, X.shape[1]))
    out = []
    for i in idx:
        x = X[i]
        name = candidate_name(valid[i])
        if rng.random() < 0.1:
            out.append(Observation(name, valid[i], False, None))
            continue
        logs = w @ x + 0.5 * x[0] * x[-1] + rng.normal(0, 0.05, n_objectives)
        out.append(Observation(name, valid[i], True, tuple(float(v) for v in np.exp(logs)),
                               cost_j=float(np.exp(1 + x.sum() / len(x)))))
    return out


def time_strategy(strategy: str, space: SearchSpace, valid: list[dict], obs: list[Observation],
                  directions: list[str], batch: int, seed: int) -> float:
    t0 = time.perf_counter()
    p = propose_batch(space, valid, obs, directions, iteration=12, initial_design=5, include_vllm_default=True,
                      batch_size=batch, budget=len(obs) + 100, seed=seed, strategy=strategy)
    elapsed = time.perf_counter() - t0
    if len(p["candidates"]) != batch:
        raise RuntimeError(f"{strategy} proposed {len(p['candidates'])} candidates, not {batch}: {p['reason']}")
    return elapsed


def problem(strategy: str, n_objectives: int) -> str | None:
    """Why ``strategy`` cannot be timed here, or None."""
    if strategy not in STRATEGIES:
        return f"unknown (registered: {', '.join(STRATEGIES)})"
    try:
        if strategy in REQUIREMENTS:
            REQUIREMENTS[strategy]()
        from vllm_mobo.search.optimizer.strategies import get_strategy

        get_strategy(strategy, n_objectives)
    except (ImportError, ValueError) as err:
        return str(err)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("strategies", nargs="*", help="strategies to time (default: every registered one)")
    ap.add_argument("--spaces", default="seed,gpu", help="search-space presets, comma-separated")
    ap.add_argument("--observations", type=int, default=50)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--objectives", type=int, default=2, choices=[2, 3, 4])
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per strategy and space (median reported)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--num-devices", type=int, default=2)
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic observations")
    ap.add_argument("--out", help="also write the figures to this CSV file")
    a = ap.parse_args(argv)
    strategies = a.strategies or list(STRATEGIES)
    presets = search_space_presets()
    directions = DIRECTIONS[: a.objectives]
    platform = Platform(a.device, a.num_devices, a.max_model_len)
    load = os.getloadavg()
    print(f"# seconds per proposal (batch {a.batch}) after {a.observations} SYNTHETIC observations, "
          f"{a.objectives} objectives, median of {a.repeats}; {os.cpu_count()} cores, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; platform {platform.device} x{platform.num_devices}", flush=True)
    rows = []
    for name in a.spaces.split(","):
        if name not in presets:
            print(f"unknown space preset {name!r}; presets: {', '.join(presets)}", file=sys.stderr)
            return 2
        space = SearchSpace(presets[name]["space"])
        valid = space.split_valid(platform)[0]
        obs = synthetic_observations(space, valid, a.observations, a.objectives, np.random.default_rng(a.seed))
        print(f"## space {name}: {len(space)} points, {len(valid)} valid on the platform, {len(obs)} observed "
              f"({sum(not o.ok for o in obs)} failed)", flush=True)
        for s in strategies:
            why = problem(s, a.objectives)
            if why:
                print(f"{s:12s} SKIPPED: {why}", flush=True)
                continue
            time_strategy(s, space, valid, obs, directions, a.batch, seed=1000)  # warm-up: imports, compilation
            times = [time_strategy(s, space, valid, obs, directions, a.batch, seed=r) for r in range(a.repeats)]
            med = statistics.median(times)
            rows.append({"space": name, "strategy": s, "observations": len(obs), "batch": a.batch,
                         "objectives": a.objectives, "repeats": a.repeats, "median_s": med, "min_s": min(times),
                         "max_s": max(times), "load_average_1min": load[0]})
            print(f"{s:12s} {med:8.2f} s per proposal  [{min(times):.2f}, {max(times):.2f}]", flush=True)
    if a.out and rows:
        import pandas as pd

        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        pd.DataFrame(rows).to_csv(a.out, index=False)
        print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
