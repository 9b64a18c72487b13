"""The pure pieces of support refinement (pyro_sparse.infer.refine)."""

import numpy as np
import pytest
import torch

from pyro_sparse.infer import REFINE_THRESHOLDS, candidate_supports, effect_share, one_se_choice


def _orthogonal_factors(n=400, k=3, seed=0):
    # centred, exactly orthogonal columns with variances 1, 4, 9
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, k + 1)))
    z = q[:, 1:] - q[:, 1:].mean(0)
    q, _ = np.linalg.qr(z)
    return torch.tensor(q * np.sqrt(n) * np.array([1.0, 2.0, 3.0]), dtype=torch.float64)


def test_effect_share_of_a_linear_decoder_is_the_variance_share():
    z = _orthogonal_factors()
    W = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.5, 0.0, 2.0]], dtype=torch.float64)
    share = effect_share(lambda z_bk, W_gk: z_bk @ W_gk.T, z, W, batch_size=64)
    var_k = np.array([1.0, 4.0, 9.0])
    Wn = W.numpy()
    expected = Wn**2 * var_k / (Wn**2 * var_k).sum(1, keepdims=True)
    np.testing.assert_allclose(share, expected, rtol=1e-6, atol=1e-9)
    assert (share[Wn == 0] == 0).all()


def test_effect_share_sees_a_factor_that_only_shifts_nothing():
    # a factor whose effect is cancelled by the decoder has share 0 even with W != 0
    z = _orthogonal_factors()
    W = torch.ones(2, 3, dtype=torch.float64)
    share = effect_share(lambda z_bk, W_gk: (z_bk[:, :2] @ W_gk[:, :2].T), z, W)
    assert share[:, 2].max() == 0 and share[:, :2].min() > 0


def test_candidate_supports_are_nested_distinct_and_largest_first():
    S0 = np.array([[1, 1, 0], [1, 0, 1]], bool)
    share = np.array([[0.9, 0.015, 0.5], [0.6, 0.0, 0.04]])
    cands = candidate_supports(S0, share)
    sizes = [int(S.sum()) for _, S in cands]
    assert sizes == [4, 3, 2] and [t for t, _ in cands] == [0.0, 0.02, 0.05]
    for (_, big), (_, small) in zip(cands, cands[1:]):
        assert (small <= big).all()
    # an entry outside the fitted support never comes back, whatever its share
    assert not any(S[0, 2] for _, S in cands)
    assert REFINE_THRESHOLDS[0] == 0.0
    with pytest.raises(ValueError, match="shape"):
        candidate_supports(S0, share[:, :2])


def test_one_se_choice_prefers_the_smaller_support_only_within_one_se():
    rng = np.random.default_rng(0)
    base = rng.standard_normal(200)
    big = base + 0.02                                   # best by a hair
    noise = rng.standard_normal(200)
    close = big - 0.001 + 0.05 * (noise - noise.mean())  # 0.001 worse, SE about 0.0035
    far = base - 1.0                                    # clearly worse
    assert one_se_choice([big, close], [5, 3]) == 1
    assert one_se_choice([big, far], [5, 3]) == 0
    assert one_se_choice([big, close, far], [5, 3, 2]) == 1
    with pytest.raises(ValueError, match="shape"):
        one_se_choice([big, close], [5])
