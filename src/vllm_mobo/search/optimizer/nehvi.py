"""Strategy ``qlognehvi`` (the default): BoTorch's q-log noisy expected hypervolume improvement (Daulton et al. 2021,
"Parallel Bayesian optimization of multiple noisy objectives with expected hypervolume improvement", NeurIPS; the
log form of Ament et al. 2023, "Unexpected improvements to expected improvement", NeurIPS) for 2-4 objectives,
with the SLOs as modelled outcome constraints, times P(feasible) of the crash/OOM classifier.

- Outcomes (:mod:`.gp_models`): one GP per objective, on ``-log_objectives_min`` (log objectives, negated where
  minimised: BoTorch maximises), with the noise ``optimizer.noise`` gives (:mod:`.noise`) or an inferred one; one GP
  per SLO bound (``log`` p99 TTFT / TPOT in ms) where the observations carry SLO outcomes
  (:func:`.observations.slo_outcomes`; none in capacity mode, where the SLOs hold at the capacity by construction).
  They are fitted on every run that measured its objectives, SLO misses included: the constraint GPs learn where
  the SLO boundary lies, instead of only "failed".
- Acquisition: :class:`~botorch.acquisition.multi_objective.logei.qLogNoisyExpectedHypervolumeImprovement` with
  ``X_baseline`` the observed points (the incumbent front is integrated over the posterior, so a lucky measurement
  is not taken as truth), the reference point :func:`.observations.reference_point` of the SLO-feasible
  observations (the one ``ehvi`` uses, negated), each SLO as ``constraints=[lambda Z: Z_c - log(bound)]``
  (negative = met; BoTorch weights each sample's improvement by a sigmoid of it), a seeded
  :class:`~botorch.sampling.SobolQMCNormalSampler`.
- Scored on every unevaluated valid configuration by :func:`botorch.optim.optimize_acqf_discrete` (no continuous
  relaxation), the batch by its sequential greedy selection (each pick becomes a pending point of the next).
  P(feasible) (:func:`feasibility_engine`) multiplies the acquisition: :class:`FeasibilityWeighted` adds its log
  to the log acquisition, looked up for each scored configuration, so the greedy selection includes it.

``best_ehvi`` is ``exp`` of the first pick's log value (EHVI x P(feasible), an MC estimate in the same log-objective
space and hypervolume units as ``ehvi``), ``relative_ehvi`` that over the current hypervolume: the stop rule's measure.
"""

from __future__ import annotations

import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.optim import optimize_acqf_discrete
from botorch.sampling import SobolQMCNormalSampler

from .gp_models import fit_model_list, tensor
from .observations import encode_observed, log_objectives_min, reference_point
from .pareto import hypervolume, pareto_mask
from .state import SearchState, candidate
from .surrogate import FeasibilityModel

#: QMC samples of the joint posterior per acquisition evaluation (BoTorch's default is 128; see the benchmark note
#: in docs/optimizer-benchmark.md for the time per proposal).
MC_SAMPLES = 128
#: Configurations scored per batched evaluation (bounds memory on the 8640-point gpu space).
CHUNK = 512
#: Torch threads while fitting and scoring: the matrices are small (tens of points), where intra-op threads only
#: contend (10x slower fits seen with 2 threads on a busy 2-core machine).
THREADS = 1
LOG_P_FLOOR = -50.0  # log P(feasible) of a configuration the classifier rules out: ~0, still ordered


class FeasibilityWeighted(AcquisitionFunction):
    """``log acqf(X) + log P(feasible)(X)`` for ``X`` (b, 1, d) drawn from ``choices`` (m, d), whose ``log_p`` (m,)
    is known; pending points go to the wrapped acquisition, so sequential greedy selection conditions on them."""

    def __init__(self, acqf: AcquisitionFunction, choices: torch.Tensor, log_p: torch.Tensor):
        super().__init__(model=acqf.model)
        self.acqf, self.choices, self.log_p = acqf, choices, log_p

    @property
    def X_pending(self):
        return self.acqf.X_pending

    def set_X_pending(self, X_pending: torch.Tensor | None = None) -> None:
        self.acqf.set_X_pending(X_pending)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        idx = torch.cdist(X[..., -1, :], self.choices).argmin(dim=-1)
        return self.acqf(X) + self.log_p[idx]


def _constraint_metrics(obs) -> list[str]:
    names = {k for o in obs for k in o.bounds}
    return [k for k in ("ttft_ms_p99", "tpot_ms_p99") if k in names]


def _outcomes(state: SearchState):
    """Training data per outcome: objectives first, then SLO constraints (name, bound, noise)."""
    obs = [o for o in state.observations if o.measured_objectives is not None]
    X = encode_observed(state.space, obs)
    Y_min = log_objectives_min(np.array([o.measured_objectives for o in obs]), state.directions)
    noise = state.options.get("noise") or {}
    obj_noise = list(noise.get("objectives") or [None] * Y_min.shape[1])
    Xs, Ys, vs = [X] * Y_min.shape[1], [-Y_min[:, j] for j in range(Y_min.shape[1])], obj_noise
    constraints = []
    for name in _constraint_metrics(obs):
        has = [i for i, o in enumerate(obs) if name in o.constraints]
        Xs.append(X[has])
        Ys.append(np.log([obs[i].constraints[name] for i in has]))
        vs.append((noise.get("constraints") or {}).get(name))
        constraints.append((name, float(np.log(next(o.bounds[name] for o in reversed(obs) if name in o.bounds)))))
    feasible = np.array([o.ok for o in obs])
    return X, Y_min, feasible, Xs, Ys, vs, constraints


def _constraint(index: int, log_bound: float):
    return lambda Z: Z[..., index] - log_bound  # negative: the SLO is met


def _pick(state: SearchState, n: int, k: int, X_obs, outcomes, constraints, ref, p_feasible):
    """Fit the GPs, score every remaining configuration, pick ``n`` by sequential greedy selection: (remaining
    indices, log acquisition values, posterior means of the picks (n, outcomes))."""
    with torch.random.fork_rng():
        torch.manual_seed(state.derived_seed(16))
        model = fit_model_list(*outcomes, state.space.categorical_columns() if _has_onehot(state) else None)
        acqf = qLogNoisyExpectedHypervolumeImprovement(
            model=model, ref_point=tensor(-ref), X_baseline=tensor(X_obs),
            sampler=SobolQMCNormalSampler(torch.Size([MC_SAMPLES]), seed=state.derived_seed(17)),
            objective=IdentityMCMultiOutputObjective(outcomes=list(range(k))),
            constraints=[_constraint(k + i, b) for i, (_, b) in enumerate(constraints)] or None,
            prune_baseline=True)
        choices = tensor(state.X_remaining)
        log_p = torch.log(tensor(p_feasible)).clamp_min(LOG_P_FLOOR)
        X_pick, values = optimize_acqf_discrete(FeasibilityWeighted(acqf, choices, log_p), q=n, choices=choices,
                                                max_batch_size=CHUNK, unique=True)
        with torch.no_grad():
            mean = model.posterior(X_pick).mean.numpy()
    idx = [int(torch.cdist(x[None], choices).argmin()) for x in X_pick]
    return idx, values.detach().numpy().reshape(-1), mean


def propose(state: SearchState, n: int) -> tuple[list[dict], dict]:
    k = len(state.directions)
    if not 2 <= k <= 4:
        raise ValueError(f"optimizer.strategy 'qlognehvi' handles 2 to 4 objectives, not {k}")
    X_obs, Y_min, feasible, Xs, Ys, vs, constraints = _outcomes(state)
    Y_front = Y_min[feasible]
    ref = reference_point(Y_front)
    current_hv = hypervolume(Y_front[pareto_mask(Y_front)], ref)
    p_feasible = feasibility_engine(state)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(THREADS)
        idx, values, mean = _pick(state, n, k, X_obs, (Xs, Ys, vs), constraints, ref, p_feasible)
    finally:
        torch.set_num_threads(threads)
    best = float(np.exp(values[0]))
    picks = [candidate(state.remaining[i], "max qLogNEHVI x P(feasible)" + (" (sequential greedy)" if j else ""),
                       float(values[j]), p_feasible=float(p_feasible[i]),
                       predicted_log_objectives_min=[float(-v) for v in mean[j, :k]],
                       **({"predicted_slo_ms": {name: float(np.exp(mean[j, k + c]))
                                                for c, (name, _) in enumerate(constraints)}} if constraints else {}))
             for j, i in enumerate(idx)]
    info = {"hypervolume": current_hv, "best_ehvi": best, "relative_ehvi": best / current_hv if current_hv > 0 else None,
            "slo_constraints": [name for name, _ in constraints],
            "reason": "noisy expected hypervolume improvement (BoTorch qLogNEHVI)"}
    return picks, info


def _has_onehot(state: SearchState) -> bool:
    """True where an unordered knob is one-hot encoded (:meth:`SearchSpace.encode`: neither all booleans nor all
    numbers), so the mixed kernel applies (:mod:`.gp_models`)."""
    def numeric(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return any(not (all(isinstance(v, bool) for v in vals) or all(numeric(v) for v in vals))
               for vals in state.space.values.values())


def feasibility_engine(state: SearchState) -> np.ndarray:
    """P(the engine runs) of every remaining configuration, the classifier of :func:`.ehvi_search.feasibility`
    with the SLO misses the constraint GPs model counted as runs (their SLOs are learnt by those GPs instead)."""
    ran = np.array([o.measured_objectives is not None for o in state.observations])
    return FeasibilityModel(state.seed).fit(state.X_observed, ran).probability(state.X_remaining)
