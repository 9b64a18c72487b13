"""Pyro guides: the amortised encoder for z and the MAP / mean-field guides for W, eta, sigma.

``make_guide(model, w_guide)`` composes the two into one guide with the model's signature.
"""

from __future__ import annotations

import torch

from .encoder import AmortizedNormalGuide
from .globals import (
    W_GUIDES,
    LowRankGlobalGuide,
    MAPGlobalGuide,
    MeanFieldGlobalGuide,
    SpikeSlabGlobalGuide,
    SpikeSlabLowRankGlobalGuide,
)
from .local import PerRowNormalGuide

__all__ = [
    "W_GUIDES",
    "AmortizedNormalGuide",
    "LowRankGlobalGuide",
    "MAPGlobalGuide",
    "MeanFieldGlobalGuide",
    "ModelGuide",
    "PerRowNormalGuide",
    "SpikeSlabGlobalGuide",
    "SpikeSlabLowRankGlobalGuide",
    "make_guide",
]


class ModelGuide(torch.nn.Module):
    """A global-sites guide followed by the amortised z guide (same call signature).

    Parameters
    ----------
    globals_guide : MAPGlobalGuide or MeanFieldGlobalGuide
    local_guide : AmortizedNormalGuide
    """

    def __init__(self, globals_guide, local_guide):
        super().__init__()
        self.globals_guide = globals_guide
        self.local_guide = local_guide

    def forward(self, x_bg=None, n_data=None, idx=None, kl_weight=1.0, prior_weight=1.0,
                n_samples=None):
        """Sample every latent site of the model for the minibatch ``x_bg``."""
        self.globals_guide(x_bg, n_data, idx, kl_weight, prior_weight, n_samples)
        return self.local_guide(x_bg, n_data, idx, kl_weight, prior_weight, n_samples)


def make_guide(model, w_guide: str = "map", init_scale: float = 1.0) -> ModelGuide:
    """Build the guide that matches ``model``.

    Parameters
    ----------
    model : SparseVAEModel or VAEModel
    w_guide : {"map", "meanfield", "lowrank", "spikeslab", "spikeslab_lowrank"}
        Guide for W (ignored by models without W, which take point estimates of sigma).
    init_scale : float
        Standard deviation of the random start of W.

    Returns
    -------
    ModelGuide
    """
    if w_guide not in W_GUIDES:
        raise ValueError(f"unknown w_guide {w_guide!r}; choose one of {', '.join(W_GUIDES)}")
    has_W = hasattr(model, "lambda0")
    if w_guide == "meanfield" and has_W:
        g = MeanFieldGlobalGuide(model, init_scale=init_scale)
    elif w_guide == "lowrank" and has_W:
        g = LowRankGlobalGuide(model, init_scale=init_scale)
    elif w_guide == "spikeslab" and has_W:
        g = SpikeSlabGlobalGuide(model, init_scale=init_scale)
    elif w_guide == "spikeslab_lowrank" and has_W:
        g = SpikeSlabLowRankGlobalGuide(model, init_scale=init_scale)
    else:
        g = MAPGlobalGuide(model, init_scale=init_scale)
    local = AmortizedNormalGuide(model.n_features, model.n_factors, model.hidden_dim,
                                 model.likelihood, getattr(model, "beta", 1.0))
    return ModelGuide(g, local)
