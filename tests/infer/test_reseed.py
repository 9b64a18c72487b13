"""Re-seeding collapsed factors (pyro_sparse.infer.reseed) and SparseVAE(reseed_rounds=...)."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import pyro_sparse as ps
from pyro_sparse.guides import make_guide
from pyro_sparse.infer import (
    ablation_costs,
    as_rows,
    merged_loadings,
    profile_column,
    reseed_factor,
    reseed_fit,
    reseed_rounds,
    residual_direction,
    split_fold_pair,
    unfold_direction,
    unfold_loadings,
)
from pyro_sparse.infer.reseed import (
    MERGE_SCORE,
    REORDER_CORR,
    UNFOLD_RATIO,
    anchor_embedding,
    torn_factor,
)
from pyro_sparse.models import SparseVAEModel

from ._blocks import two_blocks


def test_residual_direction_finds_a_shared_block_and_its_scores():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(500)
    r = 0.5 * rng.standard_normal((500, 10))
    r[:, [2, 5, 7]] += np.outer(s, [1.0, -0.8, 0.6])
    r[3, 0] = np.nan  # a missing entry does not break it
    w, scores = residual_direction(r)
    assert set(np.flatnonzero(w)) == {2, 5, 7}
    assert np.abs(w).max() == 1.0 and w[np.argmax(np.abs(w))] > 0  # sign fixed
    assert np.sign(w[5]) == -np.sign(w[2])
    assert abs(scores.mean()) < 1e-9 and scores.std() == pytest.approx(1.0)
    assert abs(np.corrcoef(scores, s)[0, 1]) > 0.9
    # the same answer for the negated residuals (an eigenvector's sign is free)
    w2, scores2 = residual_direction(-r)
    np.testing.assert_allclose(w2, w, atol=1e-8)
    np.testing.assert_allclose(scores2, -scores, atol=1e-8)
    with pytest.raises(ValueError, match="no spread"):
        residual_direction(np.ones((5, 3)))
    with pytest.raises(ValueError, match="at least 2 rows and 2 features"):
        residual_direction(np.ones((5, 1)))


def _folded(n=2000, seed=0):
    """Codes (z0, a fold of z1) and the residuals a fit with them leaves: features 0-2 are
    odd in z1 (their sign part unexplained), 3-7 noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    codes = np.column_stack([z[:, 0], np.abs(z[:, 1]) ** 1.5])  # any increasing map of |z1|
    r = 0.3 * rng.standard_normal((n, 8))
    r[:, :3] += np.outer(z[:, 1], [1.0, -0.7, 0.5])
    return z, codes, r


def test_unfold_direction_finds_the_folded_code_and_its_sign():
    z, codes, r = _folded()
    ratio, k, s, v = unfold_direction(codes, r)
    assert k == 1 and ratio > UNFOLD_RATIO
    assert abs(np.corrcoef(s, z[:, 1])[0, 1]) > 0.9  # the sign is back
    assert abs(s.mean()) < 1e-9 and s.std() == pytest.approx(1.0)
    assert set(np.argsort(-np.abs(v))[:3]) == {0, 1, 2} and np.linalg.norm(v) == pytest.approx(1)
    # a decreasing code of the size is found too (both directions are tried)
    ratio2, k2, s2, _ = unfold_direction(np.column_stack([codes[:, 0], -codes[:, 1]]), r)
    assert k2 == 1 and ratio2 == pytest.approx(ratio) and abs(np.corrcoef(s2, s)[0, 1]) > 0.99
    # a missing entry does not break it
    r[5, 2] = np.nan
    assert unfold_direction(codes, r)[1] == 1


def test_unfold_direction_stays_low_without_a_fold():
    # codes that carry their factors with sign; the residuals hold a third factor linearly
    # (what re-seeding is for) and noise: weighting by a code's size concentrates nothing
    rng = np.random.default_rng(1)
    z = rng.standard_normal((2000, 3))
    r = 0.3 * rng.standard_normal((2000, 8))
    r[:, 4:7] += np.outer(z[:, 2], [1.0, 0.8, -0.6])
    ratio, *_ = unfold_direction(z[:, :2], r)
    assert ratio < 1.2 < UNFOLD_RATIO
    with pytest.raises(ValueError, match="same N"):
        unfold_direction(z[:10, :2], r)
    with pytest.raises(ValueError, match="at least 2 rows and 2 features"):
        unfold_direction(z[:, :2], r[:, :1])
    with pytest.raises(ValueError, match="no spread"):
        unfold_direction(z[:, :2], np.ones((2000, 4)))


def test_unfold_loadings_by_hand():
    w = np.array([0.0, 2.0, -4.0, 0.0005, 0.0])
    v = np.array([0.6, 0.1, 0.0, -0.5, 0.1])
    # kept: the factor's own loadings; added: features with |v| >= 0.3 max|v| not loaded
    # (0 and 3), at the sign of v times the median |loading| 3
    np.testing.assert_allclose(unfold_loadings(w, v), [3.0, 2.0, -4.0, -3.0, 0.0])
    np.testing.assert_allclose(unfold_loadings(np.zeros(3), np.array([1.0, -1.0, 0.1])),
                               [1.0, -1.0, 0.0])
    with pytest.raises(ValueError, match="one length"):
        unfold_loadings(w, v[:3])


def test_split_fold_pair_finds_the_size_and_the_sign_code():
    # z1 split over two codes: code 1 tracks its size, code 2 its sign (noisily); code 0 is
    # z0 itself
    rng = np.random.default_rng(2)
    z = rng.standard_normal((2000, 2))
    codes = np.column_stack([z[:, 0], np.abs(z[:, 1]) ** 1.5,
                             np.tanh(3 * z[:, 1]) + 0.3 * rng.standard_normal(2000)])
    score, a, b, s = split_fold_pair(codes)
    assert (a, b) == (1, 2) and score > MERGE_SCORE
    assert np.corrcoef(s, z[:, 1])[0, 1] > 0.9  # the merged code is z1, sign and size
    assert abs(s.mean()) < 1e-9 and s.std() == pytest.approx(1.0)
    # a decreasing size code: the same pair, the same merged code
    score2, a2, b2, s2 = split_fold_pair(codes * [1.0, -1.0, 1.0])
    assert (a2, b2) == (1, 2) and score2 == pytest.approx(score)
    np.testing.assert_allclose(s2, s, atol=1e-12)


def test_split_fold_pair_stays_low_for_independent_codes():
    z = np.random.default_rng(3).standard_normal((2000, 3))
    assert split_fold_pair(z)[0] < 0.1 < MERGE_SCORE
    with pytest.raises(ValueError, match="K >= 2"):
        split_fold_pair(z[:, :1])


def test_merged_loadings_by_hand():
    size = np.array([2.0, 0.0, -1.0, 0.0, 0.0005])
    sign = np.array([0.5, 3.0, 0.0, 0.0, -2.0])
    np.testing.assert_allclose(merged_loadings(size, sign), [2.0, 3.0, -1.0, 0.0, -2.0])
    with pytest.raises(ValueError, match="one length"):
        merged_loadings(size, sign[:3])


def _torn(n=1500, seed=4, tear=True):
    """Two factors with two anchors each (one V-shaped, one monotone), their codes (the
    first torn as in the missed-factor fits: z above 0.3 as it is, below it sent to
    -1.5 + 0.8 |z|), the encoder's view and the support."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    view = np.column_stack([np.abs(z[:, 0]), z[:, 0], np.abs(z[:, 1]), np.tanh(z[:, 1])])
    view += 0.05 * rng.standard_normal(view.shape)
    c0 = np.where(z[:, 0] > 0.3, z[:, 0], -1.5 + 0.8 * np.abs(z[:, 0])) if tear else z[:, 0]
    support = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    return z, np.column_stack([c0, z[:, 1]]), view, support


def test_anchor_embedding_orders_rows_along_a_v_shaped_curve():
    z, _, view, _ = _torn()
    e = anchor_embedding(view[:, :2])
    assert abs(spearmanr(e, z[:, 0])[0]) > 0.95
    assert abs(e.mean()) < 0.05 and e.std() == pytest.approx(1.0, abs=0.05)
    # more rows than are embedded: the rest take their neighbours' coordinate
    e2 = anchor_embedding(view[:, :2], max_rows=500)
    assert abs(spearmanr(e2, z[:, 0])[0]) > 0.95
    with pytest.raises(ValueError, match="N > n_neighbors"):
        anchor_embedding(view[:10, :2])


def test_torn_factor_finds_the_torn_code_and_its_order():
    z, codes, view, support = _torn()
    corr, k, s = torn_factor(codes, view, support)
    assert k == 0 and corr < REORDER_CORR
    assert np.corrcoef(s, z[:, 0])[0, 1] > 0.95  # oriented to agree with the code
    assert abs(s.mean()) < 1e-9 and s.std() == pytest.approx(1.0)
    # skipped factors are not considered: the other one agrees with its anchors
    corr1, k1, _ = torn_factor(codes, view, support, skip={0})
    assert k1 == 1 and corr1 > 0.95
    # codes carried whole: every factor agrees with its anchors' order
    z, codes, view, support = _torn(tear=False)
    assert torn_factor(codes, view, support)[0] > 0.95 > REORDER_CORR
    # no factor with two anchors: nothing to compare
    corr, k, s = torn_factor(codes, view, np.array([[1, 0], [1, 1], [0, 1], [1, 1]], bool))
    assert np.isnan(corr) and k is None and s is None
    with pytest.raises(ValueError, match="shapes disagree"):
        torn_factor(codes, view, support[:3])


def test_ablation_costs_by_hand():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((300, 3))
    B = np.array([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.0, 1.0, 0.0]])  # factor 2 unused
    x = z @ B.T

    def residuals_of(z_nk):
        return x - z_nk @ B.T

    costs = ablation_costs(residuals_of, z)
    # without factor k the residual of feature g is B_gk (z_k - mean z_k)
    expected = (B ** 2).sum(0) * z.var(0) / x.shape[1]
    np.testing.assert_allclose(costs, expected, rtol=1e-10)
    assert costs[2] == 0.0 and int(np.argmin(costs)) == 2
    np.testing.assert_array_equal(ablation_costs(residuals_of, z, resid_ng=x - z @ B.T), costs)


def test_profile_column_picks_each_features_best_candidate():
    from pyro_sparse.infer.reseed import PROFILE_GRID

    target = np.array([0.5, -1.0, 0.1, 2.2, 7.0])
    calls = []

    def loss(c_g):  # feature g's loss depends on its own entry only
        calls.append(c_g.copy())
        return (c_g - target) ** 2

    cand = np.asarray(PROFILE_GRID)[:, None] * np.ones(5)
    cand[:, 4] = 0.0  # a feature left out of the search keeps 0
    np.testing.assert_array_equal(profile_column(loss, cand), [0.5, -1.0, 0.0, 2.0, 0.0])
    assert len(calls) == len(PROFILE_GRID)
    # a NaN loss never wins; ties go to the earlier candidate
    out = profile_column(lambda c: np.where(c > 0, np.nan, np.abs(c)), [[1.0, -1.0], [-2.0, 1.0]])
    np.testing.assert_array_equal(out, [-2.0, -1.0])
    np.testing.assert_array_equal(profile_column(lambda c: np.zeros(2), [[3.0, 4.0], [0, 0]]),
                                  [3.0, 4.0])
    with pytest.raises(ValueError, match="expected \\(2,\\)"):
        profile_column(lambda c: np.zeros(3), [[1.0, 2.0]])
    with pytest.raises(ValueError, match="must be \\(C, G\\)"):
        profile_column(lambda c: c, [1.0, 2.0])


def test_reseed_rounds_keeps_what_the_loss_prefers():
    state = {"v": 0.0}
    # the continued fit always lands at loss 5; the re-seeded one at 3, then 7
    losses = iter([5.0, 3.0, 5.0, 7.0])

    def propose(r):
        state["v"] = 100.0 + r
        return {"factor": r}

    def continue_fit(r):
        state["v"] += 1.0
        return [float(state["v"])]

    hist, rounds = reseed_rounds(2, propose=propose, continue_fit=continue_fit,
                                 loss=lambda: next(losses), snapshot=lambda: dict(state),
                                 restore=lambda t: state.update(t))
    assert [r["accepted"] for r in rounds] == [True, False]
    assert [r["factor"] for r in rounds] == [0, 1]
    assert rounds[0]["loss_reseeded"] == 3.0 and rounds[0]["loss_continued"] == 5.0
    # round 0 kept the re-seeded state (101), round 1 went back to its continuation (102)
    assert hist == [101.0, 102.0]
    assert state["v"] == 102.0


@pytest.mark.parametrize("w_guide", ["map", "meanfield"])
def test_reseed_factor_moves_only_that_factor(w_guide):
    x, _, _ = two_blocks(n=300)
    torch.manual_seed(0)
    model = SparseVAEModel(8, 2, hidden_dim=8)
    guide = make_guide(model, w_guide)
    xt = as_rows(x, "cpu")
    gg = guide.globals_guide
    W = gg.W_gk if w_guide == "map" else gg.W_loc_gk
    before_W0 = W[:, 0].detach().clone()
    with torch.no_grad():
        before_mu = guide.local_guide.encode(xt)[0].clone()
    w = np.array([0.0, 0.0, 0.0, 0.0, 1.0, -0.5, 0.0, 0.4])
    s = np.random.default_rng(2).standard_normal(300)
    mse = reseed_factor(guide, model.decoder, xt, 1, w, s, steps=300, seed=0)
    torch.testing.assert_close(W[:, 1].detach(), torch.tensor(w, dtype=torch.float32))
    torch.testing.assert_close(W[:, 0].detach(), before_W0)
    assert model.decoder.A1_hk[:, 1].abs().min() > 0
    with torch.no_grad():
        mu, sd = guide.local_guide.encode(xt)
    # the targets are noise the encoder can only partly fit from 8 features: it learns what
    # it can of them, and keeps factor 0's means where they were
    assert mse < 1.0
    assert np.corrcoef(mu[:, 1].numpy(), s)[0, 1] > 0.3
    assert float(((mu[:, 0] - before_mu[:, 0]) ** 2).mean()) < 0.05 * mse + 1e-3
    assert 0.15 < float(sd[:, 1].median()) < 0.6
    with pytest.raises(ValueError, match="factor 2 out of range"):
        reseed_factor(guide, model.decoder, xt, 2, w, s)
    # a known decoder is left as it is
    A_before = model.decoder.A1_hk.detach().clone()
    reseed_factor(guide, model.decoder, xt, 0, w, s, steps=5, seed=1, redraw_decoder=False)
    torch.testing.assert_close(model.decoder.A1_hk.detach(), A_before, rtol=0, atol=0)
    torch.testing.assert_close(W[:, 0].detach(), torch.tensor(w, dtype=torch.float32))


def test_a_killed_factor_comes_back():
    # fit two blocks, then silence factor 1 (its loadings and encoder row at 0): the residuals
    # of features 4-7 then move together, and one round re-seeds factor 1 on them
    x, z, _ = two_blocks(n=800, seed=3)
    est = ps.SparseVAE(n_factors=2, hidden_dim=10).fit(x, epochs=40, batch_size=100,
                                                       seed=0, progress=False)
    gg, enc = est.guide_.globals_guide, est.guide_.local_guide.encoder
    with torch.no_grad():
        gg.W_gk[:, 1] = 0.0
        enc.loc_head.weight[1] = 0.0
        enc.loc_head.bias[1] = 0.0
    xt = as_rows(x, "cpu")
    est.reseed_rounds, est.reseed_epochs = 1, 15
    ctx = dict(epochs=40, batch_size=100, lr=1e-2, progress=False, col_sd=x.std(0))
    est.model_.train()
    est.guide_.train()
    hist, rounds = est._reseed(est.model_, est.guide_, xt, ctx, seed=0)
    (r,) = rounds
    assert r["factor"] == 1 and r["ablation_cost"][1] == pytest.approx(0.0, abs=1e-6)
    assert r["move"] == "reseed" and r["unfold_ratio"] < 1.5  # nothing folded here
    assert r["accepted"] and r["loss_reseeded"] < r["loss_continued"]
    assert len(hist) == 15
    mu = est.transform(x)
    c = np.abs(np.corrcoef(mu.T, z.T)[:2, 2:])
    assert c[1, 1] > 0.9 and c[0, 0] > 0.9  # both factors found again
    W = est.guide_.globals_guide._W_point().detach().numpy()
    assert np.abs(W[4:, 1]).min() > 10 * np.abs(W[:4, 1]).max()


def _known_decoder_data(n=800, seed=0):
    """Rows drawn from a Sparse VAE with a known decoder: features 0-3 on factor 0, 4-7 on
    factor 1; returns (x_ng, z_nk, W_gk, decoder state_dict)."""
    from pyro_sparse.nn import SparseDecoder

    g = torch.Generator().manual_seed(seed)
    W = torch.zeros(8, 2)
    W[:4, 0] = torch.tensor([1.0, -0.8, 0.9, 0.7])
    W[4:, 1] = torch.tensor([0.9, 1.0, -0.8, 0.6])
    torch.manual_seed(seed)
    dec = SparseDecoder(8, 2, 10)
    z = torch.randn(n, 2, generator=g)
    with torch.no_grad():
        dec.V_gh.div_(dec(z, W).std(0).unsqueeze(-1))  # every feature's signal sd 1
        x = dec(z, W) + 0.3 * torch.randn(n, 8, generator=g)
    return x, z.numpy(), W, dec.state_dict()


def test_reseed_fit_with_a_frozen_decoder():
    # the decoder known and frozen (as in benchmarks/calibration.py): fit from the true W,
    # silence factor 1 (its loadings and encoder row at 0), and one round of reseed_fit with
    # redraw_decoder=False brings it back without moving a single decoder weight
    import pyro

    from pyro_sparse.infer import fit_svi

    x, z, W, dec_state = _known_decoder_data(seed=1)
    with pyro.settings.context(module_local_params=True):
        torch.manual_seed(0)
        model = SparseVAEModel(8, 2, hidden_dim=10, b=2.0)
        model.decoder.load_state_dict(dec_state)
        model.decoder.requires_grad_(False)
        guide = make_guide(model, "map")
        gg, local = guide.globals_guide, guide.local_guide
        gg.init_sigma(x.std(0))
        with torch.no_grad():
            gg.W_gk.copy_(W)
        fit_svi(model, guide, x, epochs=30, batch_size=100, seed=0, warmup_epochs=3)

    def corr():
        with torch.no_grad():
            mu = local.encode(x)[0].numpy()
        return np.abs(np.corrcoef(mu.T, z.T)[:2, 2:])

    assert corr()[1, 1] > 0.9  # found before it is silenced
    with torch.no_grad():
        gg.W_gk[:, 1] = 0.0
        local.encoder.loc_head.weight[1] = 0.0
        local.encoder.loc_head.bias[1] = 0.0
    assert corr()[1, 1] < 0.5 or np.isnan(corr()[1, 1])
    hist, rounds = reseed_fit(model, guide, x, n_rounds=1, epochs=15, batch_size=100, seed=0,
                              col_sd_g=x.std(0).numpy(), redraw_decoder=False,
                              profile_loadings=True)
    (r,) = rounds
    assert r["factor"] == 1 and r["accepted"] and len(hist) == 15
    for k, v in model.decoder.state_dict().items():
        torch.testing.assert_close(v, dec_state[k], rtol=0, atol=0)
    c = corr()
    assert c[0, 0] > 0.9 and c[1, 1] > 0.9


def test_sparse_vae_reseed_option(tmp_path):
    x, _, _ = two_blocks(n=200)
    x[5, 2] = np.nan  # missing entries are left out of the residuals
    x[:, 7] = 1.5  # a constant column (sd 0) does not turn the residual scale into inf
    kw = dict(n_factors=3, hidden_dim=8, reseed_rounds=2, reseed_epochs=2)
    a = ps.SparseVAE(**kw).fit(x, epochs=4, batch_size=50, seed=1, progress=False)
    b = ps.SparseVAE(**kw).fit(x, epochs=4, batch_size=50, seed=1, progress=False)
    np.testing.assert_array_equal(a.loadings_, b.loadings_)  # deterministic on CPU
    rounds = a.fit_info_["reseed"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert set(rounds[0]) >= {"factor", "ablation_cost", "accepted", "loss_reseeded",
                              "loss_continued", "pretrain_mse", "n_loadings"}
    assert len(a.loss_history_) == 4 + 2 * 2
    assert all(np.isfinite(r["ablation_cost"]).all() for r in rounds)
    a.save(tmp_path / "m")
    back = ps.SparseVAE.load(tmp_path / "m")
    assert back.reseed_rounds == 2 and back.reseed_epochs == 2
    assert back.fit_info_["reseed"] == rounds
    # default: no rounds, nothing recorded; None: half the epochs per round
    assert "reseed" not in ps.SparseVAE(n_factors=2, hidden_dim=8).fit(
        x, epochs=2, batch_size=50, progress=False).fit_info_
    half = ps.SparseVAE(n_factors=2, hidden_dim=8, reseed_rounds=1).fit(
        x, epochs=4, batch_size=50, progress=False)
    assert len(half.loss_history_) == 4 + 2

    assert {r["move"] for r in rounds} <= {"reseed", "unfold", "reorder"}
    assert all(np.isfinite(r["unfold_ratio"]) for r in rounds)


def test_a_round_unfolds_when_the_ratio_is_high(monkeypatch, tmp_path):
    import pyro_sparse.infer.reseed as reseed

    x, _, _ = two_blocks(n=200)
    kw = dict(n_factors=2, hidden_dim=8, reseed_rounds=1, reseed_epochs=2,
              reseed_reorder=False)
    seen = {}
    real = reseed.unfold_direction

    def spy(z, r):
        seen["out"] = real(z, r)
        return seen["out"]

    monkeypatch.setattr(reseed, "unfold_direction", spy)
    monkeypatch.setattr(reseed, "UNFOLD_RATIO", 0.0)  # every round unfolds
    (r,) = ps.SparseVAE(**kw).fit(x, epochs=4, batch_size=50, progress=False).fit_info_["reseed"]
    assert r["move"] == "unfold" and r["factor"] == seen["out"][1]
    assert r["unfold_ratio"] == pytest.approx(seen["out"][0])
    # reseed_unfold=False: the rounds as before the proposal existed, whatever the ratio
    off = ps.SparseVAE(**kw, reseed_unfold=False).fit(x, epochs=4, batch_size=50,
                                                      progress=False)
    (r,) = off.fit_info_["reseed"]
    assert r["move"] == "reseed" and np.isnan(r["unfold_ratio"])
    back = ps.SparseVAE.load(off.save(tmp_path / "off"))
    assert back.reseed_unfold is False and np.isnan(back.fit_info_["reseed"][0]["unfold_ratio"])
    monkeypatch.setattr(reseed, "UNFOLD_RATIO", np.inf)  # never
    (r,) = ps.SparseVAE(**kw).fit(x, epochs=4, batch_size=50, progress=False).fit_info_["reseed"]
    assert r["move"] == "reseed"


def test_a_round_merges_a_split_fold(monkeypatch):
    import pyro_sparse.infer.reseed as reseed

    x, _, _ = two_blocks(n=200)
    kw = dict(n_factors=3, hidden_dim=8, reseed_rounds=1, reseed_epochs=2,
              reseed_reorder=False)
    seen = {}
    real = reseed.split_fold_pair

    def spy(z):
        seen["out"] = real(z)
        return seen["out"]

    monkeypatch.setattr(reseed, "split_fold_pair", spy)
    monkeypatch.setattr(reseed, "MERGE_SCORE", 0.0)      # every round merges
    monkeypatch.setattr(reseed, "UNFOLD_RATIO", np.inf)  # and none unfolds
    est = ps.SparseVAE(**kw, reseed_merge=True).fit(x, epochs=4, batch_size=50,
                                                    progress=False)
    (r,) = est.fit_info_["reseed"]
    score, a, b, _ = seen["out"]
    assert r["move"] == "merge" and r["factor"] == a and r["merged_into"] == b
    assert r["merge_score"] == pytest.approx(score) and np.isfinite(r["merge_pretrain_mse"])
    # off (the default): no pair is looked at
    (r,) = ps.SparseVAE(**kw).fit(x, epochs=4, batch_size=50, progress=False).fit_info_["reseed"]
    assert r["move"] == "reseed" and "merge_score" not in r


def test_a_round_reorders_a_torn_code(monkeypatch):
    import pyro_sparse.infer.reseed as reseed

    x, _, _ = two_blocks(n=200)
    kw = dict(n_factors=2, hidden_dim=8, reseed_rounds=1, reseed_epochs=2)
    target = np.random.default_rng(0).standard_normal(200)

    def torn(z, view, support, seed=0, skip=()):
        assert z.shape == (200, 2) and view.shape == (200, x.shape[1])
        return (np.nan, None, None) if 1 in skip else (0.3, 1, target)
    monkeypatch.setattr(reseed, "torn_factor", torn)
    monkeypatch.setattr(reseed, "UNFOLD_RATIO", np.inf)
    # a factor is reordered once: the second round re-seeds instead
    two = ps.SparseVAE(**dict(kw, reseed_rounds=2)).fit(
        x, epochs=4, batch_size=50, progress=False).fit_info_["reseed"]
    assert [r["move"] for r in two] == ["reorder", "reseed"]
    est = ps.SparseVAE(**kw)
    seen = {}
    real = reseed.reseed_factor

    def spy(guide, decoder, x_ng, k, w_g, s_n, **kwargs):
        seen["w_g"] = np.asarray(w_g).copy()
        seen["W"] = guide.globals_guide._W_point().detach().numpy().copy()
        seen["k"], seen["s_n"] = k, s_n
        return real(guide, decoder, x_ng, k, w_g, s_n, **kwargs)
    monkeypatch.setattr(reseed, "reseed_factor", spy)
    (r,) = est.fit(x, epochs=4, batch_size=50, progress=False).fit_info_["reseed"]
    assert r["move"] == "reorder" and r["factor"] == 1 and r["reorder_corr"] == 0.3
    assert seen["k"] == 1 and seen["s_n"] is target
    np.testing.assert_array_equal(seen["w_g"], seen["W"][:, 1])  # the loadings as they were
    # on by default; off: no ordering is looked at
    assert ps.SparseVAE().reseed_reorder is True
    monkeypatch.setattr(reseed, "reseed_factor", real)
    (r,) = ps.SparseVAE(**kw, reseed_reorder=False).fit(
        x, epochs=4, batch_size=50, progress=False).fit_info_["reseed"]
    assert r["move"] == "reseed" and "reorder_corr" not in r


def test_reseed_fit_without_unfolding_records_no_ratio():
    x, _, _ = two_blocks(n=200)
    est = ps.SparseVAE(n_factors=2, hidden_dim=8).fit(x, epochs=3, batch_size=50,
                                                      progress=False)
    xt = as_rows(x, "cpu")
    est.model_.train()
    est.guide_.train()
    _, (r,) = reseed_fit(est.model_, est.guide_, xt, n_rounds=1, epochs=1, batch_size=50,
                         col_sd_g=x.std(0), unfold=False, reorder=False)
    assert r["move"] == "reseed" and np.isnan(r["unfold_ratio"])


def test_reseed_with_counts_and_the_variational_guide():
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(120, 6)).astype(np.float32)
    m = ps.SparseVAE(n_factors=2, hidden_dim=8, likelihood="categorical", w_guide="meanfield",
                     reseed_rounds=1, reseed_epochs=1).fit(counts, epochs=2, batch_size=40,
                                                           progress=False)
    assert len(m.fit_info_["reseed"]) == 1 and np.isfinite(m.loadings_).all()


@pytest.mark.parametrize("kw, match", [
    (dict(reseed_rounds=-1), "reseed_rounds must be an integer >= 0"),
    (dict(reseed_rounds=1.5), "reseed_rounds must be an integer >= 0"),
    (dict(reseed_rounds=True), "reseed_rounds must be an integer >= 0"),
    (dict(reseed_epochs=0), "reseed_epochs"),
])
def test_bad_reseed_arguments(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ps.SparseVAE(n_factors=2, **kw)
