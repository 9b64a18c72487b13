"""Multi-start search of each feature's loadings W_g with the factors held at the z guide's means.

Given the factors, the features are independent: ``log p(x_g | z, W_g, sigma_g) + log p(W_g)``
involves W_g alone. That per-feature landscape is multimodal (the decoder is a nonlinear
network, so a feature's dependence on one factor can be mimicked, worse, by another factor),
and a fit can leave a feature in a poor mode that gradient steps on the joint ELBO do not
leave. The search optimises every feature's loadings from its current value and from
``n_starts`` random starts at once (vectorised over starts and features), and moves the
feature to the best mode when that beats the current one's by more than ``min_gain`` nats.
Follow it with a few epochs of training so the encoder and the variational sds catch up.
"""

from __future__ import annotations

import math

import torch

from ..distributions import ssl_log_prob
from ..likelihoods import observation_dist, split_missing
from .data import SparseRows
from .svi import frozen

__all__ = ["search_feature_modes", "feature_log_posterior", "factorises_over_features"]


def factorises_over_features(likelihood: str, library: str = "composition") -> bool:
    """Whether a row's likelihood is a product over features given the decoder output.

    True for ``normal`` and ``bernoulli``, and for ``poisson`` / ``negbin`` with
    ``library="offset"``; the ``categorical`` and ``composition`` likelihoods share each
    row's total among the features.
    """
    if likelihood in ("normal", "bernoulli"):
        return True
    return likelihood in ("poisson", "negbin") and library == "offset"


def _loglik_ng(model, out_ng, x0_ng, mask_ng, sigma_g):
    # per-entry log-density (N, G) of a likelihood that factorises over features
    theta = getattr(model, "log_theta_g", None)
    d = observation_dist(model.likelihood, out_ng, x0_ng, sigma_g,
                         None if theta is None else theta.exp(), mask_ng, model.library)
    return d.base_dist.log_prob(x0_ng)


def feature_log_posterior(model, z_nk, W_mgk, x0_ng, mask_ng, sigma_g, eta_k):
    """Per-feature log posterior of loadings given the factors, for a stack of W's.

    Parameters
    ----------
    model : SparseVAEModel
        A model whose likelihood factorises over features.
    z_nk : torch.Tensor, shape (N, K)
        The factors (held fixed).
    W_mgk : torch.Tensor, shape (M, G, K)
        M candidate loading matrices.
    x0_ng, mask_ng : torch.Tensor
        Rows with NaNs zeroed and the observed mask (None when nothing is missing).
    sigma_g : torch.Tensor, shape (G,), or None
        Noise sd (``normal``).
    eta_k : torch.Tensor, shape (K,)
        Inclusion rates of the SSL prior.

    Returns
    -------
    torch.Tensor, shape (M, G)
        ``sum_n log p(x_ng | z_n, W_g) + sum_k log SSL(W_gk)`` for each candidate and feature.
    """
    out = []
    for W_gk in W_mgk:
        ll_ng = _loglik_ng(model, model.decoder(z_nk, W_gk), x0_ng, mask_ng, sigma_g)
        out.append(ll_ng.sum(0) + ssl_log_prob(W_gk, eta_k, model.lambda0,
                                               model.lambda1).sum(-1))
    return torch.stack(out)


def search_feature_modes(model, guide, x_ng, n_starts: int = 16, steps: int = 250,
                         lr: float = 0.02, max_rows: int = 1000, min_gain: float = 1.0,
                         seed: int = 0) -> dict:
    """Move features whose loadings sit in a poor mode to a better one (given the factors).

    Parameters
    ----------
    model : SparseVAEModel
        A Sparse VAE whose likelihood factorises over features (``normal``, ``bernoulli``,
        or ``poisson`` / ``negbin`` with ``library="offset"``), without factor correlation.
    guide : ModelGuide
        The fitted guide: its z guide gives the factors (the encoder's means, or a
        :class:`~pyro_sparse.guides.PerRowNormalGuide`'s per-row means), its W guide the
        current loadings, sigma and eta; the W guide's loadings of the moved features are
        rewritten (:meth:`set_rows`), nothing else.
    x_ng : torch.Tensor or SparseRows, shape (N, G)
        The training rows.
    n_starts : int
        Random starts per feature, besides the current loadings. Each entry of a start is
        drawn from N(0, s_k^2), s_k the root mean square of the current column k.
    steps, lr : int, float
        Adam steps and learning rate of every start's optimisation.
    max_rows : int
        The search uses a random subset of at most this many rows (the comparison between
        modes is made on the same rows).
    min_gain : float
        A feature moves only when its best start beats the optimised current loadings by
        more than this many nats (on the rows used).
    seed : int
        Seeds the starts and the row subset.

    Returns
    -------
    dict
        ``moved`` (indices of the features that moved), ``rejected`` (features whose better
        mode the W guide could not represent with finite parameters; left where they were),
        ``gain_g`` (best start's log posterior minus the current mode's, per feature;
        numpy), ``rows_used``.

    Raises
    ------
    ValueError
        For a model without loadings, with factor correlation, or whose likelihood does not
        factorise over features; for bad arguments.
    """
    if not hasattr(model, "lambda0"):
        raise ValueError("search_feature_modes needs a Sparse VAE model (with loadings W)")
    if getattr(model, "factor_correlation", False):
        raise ValueError("search_feature_modes does not support factor_correlation=True")
    if not factorises_over_features(model.likelihood, model.library):
        raise ValueError(f"search_feature_modes needs a likelihood that factorises over "
                         f"features; {model.likelihood!r} with library={model.library!r} "
                         "does not")
    for name, v in (("n_starts", n_starts), ("steps", steps), ("max_rows", max_rows)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not min_gain >= 0:
        raise ValueError(f"min_gain must be >= 0, got {min_gain!r}")
    gg = guide.globals_guide
    device = model.decoder.V_gh.device
    N = x_ng.shape[0]
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    rows = torch.randperm(N, generator=gen)[:max_rows].sort().values
    if isinstance(x_ng, SparseRows):
        x_rg = x_ng[rows.numpy()].to(device)
    else:
        x_rg = torch.as_tensor(x_ng, dtype=torch.float32, device=device)[rows.to(device)]
    x0_rg, mask_rg = split_missing(x_rg)
    local = guide.local_guide
    with torch.no_grad():
        if hasattr(local, "encode_rows"):  # the amortised encoder
            z_rk = local.encode_rows(x_rg)[0]
        else:  # a free q(z_n) per training row (PerRowNormalGuide)
            z_rk = local.loc_nk.detach()[rows.to(local.loc_nk.device)]
        W_gk = gg._W_point().detach().clone()
        sigma_g = gg.sigma_g1.detach().squeeze(-1) if model.likelihood == "normal" else None
        eta_k = gg.eta_k.detach().clone()
    G, K = W_gk.shape
    s_k = W_gk.pow(2).mean(0).sqrt().clamp_min(1e-3)
    starts = torch.randn((n_starts, G, K), generator=gen).to(W_gk) * s_k
    W_mgk = torch.cat([W_gk[None], starts]).requires_grad_(True)
    with frozen(model):  # only the candidate loadings are optimised
        opt = torch.optim.Adam([W_mgk], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            lp = feature_log_posterior(model, z_rk, W_mgk, x0_rg, mask_rg, sigma_g, eta_k)
            (-lp.sum()).backward()
            opt.step()
        with torch.no_grad():
            lp = feature_log_posterior(model, z_rk, W_mgk, x0_rg, mask_rg, sigma_g, eta_k)
    lp = torch.nan_to_num(lp, nan=-math.inf)
    best_m = lp.argmax(0)
    gain_g = lp.gather(0, best_m[None]).squeeze(0) - lp[0]
    moved = torch.nonzero((gain_g > min_gain) & (best_m > 0)).flatten()
    rejected = moved[:0]
    if len(moved):
        W_new = W_mgk.detach()[best_m[moved], moved]
        param = gg._W_param()
        old_rows = param.detach()[moved].clone()
        gg.set_rows(moved.tolist(), W_new)
        # a guide that cannot represent a mode (its parameters for it are not finite, or its
        # point at them is not the mode) keeps the feature where it was
        with torch.no_grad():
            bad = ~(torch.isfinite(W_new).all(-1) & torch.isfinite(param[moved]).all(-1))
            param[moved[bad]] = old_rows[bad]  # first, so that the point can be read
            W_got = gg._W_point()[moved]
            bad |= ~(torch.isfinite(W_got).all(-1)
                     & ((W_got - W_new).abs() <= 1e-3 * (1.0 + W_new.abs())).all(-1))
        if bool(bad.any()):
            with torch.no_grad():
                param[moved[bad]] = old_rows[bad]
            rejected, moved = moved[bad], moved[~bad]
    return {"moved": moved.cpu().numpy(), "rejected": rejected.cpu().numpy(),
            "gain_g": gain_g.cpu().numpy().astype(float), "rows_used": int(len(rows))}
