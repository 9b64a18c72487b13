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
   When one factor's codes look like a *fold* of a factor (its size |z| without its sign:
   the residuals of some features then grow with that code and change sign between rows
   of equal code), the round instead restarts that factor on a signed version of its code
   (:func:`unfold_direction`); with ``reorder``, when a code disagrees with the ordering
   of its own anchors (a *torn* code, :func:`torn_factor`), it restarts that factor on
   that ordering; with ``merge``, when one code tracks the size of another
   (a fold split over two latents, :func:`split_fold_pair`), it restarts the sign code on
   the merged code and the size code on the residuals' leading component;
3. trains the re-seeded state and, side by side from the same state with the same seed,
   the state as it was, for the same number of epochs, and keeps whichever reaches the lower
   full-data negative ELBO (:func:`reseed_rounds`). A round can therefore only keep a
   re-seeded factor that the ELBO prefers over more of the same training.

:func:`reseed_fit` runs these rounds on a fitted model and guide (``SparseVAE.fit`` calls it).
With ``profile_loadings=True`` step 2 also searches each re-seeded loading over a grid
(:func:`profile_column`), for a decoder that is known and held fixed.

Measured in ``benchmarks/calibration.py`` (``benchmarks/README.md``, "Re-seeding collapsed
factors").
"""

from __future__ import annotations

import numpy as np
import pyro
import torch

from ..distributions import estimated_support
from ..likelihoods import mean_from_output, split_missing
from ..residual_stats import leading_component, pearson_residuals, standardise_columns
from .initialization import encoder_view
from .svi import fit_svi, full_data_loss

__all__ = ["MERGE_SCORE", "PROFILE_GRID", "REORDER_CORR", "RESEED_KEEP", "UNFOLD_RATIO",
           "ablation_costs", "anchor_embedding", "merged_loadings", "profile_column",
           "reseed_factor", "reseed_fit", "reseed_rounds", "residual_direction",
           "split_fold_pair", "torn_factor", "unfold_direction", "unfold_loadings"]

#: loadings of the residual component below this fraction of its largest start at 0
RESEED_KEEP = 0.3
#: encoder sd the re-seeded factor is pretrained towards (the prior's is 1)
RESEED_ENCODER_SD = 0.3
#: loadings tried per feature by ``reseed_fit(profile_loadings=True)``, in units of the
#: median |loading| of the other factors
PROFILE_GRID = (0.0, -0.25, 0.25, -0.5, 0.5, -1.0, 1.0, -1.5, 1.5, -2.0, 2.0, -3.0, 3.0)
#: a round unfolds a factor instead of re-seeding the weakest one when the size-weighted
#: residual component carries this many times the variance of the plain one
#: (:func:`unfold_direction`)
UNFOLD_RATIO = 1.5
#: a round merges two factors' codes into one when one code's rank correlation with the
#: other's distance from its median reaches this (:func:`split_fold_pair`)
MERGE_SCORE = 0.2
#: a round restarts a factor on the ordering of its anchors when its code's rank correlation
#: with that ordering is below this (:func:`torn_factor`)
REORDER_CORR = 0.8
#: rows the anchor embedding is computed on; the others take their nearest neighbours' values
EMBED_ROWS = 5000


def _standardised(s_n: np.ndarray) -> np.ndarray:
    # mean 0, sd 1 (a constant stays at 0)
    return (s_n - s_n.mean()) / max(float(s_n.std()), 1e-12)


def _rank_size(z_n: np.ndarray) -> np.ndarray:
    # the size |u| that each row's rank in z_n implies under u ~ N(0, 1)
    from scipy.special import ndtri
    from scipy.stats import rankdata

    return ndtri((1.0 + rankdata(z_n) / (len(z_n) + 1)) / 2.0)


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
    s_n = _standardised(s_n)
    w_g = u_g / np.abs(u_g).max()
    w_g[np.abs(w_g) < keep] = 0.0
    return w_g, s_n


def unfold_direction(z_nk: np.ndarray, resid_ng: np.ndarray):
    """The factor whose codes look most like a fold, and a signed code to restart it on.

    A decoder whose first layer has no bias makes many features V-shaped in a factor
    (piecewise linear with the kink at 0), and an encoder can settle on a code that tracks
    the factor's size |z_k| but not its sign: every V-shaped feature is fitted, while the
    features that depend on the sign are left in the residuals. Their residuals are then
    odd in z_k and grow with |z_k|. So for each factor j and each direction of its code,
    the rows are given the size that their rank implies under a standard normal prior,
    ``a_n = Phi^-1((1 + F(±z_nj)) / 2)``, and the leading component of the residuals weighted
    row by row by ``a_n`` is compared with the leading component of the residuals
    themselves. Where the sign-dependent residuals exist, weighting concentrates them and
    the ratio of the two leading eigenvalues rises well above 1 (about 1.9 on the folds
    seen in ``benchmarks/missed_factors.py``, 1.0-1.2 elsewhere).

    Parameters
    ----------
    z_nk : numpy.ndarray, shape (N, K)
        Encoder means.
    resid_ng : numpy.ndarray, shape (N, G)
        Residuals in comparable units (NaN where missing).

    Returns
    -------
    (ratio, k, s_n, v_g) : float, int, numpy.ndarray, numpy.ndarray
        The largest eigenvalue ratio over factors and directions, its factor, the signed
        code ``sign(r_n . v) * a_n`` standardised to mean 0 and sd 1, and the weighted
        component's loadings ``v_g`` (unit norm).

    Raises
    ------
    ValueError
        When shapes disagree, or the residuals have fewer than 2 rows or features or no
        spread.
    """
    z = np.asarray(z_nk, dtype=np.float64)
    r = np.asarray(resid_ng, dtype=np.float64)
    if z.ndim != 2 or r.ndim != 2 or z.shape[0] != r.shape[0]:
        raise ValueError(f"z_nk and resid_ng must be (N, K) and (N, G) with the same N, got "
                         f"shapes {z.shape} and {r.shape}")
    if r.shape[0] < 2 or r.shape[1] < 2:
        raise ValueError(f"residuals need at least 2 rows and 2 features, got shape {r.shape}")
    r = np.nan_to_num(r - np.nanmean(r, axis=0))
    N = r.shape[0]
    top = float(np.linalg.eigvalsh(r.T @ r / N)[-1])
    if not top > 0:
        raise ValueError("the residuals have no spread: nothing to unfold a factor on")
    best = None
    for j in range(z.shape[1]):
        for direction in (1.0, -1.0):
            a_n = _rank_size(direction * z[:, j])
            rw = r * a_n[:, None]
            vals, vecs = np.linalg.eigh(rw.T @ rw / N)
            ratio = float(vals[-1]) / top
            if best is None or ratio > best[0]:
                v_g = vecs[:, -1]
                s_n = np.sign(r @ v_g) * a_n
                best = (ratio, j, _standardised(s_n), v_g)
    return best


def _loading_pair(a_g, b_g, names: str):
    # two (G,) float vectors of one length, or a ValueError naming them
    a = np.asarray(a_g, dtype=np.float64)
    b = np.asarray(b_g, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"{names} must be (G,) vectors of one length, got shapes "
                         f"{a.shape} and {b.shape}")
    return a, b


def unfold_loadings(w_g: np.ndarray, v_g: np.ndarray, keep: float = RESEED_KEEP,
                    tol: float = 1e-3) -> np.ndarray:
    """Loadings for an unfolded factor: its own, plus the features that carry its sign.

    Parameters
    ----------
    w_g : numpy.ndarray, shape (G,)
        The factor's current loadings (entries with |w| <= ``tol`` count as 0).
    v_g : numpy.ndarray, shape (G,)
        :func:`unfold_direction`'s component loadings.
    keep : float
        Features with |v_g| of at least ``keep`` times the largest, not loaded yet, are
        given the sign of ``v_g`` times the median |loading| of the factor (1 when it has
        none).

    Returns
    -------
    numpy.ndarray, shape (G,)
    """
    w, v = _loading_pair(w_g, v_g, "w_g and v_g")
    loaded = np.abs(w) > tol
    unit = float(np.median(np.abs(w[loaded]))) if loaded.any() else 1.0
    out = np.where(loaded, w, 0.0)
    add = (np.abs(v) >= keep * np.abs(v).max()) & ~loaded
    out[add] = np.sign(v[add]) * unit
    return out


def split_fold_pair(z_nk: np.ndarray):
    """The two factors whose codes look most like one factor split over two latents.

    A fold can also be split: one code tracks a factor's size |z| (the V-shaped features
    are fitted through it) while a second code carries its sign, so two latents hold one
    factor and another factor is crowded out. The size code then rises with the sign
    code's distance from its centre, which two codes of different factors do not do. For
    every ordered pair (a, b) this scores ``|Spearman corr(z_a, |z_b - median(z_b)|)|``
    (in ``benchmarks/missed_factors.py``'s fits: 0.23-0.41 on the three split folds of data
    sets 60-69, at most 0.09 elsewhere).

    Parameters
    ----------
    z_nk : numpy.ndarray, shape (N, K)
        Encoder means (K >= 2).

    Returns
    -------
    (score, a, b, s_n) : float, int, int, numpy.ndarray
        The largest score, the size code ``a``, the sign code ``b``, and the merged code
        ``sign(z_b - median(z_b)) * size_n`` standardised to mean 0 and sd 1, where
        ``size_n`` is the size that the row's rank in ``z_a`` (oriented to rise with |z_b|)
        implies under a standard normal prior.

    Raises
    ------
    ValueError
        For fewer than 2 factors or 3 rows.
    """
    from scipy.stats import spearmanr

    z = np.asarray(z_nk, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2 or z.shape[0] < 3:
        raise ValueError(f"z_nk must be (N, K) with N >= 3 and K >= 2, got shape {z.shape}")
    best = None
    for b in range(z.shape[1]):
        dist_n = np.abs(z[:, b] - np.median(z[:, b]))
        for a in range(z.shape[1]):
            if a == b:
                continue
            rho = spearmanr(z[:, a], dist_n)[0]
            rho = 0.0 if not np.isfinite(rho) else float(rho)
            if best is None or abs(rho) > best[0]:
                best = (abs(rho), a, b, 1.0 if rho >= 0 else -1.0)
    score, a, b, direction = best
    s_n = np.sign(z[:, b] - np.median(z[:, b])) * _rank_size(direction * z[:, a])
    return score, a, b, _standardised(s_n)


def anchor_embedding(v_na: np.ndarray, *, n_neighbors: int = 15, seed: int = 0,
                     max_rows: int = EMBED_ROWS) -> np.ndarray:
    """One coordinate per row along the curve the rows trace in a factor's anchor features.

    A factor's anchors depend on it alone, so the rows lie near a curve through the anchor
    space, parametrised by the factor; the first coordinate of a spectral embedding of the
    rows' nearest-neighbour graph orders them along it whatever the shape of the curve
    (V-shaped anchors included, as long as some anchor separates the two arms).

    Parameters
    ----------
    v_na : numpy.ndarray, shape (N, A)
        The rows' values in the anchor features, on comparable scales (what the encoder
        sees), A >= 1.
    n_neighbors : int
        Neighbours per row in the graph.
    seed : int
        Seeds the embedding's solver and the choice of rows when N exceeds ``max_rows``.
    max_rows : int
        Rows embedded; the others get the mean coordinate of their ``n_neighbors`` nearest
        embedded rows.

    Returns
    -------
    numpy.ndarray, shape (N,)
        Normal scores of the coordinate's ranks (mean about 0, sd about 1); its sign is
        arbitrary.
    """
    from scipy.special import ndtri
    from scipy.stats import rankdata
    from sklearn.manifold import SpectralEmbedding
    from sklearn.neighbors import KNeighborsRegressor

    v = np.nan_to_num(np.asarray(v_na, dtype=np.float64))
    if v.ndim != 2 or v.shape[0] <= n_neighbors + 1 or v.shape[1] < 1:
        raise ValueError(f"v_na must be (N, A) with A >= 1 and N > n_neighbors + 1 = "
                         f"{n_neighbors + 1}, got shape {v.shape}")
    N = v.shape[0]
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(N, max_rows, replace=False)) if N > max_rows else np.arange(N)
    emb = SpectralEmbedding(n_components=1, n_neighbors=n_neighbors, random_state=seed)
    e = emb.fit_transform(v[rows])[:, 0]
    if len(rows) < N:
        e = KNeighborsRegressor(n_neighbors=n_neighbors).fit(v[rows], e).predict(v)
    return ndtri(rankdata(e) / (N + 1))


def torn_factor(z_nk: np.ndarray, view_ng: np.ndarray, support_gk: np.ndarray, *,
                seed: int = 0, skip=()):
    """The factor whose code agrees least with the ordering of its own anchors.

    A code can carry a factor *torn*: it follows the factor on one side of some value and
    jumps on the other, so that rows far apart in the factor share codes (on data simulated
    from the model, the most common way a factor was missed after re-seeding rounds). The
    rows' ordering along the factor's anchors (:func:`anchor_embedding`) does not tear, so
    its rank correlation with the code is near 1 for a factor carried whole and well below
    it for a torn one (0.22-0.56 against at least 0.90 on the fits of
    ``benchmarks/missed_factors.py``'s data sets 60-69).

    Parameters
    ----------
    z_nk : numpy.ndarray, shape (N, K)
        Encoder means.
    view_ng : numpy.ndarray, shape (N, G)
        What the encoder sees (:func:`~pyro_sparse.infer.encoder_view`).
    support_gk : numpy.ndarray of bool, shape (G, K)
        The fitted support; a factor's anchors are the features in its column alone.
    seed : int
        Passed to :func:`anchor_embedding`.
    skip : collection of int
        Factors not to consider.

    Returns
    -------
    (corr, k, s_n) : float, int or None, numpy.ndarray or None
        The lowest |Spearman corr(code, embedding)| over the factors with at least two
        anchors (not in ``skip``), its factor, and the embedding oriented to agree with
        the code (mean 0, sd 1); ``(nan, None, None)`` when no factor has two anchors.
    """
    from scipy.stats import spearmanr

    z = np.asarray(z_nk, dtype=np.float64)
    view = np.asarray(view_ng, dtype=np.float64)
    S = np.asarray(support_gk, dtype=bool)
    if z.ndim != 2 or view.ndim != 2 or z.shape[0] != view.shape[0] \
            or S.shape != (view.shape[1], z.shape[1]):
        raise ValueError(f"shapes disagree: z_nk {z.shape}, view_ng {view.shape}, "
                         f"support_gk {S.shape}; expected (N, K), (N, G) and (G, K)")
    alone = S & (S.sum(1, keepdims=True) == 1)
    best = (float("nan"), None, None)
    for k in range(z.shape[1]):
        anchors = np.flatnonzero(alone[:, k])
        if len(anchors) < 2 or k in skip:
            continue
        e = anchor_embedding(view[:, anchors], seed=seed)
        rho = spearmanr(z[:, k], e)[0]
        rho = 0.0 if not np.isfinite(rho) else float(rho)
        if best[1] is None or abs(rho) < best[0]:
            s_n = (1.0 if rho >= 0 else -1.0) * e
            best = (abs(rho), k, _standardised(s_n))
    return best


def merged_loadings(w_size_g: np.ndarray, w_sign_g: np.ndarray, tol: float = 1e-3
                    ) -> np.ndarray:
    """Loadings for a merged factor: the size code's, then the sign code's where it had none.

    Parameters
    ----------
    w_size_g, w_sign_g : numpy.ndarray, shape (G,)
        The two factors' loadings (entries with |w| <= ``tol`` count as 0).

    Returns
    -------
    numpy.ndarray, shape (G,)
    """
    a, b = _loading_pair(w_size_g, w_sign_g, "w_size_g and w_sign_g")
    return np.where(np.abs(a) > tol, a, np.where(np.abs(b) > tol, b, 0.0))


def reseed_factor(guide, decoder, x_ng, k: int, w_g, s_n, *, steps: int = 300,
                  batch_size: int = 200, lr: float = 1e-2, seed: int = 0,
                  encoder_sd: float = RESEED_ENCODER_SD, redraw_decoder: bool = True) -> float:
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
        shrunk towards 0, which would keep it silent). Left as it is with
        ``redraw_decoder=False``.
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
    redraw_decoder : bool
        Redraw the decoder's first-layer column (False when the decoder is known and frozen).

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
    gg.set_columns([k], w[:, None])
    with torch.no_grad():
        if hasattr(gg, "support_mask_gk"):
            gg.support_mask_gk[:, k] = 1.0
        A = decoder.A1_hk
        others = [j for j in range(K) if j != k]
        scale_h = A[:, others].abs().mean(1) if others else A[:, k].abs().clamp_min(1e-3)
        signs = torch.where(torch.rand(A.shape[0], generator=gen) < 0.5, -1.0, 1.0)
        if redraw_decoder:
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


def profile_column(per_feature_loss, candidates_cg) -> np.ndarray:
    """Each feature's best loading among candidate columns, feature by feature.

    In a Sparse VAE feature ``g``'s decoded mean depends on row ``g`` of W only, so trying
    whole candidate columns and keeping, for every feature, the candidate with its smallest
    loss is an exact search over each feature's loading.

    Parameters
    ----------
    per_feature_loss : callable
        ``per_feature_loss(c_g) -> (G,)`` losses with the column set to ``c_g``.
    candidates_cg : array-like, shape (C, G)
        Candidate columns.

    Returns
    -------
    numpy.ndarray, shape (G,)
        Per feature the candidate value with the smallest loss (NaN losses never win; the
        first candidate where all are NaN). Ties go to the earlier candidate.
    """
    cand = np.asarray(candidates_cg, dtype=np.float64)
    if cand.ndim != 2 or cand.shape[0] < 1:
        raise ValueError(f"candidates_cg must be (C, G) with C >= 1, got shape {cand.shape}")
    losses = np.stack([np.asarray(per_feature_loss(c), dtype=np.float64) for c in cand])
    if losses.shape != cand.shape:
        raise ValueError(f"per_feature_loss returned shape {losses.shape[1:]}, expected "
                         f"({cand.shape[1]},)")
    pick = np.argmin(np.where(np.isnan(losses), np.inf, losses), axis=0)
    return cand[pick, np.arange(cand.shape[1])]


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


def reseed_fit(model, guide, x_ng, *, n_rounds: int, epochs: int, batch_size: int = 100,
               lr: float = 1e-2, seed: int = 0, likelihood: str = "normal", col_sd_g=None,
               library=None, redraw_decoder: bool = True, profile_loadings: bool = False,
               progress: bool = False, chunk: int = 1024, lr_decay: float = 0.0,
               unfold: bool = True, merge: bool = False, reorder: bool = True):
    """Re-seeding rounds on a fitted Sparse VAE (in place), as ``SparseVAE(reseed_rounds=...)``.

    Each round (:func:`reseed_rounds`) re-seeds the factor with the smallest
    :func:`ablation_costs` on :func:`residual_direction` of the current Pearson residuals
    (:func:`reseed_factor`), trains it and the state as it was for ``epochs`` epochs each
    from the same seed, and keeps the lower full-data negative ELBO. With ``unfold``, a
    round whose :func:`unfold_direction` ratio exceeds :data:`UNFOLD_RATIO` restarts that
    factor on its signed code instead, with :func:`unfold_loadings` (kept, like every
    proposal, only when the ELBO prefers it).

    Parameters
    ----------
    model : SparseVAEModel
    guide : ModelGuide
        Fitted; built under ``pyro.settings.context(module_local_params=True)`` (the rounds
        run under it).
    x_ng : torch.Tensor or SparseRows, shape (N, G)
        The training rows on the guide's device (NaN marks a missing entry).
    n_rounds, epochs : int
        Rounds, and epochs of each of the two trainings per round.
    batch_size, lr, seed : int, float, int
        As :func:`~pyro_sparse.infer.fit_svi`; round ``r`` trains with a seed derived from
        ``seed`` and ``r``.
    likelihood : str
        The model's likelihood (for the residuals).
    col_sd_g : array-like, shape (G,), optional
        Normal likelihood: residuals are divided by these column sds (0 is read as 1), so
        that no feature's scale decides which factor is needed least.
    library : optional
        The model's library-size setting (count likelihoods), as given to the model.
    redraw_decoder : bool
        See :func:`reseed_factor`; False when the decoder is known and frozen.
    profile_loadings : bool
        After :func:`reseed_factor`, set each loading of the re-seeded column that the
        residual component kept to the value in :data:`PROFILE_GRID` (times the median
        |loading| of the other factors) with the smallest mean squared residual, the factor's
        scores at their pretraining targets (:func:`profile_column`). The residual component
        gives a loading's size and its sign in the residuals, but through the nonlinear
        decoder the sign of W that produces it is the network's: a decoder that cannot
        adapt (frozen) needs the right sign from the start.
    progress : bool
        Progress bars for the trainings.
    chunk : int
        Rows per batch when encoding and computing residuals.
    lr_decay : float
        As :func:`~pyro_sparse.infer.fit_svi`: both trainings of every round end with the
        learning rate falling over this fraction of their steps, so the ELBOs compared are
        those of settled fits.
    unfold : bool
        Let a round unfold a factor whose codes look like a fold (above). False gives the
        rounds as they were before the unfolding proposal existed.
    reorder : bool
        Let a round that does not unfold, and whose :func:`torn_factor` correlation is below
        :data:`REORDER_CORR`, restart that factor on the ordering of its anchors with its
        loadings as they are (``move="reorder"``), kept only when the ELBO prefers it. Each
        factor is reordered at most once per call, so that a rejected reorder does not take
        the rounds that re-seeding needs.
    merge : bool
        Let a round that neither unfolds nor reorders, and whose :func:`split_fold_pair`
        score reaches :data:`MERGE_SCORE`, restart the sign code on the merged code (with
        :func:`merged_loadings`) and the size code on :func:`residual_direction` of the
        residuals (the factor the split crowded out), kept only when the ELBO prefers it.

    Returns
    -------
    (history, rounds) : list of float, list of dict
        As :func:`reseed_rounds`; each round's dict also has ``factor``, ``move``
        (``"reseed"``, ``"unfold"``, ``"reorder"`` or ``"merge"``; a merge also records
        ``merged_into``, the sign code, and ``merge_pretrain_mse``), ``unfold_ratio`` (NaN
        without ``unfold``), ``reorder_corr`` (with ``reorder``; NaN when no factor has two
        anchors), ``merge_score`` (with ``merge``; NaN when another move came first),
        ``ablation_cost`` (per factor), ``pretrain_mse`` and ``n_loadings`` (and, with
        ``profile_loadings``, ``profile_flips``: kept loadings whose sign the search
        reversed).
    """
    N = x_ng.shape[0]
    dev = guide.local_guide.fill_g.device
    col_sd = (np.ones(1) if col_sd_g is None or likelihood != "normal"
              else np.asarray(col_sd_g, dtype=np.float64))
    col_sd = np.where(col_sd > 0, col_sd, 1.0)  # a constant column has residuals of 0

    def round_seed(r):
        return (int(seed) * 7919 + 104729 * (r + 1)) % (2 ** 32)

    def encoder_means():
        with torch.no_grad():
            return np.concatenate([guide.local_guide.encode(x_ng[a:a + chunk])[0].cpu()
                                   .double().numpy() for a in range(0, N, chunk)])

    def residuals_of(z_nk, W_gk=None):
        out = []
        with torch.no_grad():
            if W_gk is None:
                W_gk = guide.globals_guide._W_point().detach()
            for a in range(0, N, chunk):
                xb = x_ng[a:a + chunk]
                z = torch.as_tensor(z_nk[a:a + chunk], dtype=torch.float32, device=dev)
                x0, mask = split_missing(xb)
                mean = mean_from_output(likelihood, model.decoder(z, W_gk), x0, mask, library)
                out.append(pearson_residuals(likelihood, xb.cpu().double().numpy(),
                                             mean.cpu().double().numpy()))
        return np.concatenate(out) / col_sd

    reordered = set()

    def propose(r):
        z = encoder_means()
        resid = residuals_of(z)
        costs = ablation_costs(residuals_of, z, resid_ng=resid)
        ratio, move = float("nan"), "reseed"
        if unfold:
            ratio, k_fold, s_fold, v_fold = unfold_direction(z, resid)
        gg = guide.globals_guide
        W_now = gg._W_point().detach().cpu().double().numpy()
        unfolds = unfold and ratio > UNFOLD_RATIO
        extra = {}
        torn = (float("nan"), None, None)
        if reorder and not unfolds:
            support = estimated_support(W_now, gg.inclusion_probs().cpu().numpy())
            torn = torn_factor(z, encoder_view(guide.local_guide, x_ng), support,
                               seed=round_seed(r) % 100003, skip=reordered)
            extra["reorder_corr"] = torn[0]
        reorders = torn[1] is not None and torn[0] < REORDER_CORR
        if reorders:
            reordered.add(torn[1])  # once per factor: a rejected reorder is not proposed again
        score = float("nan")
        if merge and not (unfolds or reorders) and z.shape[1] > 1:
            score, k_size, k_sign, s_merged = split_fold_pair(z)
        if unfolds:
            k, s_n, move = k_fold, s_fold, "unfold"
            w_g = unfold_loadings(W_now[:, k], v_fold)
        elif reorders:
            # the code is torn: restart it on its anchors' ordering, loadings as they are
            k, s_n, move = torn[1], torn[2], "reorder"
            w_g = W_now[:, k].copy()
        elif merge and score >= MERGE_SCORE:
            # the sign code becomes the whole factor; the size code is freed and restarted
            # on what the residuals share (the factor the split crowded out)
            move = "merge"
            w_m = merged_loadings(W_now[:, k_size], W_now[:, k_sign])
            extra["merged_into"] = k_sign
            extra["merge_pretrain_mse"] = reseed_factor(
                guide, model.decoder, x_ng, k_sign, w_m, s_merged, batch_size=batch_size,
                lr=lr, seed=round_seed(r) + 1, redraw_decoder=redraw_decoder)
            k = k_size
            w_g, s_n = residual_direction(resid)
        else:
            k = int(np.argmin(costs))
            w_g, s_n = residual_direction(resid)
        mse = reseed_factor(guide, model.decoder, x_ng, k, w_g, s_n, batch_size=batch_size,
                            lr=lr, seed=round_seed(r), redraw_decoder=redraw_decoder)
        if merge:
            extra["merge_score"] = score
        out = dict(factor=k, move=move, unfold_ratio=ratio,
                   ablation_cost=[float(c) for c in costs], pretrain_mse=mse,
                   n_loadings=int(np.count_nonzero(w_g)), **extra)
        if profile_loadings:
            out["profile_flips"] = _profile(k, w_g, z, s_n)
        return out

    def _profile(k, w_g, z, s_n):
        gg = guide.globals_guide
        W0 = gg._W_point().detach().clone()
        others = np.abs(np.delete(W0.cpu().numpy(), k, axis=1))
        unit = float(np.median(others[others > 0])) if (others > 0).any() else 1.0
        z = z.copy()
        z[:, k] = s_n

        def per_feature_loss(c_g):
            W = W0.clone()
            W[:, k] = torch.as_tensor(c_g, dtype=W.dtype, device=W.device)
            return np.nanmean(residuals_of(z, W) ** 2, axis=0)

        kept = w_g != 0
        cand = np.asarray(PROFILE_GRID)[:, None] * unit * kept[None, :]
        c_g = profile_column(per_feature_loss, cand)
        gg.set_columns([k], np.asarray(c_g)[:, None])
        return int(np.sum(kept & (np.sign(c_g) == -np.sign(w_g))))

    def continue_fit(r):
        return fit_svi(model, guide, x_ng, epochs=epochs, batch_size=batch_size, lr=lr,
                       seed=round_seed(r), progress=progress,
                       desc=f"reseed round {r + 1}/{n_rounds}", lr_decay=lr_decay)

    def snapshot():
        return ({k: v.detach().clone() for k, v in model.state_dict().items()},
                {k: v.detach().clone() for k, v in guide.state_dict().items()})

    def restore(state):
        model.load_state_dict(state[0], strict=True)
        guide.load_state_dict(state[1], strict=True)

    with pyro.settings.context(module_local_params=True):
        return reseed_rounds(n_rounds, propose=propose, continue_fit=continue_fit,
                             loss=lambda: full_data_loss(model, guide, x_ng),
                             snapshot=snapshot, restore=restore)
