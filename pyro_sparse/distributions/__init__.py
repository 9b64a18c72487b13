"""Probability pieces with no networks: the spike-and-slab-lasso prior and the noise prior."""

from .copula import LowRankGaussianCopula
from .noise import SigmaPrior, calibrate_sigma_prior
from .ssl import (
    PSTAR_VARIANTS,
    SpikeSlabLasso,
    adaptive_lasso_penalty,
    check_spike_rates,
    estimated_support,
    eta_mstep,
    inclusion_prob,
    laplace_log_density,
    ssl_log_prob,
)
from .tilted_ssl import TiltedSpikeSlabLasso

__all__ = [
    "LowRankGaussianCopula",
    "PSTAR_VARIANTS",
    "SigmaPrior",
    "SpikeSlabLasso",
    "TiltedSpikeSlabLasso",
    "adaptive_lasso_penalty",
    "calibrate_sigma_prior",
    "check_spike_rates",
    "estimated_support",
    "eta_mstep",
    "inclusion_prob",
    "laplace_log_density",
    "ssl_log_prob",
]
