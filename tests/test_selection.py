import numpy as np
import pandas as pd
import pytest

import pyro_sparse as ps


def test_select_n_factors_table_and_recommendation():
    d = ps.datasets.paper_synthetic(n=600, seed=0)
    X = pd.DataFrame(d.X, columns=d.feature_names)
    t = ps.select_n_factors(ps.SparseVAE(), X, [1, 2, 4], heldout=0.25, epochs=150,
                            progress=False)
    assert list(t["n_factors"]) == [1, 2, 4]
    assert t["recommended"].sum() == 1
    assert t.attrs["n_heldout"] == 150 and t.attrs["n_train"] == 450
    assert np.isfinite(t["heldout_loglik"]).all()
    # the held-out log-likelihood (IWAE) is at least the held-out ELBO, up to MC noise
    assert (t["heldout_loglik"] > t["heldout_elbo"] - 0.05).all()
    # two true factors: one factor fits the held-out rows clearly worse than two; the
    # over-specified fit (K=4) leaves factors empty
    assert t.loc[1, "heldout_loglik"] > t.loc[0, "heldout_loglik"] + 0.5
    assert t.loc[2, "used_factors"] < 4
    assert (t["used_factors"] <= t["n_factors"]).all()
    # one factor for two: the residuals of the missed factor's features move together
    assert t.loc[0, "residual_flag"] and t.loc[0, "residual_eig"] > t.loc[1, "residual_eig"]
    v = ps.select_n_factors(ps.VAE(hidden_dim=8), d.X, [2], epochs=2, progress=False)
    assert v["recommended"].all()


def test_select_n_factors_bad_input():
    X = np.zeros((10, 3))
    with pytest.raises(ValueError, match="at least one K"):
        ps.select_n_factors(ps.VAE(), X, [])
    with pytest.raises(ValueError, match="lists K = 2 more than once"):
        ps.select_n_factors(ps.VAE(), X, [2, 3, 2])
    with pytest.raises(TypeError, match="got the class VAE; e.g. select_n_factors"):
        ps.select_n_factors(ps.VAE, X, [1])
    with pytest.raises(ValueError, match="heldout"):
        ps.select_n_factors(ps.VAE(), X, [1], heldout=1.0)
    with pytest.raises(ValueError, match="n_factors"):
        ps.select_n_factors(ps.VAE(), X, [0])
    with pytest.raises(ValueError, match="n_jobs must be >= 1"):
        ps.select_n_factors(ps.VAE(), X, [1, 2], n_jobs=0)
    with pytest.raises(TypeError, match="n_jobs must be an integer"):
        ps.select_n_factors(ps.VAE(), X, [1, 2], n_jobs=1.5)


def test_select_n_factors_in_processes_equals_serial():
    # every K is fitted with the same seed as in a serial run; at one thread per fit the
    # fits, and so the whole table, are the same
    d = ps.datasets.paper_synthetic(n=200, seed=2)
    kw = dict(heldout=0.25, seed=3, epochs=3, progress=False)
    template = ps.SparseVAE(hidden_dim=8, refine_support=True, validation_fraction=0.25)
    serial = ps.select_n_factors(template, d.X, [1, 3], **kw)
    par = ps.select_n_factors(template, d.X, [1, 3], n_jobs=2, **kw)
    pd.testing.assert_frame_equal(serial, par)
    assert serial.attrs == par.attrs
