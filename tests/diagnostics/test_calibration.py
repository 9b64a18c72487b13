import math

import numpy as np
import pytest

from pyro_sparse.diagnostics import (
    calibrated_gaps,
    max_reliability_gap,
    reliability_bins,
    reliability_check,
    wilson_interval,
)


def test_wilson_interval_by_hand():
    # 5 of 20 at 95%: centre (0.25 + z^2/40) / (1 + z^2/20), the textbook 0.112 - 0.469
    lo, hi = wilson_interval(5, 20, 0.95)
    assert lo == pytest.approx(0.1119, abs=1e-4)
    assert hi == pytest.approx(0.4687, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0.25 < hi < 0.35
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0, abs=1e-12) and 0.65 < lo < 0.75
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match="level"):
        wilson_interval(1, 2, level=1.5)


def test_bins_and_gap_by_hand():
    p = np.array([0.05, 0.05, 0.15, 0.95, 0.95, 1.0])
    y = np.array([0, 1, 0, 1, 1, 1])
    t = reliability_bins(p, y, n_bins=10)
    assert list(t["bin"]) == [0, 1, 9]  # p = 1 goes to the last bin
    assert list(t["count"]) == [2, 1, 3]
    assert t["observed"].tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert t["predicted"].tolist() == pytest.approx([0.05, 0.15, (0.95 + 0.95 + 1) / 3])
    assert (t["observed_lower"] <= t["observed"]).all()
    assert (t["observed"] <= t["observed_upper"]).all()
    # bins of >= 2 entries: |0.5 - 0.05| and |1 - 0.9667|
    assert max_reliability_gap(p, y, min_count=2) == pytest.approx(0.45)
    assert max_reliability_gap(p, y, min_count=3) == pytest.approx(1 - 2.9 / 3)
    assert math.isnan(max_reliability_gap(p, y, min_count=4))


def test_calibrated_gaps_shrink_with_more_entries():
    rng = np.random.default_rng(1)
    small = calibrated_gaps(rng.uniform(size=300), n_draws=300, seed=0)
    large = calibrated_gaps(rng.uniform(size=30000), n_draws=100, seed=0)
    assert np.median(small) > 3 * np.median(large)
    # a bin of 30 entries at p = 0.5 has sd 0.09: the median max gap over ten is well above
    assert np.median(small) > 0.05
    again = calibrated_gaps(rng.uniform(size=300), n_draws=5, seed=3)
    assert again.shape == (5,)


def test_check_tells_calibrated_from_miscalibrated():
    rng = np.random.default_rng(2)
    p = rng.uniform(size=20000)
    good = reliability_check(p, rng.uniform(size=p.size) < p, n_draws=200)
    assert good.n_outside == 0
    assert good.n_within == good.n_checked == 10  # 2,000 entries per bin: all shown within
    assert good.gap < good.calibrated_quantile
    assert good.p_value > 0.05
    # over-confident: the truth follows p* shrunk halfway to 0.5
    bad = reliability_check(p, rng.uniform(size=p.size) < 0.5 + (p - 0.5) / 2, n_draws=200)
    assert bad.gap > 0.2
    assert bad.n_outside >= 4
    assert bad.p_value < 0.01
    text = str(bad)
    assert "outside" in text and "p-value" in text


def test_small_bins_are_undecided_or_small():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=200)
    c = reliability_check(p, rng.uniform(size=200) < p, min_count=20, n_draws=100)
    # 20 entries per bin: an interval about 0.4 wide cannot be shown within 0.1
    assert c.n_within == 0
    assert set(c.bins["verdict"]) <= {"undecided", "small", "outside"}


@pytest.mark.parametrize("kwargs, match", [
    (dict(p=[0.1, 1.2], truth=[0, 1]), "entry 1"),
    (dict(p=[0.1, float("nan")], truth=[0, 1]), "entry 1"),
    (dict(p=[0.1, 0.2], truth=[0, 2]), "truth must be 0/1"),
    (dict(p=[0.1, 0.2], truth=[0]), "truth has 1 entries but p has 2"),
    (dict(p=[], truth=[]), "empty"),
    (dict(p=[0.1], truth=[0], tol=0), "tol"),
    (dict(p=[0.1], truth=[0], min_count=0), "min_count"),
    (dict(p=[0.1], truth=[0], n_bins=1.5), "n_bins"),
    (dict(p=[0.1], truth=[0], n_draws=0), "n_draws"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reliability_check(**kwargs)
