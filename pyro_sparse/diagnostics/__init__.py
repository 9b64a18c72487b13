"""Diagnostics of fitted models: ArviZ conversion, anchor reports, support recovery after
factor matching, reliability of p* against a known truth, residual dependence (a missed
factor), DCI / MIG disentanglement and latent activity."""

from .anchors import (
    AnchorReport,
    anchor_probability,
    anchor_report,
    hidden_effects,
    match_supports,
    merge_redundant,
    prune_factors,
    redundant_factors,
)
from .arviz import chains_of, to_arviz
from .calibration import (
    ReliabilityCheck,
    calibrated_gaps,
    max_reliability_gap,
    reliability_bins,
    reliability_check,
    wilson_interval,
)
from .disentanglement import dci, dci_from_importance, importance_matrix
from .labels import coherence, label_association, top_features
from .latent import active_units, discretize, latent_activity, mig
from .residuals import (
    ResidualCheck,
    residual_check,
    residual_correlation,
    residual_dependence,
)
from .support import abs_corr, anchors, estimated_support, match_factors, support_scores

__all__ = [
    "ReliabilityCheck",
    "calibrated_gaps",
    "max_reliability_gap",
    "reliability_bins",
    "reliability_check",
    "wilson_interval",
    "coherence",
    "label_association",
    "top_features",
    "AnchorReport",
    "abs_corr",
    "active_units",
    "anchor_probability",
    "anchor_report",
    "anchors",
    "chains_of",
    "dci",
    "dci_from_importance",
    "discretize",
    "estimated_support",
    "hidden_effects",
    "importance_matrix",
    "latent_activity",
    "match_factors",
    "match_supports",
    "merge_redundant",
    "mig",
    "prune_factors",
    "redundant_factors",
    "ResidualCheck",
    "residual_check",
    "residual_correlation",
    "residual_dependence",
    "support_scores",
    "to_arviz",
]
