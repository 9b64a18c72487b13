"""Observation models shared by every model (normal, categorical) and the checks on their data.

A likelihood turns the decoder output into a distribution over one row of data, says what the
encoder sees, and validates user data with errors that name the row and column.
"""

from __future__ import annotations

import numpy as np
import torch
from pyro.distributions import Normal, TorchDistribution, constraints

__all__ = [
    "LIKELIHOODS",
    "MultinomialLogits",
    "check_likelihood",
    "check_data",
    "encoder_input",
    "observation_dist",
    "mean_from_output",
]

LIKELIHOODS = ("normal", "categorical")


def check_likelihood(name) -> str:
    """Return ``name`` if it is a known likelihood, else raise ValueError naming the choices."""
    if not isinstance(name, str) or name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}")
    return name


def _first_bad(mask: np.ndarray) -> tuple[int, int]:
    r, c = np.argwhere(mask)[0]
    return int(r), int(c)


def check_data(x_ng: np.ndarray, likelihood: str, feature_names=None, what: str = "X") -> None:
    """Validate a data matrix for a likelihood; raise ValueError naming row and column.

    Parameters
    ----------
    x_ng : numpy.ndarray, shape (N, G)
        Data, already converted to float.
    likelihood : str
        One of :data:`LIKELIHOODS`.
    feature_names : sequence of str, optional
        Used to name the column in messages.
    what : str
        Name of the argument, for messages.
    """
    def col(c):
        return f"column {c}" + (f" ({feature_names[c]!r})" if feature_names is not None else "")

    if x_ng.ndim != 2:
        raise ValueError(f"{what} must be 2-dimensional (samples x features), got shape "
                         f"{x_ng.shape}")
    if x_ng.shape[0] == 0 or x_ng.shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {x_ng.shape}")
    finite = np.isfinite(x_ng)
    if not finite.all():
        r, c = _first_bad(~finite)
        kind = "NaN" if np.isnan(x_ng[r, c]) else "inf"
        n_bad = int((~finite).sum())
        raise ValueError(f"{what} has {n_bad} non-finite value(s); first: {kind} at row {r}, "
                         f"{col(c)}")
    if likelihood == "categorical":
        neg = x_ng < 0
        if neg.any():
            r, c = _first_bad(neg)
            raise ValueError(f"{what} must hold counts for likelihood 'categorical': negative "
                             f"value {float(x_ng[r, c])!r} at row {r}, {col(c)}")
        frac = x_ng != np.round(x_ng)
        if frac.any():
            r, c = _first_bad(frac)
            raise ValueError(f"{what} must hold counts for likelihood 'categorical': "
                             f"non-integer value {float(x_ng[r, c])!r} at row {r}, {col(c)}")
        totals = x_ng.sum(1)
        if (totals == 0).any():
            r = int(np.argmax(totals == 0))
            raise ValueError(f"{what} has a row of all-zero counts (row {r}); the categorical "
                             "likelihood needs at least one count per row")


def encoder_input(x_bg: torch.Tensor, likelihood: str) -> torch.Tensor:
    """What the encoder sees: the data, or row-normalised counts for ``categorical``."""
    if likelihood == "categorical":
        return x_bg / x_bg.sum(-1, keepdim=True).clamp_min(1.0)
    return x_bg


class MultinomialLogits(TorchDistribution):
    """Multinomial over G features with a per-row total count, parametrised by logits.

    ``log p(x) = log(n!) - sum log(x_g!) + sum x_g log softmax(logits)_g`` with n the row
    total; sampling draws the counts by conditional binomials (stick-breaking).

    Parameters
    ----------
    logits : torch.Tensor, shape (..., G)
    total_count : torch.Tensor, shape (...)
    """

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.real_vector  # non-negative integer vectors summing to total_count

    def __init__(self, logits, total_count, validate_args=None):
        self.logits = logits
        self.total_count = torch.as_tensor(total_count, dtype=logits.dtype,
                                           device=logits.device).expand(logits.shape[:-1])
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return MultinomialLogits(self.logits.expand(batch_shape + self.event_shape),
                                 self.total_count.expand(batch_shape))

    def log_prob(self, value):
        logp = torch.log_softmax(self.logits, -1)
        n = value.sum(-1)
        coef = torch.lgamma(n + 1) - torch.lgamma(value + 1).sum(-1)
        return coef + (value * logp).sum(-1)

    @property
    def mean(self):
        return self.total_count.unsqueeze(-1) * torch.softmax(self.logits, -1)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            shape = self._extended_shape(sample_shape)
            p = torch.softmax(self.logits, -1).expand(shape)
            remaining = self.total_count.expand(shape[:-1]).clone()
            mass = torch.ones_like(remaining)
            out = torch.zeros(shape, dtype=p.dtype, device=p.device)
            for g in range(shape[-1] - 1):
                q = (p[..., g] / mass.clamp_min(1e-12)).clamp(0.0, 1.0)
                draw = torch.distributions.Binomial(remaining, q).sample()
                out[..., g] = draw
                remaining = remaining - draw
                mass = mass - p[..., g]
            out[..., -1] = remaining
            return out


def observation_dist(likelihood: str, out_bg: torch.Tensor, x_bg=None, sigma_g=None):
    """Distribution of one row of data given the decoder output.

    Parameters
    ----------
    likelihood : str
        ``"normal"`` (mean ``out_bg``, sd ``sigma_g``) or ``"categorical"`` (logits
        ``out_bg``, total counts from ``x_bg``).
    out_bg : torch.Tensor, shape (B, G)
        Decoder output.
    x_bg : torch.Tensor, optional
        Observed rows (needed for the categorical row totals; when absent a total of 1 is
        used).
    sigma_g : torch.Tensor, shape (G,), optional
        Noise sd for ``normal``.

    Returns
    -------
    pyro.distributions.Distribution
        Batch shape (B,), event shape (G,).
    """
    if likelihood == "normal":
        return Normal(out_bg, sigma_g).to_event(1)
    if likelihood == "categorical":
        total = x_bg.sum(-1) if x_bg is not None else out_bg.new_ones(out_bg.shape[:-1])
        return MultinomialLogits(out_bg, total)
    raise ValueError(f"unknown likelihood {likelihood!r}")


def mean_from_output(likelihood: str, out_bg: torch.Tensor, x_bg=None) -> torch.Tensor:
    """Expected data given decoder output: the mean (normal) or ``total * softmax`` (counts)."""
    if likelihood == "categorical":
        total = x_bg.sum(-1, keepdim=True) if x_bg is not None else 1.0
        return total * torch.softmax(out_bg, -1)
    return out_bg
