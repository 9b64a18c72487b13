"""The decoder's output layer started at the data's spread (infer.match_output_scale) and
the estimators' ``output_scale`` argument."""

import numpy as np
import pytest
import torch

import pyro_sparse as ps
from pyro_sparse.infer import match_output_scale
from pyro_sparse.nn import DenseDecoder, SparseDecoder


def _draws(seed, K, n=1024):
    return torch.randn(n, K, generator=torch.Generator().manual_seed(seed))


def test_sparse_decoder_output_matches_the_target_spread_and_mean():
    torch.manual_seed(0)
    G, K = 6, 3
    dec = SparseDecoder(G, K, 8)
    W_gk = torch.randn(G, K)
    W_gk[5] = 0.0  # feature 5 ignores every factor: its output cannot vary
    mean_g = np.array([0.0, 1.0, -2.0, 5.0, 0.5, 3.0])
    sd_g = np.array([1.0, 2.0, 0.5, 3.0, 1.0, 1.0])
    before = dec(_draws(7, K), W_gk).std(0).detach()
    info = match_output_scale(lambda z: dec(z, W_gk), *dec.output_heads(), K, mean_g, sd_g,
                              scale=0.5, seed=7)
    out = dec(_draws(7, K), W_gk)  # the draws the function measured on
    np.testing.assert_allclose(out.std(0)[:5].detach().numpy(), 0.5 * sd_g[:5], rtol=1e-4)
    np.testing.assert_allclose(out.mean(0).detach().numpy(), mean_g, atol=1e-4)
    assert out.std(0)[5] < 1e-6  # only re-centred
    assert info["n_rescaled"] == 5
    ratio = before / torch.tensor(sd_g, dtype=torch.float32)
    assert info["median_sd_ratio"] == pytest.approx(float(ratio.median()), rel=1e-5)
    # W = 0 still means "ignores the factor": only the output layer moved
    W2 = W_gk.clone()
    W2[:, 1] = 0.0
    z = _draws(3, K)
    z_b = z.clone()
    z_b[:, 1] += 1.0
    torch.testing.assert_close(dec(z, W2), dec(z_b, W2))
    # a fresh draw of z: the spread is matched in distribution, not just on the draws used
    np.testing.assert_allclose(dec(_draws(11, K, 20000), W_gk).std(0)[:5].detach().numpy(),
                               0.5 * sd_g[:5], rtol=0.1)


def test_dense_decoder_heads_and_bad_arguments():
    torch.manual_seed(1)
    dec = DenseDecoder(4, 2, 8)
    weight, bias = dec.output_heads()
    assert weight.shape == (4, 8) and bias.shape == (4,)
    match_output_scale(dec, weight, bias, 2, np.zeros(4), np.ones(4))
    np.testing.assert_allclose(dec(_draws(0, 2)).std(0).detach().numpy(), 1.0, rtol=1e-4)
    for scale in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="scale"):
            match_output_scale(dec, weight, bias, 2, np.zeros(4), np.ones(4), scale=scale)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        match_output_scale(dec, weight, bias, 2, np.zeros(3), np.ones(4))


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    return (np.tanh(z @ rng.standard_normal((2, 5))) * 3 + 10
            + 0.1 * rng.standard_normal((n, 5))).astype(np.float32)


@pytest.mark.parametrize("cls", [ps.SparseVAE, ps.VAE])
def test_estimators_record_the_output_start(cls, tmp_path):
    X = _data()
    # in the data's units (the data sit 5 sds from 0: the default would standardise)
    kw = dict(n_factors=2, hidden_dim=8, standardize=False)
    with pytest.warns(UserWarning, match="sds from 0"):
        m = cls(output_scale=1.0, **kw).fit(X, epochs=1, batch_size=50, progress=False)
    rec = m.fit_info_["init"]["output_scale"]
    assert rec["n_rescaled"] == 5 and rec["median_sd_ratio"] < 0.5  # torch's init is small
    m.save(tmp_path / "m")
    assert type(m).load(tmp_path / "m").output_scale == 1.0
    with pytest.warns(UserWarning, match="sds from 0"):
        off = cls(output_scale=None, **kw).fit(X, epochs=1, batch_size=50, progress=False)
    assert "output_scale" not in (off.fit_info_.get("init") or {})
    # the first epoch starts from the data's level: its loss is far below the unscaled start's
    assert m.loss_history_[0] < off.loss_history_[0]


def test_output_scale_is_checked_and_ignored_for_counts():
    for bad, err in ((0.0, ValueError), (-1.0, ValueError), ("1", TypeError)):
        with pytest.raises(err, match="output_scale"):
            ps.SparseVAE(output_scale=bad)
        with pytest.raises(err, match="output_scale"):
            ps.VAE(output_scale=bad)
    counts = np.random.default_rng(0).poisson(3.0, size=(60, 4)).astype(np.float32)
    m = ps.SparseVAE(n_factors=2, hidden_dim=8, likelihood="poisson", output_scale=1.0)
    m.fit(counts, epochs=1, batch_size=30, progress=False)
    assert "output_scale" not in (m.fit_info_.get("init") or {})  # normal likelihood only
