"""One iteration of the search: from every observation so far to the next batch of candidates.

Iteration 0 is a maximin space-filling design over the valid configurations (plus vLLM's default configuration
as the baseline). Later iterations fit one GP per objective on log objectives (minimisation form) and pick the
batch greedily by exact EHVI x P(feasible), scored on every unevaluated valid configuration, conditioning on each
pick by the Kriging believer (the pick's predicted mean is added as an observation, hyperparameters kept).
The same seed and the same observations give the same candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..space import VLLM_DEFAULT, SearchSpace, candidate_name
from .design import maximin_design
from .ehvi import ehvi_2d
from .pareto import hypervolume, pareto_mask, to_minimisation
from .surrogate import FeasibilityModel, ObjectiveModel


@dataclass
class Observation:
    name: str
    config: dict  # the searched arguments ({} for vLLM's default configuration)
    ok: bool
    objectives: tuple[float, ...] | None  # raw objective values, in config order; None when failed
    resolved: dict | None = None  # engine arguments vLLM resolved (fills the knobs vLLM's default leaves unset)


def log_objectives_min(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Objectives as modelled: log of each (all are positive rates or energies), then negated where maximised."""
    values = np.asarray(values, dtype=float)
    if np.any(values <= 0):
        raise ValueError("objective values must be positive to be modelled on a log scale")
    return to_minimisation(np.log(values), directions)


def reference_point(points_min: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Slightly beyond the nadir of ``points_min``: nadir + margin x range (range 1 where it is zero)."""
    lo, hi = points_min.min(axis=0), points_min.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return hi + margin * span


def _encode_observed(space: SearchSpace, obs: list[Observation]) -> np.ndarray:
    merged = [{**{k: v for k, v in (o.resolved or {}).items() if k in space.values}, **o.config} for o in obs]
    return space.encode(merged)


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
    strategy: str = "ehvi",
) -> dict:
    """Return ``{"candidates": [{"name", "config", "score"}], "stop": bool, "reason": str, "best_ehvi": float,
    "relative_ehvi": float|None, "hypervolume": float|None}``."""
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
        picks += [{"name": candidate_name(remaining[i]), "config": remaining[i], "score": None,
                   "why": "space-filling initial design (maximin)"} for i in idx]
        return {**result, "candidates": picks, "reason": "initial design"}

    n = min(batch_size, n_left, len(remaining))
    ok_obs = [o for o in observations if o.ok]
    if strategy == "random" or len(ok_obs) < 2:
        why = "random without replacement" if strategy == "random" else "fewer than 2 successful runs: space-filling"
        if strategy == "random":
            idx = list(rng.choice(len(remaining), size=n, replace=False))
        else:
            idx = maximin_design(space.encode(remaining), n, rng, taken=_encode_observed(space, observations))
        picks = [{"name": candidate_name(remaining[i]), "config": remaining[i], "score": None, "why": why} for i in idx]
        return {**result, "candidates": picks, "reason": why}

    X_ok = _encode_observed(space, ok_obs)
    Y_ok = log_objectives_min(np.array([o.objectives for o in ok_obs]), directions)
    X_all = _encode_observed(space, observations)
    feasible = FeasibilityModel(seed).fit(X_all, np.array([o.ok for o in observations]))
    model = ObjectiveModel(seed).fit(X_ok, Y_ok)

    X_rem = space.encode(remaining)
    p_feasible = feasible.probability(X_rem)
    ref = reference_point(Y_ok)
    current_hv = hypervolume(Y_ok[pareto_mask(Y_ok)], ref)
    result["hypervolume"] = current_hv

    X_train, Y_train = X_ok.copy(), Y_ok.copy()
    front = Y_ok[pareto_mask(Y_ok)]
    chosen: list[int] = []
    picks = []
    for k in range(n):
        mu, sd = model.predict(X_rem)
        score = ehvi_2d(mu, sd, front, ref) * p_feasible
        score[chosen] = -np.inf
        best = int(np.argmax(score))  # first index on ties: deterministic
        if k == 0:
            result["best_ehvi"] = float(score[best])
            result["relative_ehvi"] = float(score[best] / current_hv) if current_hv > 0 else None
        chosen.append(best)
        picks.append({"name": candidate_name(remaining[best]), "config": remaining[best], "score": float(score[best]),
                      "p_feasible": float(p_feasible[best]),
                      "predicted_log_objectives_min": [float(x) for x in mu[best]],
                      "why": "max EHVI x P(feasible)" + (" (Kriging believer)" if k else "")})
        # Kriging believer: pretend the pick returned its predicted mean; keep hyperparameters.
        X_train = np.vstack([X_train, X_rem[best]])
        Y_train = np.vstack([Y_train, mu[best]])
        front = np.vstack([front, mu[best]])
        front = front[pareto_mask(front)]
        model.fit(X_train, Y_train, fixed_kernels=True)
    return {**result, "candidates": picks, "reason": "expected hypervolume improvement"}
