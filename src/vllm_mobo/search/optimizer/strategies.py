"""The optimiser strategies, by the name ``optimizer.strategy`` gives them (pymoo / BoTorch style: one small module
each). Every strategy shares iteration 0 (vLLM's default + the maximin design, :mod:`.propose`) so they compare
fairly, and is then called as ``propose(state, n) -> (candidates, info)`` with ``n`` >= 1 unevaluated valid
configurations left to pick from.

- ``ehvi`` (:mod:`.ehvi_search`): GP per log objective, exact EHVI x P(feasible), Kriging-believer batches.
- ``ehvi-energy`` (:mod:`.ehvi_energy`): the same divided by E[evaluation energy]^alpha, CArBO cost cooling.
- ``parego`` (:mod:`.parego`): ParEGO, EI of a random augmented Chebyshev scalarisation x P(feasible).
- ``random`` (:mod:`.random_search`): uniform without replacement.
- ``sobol`` (:mod:`.sobol`): scrambled Sobol points, nearest unevaluated valid configuration.
- ``nsga2`` (:mod:`.nsga2`): NSGA-II with pymoo's survival, selection, crossover and mutation.
- ``optuna`` (:mod:`.optuna_tpe`): Optuna's default multi-objective sampler (TPE); optional dependency.

The model-based strategies (``MODEL_BASED``) need two successful runs to fit their GPs; until then they fall back
to the maximin design. Only the EHVI strategies (``EHVI_BASED``) report the relative EHVI the stop rule uses.
"""

from __future__ import annotations

from typing import Callable

from . import ehvi_energy, ehvi_search, nsga2, optuna_tpe, parego, random_search, sobol
from .state import SearchState

Strategy = Callable[[SearchState, int], tuple[list[dict], dict]]

STRATEGIES: dict[str, Strategy] = {
    "ehvi": ehvi_search.propose,
    "ehvi-energy": ehvi_energy.propose,
    "parego": parego.propose,
    "random": random_search.propose,
    "sobol": sobol.propose,
    "nsga2": nsga2.propose,
    "optuna": optuna_tpe.propose,
}
#: How each strategy picks its batches, in words (the report's Method section); one entry per strategy.
DESCRIPTIONS: dict[str, str] = {
    "ehvi": "by expected hypervolume improvement of one Gaussian process per objective (log objectives)",
    "ehvi-energy": "by expected hypervolume improvement per unit of expected evaluation energy (one Gaussian "
                   "process per objective and one for the evaluation energy, log scale)",
    "parego": "by ParEGO (expected improvement of randomly weighted Chebyshev scalarisations)",
    "random": "uniformly at random without replacement",
    "sobol": "from a scrambled Sobol sequence",
    "nsga2": "by NSGA-II's selection and variation (pymoo)",
    "optuna": "by Optuna's default multi-objective sampler (TPE)",
}
MODEL_BASED = {"ehvi", "ehvi-energy", "parego"}
EHVI_BASED = {"ehvi", "ehvi-energy"}
#: Checked before a search starts, so a missing optional dependency fails at once with a clear message.
REQUIREMENTS: dict[str, Callable[[], object]] = {"optuna": optuna_tpe.require_optuna}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown optimizer.strategy {name!r}; allowed values: {', '.join(STRATEGIES)}")
    if name in REQUIREMENTS:
        REQUIREMENTS[name]()
    return STRATEGIES[name]
