import numpy as np
import pytest

from pyro_sparse.diagnostics import coherence, label_association, top_features


def test_label_association_by_hand():
    z = np.array([[0.0, 1.0], [0.0, -1.0], [2.0, 1.0], [2.0, -1.0]])
    labels = ["a", "a", "b", "b"]
    t = label_association(z, labels)
    # factor 0 is all between-label variance, factor 1 all within-label
    np.testing.assert_allclose(t.eta2.to_numpy(), [1.0, 0.0])
    assert t.loc["factor_0", "top_label"] in ("a", "b")
    np.testing.assert_allclose(abs(t.loc["factor_0", "top_label_mean_sd"]), 1.0)
    with pytest.raises(ValueError, match="labels"):
        label_association(z, ["a"])


def test_top_features_and_coherence():
    W = np.array([[0.1, 0.0], [-3.0, 0.0], [2.0, 0.5], [0.0, 0.4]])
    assert top_features(W, 2, ["g0", "g1", "g2", "g3"]) == [["g1", "g2"], ["g2", "g3"]]
    rng = np.random.default_rng(0)
    s = rng.normal(size=500)
    x = np.stack([s, s + 0.01 * rng.normal(size=500), rng.normal(size=500)], 1)
    c = coherence(x, [[0, 1], [0, 2], [1]])
    assert c[0] > 0.99 and abs(c[1]) < 0.15 and np.isnan(c[2])
    np.testing.assert_allclose(coherence(x, [["a", "b"]], ["a", "b", "c"]), c[:1])
