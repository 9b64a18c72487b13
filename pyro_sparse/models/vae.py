"""The dense VAE / beta-VAE baseline of the Sparse VAE paper as a Pyro model.

Same latent prior, likelihoods and noise prior as the Sparse VAE, but a dense decoder
(no W); ``beta`` multiplies the KL term of z (beta-VAE).
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine

from ..distributions import SigmaPrior
from ..likelihoods import check_library, check_likelihood, dispersion_parameter
from ..nn import DenseDecoder
from ._inputs import check_minibatch
from ._plates import full_plate
from ._register import observe, register_params
from .sparse_vae import check_positive_int, z_site

__all__ = ["VAEModel"]


class VAEModel(torch.nn.Module):
    """Dense VAE: ``z_n ~ N(0, I)``, ``x_n ~ likelihood(f(z_n))``; beta scales the z terms.

    Parameters
    ----------
    n_features, n_factors, hidden_dim : int
        G, K and H.
    likelihood : {"normal", "bernoulli", "poisson", "negbin", "categorical"}
        Observation model (NaN entries masked out).
    beta : float
        KL weight (1 is the VAE; > 1 the beta-VAE). Both the model's and the guide's z
        terms are multiplied by it.
    sigma_prior_params : tuple of float, optional
        ``(nu, xi)`` of the per-feature noise prior (normal only).
    library : {"composition", "offset"}
        Row-total treatment of ``poisson`` and ``negbin``.

    Notes
    -----
    Sites: ``sigma`` (plate features, dim -2; normal only), ``z`` and ``x`` (plate data).
    Call signature as :class:`~pyro_sparse.models.SparseVAEModel`.
    """

    def __init__(self, n_features: int, n_factors: int, hidden_dim: int = 50,
                 likelihood: str = "normal", beta: float = 1.0, sigma_prior_params=None,
                 library: str = "composition"):
        super().__init__()
        self.n_features = check_positive_int(n_features, "n_features")
        self.n_factors = check_positive_int(n_factors, "n_factors")
        self.hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        self.likelihood = check_likelihood(likelihood)
        self.library = check_library(library)
        if not (beta > 0):
            raise ValueError(f"beta must be > 0, got {beta}")
        self.beta = float(beta)
        self.sigma_prior_params = tuple(sigma_prior_params or (3.0, 0.1948))
        self.factor_correlation = False
        self.decoder = DenseDecoder(self.n_features, self.n_factors, self.hidden_dim)
        self.log_theta_g = dispersion_parameter(self.likelihood, self.n_features)

    def forward(self, x_bg=None, n_data=None, idx=None, kl_weight=1.0, prior_weight=1.0,
                n_samples=None):
        """Run the model on a minibatch; arguments as :meth:`SparseVAEModel.forward`."""
        register_params("vae", self)
        device = self.decoder.net[0].weight.device
        if x_bg is not None:
            check_minibatch(x_bg, self.n_features, self.decoder.net[0].weight.dtype, n_data,
                            idx)
        B = x_bg.shape[0] if x_bg is not None else int(n_samples or 1)
        sigma_g = None
        if self.likelihood == "normal":
            with poutine.scale(scale=prior_weight), full_plate("features", self.n_features, -2):
                nu, xi = self.sigma_prior_params
                sigma_g = pyro.sample(
                    "sigma", SigmaPrior(nu, xi, (self.n_features, 1))
                ).squeeze(-1)
        if idx is None and n_data is not None and n_data != B:
            idx = torch.arange(B, device=device)
        with pyro.plate("data", size=n_data or B, subsample=idx, dim=-1):
            z_bk = z_site(self.n_factors, None, kl_weight * self.beta, device)
            out_bg = self.decoder(z_bk)
            observe(self, out_bg, x_bg, sigma_g)
        return out_bg

    def config(self) -> dict:
        """JSON-serialisable constructor arguments."""
        return dict(n_features=self.n_features, n_factors=self.n_factors,
                    hidden_dim=self.hidden_dim, likelihood=self.likelihood, beta=self.beta,
                    sigma_prior_params=list(self.sigma_prior_params), library=self.library)
