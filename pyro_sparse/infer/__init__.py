"""Inference: the minibatch SVI loop, warm-up schedules, checkpoints, data rows, devices."""

from .checkpoint import read_checkpoint, write_checkpoint
from .data import SparseRows, as_rows, row_batches
from .svi import fit_svi, full_data_loss, make_elbo, resolve_device, warmup_weight

__all__ = [
    "fit_svi",
    "full_data_loss",
    "make_elbo",
    "resolve_device",
    "warmup_weight",
    "SparseRows",
    "as_rows",
    "row_batches",
    "read_checkpoint",
    "write_checkpoint",
]
