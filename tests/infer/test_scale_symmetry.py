"""The scale symmetry between factors and loadings (pyro_sparse.infer.scale_symmetry)."""

import math

import numpy as np
import pyro
import pytest
import torch

import pyro_sparse as ps
from pyro_sparse.guides import make_guide
from pyro_sparse.infer import (
    factor_moments,
    fit_svi,
    optimal_log_scales,
    rescale_factors,
    scale_objective,
)
from pyro_sparse.models import SparseVAEModel


def test_optimum_without_loadings_is_closed_form():
    # W = 0: J(t) = -S e^{2t} / 2 + (N - m) t, so t* = log((N - m) / S) / 2 and
    # J''(t*) = -2 (N - m)
    S = torch.tensor([50.0, 200.0, 100.0])
    W = torch.zeros(1, 4, 3)
    for w_entropy, m in ((False, 0), (True, 4)):
        t, sd = optimal_log_scales(S, 100, W, torch.full((3,), 0.3), 10.0, 1.0, w_entropy)
        np.testing.assert_allclose(t, 0.5 * np.log((100 - m) / S.numpy()), atol=1e-8)
        np.testing.assert_allclose(sd, 1 / math.sqrt(2 * (100 - m)), rtol=1e-6)


def test_optimum_with_loadings_is_a_stationary_maximum():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(8, 6, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.1, 1.0])
    S = torch.tensor([400.0, 900.0, 1600.0], dtype=torch.float64)
    eta = torch.tensor([0.2, 0.5, 0.4], dtype=torch.float64)
    t, sd = optimal_log_scales(S, 1000, W, eta, 10.0, 1.0, w_entropy=True)

    def J(tt):
        return scale_objective(tt, S, 1000, W, eta, 10.0, 1.0, w_entropy=True)

    h = 1e-5
    grad = (J(t + h) - J(t - h)) / (2 * h)
    np.testing.assert_allclose(grad, 0.0, atol=1e-4)
    for d in (-0.05, 0.05):
        assert (J(t + d) < J(t)).all()
    curv = (J(t + 1e-3) - 2 * J(t) + J(t - 1e-3)) / 1e-6
    np.testing.assert_allclose(sd, (-curv).rsqrt(), rtol=1e-3)


def test_optimal_log_scales_rejects_an_empty_factor():
    with pytest.raises(ValueError, match="S_k > 0"):
        optimal_log_scales(torch.tensor([1.0, 0.0]), 10, torch.zeros(1, 2, 2),
                           torch.full((2,), 0.5), 10.0, 1.0, False)


def _fitted(w_guide, factor_correlation=False, epochs=3):
    data = ps.datasets.paper_synthetic(n=200, rho=0.0, seed=3)
    x = torch.as_tensor(data.X, dtype=torch.float32)
    with pyro.settings.context(module_local_params=True):
        pyro.set_rng_seed(0)
        model = SparseVAEModel(7, 2, hidden_dim=8, factor_correlation=factor_correlation)
        guide = make_guide(model, w_guide)
        fit_svi(model, guide, x, epochs=epochs, batch_size=50, seed=0)
    return model, guide, x


@pytest.mark.parametrize("w_guide", ["map", "meanfield", "lowrank", "spikeslab",
                                     "spikeslab_lowrank"])
def test_rescale_keeps_the_decoder_output_and_reaches_the_optimum(w_guide):
    model, guide, x = _fitted(w_guide)
    gg = guide.globals_guide
    with torch.no_grad():
        mu0 = guide.local_guide.encode(x)[0]
        out0 = model.decoder(mu0, gg._W_point())
        W0 = gg._W_point().clone()
    res = rescale_factors(model, guide, x)
    c = torch.as_tensor(res["scale"], dtype=torch.float32)
    with torch.no_grad():
        mu1 = guide.local_guide.encode(x)[0]
        out1 = model.decoder(mu1, gg._W_point())
    torch.testing.assert_close(out1, out0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mu1, mu0 * c, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gg._W_point(), W0 / c, rtol=1e-5, atol=1e-7)
    # a second step finds nothing left to gain along the symmetry
    again = rescale_factors(model, guide, x)
    np.testing.assert_allclose(again["scale"], 1.0, atol=2e-3)
    if w_guide == "map":
        assert not hasattr(gg, "log_scale_sd_k")
    else:
        # about 1 / sqrt(2 (N - G)) with N = 200 rows: the spread of a factor's scale
        np.testing.assert_allclose(gg.log_scale_sd_k, 1 / math.sqrt(2 * 193), rtol=0.2)


def test_draws_carry_the_symmetry_spread_and_marginal_sd_matches_them():
    _, guide, x = _fitted("meanfield")
    gg = guide.globals_guide
    narrow = gg.sample_W(4000, generator=torch.Generator().manual_seed(0)).std(0)
    gg.log_scale_sd_k.fill_(0.2)
    d = gg.sample_W(20000, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(d.std(0), gg.marginal_sd(), rtol=0.05)
    assert (d.std(0) > narrow).all()
    plain = gg.sample_W(4000, symmetry_spread=False).std(0)
    np.testing.assert_allclose(plain, gg.W_scale_gk.detach(), rtol=0.1)


def test_rescale_refuses_models_it_does_not_cover():
    model, guide, x = _fitted("meanfield", factor_correlation=True, epochs=1)
    with pytest.raises(ValueError, match="factor_correlation"):
        rescale_factors(model, guide, x)
    vae = ps.VAE(n_factors=2, hidden_dim=8).fit(x.numpy(), epochs=1, progress=False)
    with pytest.raises(ValueError, match="loadings W"):
        rescale_factors(vae.model_, vae.guide_, x)


def test_factor_moments_sum_second_moments_over_all_rows():
    _, guide, x = _fitted("map", epochs=1)
    S, n = factor_moments(guide.local_guide, x, batch_size=7)
    loc, scale = guide.local_guide.encode(x)
    assert n == 200
    torch.testing.assert_close(S.float(), (loc**2 + scale**2).sum(0).detach(), rtol=1e-5,
                               atol=1e-4)


def test_estimator_applies_the_step_to_variational_guides_only(tmp_path):
    data = ps.datasets.paper_synthetic(n=200, rho=0.0, seed=3)
    m = ps.SparseVAE(n_factors=2, hidden_dim=8, w_guide="meanfield").fit(
        data.X, epochs=3, progress=False)
    sd = np.asarray(m.fit_info_["factor_log_scale_sd"])
    assert sd.shape == (2,) and (sd > 0).all()
    assert len(m.fit_info_["factor_scale_step"]) == 2
    m2 = ps.SparseVAE.load(m.save(tmp_path / "mf"))
    np.testing.assert_array_equal(m2.guide_.globals_guide.log_scale_sd_k.numpy(), sd.astype(
        np.float32))
    np.testing.assert_allclose(m2.loadings_sd_, m.loadings_sd_)
    mp = ps.SparseVAE(n_factors=2, hidden_dim=8).fit(data.X, epochs=1, progress=False)
    assert "factor_log_scale_sd" not in mp.fit_info_


def test_folders_written_before_the_step_still_load(tmp_path):
    from safetensors.torch import load_file, save_file

    data = ps.datasets.paper_synthetic(n=200, rho=0.0, seed=3)
    m = ps.SparseVAE(n_factors=2, hidden_dim=8, w_guide="meanfield").fit(
        data.X, epochs=1, progress=False)
    path = m.save(tmp_path / "old")
    weights = load_file(str(path / "weights.safetensors"))
    del weights["guide.globals_guide.log_scale_sd_k"]
    save_file(weights, str(path / "weights.safetensors"))
    old = ps.SparseVAE.load(path)
    assert (old.guide_.globals_guide.log_scale_sd_k == 0).all()
    np.testing.assert_allclose(old.loadings_, m.loadings_)
