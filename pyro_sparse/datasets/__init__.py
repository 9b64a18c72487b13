"""Data sets: the paper's synthetic study, simulated sparse counts, PBMC cells from scanpy."""

from .pbmc import PBMC_MARKERS, pbmc68k_counts
from .synthetic import PAPER_SUPPORT, SyntheticData, paper_synthetic, sparse_counts

__all__ = ["PAPER_SUPPORT", "PBMC_MARKERS", "SyntheticData", "paper_synthetic", "pbmc68k_counts",
           "sparse_counts"]
