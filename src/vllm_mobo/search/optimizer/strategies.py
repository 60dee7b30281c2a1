"""The optimiser strategies, by the name ``optimizer.strategy`` gives them (pymoo / BoTorch style: one small module
each). Every strategy shares iteration 0 (vLLM's default + the maximin design, :mod:`.propose`) so they compare
fairly, and is then called as ``propose(state, n) -> (candidates, info)`` with ``n`` >= 1 unevaluated valid
configurations left to pick from.

- ``qlognehvi`` (:mod:`.nehvi`, the default): BoTorch GPs per log objective and per SLO, qLogNEHVI with the SLOs
  as outcome constraints x P(feasible), BoTorch's sequential greedy batches; 2-4 objectives.
- ``ehvi`` (:mod:`.ehvi_search`): GP per log objective, exact 2-D EHVI x P(feasible), Kriging-believer batches (the
  exact baseline; 2 objectives only, as ``ehvi-energy``).
- ``ehvi-energy`` (:mod:`.ehvi_energy`): the same divided by E[evaluation energy]^alpha, CArBO cost cooling.
- ``parego`` (:mod:`.parego`): ParEGO, EI of a random augmented Chebyshev scalarisation x P(feasible).
- ``random`` (:mod:`.random_search`): uniform without replacement.
- ``sobol`` (:mod:`.sobol`): scrambled Sobol points, nearest unevaluated valid configuration.
- ``nsga2`` (:mod:`.nsga2`): NSGA-II with pymoo's survival, selection, crossover and mutation.
- ``optuna`` (:mod:`.optuna_tpe`): Optuna's default multi-objective sampler (TPE); optional dependency.
- ``optuna-gp`` (:mod:`.optuna_gp`): Optuna's GPSampler (LogEHVI, failures as a constraint); Optuna >= 4.5.

The model-based strategies (``MODEL_BASED``) need two successful runs to fit their GPs; until then they fall back
to the maximin design. Only the EHVI strategies (``EHVI_BASED``) report the relative EHVI the stop rule uses.
"""

from __future__ import annotations

from typing import Callable

from . import ehvi_energy, ehvi_search, nehvi, nsga2, optuna_gp, optuna_tpe, parego, random_search, sobol
from .state import SearchState

Strategy = Callable[[SearchState, int], tuple[list[dict], dict]]

STRATEGIES: dict[str, Strategy] = {
    "qlognehvi": nehvi.propose,
    "ehvi": ehvi_search.propose,
    "ehvi-energy": ehvi_energy.propose,
    "parego": parego.propose,
    "random": random_search.propose,
    "sobol": sobol.propose,
    "nsga2": nsga2.propose,
    "optuna": optuna_tpe.propose,
    "optuna-gp": optuna_gp.propose,
}
#: How each strategy picks its batches, in words (the report's Method section); one entry per strategy.
DESCRIPTIONS: dict[str, str] = {
    "qlognehvi": "by noisy expected hypervolume improvement (BoTorch's qLogNEHVI; one Gaussian process per "
                 "objective, log scale, and per modelled SLO) times the probability that the engine runs",
    "ehvi": "by expected hypervolume improvement of one Gaussian process per objective (log objectives)",
    "ehvi-energy": "by expected hypervolume improvement per unit of expected evaluation energy (one Gaussian "
                   "process per objective and one for the evaluation energy, log scale)",
    "parego": "by ParEGO (expected improvement of randomly weighted Chebyshev scalarisations)",
    "random": "uniformly at random without replacement",
    "sobol": "from a scrambled Sobol sequence",
    "nsga2": "by NSGA-II's selection and variation (pymoo)",
    "optuna": "by Optuna's default multi-objective sampler (TPE)",
    "optuna-gp": "by Optuna's Gaussian-process sampler (GPSampler: log expected hypervolume improvement, failures "
                 "as a modelled constraint)",
}
MODEL_BASED = {"qlognehvi", "ehvi", "ehvi-energy", "parego"}
EHVI_BASED = {"qlognehvi", "ehvi", "ehvi-energy"}
#: Strategies exact for two objectives only (the strip decomposition of :mod:`.ehvi`).
TWO_OBJECTIVES = {"ehvi", "ehvi-energy"}
#: Checked before a search starts, so a missing optional dependency fails at once with a clear message.
REQUIREMENTS: dict[str, Callable[[], object]] = {"optuna": optuna_tpe.require_optuna,
                                                  "optuna-gp": optuna_gp.require_gp_sampler}


def get_strategy(name: str, n_objectives: int | None = None) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown optimizer.strategy {name!r}; allowed values: {', '.join(STRATEGIES)}")
    if name in TWO_OBJECTIVES and n_objectives not in (None, 2):
        others = ", ".join(s for s in STRATEGIES if s not in TWO_OBJECTIVES)
        raise ValueError(f"optimizer.strategy {name!r} handles exactly 2 objectives, not {n_objectives}; "
                         f"strategies for 3-4 objectives: {others}")
    if name in REQUIREMENTS:
        REQUIREMENTS[name]()
    return STRATEGIES[name]
