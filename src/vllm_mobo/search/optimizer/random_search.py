"""Strategy ``random``: uniform sampling of the unevaluated valid configurations, without replacement (the
baseline of Bergstra & Bengio 2012, "Random search for hyper-parameter optimization")."""

from __future__ import annotations

from .state import SearchState, candidate


def propose(state: SearchState, n: int) -> tuple[list[dict], dict]:
    idx = state.rng.choice(len(state.remaining), size=n, replace=False)
    why = "random without replacement"
    return [candidate(state.remaining[int(i)], why) for i in idx], {"reason": why}
