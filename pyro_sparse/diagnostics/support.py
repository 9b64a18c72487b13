"""Support recovery: one-to-one factor matching and support precision / recall / F1.

Estimated factors are matched to true ones by the Hungarian algorithm on |corr| of the
encoder means, then the estimated support is compared with the truth placed in the matched
columns (unmatched estimated columns have an empty true support).
"""

from __future__ import annotations

import numpy as np

from ..distributions.ssl import estimated_support
from ._arrays import paired_rows

__all__ = ["match_factors", "support_scores", "estimated_support", "abs_corr", "corr",
           "anchors"]


def corr(a_nk: np.ndarray, b_nj: np.ndarray) -> np.ndarray:
    """Pearson correlation between every column of ``a`` and of ``b``, shape (K, J).

    Constant columns get correlation 0.
    """
    a, b = paired_rows(a_nk, b_nj, ("a_nk", "b_nj"), finite=False, min_rows=1)
    a = a - a.mean(0)
    b = b - b.mean(0)
    na = np.linalg.norm(a, axis=0)
    nb = np.linalg.norm(b, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (a.T @ b) / np.outer(na, nb)
    return np.nan_to_num(c)


def abs_corr(a_nk: np.ndarray, b_nj: np.ndarray) -> np.ndarray:
    """|Pearson correlation| between every column of ``a`` and of ``b``, shape (K, J)."""
    return np.abs(corr(a_nk, b_nj))


def match_factors(z_true_nj: np.ndarray, z_hat_nk: np.ndarray, prefer=None) -> np.ndarray:
    """One-to-one matching of true factors to estimated columns (Hungarian, max |corr|).

    Parameters
    ----------
    z_true_nj : numpy.ndarray, shape (N, J)
        True factors.
    z_hat_nk : numpy.ndarray, shape (N, K), K >= J
        Estimated factors (encoder means).
    prefer : array-like of bool, shape (K,), optional
        Columns to match first, e.g. the used factors (non-empty support columns): the
        matching takes as many of them as it can (all J when at least J are preferred) and
        maximises the total |corr| among such matchings. Useful when unused factors still
        have informative encoder means, as under a learned factor correlation, where an
        unused factor's code is predicted from the used ones through the correlation matrix.

    Returns
    -------
    numpy.ndarray of int, shape (J,)
        ``match[j]`` is the estimated column assigned to true factor j.
    """
    z_true_nj, z_hat_nk = paired_rows(z_true_nj, z_hat_nk, ("z_true_nj", "z_hat_nk"),
                                      finite=False, min_rows=1)
    c = abs_corr(z_hat_nk, z_true_nj)  # (K, J)
    if c.shape[0] < c.shape[1]:
        raise ValueError(f"need at least as many estimated factors ({c.shape[0]}) as true "
                         f"factors ({c.shape[1]})")
    if prefer is not None:
        prefer = np.asarray(prefer, bool).reshape(-1)
        if prefer.shape[0] != c.shape[0]:
            raise ValueError(f"prefer has {prefer.shape[0]} entries, z_hat has {c.shape[0]} "
                             "columns")
        # |corr| <= 1, so a bonus of J + 1 per preferred column makes any matching with more
        # preferred columns beat every matching with fewer
        c = c + (c.shape[1] + 1.0) * prefer[:, None]
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-c)
    match = np.empty(c.shape[1], dtype=int)
    match[cols] = rows
    return match


def support_scores(S_true_gj: np.ndarray, S_hat_gk: np.ndarray, match: np.ndarray) -> dict:
    """Precision, recall, F1 and Hamming distance of an estimated support after matching.

    Parameters
    ----------
    S_true_gj : array of bool, shape (G, J)
        True support.
    S_hat_gk : array of bool, shape (G, K)
        Estimated support.
    match : array of int, shape (J,)
        From :func:`match_factors`.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1``, ``hamming`` (number of differing entries) and
        ``exact`` (True when the supports agree everywhere).
    """
    S_hat = np.asarray(S_hat_gk, bool)
    truth = np.zeros_like(S_hat)
    truth[:, np.asarray(match)] = np.asarray(S_true_gj, bool)
    tp = int((S_hat & truth).sum())
    fp = int((S_hat & ~truth).sum())
    fn = int((~S_hat & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return dict(precision=precision, recall=recall, f1=f1, hamming=fp + fn,
                exact=bool(fp + fn == 0))


def anchors(S_gk: np.ndarray) -> dict[int, list[int]]:
    """Anchor features per factor: rows of the support with exactly one entry, in column k.

    Parameters
    ----------
    S_gk : array of bool, shape (G, K)
        Support matrix.

    Returns
    -------
    dict
        ``{k: [g, ...]}`` for every factor k (possibly empty lists).
    """
    S = np.asarray(S_gk, bool)
    one = S.sum(1) == 1
    return {k: [int(g) for g in np.flatnonzero(one & S[:, k])] for k in range(S.shape[1])}
