"""Is a fit done? A check on the end of the per-epoch loss history.

Minibatch SVI has no natural stopping rule, and a fixed epoch budget that suits one data shape
can stop another fit far from its optimum (benchmarks/README.md, calibration: on 24 features
and 2,000 rows simulated from the model, 200 epochs left the loss well above what longer fits
reach). :func:`loss_trend` fits a straight line to the last part of the history and says
whether the loss is still falling by a material amount; it cannot see a plateau.
"""

from __future__ import annotations

import numpy as np

__all__ = ["loss_trend", "ConvergenceWarning"]


class ConvergenceWarning(UserWarning):
    """The training loss was still falling materially when the fit stopped."""


def loss_trend(history, n_rows: int, n_features: int, tail: float = 0.2,
               min_epochs: int = 10, t_threshold: float = 3.0,
               gain_threshold: float = 0.2, exclude_last: int = 0) -> dict:
    """Slope of the end of a loss history and whether training looks finished.

    A least-squares line is fitted to the last ``tail`` fraction of the epochs (at least
    five). Training counts as unfinished when the slope is negative with a t-statistic beyond
    ``t_threshold`` *and* running as many epochs again at that slope would lower the loss by
    more than ``gain_threshold`` nats per row and feature. The second condition keeps the
    slow drift of a fit that is only overfitting its training rows from raising alarms.

    Parameters
    ----------
    history : sequence of float
        Loss per epoch (negative ELBO of the whole data set, as ``fit_svi`` returns it).
    n_rows, n_features : int
        N and G of the data the loss was computed on (to put the gain per row and feature).
    tail : float
        Fraction of the epochs the line is fitted to.
    min_epochs : int
        Shorter histories are not judged (``converged`` is None).
    t_threshold, gain_threshold : float
        The two conditions above.
    exclude_last : int
        Epochs at the end left out of the check: those of a final learning-rate decay
        (``fit_svi``'s ``lr_decay``), whose falling loss is the parameters settling, not
        training left undone. The line is then fitted to the ``tail`` fraction of the epochs
        before them (the fit as it stood when the decay began).

    Returns
    -------
    dict
        ``slope_per_row`` (loss change per epoch and row), ``t`` (slope / its standard
        error), ``projected_gain`` (nats per row and feature that as many epochs again would
        gain at that slope; positive when the loss falls), ``window`` (epochs in the fit)
        and ``converged`` (True, False, or None when too short to say).
    """
    h = np.asarray(history, dtype=float)
    if exclude_last < 0:
        raise ValueError(f"exclude_last must be >= 0, got {exclude_last}")
    if exclude_last:
        h = h[:max(h.size - int(exclude_last), 0)]
    E = h.size
    out = dict(slope_per_row=float("nan"), t=float("nan"), projected_gain=float("nan"),
               window=0, converged=None)
    if E < max(int(min_epochs), 5) or not np.isfinite(h).all():
        return out
    w = max(5, int(round(tail * E)))
    y = h[-w:] / float(n_rows)
    x = np.arange(w, dtype=float) - (w - 1) / 2.0
    slope = float((x * y).sum() / (x * x).sum())
    resid = y - y.mean() - slope * x
    se = float(np.sqrt((resid**2).sum() / max(w - 2, 1) / (x * x).sum()))
    t = slope / se if se > 0 else (-np.inf if slope < 0 else np.inf if slope > 0 else 0.0)
    gain = -slope * E / float(n_features)
    falling = t < -float(t_threshold) and gain > float(gain_threshold)
    out.update(slope_per_row=slope, t=float(t), projected_gain=float(gain), window=int(w),
               converged=not falling)
    return out
