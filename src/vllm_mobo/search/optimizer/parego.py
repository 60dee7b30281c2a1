"""Strategy ``parego``: ParEGO (Knowles 2006, "ParEGO: a hybrid algorithm with on-line landscape approximation for
expensive multiobjective optimization problems", IEEE TEC 10(1)).

Per pick: a weight vector drawn uniformly on the simplex (seeded generator), the augmented Chebyshev
scalarisation ``f = max_j(w_j z_j) + rho sum_j w_j z_j`` (rho = 0.05 as in the paper) of the objectives, each
taken on a log scale in minimisation form and normalised to [0, 1] over the successful observations; one GP on
that scalar, and expected improvement over its best value times P(feasible), scored on every unevaluated valid
configuration. A batch draws a new weight per pick (the picks so far are excluded); to keep a batch cheap, the GP's
hyperparameters are fitted for the first pick's scalarisation and kept for the later picks of the batch (the GP
itself is refitted on each new scalar).
"""

from __future__ import annotations

import numpy as np

from .ehvi import expected_shortfall
from .ehvi_search import feasibility
from .observations import encode_observed, log_objectives_min
from .state import SearchState, candidate
from .surrogate import ObjectiveModel


def normalise(Y: np.ndarray) -> np.ndarray:
    """Each column to [0, 1] over its observed range (a constant column to 0)."""
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    return (Y - lo) / np.where(hi > lo, hi - lo, 1.0)


def augmented_chebyshev(Z: np.ndarray, weights: np.ndarray, rho: float = 0.05) -> np.ndarray:
    """ParEGO's scalarisation of normalised minimised objectives ``Z`` (n, k): max_j(w_j z_j) + rho sum_j w_j z_j."""
    wz = np.atleast_2d(Z) * np.asarray(weights, float)
    return wz.max(axis=1) + rho * wz.sum(axis=1)


def expected_improvement(best: float, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """EI of a minimised quantity below ``best``: E[(best - Y)^+], Y ~ N(mu, sd^2)."""
    return expected_shortfall(best, mu, sd)


def propose(state: SearchState, n: int) -> tuple[list[dict], dict]:
    rho = float(state.options.get("parego_rho", 0.05))
    ok_obs = state.ok_observations
    X_ok = encode_observed(state.space, ok_obs)
    Z = normalise(log_objectives_min(np.array([o.objectives for o in ok_obs]), state.directions))
    p_feasible = feasibility(state)
    X_rem = state.X_remaining
    chosen: list[int] = []
    picks = []
    for _ in range(n):
        w = state.rng.dirichlet(np.ones(Z.shape[1]))
        s = augmented_chebyshev(Z, w, rho)
        model = model.fit(X_ok, s[:, None], fixed_kernels=True) if picks else ObjectiveModel(state.seed).fit(X_ok, s[:, None])
        mu, sd = model.predict(X_rem)
        score = expected_improvement(float(s.min()), mu[:, 0], sd[:, 0]) * p_feasible
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        picks.append(candidate(state.remaining[best], "max EI of the augmented Chebyshev scalarisation x P(feasible)",
                               score[best], weights=[float(x) for x in w], p_feasible=float(p_feasible[best])))
    return picks, {"reason": "ParEGO: expected improvement of a randomly weighted Chebyshev scalarisation"}
