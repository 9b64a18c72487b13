"""Simulated data with a known truth: the Sparse VAE paper's synthetic study (7 features from
2 correlated factors) and sparse counts with factor-dependent row totals."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SyntheticData", "paper_synthetic", "sparse_counts", "PAPER_SUPPORT"]

#: true support of the 7 features on the 2 factors (x7 = 7 z1 z2 loads on both)
PAPER_SUPPORT = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [1, 1]], dtype=bool)


def _int_arg(value, name: str, low: int) -> int:
    # an integer argument (numpy integers too, not bool or 2.5) at or above ``low``
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


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
    n = _int_arg(n, "n", 1)
    rng = np.random.default_rng(_int_arg(seed, "seed", 0))
    cov = np.array([[1.0, rho], [rho, 1.0]])
    Z = rng.multivariate_normal(np.zeros(2), cov, size=n)
    z1, z2 = Z[:, 0], Z[:, 1]
    mean = np.stack([z1, 2 * z1, 3 * z1**2, 4 * z2, 5 * z2, 6 * np.sin(z2), 7 * z1 * z2], 1)
    X = mean + noise_sd * rng.standard_normal(mean.shape)
    names = [f"x{j + 1}" for j in range(7)]
    return SyntheticData(X.astype(np.float32), Z.astype(np.float32), PAPER_SUPPORT.copy(), names)


def sparse_counts(n: int = 1000, n_factors: int = 3, anchors_per_factor: int = 5,
                  n_shared: int = 3, depth: float = 200.0, dispersion: float = 5.0,
                  seed: int = 0) -> SyntheticData:
    """Simulate counts with a known sparse support and factor-dependent row totals.

    Factor k drives ``anchors_per_factor`` features alone; each of ``n_shared`` further
    features loads on two factors. For row n and feature g::

        z_n ~ N(0, I_K),   s_n ~ LogNormal(0, 0.3)
        mu_ng = depth / G * s_n * exp(b_g + sum_k W_gk z_nk)
        x_ng ~ NegativeBinomial(mean mu_ng, inverse dispersion ``dispersion``)

    so a row's total depends on its factors (a factor that raises some features raises the
    total), which is what makes a fixed library-size offset push every feature onto every
    factor. ``s_n`` is a per-row capture efficiency independent of the factors.

    Parameters
    ----------
    n : int
        Rows.
    n_factors : int
        K, true factors.
    anchors_per_factor : int
        Features that load on one factor only (>= 2 for identifiability).
    n_shared : int
        Features that load on two factors (cycling through the factor pairs).
    depth : float
        Expected count per row, divided evenly over features at z = 0.
    dispersion : float
        Negative-binomial inverse dispersion theta (variance mu + mu^2 / theta).
    seed : int

    Returns
    -------
    SyntheticData
        ``.X`` (n, G) counts, ``.Z`` (n, K), ``.support`` (G, K), feature names
        ``f{k}_a{i}`` (anchors of factor k) and ``shared{i}``.
    """
    n, n_factors = _int_arg(n, "n", 1), _int_arg(n_factors, "n_factors", 1)
    anchors_per_factor = _int_arg(anchors_per_factor, "anchors_per_factor", 1)
    n_shared = _int_arg(n_shared, "n_shared", 0)
    if not (depth > 0 and dispersion > 0):
        raise ValueError(f"depth and dispersion must be > 0, got {depth}, {dispersion}")
    rng = np.random.default_rng(_int_arg(seed, "seed", 0))
    K, A = n_factors, anchors_per_factor
    G = K * A + n_shared
    S = np.zeros((G, K), dtype=bool)
    W = np.zeros((G, K))
    names = []
    for k in range(K):
        rows = slice(k * A, (k + 1) * A)
        S[rows, k] = True
        W[rows, k] = rng.uniform(0.7, 1.3, A)
        names += [f"f{k}_a{i}" for i in range(A)]
    pairs = [(i, j) for i in range(K) for j in range(i + 1, K)] or [(0, 0)]
    for i in range(n_shared):
        g = K * A + i
        for k in pairs[i % len(pairs)]:
            S[g, k] = True
            W[g, k] = rng.uniform(0.7, 1.3)
        names.append(f"shared{i}")
    b = rng.normal(0.0, 0.5, G)
    Z = rng.standard_normal((n, K))
    s = rng.lognormal(0.0, 0.3, n)
    mu = depth / G * s[:, None] * np.exp(b + Z @ W.T)
    X = rng.poisson(rng.gamma(dispersion, mu / dispersion))
    return SyntheticData(X.astype(np.float32), Z.astype(np.float32), S, names)
