"""Strategy ``nsga2``: NSGA-II (Deb et al. 2002, "A fast and elitist multiobjective genetic algorithm: NSGA-II",
IEEE TEC 6(2)) with pymoo's operators, used without ask/tell: every iteration rebuilds the population from all
observations.

Each configuration is a vector of per-knob value indices (integers in [0, len(values) - 1]). The population is
every observation, with the log objectives (minimisation form) as F and failures as constraint violations
(CV = 1), so that pymoo's :class:`RankAndCrowding` survival (non-dominated sorting, then crowding distance; the
infeasible last) keeps ``pop_size`` = max(n_initial, 2 x batch) survivors. Parents are chosen by pymoo's binary
tournament (NSGA-II's, by domination then crowding), offspring made by pymoo's SBX (prob 1, eta 3) and
polynomial mutation (prob 1, eta 3) with rounding repair for integer variables (the settings of pymoo's guide to
discrete variables; the usual eta 15-20 rarely moves an index of a 3-value knob), duplicates of the parents
eliminated (pymoo's mating); mating is repeated (up to ``MATING_ROUNDS``) while it yields fewer than ``n``
children that are not evaluated yet. Each child is then repaired to the nearest unevaluated valid configuration
not yet picked.
"""

from __future__ import annotations

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair

from ...records import candidate_name
from ..space import SearchSpace
from .observations import log_objectives_min, merged_config, nearest_free, snap_to_space
from .state import SearchState, candidate


def index_encoding(space: SearchSpace, configs: list[dict]) -> np.ndarray:
    """Per-knob value indices of configurations that are points of the space."""
    rows = []
    for c in configs:
        rows.append([next(i for i, v in enumerate(vals) if isinstance(v, bool) == isinstance(c[k], bool) and v == c[k])
                     for k, vals in space.values.items()])
    return np.asarray(rows, dtype=int).reshape(len(configs), len(space.values))


def index_decoding(space: SearchSpace, X: np.ndarray) -> list[dict]:
    return [{k: vals[int(i)] for (k, vals), i in zip(space.values.items(), row)} for row in np.asarray(X, int)]


MATING_ROUNDS = 10


def evaluated_names(state: SearchState) -> set[str]:
    """Names of the evaluated configurations, and of the space points they snap to."""
    snapped = snap_to_space(state.space, [merged_config(state.space, o) for o in state.observations])
    return {o.name for o in state.observations} | {candidate_name(c) for c in snapped}


def population(state: SearchState) -> tuple[Problem, Population]:
    space = state.space
    X = index_encoding(space, snap_to_space(space, [merged_config(space, o) for o in state.observations]))
    ok = np.array([o.ok for o in state.observations])
    F = np.zeros((len(ok), len(state.directions)))
    F[ok] = log_objectives_min(np.array([o.objectives for o in state.observations if o.ok]), state.directions)
    F[~ok] = F[ok].max(axis=0) + 1.0 if ok.any() else 1.0  # never compared: infeasible ranks by CV first
    cv = (~ok).astype(float)[:, None]
    xu = np.array([len(v) - 1 for v in space.values.values()])
    problem = Problem(n_var=len(xu), n_obj=F.shape[1], n_ieq_constr=1, xl=np.zeros(len(xu)), xu=xu, vtype=int)
    pop = Population.new("X", X, "F", F, "G", cv)  # pymoo derives CV = max(G, 0) and feasibility from G
    return problem, pop


def propose(state: SearchState, n: int) -> tuple[list[dict], dict]:
    problem, pop = population(state)
    pop_size = min(len(pop), max(state.n_initial, 2 * n))
    algorithm = NSGA2(pop_size=pop_size, crossover=SBX(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                      mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
    algorithm.setup(problem, seed=state.derived_seed())
    rs = algorithm.random_state
    parents = algorithm.survival.do(problem, pop, n_survive=pop_size, algorithm=algorithm, random_state=rs)
    seen = evaluated_names(state)
    X_off = np.empty((0, problem.n_var), dtype=int)
    for _ in range(MATING_ROUNDS):  # children that copy an evaluated configuration do not count: mate again
        offspring = algorithm.mating.do(problem, parents, n, algorithm=algorithm, random_state=rs)
        if len(offspring):
            X_off = np.vstack([X_off, offspring.get("X").astype(int)])
        if len({candidate_name(c) for c in index_decoding(state.space, X_off)} - seen) >= n:
            break
    unique = list({candidate_name(c): c for c in index_decoding(state.space, X_off)}.values())  # first kept
    children = sorted(unique, key=lambda c: candidate_name(c) in seen)[:n]  # distinct, new ones first (stable)
    X_children = state.space.encode(children) if children else []
    names = {candidate_name(c): i for i, c in enumerate(state.remaining)}
    chosen: list[int] = []
    picks = []
    for child, x in zip(children, X_children):
        exact = names.get(candidate_name(child))
        i = exact if exact is not None and exact not in chosen else nearest_free(x, state.X_remaining, chosen)
        chosen.append(i)
        why = "NSGA-II offspring" + ("" if i == exact else " (repaired to the nearest unevaluated valid configuration)")
        picks.append(candidate(state.remaining[i], why))
    while len(picks) < n:  # pymoo's mating ran out of new children (tiny spaces): fill at random
        i = int(state.rng.choice([j for j in range(len(state.remaining)) if j not in chosen]))
        chosen.append(i)
        picks.append(candidate(state.remaining[i], "random (NSGA-II produced no further child)"))
    return picks, {"reason": "NSGA-II offspring of the rank-and-crowding survivors"}
