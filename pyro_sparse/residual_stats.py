"""Residuals of a fit and their leading shared component (pure numpy).

A base-layer module: :mod:`pyro_sparse.diagnostics.residuals` reads these statistics from a
fitted model to flag a missed factor, and :mod:`pyro_sparse.infer.reseed` uses the same
component to restart a collapsed factor during fitting.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DENSE_MAX_FEATURES", "leading_component", "pearson_residuals",
           "standardise_columns"]

#: above this many features the G x G correlation matrix is not formed: the leading
#: eigenpair comes from a truncated SVD of the standardised residuals (memory O(N G))
DENSE_MAX_FEATURES = 2000


def pearson_residuals(likelihood: str, x_ng: np.ndarray, mean_ng: np.ndarray) -> np.ndarray:
    """Residuals on a scale where columns can be compared.

    Raw residuals ``x - mean`` for the normal likelihood (a correlation scales each column);
    Pearson residuals ``(x - mean) / sqrt(var)`` for 0/1 data (``var = mean (1 - mean)``) and
    counts (``var = mean``), whose variance grows with the mean within a column. NaN in
    ``x_ng`` stays NaN.

    Parameters
    ----------
    likelihood : str
        The likelihood name ("normal", "bernoulli", "poisson", "negbin", "categorical").
    x_ng, mean_ng : numpy.ndarray, shape (N, G)
        Data and the fit's expected data.

    Returns
    -------
    numpy.ndarray, shape (N, G)
    """
    d = x_ng - mean_ng
    if likelihood == "normal":
        return d
    if likelihood == "bernoulli":
        var = mean_ng * (1 - mean_ng)
    else:
        var = mean_ng
    return d / np.sqrt(np.maximum(var, 1e-8))


def standardise_columns(r_ng: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns centred and scaled over their observed entries; missing and constant -> 0.

    Returns
    -------
    (zs_ng, observed_ng) : numpy.ndarray, numpy.ndarray of bool
    """
    obs = np.isfinite(r_ng)
    n_obs = obs.sum(0)
    r0 = np.where(obs, r_ng, 0.0)
    mean = r0.sum(0) / np.maximum(n_obs, 1)
    dev = np.where(obs, r0 - mean, 0.0)
    sd = np.sqrt((dev ** 2).sum(0) / np.maximum(n_obs, 1))
    ok = (sd > 1e-12 * (1 + np.abs(mean))) & (n_obs >= 2)
    return np.where(ok, dev / np.where(ok, sd, 1.0), 0.0), obs


def leading_component(zs_ng: np.ndarray,
                      dense_max_features: int = DENSE_MAX_FEATURES) -> tuple[float, np.ndarray]:
    """Largest eigenpair of ``zs.T zs / N`` (the correlation of standardised columns).

    Up to ``dense_max_features`` columns by a dense eigendecomposition, above by a
    truncated SVD without forming the G x G matrix.

    Parameters
    ----------
    zs_ng : numpy.ndarray, shape (N, G)
        Standardised columns (:func:`standardise_columns`).
    dense_max_features : int
        Widest matrix decomposed densely.

    Returns
    -------
    (eigenvalue, vector_g) : float, numpy.ndarray of shape (G,), unit norm
    """
    zs = np.asarray(zs_ng, dtype=np.float64)
    if zs.shape[1] <= dense_max_features:
        vals, vecs = np.linalg.eigh(zs.T @ zs / zs.shape[0])
        return float(vals[-1]), vecs[:, -1]
    from scipy.sparse.linalg import svds

    _, sv, vt = svds(zs / np.sqrt(zs.shape[0]), k=1, random_state=0)
    return float(sv[0] ** 2), vt[0]
