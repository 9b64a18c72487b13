"""Factors against known labels and feature sets: correlation ratios and co-expression coherence.

Used to check that learned factors line up with annotated groups (cell types, genres) and
that the features a factor loads on move together in the data.
"""

from __future__ import annotations

import numpy as np

__all__ = ["label_association", "coherence", "top_features"]


def label_association(z_nk, labels, factor_names=None):
    """How much of each factor's variance the labels explain, and which label drives it.

    For factor k the correlation ratio ``eta2_k = sum_l n_l (mean_l - mean)^2 /
    sum_n (z_nk - mean)^2`` (between-label over total variance, in [0, 1]); the label whose
    cells have the most extreme mean (in standard deviations from the overall mean) is
    reported with that standardised mean.

    Parameters
    ----------
    z_nk : array, shape (N, K)
        Factor values (e.g. encoder means).
    labels : sequence, shape (N,)
        Group of each row.
    factor_names : sequence of str, optional

    Returns
    -------
    pandas.DataFrame
        One row per factor: ``eta2``, ``top_label``, ``top_label_mean_sd``.
    """
    import pandas as pd

    z = np.asarray(z_nk, dtype=float)
    lab = np.asarray(labels).astype(str)
    if z.ndim != 2 or lab.shape[0] != z.shape[0]:
        raise ValueError(f"z_nk must be (N, K) and labels (N,); got {z.shape}, {lab.shape}")
    names = list(factor_names) if factor_names is not None else \
        [f"factor_{k}" for k in range(z.shape[1])]
    groups = np.unique(lab)
    mean, sd = z.mean(0), z.std(0)
    gm = np.stack([z[lab == g].mean(0) for g in groups])        # (L, K)
    gn = np.array([(lab == g).sum() for g in groups])[:, None]  # (L, 1)
    total = ((z - mean) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        eta2 = np.where(total > 0, (gn * (gm - mean) ** 2).sum(0) / total, 0.0)
        std_means = np.where(sd > 0, (gm - mean) / sd, 0.0)
    top = np.abs(std_means).argmax(0)
    return pd.DataFrame(dict(eta2=eta2, top_label=groups[top],
                             top_label_mean_sd=std_means[top, np.arange(z.shape[1])]),
                        index=pd.Index(names, name="factor"))


def top_features(weights_gk, n: int = 5, feature_names=None) -> list[list]:
    """The ``n`` features with the largest absolute weight in each column, largest first."""
    w = np.abs(np.asarray(weights_gk, dtype=float))
    order = np.argsort(-w, axis=0)[:n]
    names = feature_names if feature_names is not None else list(range(w.shape[0]))
    return [[names[g] for g in order[:, k] if w[g, k] > 0] for k in range(w.shape[1])]


def coherence(x_ng, feature_sets, feature_names=None) -> np.ndarray:
    """Mean pairwise Pearson correlation of each set's features across rows.

    A factor whose features truly co-vary gives a high coherence on held-out data; sets with
    fewer than two features (or constant features) give NaN.

    Parameters
    ----------
    x_ng : array, shape (N, G)
        Data on the scale to correlate (e.g. log-normalised counts).
    feature_sets : list of list
        Feature names (with ``feature_names``) or column indices.
    feature_names : sequence of str, optional

    Returns
    -------
    numpy.ndarray, shape (len(feature_sets),)
    """
    x = np.asarray(x_ng.toarray() if hasattr(x_ng, "toarray") else x_ng, dtype=float)
    index = {f: i for i, f in enumerate(feature_names)} if feature_names is not None else None
    out = []
    for fs in feature_sets:
        cols = [index[f] for f in fs] if index is not None else [int(f) for f in fs]
        if len(cols) < 2:
            out.append(np.nan)
            continue
        sub = x[:, cols]
        keep = sub.std(0) > 0
        if keep.sum() < 2:
            out.append(np.nan)
            continue
        c = np.corrcoef(sub[:, keep].T)
        out.append(float(c[np.triu_indices_from(c, 1)].mean()))
    return np.array(out)
