"""The Sparse VAE as a Pyro model: explicit eta, gamma, W, sigma and z sites (Moran et al.).

Each feature g is decoded by one shared network from the masked factors ``W_g * z_n``; the
spike-and-slab-lasso prior on ``W`` (gamma marginalised exactly) makes the decoder sparse.
"""

from __future__ import annotations

import numbers

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from ..distributions import (
    PSTAR_VARIANTS,
    SigmaPrior,
    SpikeSlabLasso,
    check_spike_rates,
    inclusion_prob,
)
from ..likelihoods import check_library, check_likelihood, dispersion_parameter
from ..nn import SparseDecoder
from ._inputs import check_minibatch
from ._plates import full_plate
from ._register import observe, register_params

__all__ = ["SparseVAEModel", "MARGINALIZE", "check_positive_int", "z_site"]

MARGINALIZE = ("mixture", "enumerate")


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as int if it is an integer >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def z_site(n_factors, corr_L, kl_weight, device):
    """Sample ``z_nk`` (inside the data plate): N(0, I), or N(0, L L^T) given ``corr_L``."""
    with poutine.scale(scale=kl_weight):
        if corr_L is None:
            prior = dist.Normal(torch.zeros(n_factors, device=device), 1.0).to_event(1)
        else:
            prior = dist.MultivariateNormal(torch.zeros(n_factors, device=device),
                                            scale_tril=corr_L)
        return pyro.sample("z", prior)


class SparseVAEModel(torch.nn.Module):
    """Generative model of the Sparse VAE.

    ::

        eta_k   ~ Beta(a, b)                                   plate factors
        gamma_gk ~ Bernoulli(eta_k)                            plates features x factors
        W_gk | gamma_gk ~ Laplace(0, 1/lambda1) or Laplace(0, 1/lambda0)
        sigma_g : sigma_g^2 ~ InverseGamma(nu/2, nu xi/2)       plate features (normal only)
        z_nk    ~ Normal(0, 1)   (or N(0, R), R ~ LKJ, with factor_correlation)   plate data
        x_ng    ~ likelihood(decoder(W_g * z_n))                 (NaN entries masked out)
        theta_g : negbin inverse dispersion, a parameter like the decoder's

    Parameters
    ----------
    n_features, n_factors, hidden_dim : int
        G, K and H.
    likelihood : {"normal", "bernoulli", "poisson", "negbin", "categorical"}
        Observation model (see :mod:`pyro_sparse.likelihoods`); missing entries (NaN) of
        the data are masked out of it.
    library : {"composition", "offset"}
        Row-total treatment of ``poisson`` and ``negbin`` (see
        :func:`pyro_sparse.likelihoods.log_rate`).
    lambda0, lambda1 : float
        Spike and slab Laplace rates.
    a, b : float
        Beta prior on eta (``b=None`` means ``b = G``).
    sigma_prior_params : tuple of float, optional
        ``(nu, xi)`` of the noise prior; default ``(3, 0.1948)`` (unit-sd columns).
    marginalize : {"mixture", "enumerate"}
        ``"mixture"`` integrates gamma out in closed form (use ``Trace_ELBO``);
        ``"enumerate"`` keeps an explicit ``gamma`` site enumerated in parallel (use
        ``TraceEnum_ELBO(max_plate_nesting=2)``). Both give the same ELBO.
    pstar : {"standard", "authors"}
        Inclusion-probability formula; ``"authors"`` reproduces the authors' code (drops the
        Laplace constants, optimises their EM objective). Only with ``marginalize="mixture"``.
    factor_correlation : bool
        Learn a factor correlation matrix R with an LKJ(``lkj_concentration``) prior.
    lkj_concentration : float
        LKJ shape; 1 is uniform over correlation matrices.

    Notes
    -----
    A plain ``torch.nn.Module``: in a user's SVI loop its parameters are registered with
    Pyro's parameter store on each call (see :func:`register_params`).

    Plates: ``data`` (dim -1), ``features`` (dim -2), ``factors`` (dim -1). The model takes
    a minibatch ``x_bg`` with the full data size ``n_data`` (and optionally the row indices
    ``idx``); ``pyro.plate("data", size=n_data, subsample=idx)`` scales the data terms by
    N / B so the ELBO is an unbiased estimate of the full-data ELBO. ``kl_weight`` scales
    the z terms and ``prior_weight`` the global priors (for warm-up schedules); both default
    to 1 (the true ELBO).
    """

    def __init__(self, n_features: int, n_factors: int, hidden_dim: int = 50,
                 likelihood: str = "normal", lambda0: float = 10.0, lambda1: float = 1.0,
                 a: float = 1.0, b: float | None = None, sigma_prior_params=None,
                 marginalize: str = "mixture", pstar: str = "standard",
                 factor_correlation: bool = False, lkj_concentration: float = 1.0,
                 library: str = "composition"):
        super().__init__()
        self.n_features = check_positive_int(n_features, "n_features")
        self.n_factors = check_positive_int(n_factors, "n_factors")
        self.hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        self.likelihood = check_likelihood(likelihood)
        self.library = check_library(library)
        if marginalize not in MARGINALIZE:
            raise ValueError(f"marginalize must be one of {MARGINALIZE}, got {marginalize!r}")
        if pstar not in PSTAR_VARIANTS:
            raise ValueError(f"pstar must be one of {PSTAR_VARIANTS}, got {pstar!r}")
        if pstar == "authors" and marginalize == "enumerate":
            raise ValueError("pstar='authors' needs marginalize='mixture'")
        if not (lambda0 > 0 and lambda1 > 0):
            raise ValueError(f"lambda0 and lambda1 must be > 0, got {lambda0}, {lambda1}")
        check_spike_rates(lambda0, lambda1)
        if not (a > 0):
            raise ValueError(f"a must be > 0, got {a}")
        b = float(self.n_features) if b is None else b
        if not (b > 0):
            raise ValueError(f"b must be > 0, got {b}")
        self.lambda0, self.lambda1, self.a, self.b = float(lambda0), float(lambda1), float(a), b
        self.sigma_prior_params = tuple(sigma_prior_params or (3.0, 0.1948))
        self.marginalize, self.pstar = marginalize, pstar
        self.factor_correlation = bool(factor_correlation)
        self.lkj_concentration = float(lkj_concentration)
        self.decoder = SparseDecoder(self.n_features, self.n_factors, self.hidden_dim)
        self.log_theta_g = dispersion_parameter(self.likelihood, self.n_features)
        self.register_buffer("beta_a_k", torch.full((self.n_factors,), self.a),
                             persistent=False)
        self.register_buffer("beta_b_k", torch.full((self.n_factors,), self.b),
                             persistent=False)

    # ------------------------------------------------------------------ sites
    def _global_sites(self, device):
        G, K = self.n_features, self.n_factors
        factors = full_plate("factors", K, -1)
        features = full_plate("features", G, -2)
        with factors:
            eta_k = pyro.sample("eta", dist.Beta(self.beta_a_k, self.beta_b_k))
        with features, factors:
            if self.marginalize == "enumerate":
                gamma = pyro.sample("gamma", dist.Bernoulli(eta_k),
                                    infer={"enumerate": "parallel"})
                rate = self.lambda1 * gamma + self.lambda0 * (1.0 - gamma)
                W_gk = pyro.sample("W", dist.Laplace(torch.zeros((), device=device), 1.0 / rate)
                                   .expand(torch.broadcast_shapes(rate.shape, (G, K))))
            else:
                W_gk = pyro.sample("W", SpikeSlabLasso(eta_k.expand(G, K), self.lambda0,
                                                       self.lambda1, self.pstar))
        sigma_g = None
        if self.likelihood == "normal":
            with features:
                nu, xi = self.sigma_prior_params
                sigma_g1 = pyro.sample("sigma", SigmaPrior(nu, xi, (G, 1)))
            sigma_g = sigma_g1.squeeze(-1)
        corr_L = None
        if self.factor_correlation:
            corr_L = pyro.sample("corr_L", dist.LKJCholesky(
                K, torch.tensor(self.lkj_concentration, device=device)))
        return eta_k, W_gk, sigma_g, corr_L

    def forward(self, x_bg=None, n_data=None, idx=None, kl_weight=1.0, prior_weight=1.0,
                n_samples=None):
        """Run the model on a minibatch.

        Parameters
        ----------
        x_bg : torch.Tensor, shape (B, G), optional
            Observed rows (NaN marks a missing entry); ``None`` samples new data (then
            give ``n_samples``).
        n_data : int, optional
            Full data size N (default B).
        idx : torch.Tensor, shape (B,), optional
            Row indices of the minibatch in the full data.
        kl_weight, prior_weight : float
            Weights of the z terms and of the global priors (1 for the true ELBO).
        n_samples : int, optional
            Rows to generate when ``x_bg`` is None.

        Returns
        -------
        torch.Tensor, shape (B, G)
            The decoder output (mean for ``normal``, logits for ``categorical``).
        """
        register_params("sparse_vae", self)
        device = self.decoder.V_gh.device
        if x_bg is not None:
            check_minibatch(x_bg, self.n_features, self.decoder.V_gh.dtype, n_data, idx)
        B = x_bg.shape[0] if x_bg is not None else int(n_samples or 1)
        with poutine.scale(scale=prior_weight):
            eta_k, W_gk, sigma_g, corr_L = self._global_sites(device)
        if idx is None and n_data is not None and n_data != B:
            idx = torch.arange(B, device=device)  # the loop owns sampling; the plate never draws
        with pyro.plate("data", size=n_data or B, subsample=idx, dim=-1):
            z_bk = z_site(self.n_factors, corr_L, kl_weight, device)
            out_bg = self.decoder(z_bk, W_gk)
            observe(self, out_bg, x_bg, sigma_g)
        return out_bg

    # ------------------------------------------------------------ helpers
    def inclusion_prob(self, W_gk: torch.Tensor, eta_k: torch.Tensor) -> torch.Tensor:
        """p*_gk for given loadings and eta under this model's SSL prior."""
        return inclusion_prob(W_gk, eta_k, self.lambda0, self.lambda1, self.pstar)

    def config(self) -> dict:
        """JSON-serialisable constructor arguments."""
        return dict(n_features=self.n_features, n_factors=self.n_factors,
                    hidden_dim=self.hidden_dim, likelihood=self.likelihood,
                    lambda0=self.lambda0, lambda1=self.lambda1, a=self.a, b=self.b,
                    sigma_prior_params=list(self.sigma_prior_params),
                    marginalize=self.marginalize, pstar=self.pstar,
                    factor_correlation=self.factor_correlation,
                    lkj_concentration=self.lkj_concentration, library=self.library)
