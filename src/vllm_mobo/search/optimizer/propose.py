"""One iteration of the search: from every observation so far to the next batch of candidates.

Iteration 0 is the same for every strategy: vLLM's default configuration (the baseline) plus a maximin
space-filling design over the valid configurations. Later iterations are the chosen strategy's
(:mod:`.strategies`); the default ``qlognehvi`` fits one BoTorch GP per objective on log objectives (and per modelled
SLO) and picks the batch by BoTorch's sequential greedy qLogNEHVI x P(feasible), scored on every unevaluated valid
configuration. Every strategy picks only unevaluated valid configurations, distinct within a
batch, at most ``batch_size`` and never past the budget. The same seed and the same observations give the same
candidates.
"""

from __future__ import annotations

import numpy as np

from ...records import VLLM_DEFAULT, candidate_name
from ..space import SearchSpace
from .design import maximin_design
from .observations import Observation, encode_observed
from .state import SearchState, candidate
from .strategies import MODEL_BASED, get_strategy


def initial_size(n_valid: int, initial_design: int, include_vllm_default: bool, budget: int) -> int:
    """Evaluations iteration 0 plans: the baseline plus the maximin design, within the budget."""
    return min(budget, int(include_vllm_default) + min(initial_design, n_valid))


def propose_batch(
    space: SearchSpace,
    valid: list[dict],
    observations: list[Observation],
    directions: list[str],
    *,
    iteration: int,
    initial_design: int,
    include_vllm_default: bool,
    batch_size: int,
    budget: int,
    seed: int,
    strategy: str = "qlognehvi",
    parego_rho: float = 0.05,
    cost_cooling: bool = True,
    noise: dict | None = None,
) -> dict:
    """Return ``{"candidates": [{"name", "config", "score", "why", ...}], "stop": bool, "reason": str,
    "best_ehvi": float|None, "relative_ehvi": float|None, "hypervolume": float|None, ...}``.

    ``strategy`` is one of :data:`.strategies.STRATEGIES`; ``parego_rho`` and ``cost_cooling`` are the settings of
    ``parego`` and ``ehvi-energy``; ``noise`` that of ``qlognehvi``: known variances of one measurement on the log
    scale, ``{"objectives": [var or None per objective], "constraints": {slo metric: var}}`` (:mod:`.noise`), None to
    infer them. An unknown strategy, ``optuna`` without Optuna installed, or a 2-objective strategy given another
    number of objectives raises at once."""
    run = get_strategy(strategy, len(directions))
    rng = np.random.default_rng([seed, iteration])
    evaluated = {o.name for o in observations}
    remaining = [c for c in valid if candidate_name(c) not in evaluated]
    n_left = budget - len(observations)
    result = {"iteration": iteration, "strategy": strategy, "candidates": [], "stop": False, "reason": "",
              "best_ehvi": None, "relative_ehvi": None, "hypervolume": None}
    if n_left <= 0:
        return {**result, "stop": True, "reason": f"budget of {budget} evaluations reached"}
    if not remaining and not (iteration == 0 and include_vllm_default):
        return {**result, "stop": True, "reason": "every valid configuration has been evaluated"}

    if iteration == 0:
        picks = []
        if include_vllm_default:
            picks.append({"name": VLLM_DEFAULT, "config": {}, "score": None, "why": "vLLM's default configuration (baseline)"})
        n = min(initial_design, n_left - len(picks), len(remaining))
        idx = maximin_design(space.encode(remaining), n, rng)
        picks += [candidate(remaining[i], "space-filling initial design (maximin)") for i in idx]
        return {**result, "candidates": picks, "reason": "initial design"}

    n = min(batch_size, n_left, len(remaining))
    if strategy in MODEL_BASED and sum(o.ok for o in observations) < 2:
        why = "fewer than 2 successful runs: space-filling"
        idx = maximin_design(space.encode(remaining), n, rng, taken=encode_observed(space, observations))
        return {**result, "candidates": [candidate(remaining[i], why) for i in idx], "reason": why}

    state = SearchState(space=space, remaining=remaining, observations=observations, directions=directions,
                        iteration=iteration, seed=seed, budget=budget, rng=rng,
                        n_initial=initial_size(len(valid), initial_design, include_vllm_default, budget),
                        options={"parego_rho": parego_rho, "cost_cooling": cost_cooling, "noise": noise})
    picks, info = run(state, n)
    names = [p["name"] for p in picks]
    if len(picks) != n or len(set(names)) != n or set(names) & evaluated:  # every strategy's contract
        raise RuntimeError(f"strategy {strategy!r} proposed {names} for {n} new distinct configurations")
    return {**result, **info, "candidates": picks}
