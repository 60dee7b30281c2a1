"""Strategy ``sobol``: quasi-random search along one scrambled Sobol sequence (Owen scrambling; scipy.stats.qmc.Sobol,
seeded by the search seed) in the encoded unit cube. The sequence continues across iterations (it is fast-forwarded
past one point per evaluation so far); each point is mapped to the nearest unevaluated valid configuration not yet
picked, so nothing repeats."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import qmc

from .observations import nearest_free
from .state import SearchState, candidate


def sobol_engine(d: int, seed: int) -> qmc.Sobol:
    try:
        return qmc.Sobol(d, scramble=True, rng=np.random.default_rng(seed))
    except TypeError:  # scipy < 1.15 names it seed
        return qmc.Sobol(d, scramble=True, seed=np.random.default_rng(seed))


def propose(state: SearchState, n: int) -> tuple[list[dict], dict]:
    X_rem = state.X_remaining
    engine = sobol_engine(X_rem.shape[1], state.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # balance properties want powers of 2: irrelevant here
        engine.fast_forward(len(state.observations))
        points = engine.random(n)
    chosen: list[int] = []
    for p in points:
        chosen.append(nearest_free(p, X_rem, chosen))
    why = "scrambled Sobol point, nearest unevaluated valid configuration"
    return [candidate(state.remaining[i], why) for i in chosen], {"reason": "quasi-random (scrambled Sobol)"}
