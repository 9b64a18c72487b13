import numpy as np
import pytest

from pyro_sparse.diagnostics import active_units, discretize, latent_activity, mig


def test_mig_perfect_entangled_and_duplicated_codes():
    rng = np.random.default_rng(0)
    v = rng.uniform(size=(2000, 2))
    perfect = np.column_stack([v[:, 1], rng.normal(size=2000), v[:, 0] * 5])
    r = mig(perfect, v)
    assert r["mig"] > 0.9
    assert r["mutual_info"].shape == (3, 2)
    # the same factor copied twice: no gap
    dup = np.column_stack([v[:, 0], v[:, 0], v[:, 1], v[:, 1]])
    assert mig(dup, v)["mig"] < 1e-9
    # noise only: no information
    assert mig(rng.normal(size=(2000, 2)), v)["mig"] < 0.1
    with pytest.raises(ValueError, match="at least 2"):
        mig(v[:, :1], v)


def test_discretize_keeps_categories_and_bins_continuous():
    x = np.column_stack([np.repeat([3.0, 7.0], 50), np.linspace(0, 1, 100)])
    d = discretize(x, n_bins=10)
    assert set(d[:, 0]) == {0, 1}
    assert d[:, 1].min() == 0 and d[:, 1].max() == 9


def test_latent_activity_hand_case():
    n = 100
    mu = np.zeros((n, 3))
    sd = np.ones((n, 3))
    sd[:, 0] = 0.1                 # active everywhere
    mu[:, 1] = 0.1                 # passive: sd 1, mean near 0
    sd[: n // 2, 2] = 0.1          # active on half the rows, passive on the others
    r = latent_activity(mu, sd)
    assert list(r["labels"]) == ["active", "passive", "mixed"]
    np.testing.assert_allclose(r["active_fraction"], [1, 0, 0.5])
    with pytest.raises(ValueError, match="one shape"):
        latent_activity(mu, sd[:, :2])


def test_active_units():
    rng = np.random.default_rng(0)
    mu = np.column_stack([rng.normal(size=500), 0.01 * rng.normal(size=500)])
    np.testing.assert_array_equal(active_units(mu), [True, False])
