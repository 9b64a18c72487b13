"""A data-dependent start for the decoder's output layer.

``torch.nn.Linear``'s initialisation shrinks the signal at every layer, so a freshly built
decoder's output barely varies with z: over prior draws its sd is a few hundredths of the
data's. The likelihood's gradient with respect to z is then tiny at the start while the z-KL
pulls every encoder towards the prior, and latents collapse before the decoder has learned
anything (``benchmarks/README.md``, calibration with the decoder learned).
:func:`match_output_scale` rescales each feature's output weights so that, over draws
z ~ N(0, I), the decoder's output for feature g has sd ``scale * sd_g`` and mean ``mean_g``
(the data's), in the spirit of data-dependent initialisations such as LSUV
(Mishkin & Matas, 2016). Only the output layer is touched, so W and the shared layers keep
their random start, and ``W_gk = 0`` still means that feature g ignores factor k.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["match_output_scale"]


def match_output_scale(decode, weight_gh: torch.Tensor, bias_g: torch.Tensor, n_factors: int,
                       mean_g, sd_g, *, scale: float = 1.0, n_draws: int = 1024,
                       seed: int = 0) -> dict:
    """Rescale the output layer in place so the decoder's output matches the data's spread.

    Parameters
    ----------
    decode : callable
        ``decode(z_bk) -> out_bg``, the decoder's output (the normal likelihood's mean).
    weight_gh, bias_g : torch.Tensor
        The output layer's weights (one row per feature) and biases, changed in place.
    n_factors : int
        K, the width of z.
    mean_g, sd_g : array-like, shape (G,)
        Per-feature mean and sd of the data (missing entries left out).
    scale : float
        Target output sd as a multiple of ``sd_g`` (> 0).
    n_draws : int
        Prior draws of z used to measure the output.
    seed : int
        Seed of those draws (the global torch generator is not touched).

    Returns
    -------
    dict
        ``median_sd_ratio``: the median over features of the output's sd before the rescale
        divided by the data's; ``n_rescaled``: features whose weights were rescaled (features
        with zero data sd, or whose output does not vary, are only re-centred).

    Raises
    ------
    ValueError
        If ``scale`` is not positive or ``mean_g`` / ``sd_g`` do not have one entry per feature.
    """
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    G = weight_gh.shape[0]
    mean_g = torch.as_tensor(np.asarray(mean_g, dtype=np.float64)).to(weight_gh)
    sd_g = torch.as_tensor(np.asarray(sd_g, dtype=np.float64)).to(weight_gh)
    if mean_g.shape != (G,) or sd_g.shape != (G,):
        raise ValueError(f"mean_g and sd_g need shape ({G},), got {tuple(mean_g.shape)} and "
                         f"{tuple(sd_g.shape)}")
    gen = torch.Generator().manual_seed(int(seed))
    z_bk = torch.randn(n_draws, n_factors, generator=gen).to(weight_gh)
    with torch.no_grad():
        out_sd = decode(z_bk).std(0)
        ok = (sd_g > 0) & (out_sd > 1e-12) & torch.isfinite(sd_g)
        factor_g = torch.where(ok, scale * sd_g / out_sd.clamp_min(1e-12), 1.0)
        weight_gh.mul_(factor_g.unsqueeze(-1))
        out_mean = decode(z_bk).mean(0)
        bias_g.add_(torch.where(torch.isfinite(mean_g), mean_g, 0.0) - out_mean)
    ratio = (out_sd / sd_g)[sd_g > 0]
    return dict(median_sd_ratio=float(ratio.median()) if ratio.numel() else float("nan"),
                n_rescaled=int(ok.sum()))
