"""Objective orientation, non-dominated sorting and hypervolume (pymoo), all in minimisation form."""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting


def to_minimisation(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Negate the maximised columns so that every objective is minimised."""
    values = np.asarray(values, dtype=float)
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return values * signs


def pareto_mask(points_min: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of a minimisation problem (first front of pymoo's sorting)."""
    points_min = np.asarray(points_min, dtype=float)
    mask = np.zeros(len(points_min), dtype=bool)
    if len(points_min):
        front = NonDominatedSorting().do(points_min, only_non_dominated_front=True)
        mask[front] = True
    return mask


def hypervolume(points_min: np.ndarray, ref_point: np.ndarray) -> float:
    """Hypervolume dominated by ``points_min`` and bounded by ``ref_point`` (0 when no point is inside)."""
    points_min = np.asarray(points_min, dtype=float).reshape(-1, len(ref_point))
    inside = np.all(points_min < ref_point, axis=1)
    if not inside.any():
        return 0.0
    return float(HV(ref_point=np.asarray(ref_point, dtype=float))(points_min[inside]))
