"""Strategy ``optuna-gp``: Optuna's Gaussian-process sampler (:class:`optuna.samplers.GPSampler`), a baseline.

GPSampler (Optuna >= 3.6; multi-objective from 4.4, with constraints from 4.5; 5.0.0 checked) fits one GP per
objective (Matern 5/2 with ARD; categorical parameters by a Hamming-distance kernel) and picks by log expected
hypervolume improvement (LogEHVI; qLogEHVI given pending trials, so a batch is chosen sequentially and greedily),
times the probability of feasibility of one GP per constraint where trials carry constraints (LogCEHVI).

Each iteration rebuilds an in-memory study from all observations, as :mod:`.optuna_tpe` does: every knob a
:class:`CategoricalDistribution` of its values, objectives as log values minimised, an observation whose values
lie outside the lists (vLLM's resolved default) snapped to the nearest configuration of the space. A failure
(crash, OOM, missed SLO while SLOs are constraints) is told as a completed trial that violates the constraint
``failed`` (1; successes 0), its objective values imputed as the worst successful value of each objective:
GPSampler fits its objective GPs on every completed trial, and the constrained acquisition never counts an
infeasible trial on the front, while the constraint's GP learns where failures lie. Without any failure, no
constraint is told (plain LogEHVI). The shared iteration 0 (vLLM's default and the maximin design) is its
start-up design: ``n_startup_trials`` is the number of trials told, so the GP picks from iteration 1 on, as this
project's own GP strategies do; with fewer than 2 successful runs, failures are told as failed trials and
Optuna's start-up sampler (random, seeded) picks. Then
``study.ask()`` once per pick (earlier picks of the batch stay running: pending); a suggestion that is invalid,
evaluated or already picked is repaired to the nearest unevaluated valid configuration.
"""

from __future__ import annotations

import warnings

import numpy as np

from .observations import log_objectives_min, merged_config, snap_to_space
from .optuna_tpe import ask_batch, require_optuna
from .state import SearchState

#: Optuna version from which GPSampler takes several objectives and constraints (LogCEHVI).
MIN_VERSION = (4, 5)


def require_gp_sampler():
    """Optuna with a multi-objective, constrained :class:`optuna.samplers.GPSampler`, or ImportError saying what
    is needed. GPSampler also needs PyTorch and SciPy."""
    optuna = require_optuna()
    version = tuple(int(p) for p in optuna.__version__.split(".")[:2] if p.isdigit())
    if not hasattr(optuna.samplers, "GPSampler") or version < MIN_VERSION:
        raise ImportError(f"optimizer.strategy 'optuna-gp' needs Optuna >= {'.'.join(map(str, MIN_VERSION))} "
                          f"(GPSampler with several objectives and constraints); installed: {optuna.__version__} "
                          "(pip install -U optuna)")
    try:
        import scipy  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        raise ImportError(f"optimizer.strategy 'optuna-gp' needs PyTorch and SciPy for Optuna's GPSampler: {err}") from err
    return optuna


def _constraint(value: float) -> dict:
    """``create_trial`` keywords for one constraint: ``constraints={...}`` (Optuna >= 5), else the system
    attribute GPSampler reads in 4.x."""
    import inspect

    from optuna.trial import create_trial

    if "constraints" in inspect.signature(create_trial).parameters:
        return {"constraints": {"failed": value}}
    return {"system_attrs": {"constraints": [value]}}


def propose(state: SearchState, n: int) -> tuple[list[dict], dict]:
    optuna = require_gp_sampler()
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = state.space
    dists = {k: CategoricalDistribution(list(vals)) for k, vals in space.values.items()}
    configs = snap_to_space(space, [merged_config(space, o) for o in state.observations])
    ok = [o for o in state.observations if o.ok]
    Y_ok = log_objectives_min(np.array([o.objectives for o in ok]), state.directions) if ok else None
    modelled = len(ok) >= 2
    constrained = modelled and len(ok) < len(state.observations)
    worst = Y_ok.max(axis=0) if Y_ok is not None else None
    trials, k = [], 0
    for o, config in zip(state.observations, configs):
        if o.ok:
            values, k = Y_ok[k], k + 1
        elif constrained:
            values = worst
        else:
            trials.append(create_trial(params=config, distributions=dists, state=TrialState.FAIL))
            continue
        trials.append(create_trial(params=config, distributions=dists, values=[float(v) for v in values],
                                   **(_constraint(0.0 if o.ok else 1.0) if constrained else {})))
    with warnings.catch_warnings():  # ExperimentalWarning, and independent sampling of a trial's first parameter
        warnings.simplefilter("ignore")
        sampler = optuna.samplers.GPSampler(seed=state.derived_seed(),
                                            n_startup_trials=len(trials) + (0 if modelled else 1),
                                            warn_independent_sampling=False)
        study = optuna.create_study(directions=["minimize"] * len(state.directions), sampler=sampler)
        study.add_trials(trials)
        picks = ask_batch(study, dists, state, n, "Optuna GPSampler")  # running trials: pending for qLogEHVI
    how = "LogCEHVI, failures as a constraint" if constrained else "LogEHVI"
    return picks, {"reason": f"Optuna's GPSampler ({how})"}
