"""Strategy ``ehvi-energy``: EHVI with energy-aware acquisition by cost cooling, after CArBO (Lee et al. 2020,
"Cost-aware Bayesian optimization", arXiv:2003.10870)::

    score = EHVI x P(feasible) / E[cost]^alpha,    alpha = (budget - n_done) / (budget - n_initial)

where the cost is the estimated energy of one evaluation in joules (window mean power x wall time,
:attr:`vllm_mobo.records.Record.evaluation_energy_j`), modelled by a GP on log cost fitted on the evaluations whose
cost is known (successes; a failure's cost is unknown), and ``n_initial`` the evaluations of iteration 0. alpha
decays from 1 after the initial design to 0 at the end of the budget: cheap configurations are preferred early,
plain EHVI is recovered late. With ``cost_cooling: false`` alpha stays 1 (EHVI per expected joule throughout).

E[cost] is the log-normal mean exp(mu + sd^2 / 2) of the GP's prediction, divided by the median known cost so
scores stay on the EHVI scale (a constant factor does not change the argmax). With fewer than two known costs
the divisor is 1. The stop rule sees the relative EHVI before the division.
"""

from __future__ import annotations

import numpy as np

from .ehvi_search import ehvi_batch
from .state import SearchState
from .surrogate import ObjectiveModel


def cooling_alpha(budget: int, n_done: int, n_initial: int) -> float:
    """CArBO's cost-cooling exponent: 1 when only the initial design is done, 0 when the budget is spent."""
    if budget <= n_initial:
        return 0.0
    return float(np.clip((budget - n_done) / (budget - n_initial), 0.0, 1.0))


def cost_cooled(acquisition: np.ndarray, expected_cost: np.ndarray, alpha: float) -> np.ndarray:
    """acquisition / expected_cost^alpha (alpha = 0 returns the acquisition itself)."""
    return np.asarray(acquisition, float) / np.power(np.asarray(expected_cost, float), alpha)


class CostModel:
    """A GP on log evaluation cost (joules); predicts the expected cost E[exp(log cost)] of configurations."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.model: ObjectiveModel | None = None
        self.scale = 1.0

    def fit(self, X: np.ndarray, cost_j: np.ndarray) -> "CostModel":
        cost_j = np.asarray(cost_j, float)
        known = np.isfinite(cost_j) & (cost_j > 0)
        self.scale = float(np.median(cost_j[known])) if known.any() else 1.0
        self.model = None
        if known.sum() >= 2:
            self.model = ObjectiveModel(self.seed).fit(X[known], np.log(cost_j[known] / self.scale)[:, None])
        return self

    def expected(self, X: np.ndarray, normalised: bool = True) -> np.ndarray:
        """E[cost] of each row, in units of the median known cost (``normalised``) or in joules."""
        if self.model is None:
            out = np.ones(len(X))
        else:
            mu, sd = self.model.predict(X)
            out = np.exp(mu[:, 0] + 0.5 * sd[:, 0] ** 2)
        return out if normalised else out * self.scale


def propose(state: SearchState, n: int) -> tuple[list[dict], dict]:
    obs = state.observations
    cost = CostModel(state.seed).fit(state.X_observed, np.array([o.cost_j if o.known_cost else np.nan for o in obs]))
    expected = cost.expected(state.X_remaining)
    alpha = cooling_alpha(state.budget, len(obs), state.n_initial) if state.options.get("cost_cooling", True) else 1.0
    divisor = np.power(expected, alpha)
    picks, info = ehvi_batch(state, n, divisor=divisor, label=f"max EHVI x P(feasible) / E[cost]^{alpha:.2f}",
                             extra={"expected_cost_j": expected * cost.scale})
    for p in picks:
        p["alpha"] = alpha
    return picks, {**info, "alpha": alpha, "cost_model": cost.model is not None,
                   "reason": "expected hypervolume improvement per expected evaluation energy (cost cooling)"}
