import json
import warnings

import numpy as np
import pandas as pd
import pyro
import pytest
import torch

import pyro_sparse as ps


@pytest.fixture(scope="module")
def data():
    return ps.datasets.paper_synthetic(n=300, rho=0.4, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    m = ps.SparseVAE(n_factors=4, hidden_dim=16)
    return m.fit(data.X, epochs=4, batch_size=100, seed=0, progress=False)


def test_fitted_attributes_and_shapes(fitted, data):
    G, K = 7, 4
    assert fitted.loadings_.shape == (G, K)
    assert fitted.inclusion_probs_.shape == (G, K)
    assert ((fitted.inclusion_probs_ >= 0) & (fitted.inclusion_probs_ <= 1)).all()
    assert fitted.eta_.shape == (K,) and fitted.sigma_.shape == (G,)
    assert fitted.loss_history_.shape == (4,)
    assert fitted.transform(data.X).shape == (300, K)
    assert fitted.reconstruct(data.X).shape == (300, G)
    assert np.isfinite(fitted.score(data.X))


def test_score_with_a_seed_ignores_what_ran_before(fitted, data):
    # a Monte Carlo ELBO: with seed= it is a function of (model, X, seed) only
    torch.manual_seed(1)
    a = fitted.score(data.X, seed=5)
    torch.randn(100)
    state = torch.get_rng_state()
    assert fitted.score(data.X, seed=5) == a
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is left alone
    assert fitted.score(data.X, seed=6) != a
    with pytest.raises(TypeError, match="seed must be an integer or None"):
        fitted.score(data.X, seed=0.5)


def test_inputs_numpy_torch_dataframe(data, fitted):
    df = pd.DataFrame(data.X, columns=data.feature_names)
    m = ps.SparseVAE(n_factors=2, hidden_dim=8).fit(df, epochs=1, progress=False)
    assert m.feature_names_in_ == data.feature_names
    np.testing.assert_allclose(m.transform(df), m.transform(torch.tensor(data.X)), rtol=1e-5)
    with pytest.raises(ValueError, match="feature names differ"):
        m.transform(df.rename(columns={"x3": "gene3"}))
    with pytest.raises(TypeError, match="non-numeric column"):
        m.fit(df.assign(x1="a"), epochs=1, progress=False)


def test_duplicate_feature_names_warn(data):
    df = pd.DataFrame(data.X, columns=["a", "b", "a", "c", "d", "b", "e"])
    with pytest.warns(UserWarning, match=r"2 duplicated feature name\(s\) \('a' at columns "
                                         r"\[0, 2\]; 'b' at columns \[1, 5\]\)") as rec:
        m = ps.SparseVAE(n_factors=2, hidden_dim=8).fit(df, epochs=1, progress=False)
    dup = [w for w in rec if "duplicated feature name" in str(w.message)]
    assert len(dup) == 1 and dup[0].filename == __file__  # once, at the user's call
    assert m.feature_names_in_ == list(df.columns)  # kept as given, nothing renamed
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        m.transform(df)  # said once, at fit


def test_same_seed_same_loadings(data):
    a = ps.SparseVAE(n_factors=3, hidden_dim=8).fit(data.X, epochs=2, seed=5, progress=False)
    b = ps.SparseVAE(n_factors=3, hidden_dim=8).fit(data.X, epochs=2, seed=5, progress=False)
    c = ps.SparseVAE(n_factors=3, hidden_dim=8).fit(data.X, epochs=2, seed=6, progress=False)
    np.testing.assert_array_equal(a.loadings_, b.loadings_)
    assert not np.array_equal(a.loadings_, c.loadings_)


def test_save_load_round_trip(fitted, data, tmp_path):
    path = fitted.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.safetensors"]
    m = ps.SparseVAE.load(path)
    np.testing.assert_array_equal(m.loadings_, fitted.loadings_)
    np.testing.assert_array_equal(m.inclusion_probs_, fitted.inclusion_probs_)
    np.testing.assert_array_equal(m.eta_, fitted.eta_)
    np.testing.assert_array_equal(m.loss_history_, fitted.loss_history_)
    np.testing.assert_allclose(m.transform(data.X), fitted.transform(data.X))
    np.testing.assert_allclose(m.reconstruct(data.X), fitted.reconstruct(data.X))
    fitted.save(path)  # overwriting a model folder is allowed
    assert not list(tmp_path.glob(".model*"))  # no temporary folders left


def test_vae_and_meanfield_and_categorical(data, tmp_path):
    v = ps.VAE(n_factors=3, beta=2.0, hidden_dim=8).fit(data.X, epochs=2, progress=False)
    assert not hasattr(v, "loadings_")
    assert v.transform(data.X).shape == (300, 3)
    v2 = ps.VAE.load(v.save(tmp_path / "vae"))
    np.testing.assert_allclose(v2.reconstruct(data.X), v.reconstruct(data.X))
    mf = ps.SparseVAE(n_factors=3, hidden_dim=8, w_guide="meanfield").fit(data.X, epochs=2,
                                                                          progress=False)
    assert mf.loadings_sd_.shape == (7, 3) and (mf.loadings_sd_ > 0).all()
    counts = np.random.default_rng(0).poisson(3.0, size=(50, 10)) + 1
    cat = ps.SparseVAE(n_factors=2, likelihood="categorical", hidden_dim=8)
    cat.fit(counts, epochs=2, batch_size=25, progress=False)
    rec = cat.reconstruct(counts)
    np.testing.assert_allclose(rec.sum(1), counts.sum(1), rtol=1e-4)
    assert cat.sigma_ is None


def test_restarts_keep_the_best_elbo(data):
    m = ps.SparseVAE(n_factors=2, hidden_dim=8, n_restarts=2)
    m.fit(data.X, epochs=2, seed=10, progress=False)
    assert m.fit_info_["chosen_restart_seed"] in (10, 11)


@pytest.mark.parametrize("in_workers", [False, True], ids=["serial", "worker path"])
def test_a_diverged_restart_does_not_lose_the_others(data, diverging, tmp_path, in_workers):
    diverging({11}, in_workers)
    m = ps.SparseVAE(n_factors=2, hidden_dim=8, n_restarts=2)
    with pytest.warns(ps.ConvergenceWarning, match="1 of 2 restarts diverged .seeds 11"):
        m.fit(data.X, epochs=2, seed=10, progress=False, n_jobs=2 if in_workers else 1)
    assert m.fit_info_["chosen_restart_seed"] == 10
    assert m.fit_info_["failed_restarts"] == [
        {"seed": 11, "error": "loss became nan at epoch 0, step 1 (seed 11)"}]
    assert np.isfinite(m.loadings_).all()
    m.save(tmp_path / "m")
    assert ps.SparseVAE.load(tmp_path / "m").fit_info_["failed_restarts"][0]["seed"] == 11


def test_every_restart_diverged_or_a_single_fit_raises(data, diverging):
    diverging({10, 11})
    m = ps.SparseVAE(n_factors=2, hidden_dim=8, n_restarts=2)
    with pytest.raises(FloatingPointError, match="every restart diverged; restart seed 10"):
        m.fit(data.X, epochs=2, seed=10, progress=False)
    assert not hasattr(m, "model_")
    with pytest.raises(FloatingPointError, match=r"^loss became nan .*\(seed 10\)$"):
        ps.SparseVAE(n_factors=2, hidden_dim=8).fit(data.X, epochs=2, seed=10, progress=False)


# ------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad,kind", [(np.inf, "inf"), (-np.inf, "-inf")])
def test_infinite_input_names_row_and_column(data, bad, kind):
    X = data.X.copy()
    X[17, 4] = bad
    m = ps.SparseVAE(n_factors=2)
    with pytest.raises(ValueError, match=f"first: {kind} at row 17, column 4"):
        m.fit(X, epochs=1, progress=False)
    assert not hasattr(m, "model_")  # nothing fitted


def test_wrong_feature_count_in_transform(fitted):
    with pytest.raises(ValueError, match="has 6 features .* fitted on 7"):
        fitted.transform(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="not fitted"):
        ps.SparseVAE().transform(np.zeros((3, 6)))
    # one row on its own: the message says how to pass it
    import pandas as pd

    row = pd.DataFrame(np.zeros((2, 7))).iloc[0]
    with pytest.raises(ValueError, match=r"got shape \(7,\); for a single row .*to_frame\(\)\.T"):
        fitted.transform(row)
    assert fitted.transform(row.to_frame().T).shape == (1, fitted.n_factors)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(n_factors=0), ValueError, "n_factors must be >= 1"),
    (dict(n_factors=2.5), TypeError, "n_factors must be an integer"),
    (dict(likelihood="poisson?"), ValueError, "unknown likelihood"),
    (dict(w_guide="laplace"), ValueError, "unknown w_guide"),
    (dict(lambda0=0), ValueError, "lambda0 must be > 0"),
    (dict(lambda0=0.5, lambda1=1.0), ValueError, r"lambda0 \(spike rate, 0.5\) must be >= lambda1"),
    (dict(warmup=2.0), ValueError, "warmup"),
    (dict(lr_decay=-0.1), ValueError, "lr_decay"),
    (dict(lr_decay=1.5), ValueError, "lr_decay"),
    (dict(refine_posterior_epochs=-1), ValueError, "refine_posterior_epochs must be"),
    (dict(refine_posterior_epochs=2.5), ValueError, "refine_posterior_epochs must be"),
    (dict(refine_posterior_epochs=True), ValueError, "refine_posterior_epochs must be"),
    (dict(refine_posterior_epochs=5), ValueError, "needs w_guide other than 'map'"),
    (dict(feature_mode_starts=-1), ValueError, "feature_mode_starts must be"),
    (dict(feature_mode_starts=True), ValueError, "feature_mode_starts must be"),
    (dict(feature_mode_starts=4, factor_correlation=True), ValueError,
     "feature_mode_starts needs factor_correlation=False"),
    (dict(feature_mode_starts=4, likelihood="categorical"), ValueError, "factorises over"),
    (dict(feature_mode_starts=4, likelihood="poisson"), ValueError, "library='composition'"),
    (dict(refine_posterior_epochs=5, w_guide="meanfield", factor_correlation=True), ValueError,
     "factor_correlation=False"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ps.SparseVAE(**kwargs)


def test_bad_fit_arguments(data):
    m = ps.SparseVAE(n_factors=2)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        m.fit(data.X, epochs=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        m.fit(data.X, lr=-1.0)
    with pytest.raises(ValueError, match="unknown device"):
        m.fit(data.X, device="gpu0")
    with pytest.raises(TypeError, match="X must be"):
        m.fit("data.csv")
    assert not hasattr(m, "model_")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda(data):
    with pytest.raises(ValueError, match="CUDA is not available"):
        ps.SparseVAE(n_factors=2).fit(data.X, device="cuda")


@pytest.mark.parametrize("bad,match", [(-1, "negative value"), (0.5, "non-integer value")])
def test_categorical_needs_counts(bad, match):
    X = np.ones((10, 4))
    X[2, 3] = bad
    with pytest.raises(ValueError, match=f"{match} .* at row 2, column 3"):
        ps.SparseVAE(n_factors=2, likelihood="categorical").fit(X, epochs=1)


def test_failed_refit_keeps_previous_fit(fitted, data):
    before = fitted.loadings_.copy()
    X = data.X.copy()
    X[0, 0] = np.inf
    with pytest.raises(ValueError):
        fitted.fit(X, epochs=1)
    np.testing.assert_array_equal(fitted.loadings_, before)


def test_load_errors(fitted, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ps.SparseVAE.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json is missing"):
        ps.SparseVAE.load(tmp_path / "empty")
    path = fitted.save(tmp_path / "m")
    # corrupt JSON
    cfg = (path / "config.json").read_text()
    (path / "config.json").write_text(cfg[:40])
    with pytest.raises(ValueError, match="corrupt"):
        ps.SparseVAE.load(path)
    # a JSON that is not ours
    (path / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a pyro_sparse model"):
        ps.SparseVAE.load(path)
    (path / "config.json").write_text(cfg)
    # corrupt weights
    (path / "weights.safetensors").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="corrupt"):
        ps.SparseVAE.load(path)
    # the wrong estimator class
    path2 = fitted.save(tmp_path / "m2")
    with pytest.raises(ValueError, match="holds a 'SparseVAE' model"):
        ps.VAE.load(path2)


@pytest.mark.parametrize("edit,match", [
    (lambda c: c["params"].update(hidden_dim=c["params"]["hidden_dim"] + 1),
     "hidden_dim is .* in params but .* in model_config"),
    (lambda c: c.update(n_features=c["n_features"] + 1), "n_features is .* but model_config"),
    (lambda c: c.update(feature_names=c["feature_names"][:-1]), "6 feature names for 7"),
    (lambda c: c["params"].update(lambda0=0.1), r"lambda0 \(spike rate, 0.1\) must be >="),
])
def test_load_refuses_a_config_that_disagrees_with_itself(fitted, data, tmp_path, edit, match):
    # a hand-edited config.json whose parts disagree is refused at load, not at first use
    path = fitted.save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    cfg["feature_names"] = cfg["feature_names"] or [f"f{i}" for i in range(cfg["n_features"])]
    edit(cfg)
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="corrupt or from an incompatible version: " + match):
        ps.SparseVAE.load(path)


def test_crafted_pickle_is_never_loaded(fitted, tmp_path):
    import pickle

    path = fitted.save(tmp_path / "m")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (path / "weights.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="corrupt"):
        ps.SparseVAE.load(path)
    assert not marker.exists()


def test_save_refuses_to_overwrite_foreign_folder(fitted, tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    (d / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a pyro_sparse model folder"):
        fitted.save(d)
    assert (d / "mine.txt").read_text() == "keep me"
    # a folder with a config.json that is not ours, or ours plus other files: refused too
    hf = tmp_path / "other_tool"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="config.json is not a pyro_sparse model config"):
        fitted.save(hf)
    assert (hf / "config.json").read_text() == '{"model_type": "bert"}'
    ours = fitted.save(tmp_path / "m")
    (ours / "notes.txt").write_text("my notes")
    with pytest.raises(ValueError, match="holds notes.txt, which saving would delete"):
        fitted.save(ours)
    assert (ours / "notes.txt").read_text() == "my notes"
    (ours / "notes.txt").unlink()
    assert fitted.save(ours) == ours  # our own model folder is replaced
    (tmp_path / "empty").mkdir()
    fitted.save(tmp_path / "empty")  # an empty folder too
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["config.json",
                                                                      "weights.safetensors"]


@pytest.fixture(scope="module")
def paper_fit():
    """The paper's setting at rho=0.4: K=5, H=50, 200 epochs, batch 100, lr 0.01 (~10 s)."""
    from pyro_sparse.diagnostics import estimated_support, match_factors, support_scores

    data = ps.datasets.paper_synthetic(n=1000, rho=0.4, seed=0)
    train, test = data.split(0.5, seed=0)
    m = ps.SparseVAE(n_factors=5, hidden_dim=50, lambda0=10.0, lambda1=1.0)
    m.fit(train.X, epochs=200, batch_size=100, lr=1e-2, seed=0, progress=False)
    match = match_factors(test.Z, m.transform(test.X))
    S = estimated_support(m.loadings_, m.inclusion_probs_)
    return m, S, match, support_scores(data.support, S, match)


def test_recovers_true_support_on_paper_synthetic(paper_fit):
    """Recovery at rho=0.4: every true entry found, surplus factors switched off, and support
    F1 above the authors' published code on this data (0.70, reference section 8)."""
    m, S, match, scores = paper_fit
    assert scores["recall"] == 1.0, scores
    unused = [k for k in range(5) if k not in match]
    assert (m.eta_[unused] < 0.05).all() and not S[:, unused].any(), m.eta_
    assert scores["f1"] > 0.75, (scores, m.inclusion_probs_.round(2))


@pytest.mark.xfail(strict=True, reason="with the default settings issue #3's target F1 >= "
                   "0.9 at rho=0.4 is not met: the training ELBO keeps loadings that only fit "
                   "the training rows; refine_support=True reaches it (test above)")
def test_support_f1_target_at_rho_04(paper_fit):
    assert paper_fit[3]["f1"] >= 0.9


def test_refined_fit_reaches_support_f1_target_at_rho_04():
    """Issue #3's recovery target with support refinement (20% of the rows held out):
    F1 >= 0.9 after matching at rho=0.4 in the paper's setting (~15 s on one thread)."""
    from pyro_sparse.diagnostics import estimated_support, match_factors, support_scores

    data = ps.datasets.paper_synthetic(n=1000, rho=0.4, seed=0)
    train, test = data.split(0.5, seed=0)
    m = ps.SparseVAE(n_factors=5, hidden_dim=50, refine_support=True)
    m.fit(train.X, epochs=200, batch_size=100, lr=1e-2, seed=0, progress=False)
    S = estimated_support(m.loadings_, m.inclusion_probs_)
    scores = support_scores(data.support, S, match_factors(test.Z, m.transform(test.X)))
    assert scores["f1"] >= 0.9, (scores, m.refinement_)


def test_refine_support_prunes_holds_zeros_and_round_trips(data, tmp_path):
    m = ps.SparseVAE(n_factors=3, hidden_dim=8, refine_support=True, validation_fraction=0.25)
    m.fit(data.X, epochs=6, seed=0, progress=False)
    r = m.refinement_
    n = len(r["support_size"])
    assert n >= 1 and 0 <= r["chosen"] < n and r["n_heldout"] == 75
    assert r["support_size"] == sorted(r["support_size"], reverse=True)
    assert len(r["heldout_loglik"]) == len(r["heldout_loglik_se"]) == len(r["threshold"]) == n
    assert all(np.isfinite(r["heldout_loglik"])) and r["epochs"] == 3
    # every loading outside the chosen support is exactly 0, also after a save/load
    assert int((m.loadings_ != 0).sum()) <= r["support_size"][r["chosen"]]
    m.save(tmp_path / "refined")
    m2 = ps.SparseVAE.load(tmp_path / "refined")
    np.testing.assert_array_equal(m2.loadings_, m.loadings_)
    assert m2.refine_support and m2.validation_fraction == 0.25
    # the support mask is saved too, so a loaded fit keeps its zeros when trained further
    mask = m.guide_.globals_guide.support_mask_gk
    assert 0 < int(mask.sum()) < mask.numel()
    torch.testing.assert_close(m2.guide_.globals_guide.support_mask_gk, mask)
    # reproducible: the same seed gives the same refined loadings
    m3 = ps.SparseVAE(n_factors=3, hidden_dim=8, refine_support=True, validation_fraction=0.25)
    np.testing.assert_array_equal(m3.fit(data.X, epochs=6, seed=0, progress=False).loadings_,
                                  m.loadings_)


def test_folders_saved_without_the_support_mask_take_it_from_the_zeros(data, tmp_path):
    from safetensors.torch import load_file, save_file

    m = ps.SparseVAE(n_factors=3, hidden_dim=8, refine_support=True, validation_fraction=0.25)
    m.fit(data.X, epochs=6, seed=0, progress=False)
    path = m.save(tmp_path / "old")
    weights = load_file(str(path / "weights.safetensors"))
    del weights["guide.globals_guide.support_mask_gk"]
    save_file(weights, str(path / "weights.safetensors"))
    old = ps.SparseVAE.load(path)
    torch.testing.assert_close(old.guide_.globals_guide.support_mask_gk,
                               (m.guide_.globals_guide.W_gk != 0).float())
    np.testing.assert_array_equal(old.loadings_, m.loadings_)


def test_refine_support_with_restarts_uses_the_one_se_rule(data):
    kw = dict(n_factors=3, hidden_dim=8, refine_support=True, validation_fraction=0.25)
    m = ps.SparseVAE(n_restarts=3, **kw).fit(data.X, epochs=6, seed=4, progress=False)
    r = m.refinement_
    assert r["restart_seeds"] == [4, 5, 6]
    scores = r["restart_heldout_loglik"]
    assert len(scores) == len(r["restart_heldout_loglik_se"]) == len(r["restart_support_size"])
    c, best = r["chosen_restart"], int(np.argmax(scores))
    assert m.fit_info_["chosen_restart_seed"] == 4 + c
    # one-SE rule: the best restart is always eligible, so the chosen one is no larger
    sizes = r["restart_support_size"]
    assert c == best or sizes[c] < sizes[best]
    assert scores[c] >= scores[best] - 3 * max(r["restart_heldout_loglik_se"])
    # what refinement_ reports for the chosen support is the chosen restart's score
    assert r["heldout_loglik"][r["chosen"]] == pytest.approx(scores[c])
    assert int((m.loadings_ != 0).sum()) <= sizes[c]
    # every restart is scored on the same held-out rows, by the procedure a single fit runs:
    # a one-restart fit with a restart's seed (same split: the split follows fit's seed, so
    # only restart 0 shares it) reproduces that restart's score
    one = ps.SparseVAE(**kw).fit(data.X, epochs=6, seed=4, progress=False).refinement_
    assert one["heldout_loglik"][one["chosen"]] == pytest.approx(scores[0])
    assert "restart_seeds" not in one


@pytest.mark.parametrize("kw", [dict(n_restarts=3),
                                dict(n_restarts=2, refine_support=True,
                                     validation_fraction=0.25, refine_polish=0.5)],
                         ids=["elbo", "refine-polish"])
def test_restarts_in_processes_equal_serial_restarts(data, kw):
    # n_jobs runs the same seeded restarts in spawned workers (one thread each, as here)
    serial = ps.SparseVAE(n_factors=3, hidden_dim=8, **kw).fit(data.X, epochs=6, seed=4,
                                                                progress=False)
    par = ps.SparseVAE(n_factors=3, hidden_dim=8, **kw).fit(data.X, epochs=6, seed=4,
                                                             progress=False, n_jobs=2)
    np.testing.assert_array_equal(par.loadings_, serial.loadings_)
    np.testing.assert_array_equal(par.transform(data.X), serial.transform(data.X))
    assert par.fit_info_["chosen_restart_seed"] == serial.fit_info_["chosen_restart_seed"]
    if "refine_support" in kw:
        assert par.refinement_ == serial.refinement_


def test_n_jobs_bad_values(data):
    m = ps.SparseVAE(n_factors=2, hidden_dim=8, n_restarts=2)
    with pytest.raises(ValueError, match="n_jobs must be >= 1 or -1"):
        m.fit(data.X, epochs=1, progress=False, n_jobs=0)
    with pytest.raises(TypeError, match="n_jobs must be an integer"):
        m.fit(data.X, epochs=1, progress=False, n_jobs=2.0)
    assert not hasattr(m, "model_")


def test_refine_polish_fine_tunes_the_chosen_support_before_restarts_are_compared(data):
    kw = dict(n_factors=3, hidden_dim=8, refine_support=True, validation_fraction=0.25,
              n_restarts=2)
    plain = ps.SparseVAE(**kw).fit(data.X, epochs=6, seed=4, progress=False).refinement_
    m = ps.SparseVAE(refine_polish=1.5, **kw).fit(data.X, epochs=6, seed=4, progress=False)
    r = m.refinement_
    assert plain["polish_epochs"] == 0 and "polished_heldout_loglik" not in plain
    assert r["polish_epochs"] == 9
    # the candidate stage is untouched; the restarts are compared on the polished scores
    c = r["chosen_restart"]
    assert r["restart_heldout_loglik"][c] == pytest.approx(r["polished_heldout_loglik"])
    assert r["restart_heldout_loglik_se"][c] == pytest.approx(r["polished_heldout_loglik_se"])
    assert r["polished_heldout_loglik"] != pytest.approx(r["heldout_loglik"][r["chosen"]])
    if c == plain["chosen_restart"]:
        assert r["heldout_loglik"] == pytest.approx(plain["heldout_loglik"])
    # polishing keeps the chosen support: loadings outside it stay exactly 0
    assert int((m.loadings_ != 0).sum()) <= r["restart_support_size"][c]
    assert m.get_params()["refine_polish"] == 1.5
    with pytest.raises(ValueError, match="refine_polish must be >= 0"):
        ps.SparseVAE(refine_support=True, refine_polish=-1.0)
    with pytest.raises(ValueError, match="refine_polish=2.0 needs refine_support=True"):
        ps.SparseVAE(refine_polish=2.0)


def test_refine_support_bad_settings(data, tmp_path):
    with pytest.raises(ValueError, match="refine_support needs w_guide='map'"):
        ps.SparseVAE(refine_support=True, w_guide="meanfield")
    with pytest.raises(ValueError, match="validation_fraction"):
        ps.SparseVAE(refine_support=True, validation_fraction=1.5)
    m = ps.SparseVAE(n_factors=2, hidden_dim=8, refine_support=True)
    with pytest.raises(ValueError, match="checkpoints"):
        m.fit(data.X, epochs=2, checkpoint=tmp_path / "c.safetensors", progress=False)
    assert not (tmp_path / "c.safetensors").exists()
    with pytest.raises(ValueError, match="need at least 2 rows"):
        m.fit(data.X[:6], epochs=2, batch_size=4, progress=False)
    assert not hasattr(m, "model_")


def test_restricted_map_guide_keeps_masked_loadings_at_zero(data):
    from pyro_sparse.guides import make_guide
    from pyro_sparse.infer import fit_svi
    from pyro_sparse.models import SparseVAEModel

    with pyro.settings.context(module_local_params=True):
        model = SparseVAEModel(n_features=7, n_factors=3, hidden_dim=8)
        guide = make_guide(model, "map")
        mask = np.ones((7, 3), bool)
        mask[:, 2] = False
        mask[0, 0] = False
        guide.globals_guide.restrict_support(mask)
        fit_svi(model, guide, torch.tensor(data.X, dtype=torch.float32), epochs=3)
    W = guide.globals_guide.point_estimates()["W"].numpy()
    assert (W[~mask] == 0).all() and (W[mask] != 0).all()
    with pytest.raises(ValueError, match="shape"):
        guide.globals_guide.restrict_support(mask[:3])


@pytest.mark.parametrize("w_guide,note", [("spikeslab", "spike-and-slab"),
                                          ("spikeslab_lowrank", "copula")])
def test_spikeslab_w_guides_fit_draw_and_round_trip(data, tmp_path, w_guide, note):
    m = ps.SparseVAE(n_factors=3, hidden_dim=8, w_guide=w_guide).fit(
        data.X, epochs=3, progress=False)
    assert not m.posterior_is_point_mass_
    assert m.loadings_sd_.shape == (7, 3) and (m.loadings_sd_ > 0).all()
    p = m.inclusion_probs_
    assert ((p >= 0) & (p <= 1)).all()
    d = m.posterior_draws(num_samples=50, seed=1)
    assert d["W"].shape == (50, 7, 3) and d["W"].std(0).min() > 0
    m.save(tmp_path / "ss")
    m2 = ps.SparseVAE.load(tmp_path / "ss")
    np.testing.assert_array_equal(m2.posterior_draws(50, seed=1)["W"], d["W"])
    np.testing.assert_allclose(m2.inclusion_probs_, p)
    dt = ps.diagnostics.to_arviz(m, num_samples=20)
    assert note in dt.attrs["posterior_note"]


def test_lowrank_w_guide_fits_draws_and_round_trips(data, tmp_path):
    m = ps.SparseVAE(n_factors=3, hidden_dim=8, w_guide="lowrank").fit(
        data.X, epochs=3, progress=False)
    assert not m.posterior_is_point_mass_
    assert m.loadings_sd_.shape == (7, 3) and (m.loadings_sd_ > 0).all()
    d = m.posterior_draws(num_samples=50, seed=1)
    assert d["W"].shape == (50, 7, 3) and d["W"].std(0).min() > 0
    m.save(tmp_path / "lr")
    m2 = ps.SparseVAE.load(tmp_path / "lr")
    np.testing.assert_array_equal(m2.posterior_draws(50, seed=1)["W"], d["W"])
    # E_q[p*] is averaged over seeded draws: the loaded model reports the same numbers
    np.testing.assert_array_equal(m2.inclusion_probs_, m.inclusion_probs_)
    dt = ps.diagnostics.to_arviz(m, num_samples=20)
    assert "low-rank" in dt.attrs["posterior_note"]


@pytest.mark.parametrize("cls", [ps.SparseVAE, ps.VAE])
def test_lr_decay_acts_on_the_last_steps_and_round_trips(data, tmp_path, cls):
    fits = [cls(n_factors=2, hidden_dim=8, lr_decay=d).fit(data.X, epochs=4, seed=2,
                                                          progress=False)
            for d in (0.0, 0.5)]
    h0, h1 = fits[0].loss_history_, fits[1].loss_history_
    # the same seed: bit for bit the same until the decay starts halfway, different after
    np.testing.assert_array_equal(h0[:2], h1[:2])
    assert not np.array_equal(h0[2:], h1[2:])
    fits[1].save(tmp_path / "m")
    assert cls.load(tmp_path / "m").get_params()["lr_decay"] == 0.5


def test_feature_mode_starts_searches_and_trains_on(data, tmp_path):
    kw = dict(n_factors=2, hidden_dim=8, w_guide="spikeslab")
    plain = ps.SparseVAE(**kw).fit(data.X, epochs=8, seed=4, progress=False)
    m = ps.SparseVAE(feature_mode_starts=3, **kw).fit(data.X, epochs=8, seed=4,
                                                      progress=False)
    info = m.fit_info_["feature_modes"]
    G = data.X.shape[1]
    assert info["n_starts"] == 3 and info["epochs"] == 2 and len(info["gain"]) == G
    assert info["rows_used"] == min(1000, data.X.shape[0])
    assert set(info["moved"]) <= set(range(G))
    assert all(info["gain"][g] > 1.0 for g in info["moved"])
    # the same fit, then epochs // 4 more epochs of training
    np.testing.assert_array_equal(m.loss_history_[:8], plain.loss_history_)
    assert len(m.loss_history_) == 10
    assert not np.allclose(m.loadings_, plain.loadings_)
    m.save(tmp_path / "f")
    back = ps.SparseVAE.load(tmp_path / "f")
    assert back.get_params()["feature_mode_starts"] == 3
    np.testing.assert_array_equal(back.loadings_, m.loadings_)


def test_refine_posterior_epochs_refines_the_kept_fit_and_round_trips(data, tmp_path):
    kw = dict(n_factors=2, hidden_dim=8, w_guide="spikeslab", n_restarts=2)
    plain = ps.SparseVAE(**kw).fit(data.X, epochs=6, seed=4, progress=False)
    m = ps.SparseVAE(refine_posterior_epochs=5, **kw).fit(data.X, epochs=6, seed=4,
                                                          progress=False)
    info = m.fit_info_["refine_posterior"]
    assert info["epochs"] == 5 and len(info["scale"]) == 2 and len(info["encoder_scale"]) == 2
    # the same fit (and restart) before the refinement: only the loadings moved
    assert m.fit_info_["chosen_restart_seed"] == plain.fit_info_["chosen_restart_seed"]
    np.testing.assert_array_equal(m.loss_history_, plain.loss_history_)
    assert not np.allclose(m.loadings_, plain.loadings_)
    assert info["loss_before"] == pytest.approx(
        ps.infer.full_data_loss(plain.model_, plain.guide_,
                                torch.as_tensor(data.X, dtype=torch.float32)), rel=0.05)
    np.testing.assert_allclose(m.fit_info_["factor_log_scale_sd"],
                               m.guide_.globals_guide.log_scale_sd_k.numpy(), rtol=1e-6)
    m.save(tmp_path / "r")
    back = ps.SparseVAE.load(tmp_path / "r")
    assert back.get_params()["refine_posterior_epochs"] == 5
    np.testing.assert_array_equal(back.loadings_, m.loadings_)


def test_scikit_learn_conventions(data):
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    m = ps.SparseVAE(n_factors=2, hidden_dim=8, lambda0=12)
    c = clone(m)  # clone checks that the constructor keeps every parameter as given
    assert c.get_params(deep=True) == m.get_params() and c is not m
    assert m.set_params(hidden_dim=16, warmup=0.2) is m and m.hidden_dim == 16
    with pytest.raises(ValueError, match="unknown parameter"):
        m.set_params(hiden_dim=4)
    with pytest.raises(ValueError, match="must be >= lambda1"):
        m.set_params(lambda0=0.5)
    assert m.lambda0 == 12 and m.hidden_dim == 16  # a refused call changes nothing
    kw = dict(epochs=2, seed=3, progress=False)
    z = ps.SparseVAE(n_factors=2, hidden_dim=8).fit_transform(data.X, **kw)
    np.testing.assert_allclose(z, ps.SparseVAE(n_factors=2, hidden_dim=8).fit(data.X, **kw)
                               .transform(data.X))
    pipe = make_pipeline(StandardScaler(), ps.VAE(n_factors=2, hidden_dim=8))
    assert pipe.fit_transform(data.X, vae__epochs=2, vae__progress=False).shape == (len(data.X), 2)


def test_repr_shows_the_changed_arguments_and_evaluates_back():
    """As scikit-learn prints estimators: defaults left out, constructor order, eval-able."""
    assert repr(ps.SparseVAE()) == "SparseVAE()"
    assert repr(ps.VAE(beta=2)) == "VAE(beta=2.0)"
    m = ps.SparseVAE(n_factors=3, lambda0=20.0, b=7, refine_support=True, output_scale=1.0)
    assert repr(m) == ("SparseVAE(n_factors=3, lambda0=20.0, b=7.0, refine_support=True, "
                       "output_scale=1.0)")
    back = eval(repr(m), {"SparseVAE": ps.SparseVAE})
    assert back.get_params() == m.get_params()
    m.set_params(hidden_dim=16, refine_support=False)  # back to the default: not shown
    assert repr(m) == "SparseVAE(n_factors=3, hidden_dim=16, lambda0=20.0, b=7.0, " \
                      "output_scale=1.0)"
    assert repr(ps.fit_restarts(ps.VAE(n_factors=1, hidden_dim=4), np.random.default_rng(0)
                                .normal(size=(30, 3)), n_restarts=2, epochs=1,
                                progress=False)).startswith("Restarts(2 x VAE(n_factors=1")


def test_effective_support_drops_entries_without_effect(fitted, data):
    """The p* support restricted to entries carrying >= min_share of a feature's decoded
    variation: a subset of the p* support, equal to it at a negligible bar, empty above
    every share."""
    from pyro_sparse.diagnostics import estimated_support

    S = estimated_support(fitted.loadings_, fitted.inclusion_probs_)
    share = fitted.effect_shares(data.X)
    assert share.shape == S.shape and (share >= 0).all()
    E = fitted.effective_support(data.X, min_share=0.1)
    np.testing.assert_array_equal(E, S & (share >= 0.1))
    assert not (E & ~S).any()
    np.testing.assert_array_equal(fitted.effective_support(data.X, min_share=1e-12),
                                  S & (share >= 1e-12))
    assert not fitted.effective_support(data.X, min_share=share.max() + 1).any()
    with pytest.raises(ValueError, match="min_share"):
        fitted.effective_support(data.X, min_share=0)
    with pytest.raises(ValueError, match="threshold"):
        fitted.effective_support(data.X, threshold=1.5)


def _shifted_and_scaled(n=400, seed=0):
    d = ps.datasets.paper_synthetic(n=n, rho=0.4, seed=seed)
    shift = np.array([20.0, 0, 0, 0, 0, 0, 0])
    scale = np.array([1.0, 1000.0, 1, 1, 1, 1, 1])
    return d.X * scale + shift, shift, scale


@pytest.mark.parametrize("cls", [ps.SparseVAE, ps.VAE])
def test_standardize_works_in_standardised_units_and_keeps_the_data_units(cls, tmp_path):
    X, shift, scale = _shifted_and_scaled()
    X[3, 2] = np.nan  # a missing entry: left out of the column statistics
    with pytest.warns(UserWarning, match="standardize=True") as rec:
        cls(n_factors=3, hidden_dim=8, standardize=False).fit(X, epochs=1, progress=False)
    text = " ".join(str(w.message) for w in rec)
    assert "mean more than 5 sds from 0" in text and "span a factor of" in text
    m = cls(n_factors=3, hidden_dim=16).fit(X, epochs=100, progress=False)  # the default
    mean, sd = np.nanmean(X, 0), np.nanstd(X, 0)
    local, dec = m.guide_.local_guide, m.model_.decoder
    for loc, sc in ((local.in_loc_g, local.in_scale_g), (dec.out_loc_g, dec.out_scale_g)):
        np.testing.assert_allclose(loc.numpy(), mean, rtol=1e-4)
        np.testing.assert_allclose(sc.numpy(), sd, rtol=1e-3)
    # the likelihood stays in the data's units: reconstructions, sigma
    R = m.reconstruct(X)
    obs = ~np.isnan(X)
    rel = [np.mean((R[obs[:, g], g] - X[obs[:, g], g]) ** 2) / sd[g] ** 2 for g in range(7)]
    assert max(rel) < 1.0 and np.isfinite(R).all()
    assert abs(R[:, 0].mean() - 20.0) < 1.0 and 300 < R[:, 1].std() < 3000
    np.testing.assert_allclose(m.sigma_[1] / m.sigma_[2], sd[1] / sd[2], rtol=0.9)
    # round trip: the maps are saved with the model
    m2 = cls.load(m.save(tmp_path / "std"))
    np.testing.assert_allclose(m2.reconstruct(X), R, rtol=1e-5)
    assert m2.get_params()["standardize"] is None
    assert m.fit_info_["standardize"]["used"] and "sds from 0" in \
        m.fit_info_["standardize"]["columns"]
    # standardize=False leaves the networks in the data's units (identity maps)
    with pytest.warns(UserWarning, match="standardize=True"):
        plain = cls(n_factors=3, hidden_dim=8, standardize=False).fit(X, epochs=1,
                                                                      progress=False)
    assert float(plain.model_.decoder.out_scale_g.sum()) == 7.0
    assert float(plain.guide_.local_guide.in_loc_g.abs().sum()) == 0.0


def test_standardize_rescues_a_shifted_column():
    """One column shifted by 20 sds wrecks the fit in the data's units (every column's
    reconstruction suffers); in standardised units the fit is as on the unshifted data."""
    d = ps.datasets.paper_synthetic(n=500, rho=0.4, seed=1)
    X = d.X + np.array([20.0, 0, 0, 0, 0, 0, 0])
    err = {}
    for std in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = ps.SparseVAE(n_factors=5, standardize=std).fit(X, epochs=100, seed=1,
                                                               progress=False)
        err[std] = np.mean((m.reconstruct(X) - X)[:, 1:] ** 2)
    assert err[True] < 1.0 < 5 * err[True] < err[False]


def test_standardize_checks_and_old_folders(data, tmp_path):
    with pytest.raises(ValueError, match="applies to likelihood='normal'"):
        ps.SparseVAE(likelihood="poisson", standardize=True)
    with pytest.raises(TypeError, match="standardize must be True, False or None"):
        ps.VAE(standardize="yes")
    # the default standardises off-scale normal data only: well-scaled data are fitted in
    # the data's units, exactly as with standardize=False
    a = ps.SparseVAE(n_factors=3, hidden_dim=8).fit(data.X, epochs=2, seed=0, progress=False)
    b = ps.SparseVAE(n_factors=3, hidden_dim=8, standardize=False).fit(data.X, epochs=2,
                                                                       seed=0, progress=False)
    np.testing.assert_array_equal(a.loadings_, b.loadings_)
    assert a.fit_info_["standardize"] == dict(used=False, setting=None, columns=None)
    # folders written before the maps existed load with identity maps
    from safetensors.torch import load_file, save_file

    m = ps.SparseVAE(n_factors=3, hidden_dim=8, standardize=False).fit(data.X, epochs=2,
                                                                       progress=False)
    path = m.save(tmp_path / "old")
    w = load_file(path / "weights.safetensors")
    old = {k: v for k, v in w.items() if k.rsplit(".", 1)[-1] not in
           ("in_loc_g", "in_scale_g", "out_loc_g", "out_scale_g")}
    assert len(old) == len(w) - 4
    save_file(old, path / "weights.safetensors")
    cfg = json.loads((path / "config.json").read_text())
    del cfg["params"]["standardize"]
    del cfg["params"]["reseed_unfold"]
    del cfg["params"]["reseed_merge"]
    del cfg["params"]["reseed_reorder"]
    (path / "config.json").write_text(json.dumps(cfg))
    old_model = ps.SparseVAE.load(path)
    np.testing.assert_allclose(old_model.transform(data.X), m.transform(data.X))
    assert old_model.get_params()["standardize"] is False  # fitted in the data's units
    # and its re-seeding rounds, if any, had no unfolding proposal
    assert old_model.get_params()["reseed_unfold"] is False
    assert ps.SparseVAE().reseed_unfold is True
    assert old_model.get_params()["reseed_reorder"] is False  # nor any reordering
    assert old_model.get_params()["reseed_merge"] is False
    assert ps.SparseVAE().reseed_reorder is True
