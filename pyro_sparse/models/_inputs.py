"""Checks of the minibatch a user hands to a model or guide in their own SVI loop.

The estimators validate data before it reaches the model; a Pyro user calling
``svi.step(x, n_data=N, idx=idx)`` gets the same clear messages here instead of a matmul's
shape or dtype error from deep inside the encoder. The checks are a few attribute reads per
step.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["check_minibatch"]


def check_minibatch(x_bg, n_features: int, dtype: torch.dtype, n_data=None, idx=None) -> None:
    """Raise a TypeError / ValueError that names the problem with a model's minibatch.

    Parameters
    ----------
    x_bg : torch.Tensor, shape (B, G)
        The rows (NaN marks a missing entry).
    n_features : int
        G, the features the model was built for.
    dtype : torch.dtype
        The floating dtype of the model's parameters.
    n_data : int, optional
        The full data size N; at least B.
    idx : torch.Tensor, shape (B,), optional
        Row indices of the minibatch in the full data.
    """
    if isinstance(x_bg, np.ndarray) or not hasattr(x_bg, "shape"):
        raise TypeError(f"x_bg must be a torch.Tensor of shape (batch, {n_features}), got "
                        f"{type(x_bg).__name__}; e.g. torch.as_tensor(x, dtype=torch.float32)")
    shape = tuple(x_bg.shape)
    if len(shape) != 2:
        raise ValueError(f"x_bg must have shape (batch, {n_features}), got {shape}")
    if shape[1] != n_features:
        raise ValueError(f"x_bg has {shape[1]} features (columns) but the model was built for "
                         f"{n_features}")
    if isinstance(x_bg, torch.Tensor) and x_bg.dtype != dtype:
        raise TypeError(f"x_bg has dtype {x_bg.dtype} but the model's parameters are {dtype}; "
                        f"pass x_bg.to({dtype})")
    B = shape[0]
    if n_data is not None and int(n_data) < B:
        raise ValueError(f"n_data ({n_data}) is the full data size and cannot be smaller than "
                         f"the minibatch ({B} rows)")
    if idx is not None and len(idx) != B:
        raise ValueError(f"idx has {len(idx)} row indices for a minibatch of {B} rows")
