"""A Gaussian copula with a low-rank correlation, over any marginals that give normal scores.

``w_i = F_i^-1(Phi(q_i))`` with ``q ~ N(0, C)`` and ``C`` the correlation matrix of
``Sigma = U U^T + I`` (``U``: n x r). Each ``w_i`` keeps its marginal exactly; the copula adds
the correlations. The joint density is

``log q(w) = sum_i log q_i(w_i) + log N(q; 0, C) - sum_i log N(q_i; 0, 1)``, ``q_i = S_i(w_i)``,

with ``S_i = Phi^-1 o F_i`` the normal-score function, and its entropy is the marginals' plus
``-1/2 log det C``, so correlating the entries costs entropy exactly as it should.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import LowRankMultivariateNormal, TorchDistribution, constraints

__all__ = ["LowRankGaussianCopula"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class LowRankGaussianCopula(TorchDistribution):
    """Joint distribution of all entries of ``marginal``'s batch, coupled by a Gaussian copula.

    Parameters
    ----------
    marginal : TorchDistribution
        Scalar-event distribution whose batch (shape B, n = prod(B) entries) is the event of
        the copula. It must provide ``log_prob``, ``normal_score(value)`` (``Phi^-1(F(value))``,
        differentiable) and ``from_normal_score(score)`` (the quantile, reparameterised), as
        :class:`~pyro_sparse.distributions.TiltedSpikeSlabLasso` does.
    cov_factor : torch.Tensor
        ``U``, shape (n, r); the copula's correlation is that of ``U U^T + I``.

    Notes
    -----
    ``rsample`` draws ``y = U f + e`` (``f ~ N(0, I_r)``, ``e ~ N(0, I_n)``), standardises it to
    the normal scores ``q = y / sqrt(diag Sigma)`` and maps them through the marginal
    quantiles. The event shape is B; the batch shape is empty.
    """

    arg_constraints = {"cov_factor": constraints.real}
    support = constraints.real
    has_rsample = True

    def __init__(self, marginal, cov_factor, validate_args=None):
        if marginal.event_shape != torch.Size():
            raise ValueError("the marginal must have scalar events, got event shape "
                             f"{tuple(marginal.event_shape)}")
        if len(marginal.batch_shape) == 0:
            raise ValueError("the marginal needs a batch of entries to couple (batch shape ())")
        n = math.prod(marginal.batch_shape)
        if cov_factor.dim() != 2 or cov_factor.shape[0] != n:
            raise ValueError(f"cov_factor must have shape (n, r) with n = {n} entries, got "
                             f"{tuple(cov_factor.shape)}")
        self.marginal, self.cov_factor = marginal, cov_factor
        super().__init__(torch.Size(), marginal.batch_shape, validate_args=validate_args)

    @property
    def _diag_sd(self) -> torch.Tensor:
        """sqrt(diag Sigma), shape B."""
        return (1.0 + self.cov_factor.pow(2).sum(-1)).sqrt().reshape(self.event_shape)

    def rsample(self, sample_shape=torch.Size(), generator=None):
        """Draws with reparameterisation gradients (``generator`` makes them reproducible)."""
        shape = self._extended_shape(sample_shape)
        U = self.cov_factor
        e = torch.randn(shape, generator=generator, device=U.device, dtype=U.dtype)
        f = torch.randn((*sample_shape, U.shape[1]), generator=generator, device=U.device,
                        dtype=U.dtype)
        y = e + (f @ U.T).reshape(shape)
        return self.marginal.from_normal_score(y / self._diag_sd)

    def sample(self, sample_shape=torch.Size(), generator=None):
        with torch.no_grad():
            return self.rsample(sample_shape, generator)

    def log_copula_density(self, score) -> torch.Tensor:
        """``log N(q; 0, C) - sum_i log N(q_i; 0, 1)`` at normal scores ``q`` (shape S + B)."""
        d = self._diag_sd
        flat = (score * d).reshape(*score.shape[:score.dim() - len(self.event_shape)], -1)
        U = self.cov_factor.to(score.dtype)
        mvn = LowRankMultivariateNormal(torch.zeros_like(U[:, 0]), U,
                                        torch.ones_like(U[:, 0]))
        event_dims = tuple(range(-len(self.event_shape), 0))
        std = -0.5 * score**2 - _LOG_SQRT_2PI
        return mvn.log_prob(flat) + d.log().sum() - std.sum(event_dims)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        event_dims = tuple(range(-len(self.event_shape), 0))
        log_marg = self.marginal.log_prob(value).sum(event_dims)
        return log_marg + self.log_copula_density(self.marginal.normal_score(value))
