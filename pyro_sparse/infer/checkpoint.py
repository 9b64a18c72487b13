"""Training checkpoints: model, guide, optimiser and RNG states in one safetensors file.

A checkpoint is written to a temporary file beside its destination and renamed, so a crash
(even SIGKILL) leaves either the previous checkpoint or the new one, never a torn file.
Non-tensor state travels as JSON in the safetensors header: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = ["training_state", "restore_training_state", "write_checkpoint", "read_checkpoint",
           "check_checkpoint_target", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "pyro_sparse.checkpoint/1"


def training_state(optim: torch.optim.Optimizer, gen: torch.Generator, epoch: int,
                   history) -> tuple[dict, dict]:
    """Snapshot of the loop's state: ``(tensors, info)`` with ``info`` JSON-serialisable.

    Holds the optimiser state, the minibatch-order generator, torch's (and CUDA's), NumPy's
    and Python's global RNGs, the number of finished epochs and the loss history.
    """
    tensors, info = {}, dict(epoch=int(epoch), history=[float(h) for h in history])
    sd = optim.state_dict()
    for i, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"optim.{i}.{k}"] = torch.as_tensor(v).detach().cpu().clone()
    info["optim_param_groups"] = sd["param_groups"]
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.order"] = gen.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.as_tensor(keys.astype(np.int64))
    info["rng_numpy"] = [name, int(pos), int(has_gauss), float(cached)]
    version, internal, gauss = random.getstate()
    info["rng_python"] = [version, list(internal), gauss]
    return tensors, info


def restore_training_state(optim, gen, tensors: dict, info: dict) -> tuple[int, list]:
    """Load a :func:`training_state` snapshot into ``optim`` and the RNGs.

    Returns
    -------
    epoch : int
        Epochs already finished.
    history : list of float
    """
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    optim.load_state_dict({"state": state, "param_groups": info["optim_param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.order"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    name, pos, has_gauss, cached = info["rng_numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss,
                         cached))
    version, internal, gauss = info["rng_python"]
    random.setstate((version, tuple(internal), gauss))
    return int(info["epoch"]), list(info["history"])


def write_checkpoint(path, tensors: dict, info: dict) -> Path:
    """Write ``tensors`` and JSON ``info`` atomically to the safetensors file ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp,
                  metadata={"format": CHECKPOINT_FORMAT, "info": json.dumps(info)})
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path) -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`write_checkpoint`: ``(tensors, info)``.

    Raises
    ------
    ValueError
        When the file is missing, not a safetensors file or not a pyro_sparse checkpoint.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("format marker missing")
        info = json.loads(meta["info"])
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path} is not a readable pyro_sparse checkpoint: {e}") from None
    return tensors, info


def check_checkpoint_target(path) -> None:
    """Raise unless ``path`` may receive a checkpoint: absent, or a pyro_sparse checkpoint.

    A fresh fit replaces an earlier checkpoint at ``path``; anything else there (a folder, a
    data file, a model) is never overwritten.

    Parameters
    ----------
    path : str or pathlib.Path
        Where ``fit(checkpoint=...)`` is about to write.

    Raises
    ------
    ValueError
        When ``path`` is a folder or a file that is not a pyro_sparse checkpoint.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.exists():
        return
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is a folder; give a file path (e.g. "
                         f"{path / 'fit.ckpt'})")
    try:
        with safe_open(str(path), framework="pt") as f:
            ours = (f.metadata() or {}).get("format") == CHECKPOINT_FORMAT
    except (SafetensorError, OSError, ValueError):
        ours = False
    if not ours:
        raise ValueError(f"checkpoint {path} exists and is not a pyro_sparse checkpoint; "
                         "refusing to overwrite it")
