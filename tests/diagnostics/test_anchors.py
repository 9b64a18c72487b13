import numpy as np
import pandas as pd
import pytest

import pyro_sparse as ps
from pyro_sparse.diagnostics import (
    anchor_probability,
    anchor_report,
    match_supports,
    prune_factors,
)


def test_anchor_probability_hand_case():
    p = np.array([[0.9, 0.2, 0.0], [0.5, 0.5, 0.5]])
    a = anchor_probability(p)
    np.testing.assert_allclose(a[0], [0.9 * 0.8, 0.2 * 0.1, 0.0])
    np.testing.assert_allclose(a[1], [0.125, 0.125, 0.125])
    # averaged over draws
    draws = np.stack([p, np.zeros_like(p)])
    np.testing.assert_allclose(anchor_probability(draws), a / 2)
    with pytest.raises(ValueError, match="shape"):
        anchor_probability(np.zeros(3))


def test_match_supports_finds_permutation():
    St = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], bool)
    Sh = np.zeros((5, 4), bool)
    Sh[:, 3] = St[:, 0]
    Sh[:, 1] = St[:, 1]
    np.testing.assert_array_equal(match_supports(St, Sh), [3, 1])
    with pytest.raises(ValueError, match="features"):
        match_supports(St, Sh[:4])


class _Fake:
    """A fitted-estimator stand-in with known inclusion probabilities (the protocol)."""

    def __init__(self, p_gk, eta_k, names=None):
        self.inclusion_probs_ = np.asarray(p_gk, float)
        self.eta_ = np.asarray(eta_k, float)
        self.n_factors = self.inclusion_probs_.shape[1]
        self.feature_names_in_ = names
        self.posterior_is_point_mass_ = True

    def _check_fitted(self):
        pass

    def posterior_draws(self, num_samples, seed=0):
        S = num_samples
        return {"inclusion": np.repeat(self.inclusion_probs_[None], S, 0),
                "W": np.repeat(self.inclusion_probs_[None], S, 0)}


def test_report_on_known_support():
    # factor 0: anchors a, b; factor 1: one anchor c (A1 fails); factor 2 unused
    p = np.array([[0.99, 0.01, 0.0], [0.9, 0.1, 0.0], [0.02, 0.97, 0.0],
                  [0.95, 0.95, 0.0], [0.1, 0.2, 0.0]])
    fake = _Fake(p, [0.5, 0.4, 0.001], names=list("abcde"))
    rep = anchor_report(fake, num_samples=3)
    assert isinstance(rep.table, pd.DataFrame)
    assert list(rep.table["feature"]) == ["a", "b", "c"]
    f = rep.factors.set_index("factor")
    assert f.loc["factor_0", "a1"] and not f.loc["factor_1", "a1"]
    assert f.loc["factor_2", "unused"] and rep.unused_factors == ["factor_2"]
    assert f.loc["factor_0", "n_support"] == 3 and f.loc["factor_1", "n_anchors"] == 1
    np.testing.assert_allclose(rep.table["anchor_prob"].iloc[0], 0.99 * 0.99 * 1.0)
    text = str(rep)
    assert "A1 FAILS" in text and "factor_2" in text and "MAP fit" in text
    assert "1 anchor - A1 FAILS" in text  # factor_1 has one anchor: singular
    np.testing.assert_array_equal(prune_factors(fake), [0, 1])
    # against the truth, factors given in another order
    truth = np.array([[0, 1], [0, 1], [1, 0], [1, 1], [0, 0]], bool)
    rep = anchor_report(fake, truth=truth, num_samples=3)
    s = rep.scores
    np.testing.assert_array_equal(s["match"], [1, 0])
    assert s["f1"] == 1.0 and s["hamming"] == 0 and s["anchor_recall"] == 1.0
    assert "F1 1.00" in str(rep)
    with pytest.raises(ValueError, match="support matrix"):
        anchor_report(fake, truth=truth[:3])
    # a true W reads as its support (nonzero); NaN in it is refused, not read as True
    W_true = np.where(truth, 0.7, 0.0)
    assert anchor_report(fake, truth=W_true, num_samples=3).scores["f1"] == 1.0
    with pytest.raises(ValueError, match="without NaN"):
        anchor_report(fake, truth=np.where(truth, np.nan, 0.0))
    with pytest.raises(ValueError, match="dtype <U"):
        anchor_report(fake, truth=truth.astype(str))
    with pytest.raises(ValueError, match="threshold"):
        anchor_report(fake, threshold=1.5)


def test_report_on_a_fitted_model_and_vae_error():
    d = ps.datasets.paper_synthetic(n=300, seed=0)
    m = ps.SparseVAE(n_factors=3, hidden_dim=16, w_guide="meanfield").fit(
        d.X, epochs=40, progress=False)
    rep = anchor_report(m, truth=d.support, z_true=d.Z, X=d.X, num_samples=50)
    assert set(rep.scores) >= {"precision", "recall", "f1", "hamming", "anchor_recall"}
    assert 0 <= rep.scores["f1"] <= 1
    assert (rep.table["anchor_prob"].between(0, 1)).all()
    assert rep.support.shape == (7, 3)
    v = ps.VAE(n_factors=2, hidden_dim=8).fit(d.X, epochs=1, progress=False)
    with pytest.raises(TypeError, match="needs a SparseVAE"):
        anchor_report(v)


def test_redundant_factors_hand_cases():
    from pyro_sparse.diagnostics import redundant_factors

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(500), rng.standard_normal(500)
    Z = np.c_[a, b, -a + 0.05 * rng.standard_normal(500), np.zeros(500)]
    pairs = redundant_factors(Z)
    assert [(k, m) for k, m, _ in pairs] == [(0, 2)] and pairs[0][2] < -0.99
    # an unused factor is left out; independent factors and a constant column never pair
    assert redundant_factors(Z, used_k=[True, True, False, True]) == []
    assert redundant_factors(Z, threshold=0.9999) == []
    with pytest.raises(ValueError, match="threshold"):
        redundant_factors(Z, threshold=0.0)
    with pytest.raises(ValueError, match="shape"):
        redundant_factors(a)


def test_merge_redundant_hand_cases():
    from pyro_sparse.diagnostics import merge_redundant

    rng = np.random.default_rng(1)
    n = 4000
    a, b, n1, n2 = rng.standard_normal((4, n))
    # factor 3 is a noisy, sign-flipped copy of factor 1 (|r| 0.93) and 4 a noisier copy of
    # 3 (|r| 0.94 with 3 but 0.87 with 1: joined to 1 only through 3); 2 is b; 0 is unused
    # though its code copies a
    Z = np.c_[a, a, b, -(a + 0.4 * n1), -(a + 0.4 * n1) - 0.4 * n2]
    c = np.abs(np.corrcoef(Z.T))
    assert c[1, 3] > 0.91 and c[3, 4] > 0.91 and c[1, 4] < 0.89
    S = np.array([[0, 1, 0, 1, 0],
                  [0, 1, 0, 0, 0],
                  [0, 0, 1, 0, 0],
                  [0, 0, 1, 0, 1],
                  [0, 0, 0, 1, 0]], bool)
    M = merge_redundant(S, Z)
    expect = np.zeros_like(S)
    expect[[0, 1, 3, 4], 1] = True  # the union of columns 1, 3, 4
    expect[[2, 3], 2] = True
    np.testing.assert_array_equal(M, expect)
    # the unused factor 0 stays empty though its code matches; the input is not modified
    assert not M[:, 0].any() and S[:, 3].sum() == 2
    # below the threshold nothing moves
    Z2 = np.c_[a, a + 2.0 * n1, b, b + 2.0 * n2, rng.standard_normal(n)]
    np.testing.assert_array_equal(merge_redundant(S, Z2), S)
    with pytest.raises(ValueError, match="same K"):
        merge_redundant(S, Z[:, :4])


def _copy_factor(m, k, c, first_layer=False):
    """Make factor c of a fitted MAP model a copy of factor k: the same encoder row and
    loadings (and, with ``first_layer``, the same first-layer column, so it acts alike)."""
    import torch

    enc, gg = m.guide_.local_guide.encoder, m.guide_.globals_guide
    with torch.no_grad():
        for head in (enc.loc_head, enc.logvar_head):
            head.weight[c] = head.weight[k]
            head.bias[c] = head.bias[k]
        gg.W_gk[:, c] = gg.W_gk[:, k]
        gg.eta_k[c] = gg.eta_k[k]
        if first_layer:
            m.model_.decoder.A1_hk[:, c] = m.model_.decoder.A1_hk[:, k]
    m._set_fitted_attributes()


def test_report_flags_a_factor_copied_into_another(tmp_path):
    data = ps.datasets.paper_synthetic(n=300, rho=0.0, seed=0)
    m = ps.SparseVAE(n_factors=3, hidden_dim=8).fit(data.X, epochs=30, seed=0, progress=False)
    rep = anchor_report(m, X=data.X, num_samples=3)
    assert rep.redundant is not None and "redundant" in rep.to_dict()
    assert anchor_report(m, num_samples=3).redundant is None  # not checked without X
    # make another factor a copy of the most used one: same encoder row, same loadings
    k = int(np.argmax(m.inclusion_probs_.sum(0)))
    c = (k + 1) % 3
    _copy_factor(m, k, c)
    used = (m.inclusion_probs_ >= 0.5).any(0)
    assert used[k] and used[c]
    rep = anchor_report(m, X=data.X, num_samples=3)
    pair = sorted([f"factor_{k}", f"factor_{c}"])
    assert tuple(pair) in [(a, b) for a, b, _ in rep.redundant]
    text = str(rep)
    assert f"REDUNDANT: {pair[0]} and {pair[1]}" in text and "split one factor" in text
    assert pair in [d["factors"] for d in rep.to_dict()["redundant"]]


def test_hidden_effects_hand_cases():
    from pyro_sparse.diagnostics import hidden_effects

    share = np.array([[0.5, 0.0], [0.3, 0.2], [0.2, 0.0], [0.0, 0.15]])
    S = np.array([[1, 0], [0, 1], [0, 0], [0, 1]], bool)
    # factor 0 acts on 3 features, 2 of them outside its 1-feature support: listed
    assert hidden_effects(share, S) == [("factor_0", 2, 3, 1)]
    # a higher bar: factor 0 acts on 2 features, 1 outside: not listed
    assert hidden_effects(share, S, effect_share=0.25) == []
    # its support covering them: not listed
    assert hidden_effects(share, S | np.array([[0, 0], [1, 0], [1, 0], [0, 0]], bool)) == []
    with pytest.raises(ValueError, match="shape"):
        hidden_effects(share[:, :1], S)


def test_report_sees_loadings_the_first_layer_scales_up():
    """W's scale is not identified: move it into the decoder's first layer and p* loses the
    factor while the decoded function, and so the effect shares, stay the same."""
    import torch

    data = ps.datasets.paper_synthetic(n=300, rho=0.0, seed=0)
    m = ps.SparseVAE(n_factors=3, hidden_dim=8).fit(data.X, epochs=30, seed=0, progress=False)
    k = int(np.argmax((m.inclusion_probs_ >= 0.5).sum(0)))
    share0 = m.effect_shares(data.X)
    rec0 = m.reconstruct(data.X)
    c = np.ones(3, dtype=np.float32)
    c[k] = 1e-3
    with torch.no_grad():
        m.guide_.globals_guide.scale_columns(torch.as_tensor(c))
        m.model_.decoder.A1_hk[:, k] /= 1e-3
    m._set_fitted_attributes()
    np.testing.assert_allclose(m.reconstruct(data.X), rec0, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(m.effect_shares(data.X), share0, rtol=0.1, atol=1e-2)
    assert not (m.inclusion_probs_[:, k] >= 0.5).any()   # p* no longer sees the factor
    rep = anchor_report(m, X=data.X, num_samples=3)
    assert f"factor_{k}" in [f for f, *_ in rep.hidden_effects]
    assert "EFFECT OUTSIDE THE SUPPORT" in str(rep) and "understates" in str(rep)
    assert f"factor_{k}" in [d["factor"] for d in rep.to_dict()["hidden_effects"]]
    assert anchor_report(m, num_samples=3).hidden_effects is None   # needs X


def test_report_reads_the_support_through_effects_and_merges_split_factors():
    from pyro_sparse.diagnostics import merge_redundant, support_scores

    data = ps.datasets.paper_synthetic(n=300, rho=0.0, seed=0)
    m = ps.SparseVAE(n_factors=3, hidden_dim=8).fit(data.X, epochs=30, seed=0, progress=False)
    with pytest.raises(ValueError, match="pass them as X"):
        anchor_report(m, support="effect")
    with pytest.raises(ValueError, match="support must be one of"):
        anchor_report(m, X=data.X, support="bogus")
    # the effect read is SparseVAE.effective_support; anchors and A1 follow it
    rep = anchor_report(m, X=data.X, num_samples=3, support="effect")
    S_eff = m.effective_support(data.X, min_share=0.1)
    np.testing.assert_array_equal(rep.support, S_eff)
    assert (rep.support <= (m.inclusion_probs_ >= 0.5)).all()
    assert list(rep.factors["n_support"]) == list(S_eff.sum(0))
    assert "effect share >= 0.1 on X" in str(rep).splitlines()[0]
    assert rep.to_dict()["support_read"] == "effect"
    # split the most used factor into two latents (same encoder row, same first-layer
    # column, the same loadings): both carry the feature's variation, their codes are equal
    k = int(np.argmax(S_eff.sum(0)))
    c = (k + 1) % 3
    _copy_factor(m, k, c, first_layer=True)
    S_eff = m.effective_support(data.X, min_share=0.1)
    assert S_eff[:, k].any() and S_eff[:, c].any()
    lo, hi = sorted((k, c))
    effect = anchor_report(m, X=data.X, num_samples=3, support="effect")
    assert effect.factors["n_anchors"][hi] == 0  # each feature now loads on both copies
    rep = anchor_report(m, truth=data.support, z_true=data.Z, X=data.X, num_samples=3,
                        support="merged")
    merged = merge_redundant(S_eff, m.transform(data.X))
    np.testing.assert_array_equal(rep.support, merged)
    assert not merged[:, hi].any() and merged[:, lo].any()
    assert rep.factors["merged_into"][hi] == f"factor_{lo}"
    assert f"factor_{hi}" not in rep.unused_factors
    assert rep.factors["n_anchors"][lo] >= 1
    text = str(rep)
    assert f"factor_{hi}: merged into factor_{lo}" in text and "read as one factor here" in text
    assert rep.to_dict()["factors"][hi]["merged_into"] == f"factor_{lo}"
    # a merged entry is included when any entry of its group is (MAP: p* is a point)
    p = m.inclusion_probs_ * (m.effect_shares(data.X) >= 0.1)
    group = [lo] + [j for j in range(3) if rep.factors["merged_into"][j] == f"factor_{lo}"]
    assert hi in group
    want = 1.0 - np.prod(1.0 - p[:, group], axis=1)
    got = rep.table[rep.table["factor"] == f"factor_{lo}"]
    feats = [int(f.rsplit("_", 1)[1]) for f in got["feature"]]  # numpy X: feature_g
    np.testing.assert_allclose(got["inclusion"], want[feats], rtol=1e-6)
    # scored as the benchmarks score it: the merged support, used factors matched first
    from pyro_sparse.diagnostics import match_factors

    match = match_factors(data.Z, m.transform(data.X), prefer=merged.any(0))
    assert rep.scores["f1"] == pytest.approx(support_scores(data.support, merged, match)["f1"])
