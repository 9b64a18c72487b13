"""Inference: the minibatch SVI loop and its ELBO, warm-up schedules, checkpoints, data rows,
devices, support refinement on held-out rows, a factor-analysis start, a data-dependent start of the
decoder's output layer, the scale symmetry between factors and loadings, a convergence
check on the loss history, a semi-amortised refinement of W's posterior, a multi-start
search of each feature's loadings, re-seeding of collapsed factors, and independent fits in
worker processes."""

from .checkpoint import check_checkpoint_target, read_checkpoint, write_checkpoint
from .convergence import ConvergenceWarning, loss_trend
from .data import SparseRows, as_rows, row_batches
from .elbo import ReparamTrace_ELBO
from .feature_modes import (
    factorises_over_features,
    feature_log_posterior,
    search_feature_modes,
)
from .initialization import INITS, encoder_view, fa_bic, factor_analysis_init, varimax
from .output_scale import match_output_scale
from .parallel import check_n_jobs, run_in_processes
from .refine import REFINE_THRESHOLDS, candidate_supports, effect_share, one_se_choice
from .reseed import (
    ablation_costs,
    anchor_embedding,
    merged_loadings,
    profile_column,
    reseed_factor,
    reseed_fit,
    reseed_rounds,
    residual_direction,
    split_fold_pair,
    torn_factor,
    unfold_direction,
    unfold_loadings,
)
from .scale_symmetry import factor_moments, optimal_log_scales, rescale_factors, scale_objective
from .semi_amortized import refine_posterior
from .svi import fit_svi, full_data_loss, lr_factor, make_elbo, resolve_device, warmup_weight

__all__ = [
    "fit_svi",
    "full_data_loss",
    "lr_factor",
    "make_elbo",
    "ReparamTrace_ELBO",
    "resolve_device",
    "warmup_weight",
    "SparseRows",
    "as_rows",
    "row_batches",
    "read_checkpoint",
    "check_checkpoint_target",
    "write_checkpoint",
    "effect_share",
    "candidate_supports",
    "one_se_choice",
    "REFINE_THRESHOLDS",
    "rescale_factors",
    "refine_posterior",
    "search_feature_modes",
    "factorises_over_features",
    "feature_log_posterior",
    "optimal_log_scales",
    "scale_objective",
    "factor_moments",
    "loss_trend",
    "INITS",
    "encoder_view",
    "factor_analysis_init",
    "varimax",
    "fa_bic",
    "match_output_scale",
    "run_in_processes",
    "check_n_jobs",
    "ConvergenceWarning",
    "ablation_costs",
    "residual_direction",
    "reseed_factor",
    "reseed_rounds",
    "reseed_fit",
    "profile_column",
    "unfold_direction",
    "unfold_loadings",
    "split_fold_pair",
    "merged_loadings",
    "torn_factor",
    "anchor_embedding",
]
