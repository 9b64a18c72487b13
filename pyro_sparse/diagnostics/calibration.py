"""Reliability of inclusion probabilities against a known truth, with its sampling noise.

In a simulation study the true support is known, so the predicted inclusion probabilities
p*_gk can be checked: among the entries given p* near 0.3, about 30% should be true. The usual
summary, the largest gap between a bin's mean p* and its observed frequency, is noisy when
bins hold tens of entries: a bin of 22 entries at p* 0.5 has a binomial sd of 0.11, so a
perfectly calibrated p* would often miss a 0.1 target. This module reports the gap together
with what a calibrated p* would show on the same entries (draws of the truth from p* itself)
and a Wilson interval for every bin, so that a miss can be told from noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = ["ReliabilityCheck", "calibrated_gaps", "max_reliability_gap", "reliability_bins",
           "reliability_check", "wilson_interval"]


def _check_probs(p, name="p") -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if p.ndim != 1:
        p = p.reshape(-1)
    if p.size == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must hold probabilities in [0, 1]; entry {i} is {float(p[i])}")
    return p


def _check_truth(y, n) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        y = y.reshape(-1)
    if y.size != n:
        raise ValueError(f"truth has {y.size} entries but p has {n}")
    yf = y.astype(float)
    bad = ~np.isin(yf, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"truth must be 0/1 or boolean; entry {i} is {float(y[i])}")
    return yf


def _check_int(v, name, low=1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


def _check_level(level) -> float:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(level)


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    # equal-width bins on [0, 1]; p = 1 falls in the last bin
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)


def wilson_interval(successes, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion.

    Parameters
    ----------
    successes, n : array-like of int
        Successes and trials (``n >= 1``; ``0 <= successes <= n``).
    level : float
        Two-sided confidence level.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Lower and upper ends, each of the broadcast shape of the inputs.
    """
    level = _check_level(level)
    x = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any(n < 1) or np.any(x < 0) or np.any(x > n):
        raise ValueError("wilson_interval needs n >= 1 and 0 <= successes <= n")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    phat = x / n
    denom = 1 + z**2 / n
    centre = (phat + z**2 / (2 * n)) / denom
    half = z * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def reliability_bins(p, truth, n_bins: int = 10, level: float = 0.95):
    """Reliability diagram as a table: per bin of p*, its mean, the observed frequency, an interval.

    Parameters
    ----------
    p : array-like of float
        Predicted inclusion probabilities (any shape; flattened).
    truth : array-like of bool or 0/1
        True inclusion, same number of entries as ``p``.
    n_bins : int
        Equal-width bins on [0, 1].
    level : float
        Level of the Wilson interval of each bin's observed frequency.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin: ``bin``, ``lower_edge``, ``upper_edge``, ``count``,
        ``predicted`` (mean p*), ``observed`` (share true), ``gap`` (observed - predicted),
        ``observed_lower``, ``observed_upper`` (the interval).
    """
    import pandas as pd

    p = _check_probs(p)
    y = _check_truth(truth, p.size)
    n_bins = _check_int(n_bins, "n_bins")
    idx = _bin_index(p, n_bins)
    rows = []
    for b in range(n_bins):
        m = idx == b
        c = int(m.sum())
        if not c:
            continue
        k = float(y[m].sum())
        lo, hi = wilson_interval(k, c, level)
        pred, obs = float(p[m].mean()), k / c
        rows.append(dict(bin=b, lower_edge=b / n_bins, upper_edge=(b + 1) / n_bins, count=c,
                         predicted=pred, observed=obs, gap=obs - pred,
                         observed_lower=float(lo), observed_upper=float(hi)))
    return pd.DataFrame(rows)


def _max_gap_idx(p, y, idx, n_bins, min_count) -> float:
    counts = np.bincount(idx, minlength=n_bins)
    sp = np.bincount(idx, weights=p, minlength=n_bins)
    sy = np.bincount(idx, weights=y, minlength=n_bins)
    keep = counts >= min_count
    if not keep.any():
        return float("nan")
    return float(np.max(np.abs(sy[keep] - sp[keep]) / counts[keep]))


def max_reliability_gap(p, truth, n_bins: int = 10, min_count: int = 20) -> float:
    """Largest |observed frequency - mean p*| over the bins that hold ``min_count`` entries.

    Parameters
    ----------
    p, truth : array-like
        As :func:`reliability_bins`.
    n_bins : int
        Equal-width bins on [0, 1].
    min_count : int
        Bins with fewer entries are left out.

    Returns
    -------
    float
        The gap; NaN when no bin holds ``min_count`` entries.
    """
    p = _check_probs(p)
    y = _check_truth(truth, p.size)
    n_bins = _check_int(n_bins, "n_bins")
    min_count = _check_int(min_count, "min_count")
    return _max_gap_idx(p, y, _bin_index(p, n_bins), n_bins, min_count)


def calibrated_gaps(p, n_bins: int = 10, min_count: int = 20, n_draws: int = 2000,
                    seed: int = 0) -> np.ndarray:
    """The largest reliability gap a perfectly calibrated p* would show on these entries.

    Draws the truth from p* itself (entry by entry, independently) ``n_draws`` times and
    returns :func:`max_reliability_gap` of each draw: the gap's distribution when the only
    error is sampling noise.

    Parameters
    ----------
    p : array-like of float
        Predicted inclusion probabilities.
    n_bins, min_count : int
        As :func:`max_reliability_gap`.
    n_draws : int
        Simulated truths.
    seed : int
        Seed of the draws.

    Returns
    -------
    numpy.ndarray, shape (n_draws,)
        Gaps (NaN where no bin holds ``min_count`` entries).
    """
    p = _check_probs(p)
    n_bins = _check_int(n_bins, "n_bins")
    min_count = _check_int(min_count, "min_count")
    n_draws = _check_int(n_draws, "n_draws")
    rng = np.random.default_rng(seed)
    idx = _bin_index(p, n_bins)
    out = np.empty(n_draws)
    for i in range(n_draws):
        y = (rng.random(p.size) < p).astype(float)
        out[i] = _max_gap_idx(p, y, idx, n_bins, min_count)
    return out


@dataclass
class ReliabilityCheck:
    """What :func:`reliability_check` found.

    Attributes
    ----------
    gap : float
        Largest |observed - predicted| over bins with at least ``min_count`` entries.
    tol : float
        The tolerance checked (a target such as 0.1).
    calibrated_quantile : float
        The ``level`` quantile of the same gap for a perfectly calibrated p* on these
        entries (:func:`calibrated_gaps`): gaps below it are within sampling noise.
    calibrated_median : float
        Median of that gap.
    p_value : float
        Share of the calibrated draws whose gap is at least ``gap``: small values say the
        miscalibration is real.
    bins : pandas.DataFrame
        :func:`reliability_bins` with a column ``verdict`` for bins with ``min_count``
        entries: ``"within"`` (the whole interval of the observed frequency lies within
        ``tol`` of the bin's mean p*), ``"outside"`` (the whole interval lies beyond it), or
        ``"undecided"``; ``"small"`` for the other bins.
    level, min_count : float, int
        As passed.
    """

    gap: float
    tol: float
    calibrated_quantile: float
    calibrated_median: float
    p_value: float
    bins: object
    level: float
    min_count: int

    @property
    def n_outside(self) -> int:
        """Bins whose interval lies wholly more than ``tol`` from the diagonal."""
        return int((self.bins["verdict"] == "outside").sum()) if len(self.bins) else 0

    @property
    def n_within(self) -> int:
        """Bins whose interval lies wholly within ``tol`` of the diagonal."""
        return int((self.bins["verdict"] == "within").sum()) if len(self.bins) else 0

    @property
    def n_checked(self) -> int:
        """Bins with at least ``min_count`` entries."""
        return int((self.bins["verdict"] != "small").sum()) if len(self.bins) else 0

    def __str__(self) -> str:
        lines = [f"largest reliability gap {self.gap:.3f} (bins of >= {self.min_count} entries; "
                 f"tolerance {self.tol:g})",
                 f"a calibrated p* would show {self.calibrated_median:.3f} (median), "
                 f"{self.calibrated_quantile:.3f} ({self.level:.0%} quantile); "
                 f"p-value {self.p_value:.3f}",
                 f"bins: {self.n_within} of {self.n_checked} shown within {self.tol:g}, "
                 f"{self.n_outside} shown outside, the rest undecided"]
        for r in self.bins.itertuples():
            lines.append(f"  p* {r.predicted:.2f} -> {r.observed:.2f} "
                         f"[{r.observed_lower:.2f}, {r.observed_upper:.2f}] ({r.count}) "
                         f"{r.verdict}")
        return "\n".join(lines)


def reliability_check(p, truth, tol: float = 0.1, n_bins: int = 10, min_count: int = 20,
                      level: float = 0.95, n_draws: int = 2000,
                      seed: int = 0) -> ReliabilityCheck:
    """Is p* within ``tol`` of the true inclusion frequency, beyond sampling noise?

    Parameters
    ----------
    p : array-like of float
        Predicted inclusion probabilities, e.g. ``model.inclusion_probs_`` of fits to
        simulated data, pooled over data sets.
    truth : array-like of bool or 0/1
        True inclusion of the same entries.
    tol : float
        Tolerance on |observed - predicted| per bin.
    n_bins, min_count : int
        As :func:`max_reliability_gap`.
    level : float
        Level of the per-bin Wilson intervals and of the calibrated quantile.
    n_draws, seed : int
        As :func:`calibrated_gaps`.

    Returns
    -------
    ReliabilityCheck
        Prints as a short report.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=5000)
    >>> check = reliability_check(p, rng.uniform(size=5000) < p)
    >>> check.n_outside
    0
    """
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0 \
            or not math.isfinite(tol):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    p = _check_probs(p)
    y = _check_truth(truth, p.size)
    min_count = _check_int(min_count, "min_count")
    level = _check_level(level)
    bins = reliability_bins(p, y, n_bins=n_bins, level=level)
    big = bins["count"] >= min_count
    within = (bins["observed_lower"] >= bins["predicted"] - tol) & \
        (bins["observed_upper"] <= bins["predicted"] + tol)
    outside = (bins["observed_lower"] > bins["predicted"] + tol) | \
        (bins["observed_upper"] < bins["predicted"] - tol)
    verdict = np.where(within, "within", np.where(outside, "outside", "undecided"))
    bins["verdict"] = np.where(big, verdict, "small")
    gap = max_reliability_gap(p, y, n_bins=n_bins, min_count=min_count)
    null = calibrated_gaps(p, n_bins=n_bins, min_count=min_count, n_draws=n_draws, seed=seed)
    null = null[np.isfinite(null)]
    if null.size and math.isfinite(gap):
        q, med = float(np.quantile(null, level)), float(np.median(null))
        pv = float((np.sum(null >= gap - 1e-12) + 1) / (null.size + 1))
    else:
        q = med = pv = float("nan")
    return ReliabilityCheck(gap=gap, tol=float(tol), calibrated_quantile=q,
                            calibrated_median=med, p_value=pv, bins=bins, level=level,
                            min_count=min_count)
