"""Amortised Gaussian encoder q(z | x) = N(mu(x), diag sigma(x)^2), shared by every model."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GaussianEncoder"]


class GaussianEncoder(nn.Module):
    """Two hidden ReLU layers G -> H -> H, then a mean head and a log-variance head.

    Parameters
    ----------
    n_features, n_factors, hidden_dim : int
        G (input width), K (latent width) and H.
    """

    def __init__(self, n_features: int, n_factors: int, hidden_dim: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_features, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
        )
        self.loc_head = nn.Linear(hidden_dim, n_factors)
        self.logvar_head = nn.Linear(hidden_dim, n_factors)

    def forward(self, x_bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(loc_bk, scale_bk)`` of q(z | x) for encoder input ``x_bg``."""
        h = self.body(x_bg)
        logvar = self.logvar_head(h).clamp(-20.0, 10.0)
        return self.loc_head(h), torch.exp(0.5 * logvar)
