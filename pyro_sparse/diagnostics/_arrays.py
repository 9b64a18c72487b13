"""Argument checks shared by the metric functions: two row-aligned 2-D arrays."""

from __future__ import annotations

import numpy as np


def paired_rows(a, b, names: tuple[str, str], finite: bool = True, min_rows: int = 2):
    """``a`` and ``b`` as float arrays of shape (N, K) and (N, J), or a ValueError naming them.

    Parameters
    ----------
    a, b : array-like
        Two arrays whose rows are the same observations (1-D is read as one column).
    names : (str, str)
        Argument names for the messages.
    finite : bool
        Also refuse NaN and inf (naming the first such entry).
    min_rows : int
        Fewest rows accepted.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
    """
    out = []
    for name, x in zip(names, (a, b)):
        x = np.asarray(x, float)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[0] < min_rows or x.shape[1] < 1:
            raise ValueError(f"{name} must be a 2-D array with at least {min_rows} rows and 1 "
                             f"column, got shape {x.shape}")
        if finite:
            bad = np.argwhere(~np.isfinite(x))
            if len(bad):
                r, c = bad[0]
                raise ValueError(f"{name} has {len(bad)} non-finite value(s), the first at row "
                                 f"{r}, column {c}")
        out.append(x)
    if out[0].shape[0] != out[1].shape[0]:
        raise ValueError(f"{names[0]} has {out[0].shape[0]} rows but {names[1]} has "
                         f"{out[1].shape[0]}: the rows must be the same observations")
    return out[0], out[1]
