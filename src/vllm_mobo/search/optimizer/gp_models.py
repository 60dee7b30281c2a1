"""BoTorch surrogates for :mod:`.nehvi`: one exact GP per modelled outcome (each objective, each SLO constraint) on
the encoded space (:meth:`SearchSpace.encode`, the unit cube), gathered in a :class:`botorch.models.ModelListGP`
so that every outcome may have its own training points and noise.

Where every outcome was measured on the same points with the same kind of noise (known, or inferred), they share
one batched multi-output GP instead: BoTorch's :class:`~botorch.models.SingleTaskGP` with an (n, m) target is m
independent GPs, each with its own hyperparameters, fitted jointly (the sum of their marginal log likelihoods) and
evaluated in one vectorised pass. Same models, a third of the time: fitting 4 objectives on 44 points of the gpu
space took 3.3 s batched against 9.5 s one by one, posterior means within 4% of an sd of each other (a 2-core
machine, once).

- Kernel: BoTorch's default :class:`~botorch.models.SingleTaskGP` (RBF with one length scale per dimension and the
  dimension-scaled length-scale prior of Hvarfner et al. 2024) where every knob is ordered or boolean. A boolean has
  two levels, so a stationary ARD kernel on {0, 1} already is a categorical kernel (one learnt correlation between
  the levels). Where the space has an unordered knob of 3+ values (one-hot columns, e.g. ``performance_mode``),
  :class:`~botorch.models.MixedSingleTaskGP` (Ru et al. 2020, CoCaBO's sum-and-product of a continuous and a
  categorical kernel) with the boolean and one-hot columns as ``cat_dims``: a category change then is a change of
  category, not a distance along a made-up axis.
- Noise: with a known variance (``noise[j]``, on the outcome's own scale) a fixed noise (``train_Yvar``: BoTorch's
  :class:`~gpytorch.likelihoods.FixedNoiseGaussianLikelihood`); else a homoscedastic noise inferred with the
  other hyperparameters (BoTorch's default prior; no cap at a fraction of the variance).
- Targets are standardised (BoTorch's :class:`~botorch.models.transforms.outcome.Standardize`; posteriors come back on
  the original scale); hyperparameters by :func:`botorch.fit.fit_gpytorch_mll` (L-BFGS-B on the exact marginal
  log likelihood, with BoTorch's retries), at most :data:`MAXITER` iterations.

The mixed kernel, checked once on a synthetic 4-knob space with a 3-level knob (10 and 25 training points, 2
seeds, held-out RMSE of 4 log objectives; a check, not a benchmark): half the error of the RBF on the encoding or
less, in most cases; it has more hyperparameters and its L-BFGS-B ran ~1000 iterations to converge (20 s per GP on
a busy 2-core machine) where 150 kept most of the gain.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import MixedSingleTaskGP, ModelListGP, SingleTaskGP
from botorch.models.model import Model
from gpytorch.mlls import ExactMarginalLogLikelihood

DTYPE = torch.float64
#: L-BFGS-B iterations per fit (scipy's default is 15000): the mixed kernel's long tail of tiny improvements costs
#: seconds per GP and changes the predictions little (see the module docstring).
MAXITER = 150


def tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=float), dtype=DTYPE)


def fit_outcome_gp(X: np.ndarray, y: np.ndarray, noise_var=None, cat_dims: list[int] | None = None) -> SingleTaskGP:
    """One fitted GP of ``y`` (n,) on ``X`` (n, d) in [0, 1]^d, or a batch of m independent GPs of ``y`` (n, m).
    ``noise_var``: the known variance of one observation of ``y`` (fixed noise; one per column), None to infer
    it. ``cat_dims``: categorical columns (see the module)."""
    train_X, train_Y = tensor(X), tensor(y).reshape(len(X), -1)
    Yvar = None if noise_var is None else (
        torch.ones_like(train_Y) * tensor(np.maximum(np.asarray(noise_var, dtype=float), 1e-10)).reshape(1, -1))
    if cat_dims:
        gp = MixedSingleTaskGP(train_X, train_Y, cat_dims=list(cat_dims), train_Yvar=Yvar)
    else:
        gp = SingleTaskGP(train_X, train_Y, train_Yvar=Yvar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BoTorch's optimisation and input-scaling warnings: nothing to act on here
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp),
                         optimizer_kwargs={"options": {"maxiter": MAXITER}})
    return gp


def fit_outcomes(X: list[np.ndarray], Y: list[np.ndarray], noise: list[float | None],
                 cat_dims: list[int] | None = None) -> Model:
    """The GPs of every outcome ``j`` (training points ``X[j]``, ``Y[j]``, known variance ``noise[j]`` or None); the
    model's posterior has one output per outcome, in this order. Where every outcome has the same training points
    and the same kind of noise, one batched :func:`fit_outcome_gp` (see the module); else a :class:`ModelListGP` of
    one GP per outcome (a batched member inside a ModelListGP breaks BoTorch's cached-Cholesky sampling for some
    batch shapes, so outcomes are not grouped)."""
    if all(_shared(X, noise, j) for j in range(1, len(Y))):
        return fit_outcome_gp(X[0], np.column_stack(Y), None if noise[0] is None else noise, cat_dims)
    return ModelListGP(*(fit_outcome_gp(x, y, v, cat_dims) for x, y, v in zip(X, Y, noise)))


def _shared(X: list[np.ndarray], noise: list, j: int) -> bool:
    """Outcome ``j`` has the training points and the kind of noise of outcome 0."""
    return (noise[0] is None) == (noise[j] is None) and X[0].shape == X[j].shape and np.array_equal(X[0], X[j])


def noise_variance(gp: SingleTaskGP) -> np.ndarray:
    """The likelihood's noise variance of ``gp`` on the outcome's original scale (undoing the standardisation): one
    value per training point (fixed noise) or one in all (inferred); a row per GP of a batch of m."""
    noise = gp.likelihood.noise.detach()
    transform = getattr(gp, "outcome_transform", None)
    if transform is not None and hasattr(transform, "stdvs"):
        var = transform.stdvs.detach().reshape(-1) ** 2
        noise = noise * (var.reshape(-1, 1) if gp.num_outputs > 1 else var)
    return noise.cpu().numpy().reshape(gp.num_outputs, -1) if gp.num_outputs > 1 else noise.cpu().numpy().reshape(-1)
