"""Surrogates: one Gaussian process per objective, and a feasibility classifier for crashes and OOMs.

Both are scikit-learn models. The GP uses a Matern-5/2 kernel with one length scale per encoded dimension
(ARD) times a constant, plus a white-noise term, on standardised targets; it is refitted every round.
scikit-optimize's GP is a subclass of this same scikit-learn class, so it is used directly.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessClassifier, GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel


def _kernel(dim: int):
    return ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        length_scale=np.full(dim, 0.5), length_scale_bounds=(1e-2, 1e2), nu=2.5
    ) + WhiteKernel(1e-3, (1e-6, 1e-1))


class ObjectiveModel:
    """Independent GPs, one per (minimised, already log-transformed) objective column."""

    def __init__(self, seed: int = 0, restarts: int = 3):
        self.seed = seed
        self.restarts = restarts
        self.models: list[GaussianProcessRegressor] = []

    def fit(self, X: np.ndarray, Y: np.ndarray, fixed_kernels: bool = False) -> "ObjectiveModel":
        """Fit on ``X`` (n, d) and ``Y`` (n, k). With ``fixed_kernels`` the hyperparameters of the previous fit are
        kept (used to condition on fantasy points when building a batch)."""
        new = []
        for j in range(Y.shape[1]):
            if fixed_kernels and self.models:
                gp = GaussianProcessRegressor(self.models[j].kernel_, optimizer=None, normalize_y=True)
            else:
                gp = GaussianProcessRegressor(
                    _kernel(X.shape[1]), normalize_y=True, n_restarts_optimizer=self.restarts, random_state=self.seed
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gp.fit(X, Y[:, j])
            new.append(gp)
        self.models = new
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mus, sds = [], []
        for gp in self.models:
            mu, sd = gp.predict(X, return_std=True)
            mus.append(mu)
            sds.append(np.maximum(sd, 1e-9))
        return np.column_stack(mus), np.column_stack(sds)


class FeasibilityModel:
    """P(a configuration runs) from the failures seen so far; 1 everywhere until both outcomes were seen."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.model: GaussianProcessClassifier | None = None

    def fit(self, X: np.ndarray, ok: np.ndarray) -> "FeasibilityModel":
        ok = np.asarray(ok, dtype=int)
        if len(np.unique(ok)) < 2:
            self.model = None
            self._constant = float(ok.mean()) if len(ok) else 1.0
            return self
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * RBF(length_scale=np.full(X.shape[1], 0.5), length_scale_bounds=(1e-2, 1e2))
        self.model = GaussianProcessClassifier(kernel, random_state=self.seed, n_restarts_optimizer=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit(X, ok)
        return self

    def probability(self, X: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.full(len(X), 1.0 if getattr(self, "_constant", 1.0) > 0 else 0.0)
        classes = list(self.model.classes_)
        return self.model.predict_proba(X)[:, classes.index(1)]
