"""The spike-and-slab lasso (SSL) prior on the loadings W: marginal density and inclusion maths.

Pure functions (Laplace log-densities, inclusion probability p*, the eta M-step, the EM
adaptive-lasso penalty) and a Pyro distribution for the two-Laplace mixture with gamma
marginalised out.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pyro.distributions import TorchDistribution, constraints

__all__ = [
    "laplace_log_density",
    "ssl_log_prob",
    "inclusion_prob",
    "eta_mstep",
    "adaptive_lasso_penalty",
    "SpikeSlabLasso",
    "PSTAR_VARIANTS",
    "estimated_support",
    "check_spike_rates",
]

PSTAR_VARIANTS = ("standard", "authors")

_EPS = 1e-10


def check_spike_rates(lambda0: float, lambda1: float) -> None:
    """Raise unless the spike is at least as concentrated as the slab (``lambda0 >= lambda1``).

    Parameters
    ----------
    lambda0, lambda1 : float
        Spike and slab Laplace rates, both already checked to be positive.

    Raises
    ------
    ValueError
        When ``lambda0 < lambda1``: the "spike" would then be the wider component, and every
        inclusion probability p* would say the opposite of what it means. ``lambda0 ==
        lambda1`` is allowed (a single Laplace prior, the paper's Slab variant).
    """
    if lambda0 < lambda1:
        raise ValueError(f"lambda0 (spike rate, {lambda0}) must be >= lambda1 (slab rate, "
                         f"{lambda1}): the spike is the narrower Laplace component")


def laplace_log_density(w: torch.Tensor, lam: float, normalised: bool = True) -> torch.Tensor:
    """Log of the Laplace density ``(lam / 2) exp(-lam |w|)``.

    Parameters
    ----------
    w : torch.Tensor
        Points at which to evaluate.
    lam : float
        Rate (inverse scale) of the Laplace distribution.
    normalised : bool
        If False, drop the ``log(lam / 2)`` constant (the authors' variant).

    Returns
    -------
    torch.Tensor
        Same shape as ``w``.
    """
    out = -lam * w.abs()
    if normalised:
        out = out + math.log(lam / 2.0)
    return out


def _clamp_eta(eta: torch.Tensor) -> torch.Tensor:
    return eta.clamp(_EPS, 1.0 - _EPS)


def ssl_log_prob(w_gk, eta_k, lambda0: float, lambda1: float) -> torch.Tensor:
    """Marginal SSL log-density ``log(eta psi1(w) + (1 - eta) psi0(w))`` per entry.

    Parameters
    ----------
    w_gk : torch.Tensor, shape (G, K)
        Loadings.
    eta_k : torch.Tensor, shape (K,) or broadcastable to ``w_gk``
        Slab probability per factor.
    lambda0, lambda1 : float
        Spike and slab Laplace rates (``lambda0 > lambda1``).

    Returns
    -------
    torch.Tensor, shape (G, K)
    """
    eta = _clamp_eta(eta_k)
    slab = torch.log(eta) + laplace_log_density(w_gk, lambda1)
    spike = torch.log1p(-eta) + laplace_log_density(w_gk, lambda0)
    return torch.logaddexp(slab, spike)


def inclusion_prob(w_gk, eta_k, lambda0: float, lambda1: float, variant: str = "standard"):
    """Posterior slab probability ``p*_gk = P(gamma_gk = 1 | w_gk, eta_k)``.

    Parameters
    ----------
    w_gk : torch.Tensor, shape (..., G, K)
        Loadings.
    eta_k : torch.Tensor, broadcastable to ``w_gk``
        Slab probability per factor.
    lambda0, lambda1 : float
        Spike and slab Laplace rates.
    variant : {"standard", "authors"}
        ``"standard"`` uses the normalised Laplace densities. ``"authors"`` drops the
        ``lambda / 2`` constants as the authors' code does, which inflates p*.

    Returns
    -------
    torch.Tensor
        p* with the shape of ``w_gk``, in [0, 1].
    """
    if variant not in PSTAR_VARIANTS:
        raise ValueError(f"variant must be one of {PSTAR_VARIANTS}, got {variant!r}")
    normalised = variant == "standard"
    eta = _clamp_eta(eta_k)
    slab = torch.log(eta) + laplace_log_density(w_gk, lambda1, normalised)
    spike = torch.log1p(-eta) + laplace_log_density(w_gk, lambda0, normalised)
    return torch.sigmoid(slab - spike)


def eta_mstep(pstar_gk: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """Closed-form M-step for eta: ``(sum_g p*_gk + a - 1) / (a + b + G - 2)``.

    Parameters
    ----------
    pstar_gk : torch.Tensor, shape (G, K)
        Inclusion probabilities.
    a, b : float
        Beta prior on eta.

    Returns
    -------
    torch.Tensor, shape (K,)
        Clamped to [1e-10, 1 - 1e-10].
    """
    G = pstar_gk.shape[-2]
    eta = (pstar_gk.sum(-2) + a - 1.0) / (a + b + G - 2.0)
    return _clamp_eta(eta)


def adaptive_lasso_penalty(w_gk, pstar_gk, lambda0: float, lambda1: float) -> torch.Tensor:
    """EM penalty ``sum [lambda1 p* + lambda0 (1 - p*)] |w|`` (a scalar).

    Its gradient in ``w`` (p* held fixed) equals minus the gradient of the summed
    :func:`ssl_log_prob` when p* is the standard :func:`inclusion_prob`.
    """
    return ((lambda1 * pstar_gk + lambda0 * (1.0 - pstar_gk)) * w_gk.abs()).sum()


class SpikeSlabLasso(TorchDistribution):
    """Two-Laplace mixture ``eta Laplace(0, 1/lambda1) + (1 - eta) Laplace(0, 1/lambda0)``.

    The slab indicator gamma is marginalised exactly. With ``variant="authors"`` the
    log-density is replaced by the EM objective of the authors' code (expected complete-data
    log-density under their p*, held fixed), which is what their MAP+EM optimises.

    Parameters
    ----------
    eta : torch.Tensor
        Slab probability, broadcastable to the batch shape.
    lambda0, lambda1 : float
        Spike and slab rates.
    variant : {"standard", "authors"}
        See :func:`inclusion_prob`.
    """

    arg_constraints = {"eta": constraints.unit_interval}
    support = constraints.real
    has_rsample = False

    def __init__(self, eta, lambda0: float, lambda1: float, variant: str = "standard",
                 validate_args=None):
        if variant not in PSTAR_VARIANTS:
            raise ValueError(f"variant must be one of {PSTAR_VARIANTS}, got {variant!r}")
        self.eta = torch.as_tensor(eta)
        self.lambda0, self.lambda1, self.variant = float(lambda0), float(lambda1), variant
        super().__init__(self.eta.shape, torch.Size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return SpikeSlabLasso(self.eta.expand(batch_shape), self.lambda0, self.lambda1,
                              self.variant)

    def log_prob(self, value):
        if self.variant == "standard":
            return ssl_log_prob(value, self.eta, self.lambda0, self.lambda1)
        eta = _clamp_eta(self.eta)
        p = inclusion_prob(value.detach(), eta.detach(), self.lambda0, self.lambda1, "authors")
        slab = torch.log(eta) + laplace_log_density(value, self.lambda1, False)
        spike = torch.log1p(-eta) + laplace_log_density(value, self.lambda0, False)
        return p * slab + (1.0 - p) * spike

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            gamma = torch.bernoulli(self.eta.expand(shape))
            rate = self.lambda1 * gamma + self.lambda0 * (1.0 - gamma)
            return torch.distributions.Laplace(torch.zeros_like(rate), 1.0 / rate).sample()

    def inclusion_prob(self, value):
        """p* of ``value`` under this prior (see :func:`inclusion_prob`)."""
        return inclusion_prob(value, self.eta, self.lambda0, self.lambda1, self.variant)


def estimated_support(W_gk, inclusion_gk=None, w_threshold: float = 0.01,
                      p_threshold: float = 0.5) -> np.ndarray:
    """Thresholded support ``S_gk = |W_gk| >= w_threshold and p*_gk >= p_threshold``.

    Parameters
    ----------
    W_gk : array-like, shape (G, K)
        Loadings.
    inclusion_gk : array-like, shape (G, K), optional
        Inclusion probabilities p*; without them only ``|W|`` is thresholded.
    w_threshold, p_threshold : float
        The rule of the paper's code: 0.01 and 0.5.

    Returns
    -------
    numpy.ndarray of bool, shape (G, K)
    """
    S = np.abs(np.asarray(W_gk)) >= w_threshold
    if inclusion_gk is not None:
        S &= np.asarray(inclusion_gk) >= p_threshold
    return S
