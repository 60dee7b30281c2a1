"""The state one iteration's strategy works from, and the candidate entries strategies return."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ...records import candidate_name
from ..space import SearchSpace
from .observations import Observation, encode_observed


@dataclass
class SearchState:
    """Everything a strategy may use to pick ``n`` of the ``remaining`` (unevaluated valid) configurations."""

    space: SearchSpace
    remaining: list[dict]  # unevaluated valid configurations, in the space's order
    observations: list[Observation]
    directions: list[str]
    iteration: int
    seed: int
    budget: int
    n_initial: int  # evaluations iteration 0 plans (vLLM default + initial design)
    rng: np.random.Generator
    options: dict = field(default_factory=dict)  # strategy settings (parego_rho, cost_cooling, ...)

    @cached_property
    def X_remaining(self) -> np.ndarray:
        return self.space.encode(self.remaining)

    @cached_property
    def ok_observations(self) -> list[Observation]:
        return [o for o in self.observations if o.ok]

    @cached_property
    def X_observed(self) -> np.ndarray:
        return encode_observed(self.space, self.observations)

    def derived_seed(self, salt: int = 0) -> int:
        """A seed for a library's own generator, a function of the search seed and the iteration only."""
        return int(np.random.default_rng([self.seed, self.iteration, salt]).integers(2**31 - 1))


def candidate(config: dict, why: str, score: float | None = None, **extra) -> dict:
    """One entry of a proposal's ``candidates`` list."""
    return {"name": candidate_name(config), "config": config, "score": None if score is None else float(score),
            **extra, "why": why}
