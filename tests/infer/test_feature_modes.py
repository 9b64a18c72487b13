"""Multi-start search of each feature's loadings (pyro_sparse.infer.search_feature_modes)."""

import math

import numpy as np
import pyro
import pytest
import torch

from pyro_sparse.distributions import ssl_log_prob
from pyro_sparse.guides import ModelGuide, PerRowNormalGuide, make_guide
from pyro_sparse.infer import (
    factorises_over_features,
    feature_log_posterior,
    search_feature_modes,
)
from pyro_sparse.models import SparseVAEModel

from ._blocks import decoded


def _simulated(seed=0, N=500, G=10, K=2, H=8):
    # data from the model with a known decoder; every feature has a clear signal
    g = torch.Generator().manual_seed(seed)
    W = 0.02 * torch.randn(G, K, generator=g)
    W[:5, 0] = torch.tensor([1.5, -1.0, 0.8, 1.2, -1.3])
    W[5:, 1] = torch.tensor([-1.2, 1.0, 1.4, -0.9, 1.1])
    x, z, dec = decoded(W, g, seed, N, H)
    return x, z, W, dec


def _guide_at(x, z, W, dec_state, w_guide="meanfield"):
    # decoder at the truth, q(z_n) at the true factors, W's reported loadings at W
    G, K = W.shape
    pyro.set_rng_seed(0)
    model = SparseVAEModel(G, K, hidden_dim=8, b=float(K))
    model.decoder.load_state_dict(dec_state)
    model.decoder.requires_grad_(False)
    gg = make_guide(model, w_guide).globals_guide
    gg.init_sigma(torch.full((G,), 0.2))
    gg.set_columns(range(K), W)
    return model, ModelGuide(gg, PerRowNormalGuide(z, torch.full_like(z, 0.05)))


def _planted(w_guide):
    # a poor local mode given the factors: feature 6 starts with its loadings' signs
    # reversed (the network's response to -z is not its response to z; gradient ascent from
    # there stays there). Call inside module_local_params
    x, z, W, dec = _simulated()
    start = W.clone()
    start[6] = -W[6]
    model, guide = _guide_at(x, z, start, dec, w_guide)
    return x, W, model, guide


def test_factorises_over_features():
    assert factorises_over_features("normal") and factorises_over_features("bernoulli")
    assert factorises_over_features("poisson", "offset")
    assert factorises_over_features("negbin", "offset")
    assert not factorises_over_features("poisson", "composition")
    assert not factorises_over_features("categorical")


def test_feature_log_posterior_by_hand():
    x, z, W, dec = _simulated()
    model, guide = _guide_at(x, z, W, dec)
    sigma = torch.full((W.shape[0],), 0.3)
    eta = torch.tensor([0.4, 0.6])
    W2 = W.flip(1)
    got = feature_log_posterior(model, z, torch.stack([W, W2]), x, None, sigma, eta)
    for m, Wm in enumerate((W, W2)):
        with torch.no_grad():
            ll = torch.distributions.Normal(model.decoder(z, Wm), sigma).log_prob(x).sum(0)
        want = ll + ssl_log_prob(Wm, eta, model.lambda0, model.lambda1).sum(-1)
        torch.testing.assert_close(got[m].detach(), want, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("w_guide", ["map", "meanfield", "spikeslab"])
def test_moves_features_out_of_a_wrong_mode(w_guide):
    # feature 6 planted in a poor mode: the search must put it back near the truth and leave
    # the others exactly as they were
    with pyro.settings.context(module_local_params=True):
        x, W, model, guide = _planted(w_guide)
        gg = guide.globals_guide
        before = gg._W_point().detach().clone()
        out = search_feature_modes(model, guide, x, n_starts=16, steps=300, seed=0)
    after = gg._W_point().detach()
    assert out["moved"].tolist() == [6]
    assert out["gain_g"][6] > 50
    assert (np.delete(out["gain_g"], 6) <= 1.0).all()
    others = [g for g in range(W.shape[0]) if g != 6]
    torch.testing.assert_close(after[others], before[others], rtol=0, atol=1e-5)
    # the moved rows are back near the truth
    assert (after[6] - W[6]).abs().max() < 0.15
    assert out["rows_used"] == x.shape[0]
    # the decoder is still frozen and unchanged
    assert not any(p.requires_grad for p in model.decoder.parameters())


def _nan_row_6(out):
    out = out.clone()
    out[6] = math.nan
    return out


@pytest.mark.parametrize("spoil", [_nan_row_6, lambda out: out + 5.0],
                         ids=["parameters not finite", "point not the mode"])
def test_a_mode_the_guide_cannot_represent_is_not_written(monkeypatch, spoil):
    # if the W guide's parameters for a better mode are not finite, or its point at them is
    # not the mode found (its inverse map gone wrong), the feature stays put
    with pyro.settings.context(module_local_params=True):
        x, W, model, guide = _planted("spikeslab")
        gg = guide.globals_guide
        before = gg._W_param().detach().clone()
        real = gg._param_for_mean
        monkeypatch.setattr(gg, "_param_for_mean", lambda W_gc, cols: spoil(real(W_gc, cols)))
        out = search_feature_modes(model, guide, x, n_starts=16, steps=300, seed=0)
    assert out["moved"].tolist() == [] and out["rejected"].tolist() == [6]
    torch.testing.assert_close(gg._W_param().detach(), before, rtol=0, atol=0)


def test_a_blown_up_tilt_sd_is_searched_without_nan():
    # what ended a calibration run (seed 45): one spike-and-slab entry's tilt sd had drifted
    # to exp(17); the feature's current point was then garbage and the search wrote a mode
    # whose point was NaN. With the tilt capped the feature is searched like any other
    with pyro.settings.context(module_local_params=True):
        x, W, model, guide = _planted("spikeslab")
        gg = guide.globals_guide
        with torch.no_grad():
            gg.W_logsd_gk[6, 0] = 17.0
        out = search_feature_modes(model, guide, x, n_starts=16, steps=300, seed=0)
    assert out["moved"].tolist() == [6] and out["rejected"].tolist() == []
    assert torch.isfinite(gg._W_point()).all()
    assert (gg._W_point()[6] - W[6]).abs().max() < 0.15


def test_a_fit_at_the_truth_does_not_move():
    x, z, W, dec = _simulated(seed=1)
    with pyro.settings.context(module_local_params=True):
        model, guide = _guide_at(x, z, W, dec)
        out = search_feature_modes(model, guide, x, n_starts=8, steps=150, max_rows=300, seed=3)
    assert len(out["moved"]) == 0 and out["rows_used"] == 300


def test_refusals():
    x, z, W, dec = _simulated()
    model, guide = _guide_at(x, z, W, dec)
    for kwargs, msg in (({"n_starts": 0}, "n_starts"), ({"steps": 1.5}, "steps"),
                        ({"lr": 0.0}, "lr"), ({"lr": math.nan}, "lr"),
                        ({"min_gain": -1.0}, "min_gain"), ({"max_rows": 0}, "max_rows")):
        with pytest.raises(ValueError, match=msg):
            search_feature_modes(model, guide, x, **kwargs)
    cat = SparseVAEModel(10, 2, hidden_dim=8, likelihood="categorical")
    with pytest.raises(ValueError, match="factorises"):
        search_feature_modes(cat, make_guide(cat, "map"), x)
    corr = SparseVAEModel(10, 2, hidden_dim=8, factor_correlation=True)
    with pytest.raises(ValueError, match="factor_correlation"):
        search_feature_modes(corr, make_guide(corr, "map"), x)
