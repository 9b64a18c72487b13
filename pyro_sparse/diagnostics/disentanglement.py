"""DCI disentanglement (Eastwood & Williams) with gradient-boosted trees, as disentanglement_lib.

Pure numpy / scikit-learn: importances of each code for each true factor, then entropy-based
disentanglement and completeness, and informativeness as out-of-fold R^2.
"""

from __future__ import annotations

import numpy as np

from ._arrays import paired_rows

__all__ = ["dci", "importance_matrix", "dci_from_importance"]


def importance_matrix(codes_nk: np.ndarray, factors_nj: np.ndarray, seed: int = 0):
    """Gradient-boosted-tree importances R (K codes x J factors) and out-of-fold R^2 per factor.

    Parameters
    ----------
    codes_nk : numpy.ndarray, shape (N, K)
        Learned codes (e.g. encoder means), all rows used.
    factors_nj : numpy.ndarray, shape (N, J)
        True factors.
    seed : int
        Seeds the trees and the 2-fold split for informativeness.

    Returns
    -------
    R_kj : numpy.ndarray, shape (K, J)
    r2_j : numpy.ndarray, shape (J,)
    """
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.model_selection import cross_val_predict

    codes, factors = paired_rows(codes_nk, factors_nj, ("codes_nk", "factors_nj"))
    K, J = codes.shape[1], factors.shape[1]
    R = np.zeros((K, J))
    r2 = np.zeros(J)
    for j in range(J):
        y = factors[:, j]
        gbt = GradientBoostingRegressor(random_state=seed)
        gbt.fit(codes, y)
        R[:, j] = np.abs(gbt.feature_importances_)
        pred = cross_val_predict(GradientBoostingRegressor(random_state=seed), codes, y, cv=2)
        r2[j] = 1.0 - np.mean((pred - y) ** 2) / max(np.var(y), 1e-12)
    return R, r2


def _entropy_base(p: np.ndarray, base: int) -> np.ndarray:
    p = np.clip(p, 1e-12, 1.0)
    return -(p * np.log(p)).sum(-1) / np.log(base)


def dci_from_importance(R_kj: np.ndarray) -> tuple[float, float]:
    """Disentanglement and completeness from an importance matrix (K codes x J factors).

    Returns
    -------
    tuple of float
        ``(disentanglement, completeness)``, each in [0, 1]; 1 when every code explains at
        most one factor (disentanglement) / every factor is explained by one code
        (completeness).
    """
    R = np.abs(np.asarray(R_kj, float)) + 1e-12
    K, J = R.shape
    if J > 1:
        d_k = 1.0 - _entropy_base(R / R.sum(1, keepdims=True), J)
        rho = R.sum(1) / R.sum()
        D = float((rho * d_k).sum())
    else:
        D = 1.0
    if K > 1:
        c_j = 1.0 - _entropy_base((R / R.sum(0, keepdims=True)).T, K)
        C = float(c_j.mean())
    else:
        C = 1.0
    return D, C


def dci(codes_nk: np.ndarray, factors_nj: np.ndarray, seed: int = 0) -> dict:
    """DCI scores of codes against true factors.

    Parameters
    ----------
    codes_nk, factors_nj : numpy.ndarray
        Codes (N, K) and true factors (N, J); every row given is used.
    seed : int
        Random seed of the trees.

    Returns
    -------
    dict
        ``disentanglement``, ``completeness``, ``informativeness`` (mean out-of-fold R^2)
        and the importance matrix ``R``.
    """
    R, r2 = importance_matrix(codes_nk, factors_nj, seed)
    D, C = dci_from_importance(R)
    return dict(disentanglement=D, completeness=C, informativeness=float(r2.mean()), R=R)
