"""Pyro models, one per file: the Sparse VAE and the dense VAE / beta-VAE baseline."""

from .sparse_vae import MARGINALIZE, SparseVAEModel
from .vae import VAEModel

__all__ = ["MARGINALIZE", "SparseVAEModel", "VAEModel"]
