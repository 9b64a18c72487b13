"""Re-seeding collapsed factors: restart the weakest factor on what the fit left unexplained.

An amortised fit from a random start often ends with a factor that carries almost nothing
(its encoder means near the prior) or that duplicates another, while a true factor's
features are treated as noise: their residuals move together. A round of re-seeding

1. picks the factor the fit needs least: the one whose removal (its encoder mean held at its
   average over the rows) raises the mean squared (Pearson) residual least
   (:func:`ablation_costs`);
2. restarts it on the leading component of the residual correlation
   (:func:`residual_direction`): its column of W on the component's loadings (small ones set
   to 0), its column of the decoder's first layer redrawn at the scale of the others, and the
   encoder pretrained so that this factor's means are the component's scores while the other
   factors' means stay as they were (:func:`reseed_factor`);
3. trains the re-seeded state and, side by side from the same state with the same seed,
   the state as it was, for the same number of epochs, and keeps whichever reaches the lower
   full-data negative ELBO (:func:`reseed_rounds`). A round can therefore only keep a
   re-seeded factor that the ELBO prefers over more of the same training.

Measured in ``benchmarks/calibration.py`` (``benchmarks/README.md``, "Re-seeding collapsed
factors").
"""

from __future__ import annotations

import numpy as np
import torch

from ..residual_stats import leading_component, standardise_columns
from .initialization import encoder_view

__all__ = ["RESEED_KEEP", "ablation_costs", "reseed_factor", "reseed_rounds",
           "residual_direction"]

#: loadings of the residual component below this fraction of its largest start at 0
RESEED_KEEP = 0.3
#: encoder sd the re-seeded factor is pretrained towards (the prior's is 1)
RESEED_ENCODER_SD = 0.3


def ablation_costs(residuals_of, z_nk: np.ndarray, resid_ng: np.ndarray | None = None
                   ) -> np.ndarray:
    """How much each factor is needed: the rise in mean squared residual without it.

    Parameters
    ----------
    residuals_of : callable
        ``residuals_of(z_nk) -> (N, G)`` numpy residuals of the data given factor values
        (NaN where an entry is missing).
    z_nk : numpy.ndarray, shape (N, K)
        Encoder means.
    resid_ng : numpy.ndarray, shape (N, G), optional
        ``residuals_of(z_nk)`` when the caller has it already.

    Returns
    -------
    numpy.ndarray, shape (K,)
        ``cost_k``: mean squared residual (over observed entries) with ``z_k`` replaced by
        its mean over the rows, minus that with ``z`` as given. About 0 for a factor the
        decoder ignores or whose encoder means do not vary.
    """
    z = np.asarray(z_nk, dtype=np.float64)
    base = float(np.nanmean((residuals_of(z) if resid_ng is None else resid_ng) ** 2))
    out = np.empty(z.shape[1])
    for k in range(z.shape[1]):
        z_k = z.copy()
        z_k[:, k] = z[:, k].mean()
        out[k] = float(np.nanmean(residuals_of(z_k) ** 2)) - base
    return out


def residual_direction(resid_ng: np.ndarray, keep: float = RESEED_KEEP):
    """Loadings and scores of the residuals' leading shared component.

    Parameters
    ----------
    resid_ng : numpy.ndarray, shape (N, G)
        Residuals (NaN where missing).
    keep : float
        Loadings below ``keep`` times the largest |loading| are set to 0.

    Returns
    -------
    (w_g, s_n) : numpy.ndarray, numpy.ndarray
        Loadings scaled so that the largest |entry| is 1 and positive, and standardised
        scores (mean 0, sd 1) of the rows on the component.

    Raises
    ------
    ValueError
        When the residuals have fewer than 2 rows or features, or no spread.
    """
    r = np.asarray(resid_ng, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2 or r.shape[1] < 2:
        raise ValueError(f"residuals need at least 2 rows and 2 features, got shape {r.shape}")
    zs, _ = standardise_columns(r)
    if not np.any(zs):
        raise ValueError("the residuals have no spread: nothing to re-seed a factor on")
    _, u_g = leading_component(zs)
    u_g = u_g * np.sign(u_g[np.argmax(np.abs(u_g))])  # the sign of an eigenvector is free
    s_n = zs @ u_g
    s_n = (s_n - s_n.mean()) / max(float(s_n.std()), 1e-12)
    w_g = u_g / np.abs(u_g).max()
    w_g[np.abs(w_g) < keep] = 0.0
    return w_g, s_n


def reseed_factor(guide, decoder, x_ng, k: int, w_g, s_n, *, steps: int = 300,
                  batch_size: int = 200, lr: float = 1e-2, seed: int = 0,
                  encoder_sd: float = RESEED_ENCODER_SD) -> float:
    """Restart factor ``k`` of a Sparse VAE (in place) on a given direction.

    Parameters
    ----------
    guide : ModelGuide
        Its W point estimate or variational means get column ``k`` = ``w_g`` (the MAP
        guide's support mask for the column is reset to all ones), and its encoder is
        pretrained for ``steps`` Adam steps on the squared distance of its means to the
        current means with column ``k`` replaced by ``s_n``, plus the squared distance of
        factor ``k``'s log sd to ``log(encoder_sd)``.
    decoder : SparseDecoder
        Column ``k`` of its first layer ``A1_hk`` is redrawn: random signs times the mean
        |weight| of the other columns in each row (a collapsed factor's column may have
        shrunk towards 0, which would keep it silent).
    x_ng : torch.Tensor or SparseRows, shape (N, G)
        Training rows on the guide's device.
    k : int
        The factor.
    w_g, s_n : array-like, shapes (G,) and (N,)
        New loadings and target scores (:func:`residual_direction`).
    steps, batch_size, lr, seed : int, int, float, int
        Pretraining.
    encoder_sd : float
        Target encoder sd of factor ``k``.

    Returns
    -------
    float
        Mean squared error of factor ``k``'s encoder means against ``s_n`` afterwards.
    """
    local = guide.local_guide
    K = local.encoder.loc_head.out_features
    if not 0 <= int(k) < K:
        raise ValueError(f"factor {k} out of range for {K} factors")
    k = int(k)
    N = x_ng.shape[0]
    dev = local.fill_g.device
    gen = torch.Generator().manual_seed(int(seed))
    gg = guide.globals_guide
    w = torch.as_tensor(np.asarray(w_g), dtype=torch.float32, device=dev)
    with torch.no_grad():
        target = gg.W_gk if hasattr(gg, "W_gk") else gg.W_loc_gk
        target[:, k] = w
        if hasattr(gg, "support_mask_gk"):
            gg.support_mask_gk[:, k] = 1.0
        A = decoder.A1_hk
        others = [j for j in range(K) if j != k]
        scale_h = A[:, others].abs().mean(1) if others else A[:, k].abs().clamp_min(1e-3)
        signs = torch.where(torch.rand(A.shape[0], generator=gen) < 0.5, -1.0, 1.0)
        A[:, k] = scale_h * signs.to(A.device)
    v = torch.as_tensor(encoder_view(local, x_ng), dtype=torch.float32, device=dev)
    enc = local.encoder
    with torch.no_grad():
        tgt = enc(v)[0].clone()
    tgt[:, k] = torch.as_tensor(np.asarray(s_n), dtype=torch.float32, device=dev)
    log_sd = float(np.log(encoder_sd))
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    B = min(int(batch_size), N)
    for _ in range(int(steps)):
        idx = torch.randint(0, N, (B,), generator=gen).to(dev)
        loc, scale = enc(v[idx])
        loss = ((loc - tgt[idx]) ** 2).mean() + ((scale[:, k].log() - log_sd) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(((enc(v)[0][:, k] - tgt[:, k]) ** 2).mean())


def reseed_rounds(n_rounds: int, *, propose, continue_fit, loss, snapshot, restore):
    """Rounds of re-seed-or-continue, each kept only when the ELBO prefers it.

    Every round starts from the current state ``S``: it trains ``S`` as it is
    (``continue_fit(r)``), records ``loss()`` and the state, goes back to ``S``, re-seeds a
    factor (``propose(r)``), trains the same way and records ``loss()``; the state with the
    lower loss is kept. Both trainings get the same round number, so the caller can give
    them the same seed.

    Parameters
    ----------
    n_rounds : int
    propose : callable
        ``propose(r) -> dict`` re-seeds the current state in place; returns what it did.
    continue_fit : callable
        ``continue_fit(r) -> list of float`` trains in place; returns per-epoch losses.
    loss : callable
        ``loss() -> float``, the full-data negative ELBO of the current state.
    snapshot, restore : callable
        ``snapshot() -> state`` (a copy) and ``restore(state)``.

    Returns
    -------
    (history, rounds) : list of float, list of dict
        Per-epoch losses of the trainings kept, and per round what ``propose`` returned plus
        ``loss_reseeded``, ``loss_continued`` and ``accepted``.
    """
    history, rounds = [], []
    for r in range(int(n_rounds)):
        start = snapshot()
        hist_plain = continue_fit(r)
        loss_plain = float(loss())
        plain = snapshot()
        restore(start)
        del start
        info = dict(propose(r))
        hist_new = continue_fit(r)
        loss_new = float(loss())
        accepted = bool(loss_new < loss_plain)
        if not accepted:
            restore(plain)
        history.extend(hist_new if accepted else hist_plain)
        rounds.append(dict(info, round=r, loss_reseeded=loss_new, loss_continued=loss_plain,
                           accepted=accepted))
    return history, rounds
