"""What the optimiser knows: one :class:`Observation` per evaluated configuration, and the transforms every
strategy shares (log objectives in minimisation form, the reference point, the encoding of observed
configurations, and snapping configurations onto the enumerated space)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...records import Record, as_record
from ..space import SearchSpace
from .pareto import to_minimisation


@dataclass
class Observation:
    name: str
    config: dict  # the searched arguments ({} for vLLM's default configuration)
    ok: bool
    objectives: tuple[float, ...] | None  # raw objective values, in config order; None when failed
    resolved: dict | None = None  # engine arguments vLLM resolved (fills the knobs vLLM's default leaves unset)
    #: Estimated energy of the evaluation itself in joules (window mean power x wall time,
    #: :attr:`vllm_mobo.records.Record.evaluation_energy_j`); None or NaN when unknown (e.g. a failure).
    cost_j: float | None = None
    #: SLO outcomes a strategy may model as constraints (metric -> measured value, e.g. ``ttft_ms_p99`` in ms) and
    #: their upper bounds; only for online runs whose SLOs are constraints, outside capacity mode. Empty otherwise.
    constraints: dict[str, float] = field(default_factory=dict)
    bounds: dict[str, float] = field(default_factory=dict)
    #: Raw objective values of a run that measured them but missed its SLOs (``ok`` False: the strategies that
    #: treat SLO misses as failures never see them); None otherwise.
    slo_missed_objectives: tuple[float, ...] | None = None

    @property
    def known_cost(self) -> bool:
        return self.cost_j is not None and math.isfinite(self.cost_j) and self.cost_j > 0

    @property
    def measured_objectives(self) -> tuple[float, ...] | None:
        """The objective values where the run measured them: feasible runs, and SLO misses with SLO outcomes."""
        return self.objectives if self.ok else self.slo_missed_objectives


def log_objectives_min(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Objectives as modelled: log of each (all are positive rates or energies), then negated where maximised."""
    values = np.asarray(values, dtype=float)
    if np.any(values <= 0):
        raise ValueError("objective values must be positive to be modelled on a log scale")
    return to_minimisation(np.log(values), directions)


def reference_point(points_min: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Slightly beyond the nadir of ``points_min``: nadir + margin x range (range 1 where it is zero)."""
    lo, hi = points_min.min(axis=0), points_min.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return hi + margin * span


def merged_config(space: SearchSpace, obs: Observation) -> dict:
    """The observation's searched arguments, completed by the values vLLM resolved for the other knobs."""
    return {**{k: v for k, v in (obs.resolved or {}).items() if k in space.values}, **obs.config}


def encode_observed(space: SearchSpace, obs: list[Observation]) -> np.ndarray:
    """:meth:`SearchSpace.encode` of the observations' (merged) configurations."""
    return space.encode([merged_config(space, o) for o in obs])


def _same(a, b) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def snap_to_space(space: SearchSpace, configs: list[dict]) -> list[dict]:
    """Each configuration as a point of the space: itself when every knob holds one of the space's values, else the
    nearest configuration of the space in the encoding (vLLM's default may resolve to values outside the lists)."""
    out, all_configs, all_X = [], None, None
    for c in configs:
        if all(k in c and any(_same(c[k], v) for v in vals) for k, vals in space.values.items()):
            out.append({k: c[k] for k in space.keys})
            continue
        if all_X is None:
            all_configs = space.configs()
            all_X = space.encode(all_configs)
        x = space.encode([c])[0]
        out.append(dict(all_configs[int(np.argmin(np.linalg.norm(all_X - x, axis=1)))]))
    return out


def nearest_free(target: np.ndarray, X_free: np.ndarray, taken: list[int] | set[int]) -> int:
    """Index of the row of ``X_free`` nearest to ``target`` (Euclidean) that is not in ``taken``; the first on ties,
    so the repair is deterministic. Used to map a strategy's suggestion onto an unevaluated valid configuration."""
    d = np.linalg.norm(X_free - np.asarray(target, float), axis=1)
    d[list(taken)] = np.inf
    return int(np.argmin(d))


def slo_outcomes(r: Record) -> tuple[dict[str, float], dict[str, float]]:
    """(measured p99 latencies, their SLO bounds) of an online run whose SLOs are constraints, for the bounds set.

    Empty in capacity mode (``capacity_requests_per_s`` in the metrics): the headline rate is the capacity, where
    the SLOs hold by construction, so there is nothing to learn from them. Empty too when a bound's value was not
    measured (NaN), and for an SLO miss the latencies do not explain (failed requests): a failure then."""
    slo = r.metrics.get("slo") or {}
    if not (r.ok and r.metrics.get("slo_as_constraint") and slo) or "capacity_requests_per_s" in r.metrics:
        return {}, {}
    bounds = {k: float(slo[k]) for k in ("ttft_ms_p99", "tpot_ms_p99") if slo.get(k) is not None}
    values = {k: r.metric(k) for k in bounds}
    if not bounds or any(not np.isfinite(v) or v <= 0 for v in values.values()):
        return {}, {}
    if r.metrics.get("slo_met") is False and all(values[k] <= bounds[k] for k in bounds):
        return {}, {}
    return values, bounds


def to_observations(records: list[Record | dict], objectives: list[dict]) -> list[Observation]:
    """Metrics records -> optimiser observations (raw objective values in the order of ``objectives``).

    A failed run, and an online run that missed its SLOs while they are constraints (``slo_met: false``), are
    infeasible: ``ok=False`` without objective values, learnt by the feasibility model and never re-proposed.
    Online runs with SLOs as constraints also carry their p99 latencies and bounds (:func:`slo_outcomes`), and an
    SLO miss its measured objective values, for strategies that model the SLOs (``qlognehvi``).
    ``cost_j`` is :attr:`vllm_mobo.records.Record.evaluation_energy_j` (None when unknown), the cost ``ehvi-energy`` models."""
    out = []
    for r in map(as_record, records):
        ok = r.feasible
        measured = tuple(r.metric(o["metric"]) for o in objectives) if r.ok else None
        if measured is not None and any(not np.isfinite(v) or v <= 0 for v in measured):
            measured = None  # e.g. zero energy measured: not a usable point
        values = measured if ok else None
        ok = ok and values is not None
        constraints, bounds = slo_outcomes(r) if measured is not None else ({}, {})
        cost = r.evaluation_energy_j
        out.append(Observation(r.candidate, r.config, ok, values, r.resolved_engine_args or None,
                               cost_j=cost if np.isfinite(cost) and cost > 0 else None,
                               constraints=constraints, bounds=bounds,
                               slo_missed_objectives=measured if not ok and constraints else None))
    return out
