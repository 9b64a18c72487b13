"""Observation models shared by every model (normal, bernoulli, poisson, negbin, categorical).

A likelihood turns the decoder output into a distribution over one row of data, masks missing
entries (NaN) out of it, says what the encoder sees, and validates user data with errors that
name the row and column.
"""

from __future__ import annotations

import math

import numpy as np
import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints

__all__ = [
    "LIKELIHOODS",
    "COUNT_LIKELIHOODS",
    "LIBRARY_MODES",
    "MultinomialLogits",
    "check_likelihood",
    "check_library",
    "check_data",
    "split_missing",
    "encoder_input",
    "log_rate",
    "observation_dist",
    "mean_from_output",
    "dispersion_parameter",
]

LIKELIHOODS = ("normal", "bernoulli", "poisson", "negbin", "categorical")
#: likelihoods whose data must be non-negative integer counts
COUNT_LIKELIHOODS = ("poisson", "negbin", "categorical")
#: how ``poisson`` and ``negbin`` treat the row total (library size), see :func:`log_rate`
LIBRARY_MODES = ("composition", "offset")
#: start of the negative binomial inverse dispersion theta (variance mu + mu^2 / theta)
INIT_THETA = 10.0


def check_likelihood(name) -> str:
    """Return ``name`` if it is a known likelihood, else raise ValueError naming the choices."""
    if not isinstance(name, str) or name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}")
    return name


def check_library(name) -> str:
    """Return ``name`` if it is a known library-size mode, else raise ValueError."""
    if not isinstance(name, str) or name not in LIBRARY_MODES:
        raise ValueError(f"unknown library {name!r}; choose one of {', '.join(LIBRARY_MODES)}")
    return name


# --------------------------------------------------------------------------- data checks
def _bad_entries(x, bad_value):
    """(rows, cols) of entries where ``bad_value(values)`` holds, for dense or scipy sparse."""
    if hasattr(x, "tocoo"):
        coo = x.tocoo()
        m = bad_value(coo.data)
        rows, cols = coo.row[m], coo.col[m]
        order = np.lexsort((cols, rows))
        return rows[order], cols[order]
    return np.nonzero(bad_value(x))


def check_data(x_ng, likelihood: str, feature_names=None, what: str = "X",
               row_names=None, fitting: bool = True) -> None:
    """Validate a data matrix for a likelihood; raise ValueError naming row and column.

    Missing values (NaN) are allowed: they are masked out of the likelihood. A row with no
    observed value is an error (and, for data to fit on, a column), as are infinities, and
    for count likelihoods (:data:`COUNT_LIKELIHOODS`) negative or non-integer values and rows
    whose observed counts sum to zero; ``bernoulli`` data must be 0 or 1.

    Parameters
    ----------
    x_ng : numpy.ndarray or scipy.sparse matrix, shape (N, G)
        Data, already converted to float.
    likelihood : str
        One of :data:`LIKELIHOODS`.
    feature_names : sequence of str, optional
        Used to name the column in messages.
    what : str
        Name of the argument or file, for messages.
    row_names : sequence of str, optional
        Sample ids, used to name the row in messages.
    fitting : bool
        The data will be fitted on: every column needs an observed value.
    """
    def col(c):
        return f"column {c}" + (f" ({feature_names[c]!r})" if feature_names is not None else "")

    def row(r):
        return f"row {r}" + (f" ({row_names[r]!r})" if row_names is not None else "")

    def first(bad_value, message):
        rows, cols = _bad_entries(x_ng, bad_value)
        if len(rows):
            r, c = int(rows[0]), int(cols[0])
            v = x_ng[r, c]
            raise ValueError(f"{what} {message.format(n=len(rows), v=float(v))} at {row(r)}, "
                             f"{col(c)}")

    if x_ng.ndim != 2:
        raise ValueError(f"{what} must be 2-dimensional (samples x features), got shape "
                         f"{x_ng.shape}")
    if x_ng.shape[0] == 0 or x_ng.shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {x_ng.shape}")
    first(np.isinf, "has {n} infinite value(s); first: {v!r}")
    sparse = hasattr(x_ng, "tocoo")
    if sparse:
        nan_coo = x_ng.tocoo()
        nan_m = np.isnan(nan_coo.data)
        n_miss_row = np.bincount(nan_coo.row[nan_m], minlength=x_ng.shape[0])
        n_miss_col = np.bincount(nan_coo.col[nan_m], minlength=x_ng.shape[1])
    else:
        miss = np.isnan(x_ng)
        n_miss_row, n_miss_col = miss.sum(1), miss.sum(0)
    if (n_miss_row == x_ng.shape[1]).any():
        r = int(np.argmax(n_miss_row == x_ng.shape[1]))
        raise ValueError(f"{what} {row(r)} has no observed value (all missing)")
    if fitting and (n_miss_col == x_ng.shape[0]).any():
        c = int(np.argmax(n_miss_col == x_ng.shape[0]))
        raise ValueError(f"{what} {col(c)} has no observed value (all missing)")
    if likelihood in COUNT_LIKELIHOODS:
        need = f"must hold counts for likelihood {likelihood!r}"
        first(lambda v: v < 0, need + ": negative value {v!r}")
        first(lambda v: np.isfinite(v) & (v != np.round(v)), need + ": non-integer value {v!r}")
        totals = np.asarray(np.nansum(x_ng, 1) if not sparse
                            else _nan_to_zero(x_ng).sum(1)).ravel()
        if (totals == 0).any():
            r = int(np.argmax(totals == 0))
            raise ValueError(f"{what} has a row of all-zero counts ({row(r)}); the "
                             f"{likelihood} likelihood needs at least one count per row")
    elif likelihood == "bernoulli":
        first(lambda v: (v != 0) & (v != 1) & ~np.isnan(v),
              "must hold 0/1 values for likelihood 'bernoulli': value {v!r}")


def _nan_to_zero(x):
    x = x.copy()
    x.data = np.nan_to_num(x.data, nan=0.0)
    return x


# --------------------------------------------------------------------------- missing values
def split_missing(x_bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split rows with NaNs into ``(x0_bg, mask_bg)``: NaNs set to 0, mask True where observed.

    The mask is None when nothing is missing (the fast path of every likelihood).
    """
    miss = torch.isnan(x_bg)
    if not bool(miss.any()):
        return x_bg, None
    return x_bg.masked_fill(miss, 0.0), ~miss


def encoder_input(x_bg: torch.Tensor, likelihood: str, fill_g=None) -> torch.Tensor:
    """What the encoder sees.

    Missing entries are first replaced by ``fill_g`` (the training column means of the
    observed values; the imputation the encoder uses). Then ``normal`` and ``bernoulli`` data
    pass unchanged, ``categorical`` rows are normalised to proportions, and ``poisson`` /
    ``negbin`` rows become ``log1p(G * x / row total)`` (log counts per average feature, which
    removes the library size).
    """
    if fill_g is not None:
        miss = torch.isnan(x_bg)
        if bool(miss.any()):
            x_bg = torch.where(miss, fill_g.to(x_bg.dtype).expand_as(x_bg), x_bg)
    if likelihood == "categorical":
        return x_bg / x_bg.sum(-1, keepdim=True).clamp_min(1.0)
    if likelihood in ("poisson", "negbin"):
        G = x_bg.shape[-1]
        return torch.log1p(G * x_bg / x_bg.sum(-1, keepdim=True).clamp_min(1.0))
    return x_bg


# --------------------------------------------------------------------------- distributions
class MultinomialLogits(TorchDistribution):
    """Multinomial over G features with a per-row total count, parametrised by logits.

    ``log p(x) = log(n!) - sum log(x_g!) + sum x_g log softmax(logits)_g`` with n the row
    total; sampling draws the counts by conditional binomials (stick-breaking). With a
    ``mask`` the softmax runs over the observed features only and missing entries add
    nothing (the multinomial of the observed counts).

    Parameters
    ----------
    logits : torch.Tensor, shape (..., G)
    total_count : torch.Tensor, shape (...)
    mask : torch.Tensor of bool, shape (..., G), optional
        True where observed.
    """

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.real_vector  # non-negative integer vectors summing to total_count

    def __init__(self, logits, total_count, mask=None, validate_args=None):
        self.logits = logits
        self.total_count = torch.as_tensor(total_count, dtype=logits.dtype,
                                           device=logits.device).expand(logits.shape[:-1])
        self._obs_mask = mask
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        mask = None if self._obs_mask is None else \
            self._obs_mask.expand(batch_shape + self.event_shape)
        return MultinomialLogits(self.logits.expand(batch_shape + self.event_shape),
                                 self.total_count.expand(batch_shape), mask)

    def _log_p(self):
        if self._obs_mask is None:
            return torch.log_softmax(self.logits, -1)
        lp = torch.log_softmax(self.logits.masked_fill(~self._obs_mask, -math.inf), -1)
        return lp.masked_fill(~self._obs_mask, 0.0)

    def log_prob(self, value):
        logp = self._log_p()
        if self._obs_mask is not None:
            value = value.masked_fill(~self._obs_mask, 0.0)
        n = value.sum(-1)
        coef = torch.lgamma(n + 1) - torch.lgamma(value + 1).sum(-1)
        return coef + (value * logp).sum(-1)

    @property
    def mean(self):
        p = self._log_p().exp()
        if self._obs_mask is not None:
            p = p * self._obs_mask
        return self.total_count.unsqueeze(-1) * p

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


def _row_total(x_bg, out_bg):
    if x_bg is None:
        return out_bg.new_ones(out_bg.shape[:-1])
    return x_bg.sum(-1)


def log_rate(out_bg: torch.Tensor, x_bg=None, mask_bg=None,
             library: str = "composition") -> torch.Tensor:
    """Log of the Poisson / negative-binomial mean for every entry, shape (B, G).

    ``composition`` (the default): ``mu_ng = l_n * softmax(out_n)_g`` with ``l_n`` the observed
    row total, the softmax taken over the observed features. The library size is profiled
    out: the factors explain each row's composition, so a factor that changes the row total
    does not need to load on every feature (reference notes, section 8). For missing entries
    the same formula predicts on the scale of the observed ones.

    ``offset``: ``mu_ng = l_n * exp(out_ng)``, the classical fixed offset (kept for comparison;
    it tends to give dense supports).

    Parameters
    ----------
    out_bg : torch.Tensor, shape (B, G)
        Decoder output.
    x_bg : torch.Tensor, shape (B, G), optional
        Observed counts with missing entries set to 0 (row totals); None gives ``l_n = 1``.
    mask_bg : torch.Tensor of bool, optional
        True where observed.
    library : {"composition", "offset"}
    """
    log_l = torch.log(_row_total(x_bg, out_bg).clamp_min(1e-8)).unsqueeze(-1)
    if library == "offset":
        return log_l + out_bg
    masked = out_bg if mask_bg is None else out_bg.masked_fill(~mask_bg, -math.inf)
    return log_l + out_bg - torch.logsumexp(masked, -1, keepdim=True)


def observation_dist(likelihood: str, out_bg: torch.Tensor, x_bg=None, sigma_g=None,
                     theta_g=None, mask_bg=None, library: str = "composition"):
    """Distribution of one row of data given the decoder output.

    Parameters
    ----------
    likelihood : str
        ``"normal"`` (mean ``out_bg``, sd ``sigma_g``), ``"bernoulli"`` (logits ``out_bg``),
        ``"poisson"`` / ``"negbin"`` (mean from :func:`log_rate`; ``negbin`` has variance
        ``mu + mu^2 / theta_g``) or ``"categorical"`` (multinomial with logits ``out_bg`` and
        the observed row total).
    out_bg : torch.Tensor, shape (B, G)
        Decoder output.
    x_bg : torch.Tensor, optional
        Observed rows with missing entries set to 0 (see :func:`split_missing`); gives the
        row totals of the count likelihoods (a total of 1 when absent).
    sigma_g : torch.Tensor, shape (G,), optional
        Noise sd for ``normal``.
    theta_g : torch.Tensor, shape (G,), optional
        Inverse dispersion for ``negbin``.
    mask_bg : torch.Tensor of bool, shape (B, G), optional
        True where observed; missing entries add nothing to the log-density.
    library : {"composition", "offset"}
        Library-size treatment of ``poisson`` and ``negbin`` (see :func:`log_rate`).

    Returns
    -------
    pyro.distributions.Distribution
        Batch shape (B,), event shape (G,).
    """
    if likelihood == "categorical":
        return MultinomialLogits(out_bg, _row_total(x_bg, out_bg), mask_bg)
    if likelihood == "normal":
        d = dist.Normal(out_bg, sigma_g)
    elif likelihood == "bernoulli":
        d = dist.Bernoulli(logits=out_bg)
    elif likelihood == "poisson":
        d = dist.Poisson(log_rate(out_bg, x_bg, mask_bg, library).exp())
    elif likelihood == "negbin":
        lr = log_rate(out_bg, x_bg, mask_bg, library)
        d = dist.NegativeBinomial(total_count=theta_g, logits=lr - torch.log(theta_g))
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    if mask_bg is not None:
        d = d.mask(mask_bg)
    return d.to_event(1)


def mean_from_output(likelihood: str, out_bg: torch.Tensor, x_bg=None, mask_bg=None,
                     library: str = "composition") -> torch.Tensor:
    """Expected data given the decoder output, for every entry (missing ones included).

    ``normal``: the output; ``bernoulli``: ``sigmoid``; ``poisson`` / ``negbin``:
    ``exp(log_rate)``; ``categorical``: ``total * softmax`` (over the observed features with a
    mask, so missing entries are predicted on the scale of the observed ones). Without
    ``x_bg`` the count likelihoods use a row total of 1 (proportions).
    """
    if likelihood == "normal":
        return out_bg
    if likelihood == "bernoulli":
        return torch.sigmoid(out_bg)
    if likelihood == "categorical":
        return log_rate(out_bg, x_bg, mask_bg, "composition").exp()
    return log_rate(out_bg, x_bg, mask_bg, library).exp()


def dispersion_parameter(likelihood: str, n_features: int):
    """``log theta_g`` as a trainable parameter (G,) for ``negbin``, else None."""
    if likelihood != "negbin":
        return None
    return torch.nn.Parameter(torch.full((n_features,), math.log(INIT_THETA)))
