"""Inference: the minibatch SVI loop, warm-up schedules and device handling."""

from .svi import fit_svi, full_data_loss, make_elbo, resolve_device, warmup_weight

__all__ = ["fit_svi", "full_data_loss", "make_elbo", "resolve_device", "warmup_weight"]
