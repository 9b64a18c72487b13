"""Choosing the number of factors K: held-out log-likelihood over a list of K.

The paper's practice is to over-specify K and prune the factors the SSL prior empties;
:func:`select_n_factors` shows where the held-out fit stops improving and how many factors
each fit actually uses, so both readings can be checked. It also reports the residual check
(:func:`~pyro_sparse.diagnostics.residual_check`) of each fit on all rows of ``X``: a K whose
residuals still move together across features has left a factor out (or the fit missed one).
All rows, not the held-out ones: the check judges the fit, and a 20% hold-out is too few rows
for a stable largest eigenvalue (on 150 held-out rows of the paper's synthetic data, fits
with K = 2 and 4 read 1.99-2.19 against a threshold of 1.98; on all 600 rows 1.33-1.61
against 1.73).
"""

from __future__ import annotations

import numpy as np

from .estimators import _in_workers, _worker_jobs, check_estimator
from .io import as_data_matrix
from .models.sparse_vae import check_positive_int

__all__ = ["select_n_factors"]


def _fit_and_score(cls, params, train, test, arr, seed, n_particles, fit_kwargs) -> dict:
    # one K: fit on the training rows, score the held-out rows, check the residuals on all
    from .diagnostics import active_units, prune_factors, residual_check

    est = cls(**params).fit(train, seed=seed, **fit_kwargs)
    ll = est.log_likelihood(test, num_samples=1, n_particles=n_particles, seed=seed)[0]
    if hasattr(est, "inclusion_probs_"):
        used = int(len(prune_factors(est)))
    else:
        used = int(active_units(est.transform(train)).sum())
    rc = residual_check(est, arr)
    return dict(n_factors=params["n_factors"], heldout_loglik=float(ll.mean()),
                heldout_elbo=float(est.score(test, seed=seed)),
                train_elbo=float(est.score(train, seed=seed)), used_factors=used,
                residual_eig=rc.eigenvalue, residual_flag=bool(rc.flagged))


def select_n_factors(estimator, X, n_factors, heldout: float = 0.2, seed: int = 0,
                     n_particles: int = 16, tolerance: float = 0.01, n_jobs: int = 1,
                     **fit_kwargs):
    """Fit ``estimator`` for each K on a training split and score the held-out rows.

    Parameters
    ----------
    estimator : SparseVAE or VAE
        Template (its other parameters are kept; it is not modified).
    X : array-like, shape (N, G)
    n_factors : sequence of int
        Values of K to try.
    heldout : float
        Fraction of rows held out (random, fixed by ``seed``).
    seed : int
        Seed of the split and of every fit.
    n_particles : int
        Importance samples per row in the held-out log-likelihood.
    tolerance : float
        The recommended K is the smallest whose held-out log-likelihood per row is within
        ``tolerance`` nats of the best.
    n_jobs : int
        Fit the values of K in this many spawned CPU processes (-1: one per core), each with
        ``torch.get_num_threads() // n_jobs`` threads (at least 1), each fitting and scoring
        its K. Every fit is seeded as in a serial run, so at the same thread count per
        fit the table is the same. CPU only; a script that uses it needs the
        ``if __name__ == "__main__":`` guard of :mod:`multiprocessing`.
    **fit_kwargs
        Passed to ``fit`` (epochs, batch_size, lr, device, progress).

    Returns
    -------
    pandas.DataFrame
        One row per K: ``n_factors``, ``heldout_loglik`` (mean per held-out row of
        log p(x_n), z integrated out by importance sampling), ``heldout_elbo`` (per row),
        ``train_elbo`` (per row), ``used_factors`` (factors with a non-empty support, for the
        Sparse VAE; active units otherwise), ``residual_eig`` and ``residual_flag`` (the
        largest eigenvalue of the residuals' correlation matrix on all rows and whether it
        reaches the independent-noise edge + 0.5: shared variation left unexplained), and
        ``recommended`` (bool). ``attrs`` holds the recommendation and the split sizes.
    """
    import pandas as pd

    check_estimator(estimator, "select_n_factors")
    ks = [check_positive_int(k, "n_factors") for k in n_factors]
    if not ks:
        raise ValueError("n_factors must list at least one K")
    twice = sorted({k for k in ks if ks.count(k) > 1})
    if twice:
        raise ValueError(f"n_factors lists K = {', '.join(map(str, twice))} more than once")
    if not 0.0 < float(heldout) < 1.0:
        raise ValueError(f"heldout must lie in (0, 1), got {heldout}")
    arr, names = as_data_matrix(X)
    N = arr.shape[0]
    n_test = int(round(heldout * N))
    if n_test < 1 or n_test >= N:
        raise ValueError(f"heldout={heldout} leaves no rows on one side of the split (N={N})")
    perm = np.random.default_rng(seed).permutation(N)
    test, train = arr[perm[:n_test]], arr[perm[n_test:]]
    if names is not None:
        test = pd.DataFrame(test, columns=names)
        train = pd.DataFrame(train, columns=names)
    tasks = [(type(estimator), dict(estimator.get_params(), n_factors=k), train, test, arr,
              seed, n_particles, fit_kwargs) for k in ks]
    jobs = _worker_jobs(n_jobs, len(ks), fit_kwargs.get("device", "cpu"), "fits of each K")
    if jobs == 1:
        rows = [_fit_and_score(*t) for t in tasks]
    else:
        # each K fitted and scored in a worker: only the table row travels back
        rows = _in_workers(_fit_and_score,
                           [t[:-1] + (dict(t[-1], progress=False),) for t in tasks], jobs,
                           fit_kwargs.get("progress", True),
                           f"{type(estimator).__name__} fits of each K", "fit",
                           stacklevel=2)  # user -> select_n_factors
    table = pd.DataFrame(rows)
    best = table["heldout_loglik"].max()
    ok = table["heldout_loglik"] >= best - float(tolerance)
    k_rec = int(table.loc[ok, "n_factors"].min())
    table["recommended"] = table["n_factors"] == k_rec
    table.attrs.update(recommended=k_rec, n_train=int(N - n_test), n_heldout=n_test,
                       tolerance=float(tolerance),
                       note="over-specify K and prune the empty factors: used_factors shows "
                            "how many a fit keeps; residual_flag marks a K that leaves shared "
                            "variation in its residuals")
    return table
