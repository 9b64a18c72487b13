import warnings

import numpy as np
import pytest

import pyro_sparse as ps
from pyro_sparse.infer import loss_trend


def test_falling_history_is_not_converged():
    E, N, G = 200, 1000, 10
    rng = np.random.default_rng(0)
    # per row: 20 -> 12 nats, still falling by 0.04 per epoch at the end
    h = N * (20 - 0.04 * np.arange(E) + 0.01 * rng.standard_normal(E))
    tr = loss_trend(h, N, G)
    assert tr["converged"] is False and tr["window"] == 40
    np.testing.assert_allclose(tr["slope_per_row"], -0.04, rtol=0.05)
    np.testing.assert_allclose(tr["projected_gain"], 0.04 * E / G, rtol=0.05)
    assert tr["t"] < -3


def test_flat_or_slowly_drifting_history_is_converged():
    E, N, G = 200, 500, 7
    rng = np.random.default_rng(1)
    flat = N * (10 + 0.2 * rng.standard_normal(E))
    assert loss_trend(flat, N, G)["converged"] is True
    # significant but small drift (0.001 nats per row and epoch: 0.03 per row and feature
    # over as many epochs again) stays below the gain threshold
    drift = N * (10 - 0.001 * np.arange(E) + 1e-4 * rng.standard_normal(E))
    tr = loss_trend(drift, N, G)
    assert tr["t"] < -3 and tr["converged"] is True


@pytest.mark.parametrize("h", [[5.0] * 4, [1.0, float("nan")] * 10])
def test_short_or_broken_history_is_not_judged(h):
    assert loss_trend(h, 10, 2)["converged"] is None


def test_fit_warns_and_records_the_trend(monkeypatch, tmp_path):
    # the wiring: whatever history the training loop returns is judged, recorded and warned
    # about (the dynamics that produce such histories are in benchmarks/README.md)
    import pyro_sparse.estimators as est_mod

    real = est_mod.fit_svi

    def falling(*args, **kwargs):
        hist = real(*args, **kwargs)
        n = args[2].shape[0]
        return [n * (20.0 - 0.5 * e) for e in range(len(hist))]

    d = ps.datasets.paper_synthetic(n=200, seed=0)
    monkeypatch.setattr(est_mod, "fit_svi", falling)
    with pytest.warns(ps.ConvergenceWarning, match="still falling"):
        m = ps.SparseVAE(n_factors=2, hidden_dim=8).fit(d.X, epochs=16, progress=False)
    tr = m.fit_info_["loss_trend"]
    assert tr["converged"] is False and tr["projected_gain"] > 0.2
    monkeypatch.setattr(est_mod, "fit_svi", real)
    m2 = ps.SparseVAE(n_factors=2, hidden_dim=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ps.ConvergenceWarning)
        m2.fit(d.X, epochs=5, progress=False)  # too short to judge: no warning
    assert m2.fit_info_["loss_trend"]["converged"] is None
    m2.save(tmp_path / "m")
    assert ps.SparseVAE.load(tmp_path / "m").fit_info_["loss_trend"]["converged"] is None


def test_a_final_lr_decay_is_not_read_as_unfinished_training():
    E, N, G = 200, 500, 7
    rng = np.random.default_rng(2)
    # flat at a constant rate, then the last 50 epochs settle 2 nats per row lower
    h = N * (10 + 0.05 * rng.standard_normal(E))
    h[150:] -= N * np.linspace(0, 2, 50)
    assert loss_trend(h, N, G)["converged"] is False  # the decay looks like a falling loss
    tr = loss_trend(h, N, G, exclude_last=50)
    assert tr["converged"] is True and tr["window"] == 30  # 20% of the 150 epochs before it
    # a fit still falling when the decay began is still caught
    falling = N * (20 - 0.04 * np.arange(E) + 0.01 * rng.standard_normal(E))
    assert loss_trend(falling, N, G, exclude_last=50)["converged"] is False
    with pytest.raises(ValueError, match="exclude_last"):
        loss_trend(h, N, G, exclude_last=-1)


@pytest.mark.parametrize("kwargs,epochs,expected", [
    (dict(lr_decay=0.25), 200, 50),
    (dict(lr_decay=0.25, reseed_rounds=2), 200, 25),  # the last round's 100 epochs
    (dict(lr_decay=0.1, reseed_rounds=1, reseed_epochs=30), 200, 3),
    (dict(lr_decay=0.0), 200, 0),
    (dict(), 200, 50),  # the default: 0.25
])
def test_the_check_skips_the_last_trainings_decay(kwargs, epochs, expected):
    assert ps.SparseVAE(**kwargs)._decay_epochs(epochs) == expected
