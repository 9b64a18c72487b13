"""Independent restarts of an estimator with their factors aligned to the first restart.

Factors of a VAE-type model are defined up to order and sign; aligning restarts by their
encoder means lets the diagnostics treat restarts as chains (R-hat across restarts is then an
identifiability check, see :func:`pyro_sparse.diagnostics.to_arviz`).
"""

from __future__ import annotations

import numpy as np

from .diagnostics.support import corr
from .estimators import _check_seed, _drop_diverged, _fit_many, _is_diverged, check_estimator
from .models.sparse_vae import check_positive_int

__all__ = ["Restarts", "fit_restarts", "align_factors"]


def align_factors(z_ref_nk: np.ndarray, z_nk: np.ndarray):
    """Permutation and signs that best align the columns of ``z`` to those of ``z_ref``.

    Hungarian matching maximises the summed |Pearson correlation|; each matched column is
    then flipped so that its correlation with the reference is positive.

    Parameters
    ----------
    z_ref_nk, z_nk : numpy.ndarray, shape (N, K)
        Reference and candidate factors (encoder means on the same rows).

    Returns
    -------
    perm : numpy.ndarray of int, shape (K,)
        Aligned column j is column ``perm[j]`` of ``z``.
    signs : numpy.ndarray, shape (K,)
        +1 or -1 per aligned column.
    corr : numpy.ndarray, shape (K,)
        |corr| of each aligned column with its reference column (0 for constant columns).
    """
    z_ref_nk, z_nk = np.asarray(z_ref_nk), np.asarray(z_nk)
    if z_ref_nk.shape != z_nk.shape or z_nk.ndim != 2:
        raise ValueError(f"z_ref and z must be 2-d arrays of one shape, got {z_ref_nk.shape} "
                         f"and {z_nk.shape}")
    c = corr(z_ref_nk, z_nk)  # (K_ref, K)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-np.abs(c))
    perm = np.empty(c.shape[0], dtype=int)
    perm[rows] = cols
    matched = c[np.arange(c.shape[0]), perm]
    signs = np.where(matched < 0, -1.0, 1.0)
    return perm, signs, np.abs(matched)


class Restarts:
    """Fitted restarts of one estimator, aligned to restart 0.

    Made by :func:`fit_restarts`. The raw estimators are kept unchanged (``R[r]``, ``len(R)``
    and iteration give them, restart 0 first); the alignment is applied by :meth:`transform`
    and by :func:`pyro_sparse.diagnostics.to_arviz` (which stacks the restarts as chains).

    Attributes
    ----------
    estimators_ : list
        The fitted estimators, restart 0 first.
    permutations_ : numpy.ndarray of int, shape (R, K)
        Aligned factor j of restart r is factor ``permutations_[r, j]`` of that estimator.
    signs_ : numpy.ndarray, shape (R, K)
        Sign flip applied to each aligned factor (and to its column of W).
    alignment_corr_ : numpy.ndarray, shape (R, K)
        |corr| between each aligned factor's encoder means and restart 0's (row 0 is 1).
    seeds_ : list of int
        The seed of each restart.
    failed_restarts_ : list of dict
        Restarts of :func:`fit_restarts` whose loss turned NaN (``seed``, ``error``): left
        out of the restarts above, with a :class:`~pyro_sparse.ConvergenceWarning`.
    """

    def __init__(self, estimators, permutations, signs, alignment_corr, seeds):
        self.estimators_ = list(estimators)
        self.permutations_ = np.asarray(permutations, dtype=int)
        self.signs_ = np.asarray(signs, dtype=float)
        self.alignment_corr_ = np.asarray(alignment_corr, dtype=float)
        self.seeds_ = list(seeds)
        self.failed_restarts_ = []

    def __len__(self):
        return len(self.estimators_)

    def __getitem__(self, r):
        """Restart ``r``'s fitted estimator, as fitted (not aligned); ``R[0]`` is the reference."""
        return self.estimators_[r]

    def __iter__(self):
        return iter(self.estimators_)

    def __repr__(self):
        return f"Restarts({len(self)} x {self.estimators_[0]!r})"

    @property
    def n_factors(self) -> int:
        """K, the number of factors of each restart."""
        return self.permutations_.shape[1]

    def align(self, values, axis: int = -1, flip: bool = True) -> np.ndarray:
        """Put per-restart arrays into the aligned factor order (and signs).

        Parameters
        ----------
        values : sequence of arrays, one per restart
            Arrays whose ``axis`` indexes the K factors.
        axis : int
            The factor axis.
        flip : bool
            Multiply by the signs (for W and z; not for p* or eta, which are sign-free).

        Returns
        -------
        numpy.ndarray, shape (R, ...)
        """
        out = []
        for r, v in enumerate(values):
            v = np.take(np.asarray(v), self.permutations_[r], axis=axis)
            if flip:
                shape = [1] * v.ndim
                shape[axis] = -1
                v = v * self.signs_[r].reshape(shape)
            out.append(v)
        return np.stack(out)

    def transform(self, X, batch_size: int = 4096) -> np.ndarray:
        """Aligned encoder means of every restart, shape (R, N, K)."""
        return self.align([e.transform(X, batch_size=batch_size) for e in self.estimators_])


def fit_restarts(estimator, X, n_restarts: int = 4, seed: int = 0, n_jobs: int = 1,
                 **fit_kwargs) -> Restarts:
    """Fit independent restarts of ``estimator`` and align their factors to the first.

    Each restart is a fresh copy of ``estimator`` (same parameters, ``n_restarts=1``) fitted
    with seed ``seed + r``. Factors are aligned to restart 0 by Hungarian matching on the
    |correlation| of the encoder means on ``X``, with sign flips.

    Parameters
    ----------
    estimator : SparseVAE or VAE
        A (fitted or unfitted) estimator used as the template; it is not modified.
    X : array-like, shape (N, G)
        Data.
    n_restarts : int
        R, the number of independent fits (at least 2 for R-hat).
    seed : int
        Seed of restart 0.
    n_jobs : int
        Fit the restarts in this many spawned CPU processes (-1: one per core), each with
        ``torch.get_num_threads() // n_jobs`` threads (at least 1). Each restart is seeded
        as in a serial run, so at the same thread count per fit the fits are the same. CPU
        only; a script that uses it needs the ``if __name__ == "__main__":`` guard of
        :mod:`multiprocessing`.
    **fit_kwargs
        Passed to ``fit`` (epochs, batch_size, lr, device, progress).

    Returns
    -------
    Restarts
        Without the restarts whose loss turned NaN (listed in ``failed_restarts_``).

    Raises
    ------
    FloatingPointError
        When every restart diverged.

    Warns
    -----
    ConvergenceWarning
        When some restarts diverged; the others are aligned to the first of them.
    """
    check_estimator(estimator, "fit_restarts")
    R = check_positive_int(n_restarts, "n_restarts")
    _check_seed(seed)
    params = dict(estimator.get_params())
    if "n_restarts" in params:
        params["n_restarts"] = 1
    seeds = [int(seed) + r for r in range(R)]
    outs = _fit_many(type(estimator), [params] * R, X, seeds, n_jobs, fit_kwargs, "restarts")
    seeds = [s for s, o in zip(seeds, outs) if not _is_diverged(o)]
    fits, failed = _drop_diverged(outs, "the others are kept, aligned to the first of them. "
                                  "See Restarts.failed_restarts_", stacklevel=2)
    z_ref = fits[0].transform(X)
    perms, signs, corrs = [], [], []
    for est in fits:
        p, s, c = align_factors(z_ref, est.transform(X))
        perms.append(p)
        signs.append(s)
        corrs.append(c)
    out = Restarts(fits, perms, signs, corrs, seeds)
    out.failed_restarts_ = failed
    return out
