"""BoTorch surrogates for :mod:`.nehvi`: one exact GP per modelled outcome (each objective, each SLO constraint) on
the encoded space (:meth:`SearchSpace.encode`, the unit cube), gathered in a :class:`botorch.models.ModelListGP`
so that every outcome may have its own training points and noise.

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
from gpytorch.mlls import ExactMarginalLogLikelihood

DTYPE = torch.float64
#: L-BFGS-B iterations per fit (scipy's default is 15000): the mixed kernel's long tail of tiny improvements costs
#: seconds per GP and changes the predictions little (see the module docstring).
MAXITER = 150


def tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=float), dtype=DTYPE)


def fit_outcome_gp(X: np.ndarray, y: np.ndarray, noise_var: float | None = None,
                   cat_dims: list[int] | None = None) -> SingleTaskGP:
    """One fitted GP of ``y`` (n,) on ``X`` (n, d) in [0, 1]^d. ``noise_var``: the known variance of one
    observation of ``y`` (fixed noise), None to infer it. ``cat_dims``: categorical columns (see the module)."""
    train_X, train_Y = tensor(X), tensor(y).reshape(-1, 1)
    Yvar = None if noise_var is None else torch.full_like(train_Y, max(float(noise_var), 1e-10))
    if cat_dims:
        gp = MixedSingleTaskGP(train_X, train_Y, cat_dims=list(cat_dims), train_Yvar=Yvar)
    else:
        gp = SingleTaskGP(train_X, train_Y, train_Yvar=Yvar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BoTorch's optimisation and input-scaling warnings: nothing to act on here
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp),
                         optimizer_kwargs={"options": {"maxiter": MAXITER}})
    return gp


def fit_model_list(X: list[np.ndarray], Y: list[np.ndarray], noise: list[float | None],
                   cat_dims: list[int] | None = None) -> ModelListGP:
    """A :class:`ModelListGP` of one :func:`fit_outcome_gp` per outcome ``j`` (training points ``X[j]``, ``Y[j]``,
    known variance ``noise[j]`` or None); its posterior has one output per outcome, in this order."""
    return ModelListGP(*(fit_outcome_gp(x, y, v, cat_dims) for x, y, v in zip(X, Y, noise)))


def noise_variance(gp: SingleTaskGP) -> np.ndarray:
    """The likelihood's noise variance of ``gp`` on the outcome's original scale (undoing the standardisation)."""
    noise = gp.likelihood.noise.detach()
    transform = getattr(gp, "outcome_transform", None)
    if transform is not None and hasattr(transform, "stdvs"):
        noise = noise * transform.stdvs.detach().squeeze() ** 2
    return noise.cpu().numpy().reshape(-1)
