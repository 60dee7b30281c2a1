"""Strategy ``optuna``: Optuna's default multi-objective sampler (Akiba et al. 2019, "Optuna: a next-generation
hyperparameter optimization framework", KDD).

In Optuna >= 4.0 (5.0.0 checked), ``optuna.create_study(directions=[...])`` without a sampler uses
:class:`optuna.samplers.TPESampler` with its defaults: the multi-objective TPE (MOTPE; Ozaki et al. 2020/2022),
independent (not multivariate) per parameter for several objectives, 10 random start-up trials, 24 EI candidates,
``constant_liar=True`` (pending trials count as bad, which spreads a batch). Before 4.0 it was NSGA-II. The same
sampler is built here with a seed (a function of the search seed and the iteration) for determinism.

Each iteration rebuilds an in-memory study from all observations (``study.add_trial(create_trial(...))``, every
knob a :class:`CategoricalDistribution` of its values; objectives as log values, minimised; failures as
``TrialState.FAIL``; an observation whose values lie outside the lists, such as vLLM's resolved default, is
snapped to the nearest configuration of the space), then calls ``study.ask()`` once per pick. A suggestion that
is invalid, evaluated or already picked is repaired to the nearest unevaluated valid configuration.

Optuna is an optional dependency: ``pip install 'vllm-mobo[optuna]'``.
"""

from __future__ import annotations

import numpy as np

from ...records import candidate_name
from .observations import log_objectives_min, merged_config, nearest_free, snap_to_space
from .state import SearchState, candidate

MISSING = ("optimizer.strategy 'optuna' needs the optional dependency Optuna, which is not installed: "
           "pip install 'vllm-mobo[optuna]' (or pip install optuna)")


def require_optuna():
    """Import Optuna, or raise ImportError naming the ``optuna`` extra."""
    try:
        import optuna
    except ImportError as err:
        raise ImportError(MISSING) from err
    return optuna


def propose(state: SearchState, n: int) -> tuple[list[dict], dict]:
    optuna = require_optuna()
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = state.space
    dists = {k: CategoricalDistribution(list(vals)) for k, vals in space.values.items()}
    sampler = optuna.samplers.TPESampler(seed=state.derived_seed())
    study = optuna.create_study(directions=["minimize"] * len(state.directions), sampler=sampler)
    configs = snap_to_space(space, [merged_config(space, o) for o in state.observations])
    for o, config in zip(state.observations, configs):
        if o.ok:
            values = log_objectives_min(np.array([o.objectives]), state.directions)[0]
            study.add_trial(create_trial(params=config, distributions=dists, values=[float(v) for v in values]))
        else:
            study.add_trial(create_trial(params=config, distributions=dists, state=TrialState.FAIL))
    # each trial is left running: the constant liar accounts for it in the next ask
    return ask_batch(study, dists, state, n, "Optuna TPE"), {"reason": "Optuna's default multi-objective sampler (TPE)"}


def ask_batch(study, dists: dict, state: SearchState, n: int, label: str) -> list[dict]:
    """``n`` picks by ``study.ask(dists)``, one trial per pick left running so that the sampler conditions the next
    ask on it; a suggestion that is invalid, evaluated or already picked is repaired to the nearest unevaluated
    valid configuration (:func:`.observations.nearest_free`). ``label`` names the sampler in each pick's ``why``."""
    names = {candidate_name(c): i for i, c in enumerate(state.remaining)}
    chosen: list[int] = []
    picks = []
    for _ in range(n):
        trial = study.ask(dists)
        suggestion = {k: trial.params[k] for k in state.space.keys}
        exact = names.get(candidate_name(suggestion))
        if exact is not None and exact not in chosen:
            i, why = exact, f"{label} suggestion"
        else:
            i = nearest_free(state.space.encode([suggestion])[0], state.X_remaining, chosen)
            why = f"{label} suggestion, repaired to the nearest unevaluated valid configuration"
        chosen.append(i)
        picks.append(candidate(state.remaining[i], why))
    return picks
