"""The factor-analysis start (pyro_sparse.infer.initialization) and SparseVAE(init=...)."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import pyro_sparse as ps
from pyro_sparse.guides import make_guide
from pyro_sparse.infer import SparseRows, encoder_view, fa_bic, factor_analysis_init, varimax
from pyro_sparse.models import SparseVAEModel

from ._blocks import two_blocks as _two_blocks


def _guide(G, K, w_guide="map", seed=0):
    torch.manual_seed(seed)
    model = SparseVAEModel(G, K, hidden_dim=8)
    return make_guide(model, w_guide)


def _matched_abs_corr(a_nk, b_nk):
    K = a_nk.shape[1]
    c = np.abs(np.corrcoef(a_nk.T, b_nk.T)[:K, K:])
    r, col = linear_sum_assignment(-c)
    return c[r, col], r[np.argsort(col)]


def test_varimax_undoes_a_rotation_of_a_simple_structure():
    L = np.zeros((6, 2))
    L[:3, 0], L[3:, 1] = [0.9, 0.8, -0.7], [0.6, 0.9, 0.8]
    t = 0.6
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    L_rot, R_fit = varimax(L @ R)
    np.testing.assert_allclose(R_fit @ R_fit.T, np.eye(2), atol=1e-10)
    np.testing.assert_allclose(L_rot, L @ R @ R_fit)
    # the simple structure comes back up to the order and signs of the columns
    _, col = linear_sum_assignment(-np.abs(L.T @ L_rot))
    np.testing.assert_allclose(np.abs(L_rot[:, col]), np.abs(L), atol=1e-4)


@pytest.mark.parametrize("w_guide", ["map", "meanfield"])
def test_factor_analysis_start_finds_two_known_blocks(w_guide):
    x, z, support = _two_blocks()
    guide = _guide(8, 2, w_guide)
    x_ng = torch.as_tensor(x)
    with torch.no_grad():
        before, _ = _matched_abs_corr(guide.local_guide.encode(x_ng)[0].numpy(), z)
    info = factor_analysis_init(guide, x_ng, seed=0)
    with torch.no_grad():
        loc = guide.local_guide.encode(x_ng)[0].numpy()
    after, of_true = _matched_abs_corr(loc, z)
    assert after.min() > 0.95 > before.min()
    assert 0 <= info["pretrain_mse"] < 0.1 and info["fa_steps"] == 300
    assert info["fa_factors"] == 2 and len(info["bic"]) == 2
    # W starts at the rotated loadings: each feature's largest entry on its own factor,
    # every column scaled to a largest magnitude of exactly 1
    gg = guide.globals_guide
    W = (gg.W_gk if w_guide == "map" else gg.W_loc_gk).detach().numpy()[:, of_true]
    np.testing.assert_allclose(np.abs(W).max(0), 1.0, rtol=1e-6)
    assert (np.abs(W).argmax(1) == support.argmax(1)).all()
    assert np.abs(W[~support]).max() < 0.2


def test_bic_picks_the_two_factors_and_the_surplus_ones_keep_their_random_start():
    x, z, _ = _two_blocks()
    guide = _guide(8, 4)
    W_before = guide.globals_guide.W_gk.detach().clone()
    info = factor_analysis_init(guide, torch.as_tensor(x), seed=0)
    assert info["fa_factors"] == 2
    bic = np.asarray(info["bic"])
    assert bic.shape == (4,) and bic.argmin() == 1
    np.testing.assert_allclose(bic, fa_bic(x.astype(np.float64), 4, seed=0))
    W = guide.globals_guide.W_gk.detach()
    torch.testing.assert_close(W[:, 2:], W_before[:, 2:])
    assert not torch.equal(W[:, :2], W_before[:, :2])
    # a fixed number of factors skips the BIC
    guide = _guide(8, 4)
    info = factor_analysis_init(guide, torch.as_tensor(x), n_fa_factors=3, steps=5)
    assert info["fa_factors"] == 3 and "bic" not in info


def test_encoder_view_densifies_sparse_rows_and_fills_missing_entries():
    import scipy.sparse as sp

    x = np.array([[0.0, 2.0], [1.0, 0.0], [3.0, 0.0]], dtype=np.float32)
    guide = _guide(2, 1)
    dense = encoder_view(guide.local_guide, torch.as_tensor(x), batch_size=2)
    sparse = encoder_view(guide.local_guide, SparseRows(sp.csr_matrix(x), "cpu"), batch_size=2)
    np.testing.assert_array_equal(dense, x)
    np.testing.assert_array_equal(sparse, x)
    guide.local_guide.set_fill([5.0, 7.0])
    x[0, 1] = np.nan
    assert encoder_view(guide.local_guide, torch.as_tensor(x))[0, 1] == 7.0


def test_factor_analysis_start_bad_arguments():
    guide = _guide(8, 2)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        factor_analysis_init(guide, torch.zeros(10, 8), steps=0)
    with pytest.raises(ValueError, match=r"more rows \(2\) than factors \(2\)"):
        factor_analysis_init(guide, torch.randn(2, 8))
    for bad in (0, 3, "aic", True):
        with pytest.raises(ValueError, match="n_fa_factors must be 'bic' or an integer in 1..2"):
            factor_analysis_init(guide, torch.randn(20, 8), n_fa_factors=bad)


def test_sparse_vae_init_option(tmp_path):
    x, z, _ = _two_blocks(n=300)
    m = ps.SparseVAE(n_factors=2, hidden_dim=8, init="factor_analysis")
    m.fit(x, epochs=2, batch_size=100, seed=0, progress=False)
    assert m.fit_info_["init"]["method"] == "factor_analysis"
    assert m.get_params()["init"] == "factor_analysis"
    assert "init" not in ps.SparseVAE(n_factors=2, hidden_dim=8).fit(
        x, epochs=1, progress=False).fit_info_
    # the start is deterministic: same seed, same loadings
    again = ps.SparseVAE(n_factors=2, hidden_dim=8, init="factor_analysis")
    again.fit(x, epochs=2, batch_size=100, seed=0, progress=False)
    np.testing.assert_array_equal(m.loadings_, again.loadings_)
    assert ps.SparseVAE.load(m.save(tmp_path / "m")).init == "factor_analysis"
    with pytest.raises(ValueError, match="unknown init 'pca'"):
        ps.SparseVAE(init="pca")
