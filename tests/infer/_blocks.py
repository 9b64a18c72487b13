"""Shared test data: two factors, each with its own block of features; data from a known
decoder network."""

import numpy as np
import torch

from pyro_sparse.nn import SparseDecoder


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


def decoded(W, generator, seed, N, H, noise_sd=0.2):
    """Data from the model at loadings ``W`` and a fresh decoder network (seeded by ``seed``)
    whose heads are scaled to unit signal per feature; z and the noise come from
    ``generator``. Returns (x_ng, z_nk, decoder state_dict)."""
    G, K = W.shape
    torch.manual_seed(seed)
    dec = SparseDecoder(G, K, H)
    z = torch.randn(N, K, generator=generator)
    with torch.no_grad():
        dec.V_gh.div_(dec(z, W).std(0).unsqueeze(-1))  # unit signal per feature
        x = dec(z, W) + noise_sd * torch.randn(N, G, generator=generator)
    return x, z, dec.state_dict()
