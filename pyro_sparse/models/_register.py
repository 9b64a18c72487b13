"""Parameter registration with Pyro's store (unless module-local) and the shared ``x`` site.

Models and guides are plain ``torch.nn.Module`` objects. Inside a user's ``pyro.infer.SVI``
loop (global parameter store) their parameters are registered on every call, as
``pyro.module`` does, so ``pyro.optim`` finds them; under
``pyro.settings.context(module_local_params=True)`` (what the estimators use) nothing is
registered and no per-parameter Pyro message is sent, which keeps the step cheap.
"""

from __future__ import annotations

import pyro
import torch

from ..likelihoods import observation_dist, split_missing

__all__ = ["register_params", "observe"]


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


def observe(model, out_bg: torch.Tensor, x_bg, sigma_g=None):
    """The ``x`` site of a model: the likelihood of ``x_bg`` (NaNs masked out) given the output.

    Reads ``likelihood``, ``library`` and ``log_theta_g`` (negbin) from ``model``; must be
    called inside the ``data`` plate.
    """
    x0_bg, mask_bg = (None, None) if x_bg is None else split_missing(x_bg)
    log_theta = getattr(model, "log_theta_g", None)
    theta_g = None if log_theta is None else log_theta.exp()
    d = observation_dist(model.likelihood, out_bg, x0_bg, sigma_g, theta_g, mask_bg,
                         getattr(model, "library", "composition"))
    return pyro.sample("x", d, obs=x0_bg)
