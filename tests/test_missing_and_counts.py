"""Count likelihoods, missing values (NaN masking, imputation), sparse input and checkpoints."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import pyro_sparse as ps
import pyro_sparse.estimators as estimators_module

LIKS = ["normal", "bernoulli", "poisson", "negbin", "categorical"]


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 2))
    X = rng.poisson(np.exp(0.6 * z[:, [0] * 5 + [1] * 5] + 1.0)).astype(float)
    X[X.sum(1) == 0, 0] = 1
    return X


def _data_for(lik, X):
    return (X > 2).astype(float) if lik == "bernoulli" else X


@pytest.mark.parametrize("cls", [ps.SparseVAE, ps.VAE])
@pytest.mark.parametrize("lik", LIKS)
def test_every_likelihood_fits_with_missing_values(cls, lik, counts):
    rng = np.random.default_rng(1)
    X = _data_for(lik, counts).copy()
    hole = rng.random(X.shape) < 0.1
    X[hole] = np.nan
    m = cls(n_factors=2, likelihood=lik, hidden_dim=8).fit(X, epochs=3, batch_size=40,
                                                            progress=False)
    assert np.isfinite(m.loss_history_).all()
    R = m.reconstruct(X)
    assert R.shape == X.shape and np.isfinite(R).all()  # NaNs are filled
    assert np.isfinite(m.transform(X)).all()
    assert np.isfinite(m.log_likelihood(X, num_samples=2, n_particles=2)).all()
    assert np.isfinite(m.sample_posterior_predictive(X[:10], num_samples=2)).all()
    assert (m.dispersion_ is not None) == (lik == "negbin")
    if lik in ("poisson", "negbin", "categorical"):
        # the means keep each row's observed total on the observed entries
        obs = ~np.isnan(X)
        np.testing.assert_allclose((R * obs).sum(1), np.nansum(X, 1), rtol=1e-4)


@pytest.mark.parametrize("lik", ["normal", "poisson", "negbin", "bernoulli", "categorical"])
def test_masked_loglik_equals_loglik_of_observed_columns(lik):
    # a masked entry contributes nothing: the row log-density equals the one computed on the
    # observed columns alone (for the softmax likelihoods, renormalised over those columns)
    torch.manual_seed(0)
    out = torch.randn(4, 5, dtype=torch.float64)
    x = torch.poisson(torch.full((4, 5), 3.0, dtype=torch.float64))
    if lik == "bernoulli":
        x = (x > 2).double()
    sigma = torch.full((5,), 0.7, dtype=torch.float64)
    theta = torch.full((5,), 2.5, dtype=torch.float64)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[:, 3] = False
    xn = x.clone()
    xn[:, 3] = float("nan")
    x0, m = ps.likelihoods.split_missing(xn)
    full = ps.likelihoods.observation_dist(lik, out, x0, sigma, theta, m).log_prob(x0)
    keep = [0, 1, 2, 4]
    ref = ps.likelihoods.observation_dist(lik, out[:, keep], x[:, keep], sigma[keep],
                                          theta[keep]).log_prob(x[:, keep])
    torch.testing.assert_close(full, ref)


def test_count_likelihood_densities_match_torch():
    torch.manual_seed(1)
    out = torch.randn(3, 4, dtype=torch.float64)
    x = torch.tensor([[0.0, 2, 5, 1], [3, 0, 0, 1], [1, 1, 1, 1]], dtype=torch.float64)
    L = ps.likelihoods
    mu = x.sum(-1, keepdim=True) * torch.softmax(out, -1)
    torch.testing.assert_close(L.observation_dist("poisson", out, x).log_prob(x),
                               torch.distributions.Poisson(mu).log_prob(x).sum(-1))
    theta = torch.tensor([0.5, 1.0, 4.0, 20.0], dtype=torch.float64)
    nb = torch.distributions.NegativeBinomial(theta, probs=mu / (mu + theta))
    torch.testing.assert_close(L.observation_dist("negbin", out, x, theta_g=theta).log_prob(x),
                               nb.log_prob(x).sum(-1))
    mu_off = x.sum(-1, keepdim=True) * out.exp()
    torch.testing.assert_close(
        L.observation_dist("poisson", out, x, library="offset").log_prob(x),
        torch.distributions.Poisson(mu_off).log_prob(x).sum(-1))
    torch.testing.assert_close(L.observation_dist("bernoulli", out, (x > 0).double())
                               .log_prob((x > 0).double()),
                               torch.distributions.Bernoulli(logits=out)
                               .log_prob((x > 0).double()).sum(-1))


def test_gradients_stay_finite_with_missing_entries():
    out = torch.randn(3, 4, requires_grad=True)
    x = torch.tensor([[1.0, float("nan"), 2, 0], [0, 3, float("nan"), 1], [2, 2, 2, 2]])
    x0, m = ps.likelihoods.split_missing(x)
    for lik in LIKS:
        out.grad = None
        xl = (x0 > 1).float() if lik == "bernoulli" else x0
        ps.likelihoods.observation_dist(lik, out, xl, torch.ones(4), torch.ones(4), m) \
            .log_prob(xl).sum().backward()
        assert torch.isfinite(out.grad).all(), lik


@pytest.mark.parametrize("lik", ["poisson", "negbin", "categorical"])
@pytest.mark.parametrize("bad,match", [(-1.0, "negative value -1.0"),
                                       (2.5, "non-integer value 2.5")])
def test_count_checks_name_row_and_column(lik, bad, match):
    X = np.ones((6, 3))
    X[4, 1] = bad
    with pytest.raises(ValueError, match=f"counts for likelihood '{lik}': {match} at row 4, "
                                         "column 1 \\('b'\\)"):
        ps.likelihoods.check_data(X, lik, ["a", "b", "c"])
    with pytest.raises(ValueError, match=f"{match} at row 4, column 1"):
        ps.likelihoods.check_data(sp.csr_matrix(X), lik)  # the same message for sparse data


def test_bernoulli_and_missing_checks():
    X = np.zeros((4, 3))
    X[2, 2] = 0.3
    with pytest.raises(ValueError, match="0/1 values for likelihood 'bernoulli': value 0.3 at "
                                         "row 2, column 2"):
        ps.likelihoods.check_data(X, "bernoulli")
    X = np.ones((4, 3))
    X[1] = np.nan
    with pytest.raises(ValueError, match="row 1 has no observed value"):
        ps.likelihoods.check_data(X, "normal")
    X = np.ones((4, 3))
    X[:, 2] = np.nan
    with pytest.raises(ValueError, match="column 2 \\('c'\\) has no observed value"):
        ps.likelihoods.check_data(X, "normal", ["a", "b", "c"])
    X = np.ones((4, 3))
    X[3] = [0, np.nan, 0]
    with pytest.raises(ValueError, match="all-zero counts \\(row 3\\)"):
        ps.likelihoods.check_data(X, "poisson")
    ps.likelihoods.check_data(np.array([[1.0, np.nan], [0.0, 2.0]]), "negbin")  # NaN is fine


def test_encoder_imputes_training_column_means(counts):
    m = ps.SparseVAE(n_factors=2, hidden_dim=8).fit(counts, epochs=2, progress=False)
    np.testing.assert_allclose(m.guide_.local_guide.fill_g.numpy(), counts.mean(0), rtol=1e-6)
    x = counts[:5].copy()
    x[:, 2] = np.nan
    filled = x.copy()
    filled[:, 2] = counts[:, 2].mean()
    np.testing.assert_allclose(m.transform(x), m.transform(filled), rtol=1e-5, atol=1e-6)


def test_reconstruct_fills_missing_close_to_truth():
    # on strongly structured data the Sparse VAE's fill beats the column mean
    rng = np.random.default_rng(2)
    z = rng.normal(size=(400, 2))
    X = np.concatenate([z[:, [0]] * [1, 1.2, 0.8], z[:, [1]] * [1, 0.9, 1.1]], 1)
    X = X + 0.1 * rng.normal(size=X.shape)
    hole = rng.random(X.shape) < 0.1
    Xh = np.where(hole, np.nan, X)
    m = ps.SparseVAE(n_factors=2, hidden_dim=16).fit(Xh, epochs=60, progress=False)
    err = np.mean((m.reconstruct(Xh)[hole] - X[hole]) ** 2)
    base = np.mean((np.nanmean(Xh, 0)[np.nonzero(hole)[1]] - X[hole]) ** 2)
    assert err < 0.5 * base


def test_sparse_input_gives_the_same_fit_as_dense(counts):
    kw = dict(epochs=3, batch_size=40, progress=False)
    a = ps.SparseVAE(n_factors=2, likelihood="negbin", hidden_dim=8).fit(counts, **kw)
    b = ps.SparseVAE(n_factors=2, likelihood="negbin", hidden_dim=8).fit(
        sp.csr_matrix(counts), **kw)
    np.testing.assert_array_equal(a.loadings_, b.loadings_)
    np.testing.assert_array_equal(a.transform(counts), b.transform(sp.csc_matrix(counts)))


def test_save_load_keeps_dispersion_and_fill(counts, tmp_path):
    X = counts.copy()
    X[0, 0] = np.nan
    m = ps.SparseVAE(n_factors=2, likelihood="negbin", hidden_dim=8).fit(X, epochs=2,
                                                                          progress=False)
    m.save(tmp_path / "m")
    m2 = ps.SparseVAE.load(tmp_path / "m")
    np.testing.assert_array_equal(m.dispersion_, m2.dispersion_)
    np.testing.assert_array_equal(m.reconstruct(X), m2.reconstruct(X))


def test_warnings_for_constant_columns_and_oversized_settings():
    X = np.random.default_rng(0).normal(size=(20, 3))
    X[:, 1] = 4.0
    with pytest.warns(UserWarning) as rec:
        ps.SparseVAE(n_factors=5, hidden_dim=4).fit(X, epochs=1, batch_size=50, progress=False)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "constant column" in msgs and "larger than the number of features" in msgs
    assert "batch_size=50 is larger than the number of rows (20)" in msgs


# ------------------------------------------------------------------ checkpoints
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, monkeypatch):
    X = np.random.default_rng(3).normal(size=(90, 6))
    kw = dict(epochs=6, batch_size=32, progress=False)

    def make():
        return ps.SparseVAE(n_factors=2, hidden_dim=8, spike_anneal=0.5)

    full = make().fit(X, **kw)
    ck = tmp_path / "ck.safetensors"
    real = estimators_module.write_checkpoint

    def write_then_crash(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt  # the process dies right after the first checkpoint

    monkeypatch.setattr(estimators_module, "write_checkpoint", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        make().fit(X, checkpoint=ck, checkpoint_every=2, **kw)
    monkeypatch.setattr(estimators_module, "write_checkpoint", real)
    resumed = make().fit(X, checkpoint=ck, resume=True, **kw)
    np.testing.assert_array_equal(full.loss_history_, resumed.loss_history_)
    np.testing.assert_array_equal(full.loadings_, resumed.loadings_)
    np.testing.assert_array_equal(full.transform(X), resumed.transform(X))
    with pytest.raises(ValueError, match="belongs to another run"):
        make().fit(X[:50], checkpoint=ck, resume=True, **kw)
    with pytest.raises(ValueError, match="no checkpoint at"):
        make().fit(X, checkpoint=tmp_path / "none", resume=True, **kw)


def test_diagnostics_accept_sparse_and_missing_data(counts):
    X = counts.copy()
    X[1, 1] = np.nan
    m = ps.SparseVAE(n_factors=2, likelihood="poisson", hidden_dim=8).fit(X, epochs=2,
                                                                           progress=False)
    dt = ps.diagnostics.to_arviz(m, num_samples=2, X=sp.csr_matrix(counts),
                                 log_likelihood=True, posterior_predictive=True)
    assert dt["observed_data"]["x"].shape == counts.shape
    assert np.isfinite(dt["log_likelihood"]["x"].values).all()
