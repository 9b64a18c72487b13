"""Shared test settings: one torch thread per worker, a clean Pyro state per test."""

import os

import pyro
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _clean_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def diverging(monkeypatch):
    """``diverging(seeds, in_workers=False)``: restarts of ``SparseVAE`` with these seeds
    diverge (their loss turns NaN); with ``in_workers`` the worker-process path runs in this
    process instead, so that the patch applies there too."""
    import pyro_sparse as ps
    from pyro_sparse import estimators

    real = ps.SparseVAE._fit_restart

    def patch(bad_seeds, in_workers=False):
        def fit_restart(self, ctx, s, *args, **kwargs):
            if s in bad_seeds:
                raise FloatingPointError(f"loss became nan at epoch 0, step 1 (seed {s})")
            return real(self, ctx, s, *args, **kwargs)

        monkeypatch.setattr(ps.SparseVAE, "_fit_restart", fit_restart)
        if in_workers:
            monkeypatch.setattr(estimators, "_in_workers",
                                lambda fn, tasks, *a, **k: [fn(*t) for t in tasks])

    return patch
