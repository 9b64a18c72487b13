"""pyro_sparse: sparse, identifiable deep generative models in Pyro.

The Sparse VAE (spike-and-slab-lasso decoder, Moran et al.) and its VAE / beta-VAE baselines,
as Pyro models with amortised guides, sklearn-style estimators and diagnostics.
"""

from . import datasets, diagnostics, distributions, guides, infer, io, likelihoods, models, nn
from .estimators import VAE, SparseVAE, load_model
from .infer import ConvergenceWarning
from .restarts import Restarts, fit_restarts
from .selection import select_n_factors

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "Restarts",
    "SparseVAE",
    "VAE",
    "fit_restarts",
    "load_model",
    "select_n_factors",
    "datasets",
    "diagnostics",
    "distributions",
    "guides",
    "infer",
    "io",
    "likelihoods",
    "models",
    "nn",
    "plots",
    "__version__",
]


def __getattr__(name):
    # ``ps.plots`` imports matplotlib on first use, so ``import pyro_sparse`` stays light
    if name == "plots":
        import importlib

        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
