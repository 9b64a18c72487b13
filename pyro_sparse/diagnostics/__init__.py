"""Diagnostics of fitted models: support recovery after factor matching, DCI disentanglement."""

from .disentanglement import dci, dci_from_importance, importance_matrix
from .support import abs_corr, anchors, estimated_support, match_factors, support_scores

__all__ = [
    "abs_corr",
    "anchors",
    "dci",
    "dci_from_importance",
    "estimated_support",
    "importance_matrix",
    "match_factors",
    "support_scores",
]
