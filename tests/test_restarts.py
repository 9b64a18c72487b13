import arviz_stats as azs
import numpy as np
import pytest
import torch

import pyro_sparse as ps
from pyro_sparse.diagnostics import match_factors, to_arviz
from pyro_sparse.restarts import Restarts, align_factors


def test_align_factors_recovers_permutation_and_signs():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((400, 3))
    z = np.column_stack([-ref[:, 2], 3 * ref[:, 0] + 0.1 * rng.standard_normal(400),
                         ref[:, 1]])
    perm, signs, corr = align_factors(ref, z)
    np.testing.assert_array_equal(perm, [1, 2, 0])
    np.testing.assert_array_equal(signs, [1, 1, -1])
    assert corr.min() > 0.99
    aligned = Restarts([None, None], [np.arange(3), perm], [np.ones(3), signs],
                       [np.ones(3), corr], [0, 1]).align([ref, z])
    np.testing.assert_allclose(aligned[1][:, [0, 2]], ref[:, [0, 2]] * [3, 1], atol=0.5)
    with pytest.raises(ValueError, match="one shape"):
        align_factors(ref, z[:, :2])


def test_fit_restarts_chains_and_template_untouched():
    d = ps.datasets.paper_synthetic(n=200, seed=1)
    template = ps.SparseVAE(n_factors=3, hidden_dim=8, w_guide="meanfield", n_restarts=5)
    R = ps.fit_restarts(template, d.X, n_restarts=2, seed=7, epochs=3, progress=False)
    assert not hasattr(template, "model_") and template.n_restarts == 5
    assert len(R) == 2 and R.seeds_ == [7, 8]
    assert all(e.n_restarts == 1 for e in R.estimators_)
    np.testing.assert_array_equal(R.permutations_[0], np.arange(3))
    assert R.transform(d.X).shape == (2, 200, 3)
    dt = to_arviz(R, num_samples=20)
    assert dt.posterior["W"].shape == (2, 20, 7, 3)
    assert dt.sample_stats["loss"].shape == (2, 3)
    # chain 1 holds restart 1's draws permuted and sign-flipped as the alignment says
    W1 = R.estimators_[1].posterior_draws(20)["W"]
    np.testing.assert_allclose(dt.posterior["W"].values[1],
                               W1[..., R.permutations_[1]] * R.signs_[1])
    with pytest.raises(TypeError, match="seed must be an integer"):
        ps.fit_restarts(template, d.X, n_restarts=2, seed="0", epochs=1, progress=False)
    with pytest.raises(ValueError, match="n_restarts"):
        ps.fit_restarts(template, d.X, n_restarts=0)
    assert R[1] is R.estimators_[1] and list(R) == R.estimators_ and len(R) == 2
    with pytest.raises(TypeError, match="got the class SparseVAE; e.g. fit_restarts"):
        ps.fit_restarts(ps.SparseVAE, d.X, n_restarts=2)
    with pytest.raises(TypeError, match="got a str"):
        ps.fit_restarts("SparseVAE", d.X, n_restarts=2)


@pytest.mark.parametrize("in_workers", [False, True], ids=["serial", "worker path"])
def test_fit_restarts_keeps_the_restarts_that_did_not_diverge(diverging, in_workers):
    d = ps.datasets.paper_synthetic(n=200, seed=1)
    template = ps.SparseVAE(n_factors=3, hidden_dim=8)
    diverging({7}, in_workers)  # the first restart diverges: align to the next
    with pytest.warns(ps.ConvergenceWarning, match="1 of 3 restarts diverged .seeds 7"):
        R = ps.fit_restarts(template, d.X, n_restarts=3, seed=7, epochs=2, progress=False,
                            n_jobs=2 if in_workers else 1)
    assert len(R) == 2 and R.seeds_ == [8, 9]
    assert R.failed_restarts_ == [{"seed": 7, "error": "loss became nan at epoch 0, step 1 "
                                   "(seed 7)"}]
    np.testing.assert_array_equal(R.permutations_[0], np.arange(3))
    diverging({7, 8})
    with pytest.raises(FloatingPointError, match="every restart diverged; restart seed 7"):
        ps.fit_restarts(template, d.X, n_restarts=2, seed=7, epochs=2, progress=False)


def test_fit_restarts_in_processes_equals_serial():
    # each restart is seeded as in a serial run; at one thread per fit the fits are the same
    # (refinement on: its held-out scores and support mask travel back too)
    d = ps.datasets.paper_synthetic(n=200, seed=1)
    template = ps.SparseVAE(n_factors=3, hidden_dim=8, refine_support=True,
                            validation_fraction=0.25)
    kw = dict(n_restarts=2, seed=7, epochs=4, progress=False)
    serial = ps.fit_restarts(template, d.X, **kw)
    par = ps.fit_restarts(template, d.X, n_jobs=2, **kw)
    assert par.seeds_ == serial.seeds_ == [7, 8]
    for a, b in zip(serial.estimators_, par.estimators_):
        np.testing.assert_array_equal(a.loadings_, b.loadings_)
        np.testing.assert_array_equal(a.loss_history_, b.loss_history_)
        assert a.refinement_ == b.refinement_
        assert a.fit_info_ == b.fit_info_
        torch.testing.assert_close(a.guide_.globals_guide.support_mask_gk,
                                   b.guide_.globals_guide.support_mask_gk)
    np.testing.assert_array_equal(par.permutations_, serial.permutations_)
    with pytest.raises(ValueError, match="n_jobs must be >= 1"):
        ps.fit_restarts(template, d.X, n_jobs=0, **kw)


def _z_rhat(R, X):
    dt = to_arviz(R, num_samples=100, X=X, factors=True)
    return azs.rhat(dt, var_names=["z"])["z"].median("obs_id").values


def test_sparse_vae_restarts_align_better_than_vae():
    # identifiability across restarts on the paper's synthetic data (K over-specified as in
    # the paper): the Sparse VAE's factors come back the same in every restart (up to order
    # and sign), the VAE's do not. See benchmarks/identifiability.py for the full study.
    d = ps.datasets.paper_synthetic(n=500, rho=0.0, seed=0)
    kw = dict(n_restarts=4, epochs=100, progress=False)
    S = ps.fit_restarts(ps.SparseVAE(n_factors=5), d.X, **kw)
    V = ps.fit_restarts(ps.VAE(n_factors=5), d.X, **kw)
    mS = match_factors(d.Z, S.transform(d.X)[0])
    mV = match_factors(d.Z, V.transform(d.X)[0])
    corr_S = S.alignment_corr_[1:, mS].mean()
    corr_V = V.alignment_corr_[1:, mV].mean()
    assert corr_S > 0.9 and corr_S > corr_V + 0.05
    assert _z_rhat(S, d.X)[mS].mean() < _z_rhat(V, d.X)[mV].mean()


def test_worker_fits_show_a_progress_bar(capsys):
    # with progress on, the parallel paths count finished fits (the workers stay quiet)
    d = ps.datasets.paper_synthetic(n=100, seed=0)
    template = ps.VAE(n_factors=2, hidden_dim=4)
    ps.fit_restarts(template, d.X, n_restarts=2, epochs=1, n_jobs=2, progress=True)
    assert "VAE restarts (2 processes)" in capsys.readouterr().err
    ps.select_n_factors(template, d.X, [1, 2], epochs=1, batch_size=50, n_jobs=2,
                        progress=True)
    assert "VAE fits of each K (2 processes)" in capsys.readouterr().err


def test_worker_warnings_point_at_the_users_call():
    # a warning raised inside a worker is re-issued at the line that asked for the fits
    d = ps.datasets.paper_synthetic(n=60, seed=0)
    template = ps.VAE(n_factors=2, hidden_dim=4)
    with pytest.warns(UserWarning, match="batch_size=100 is larger") as rec:
        ps.fit_restarts(template, d.X, n_restarts=2, epochs=1, n_jobs=2, progress=False)
    assert {w.filename for w in rec} == {__file__}
    with pytest.warns(UserWarning, match="batch_size=100 is larger") as rec:
        ps.select_n_factors(template, d.X, [1, 2], epochs=1, n_jobs=2, progress=False)
    assert {w.filename for w in rec} == {__file__}
