import numpy as np
import pytest

from pyro_sparse.diagnostics import (
    anchors,
    dci,
    dci_from_importance,
    estimated_support,
    match_factors,
    support_scores,
)


def test_match_factors_is_one_to_one_under_permutation_and_sign():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((500, 2))
    codes = np.column_stack([rng.standard_normal(500), -z[:, 1], rng.standard_normal(500),
                             2 * z[:, 0] + 0.1 * rng.standard_normal(500)])
    np.testing.assert_array_equal(match_factors(z, codes), [3, 1])
    # highly correlated truth: argmax would pick one column twice, Hungarian does not
    z2 = np.column_stack([z[:, 0], z[:, 0] + 0.3 * z[:, 1]])
    m = match_factors(z2, np.column_stack([z2[:, 1], z2[:, 0]]))
    assert len(set(m)) == 2


def test_support_scores_hand_case():
    truth = np.array([[1, 0], [0, 1], [1, 1]], bool)
    est = np.zeros((3, 3), bool)
    est[0, 2] = est[1, 0] = est[2, 0] = est[2, 1] = True  # one false positive at (2, 1)
    s = support_scores(truth, est, match=np.array([2, 0]))
    assert s["precision"] == pytest.approx(3 / 4)
    assert s["recall"] == pytest.approx(3 / 4)
    assert s["hamming"] == 2 and not s["exact"]
    exact = support_scores(truth, est & ~np.eye(3, dtype=bool)[[2, 2, 1]], np.array([2, 0]))
    assert exact["f1"] <= 1


def test_estimated_support_and_anchors():
    W = np.array([[0.5, 0.0], [0.005, 0.8], [0.3, -0.4]])
    p = np.array([[0.9, 0.1], [0.9, 0.9], [0.2, 0.7]])
    S = estimated_support(W, p)
    np.testing.assert_array_equal(S, [[True, False], [False, True], [False, True]])
    assert anchors(S) == {0: [0], 1: [1, 2]}


def test_dci_perfect_code_scores_one_and_mixed_code_lower():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((600, 2))
    perfect = np.column_stack([z[:, 1], z[:, 0], rng.standard_normal(600) * 0.0])
    d = dci(perfect, z)
    assert d["disentanglement"] > 0.95 and d["informativeness"] > 0.9
    rot = z @ np.array([[1, 1], [1, -1]]) / np.sqrt(2)
    assert dci(rot, z)["disentanglement"] < 0.5
    D, C = dci_from_importance(np.eye(2))
    assert D == pytest.approx(1.0) and C == pytest.approx(1.0)
    D, C = dci_from_importance(np.ones((2, 2)))
    assert D == pytest.approx(0.0, abs=1e-9) and C == pytest.approx(0.0, abs=1e-9)


def test_match_factors_prefer_takes_used_columns_first():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((400, 2))
    noise = 0.3 * rng.standard_normal((400, 3))
    # column 0 copies z0 exactly but is "unused"; columns 1, 2 track z0, z1 less closely
    codes = np.column_stack([z[:, 0], z[:, 0] + noise[:, 0], z[:, 1] + noise[:, 1]])
    np.testing.assert_array_equal(match_factors(z, codes), [0, 2])
    np.testing.assert_array_equal(match_factors(z, codes, prefer=[False, True, True]), [1, 2])
    # fewer preferred columns than true factors: the preferred one is used, then the best rest
    m = match_factors(z, codes, prefer=[False, False, True])
    assert m[1] == 2 and m[0] == 0
    with pytest.raises(ValueError, match="prefer has 2 entries"):
        match_factors(z, codes, prefer=[True, True])


def test_dci_input_errors_name_the_argument():
    rng = np.random.default_rng(0)
    codes, factors = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    with pytest.raises(ValueError, match="codes_nk has 20 rows but factors_nj has 19"):
        dci(codes, factors[:19])
    with pytest.raises(ValueError, match=r"factors_nj must be a 2-D array .* shape \(1, 2\)"):
        dci(codes, factors[:1])
    bad = codes.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="codes_nk has 1 non-finite value.*row 3, column 1"):
        dci(bad, factors)


def test_matching_and_mig_name_mismatched_rows():
    from pyro_sparse.diagnostics import mig

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 2)), rng.normal(size=(9, 2))
    with pytest.raises(ValueError, match="z_true_nj has 10 rows but z_hat_nk has 9"):
        match_factors(a, b)
    with pytest.raises(ValueError, match="z_nk has 10 rows but v_nj has 9"):
        mig(a, b)
    bad = a.copy()
    bad[4, 0] = np.inf
    with pytest.raises(ValueError, match="z_nk has 1 non-finite value.*row 4, column 0"):
        mig(bad, a)
