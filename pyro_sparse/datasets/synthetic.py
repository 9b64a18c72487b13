"""The synthetic study of the Sparse VAE paper: 7 features from 2 correlated factors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SyntheticData", "paper_synthetic", "PAPER_SUPPORT"]

#: true support of the 7 features on the 2 factors (x7 = 7 z1 z2 loads on both)
PAPER_SUPPORT = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [1, 1]], dtype=bool)


@dataclass
class SyntheticData:
    """Simulated data with its truth.

    Attributes
    ----------
    X : numpy.ndarray, shape (n, G)
        Observations.
    Z : numpy.ndarray, shape (n, K_true)
        True factors.
    support : numpy.ndarray of bool, shape (G, K_true)
        True feature-to-factor support.
    feature_names : list of str
    """

    X: np.ndarray
    Z: np.ndarray
    support: np.ndarray
    feature_names: list = field(default_factory=list)

    def split(self, test_fraction: float = 0.5, seed: int = 0):
        """Random train/test split of the rows: returns ``(train, test)`` SyntheticData."""
        rng = np.random.default_rng(seed)
        n = self.X.shape[0]
        perm = rng.permutation(n)
        n_test = int(round(test_fraction * n))
        te, tr = perm[:n_test], perm[n_test:]
        mk = lambda ix: SyntheticData(self.X[ix], self.Z[ix], self.support,  # noqa: E731
                                      list(self.feature_names))
        return mk(tr), mk(te)


def paper_synthetic(n: int = 1000, rho: float = 0.0, seed: int = 0,
                    noise_sd: float = 0.5) -> SyntheticData:
    """Simulate the paper's synthetic study.

    ``z ~ N2(0, [[1, rho], [rho, 1]])``; x1 = z1, x2 = 2 z1, x3 = 3 z1^2, x4 = 4 z2,
    x5 = 5 z2, x6 = 6 sin(z2), x7 = 7 z1 z2, each plus N(0, noise_sd^2) noise.

    Parameters
    ----------
    n : int
        Number of rows.
    rho : float
        Correlation of the two factors, in (-1, 1).
    seed : int
        Random seed (numpy Generator).
    noise_sd : float
        Noise standard deviation on every feature.

    Returns
    -------
    SyntheticData
        ``.X`` (n, 7), ``.Z`` (n, 2), ``.support`` (7, 2).
    """
    if not (-1 < rho < 1):
        raise ValueError(f"rho must lie in (-1, 1), got {rho}")
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, rho], [rho, 1.0]])
    Z = rng.multivariate_normal(np.zeros(2), cov, size=int(n))
    z1, z2 = Z[:, 0], Z[:, 1]
    mean = np.stack([z1, 2 * z1, 3 * z1**2, 4 * z2, 5 * z2, 6 * np.sin(z2), 7 * z1 * z2], 1)
    X = mean + noise_sd * rng.standard_normal(mean.shape)
    names = [f"x{j + 1}" for j in range(7)]
    return SyntheticData(X.astype(np.float32), Z.astype(np.float32), PAPER_SUPPORT.copy(), names)
