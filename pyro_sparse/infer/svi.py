"""The training loop: minibatch SVI with the data plate's indices, warm-up schedule, devices.

``fit_svi`` runs any model/guide pair of this package (or the user's own with the same call
signature) with ``torch.optim.Adam`` on module-local parameters; it never touches Pyro's
global parameter store.
"""

from __future__ import annotations

import contextlib
import math

import pyro
import torch
from pyro.infer import TraceEnum_ELBO

from .checkpoint import restore_training_state, training_state
from .elbo import ReparamTrace_ELBO

__all__ = ["fit_svi", "make_elbo", "resolve_device", "warmup_weight", "lr_factor",
           "full_data_loss", "frozen"]


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Hold every trainable parameter of ``module`` fixed (``requires_grad`` off) inside.

    The parameters that were trainable are made trainable again on exit, even after an
    error; the others are left as they were.
    """
    held = [p for p in module.parameters() if p.requires_grad]
    for p in held:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in held:
            p.requires_grad_(True)


def resolve_device(device) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a torch.device into a device.

    Raises
    ------
    ValueError
        For an unknown name, or ``cuda`` when CUDA is not available.
    """
    if isinstance(device, torch.device):
        name = str(device)
    elif isinstance(device, str):
        name = device.strip().lower()
    else:
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available on "
                             "this machine (use device='cpu' or 'auto')")
        return torch.device(name)
    raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'auto'")


def make_elbo(model):
    """``TraceEnum_ELBO`` for models with an enumerated gamma site, else ``Trace_ELBO``'s
    estimator with less per-step overhead (:class:`~pyro_sparse.infer.ReparamTrace_ELBO`)."""
    if getattr(model, "marginalize", "mixture") == "enumerate":
        return TraceEnum_ELBO(max_plate_nesting=2)
    return ReparamTrace_ELBO()


def warmup_weight(step: int, warmup_steps: int) -> float:
    """Linear warm-up weight ``min(1, (step + 1) / warmup_steps)`` (1 when no warm-up)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def lr_factor(step: int, total_steps: int, decay_steps: int) -> float:
    """Learning-rate multiplier: 1, then a linear fall over the last ``decay_steps`` steps.

    Step ``total_steps - decay_steps + j`` (j = 0 .. decay_steps - 1) gets
    ``1 - j / decay_steps``, so the last step runs at ``1 / decay_steps`` of the rate, never 0.
    With a constant rate, Adam's minibatch noise keeps moving the variational parameters by
    about ``lr`` per step; the decay lets them settle at the optimum (what the posterior
    means and sds report).
    """
    if decay_steps <= 0:
        return 1.0
    j = step - (total_steps - decay_steps)
    if j < 0:
        return 1.0
    return max(1.0 - j / decay_steps, 1.0 / decay_steps)


def full_data_loss(model, guide, x_ng: torch.Tensor, batch_size: int = 1024) -> float:
    """Monte Carlo estimate of the whole data set's negative ELBO, in minibatches.

    Each batch is evaluated as a subsample of the N rows (an unbiased estimate of the full
    negative ELBO); their average weighted by batch size counts the global terms once.
    """
    elbo = make_elbo(model)
    N = x_ng.shape[0]
    total = 0.0
    with torch.no_grad():
        for s in range(0, N, batch_size):
            xb = x_ng[s:s + batch_size]
            idx = torch.arange(s, s + xb.shape[0], device=x_ng.device)
            # scale the batch to the full data, then take its share: unbiased, globals once
            total += float(elbo.loss(model, guide, xb, N, idx)) * xb.shape[0] / N
    return total


def fit_svi(model, guide, x_ng: torch.Tensor, *, epochs: int = 200, batch_size: int = 100,
            lr: float = 1e-2, seed: int = 0, warmup_epochs: float = 0.0, progress=False,
            desc: str = "fit", on_step=None, resume_state=None,
            on_epoch_end=None, lr_decay: float = 0.0) -> list[float]:
    """Fit ``model``/``guide`` by minibatch SVI with Adam.

    Parameters
    ----------
    model, guide : torch.nn.Module
        Called as ``f(x_bg, n_data, idx, kl_weight, prior_weight)``; both must be built
        and called under ``pyro.settings.context(module_local_params=True)``.
    x_ng : torch.Tensor, shape (N, G), or SparseRows
        Data on the training device (NaN marks a missing entry).
    epochs, batch_size : int
        Passes over the data in all (including those of a resumed run) and rows per step
        (the last batch of an epoch may be smaller).
    lr : float
        Adam learning rate.
    seed : int
        Seeds Pyro, torch and the minibatch order.
    warmup_epochs : float
        Linear warm-up of the z-KL and global-prior weights from ~0 to 1 over this many
        epochs (0: none).
    progress : bool
        Show a tqdm bar with the running loss.
    desc : str
        Label of the progress bar.
    on_step : callable, optional
        Called as ``on_step(step, total_steps)`` before every step (for schedules).
    resume_state : tuple (tensors, info), optional
        A :func:`~pyro_sparse.infer.checkpoint.training_state` snapshot (as read back by
        :func:`~pyro_sparse.infer.read_checkpoint`) to continue from: the optimiser, the
        minibatch order and every RNG pick up where the snapshot left them, so a resumed run
        on CPU ends with the same weights as an uninterrupted one. The model and guide
        weights must be loaded by the caller.
    on_epoch_end : callable, optional
        Called as ``on_epoch_end(epochs_done, snapshot)`` after every epoch whose loss was
        finite; ``snapshot()`` returns the current ``training_state`` (for checkpoints).
    lr_decay : float
        Fraction (0 to 1) of the run's last steps over which the learning rate falls
        linearly towards 0 (:func:`lr_factor`); 0 keeps it constant. A function of the step
        count alone, so a resumed run follows the same schedule.

    Returns
    -------
    list of float
        Per epoch, the mean over its steps of the minibatch loss (each an unbiased estimate
        of the full-data negative ELBO at the weights in force).

    Raises
    ------
    FloatingPointError
        When the loss becomes NaN or infinite (the epoch's ``on_epoch_end`` is not called,
        so the last checkpoint stays the last good state).
    """
    pyro.set_rng_seed(seed)
    N = x_ng.shape[0]
    batch_size = min(int(batch_size), N)
    steps_per_epoch = math.ceil(N / batch_size)
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    if not 0.0 <= float(lr_decay) <= 1.0:
        raise ValueError(f"lr_decay must be between 0 and 1, got {lr_decay}")
    total_steps = epochs * steps_per_epoch
    decay_steps = int(round(float(lr_decay) * total_steps))
    params = [p for p in list(model.parameters()) + list(guide.parameters()) if p.requires_grad]
    optim = torch.optim.Adam(params, lr=lr, foreach=True)
    elbo = make_elbo(model)
    gen = torch.Generator().manual_seed(seed)
    history: list[float] = []
    start = 0
    if resume_state is not None:
        start, history = restore_training_state(optim, gen, *resume_state)
        if start > epochs:
            raise ValueError(f"the checkpoint has already run {start} epochs, more than the "
                             f"{epochs} requested")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=start, desc=desc, unit="epoch", leave=False,
                   mininterval=0.5)
    model.train()
    guide.train()
    step = start * steps_per_epoch
    try:
        with pyro.validation_enabled(False):
            for epoch in range(start, epochs):
                perm = torch.randperm(N, generator=gen).to(x_ng.device)
                total = 0.0
                for s in range(0, N, batch_size):
                    idx = perm[s:s + batch_size]
                    if on_step is not None:
                        on_step(step, total_steps)
                    w = warmup_weight(step, warmup_steps)
                    if decay_steps:
                        f = lr_factor(step, total_steps, decay_steps)
                        for group in optim.param_groups:
                            group["lr"] = lr * f
                    loss = elbo.differentiable_loss(model, guide, x_ng[idx], N, idx, w, w)
                    optim.zero_grad(set_to_none=True)
                    loss.backward()
                    optim.step()
                    lv = float(loss.detach())
                    if not math.isfinite(lv):
                        raise FloatingPointError(
                            f"loss became {lv} at epoch {epoch}, step {step}; try a smaller lr "
                            "or check the data scale")
                    total += lv
                    step += 1
                history.append(total / steps_per_epoch)
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, lambda e=epoch + 1: training_state(optim, gen, e,
                                                                               history))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{history[-1]:.4g}")
    finally:
        if bar is not None:
            bar.close()
        model.eval()
        guide.eval()
    return history
