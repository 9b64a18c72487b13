"""Plates over a whole dimension (``features``, ``factors``), built once and reused.

Building ``pyro.plate(name, size, dim=dim)`` sends a subsample message through Pyro's
handler stack and allocates an index tensor; a plate that never subsamples is the same
object every time, so models and guides take it from here instead of rebuilding it on
every step.
"""

from __future__ import annotations

import functools

import pyro
from pyro import poutine

__all__ = ["full_plate"]


@functools.lru_cache(maxsize=256)
def full_plate(name: str, size: int, dim: int) -> pyro.plate:
    """The plate ``pyro.plate(name, size, dim=dim)`` without subsampling, one per arguments.

    Built under ``poutine.block`` so that building it leaves no site in whatever trace is
    running at the time; entering it behaves exactly as entering a new plate.

    Parameters
    ----------
    name : str
        Plate name.
    size : int
        Size of the dimension (the whole of it: no subsampling).
    dim : int
        Negative batch dimension.
    """
    with poutine.block():
        return pyro.plate(name, int(size), dim=int(dim))
