"""Register a module's parameters with Pyro's global parameter store, unless module-local.

Models and guides are plain ``torch.nn.Module`` objects. Inside a user's ``pyro.infer.SVI``
loop (global parameter store) their parameters are registered on every call, as
``pyro.module`` does, so ``pyro.optim`` finds them; under
``pyro.settings.context(module_local_params=True)`` (what the estimators use) nothing is
registered and no per-parameter Pyro message is sent, which keeps the step cheap.
"""

from __future__ import annotations

import pyro
import torch

__all__ = ["register_params"]


def register_params(name: str, module: torch.nn.Module) -> None:
    """Register every trainable parameter of ``module`` under ``name`` in the param store.

    Raises
    ------
    RuntimeError
        When the store already holds a different tensor under one of the names (a stale
        store from another model): call ``pyro.clear_param_store()`` first.
    """
    if pyro.settings.get("module_local_params"):
        return
    for pname, p in module.named_parameters():
        if not p.requires_grad:
            continue
        full = f"{name}${pname}"
        got = pyro.param(full, p)
        if got is not p:
            raise RuntimeError(
                f"Pyro's parameter store already holds a different tensor named {full!r} "
                "(from another model or guide); call pyro.clear_param_store() before "
                "building a new model, or use module_local_params")
