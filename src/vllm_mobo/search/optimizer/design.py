"""Space-filling initial design over a finite set of encoded points."""

from __future__ import annotations

import numpy as np


def maximin_design(points: np.ndarray, n: int, rng: np.random.Generator, taken: np.ndarray | None = None) -> list[int]:
    """Greedy maximin: start at a random point (or next to ``taken``), then repeatedly add the point farthest
    (Euclidean, in the encoded unit cube) from everything chosen so far. Returns indices into ``points``.
    Deterministic for a given generator state; ties are broken by the generator."""
    m = len(points)
    n = min(n, m)
    if n <= 0:
        return []
    chosen: list[int] = []
    if taken is not None and len(taken):
        dist = np.min(np.linalg.norm(points[:, None, :] - taken[None, :, :], axis=2), axis=1)
    else:
        first = int(rng.integers(m))
        chosen.append(first)
        dist = np.linalg.norm(points - points[first], axis=1)
    while len(chosen) < n:
        dist_masked = dist.copy()
        dist_masked[chosen] = -np.inf
        best = np.flatnonzero(dist_masked == dist_masked.max())
        pick = int(rng.choice(best))
        chosen.append(pick)
        dist = np.minimum(dist, np.linalg.norm(points - points[pick], axis=1))
    return chosen
