"""Prior on the per-feature noise scale sigma_g: an inverse-gamma on sigma^2, as a density on sigma.

The calibration follows the Sparse VAE reference: nu = 3 and xi chosen from the 5% quantile
of the column standard deviations.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints

__all__ = ["calibrate_sigma_prior", "SigmaPrior", "CHI2_3_Q10_OVER_3"]

#: chi-square(3) 10% quantile divided by 3
CHI2_3_Q10_OVER_3 = 0.1948


def calibrate_sigma_prior(col_sd_g, nu: float = 3.0, quantile: float = 0.05):
    """Return ``(nu, xi)`` with ``xi = 0.1948 * s^2``, ``s`` the 5% quantile of column sds.

    Parameters
    ----------
    col_sd_g : array-like, shape (G,)
        Standard deviation of each feature.
    nu : float
        Prior degrees of freedom (3 in the paper).
    quantile : float
        Which quantile of the column sds sets the scale.

    Returns
    -------
    tuple of float
        ``(nu, xi)``; sigma^2 ~ InverseGamma(nu / 2, nu * xi / 2).
    """
    sd = torch.as_tensor(col_sd_g, dtype=torch.float64).flatten()
    s = float(torch.quantile(sd, quantile).clamp_min(1e-3))
    return float(nu), CHI2_3_Q10_OVER_3 * s * s


class SigmaPrior(TorchDistribution):
    """Density of sigma > 0 when ``sigma^2 ~ InverseGamma(nu/2, nu xi/2)``.

    ``log p(sigma) = log IG(sigma^2) + log(2 sigma)``; sampling draws sigma^2 from the
    inverse gamma and takes the square root.

    Parameters
    ----------
    nu, xi : float
        From :func:`calibrate_sigma_prior`.
    batch_shape : torch.Size
        Batch shape.
    """

    arg_constraints = {}
    support = constraints.positive

    def __init__(self, nu: float, xi: float, batch_shape=torch.Size(), validate_args=None):
        self.nu, self.xi = float(nu), float(xi)
        alpha, beta = self.nu / 2.0, self.nu * self.xi / 2.0
        self._alpha, self._beta = alpha, beta
        self._const = alpha * math.log(beta) - math.lgamma(alpha) + math.log(2.0)
        super().__init__(torch.Size(batch_shape), torch.Size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return SigmaPrior(self.nu, self.xi, batch_shape)

    def log_prob(self, sigma):
        log_s = torch.log(sigma)
        # IG(s2; a, b) = b^a / Gamma(a) s2^(-a-1) exp(-b / s2), times the Jacobian 2 sigma
        return self._const - (2.0 * self._alpha + 1.0) * log_s - self._beta / sigma**2

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            g = torch.distributions.Gamma(torch.full(shape, self._alpha), self._beta).sample()
            return g.reciprocal().sqrt()
