import numpy as np
import pytest

import pyro_sparse as ps
from pyro_sparse.diagnostics import residual_check, residual_correlation, residual_dependence
from pyro_sparse.diagnostics.residuals import RESIDUAL_EXCESS
from pyro_sparse.residual_stats import pearson_residuals


def test_correlation_matches_numpy_and_leaves_out_missing_entries():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(400, 5))
    r[:, 1] += r[:, 0]
    np.testing.assert_allclose(residual_correlation(r), np.corrcoef(r.T), atol=1e-12)
    # a missing entry is left out of both columns' statistics and of the pair's mean product
    r_missing = r.copy()
    r_missing[::7, 2] = np.nan
    C = residual_correlation(r_missing)
    keep = np.isfinite(r_missing[:, 2])
    assert abs(C[1, 2] - np.corrcoef(r[keep, 1], r[keep, 2])[0, 1]) < 0.02
    assert np.isfinite(C).all() and np.allclose(np.diag(C), 1) and np.allclose(C, C.T)


def test_a_constant_column_correlates_with_nothing():
    r = np.random.default_rng(1).normal(size=(50, 3))
    r[:, 1] = 2.5
    C = residual_correlation(r)
    assert C[0, 1] == 0 and C[1, 2] == 0 and C[1, 1] == 1


def test_independent_residuals_sit_at_the_null_edge_and_are_not_flagged():
    r = np.random.default_rng(2).normal(size=(2000, 24))
    rc = residual_dependence(r)
    assert rc.null_edge == pytest.approx((1 + np.sqrt(24 / 2000)) ** 2)
    assert abs(rc.eigenvalue - rc.null_edge) < 0.15
    assert not rc.flagged and rc.threshold == pytest.approx(rc.null_edge + RESIDUAL_EXCESS)
    assert "no shared variation" in str(rc)


def test_a_shared_component_is_flagged_and_its_features_listed():
    rng = np.random.default_rng(3)
    r = rng.normal(size=(2000, 24))
    missed = rng.normal(size=2000)
    for g in (4, 9, 17):  # a factor the fit treats as noise: residual correlation ~0.8
        r[:, g] = 2 * missed + r[:, g]
    names = [f"gene{g}" for g in range(24)]
    rc = residual_dependence(r, names)
    assert rc.flagged and rc.eigenvalue == pytest.approx(1 + 2 * 0.8, abs=0.15)
    assert sorted(n for n, _ in rc.features) == ["gene17", "gene4", "gene9"]
    assert all(0.25 <= s <= 1 for _, s in rc.features)
    assert {frozenset(p[:2]) for p in rc.pairs[:3]} == {
        frozenset(p) for p in (("gene4", "gene9"), ("gene4", "gene17"), ("gene9", "gene17"))}
    assert "gene4" in str(rc) and "missed" in str(rc) and not rc.spread
    d = rc.to_dict()
    assert d["flagged"] is True and len(d["features"]) == 3 and "corr_gg" not in d


def test_a_component_spread_over_many_features_lists_the_ten_largest():
    rng = np.random.default_rng(6)
    r = rng.normal(size=(1000, 60))
    r += 0.35 * rng.normal(size=(1000, 1))  # shared by all: share ~0.11 of each feature
    rc = residual_dependence(r)
    assert rc.flagged and rc.spread and len(rc.features) == 10
    assert all(s < 0.25 for _, s in rc.features)
    assert "spread thinly" in str(rc) and rc.to_dict()["spread"] is True


def test_many_features_take_the_svd_path_with_the_same_answer(monkeypatch):
    import pyro_sparse.diagnostics.residuals as mod

    rng = np.random.default_rng(7)
    r = rng.normal(size=(500, 40))
    r[:, [3, 11, 30]] += 2 * rng.normal(size=(500, 1))
    dense = residual_dependence(r)
    monkeypatch.setattr(mod, "DENSE_MAX_FEATURES", 10)
    big = residual_dependence(r)
    assert big.corr_gg is None and dense.corr_gg is not None
    assert big.eigenvalue == pytest.approx(dense.eigenvalue, rel=1e-6)
    assert [n for n, _ in big.features] == [n for n, _ in dense.features]
    assert [frozenset(p[:2]) for p in big.pairs[:3]] == [frozenset(p[:2]) for p in dense.pairs[:3]]


@pytest.mark.parametrize("bad, match", [
    (np.zeros(5), "at least 3 rows and 2 features"),
    (np.zeros((2, 4)), "at least 3 rows and 2 features"),
])
def test_bad_residual_input(bad, match):
    with pytest.raises(ValueError, match=match):
        residual_dependence(bad)


def test_bad_excess_and_names():
    r = np.random.default_rng(4).normal(size=(10, 3))
    with pytest.raises(ValueError, match="excess"):
        residual_dependence(r, excess=-1)
    with pytest.raises(ValueError, match="2 feature names for 3"):
        residual_dependence(r, ["a", "b"])


def test_pearson_residuals_for_counts():
    x = np.array([[4.0, 0.0]])
    mu = np.array([[1.0, 0.25]])
    np.testing.assert_allclose(pearson_residuals("poisson", x, mu), [[3.0, -0.5]])
    np.testing.assert_allclose(pearson_residuals("bernoulli", np.array([[1.0]]), np.array([[0.2]])),
                               [[0.8 / 0.4]])
    np.testing.assert_allclose(pearson_residuals("normal", x, mu), x - mu)


@pytest.fixture(scope="module")
def two_blocks():
    # two independent factors, four linear anchors each, noise sd 0.3
    rng = np.random.default_rng(5)
    z = rng.normal(size=(600, 2))
    W = np.zeros((8, 2))
    W[:4, 0], W[4:, 1] = 1.0, 1.0
    return z @ W.T + 0.3 * rng.normal(size=(600, 8))


def test_a_fit_with_too_few_factors_is_flagged_on_the_missed_block(two_blocks):
    m = ps.SparseVAE(n_factors=1, hidden_dim=16).fit(two_blocks, epochs=40, batch_size=100,
                                                      seed=0, progress=False)
    rc = residual_check(m, two_blocks)
    assert rc.flagged
    listed = {int(n.split("_")[1]) for n, _ in rc.features}
    block = set(range(4)) if (m.inclusion_probs_[4:] >= 0.5).any() else set(range(4, 8))
    assert listed and listed <= block  # the check points at the features left unexplained
    report = ps.diagnostics.anchor_report(m, X=two_blocks, num_samples=50)
    assert report.residual is not None and report.residual.flagged
    assert "RESIDUALS SHARE VARIATION" in str(report)
    assert report.to_dict()["residual"]["flagged"] is True
    sub = residual_check(m, two_blocks, max_rows=2000)  # fewer rows than that: all used
    assert sub.n_rows == 600 and sub.eigenvalue == pytest.approx(rc.eigenvalue)
    import pandas as pd

    named = pd.DataFrame(two_blocks, columns=[f"g{i}" for i in range(8)])
    m2 = ps.SparseVAE(n_factors=1, hidden_dim=8).fit(named.iloc[:200], epochs=2, seed=0,
                                                      progress=False)
    few = residual_check(m2, named, max_rows=100, seed=1)
    assert few.n_rows == 100 and all(n.startswith("g") for n, _ in few.features + [
        (p[0], 0) for p in few.pairs])


def test_without_data_the_report_has_no_residual_check(two_blocks):
    m = ps.SparseVAE(n_factors=1, hidden_dim=8).fit(two_blocks[:200], epochs=2, seed=0,
                                                     progress=False)
    assert ps.diagnostics.anchor_report(m, num_samples=20).residual is None
    with pytest.raises(ValueError, match="features"):
        residual_check(m, two_blocks[:, :5])
