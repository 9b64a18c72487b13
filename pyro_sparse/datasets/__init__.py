"""Data sets: the paper's synthetic study (and, later, wrappers for data shipped in packages)."""

from .synthetic import PAPER_SUPPORT, SyntheticData, paper_synthetic

__all__ = ["PAPER_SUPPORT", "SyntheticData", "paper_synthetic"]
