"""Does qlognehvi's screening pass keep the configurations the full-sample pass would pick?

For each search-space preset, number of objectives and SYNTHETIC state (``benchmarks/proposal_time.py``'s
observations: made-up values, not measurements), every unevaluated valid configuration is scored twice on the same
fitted GPs: by the acquisition with ``nehvi.MC_SAMPLES`` QMC samples (the full pass) and with
``nehvi.SCREEN_SAMPLES`` (the screen). Printed per state: where the full pass's best configuration and the worst of
its best 16 and 64 rank in the screen (the screen keeps its best ``nehvi.SCREEN_KEEP``; the greedy picks come from
the best ``nehvi.RESCORE``), the Spearman correlation of the two passes, and the seconds of each (building the
acquisition, then scoring)::

    .venv/bin/python benchmarks/acquisition_screen.py --spaces gpu --objectives 2,3,4 --states 3 --observations 15,50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proposal_time import DIRECTIONS, synthetic_observations  # noqa: E402

from vllm_mobo.config import search_space_presets  # noqa: E402
from vllm_mobo.records import candidate_name  # noqa: E402
from vllm_mobo.search.optimizer import nehvi  # noqa: E402
from vllm_mobo.search.optimizer.gp_models import tensor  # noqa: E402
from vllm_mobo.search.optimizer.observations import reference_point  # noqa: E402
from vllm_mobo.search.optimizer.state import SearchState  # noqa: E402
from vllm_mobo.search.space import Platform, SearchSpace  # noqa: E402


def state_for(space: SearchSpace, valid: list[dict], k: int, n_obs: int, seed: int) -> SearchState:
    obs = synthetic_observations(space, valid, n_obs, k, np.random.default_rng(seed))
    evaluated = {o.name for o in obs}
    return SearchState(space=space, remaining=[c for c in valid if candidate_name(c) not in evaluated],
                       observations=obs, directions=DIRECTIONS[:k], iteration=12, seed=seed, budget=n_obs + 100,
                       n_initial=6, rng=np.random.default_rng(seed))


def passes(state: SearchState, k: int) -> dict:
    """Both passes' log acquisition values (no P(feasible) factor) and times, on one model."""
    X_obs, Y_min, feasible, Xs, Ys, vs, constraints = nehvi._outcomes(state)
    ref = reference_point(Y_min[feasible])
    choices = tensor(state.X_remaining)
    out = {}
    with torch.random.fork_rng():
        torch.manual_seed(state.derived_seed(16))
        t0 = time.perf_counter()
        model = nehvi._fit(state, (Xs, Ys, vs))
        out["fit_s"] = time.perf_counter() - t0
        for name, samples, salt in (("full", nehvi.MC_SAMPLES[k], 17), ("screen", nehvi.SCREEN_SAMPLES, 18)):
            t0 = time.perf_counter()
            acqf = nehvi._acquisition(model, state, k, 4, X_obs, constraints, ref, samples, salt)
            t1 = time.perf_counter()
            out[name] = nehvi._scores(acqf, choices).numpy()
            out[f"{name}_s"] = (t1 - t0, time.perf_counter() - t1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spaces", default="gpu")
    ap.add_argument("--objectives", default="2,3,4")
    ap.add_argument("--observations", default="15,50")
    ap.add_argument("--states", type=int, default=3, help="synthetic states per case")
    a = ap.parse_args(argv)
    presets = search_space_presets()
    print(f"# screen: {nehvi.SCREEN_SAMPLES} samples, keeps {nehvi.SCREEN_KEEP}; full pass: MC_SAMPLES "
          f"{nehvi.MC_SAMPLES}; greedy pool {nehvi.RESCORE}; SYNTHETIC observations", flush=True)
    for name in a.spaces.split(","):
        space = SearchSpace(presets[name]["space"])
        valid = space.split_valid(Platform("cuda", 2, 4096))[0]
        for k in (int(x) for x in a.objectives.split(",")):
            for n_obs in (int(x) for x in a.observations.split(",")):
                for seed in range(a.states):
                    r = passes(state_for(space, valid, k, n_obs, seed), k)
                    rank = np.empty(len(r["screen"]), dtype=int)
                    rank[np.argsort(-r["screen"], kind="stable")] = np.arange(len(rank))
                    best = np.argsort(-r["full"], kind="stable")
                    print(f"{name} ({len(valid) - n_obs} scored) k={k} obs={n_obs} state={seed}: screen rank of the "
                          f"full pass's best {rank[best[0]]}, worst of its best 16 {rank[best[:16]].max()}, of "
                          f"its best 64 {rank[best[:64]].max()}; Spearman {spearmanr(r['full'], r['screen'])[0]:.3f}; "
                          f"seconds: fit {r['fit_s']:.2f}, full {r['full_s'][0]:.2f}+{r['full_s'][1]:.2f}, "
                          f"screen {r['screen_s'][0]:.2f}+{r['screen_s'][1]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
