"""Shared test data: two factors, each with its own block of features."""

import numpy as np


def two_blocks(n=600, seed=0):
    """Features 0-3 load on factor 0 only, 4-7 on factor 1 only; noise sd 0.3.

    Returns (x_ng float32, z_nk, true support (8, 2) bool).
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    load = np.zeros((8, 2))
    load[:4, 0] = [1.0, 0.8, -0.9, 0.7]
    load[4:, 1] = [0.9, -1.0, 0.8, 0.6]
    x = z @ load.T + 0.3 * rng.standard_normal((n, 8))
    return x.astype(np.float32), z, load != 0
