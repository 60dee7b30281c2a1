"""Strategy ``ehvi`` (the project's own): one GP per objective on log objectives, exact 2-D expected hypervolume
improvement (Emmerich et al. 2016; :mod:`.ehvi`) times P(feasible) from a GP classifier, scored on every
unevaluated valid configuration; a batch is built greedily by the Kriging believer (Ginsbourger et al. 2010): each
pick's predicted mean is added as an observation (hyperparameters kept) before the next pick.

:func:`ehvi_batch` takes an optional per-candidate divisor of the acquisition, which is how ``ehvi-energy``
(:mod:`.ehvi_energy`) divides by the expected evaluation cost.
"""

from __future__ import annotations

import numpy as np

from .ehvi import ehvi_2d
from .observations import encode_observed, log_objectives_min, reference_point
from .pareto import hypervolume, pareto_mask
from .state import SearchState, candidate
from .surrogate import FeasibilityModel, ObjectiveModel


def feasibility(state: SearchState) -> np.ndarray:
    """P(feasible) of every remaining configuration, from every observation (a GP classifier)."""
    model = FeasibilityModel(state.seed).fit(state.X_observed, np.array([o.ok for o in state.observations]))
    return model.probability(state.X_remaining)


def ehvi_batch(state: SearchState, n: int, divisor: np.ndarray | None = None, label: str = "max EHVI x P(feasible)",
               extra: dict[str, np.ndarray] | None = None) -> tuple[list[dict], dict]:
    """Pick ``n`` configurations by EHVI x P(feasible) [/ divisor]. ``best_ehvi`` and ``relative_ehvi`` (the stop
    rule's measure) are taken before the division: the largest EHVI x P(feasible) of the first pick's round."""
    if len(state.directions) != 2:
        raise ValueError(f"exact 2-D EHVI (optimizer.strategy ehvi, ehvi-energy) needs 2 objectives, not "
                         f"{len(state.directions)}; qlognehvi handles 2 to 4")
    ok_obs = state.ok_observations
    X_ok = encode_observed(state.space, ok_obs)
    Y_ok = log_objectives_min(np.array([o.objectives for o in ok_obs]), state.directions)
    model = ObjectiveModel(state.seed).fit(X_ok, Y_ok)
    X_rem = state.X_remaining
    p_feasible = feasibility(state)
    ref = reference_point(Y_ok)
    current_hv = hypervolume(Y_ok[pareto_mask(Y_ok)], ref)
    info = {"hypervolume": current_hv, "best_ehvi": None, "relative_ehvi": None}
    divisor = np.ones(len(X_rem)) if divisor is None else np.asarray(divisor, float)

    X_train, Y_train = X_ok.copy(), Y_ok.copy()
    front = Y_ok[pareto_mask(Y_ok)]
    chosen: list[int] = []
    picks = []
    for k in range(n):
        mu, sd = model.predict(X_rem)
        acquisition = ehvi_2d(mu, sd, front, ref) * p_feasible
        score = acquisition / divisor
        score[chosen] = -np.inf
        best = int(np.argmax(score))  # first index on ties: deterministic
        if k == 0:
            best_acq = float(np.max(acquisition))
            info["best_ehvi"] = best_acq
            info["relative_ehvi"] = best_acq / current_hv if current_hv > 0 else None
        chosen.append(best)
        more = {key: float(v[best]) for key, v in (extra or {}).items()}
        picks.append(candidate(state.remaining[best], label + (" (Kriging believer)" if k else ""), score[best],
                               ehvi_x_p_feasible=float(acquisition[best]), p_feasible=float(p_feasible[best]),
                               predicted_log_objectives_min=[float(x) for x in mu[best]], **more))
        # Kriging believer: pretend the pick returned its predicted mean; keep hyperparameters.
        X_train = np.vstack([X_train, X_rem[best]])
        Y_train = np.vstack([Y_train, mu[best]])
        front = np.vstack([front, mu[best]])
        front = front[pareto_mask(front)]
        model.fit(X_train, Y_train, fixed_kernels=True)
    return picks, {**info, "reason": "expected hypervolume improvement"}


def propose(state: SearchState, n: int) -> tuple[list[dict], dict]:
    return ehvi_batch(state, n)
