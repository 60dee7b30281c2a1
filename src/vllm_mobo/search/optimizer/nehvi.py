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
  :class:`~botorch.sampling.SobolQMCNormalSampler`; as :class:`.shared_posterior.SharedPosteriorQLogNEHVI`, which
  gives BoTorch's values with one posterior per chunk of single configurations instead of one each.
- Scored on every unevaluated valid configuration (no continuous relaxation): the first pick is the best of all; the
  rest of the batch by BoTorch's sequential greedy selection (:func:`botorch.optim.optimize_acqf_discrete`: each
  pick becomes a pending point of the next) among the :data:`RESCORE` best configurations of that first pass.
  Hypervolume improvement is submodular: conditioning on pending points can only lower a configuration's
  improvement, so one far below the top of the first pass stays below (exactly so per sample of a fixed front; up
  to MC error here). This keeps a batch of 4 on the 8640-point gpu space at one full pass instead of four.
  Where more than :data:`SCREEN_KEEP` configurations remain, that full pass uses the same acquisition with
  :data:`SCREEN_SAMPLES` QMC samples (the same model; its own sampled incumbent fronts), and the
  :data:`SCREEN_KEEP` best of it are scored again with :data:`MC_SAMPLES`: the first pick and the greedy pool come
  from that second pass. Checked on the gpu space (2-4 objectives, 15 and 50 synthetic observations, 3 states
  each; ``benchmarks/acquisition_screen.py``): the 64 best configurations of the full-sample pass all lie within
  the screen's best 110 (``docs/optimizer-benchmark/acquisition-screen-2026-12-03.txt``).
  P(feasible) (:func:`feasibility_engine`) multiplies the acquisition: :class:`FeasibilityWeighted` adds its log
  to the log acquisition, looked up for each scored configuration, so the greedy selection includes it.

``best_ehvi`` is ``exp`` of the first pick's log value (EHVI x P(feasible), an MC estimate in the same log-objective
space and hypervolume units as ``ehvi``), ``relative_ehvi`` that over the current hypervolume: the stop rule's measure.
"""

from __future__ import annotations

import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.optim import optimize_acqf_discrete
from botorch.sampling import SobolQMCNormalSampler

from . import fused_kernel
from .gp_models import fit_outcomes, tensor
from .observations import encode_observed, log_objectives_min, reference_point
from .pareto import hypervolume, pareto_mask
from .shared_posterior import SharedPosteriorQLogNEHVI
from .state import SearchState, candidate
from .surrogate import FeasibilityModel

#: QMC samples of the joint posterior per acquisition evaluation, by the number of objectives: BoTorch's default 128
#: for 2; fewer for 3-4, where each sample's box decomposition of the incumbent front and each sample's cells per
#: candidate dominate the time. Checked once on the gpu space (50 synthetic observations with 5% noise, every
#: valid configuration scored): 16 samples ranked as 32 (4 objectives) and 64 (3 objectives) did, as closely as two
#: sampler seeds at the larger count (Spearman 0.994-0.997, the same top pick, 9-10 of the top 10 shared).
MC_SAMPLES = {2: 128, 3: 32, 4: 16}
#: Screening, where more than SCREEN_KEEP configurations remain: every one is scored with SCREEN_SAMPLES QMC samples
#: first, and only the SCREEN_KEEP best are scored with MC_SAMPLES (see the module).
SCREEN_SAMPLES = 4
SCREEN_KEEP = 512
#: Configurations scored per batched evaluation (bounds memory on the 8640-point gpu space).
CHUNK = 512
#: Picks after the first are re-scored among this many best configurations of the first pass (see the module).
RESCORE = 64
#: Torch threads while fitting: the matrices are small (tens of points), where intra-op threads only contend (10x
#: slower fits seen with 2 threads on a busy 2-core machine). Scoring (thousands of configurations) uses torch's.
THREADS = 1
LOG_P_FLOOR = -50.0  # log P(feasible) of a configuration the classifier rules out: ~0, still ordered


class FeasibilityWeighted(AcquisitionFunction):
    """``log acqf(X) + log P(feasible)(X)`` for ``X`` (b, 1, d) drawn from ``choices`` (m, d), whose ``log_p`` (m,)
    is known; pending points go to the wrapped acquisition, so sequential greedy selection conditions on them."""

    def __init__(self, acqf: AcquisitionFunction, choices: torch.Tensor, log_p: torch.Tensor):
        super().__init__(model=acqf.model)
        self.acqf, self.choices, self.log_p = acqf, choices, log_p
        self._row = {row.tobytes(): i for i, row in enumerate(choices.numpy())}

    def lookup(self, X: torch.Tensor) -> torch.Tensor:
        """Index in ``choices`` of each row of ``X`` (r, d), rows taken from ``choices`` (exact values)."""
        return torch.tensor([self._row[row.tobytes()] for row in X.detach().numpy()], dtype=torch.long)

    @property
    def X_pending(self):
        return self.acqf.X_pending

    def set_X_pending(self, X_pending: torch.Tensor | None = None) -> None:
        self.acqf.set_X_pending(X_pending)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.acqf(X) + self.log_p[self.lookup(X[..., -1, :])]


def _constraint_metrics(obs) -> list[str]:
    names = {k for o in obs for k in o.bounds}
    return [k for k in ("ttft_ms_p99", "tpot_ms_p99") if k in names]


def _outcomes(state: SearchState):
    """The observations that measured their objectives (SLO misses included): their encoding X (n, d), log
    objectives in minimisation form (n, k), SLO-feasible mask (n,); per outcome (the k objectives, then each
    modelled SLO) its training X, its target (``-Y_min[:, j]``; ``log`` p99 in ms for an SLO) and its known noise
    variance or None; and the SLOs as (metric, log bound)."""
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


def _fit(state: SearchState, outcomes):
    """The fitted GPs of every outcome (small matrices: on :data:`THREADS` torch threads)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(THREADS)
        return fit_outcomes(*outcomes, state.space.categorical_columns() if _has_onehot(state) else None)
    finally:
        torch.set_num_threads(threads)


def _acquisition(model, state: SearchState, k: int, n: int, X_obs, constraints, ref, samples: int, salt: int):
    """qLogNEHVI of ``model`` with ``samples`` QMC samples (sampler seed from ``salt``). ``max_iep = n``: a batch's
    pending points enter each evaluation jointly (inclusion-exclusion over at most ``n`` points) instead of
    re-partitioning every MC sample's front per pick (BoTorch's Python box decomposition: seconds per pick with 3-4
    objectives). Built on :data:`THREADS` torch threads (the box decompositions of the sampled fronts)."""
    fused_kernel.load()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(THREADS)
        return SharedPosteriorQLogNEHVI(
            model=model, ref_point=tensor(-ref), X_baseline=tensor(X_obs),
            sampler=SobolQMCNormalSampler(torch.Size([samples]), seed=state.derived_seed(salt)),
            objective=IdentityMCMultiOutputObjective(outcomes=list(range(k))),
            constraints=[_constraint(k + i, b) for i, (_, b) in enumerate(constraints)] or None,
            prune_baseline=True, max_iep=n)
    finally:
        torch.set_num_threads(threads)


def _scores(acqf: AcquisitionFunction, X: torch.Tensor) -> torch.Tensor:
    """``acqf`` of every row of ``X`` (r, d) as a single configuration, :data:`CHUNK` at a time: (r,)."""
    with torch.no_grad():
        return torch.cat([acqf(X[i:i + CHUNK, None, :]) for i in range(0, len(X), CHUNK)])


def _greedy(weighted: FeasibilityWeighted, n: int, screen: FeasibilityWeighted | None = None
            ) -> tuple[list[int], list[float]]:
    """Sequential greedy selection of ``n`` of ``weighted.choices``: the first pick scored on every choice (with
    ``screen``, on the :data:`SCREEN_KEEP` best choices by ``screen``, the same acquisition with fewer samples),
    the others by :func:`optimize_acqf_discrete` among the :data:`RESCORE` best of that first pass (see the
    module)."""
    choices = weighted.choices
    pool = torch.arange(len(choices))
    if screen is not None:
        pool = torch.argsort(_scores(screen, choices), descending=True, stable=True)[:SCREEN_KEEP].sort().values
    first = _scores(weighted, choices[pool])
    order = pool[torch.argsort(first, descending=True, stable=True)]  # the first index on ties: deterministic
    idx, values = [int(order[0])], [float(first.max())]
    if n > 1:
        weighted.set_X_pending(choices[idx])
        rest = order[1:RESCORE].sort().values
        X_rest, v_rest = optimize_acqf_discrete(weighted, q=n - 1, choices=choices[rest], max_batch_size=CHUNK)
        idx += [int(i) for i in weighted.lookup(X_rest)]
        values += [float(v) for v in v_rest.reshape(-1)]
    return idx, values


def _pick(state: SearchState, n: int, k: int, X_obs, outcomes, constraints, ref, p_feasible):
    """Fit, score, pick ``n``: (remaining indices, log acquisition values, posterior means of the picks)."""
    with torch.random.fork_rng():
        torch.manual_seed(state.derived_seed(16))
        model = _fit(state, outcomes)
        choices = tensor(state.X_remaining)
        log_p = torch.log(tensor(p_feasible)).clamp_min(LOG_P_FLOOR)
        weighted = FeasibilityWeighted(
            _acquisition(model, state, k, n, X_obs, constraints, ref, MC_SAMPLES[k], salt=17), choices, log_p)
        screen = FeasibilityWeighted(
            _acquisition(model, state, k, n, X_obs, constraints, ref, SCREEN_SAMPLES, salt=18), choices, log_p
        ) if len(choices) > SCREEN_KEEP else None
        idx, values = _greedy(weighted, n, screen)
        with torch.no_grad():
            mean = model.posterior(choices[idx]).mean.numpy()
    return idx, np.array(values), mean


def propose(state: SearchState, n: int) -> tuple[list[dict], dict]:
    k = len(state.directions)
    if not 2 <= k <= 4:
        raise ValueError(f"optimizer.strategy 'qlognehvi' handles 2 to 4 objectives, not {k}")
    X_obs, Y_min, feasible, Xs, Ys, vs, constraints = _outcomes(state)
    Y_front = Y_min[feasible]
    ref = reference_point(Y_front)
    current_hv = hypervolume(Y_front[pareto_mask(Y_front)], ref)
    p_feasible = feasibility_engine(state)
    idx, values, mean = _pick(state, n, k, X_obs, (Xs, Ys, vs), constraints, ref, p_feasible)
    best = float(np.exp(values[0]))
    picks = [candidate(state.remaining[i], "max qLogNEHVI x P(feasible)" + (" (sequential greedy)" if j else ""),
                       float(values[j]), p_feasible=float(p_feasible[i]),
                       predicted_log_objectives_min=[float(-v) for v in mean[j, :k]],
                       **({"predicted_slo_ms": {name: float(np.exp(mean[j, k + c]))
                                                for c, (name, _) in enumerate(constraints)}} if constraints else {}))
             for j, i in enumerate(idx)]
    info = {"hypervolume": current_hv, "best_ehvi": best,
            "relative_ehvi": best / current_hv if current_hv > 0 else None, "slo_constraints": [name for name, _ in constraints],
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
