import warnings

import arviz_plots as azp
import arviz_stats as azs
import numpy as np
import pandas as pd
import pytest

import pyro_sparse as ps
from pyro_sparse.diagnostics import to_arviz


@pytest.fixture(scope="module")
def data():
    return ps.datasets.paper_synthetic(n=300, seed=0)


@pytest.fixture(scope="module")
def mf(data):
    X = pd.DataFrame(data.X, columns=data.feature_names)
    return ps.SparseVAE(n_factors=3, hidden_dim=16, w_guide="meanfield").fit(
        X, epochs=30, progress=False)


@pytest.fixture(scope="module")
def mapfit(data):
    return ps.SparseVAE(n_factors=3, hidden_dim=16).fit(data.X, epochs=20, progress=False)


def test_groups_dims_and_coords(mf, data):
    dt = to_arviz(mf, num_samples=50, X=data.X, posterior_predictive=True,
                  log_likelihood=True, num_predictive=20)
    post = dt.posterior
    assert post["W"].dims == ("chain", "draw", "feature", "factor")
    assert post["W"].shape == (1, 50, 7, 3)
    assert list(post["feature"].values) == data.feature_names
    assert list(post["factor"].values) == ["factor_0", "factor_1", "factor_2"]
    assert post["inclusion"].dims == post["W"].dims
    assert post["eta"].dims == ("chain", "draw", "factor")
    assert post["sigma"].dims == ("chain", "draw", "feature")
    assert dt.observed_data["x"].shape == (300, 7)
    assert dt.posterior_predictive["x"].shape == (1, 20, 300, 7)
    assert dt.log_likelihood["x"].dims == ("chain", "draw", "obs_id")
    assert dt.sample_stats["loss"].shape == (1, 30)
    np.testing.assert_allclose(dt.sample_stats["loss"].values[0], mf.loss_history_)
    assert dt.attrs["posterior_kind"].startswith("variational")
    # draws spread around the guide means; p* per draw lies in [0, 1]
    np.testing.assert_allclose(post["W"].mean(("chain", "draw")).values,
                               mf.guide_.globals_guide.W_loc_gk.detach().numpy(), atol=0.2)
    assert float(post["W"].std("draw").min()) > 0
    assert 0 <= float(post["inclusion"].min()) <= float(post["inclusion"].max()) <= 1


def test_arviz_stats_and_plots_work_unchanged(mf, data, tmp_path):
    dt = to_arviz(mf, num_samples=100, X=data.X, posterior_predictive=True,
                  log_likelihood=True, num_predictive=40)
    s = azs.summary(dt, var_names=["W"])
    assert len(s) == 21 and "ess_bulk" in s.columns
    assert azs.hdi(dt, var_names=["W"])["W"].shape[-1] == 2
    assert azs.ess(dt, var_names=["W"])["W"].shape == (7, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = azs.loo(dt)
        assert np.isfinite(loo.elpd) and loo.n_data_points == 300
        other = to_arviz(mf, num_samples=100, X=data.X, log_likelihood=True,
                         num_predictive=40, seed=1)
        cmp = azs.compare({"a": dt, "b": other})
    assert set(cmp.index) == {"a", "b"}
    pc = azp.plot_forest(dt, var_names=["W"])
    pc.savefig(tmp_path / "forest.png")
    pc = azp.plot_ppc_dist(dt)
    pc.savefig(tmp_path / "ppc.png")


def test_map_is_marked_point_mass_and_loo_warns(mapfit, data):
    dt = to_arviz(mapfit, num_samples=10)
    assert dt.attrs["posterior_kind"] == "point mass"
    assert "point mass" in dt.attrs["posterior_note"]
    W = dt.posterior["W"].values
    np.testing.assert_array_equal(W[0, 0], W[0, -1])
    np.testing.assert_allclose(W[0, 0], mapfit.loadings_)
    with pytest.warns(UserWarning, match="point mass"):
        to_arviz(mapfit, num_samples=10, X=data.X, log_likelihood=True)


def test_log_likelihood_is_batch_invariant_and_above_the_elbo(mf, data):
    a = mf.log_likelihood(data.X, num_samples=3, n_particles=8, batch_size=300, seed=3)
    b = mf.log_likelihood(data.X, num_samples=3, n_particles=8, batch_size=7, seed=3)
    assert a.shape == (3, 300)
    # different batching draws different particles; the per-row estimates agree closely
    assert abs(a.mean() - b.mean()) < 0.05
    # the importance-sampled log-likelihood is a tighter bound than the ELBO (per row)
    ll = mf.log_likelihood(data.X, num_samples=1, n_particles=64)[0]
    assert ll.mean() > mf.score(data.X)


def test_posterior_predictive_matches_the_data_scale(mf, data):
    pp = mf.sample_posterior_predictive(data.X, num_samples=20)
    assert pp.shape == (20, 300, 7)
    np.testing.assert_allclose(pp.std((0, 1)), data.X.std(0), rtol=0.35)
    again = mf.sample_posterior_predictive(data.X, num_samples=20)
    np.testing.assert_array_equal(pp, again)  # seeded


def test_vae_and_categorical(data):
    v = ps.VAE(n_factors=2, hidden_dim=8).fit(data.X, epochs=3, progress=False)
    dt = to_arviz(v, num_samples=5, X=data.X, factors=True)
    assert set(dt.posterior.data_vars) == {"sigma", "z"}
    assert dt.posterior["z"].shape == (1, 5, 300, 2)
    rng = np.random.default_rng(0)
    C = rng.poisson(3.0, size=(50, 6)) + 1
    c = ps.SparseVAE(n_factors=2, likelihood="categorical", hidden_dim=8).fit(
        C, epochs=3, progress=False)
    dt = to_arviz(c, num_samples=5, X=C, posterior_predictive=True, num_predictive=3)
    assert "sigma" not in dt.posterior
    # replicated count rows keep the observed totals
    np.testing.assert_array_equal(dt.posterior_predictive["x"].values.sum(-1)[0, 0],
                                  C.sum(1))


def test_bad_arguments(mf, data):
    with pytest.raises(ValueError, match="pass X"):
        to_arviz(mf, log_likelihood=True)
    with pytest.raises(ValueError, match="num_predictive"):
        to_arviz(mf, num_samples=5, num_predictive=10, X=data.X)
    with pytest.raises(ValueError, match="num_samples"):
        to_arviz(mf, num_samples=0)
    with pytest.raises(TypeError, match="fitted SparseVAE"):
        to_arviz(object())
    with pytest.raises(ValueError, match="not fitted"):
        to_arviz(ps.SparseVAE())
