"""Reading user data into arrays and saving / loading fitted models (safetensors + JSON).

Loading never unpickles: a model folder is ``config.json`` plus ``weights.safetensors``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = ["as_data_matrix", "save_model_folder", "load_model_folder", "MODEL_FORMAT"]

MODEL_FORMAT = "pyro_sparse.model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


def _is_numeric_dtype(dt) -> bool:
    try:
        return bool(np.issubdtype(np.dtype(dt), np.number) or np.dtype(dt) == bool)
    except TypeError:  # pandas extension dtypes (string, category, ...)
        return bool(getattr(dt, "_is_numeric", False))


def as_data_matrix(X, what: str = "X"):
    """Convert numpy / torch / pandas / nested-list data to a float32 array.

    Parameters
    ----------
    X : array-like, torch.Tensor or pandas.DataFrame, shape (N, G)
    what : str
        Argument name for messages.

    Returns
    -------
    x_ng : numpy.ndarray of float32
    feature_names : list of str or None
        Column names of a DataFrame, else None.

    Raises
    ------
    TypeError
        When X is not numeric or not array-like.
    """
    names = None
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        names = [str(c) for c in X.columns]
        bad = [c for c, dt in zip(X.columns, X.dtypes) if not _is_numeric_dtype(dt)]
        if bad:
            raise TypeError(f"{what} has non-numeric column(s): {', '.join(map(str, bad[:5]))}")
        arr = np.array(X.to_numpy(dtype=np.float64, na_value=np.nan))
    elif isinstance(X, torch.Tensor):
        arr = X.detach().cpu().double().numpy()
    elif isinstance(X, (str, bytes, dict)) or X is None:
        raise TypeError(f"{what} must be a numpy array, torch tensor or pandas DataFrame, "
                        f"got {type(X).__name__}")
    else:
        try:
            arr = np.asarray(X)
        except Exception as e:  # ragged lists and the like
            raise TypeError(f"{what} could not be read as a 2-D numeric array: {e}") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                       or arr.dtype == bool):
            raise TypeError(f"{what} must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-dimensional (samples x features), got shape "
                         f"{arr.shape}")
    return arr, names


def save_model_folder(path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``config.json`` and ``weights.safetensors`` into folder ``path`` atomically.

    The folder is written beside its destination and renamed at the end, so a failure leaves
    nothing half-written. An existing model folder at ``path`` is replaced.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not (path / CONFIG_FILE).exists():
        raise ValueError(f"{path} exists and is not a pyro_sparse model folder; refusing to "
                         "overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        cfg = dict(format=MODEL_FORMAT, format_version=FORMAT_VERSION, **config)
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True))
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  str(tmp / WEIGHTS_FILE))
        if path.exists():
            # move the previous model aside under a fresh name, then swap in the new one
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_model_folder(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a model folder written by :func:`save_model_folder`.

    Raises
    ------
    ValueError
        When the folder is missing, is not a pyro_sparse model, or its files are corrupt.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise ValueError(f"model folder {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder; a saved model is a folder holding "
                         f"{CONFIG_FILE} and {WEIGHTS_FILE}")
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    for f in (cfg_file, w_file):
        if not f.is_file():
            raise ValueError(f"{path} is not a pyro_sparse model folder: {f.name} is missing")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_file} is corrupt (not valid JSON: {e})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != MODEL_FORMAT:
        raise ValueError(f"{cfg_file} is not a pyro_sparse model config (format marker "
                         f"{MODEL_FORMAT!r} missing)")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{cfg_file}: unsupported format_version {cfg.get('format_version')!r}"
                         f" (this pyro_sparse reads {FORMAT_VERSION})")
    try:
        tensors = load_file(str(w_file))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{w_file} is corrupt or not a safetensors file: {e}") from None
    return cfg, tensors
