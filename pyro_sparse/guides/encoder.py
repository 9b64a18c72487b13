"""Amortised Normal guide for the local factors z: q(z_n | x_n) = N(mu(x_n), diag s(x_n)^2)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from ..likelihoods import encoder_input
from ..models._inputs import check_minibatch
from ..models._register import register_params
from ..nn import GaussianEncoder

__all__ = ["AmortizedNormalGuide"]


class AmortizedNormalGuide(torch.nn.Module):
    """Encoder network guide for the ``z`` site (plate ``data``).

    Parameters
    ----------
    n_features, n_factors, hidden_dim : int
        G, K and H of the encoder.
    likelihood : str
        Decides what the encoder sees (see :func:`pyro_sparse.likelihoods.encoder_input`).
    beta : float
        Multiplies the z terms (must match the model's; 1 for the Sparse VAE).
    """

    def __init__(self, n_features: int, n_factors: int, hidden_dim: int,
                 likelihood: str = "normal", beta: float = 1.0):
        super().__init__()
        self.likelihood, self.beta = likelihood, float(beta)
        self.encoder = GaussianEncoder(n_features, n_factors, hidden_dim)
        # what the encoder sees in place of a missing entry (saved with the model)
        self.register_buffer("fill_g", torch.zeros(n_features))
        # per-feature centre and scale of the encoder's input (identity unless the estimator
        # standardises; saved with the model)
        self.register_buffer("in_loc_g", torch.zeros(n_features))
        self.register_buffer("in_scale_g", torch.ones(n_features))

    def set_fill(self, fill_g) -> None:
        """Set the encoder's imputation of missing entries (the training column means)."""
        with torch.no_grad():
            self.fill_g.copy_(torch.as_tensor(fill_g, dtype=self.fill_g.dtype))

    def set_standardisation(self, loc_g, scale_g) -> None:
        """Let the encoder see ``(x - loc_g) / scale_g`` (after missing entries are filled).

        Parameters
        ----------
        loc_g, scale_g : array-like, shape (G,)
            Per-feature centre and (positive) scale, e.g. the training columns' mean and sd.
        """
        with torch.no_grad():
            self.in_loc_g.copy_(torch.as_tensor(loc_g, dtype=self.in_loc_g.dtype))
            self.in_scale_g.copy_(torch.as_tensor(scale_g, dtype=self.in_scale_g.dtype))

    def network_input(self, x_bg: torch.Tensor) -> torch.Tensor:
        """What the encoder network sees for raw rows ``x_bg``: the likelihood's input
        transform, missing entries filled, then centred and scaled per feature."""
        return (encoder_input(x_bg, self.likelihood, self.fill_g) - self.in_loc_g) \
            / self.in_scale_g

    def encode(self, x_bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(loc_bk, scale_bk)`` of q(z | x) for raw data rows ``x_bg`` (NaN allowed)."""
        return self.encoder(self.network_input(x_bg))

    def encode_rows(self, x_ng, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc_nk, scale_nk)`` of q(z | x) for every row of ``x_ng``, in batches, no gradient.

        Parameters
        ----------
        x_ng : torch.Tensor or SparseRows, shape (N, G)
            Data rows (NaN allowed).
        batch_size : int
            Rows per encoder pass.
        """
        with torch.no_grad():
            parts = [self.encode(x_ng[s:s + batch_size])
                     for s in range(0, x_ng.shape[0], batch_size)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def second_moments(self, x_ng, batch_size: int = 1024) -> tuple[torch.Tensor, int]:
        """``S_k = sum_n E_q[z_nk^2]`` over the rows of ``x_ng`` (float64), and their number
        (arguments as :meth:`encode_rows`)."""
        loc, scale = self.encode_rows(x_ng, batch_size)
        return (loc.double() ** 2 + scale.double() ** 2).sum(0), x_ng.shape[0]

    def scale_factors(self, c_k) -> None:
        """Multiply the encoder's mean and sd of ``z_k`` by ``c_k[k]`` (at every input)."""
        enc = self.encoder
        with torch.no_grad():
            c = torch.as_tensor(c_k).to(enc.loc_head.weight)
            enc.loc_head.weight.mul_(c[:, None])
            enc.loc_head.bias.mul_(c)
            enc.logvar_head.bias.add_(2 * c.log())

    def forward(self, x_bg, n_data=None, idx=None, kl_weight=1.0, prior_weight=1.0,
                n_samples=None):
        """Sample ``z`` for the rows ``x_bg`` (arguments as the model's)."""
        register_params("z_guide", self)
        check_minibatch(x_bg, self.fill_g.shape[0], self.fill_g.dtype, n_data, idx)
        B = x_bg.shape[0]
        if idx is None and n_data is not None and n_data != B:
            idx = torch.arange(B, device=x_bg.device)
        loc, scale = self.encode(x_bg)
        with pyro.plate("data", size=n_data or B, subsample=idx, dim=-1):
            with poutine.scale(scale=kl_weight * self.beta):
                return pyro.sample("z", dist.Normal(loc, scale).to_event(1))
