"""Exact expected hypervolume improvement (EHVI) for two minimised objectives with independent Gaussian
predictions.

With the front sorted by the first objective, ``a_1 < ... < a_n`` and ``b_1 > ... > b_n``, and the reference point
``r``, the region a new point ``y`` can add is the union of strips ``S_i = [a_i, a_{i+1}) x (-inf, b_i)`` for
``i = 0..n`` (``a_0 = -inf``, ``a_{n+1} = r_1``, ``b_0 = r_2``). The improvement inside strip ``i`` is
``(a_{i+1} - max(y_1, a_i))^+ (b_i - y_2)^+``, a product of two functions of independent variables, so

    EHVI = sum_i ( E[(a_{i+1} - Y_1)^+] - E[(a_i - Y_1)^+] ) * E[(b_i - Y_2)^+],

with ``E[(c - Y)^+] = (c - mu) Phi(z) + sigma phi(z)``, ``z = (c - mu) / sigma`` for ``Y ~ N(mu, sigma^2)``.
This is the strip decomposition of Emmerich et al. (2016); exact, O(n) per point after sorting.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from .pareto import pareto_mask


def expected_shortfall(c: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """E[(c - Y)^+] for Y ~ N(mu, sigma^2), elementwise; exact also at sigma = 0."""
    c, mu, sigma = np.broadcast_arrays(np.asarray(c, float), np.asarray(mu, float), np.asarray(sigma, float))
    out = np.maximum(c - mu, 0.0)
    pos = sigma > 0
    z = (c[pos] - mu[pos]) / sigma[pos]
    out = out.astype(float)
    out[pos] = (c[pos] - mu[pos]) * norm.cdf(z) + sigma[pos] * norm.pdf(z)
    return out


def ehvi_2d(mu: np.ndarray, sigma: np.ndarray, front: np.ndarray, ref_point: np.ndarray) -> np.ndarray:
    """Exact EHVI of each row of ``mu``/``sigma`` (shape (m, 2)) against ``front`` (minimisation, shape (n, 2))."""
    mu = np.atleast_2d(np.asarray(mu, float))
    sigma = np.atleast_2d(np.asarray(sigma, float))
    ref = np.asarray(ref_point, float)
    front = np.asarray(front, float).reshape(-1, 2)
    front = front[np.all(front < ref, axis=1)]
    if len(front):
        front = front[pareto_mask(front)]
        front = np.unique(front, axis=0)
        front = front[np.argsort(front[:, 0])]
    a = np.concatenate(([-np.inf], front[:, 0], [ref[0]]))  # a_0 .. a_{n+1}
    b = np.concatenate(([ref[1]], front[:, 1]))  # b_0 .. b_n
    total = np.zeros(len(mu))
    for i in range(len(b)):
        width = expected_shortfall(a[i + 1], mu[:, 0], sigma[:, 0])
        if i > 0:  # E[(a_0 - Y)^+] = 0 for a_0 = -inf
            width = width - expected_shortfall(a[i], mu[:, 0], sigma[:, 0])
        height = expected_shortfall(b[i], mu[:, 1], sigma[:, 1])
        total += width * height
    return np.maximum(total, 0.0)
