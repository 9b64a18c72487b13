"""A data-driven start: factor analysis with a varimax rotation before SVI.

From a random start the amortised fit often splits one true factor over two latents and
leaves another uncarried (posterior collapse; ``benchmarks/README.md``, calibration). A linear
factor analysis of what the encoder sees, rotated towards a sparse pattern (varimax), often
finds those factors already; :func:`factor_analysis_init` starts the SVI fit from it:

- the number of factors of the analysis is chosen by BIC (at most K; an over-specified K
  keeps its surplus factors at their random start);
- the encoder means are regressed onto the standardised factor-analysis scores (a short
  least-squares pretraining of the encoder, minibatch Adam);
- W starts at the rotated loadings, each column scaled to a largest magnitude of 1
  (``map``: the point estimate; the variational guides: the posterior means, through
  ``set_columns``).

The decoder network is left at its random start; SVI then learns it with everything else.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["factor_analysis_init", "encoder_view", "varimax", "fa_bic", "INITS"]

#: starts of a fit (see ``SparseVAE(init=...)``)
INITS = ("random", "factor_analysis")


def encoder_view(local_guide, x_ng, batch_size: int = 1024) -> np.ndarray:
    """What the encoder sees for every row (missing entries filled, standardised where the
    estimator standardises), as a dense array.

    Parameters
    ----------
    local_guide : AmortizedNormalGuide
        Supplies the likelihood's input transform and the fill values of missing entries.
    x_ng : torch.Tensor or SparseRows, shape (N, G)
        Training rows (sparse rows are densified one batch at a time).
    batch_size : int
        Rows per batch.

    Returns
    -------
    numpy.ndarray, shape (N, G), float64
    """
    N = x_ng.shape[0]
    out = []
    with torch.no_grad():
        for s in range(0, N, batch_size):
            xb = x_ng[s:s + batch_size]
            out.append(local_guide.network_input(xb).cpu().double().numpy())
    return np.concatenate(out, 0)


def varimax(L_gk: np.ndarray, max_iter: int = 500, tol: float = 1e-10):
    """Varimax rotation of a loadings matrix (Kaiser's criterion, SVD iteration).

    Parameters
    ----------
    L_gk : numpy.ndarray, shape (G, K)
        Loadings.
    max_iter : int
        Iterations at most.
    tol : float
        Stop when the criterion grows by less than this relative amount.

    Returns
    -------
    L_rot_gk : numpy.ndarray, shape (G, K)
        ``L_gk @ R_kk``, the rotated loadings.
    R_kk : numpy.ndarray, shape (K, K)
        The orthogonal rotation.

    Notes
    -----
    scikit-learn's ``FactorAnalysis(rotation="varimax")`` stops short of the optimum on a
    clean two-block structure (cross-loadings 0.2 where this gives 0.03), so the rotation is
    done here.
    """
    G, K = L_gk.shape
    R_kk = np.eye(K)
    crit = 0.0
    for _ in range(int(max_iter)):
        LR = L_gk @ R_kk
        u, s, vt = np.linalg.svd(L_gk.T @ (LR**3 - LR * (LR**2).sum(0) / G))
        R_kk = u @ vt
        if s.sum() < crit * (1 + tol):
            break
        crit = s.sum()
    return L_gk @ R_kk, R_kk


def _standardise(v_ng: np.ndarray) -> np.ndarray:
    sd_g = v_ng.std(0)
    return (v_ng - v_ng.mean(0)) / np.where(sd_g > 0, sd_g, 1.0)  # constant columns: 0


def fa_bic(v_ng: np.ndarray, max_factors: int, seed: int = 0) -> np.ndarray:
    """BIC of a factor analysis of the standardised columns with 1..``max_factors`` factors.

    Parameters
    ----------
    v_ng : numpy.ndarray, shape (N, G)
        Data (each column is standardised first).
    max_factors : int
        Largest number of factors tried.
    seed : int
        ``random_state`` of scikit-learn's FactorAnalysis.

    Returns
    -------
    numpy.ndarray, shape (max_factors,)
        ``-2 log L + log(N) p`` with p = G k - k (k - 1) / 2 + G free parameters (loadings up
        to rotation, and the noise variances) for k = 1..max_factors.
    """
    return _bic_fits(_standardise(v_ng), max_factors, seed)[0]


def _fit_fa(x_ng: np.ndarray, n_factors: int, seed: int):
    from sklearn.decomposition import FactorAnalysis

    return FactorAnalysis(n_factors, random_state=seed).fit(x_ng)


def _bic_fits(x_ng: np.ndarray, max_factors: int, seed: int):
    # BIC per number of factors and the fitted analyses (standardised data x_ng)
    N, G = x_ng.shape
    fits, out = [], []
    for k in range(1, int(max_factors) + 1):
        fits.append(_fit_fa(x_ng, k, seed))
        loglik = fits[-1].score(x_ng) * N
        out.append(-2.0 * loglik + np.log(N) * (G * k - k * (k - 1) / 2 + G))
    return np.asarray(out), fits


def _rotated_scores(fa, x_ng: np.ndarray):
    # varimax-rotated, standardised scores (N, k) and rotated loadings (G, k) of a fit
    s_nk = fa.transform(x_ng)
    L_gk, R_kk = varimax(fa.components_.T)
    s_nk = s_nk @ R_kk  # x ~ s L^T = (s R)(L R)^T for an orthogonal R
    s_sd = s_nk.std(0)
    s_nk = (s_nk - s_nk.mean(0)) / np.where(s_sd > 0, s_sd, 1.0)
    return s_nk, L_gk  # scores (N, K), loadings (G, K)


def factor_analysis_init(guide, x_ng, *, n_fa_factors="bic", steps: int = 300,
                         batch_size: int = 200, lr: float = 1e-2, seed: int = 0) -> dict:
    """Start ``guide`` from a varimax-rotated factor analysis of the data.

    Parameters
    ----------
    guide : ModelGuide
        The guide from :func:`~pyro_sparse.guides.make_guide` (changed in place: its encoder
        and, when the model has W, the W point estimate or variational means).
    x_ng : torch.Tensor or SparseRows, shape (N, G)
        Training rows on the guide's device (NaN marks a missing entry).
    n_fa_factors : int or "bic"
        How many of the K factors start from the factor analysis (the first ones; the
        others keep their random start and are left out of the pretraining). ``"bic"``:
        the number between 1 and K with the smallest BIC (:func:`fa_bic`; K factor
        analyses), so that an over-specified K does not force a factor analysis with
        more factors than the data support.
    steps, batch_size, lr : int, int, float
        Adam steps, rows per step and learning rate of the encoder pretraining.
    seed : int
        Seeds the factor analysis and the pretraining's minibatches.

    Returns
    -------
    dict
        ``fa_factors`` (how many factors started from it), ``bic`` (per number of factors,
        with ``"bic"``), ``pretrain_mse`` (mean squared error of those encoder means against
        the scores, over all rows, after pretraining; the scores have unit variance) and
        ``fa_steps``.

    Raises
    ------
    ValueError
        When ``steps`` < 1, ``n_fa_factors`` is not "bic" or an integer in 1..K, or there
        are fewer rows than factors.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    local = guide.local_guide
    K = local.encoder.loc_head.out_features
    N = x_ng.shape[0]
    if N <= K:
        raise ValueError(f"factor-analysis initialisation needs more rows ({N}) than "
                         f"factors ({K})")
    if not (n_fa_factors == "bic" or (isinstance(n_fa_factors, (int, np.integer))
                                      and not isinstance(n_fa_factors, bool)
                                      and 1 <= n_fa_factors <= K)):
        raise ValueError(f"n_fa_factors must be 'bic' or an integer in 1..{K}, got "
                         f"{n_fa_factors!r}")
    v_ng = encoder_view(local, x_ng)
    x_std = _standardise(v_ng)
    info = {}
    if n_fa_factors == "bic":
        bic, fits = _bic_fits(x_std, K, seed)  # the chosen analysis is not fitted again
        k_fa = int(np.argmin(bic)) + 1
        fa = fits[k_fa - 1]
        info["bic"] = [float(b) for b in bic]
    else:
        k_fa = int(n_fa_factors)
        fa = _fit_fa(x_std, k_fa, seed)
    s_nk, L_gk = _rotated_scores(fa, x_std)
    dev = local.fill_g.device
    v = torch.as_tensor(v_ng, dtype=torch.float32, device=dev)
    s = torch.as_tensor(s_nk, dtype=torch.float32, device=dev)
    enc = local.encoder
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(int(seed))
    B = min(int(batch_size), N)
    for _ in range(int(steps)):
        idx = torch.randint(0, N, (B,), generator=gen).to(dev)
        loc, _ = enc(v[idx])
        loss = ((loc[:, :k_fa] - s[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        mse = float(((enc(v)[0][:, :k_fa] - s) ** 2).mean())
    gg = guide.globals_guide
    if getattr(gg, "has_W", False):
        top_k = np.abs(L_gk).max(0)
        W0 = L_gk / np.where(top_k > 0, top_k, 1.0)
        gg.set_columns(range(k_fa), W0)
    return dict(fa_factors=k_fa, **info, pretrain_mse=mse, fa_steps=int(steps))
