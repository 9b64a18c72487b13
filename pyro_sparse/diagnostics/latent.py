"""Latent-variable metrics: MIG, active / passive / mixed variables, active units.

Pure numpy / scikit-learn functions on encoder means and variances (``transform(X,
return_std=True)``) and, for MIG, known ground-truth factors.
"""

from __future__ import annotations

import numpy as np

from ._arrays import paired_rows

__all__ = ["discretize", "mig", "latent_activity", "active_units"]


def discretize(x_nk: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Equal-width histogram bins per column (as disentanglement_lib), shape (N, K) of int.

    Columns with a handful of distinct values (at most ``n_bins``) keep them as categories.
    """
    x = np.asarray(x_nk, float)
    if x.ndim == 1:
        x = x[:, None]
    out = np.empty(x.shape, dtype=int)
    for k in range(x.shape[1]):
        col = x[:, k]
        vals = np.unique(col)
        if len(vals) <= n_bins:
            out[:, k] = np.searchsorted(vals, col)
        else:
            edges = np.histogram_bin_edges(col, bins=n_bins)
            out[:, k] = np.digitize(col, edges[1:-1])
    return out


def mig(z_nk: np.ndarray, v_nj: np.ndarray, n_bins: int = 20) -> dict:
    """Mutual Information Gap (Chen et al. 2018) of a code against known factors.

    For each true factor v_j: (I(z_(1); v_j) - I(z_(2); v_j)) / H(v_j), where z_(1) and
    z_(2) are the code dimensions with the largest and second-largest mutual information
    with v_j. Both are discretised with ``n_bins`` equal-width bins.

    Parameters
    ----------
    z_nk : numpy.ndarray, shape (N, K), K >= 2
        Learned code (e.g. encoder means).
    v_nj : numpy.ndarray, shape (N, J)
        Ground-truth factors.
    n_bins : int
        Bins per variable.

    Returns
    -------
    dict
        ``mig`` (mean over factors, in [0, 1]), ``per_factor`` (J,), ``mutual_info`` (K, J)
        in nats.
    """
    from sklearn.metrics import mutual_info_score  # lazily: a second of import time

    z_nk, v_nj = paired_rows(z_nk, v_nj, ("z_nk", "v_nj"))
    z = discretize(z_nk, n_bins)
    v = discretize(v_nj, n_bins)
    if z.shape[1] < 2:
        raise ValueError("MIG needs a code with at least 2 dimensions")
    mi = np.array([[mutual_info_score(v[:, j], z[:, k]) for j in range(v.shape[1])]
                   for k in range(z.shape[1])])
    H = np.array([mutual_info_score(v[:, j], v[:, j]) for j in range(v.shape[1])])
    top = np.sort(mi, axis=0)[::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(H > 0, (top[0] - top[1]) / H, 0.0)
    return dict(mig=float(per.mean()), per_factor=per, mutual_info=mi)


def latent_activity(mu_nk: np.ndarray, sd_nk: np.ndarray, active_var: float = 0.5,
                    passive_var: float = 0.8, passive_mean_sq: float = 0.2,
                    agreement: float = 0.95) -> dict:
    """Active, passive and mixed latent variables ("Be More Active!", Bonheme & Grzes).

    Per example a variable is active if its posterior variance s^2 < ``active_var`` and
    passive if s^2 > ``passive_var`` and mu^2 < ``passive_mean_sq``. Over the data set it is
    active (or passive) when at least ``agreement`` of the examples say so, else mixed.

    Parameters
    ----------
    mu_nk, sd_nk : numpy.ndarray, shape (N, K)
        Encoder means and standard deviations.

    Returns
    -------
    dict
        ``labels`` (K,) of "active" / "passive" / "mixed", ``active_fraction`` and
        ``passive_fraction`` (K,) over examples.
    """
    mu, sd = np.asarray(mu_nk, float), np.asarray(sd_nk, float)
    if mu.shape != sd.shape or mu.ndim != 2:
        raise ValueError(f"mu and sd must be 2-d of one shape, got {mu.shape} and {sd.shape}")
    var = sd**2
    act = (var < active_var).mean(0)
    pas = ((var > passive_var) & (mu**2 < passive_mean_sq)).mean(0)
    labels = np.where(act >= agreement, "active", np.where(pas >= agreement, "passive", "mixed"))
    return dict(labels=labels, active_fraction=act, passive_fraction=pas)


def active_units(mu_nk: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Active units (Burda et al.): Var_x(E[z_k | x]) > ``threshold``, a bool mask (K,)."""
    mu = np.asarray(mu_nk, float)
    if mu.ndim != 2:
        raise ValueError(f"mu must be 2-d (N, K), got shape {mu.shape}")
    return mu.var(0) > threshold
