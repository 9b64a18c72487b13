"""Pieces shared by the benchmark scripts (imported from them; not a benchmark itself)."""

from __future__ import annotations

import time

import numpy as np


def setup_worker():
    """One torch thread per process and no warnings in the logs (call in each worker)."""
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")


def imputation_scores(X, hole, estimators, **fit_kwargs) -> list[dict]:
    """Fill the hidden entries of ``X`` by the column mean and by each fitted estimator.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, G)
        Complete data.
    hole : numpy.ndarray of bool, shape (N, G)
        Entries hidden (set to NaN) before fitting.
    estimators : sequence of (str, estimator)
        Unfitted pyro_sparse estimators, fitted on the data with the holes.
    **fit_kwargs
        Passed to every ``fit`` (epochs, lr, seed, ...).

    Returns
    -------
    list of dict
        Per method: ``method``, ``rmse`` and ``mae`` over the hidden entries, fitting
        ``seconds`` (wall clock).
    """
    Xh = np.where(hole, np.nan, X)
    truth = X[hole]
    out = []

    def record(method, filled, seconds):
        err = filled[hole] - truth
        out.append(dict(method=method, rmse=float(np.sqrt(np.mean(err ** 2))),
                        mae=float(np.mean(np.abs(err))), seconds=seconds))

    record("column mean", np.broadcast_to(np.nanmean(Xh, 0), X.shape), 0.0)
    for name, est in estimators:
        t0 = time.perf_counter()
        est.fit(Xh, progress=False, **fit_kwargs)
        record(name, est.reconstruct(Xh), time.perf_counter() - t0)
    return out
