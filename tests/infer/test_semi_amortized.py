"""Semi-amortised refinement of W's posterior (pyro_sparse.infer.refine_posterior)."""

import numpy as np
import pyro
import pytest
import torch

import pyro_sparse as ps
from pyro_sparse.guides import make_guide
from pyro_sparse.infer import fit_svi, refine_posterior
from pyro_sparse.models import SparseVAEModel

from ._blocks import decoded


def _simulated(seed=0, N=400, G=12, K=2, H=8):
    # data from the model: two anchors per factor, a known decoder network
    g = torch.Generator().manual_seed(seed)
    W = 0.05 * torch.randn(G, K, generator=g)
    W[:4, 0] = torch.tensor([1.5, -1.0, 0.8, 1.2])
    W[4:8, 1] = torch.tensor([-1.2, 1.0, 1.4, -0.9])
    W[8:, :] = torch.randn(G - 8, K, generator=g)
    x, z, dec = decoded(W, g, seed, N, H)
    return x, z, W, dec


def _model_at_truth(x, W, dec_state, w_guide="meanfield"):
    G, K = W.shape
    pyro.set_rng_seed(1)
    model = SparseVAEModel(G, K, hidden_dim=8)
    model.decoder.load_state_dict(dec_state)
    model.decoder.requires_grad_(False)
    guide = make_guide(model, w_guide)
    guide.globals_guide.init_sigma(x.std(0))
    guide.globals_guide.set_columns(range(K), W)
    return model, guide


def test_closes_the_encoders_gap_and_keeps_the_truth():
    # decoder and W at the truth, an untrained encoder: the per-row q(z) must find the
    # factors the encoder cannot, and W's posterior must stay at the truth
    x, z, W, dec = _simulated()
    with pyro.settings.context(module_local_params=True):
        model, guide = _model_at_truth(x, W, dec)
        enc_before = {k: v.clone() for k, v in guide.local_guide.state_dict().items()}
        out = refine_posterior(model, guide, x, epochs=200, batch_size=100, lr=0.05, seed=0)
    assert out["loss_after"] < out["loss_before"] - 1000
    assert out["loss_after"] < out["history"][0]
    corr = np.corrcoef(out["loc_nk"].numpy().T, z.numpy().T)[:2, 2:]
    assert np.diag(corr).min() > 0.95  # no sign or order change: W started at the truth
    W_fit = guide.globals_guide.W_loc_gk.detach()
    ratio = (W_fit * W).sum(0) / (W * W).sum(0)
    assert torch.allclose(ratio, torch.ones(2), atol=0.05), ratio
    assert (W_fit - W).abs().max() < 0.1
    # the decoder is untouched and still frozen; the encoder only rescaled, and trainable
    for name, p in model.decoder.named_parameters():
        assert not p.requires_grad
        torch.testing.assert_close(p.detach(), dec[name])
    enc = guide.local_guide
    assert all(p.requires_grad for p in enc.parameters())
    c = torch.as_tensor(out["encoder_scale"], dtype=torch.float32)
    torch.testing.assert_close(enc.encoder.loc_head.weight.detach(),
                               enc_before["encoder.loc_head.weight"] * c[:, None])
    rescaled = {"encoder.loc_head.weight", "encoder.loc_head.bias", "encoder.logvar_head.bias"}
    for name, v in enc.state_dict().items():
        if name not in rescaled:
            torch.testing.assert_close(v, enc_before[name])
    S_rows = (out["loc_nk"].double() ** 2 + out["scale_nk"].double() ** 2).sum(0)
    S_enc, _ = enc.second_moments(x)
    torch.testing.assert_close(S_enc, S_rows, rtol=1e-4, atol=0)


def test_the_scale_step_after_it_is_at_the_optimum():
    x, z, W, dec = _simulated(seed=1)
    with pyro.settings.context(module_local_params=True):
        model, guide = _model_at_truth(x, W, dec, "spikeslab")
        out = refine_posterior(model, guide, x, epochs=20, batch_size=100, seed=0)
        # the last step moved the factors to the ELBO's optimum along the symmetry: the
        # per-row q(z)'s second moments are where the scale objective is stationary
    assert np.all(np.isfinite(out["log_scale_sd"])) and np.all(out["log_scale_sd"] > 0)
    np.testing.assert_allclose(guide.globals_guide.log_scale_sd_k.numpy(), out["log_scale_sd"],
                               rtol=1e-6)
    assert len(out["history"]) == 20


def test_refuses_what_it_cannot_refine():
    x, z, W, dec = _simulated(N=50)
    with pyro.settings.context(module_local_params=True):
        model, guide = _model_at_truth(x, W, dec, "map")
        with pytest.raises(ValueError, match="map guide has none"):
            refine_posterior(model, guide, x, epochs=1)
        model = SparseVAEModel(12, 2, hidden_dim=8, factor_correlation=True)
        with pytest.raises(ValueError, match="factor_correlation"):
            refine_posterior(model, make_guide(model, "meanfield"), x, epochs=1)
        vae = ps.models.VAEModel(12, 2, hidden_dim=8)
        with pytest.raises(ValueError, match="loadings W"):
            refine_posterior(vae, make_guide(vae, "meanfield"), x, epochs=1)


def test_an_amortised_fit_gains_from_it():
    # as SparseVAE(refine_posterior_epochs=) runs it: after an ordinary fit
    x, z, W, dec = _simulated(seed=2)
    with pyro.settings.context(module_local_params=True):
        model, guide = _model_at_truth(x, W, dec)
        fit_svi(model, guide, x, epochs=40, batch_size=100, seed=0, lr_decay=0.25)
        out = refine_posterior(model, guide, x, epochs=40, batch_size=100, seed=0)
    assert out["loss_after"] < out["loss_before"]
