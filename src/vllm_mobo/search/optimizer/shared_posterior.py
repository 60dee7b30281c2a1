"""qLogNEHVI that scores many single configurations from one shared posterior: the same acquisition values as
BoTorch's :class:`~botorch.acquisition.multi_objective.logei.qLogNoisyExpectedHypervolumeImprovement`, with the
posterior computed once per chunk of configurations instead of once per configuration.

To score ``X`` (b, 1, d) BoTorch needs each configuration's joint posterior with the baseline points ``X_baseline``
(n, d): it asks the model for ``b`` posteriors over ``(X_baseline, x)`` (b, n + 1, d), so the kernel between every
pair of baseline points, and between them and the training points, is evaluated ``b`` times (BoTorch's own
TODO in ``NoisyExpectedHypervolumeMixin._compute_posterior_samples_and_concat_pending``). With the cached Cholesky
factor of the baseline block (``cache_root``), sampling reads only each configuration's covariance row with the
baseline and its own variance (:func:`botorch.utils.low_rank.sample_cached_cholesky`). Those are blocks of ONE
posterior over ``(X_baseline, x_1, ..., x_c)``: the covariance of a pair of points does not depend on which other
points are predicted beside them. :class:`SharedPosteriorQLogNEHVI` computes that posterior for chunks of
:data:`FLAT_CHUNK` configurations and hands BoTorch a batch posterior (b, n + 1) assembled from its blocks, exact
up to floating point; everything else (base samples, cached Cholesky update, box decompositions, the log-EHVI) is
BoTorch's. Other calls (q > 1, pending points, no cached root) take BoTorch's path unchanged.

Times before and after (``benchmarks/proposal_time.py``): docs/optimizer-benchmark/README.md.
"""

from __future__ import annotations

import torch
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.posteriors.gpytorch import GPyTorchPosterior
from botorch.utils.low_rank import extract_batch_covar
from gpytorch.distributions import MultitaskMultivariateNormal
from linear_operator.operators import BlockDiagLinearOperator, DenseLinearOperator

#: Configurations per shared posterior: its covariance has (n + FLAT_CHUNK)^2 entries per outcome, so the kernel
#: evaluations per configuration are about (n + FLAT_CHUNK)^2 / FLAT_CHUNK (n baseline points), against
#: (n + 1) (2n + 1) when each configuration has its own posterior.
FLAT_CHUNK = 128


class SharedPosteriorQLogNEHVI(qLogNoisyExpectedHypervolumeImprovement):
    """:class:`~botorch.acquisition.multi_objective.logei.qLogNoisyExpectedHypervolumeImprovement` whose
    single-configuration evaluations (``X`` of shape (b, 1, d), no pending point) share one posterior
    per :data:`FLAT_CHUNK` configurations (see the module). Same constructor and values."""

    def _shared_path(self, X: torch.Tensor) -> bool:
        """Whether ``X`` is scored from shared posteriors: single configurations in a batch, no pending point, a
        cached Cholesky factor of the baseline, a multi-output model without batch dimensions."""
        return (X.dim() == 3 and X.shape[-2] == 1 and self.X_pending is None and self._cache_root
                and hasattr(self, "_baseline_L") and self.X_baseline.dim() == 2 and self.model.num_outputs > 1)

    def _compute_posterior_samples_and_concat_pending(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._shared_path(X):
            return super()._compute_posterior_samples_and_concat_pending(X)
        posterior = self._batch_posterior(X)
        self._set_sampler(q_in=1, posterior=posterior)
        return self._get_f_X_samples(posterior=posterior, q_in=1), X

    def _batch_posterior(self, X: torch.Tensor) -> GPyTorchPosterior:
        """The posterior over ``(X_baseline, X[i])`` for every ``i``, batch shape (b,), event (n + 1, m), as
        ``self.model.posterior`` would return it for ``X_full`` (b, n + 1, d), assembled from posteriors over
        ``X_baseline`` and :data:`FLAT_CHUNK` configurations at a time."""
        base = self.X_baseline
        n = base.shape[-2]
        means, rows, diags = [], [], []
        for chunk in X[:, 0, :].split(FLAT_CHUNK):
            post = self.model.posterior(torch.cat([base, chunk]))
            cov = extract_batch_covar(post.distribution).to_dense()  # (m, n + c, n + c): one block per outcome
            mean = post.mean  # (n + c, m)
            means.append(mean[n:])
            rows.append(cov[:, n:, :n])
            diags.append(cov[:, n:, n:].diagonal(dim1=-2, dim2=-1))
        m = means[0].shape[-1]
        base_mean, base_cov = mean[:n], cov[:, :n, :n]
        b = X.shape[0]
        x_mean, row, diag = torch.cat(means), torch.cat(rows, dim=1), torch.cat(diags, dim=1)  # (b,m) (m,b,n) (m,b)
        full = torch.empty(b, m, n + 1, n + 1, dtype=X.dtype, device=X.device)
        full[..., :n, :n] = base_cov
        full[..., n, :n] = row.transpose(0, 1)
        full[..., :n, n] = row.transpose(0, 1)
        full[..., n, n] = diag.transpose(0, 1)
        loc = torch.cat([base_mean.expand(b, n, m), x_mean.unsqueeze(1)], dim=1)  # (b, n + 1, m)
        covar = BlockDiagLinearOperator(DenseLinearOperator(full), block_dim=-3)
        return GPyTorchPosterior(MultitaskMultivariateNormal(loc, covar, interleaved=False))

