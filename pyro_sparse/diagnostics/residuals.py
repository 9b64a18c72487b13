"""Residual dependence: does a fit leave shared variation in what it calls noise?

Given the factors, the model says the features are independent: ``x_ng = f_g(W_g * z_n) +
noise`` with noise independent across features. So the residuals of a fit that has found
its factors should be close to uncorrelated across features, while a factor the fit has
missed, or whose features it treats as noise, leaves a block of features whose residuals
move together. This module measures that with the largest eigenvalue of the residuals'
correlation matrix: under independent residuals it sits near the Marchenko-Pastur edge
``(1 + sqrt(G / N))^2``; a component shared by ``m`` features with residual correlation
``r`` adds about ``1 + (m - 1) r``.

The residuals are plug-in ones (at the encoder means), so they also carry the encoder's
uncertainty about z, which correlates the residuals of features that share a factor a little;
the flag therefore asks for a clear excess over the null edge, not any excess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..residual_stats import (
    DENSE_MAX_FEATURES,
    leading_component,
    pearson_residuals,
    standardise_columns,
)

__all__ = ["RESIDUAL_EXCESS", "ResidualCheck", "residual_check", "residual_correlation",
           "residual_dependence"]

#: default excess of the largest residual eigenvalue over the null edge that raises the flag
#: (half a feature's worth of shared residual variance; chosen on seeds 0-7 of
#: benchmarks/redundancy.py, where good fits reached at most edge + 0.45, and checked on
#: seeds 8-15)
RESIDUAL_EXCESS = 0.5
#: a feature is listed with the leading component when it carries this share of the
#: feature's residual variance
_SHARE = 0.25
#: rows used by :func:`residual_check` at most (a seeded random subset beyond it); it also
#: keeps rows x features under ``_MAX_CELLS`` (but uses at least 2,000 rows)
MAX_ROWS = 20000
_MAX_CELLS = 20_000_000


@dataclass
class ResidualCheck:
    """What :func:`residual_check` found.

    Attributes
    ----------
    eigenvalue : float
        Largest eigenvalue of the residual correlation matrix (the number of features' worth
        of residual variance its component carries).
    null_edge : float
        ``(1 + sqrt(G / N))^2``, where the largest eigenvalue sits for independent residuals.
    threshold : float
        ``null_edge + excess``: the flag is raised at or above it.
    flagged : bool
        ``eigenvalue >= threshold``.
    features : list of (str, float)
        Features whose residual variance the leading component carries a share >= 0.25 of,
        with that share, largest first; when no feature reaches 0.25 (a component spread
        thinly over many features, as on data with hundreds of genes), the ten largest.
    spread : bool
        True when no feature's share reaches 0.25 (``features`` then holds the ten largest).
    pairs : list of (str, str, float)
        The five feature pairs with the largest |residual correlation|.
    corr_gg : numpy.ndarray, shape (G, G), or None
        The residual correlation matrix (None above ``DENSE_MAX_FEATURES`` = 2000 features,
        where it is not formed).
    n_rows : int
    """

    eigenvalue: float
    null_edge: float
    threshold: float
    flagged: bool
    features: list = field(default_factory=list)
    pairs: list = field(default_factory=list)
    corr_gg: np.ndarray | None = None
    n_rows: int = 0
    spread: bool = False

    def __str__(self):
        head = (f"largest residual eigenvalue {self.eigenvalue:.2f} (independent residuals: "
                f"about {self.null_edge:.2f}; flag at {self.threshold:.2f})")
        if not self.flagged:
            return head + ": no shared variation left in the residuals."
        feats = ", ".join(f"{n} ({s:.2f})" for n, s in self.features)
        which = (f"a component spread thinly over many features moves together (largest "
                 f"shares of residual variance: {feats})" if self.spread else
                 f"the residuals of {feats} move together")
        return (head + f": {which}. The fit treats shared "
                "variation of these features as independent noise: a factor is probably "
                "missed (or too few factors were fitted). Refit with other seeds, more "
                "epochs, init='factor_analysis' or reseed_rounds=3 (SparseVAE), or more "
                "factors, and compare held-out scores.")

    def to_dict(self) -> dict:
        """JSON-ready summary (without the correlation matrix)."""
        return dict(eigenvalue=self.eigenvalue, null_edge=self.null_edge,
                    threshold=self.threshold, flagged=self.flagged, n_rows=self.n_rows,
                    spread=self.spread,
                    features=[dict(feature=n, share=s) for n, s in self.features],
                    pairs=[dict(features=[a, b], corr=r) for a, b, r in self.pairs])


def residual_correlation(resid_ng) -> np.ndarray:
    """Correlation matrix of residual columns, NaN entries left out.

    Each column is centred and scaled over its observed entries; a pair's correlation is
    the mean product over the rows where both are observed. A column with no spread (or
    fewer than two observed entries) correlates 0 with every other.

    Parameters
    ----------
    resid_ng : array, shape (N, G)

    Returns
    -------
    numpy.ndarray, shape (G, G)
        Symmetric, unit diagonal.
    """
    r = np.asarray(resid_ng, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"residuals must be 2-dimensional, got shape {r.shape}")
    zs, obs = standardise_columns(r)
    both = obs.T.astype(np.float64) @ obs.astype(np.float64)
    C = (zs.T @ zs) / np.maximum(both, 1.0)
    C = np.clip(0.5 * (C + C.T), -1.0, 1.0)
    np.fill_diagonal(C, 1.0)
    return C


def residual_dependence(resid_ng, feature_names=None,
                        excess: float = RESIDUAL_EXCESS) -> ResidualCheck:
    """The residual dependence statistics of a residual matrix (pure function).

    Up to 2,000 features the correlation matrix is formed (pairwise over observed entries,
    :func:`residual_correlation`); above, the leading eigenpair comes from a truncated SVD of
    the standardised residuals (missing entries as 0, so the normalisation is per column, not
    per pair) and ``pairs`` is searched among the 200 features with the largest share.

    Parameters
    ----------
    resid_ng : array, shape (N, G)
        Residuals (NaN where an entry is missing).
    feature_names : list of str, optional
    excess : float
        The flag is raised when the largest eigenvalue is at least ``null_edge + excess``.

    Returns
    -------
    ResidualCheck
    """
    r = np.asarray(resid_ng, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] < 2 or r.shape[0] < 3:
        raise ValueError(f"residuals need at least 3 rows and 2 features, got shape {r.shape}")
    if not np.isfinite(excess) or excess < 0:
        raise ValueError(f"excess must be a finite number >= 0, got {excess}")
    N, G = r.shape
    names = [str(n) for n in feature_names] if feature_names is not None else \
        [f"feature_{g}" for g in range(G)]
    if len(names) != G:
        raise ValueError(f"{len(names)} feature names for {G} residual columns")
    if G <= DENSE_MAX_FEATURES:
        C = residual_correlation(r)
        vals, vecs = np.linalg.eigh(C)
        lam, v = float(vals[-1]), vecs[:, -1]
        cand, Cc = np.arange(G), C
    else:
        lam, v = leading_component(standardise_columns(r)[0], DENSE_MAX_FEATURES)
        C = None
    share = lam * v ** 2  # share of each feature's residual variance on the leading component
    order = [g for g in np.argsort(-share) if share[g] >= _SHARE]
    spread = not order
    if spread:
        order = list(np.argsort(-share)[:10])
    if C is None:
        cand = np.argsort(-share)[:200]
        Cc = residual_correlation(r[:, cand])
    edge = float((1 + np.sqrt(G / N)) ** 2)
    iu = np.triu_indices(len(cand), 1)
    top = np.argsort(-np.abs(Cc[iu]))[:5]
    pairs = [(names[cand[iu[0][i]]], names[cand[iu[1][i]]], float(Cc[iu][i])) for i in top]
    thr = edge + float(excess)
    return ResidualCheck(eigenvalue=lam, null_edge=edge, threshold=thr, flagged=lam >= thr,
                         features=[(names[g], float(share[g])) for g in order], pairs=pairs,
                         corr_gg=C, n_rows=N, spread=spread)


def residual_check(model, X, excess: float = RESIDUAL_EXCESS, layer: str | None = None,
                   batch_size: int = 4096, max_rows: int | None = MAX_ROWS,
                   seed: int = 0) -> ResidualCheck:
    """Is shared variation left in a fitted model's residuals on ``X``?

    Computes the residuals ``x - model.reconstruct(x)`` (Pearson residuals ``(x - mu) /
    sqrt(var)`` for count and 0/1 likelihoods, with the Poisson or Bernoulli variance), their
    correlation matrix across features and its largest eigenvalue (see the module
    docstring). A flag means a block of features whose residuals move together: a factor the
    fit missed, or too few factors.

    Measured (``benchmarks/results/redundancy.md``, 16 seeds per data kind): it flagged 14 of
    16 failed default fits on data simulated from the model (the fit treated a factor's
    features as noise; 71 of the 72 features it listed were on a missed factor's support),
    16 of 16 fits with one factor too few, and none of 24 good fits. A factor carried as a
    non-invertible function of the truth (``|z_k|`` for a V-shaped anchor) leaves little in
    the residuals and is not seen, nor is a rotated solution. Real data with more structure
    than the fitted factors is flagged too, which is what the statistic says: read the
    listed features.

    Parameters
    ----------
    model : fitted SparseVAE or VAE, or Restarts (its first restart is checked)
    X : array-like, DataFrame, AnnData or scipy.sparse matrix, shape (N, G)
        Rows to check (the training rows, or held-out rows).
    excess : float
        Flag when the largest eigenvalue is at least ``(1 + sqrt(G / N))^2 + excess``.
    layer : str, optional
        With an AnnData, the layer to use.
    batch_size : int
        Rows per forward pass.
    max_rows : int or None
        Use a random subset of at most this many rows (seeded by ``seed``), and of at most
        ``max(2000, 2e7 / G)`` rows, so that memory stays near a few copies of 2e7 numbers
        (plus G x G up to 2,000 features); None: all rows.
    seed : int
        Seed of that subset.

    Returns
    -------
    ResidualCheck

    Raises
    ------
    ValueError
        For a model that is not fitted, data of the wrong width, or fewer than 3 rows.
    """
    from ..io import as_data_matrix
    from .arviz import chains_of

    est = chains_of(model)[0][0]
    x, names = as_data_matrix(X, "X", layer)
    if max_rows is not None:
        n_use = min(int(max_rows), max(2000, _MAX_CELLS // max(x.shape[1], 1)))
        if x.shape[0] > n_use:
            keep = np.sort(np.random.default_rng(seed).choice(x.shape[0], n_use,
                                                              replace=False))
            x = x[keep]
    if hasattr(x, "toarray"):
        x = x.toarray()
    x = np.asarray(x, dtype=np.float64)
    if names is not None:  # a plain array carries the names checked against the fit
        import pandas as pd

        data = pd.DataFrame(x, columns=list(names))
    else:
        data = x
    mean = est.reconstruct(data, batch_size=batch_size)
    if names is None:
        names = getattr(est, "feature_names_in_", None)
    res = pearson_residuals(est.likelihood, x, np.asarray(mean, dtype=np.float64))
    return residual_dependence(res, names, excess)
