"""Smoke tests of the benchmark harnesses: each piece runs and returns what the report reads.

The numbers themselves live in benchmarks/results/; these only guard the scripts against
bit rot (tiny sizes, a step or two each).
"""

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _impls  # noqa: E402
import calibration  # noqa: E402


@pytest.fixture
def _restore_matmul_precision():
    # the bf16 implementations flip a process-wide switch (the benchmark runs each in a fresh
    # process); other tests in this worker must see the default again
    before = torch.backends.mkldnn.matmul.fp32_precision
    yield
    torch.backends.mkldnn.matmul.fp32_precision = before


@pytest.mark.parametrize("impl", sorted(_impls.IMPLS))
def test_speed_impls_take_a_finite_step(impl, _restore_matmul_precision, _clear_param_store):
    x = _impls.make_data("synthetic")
    step = _impls.IMPLS[impl]("synthetic", x)
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:100]
    assert math.isfinite(step(idx)) and math.isfinite(step(idx))
    if impl.endswith("-bf16"):
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"


@pytest.fixture
def _clear_param_store():
    # the pyro-jit step registers its parameters in Pyro's global store
    import pyro

    yield
    pyro.clear_param_store()


@pytest.mark.parametrize("G", [7, 60])  # one block of features, and several
def test_pyro_jit_step_gradient_equals_the_eager_elbo(G, monkeypatch, _clear_param_store):
    import pyro
    from pyro.infer import Trace_ELBO

    from pyro_sparse.nn import default_block_size

    monkeypatch.setitem(_impls.SHAPES, "tiny", dict(N=300, G=G, K=5, H=50, B=100,
                                                    likelihood="normal"))
    assert (default_block_size(100, G, 50) < G) == (G == 60)
    x = torch.randn(300, G, generator=torch.Generator().manual_seed(1))
    step = _impls.pyro_jit_step("tiny", x)
    idx = torch.randperm(300, generator=torch.Generator().manual_seed(0))[:100]
    step(idx)  # compiles, and moves the weights off their start
    model, guide, N = step.parts
    eta_k = guide.globals_guide.eta_k.clone()  # every call takes one EM step for eta
    grads = []
    for run in ("jit", "eager"):
        pyro.set_rng_seed(3)
        guide.globals_guide.eta_k.copy_(eta_k)
        for p in step.params:
            p.grad = None
        if run == "jit":
            loss = step.loss_and_grad(idx)
        else:
            with pyro.validation_enabled(False):
                loss = Trace_ELBO().differentiable_loss(model, guide, x[idx], N, idx, 1.0, 1.0)
            loss.backward()
        grads.append((float(loss.detach()), [p.grad.clone() for p in step.params],
                      guide.globals_guide.eta_k.clone()))
    (l_jit, g_jit, eta_jit), (l_eager, g_eager, eta_eager) = grads
    # the traced graph keeps the EM step's in-place update of the eta buffer
    assert not torch.equal(eta_jit, eta_k)
    torch.testing.assert_close(eta_jit, eta_eager)
    assert l_jit == pytest.approx(l_eager, rel=1e-5)
    for a, b in zip(g_jit, g_eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    pyro.set_rng_seed(4)
    assert float(step.loss_and_grad(idx)) != pytest.approx(l_jit, rel=1e-6)  # fresh noise


@pytest.mark.parametrize("decoder", ["frozen", "learned"])
def test_calibration_fit_one_rows(decoder):
    rows = calibration.fit_one((0, "meanfield", 2, 10.0, 1.0, 1, False, True, decoder,
                                  decoder == "learned", False, None, "random", None, 0, False))
    assert len(rows) == 24 * 3
    r = rows[0]
    assert {"W_true", "gamma", "p_star", "in90", "recovered"} <= set(r)
    assert 0.0 <= r["p_star"] <= 1.0
    # the decoder-learned setting scores p* only: W is not identified there
    assert math.isnan(r["in90"]) == (decoder == "learned")
    assert r["guide"].endswith("(random start, 2 epochs)" if decoder == "frozen" else
                               "(decoder learned, SparseVAE.fit, spike entries 0, 2 epochs)")
    summ = calibration.summarize(pd.DataFrame(rows))
    assert summ[0]["reps"] == 1 and 0.0 <= summ[0]["brier"] <= 1.0
    assert (summ[0]["a1"] == "-") == (decoder == "frozen")
    assert 0.0 <= summ[0]["f1"] <= 1.0
    # the merged read-out is scored per fit with the decoder learned only
    assert (summ[0]["f1_merged"] == "-") == (decoder == "frozen")
    if decoder == "learned":
        assert 0.0 <= float(summ[0]["f1_merged"]) <= 1.0
    pv = summ[0]["noise"].p_value  # NaN when no bin of these 72 entries holds 20
    assert math.isnan(pv) == math.isnan(summ[0]["max_reliability_gap"])
    assert math.isnan(pv) or 0.0 <= pv <= 1.0


def _calibration_frame(rng, n_seeds, shrink):
    # entries whose truth follows p* shrunk towards 0.5 by ``shrink`` (0: calibrated)
    rows = []
    for seed in range(n_seeds):
        p = rng.uniform(size=(24, 3))
        truth = rng.uniform(size=p.shape) < 0.5 + (p - 0.5) * (1 - shrink)
        for g in range(24):
            for k in range(3):
                rows.append(dict(seed=seed, guide="g", g=g, k=k, W_true=float(truth[g, k]),
                                 gamma=bool(truth[g, k]), q_mean=0.0, q_sd=1.0,
                                 p_star=p[g, k], in50=1.0, in90=1.0, ordered=True,
                                 recovered=True, seconds=1.0))
    return pd.DataFrame(rows)


def test_calibration_render_reports_sampling_noise(tmp_path, monkeypatch):
    monkeypatch.setattr(calibration, "RESULTS", tmp_path)
    rng = np.random.default_rng(0)
    good = calibration.summarize(_calibration_frame(rng, 20, 0.0))[0]
    bad = calibration.summarize(_calibration_frame(rng, 20, 0.6))[0]
    # 1,440 entries: a calibrated p* shows a gap of ~0.1 by chance; a shrunk truth beyond it
    assert 0.05 < good["noise"].calibrated_quantile < 0.3
    assert good["noise"].p_value > 0.01 and good["noise"].n_outside == 0
    assert bad["noise"].p_value < 0.01 and bad["noise"].n_outside >= 1
    assert math.isfinite(good["oracle_gap"])
    calibration.render(_calibration_frame(rng, 2, 0.0), "noise")
    md = (tmp_path / "noise.md").read_text()
    assert "gap a calibrated p* would show (95%)" in md and "] (" in md
    assert "Posterior of W or eta?" in md


def test_calibration_render_keeps_the_seeds_asked_for(tmp_path, monkeypatch):
    monkeypatch.setattr(calibration, "RESULTS", tmp_path)
    _calibration_frame(np.random.default_rng(0), 5, 0.0).to_csv(tmp_path / "all.csv",
                                                                  index=False)
    assert calibration.main(["--render", str(tmp_path / "all.csv"), "--render-seeds", "1",
                             "3", "--name", "some"]) == 0
    assert "| g | 3 |" in (tmp_path / "some.md").read_text()  # three data sets
    with pytest.raises(SystemExit):
        calibration.main(["--render", str(tmp_path / "all.csv"), "--render-seeds", "7", "9"])
    with pytest.raises(SystemExit):
        calibration.main(["--render-seeds", "1", "3"])
    # tags tell apart two runs of one setting
    assert calibration.main(["--render", str(tmp_path / "all.csv"), str(tmp_path / "all.csv"),
                             "--render-tags", "old", "new", "--name", "tagged"]) == 0
    md = (tmp_path / "tagged.md").read_text()
    assert "| g [old] | 5 |" in md and "| g [new] | 5 |" in md
    with pytest.raises(SystemExit):
        calibration.main(["--render", str(tmp_path / "all.csv"), "--render-tags", "a", "b"])


def test_calibration_spikeslab_guide_rows():
    rows = calibration.fit_one((0, "spikeslab", 2, 10.0, 1.0, 1, False, True, "frozen",
                                  False, False, None, "random", None, 0, False))
    d = pd.DataFrame(rows)
    assert len(d) == 72 and d["p_star"].between(0, 1).all() and (d["q_sd"] > 0).all()
    assert d["eta_fit"].between(0, 1).all()


def test_calibration_lr_decay_is_passed_and_labelled():
    rows = pd.DataFrame(calibration.fit_one((0, "meanfield", 2, 10.0, 1.0, 1, False, True,
                                             "frozen", False, False, None, "random", None, 0,
                                             False, 0.25)))
    assert rows["guide"].str.contains("lr_decay=0.25").all() and (rows["q_sd"] > 0).all()
    with pytest.raises(SystemExit):
        calibration.main(["--lr-decay", "1.5"])


def _spy_on_infer(monkeypatch, name):
    # replace pyro_sparse.infer.<name> by a wrapper that records each call's keywords
    import pyro_sparse.infer as infer

    calls = []
    real = getattr(infer, name)

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(infer, name, spy)
    return calls


def test_calibration_refine_posterior_is_run_and_labelled(monkeypatch):
    calls = _spy_on_infer(monkeypatch, "refine_posterior")
    rows = pd.DataFrame(calibration.fit_one((0, "meanfield", 2, 10.0, 1.0, 1, False, True,
                                             "frozen", False, False, None, "random", None, 0,
                                             False, 0.25, 3)))
    # the fit before the refinement is scored beside it: 72 entries each
    after = rows[rows["guide"].str.endswith("lr_decay=0.25, posterior refined 3 epochs)")]
    before = rows[rows["guide"].str.endswith("lr_decay=0.25)")]
    assert len(after) == len(before) == 72 and len(rows) == 144
    assert len(calls) == 1 and calls[0]["epochs"] == 3 and calls[0]["lr_decay"] == 0.25
    assert (rows["q_sd"] > 0).all()
    assert (after["seconds"].to_numpy() > before["seconds"].to_numpy()).all()
    np.testing.assert_array_equal(after["W_true"], before["W_true"])
    assert not np.allclose(after["q_mean"], before["q_mean"])
    with pytest.raises(SystemExit):
        calibration.main(["--refine-posterior", "-1"])


def test_calibration_feature_modes_are_searched_and_labelled(monkeypatch):
    calls = _spy_on_infer(monkeypatch, "search_feature_modes")
    rows = pd.DataFrame(calibration.fit_one((0, "meanfield", 4, 10.0, 1.0, 2, False, True,
                                             "frozen", False, False, None, "random", None, 0,
                                             False, 0.25, 0, 2)))
    assert len(rows) == 72 and (rows["q_sd"] > 0).all()
    assert rows["guide"].str.endswith("feature modes searched (2 starts))").all()
    assert [c["n_starts"] for c in calls] == [2, 2]  # once per restart
    assert rows["features_moved"].between(0, 24).all()
    with pytest.raises(SystemExit):
        calibration.main(["--feature-modes", "-1"])
    with pytest.raises(SystemExit):
        calibration.main(["--feature-modes", "2", "--decoder", "learned"])


_REAL_FIT_ONE = calibration.fit_one


def _fit_one_failing_on_seed_1(task):
    # module level, so that the worker process can find it by name
    if task[0] == 1:
        raise FloatingPointError("loss became nan")
    return _REAL_FIT_ONE(task)


def test_calibration_run_keeps_the_replicates_that_finished(monkeypatch, tmp_path):
    monkeypatch.setattr(calibration, "RESULTS", tmp_path)
    monkeypatch.setattr(calibration, "fit_one", _fit_one_failing_on_seed_1)
    code = calibration.main(["--reps", "2", "--epochs", "2", "--guides", "meanfield",
                             "--jobs", "1", "--name", "partial"])
    assert code == 1
    df = pd.read_csv(tmp_path / "partial.csv")
    assert set(df["seed"]) == {0} and len(df) == 72
    md = (tmp_path / "partial.md").read_text()
    assert "Failed replicates" in md and "seed 1: FloatingPointError('loss became nan')" in md


def test_calibration_eta_diagnosis_reads_eta_back():
    from pyro_sparse.distributions.ssl import inclusion_prob

    rng = np.random.default_rng(1)
    d = _calibration_frame(rng, 3, 0.0)
    w = rng.laplace(scale=0.3, size=len(d))
    p = inclusion_prob(torch.as_tensor(w), torch.tensor(0.3), 10.0, 1.0).numpy()
    d = d.assign(q_mean=w, q_sd=1e-6, p_star=p)
    e = calibration._eta_diagnosis(d, 10.0, 1.0)
    assert e["eta_median"] == pytest.approx(0.3, abs=1e-3)
    assert e["rate_median"] == pytest.approx(d.groupby(["seed", "k"])["gamma"].mean().median())
    assert calibration._eta_diagnosis(d.assign(q_mean=np.nan), 10.0, 1.0) is None
    assert not e["eta_recorded"]
    # a recorded eta is read as it is; the spike-and-slab guide's q is not normal, so the
    # recomputation at the true rate is left out there
    e = calibration._eta_diagnosis(d.assign(eta_fit=0.42, guide="spikeslab (x)"), 10.0, 1.0)
    assert e["eta_recorded"] and e["eta_median"] == pytest.approx(0.42)
    assert math.isnan(e["gap"])


def test_calibration_surplus_factors_are_scored_as_true_zeros():
    # K=4 fitted for 3 true factors: the one left over after matching adds rows with gamma
    # False, so its used entries are false positives (random start here: the factor-analysis
    # start itself is tested in tests/infer/test_initialization.py)
    rows = pd.DataFrame(calibration.fit_one((0, "map", 2, 10.0, 1.0, 1, False, True, "learned",
                                             True, True, 4, "random", None, 0, False)))
    assert len(rows) == 24 * 4
    extra = rows[rows["k"] >= 3]
    assert len(extra) == 24 and not extra["gamma"].any() and (extra["W_true"] == 0).all()
    assert rows["guide"].iloc[0].endswith("K=4 fitted)")
    assert calibration.label("map", decoder="learned", fit_factors=4,
                             fit_init="factor_analysis").endswith(
        "K=4 fitted, factor-analysis start)")


def test_calibration_fit_kwargs_reach_the_estimator():
    # a recipe passed through --fit-kwargs is named in the row label and reaches SparseVAE
    base = (0, "map", 2, 10.0, 1.0, 1, False, True, "learned", True, True, None, "random")
    rows = pd.DataFrame(calibration.fit_one(base + ({"refine_support": True}, 0, False)))
    assert rows["guide"].iloc[0].endswith("2 epochs, refine_support=True)")
    with pytest.raises(ValueError, match="refine_polish"):  # SparseVAE's own check
        calibration.fit_one(base + ({"refine_polish": 3}, 0, False))
    with pytest.raises(SystemExit):
        calibration.main(["--fit-kwargs", '{"refine_support": true}'])  # frozen decoder
    with pytest.raises(SystemExit):
        calibration.main(["--reseed-rounds", "-1"])
    with pytest.raises(SystemExit):
        calibration.main(["--profile-loadings"])  # no re-seeding to profile


def test_calibration_reseeds_with_the_decoder_frozen(monkeypatch):
    # --reseed-rounds with the decoder frozen: the rounds run (reseed_fit told to leave the
    # known decoder alone) and the row label says so
    import pyro_sparse.infer as infer

    calls = []
    real = infer.reseed_fit

    def spy(model, guide, x, **kw):
        before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
        out = real(model, guide, x, **kw)
        calls.append((kw, all(torch.equal(v, before[k])
                              for k, v in model.decoder.state_dict().items())))
        return out

    monkeypatch.setattr(infer, "reseed_fit", spy)
    rows = calibration.fit_one((0, "meanfield", 2, 10.0, 1.0, 1, False, True, "frozen",
                                False, False, None, "random", None, 1, True))
    ((kw, unchanged),) = calls
    assert kw["n_rounds"] == 1 and kw["redraw_decoder"] is False and unchanged
    assert kw["profile_loadings"] is True
    assert rows[0]["guide"].endswith(
        "(random start, 2 epochs, reseed_rounds=1, loadings profiled)")
    assert not math.isnan(rows[0]["in90"])


def test_simulate_exact_zeros_keeps_the_draws_on_the_support():
    _, _, gamma, W, _ = calibration.simulate(3, n=50)
    _, _, gamma0, W0, _ = calibration.simulate(3, n=50, exact_zeros=True)
    assert (gamma == gamma0).all() and (W0[~gamma0] == 0).all()
    assert (W0[gamma0] == W[gamma]).all() and (W[~gamma] != 0).any()
    x1, *_ = calibration.simulate(3, n=500, exact_zeros=True, unit_signal=True)
    sd = x1.std(0).numpy()  # signal sd 1 + noise sd 0.3, or noise alone
    np.testing.assert_allclose(sd[gamma0.any(1)], np.sqrt(1 + 0.09), rtol=0.1)
    np.testing.assert_allclose(sd[~gamma0.any(1)], 0.3, rtol=0.15)


@pytest.mark.parametrize("guide", ["map", "meanfield"])
def test_calibration_truth_start_starts_at_the_truth(guide):
    rows = pd.DataFrame(calibration.fit_one((0, guide, 1, 10.0, 1.0, 1, True, False, "frozen",
                                             False, False, None, "random", None, 0, False)))
    # one epoch (10 Adam steps at lr 0.01) moves no entry far from where it started
    err = (rows["q_mean"] - rows["W_true"]).abs()
    assert rows["ordered"].all() and err.max() < 0.2


def test_recoverability_rows_and_table():
    import recoverability

    row = recoverability.diagnose(0, n=300)
    assert 0.0 <= row["readout_min"] <= 1.0 and 1 <= row["fa_bic"] <= 9
    assert all(0.0 <= row[f"fa_cc_{m}"] <= 1.0 + 1e-9 for m in (3, 6, 9))
    # nested factor analyses: a larger subspace is not much worse at containing z
    assert row["fa_cc_9"] >= row["fa_cc_3"] - 0.05
    assert 0 <= row["even_anchors"] <= row["anchors"] and 0 <= row["fa_start_found"] <= 3
    assert all(0 <= row[f"vm_oracle_{m}"] <= 3 for m in (6, 9))
    text = recoverability.render([row], "t")
    assert "| 0 |" in text and "supervised readout" in text


def test_redundancy_one_fit_and_render(tmp_path):
    import redundancy

    row = redundancy.fit_one(("paper rho=0.4, K=1", 0, 30))
    assert not row["recovered"] and row["resid_eig"] > row["resid_edge"]
    assert 0 <= row["listed_on_missed"] <= row["n_listed"]
    rows = [dict(row, data=d, seed=s, recovered=s == 1, resid_eig=1.0 + s)
            for d in ("model", "paper rho=0.0") for s in range(3)]
    csv = tmp_path / "r.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    assert redundancy.main(["--render", str(csv), "--name", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out.md").read_text()
    assert "| model | 3 | 2 |" in text and "Residual check" in text


def test_parallel_restarts_rows_and_table(tmp_path):
    import parallel_restarts

    threads = torch.get_num_threads()
    try:
        parallel_restarts.main(["--rhos", "0.4", "--epochs", "2", "--jobs", "2", "--settings",
                                "5 restarts by ELBO", "K selection (K = 2-6)",
                                "--probe-reps", "20",
                                "--name", str(tmp_path / "par")])
    finally:
        torch.set_num_threads(threads)
    rows = pd.read_csv(tmp_path / "par.csv")
    assert list(rows["mode"]) == ["serial, 1 thread", "serial, 2 threads", "n_jobs=2"] * 2
    # the workers' restarts (and fits of each K) are the serial ones: bit-identical results
    assert bool(rows["same_as_serial_1_thread"].iloc[2])
    assert bool(rows["same_as_serial_1_thread"].iloc[5])
    text = (tmp_path / "par.md").read_text()
    assert "| 5 restarts by ELBO | 0.4 | n_jobs=2 |" in text and "yes |" in text
    assert "Scaling probe" in text and "after the fits" in text


def test_startup_table(tmp_path):
    import startup

    startup.main(["--reps", "1", "--name", str(tmp_path / "st")])
    text = (tmp_path / "st.md").read_text()
    assert "| `import pyro_sparse` in a fresh interpreter" in text
    assert text.count("| `run_in_processes`") == 3


def test_column_scales_rows_and_report(tmp_path, monkeypatch):
    import column_scales

    monkeypatch.setattr(column_scales, "RESULTS", tmp_path)
    rows = [column_scales.run_one((label, shift, scale, std, 0, 0.4, 2))
            for label, shift, scale in column_scales.SETTINGS[:2] for std in (False, True)]
    assert all(np.isfinite(r["mse_x1"]) and np.isfinite(r["mse_others"]) for r in rows)
    column_scales.render(pd.DataFrame(rows), "scales", "cmd", 1.0)
    md = (tmp_path / "scales.md").read_text()
    assert "| x1 + 20 | True |" in md and "| as simulated | False |" in md


def test_missed_factors_tells_a_fold_from_a_found_and_a_lost_factor():
    import missed_factors as mf

    rng = np.random.default_rng(0)
    z = rng.standard_normal((600, 3))
    x = np.column_stack([z[:, 0], z[:, 0] ** 2, np.abs(z[:, 1]), z[:, 1], z[:, 2], z[:, 2]])
    x = x + 0.1 * rng.standard_normal(x.shape)
    gamma = np.zeros((6, 3), dtype=bool)
    gamma[[0, 1], 0] = gamma[[2, 3], 1] = gamma[[4, 5], 2] = True
    # codes: z0 as it is, z1 folded to its size, z2 absent (noise)
    codes = np.column_stack([z[:, 0], np.abs(z[:, 1]), rng.standard_normal(600)])
    rows = {r["factor"]: r for r in mf.factor_rows(x, z, gamma, codes)}
    assert [rows[k]["status"] for k in range(3)] == ["found", "folded", "lost"]
    assert rows[1]["fold_corr"] > 0.95 and rows[1]["r2_from_codes"] < 0.2
    assert rows[1]["r2_abs_from_codes"] > 0.9 and rows[1]["r2_from_x"] > 0.9
    assert rows[0]["even_anchors"] == 1 and rows[1]["even_anchors"] == 1
    assert rows[2]["even_anchors"] == 0 and rows[2]["anchors"] == 2
    assert mf.classify(0.95, 0.0, 0.0) == "found" and mf.classify(0.85, 0.9, 0.9) == "carried"
    assert mf.classify(0.5, 0.6, 0.85) == "partial" and mf.classify(0.2, 0.1, 0.3) == "lost"


def test_missed_factors_render_counts(tmp_path, monkeypatch):
    import missed_factors as mf

    monkeypatch.setattr(mf, "RESULTS", tmp_path)
    base = dict(fold_corr=0.3, r2_from_x=0.95, r2_from_codes=0.9, r2_abs_from_codes=0.9,
                anchors=3, even_anchors=1, reseed_rounds=0, standardized=True, cpu_s=10.0)
    df = pd.DataFrame([dict(base, seed=1, factor=0, matched_corr=0.99, status="found"),
                       dict(base, seed=1, factor=1, matched_corr=0.3, status="folded"),
                       dict(base, seed=2, factor=0, matched_corr=0.95, status="found"),
                       dict(base, seed=2, factor=1, matched_corr=0.97, status="found")])
    text = mf.render(df, "t", "cmd", 1.0)
    assert "found 3, carried 0, folded 1, partial 0, lost 0" in text
    assert "every factor found: 1 of 2" in text
    assert (tmp_path / "t.md").read_text() == text


def test_calibration_no_unfold_is_labelled():
    assert calibration.label("map", decoder="learned", fit_kwargs={"reseed_rounds": 5},
                             unfold=False).endswith("no unfolding)")
    assert "unfolding" not in calibration.label("map", decoder="learned", unfold=False)
