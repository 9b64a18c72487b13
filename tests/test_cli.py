"""The ``pyro-sparse`` command, driven through the real installed script in a subprocess
(bad-input cases also in-process through ``cli.main``, which the script calls)."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import pyro_sparse as ps

SCRIPT = Path(sys.executable).parent / "pyro-sparse"
CMD = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "pyro_sparse.cli"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def run(*args, cwd, timeout=300):
    return subprocess.run(CMD + [str(a) for a in args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def _csv(path, X, names=None, ids=True):
    names = names or [f"g{j}" for j in range(X.shape[1])]
    df = pd.DataFrame(X, columns=names)
    if ids:
        df.index = [f"s{i}" for i in range(X.shape[0])]
        df.index.name = "id"
    df.to_csv(path, index=ids)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    X = ps.datasets.paper_synthetic(n=200, seed=0).X
    _csv(d / "data.csv", X)
    counts = np.random.default_rng(0).poisson(3.0, size=(60, 5)).astype(float)
    counts[:, 0] += 1
    _csv(d / "counts.csv", counts)
    r = run("fit", "data.csv", "--factors", 3, "--out", "fitted", "--epochs", 3,
            "--no-progress", cwd=d)
    assert r.returncode == 0, r.stderr
    return d


def test_fit_writes_every_output_and_the_other_commands_read_them(work):
    out = work / "fitted"
    for f in ("loadings.csv", "inclusion.csv", "effect.csv", "factors.csv", "anchors.json",
              "metrics.json", "posterior.nc", "model/config.json", "plots/loss.png",
              "plots/loadings.png"):
        assert (out / f).is_file(), f
    L = pd.read_csv(out / "loadings.csv", index_col=0)
    E = pd.read_csv(out / "effect.csv", index_col=0)
    assert E.shape == L.shape and list(E.index) == list(L.index) and (E.to_numpy() >= 0).all()
    assert (E.to_numpy()[L.to_numpy() == 0] == 0).all()   # no loading, no effect
    assert list(L.index) == [f"g{j}" for j in range(7)]
    assert list(L.columns) == ["factor_0", "factor_1", "factor_2"]
    F = pd.read_csv(out / "factors.csv", index_col=0)
    assert F.shape == (200, 3) and F.index[0] == "s0"
    model = ps.SparseVAE.load(out / "model")
    np.testing.assert_allclose(L.to_numpy(), model.loadings_, rtol=1e-6)
    anchors = json.loads((out / "anchors.json").read_text())
    assert len(anchors["factors"]) == 3
    import xarray as xr

    with xr.open_datatree(out / "posterior.nc", engine="h5netcdf") as dt:
        assert dt["posterior"]["W"].shape == (1, 1, 7, 3)  # MAP: one draw of a point mass
    r = run("report", out, cwd=work)
    assert r.returncode == 0 and "Anchor report" in r.stdout
    r = run("report", out, "--data", "data.csv", "--support", "merged", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "effect share >= 0.1 on X, redundant factors (|r| >= 0.9) merged" in r.stdout
    r = run("transform", out, "data.csv", "--out", "z.csv", cwd=work)
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(pd.read_csv(work / "z.csv", index_col=0).to_numpy(),
                               F.to_numpy(), rtol=1e-6)
    X = pd.read_csv(work / "data.csv", index_col=0)
    X.iloc[3, 2] = np.nan
    X.to_csv(work / "holes.csv")
    r = run("reconstruct", out, "holes.csv", "--out", "r.csv", cwd=work)
    assert r.returncode == 0, r.stderr
    R = pd.read_csv(work / "r.csv", index_col=0)
    assert R.shape == (200, 7) and np.isfinite(R.to_numpy()).all()  # the hole is filled


def test_vae_and_count_likelihood_with_heldout(work):
    r = run("fit", "counts.csv", "--factors", 2, "--out", "vae", "--model", "vae",
            "--likelihood", "negbin", "--epochs", 2, "--heldout", 0.25, "--no-progress",
            cwd=work)
    assert r.returncode == 0, r.stderr
    out = work / "vae"
    assert not (out / "loadings.csv").exists() and not (out / "anchors.json").exists()
    m = json.loads((out / "metrics.json").read_text())
    assert m["heldout"]["n_rows"] == 15 and np.isfinite(m["heldout"]["loglik_per_row"])
    assert len(pd.read_csv(out / "heldout.csv")) == 15
    from pyro_sparse.cli import OUTPUT_ENTRIES

    for folder in (out, work / "fitted"):  # --overwrite may replace what fit writes
        assert {p.name for p in folder.iterdir()} <= OUTPUT_ENTRIES
    r = run("report", out, cwd=work)
    assert r.returncode == 2 and "no loadings" in r.stderr


# ------------------------------------------------------------------ bad input
def _bad_model_dirs(d):
    (d / "corrupt" / "model").mkdir(parents=True)
    (d / "corrupt" / "model" / "config.json").write_text("{not json")
    (d / "corrupt" / "model" / "weights.safetensors").write_bytes(b"junk")
    crafted = d / "crafted" / "model"
    shutil.copytree(d / "fitted" / "model", crafted)

    class Payload:  # unpickling this would create the marker file
        def __reduce__(self):
            return (Path.touch, (d / "PWNED",))

    (crafted / "weights.safetensors").write_bytes(pickle.dumps(Payload()))
    other = d / "other_estimator" / "model"
    shutil.copytree(d / "fitted" / "model", other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["estimator"] = "os.system"
    (other / "config.json").write_text(json.dumps(cfg))


BAD = {
    "missing file": (["fit", "nope.csv", "--factors", 2, "--out", "o"], "nope.csv: no such"),
    "empty file": (["fit", "empty.csv", "--factors", 2, "--out", "o"], "is empty"),
    "header only": (["fit", "header.csv", "--factors", 2, "--out", "o"], "no data rows"),
    "non-numeric cell": (["fit", "text.csv", "--factors", 2, "--out", "o"],
                         "non-numeric value 'abc' at row 1 \\('s1'\\), column 2 \\('g1'\\)"),
    "ragged row": (["fit", "ragged.csv", "--factors", 2, "--out", "o"],
                   "line 3 has 4 fields but the header has 3"),
    "inf": (["fit", "inf.csv", "--factors", 2, "--out", "o"],
            "inf at row 1 \\('s1'\\), column 0 \\('g0'\\)"),
    "negative counts": (["fit", "neg.csv", "--factors", 2, "--out", "o", "--likelihood",
                         "poisson"], "negative value -2.0 at row 0 \\('s0'\\), column 1"),
    "non-integer counts": (["fit", "frac.csv", "--factors", 2, "--out", "o", "--likelihood",
                            "negbin"], "non-integer value 1.5 at row 1"),
    "factors 0": (["fit", "data.csv", "--factors", 0, "--out", "o"], "--factors must be >= 1"),
    "unknown option value": (["fit", "data.csv", "--factors", 2, "--out", "o",
                              "--likelihood", "gamma"], "invalid choice: 'gamma'"),
    "unknown option": (["fit", "data.csv", "--factors", 2, "--out", "o", "--bogus"],
                       "unrecognized arguments: --bogus"),
    "dir exists": (["fit", "data.csv", "--factors", 2, "--out", "fitted"],
                   "fitted exists; pass --overwrite"),
    "resume without checkpoint": (["fit", "data.csv", "--factors", 2, "--out", "o",
                                   "--resume"], "--resume: no checkpoint at"),
    "model dir missing": (["transform", "nodir", "data.csv", "--out", "bad_out.csv"],
                          "no such model folder"),
    "model dir corrupt": (["transform", "corrupt", "data.csv", "--out", "bad_out.csv"],
                          "corrupt \\(not valid JSON"),
    "model dir crafted (pickle)": (["report", "crafted"], "corrupt or not a safetensors"),
    "report effect without data": (["report", "fitted", "--support", "effect"],
                                   "--support effect reads the decoder's effects on some "
                                   "rows: give them with --data FILE"),
    "model dir crafted (estimator)": (["report", "other_estimator"],
                                      "unknown estimator 'os.system'"),
    "feature names differ": (["transform", "fitted", "renamed.csv", "--out", "bad_out.csv"],
                             "renamed.csv feature names differ"),
    "feature count differs": (["transform", "fitted", "narrow.csv", "--out", "bad_out.csv"],
                              "narrow.csv has 5 features .* fitted on 7"),
    "overwrite a foreign folder": (["fit", "data.csv", "--factors", 2, "--out", "notes",
                                    "--overwrite"],
                                   "notes is not a pyro-sparse output folder \\(it holds "
                                   "thesis.tex\\); --overwrite only replaces an earlier output"),
    "transform onto its input": (["transform", "fitted", "data.csv", "--out", "./data.csv",
                                  "--overwrite"], "--out data.csv is the input data file"),
    "overwrite a data file": (["fit", "data.csv", "--factors", 2, "--out", "data.csv",
                               "--overwrite"], "data.csv is a file, not an output folder"),
    "demo over a foreign folder": (["demo", "--out", "notes", "--overwrite"],
                                   "notes is not a pyro-sparse output folder"),
    "lambda0 below lambda1": (["fit", "data.csv", "--factors", 2, "--out", "o",
                               "--lambda0", 0.5], r"lambda0 \(spike rate, 0.5\) must be >="),
    "refine with checkpoints": (["fit", "data.csv", "--factors", 2, "--out", "o",
                                 "--refine-support", "--checkpoint-every", 1],
                                "--refine-support needs --model sparse and does not combine"),
    "standardize counts": (["fit", "counts.csv", "--factors", 2, "--out", "o",
                            "--likelihood", "poisson", "--standardize"],
                           "--standardize applies to --likelihood normal"),
    "polish without refinement": (["fit", "data.csv", "--factors", 2, "--out", "o",
                                   "--refine-polish", 1],
                                  "--refine-polish needs --refine-support"),
    "init for the VAE": (["fit", "data.csv", "--factors", 2, "--out", "o", "--model", "vae",
                          "--init", "factor_analysis"],
                         "--init, --reseed-rounds, --reseed-epochs, "
                         "--refine-posterior-epochs and --feature-mode-starts need --model "
                         "sparse"),
    "reseed for the VAE": (["fit", "data.csv", "--factors", 2, "--out", "o", "--model", "vae",
                            "--reseed-rounds", 1], "--reseed-rounds, --reseed-epochs,"),
    "refine posterior for the VAE": (["fit", "data.csv", "--factors", 2, "--out", "o",
                                      "--model", "vae", "--refine-posterior-epochs", 2],
                                     "--refine-posterior-epochs and --feature-mode-starts "
                                     "need --model sparse"),
    "refine posterior of a MAP": (["fit", "data.csv", "--factors", 2, "--out", "o",
                                   "--refine-posterior-epochs", 2],
                                  "needs --w-guide other than map"),
    "refine posterior negative": (["fit", "data.csv", "--factors", 2, "--out", "o",
                                   "--w-guide", "meanfield", "--refine-posterior-epochs", -1],
                                  "--refine-posterior-epochs"),
    "reseed epochs zero": (["fit", "data.csv", "--factors", 2, "--out", "o",
                            "--reseed-epochs", 0], "--reseed-epochs"),
    "restarts with checkpoints": (["fit", "data.csv", "--factors", 2, "--out", "o",
                                   "--restarts", 2, "--checkpoint-every", 1],
                                  "--restarts > 1 does not combine"),
    "restarts zero": (["fit", "data.csv", "--factors", 2, "--out", "o", "--restarts", 0],
                      "--restarts"),
    "jobs zero": (["fit", "data.csv", "--factors", 2, "--out", "o", "--jobs", 0], "--jobs"),
    "jobs on cuda": (["fit", "data.csv", "--factors", 2, "--out", "o", "--restarts", 2,
                      "--jobs", 2, "--device", "cuda"], "--jobs > 1 fits restarts in CPU"),
    "correlation on the vae": (["fit", "data.csv", "--factors", 2, "--out", "o", "--model",
                                "vae", "--factor-correlation"],
                               "--factor-correlation, --lkj-concentration, --init, --reseed"),
    "heldout out of range": (["fit", "data.csv", "--factors", 2, "--out", "o", "--heldout",
                              "1.5"], "--heldout is a fraction"),
    "lr decay out of range": (["fit", "data.csv", "--factors", 2, "--out", "o", "--lr-decay",
                               "1.5"], r"--lr-decay is a fraction of the steps in \[0, 1\]"),
}
if not torch.cuda.is_available():
    BAD["cuda without CUDA"] = (["fit", "data.csv", "--factors", 2, "--out", "o", "--device",
                                 "cuda"], "CUDA is not available")


@pytest.fixture(scope="module")
def bad_files(work):
    (work / "empty.csv").write_text("")
    (work / "header.csv").write_text("id,g0,g1\n")
    (work / "text.csv").write_text("id,g0,g1\ns0,1,2\ns1,3,abc\n")
    (work / "ragged.csv").write_text("g0,g1,g2\n1,2,3\n4,5,6,7\n")
    (work / "inf.csv").write_text("id,g0,g1\ns0,1,2\ns1,inf,3\n")
    (work / "neg.csv").write_text("id,g0,g1\ns0,1,-2\ns1,3,4\n")
    (work / "frac.csv").write_text("id,g0,g1\ns0,1,2\ns1,1.5,4\n")
    X = pd.read_csv(work / "data.csv", index_col=0)
    X.rename(columns={"g3": "zzz"}).to_csv(work / "renamed.csv")
    X.iloc[:, :5].to_csv(work / "narrow.csv")
    _bad_model_dirs(work)
    (work / "notes").mkdir()
    (work / "notes" / "thesis.tex").write_text("weeks of work")
    return work


def _check_bad(case, code, stderr, before, folder):
    import re

    args, match = BAD[case]
    assert code == 2, (case, code, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pyro-sparse: error: ") and "Traceback" not in stderr
    assert re.search(match, lines[0]), lines[0]
    after = sorted(p.name for p in folder.iterdir())
    assert after == before  # no DIR, no hidden partial folder, no output file
    assert not (folder / "PWNED").exists()  # the pickle was never loaded


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_exit_2_nothing_written(bad_files, case, monkeypatch, capsys):
    # in-process (``cli.main`` is what the script calls); the script itself is checked on a
    # few of these cases below, since each subprocess pays torch's import
    from pyro_sparse import cli

    before = sorted(p.name for p in bad_files.iterdir())
    monkeypatch.chdir(bad_files)
    code = cli.main([str(a) for a in BAD[case][0]])
    _check_bad(case, code, capsys.readouterr().err, before, bad_files)


@pytest.mark.parametrize("case", ["missing file", "unknown option", "model dir crafted (pickle)",
                                  "non-numeric cell"])
def test_bad_input_through_the_installed_script(bad_files, case):
    before = sorted(p.name for p in bad_files.iterdir())
    r = run(*BAD[case][0], cwd=bad_files)
    _check_bad(case, r.returncode, r.stderr, before, bad_files)


def test_refine_support_flag(work):
    r = run("fit", "data.csv", "--factors", 2, "--out", "refined", "--epochs", 4,
            "--refine-support", "--no-progress", cwd=work)
    assert r.returncode == 0, r.stderr
    W = pd.read_csv(work / "refined" / "loadings.csv", index_col=0).to_numpy()
    assert W.shape == (7, 2) and np.isfinite(W).all()
    ref = json.loads((work / "refined" / "metrics.json").read_text())["refinement"]
    assert ref["n_heldout"] == 40 and 0 <= ref["chosen"] < len(ref["support_size"])


@pytest.mark.parametrize("w_guide", ["spikeslab", "spikeslab_lowrank"])
def test_spikeslab_w_guide_flags(work, w_guide):
    r = run("fit", "data.csv", "--factors", 2, "--out", w_guide, "--epochs", 2,
            "--w-guide", w_guide, "--no-progress", "--refine-posterior-epochs", 2, cwd=work)
    assert r.returncode == 0, r.stderr
    refined = json.loads((work / w_guide / "metrics.json").read_text())["fit"]
    assert refined["refine_posterior"]["epochs"] == 2
    assert '"refine_posterior_epochs": 2' in \
        (work / w_guide / "model" / "config.json").read_text()
    assert f'"w_guide": "{w_guide}"' in (work / w_guide / "model" / "config.json").read_text()
    p = pd.read_csv(work / w_guide / "inclusion.csv", index_col=0).to_numpy()
    assert p.shape == (7, 2) and ((p >= 0) & (p <= 1)).all()


def test_feature_mode_starts_flag(work):
    r = run("fit", "data.csv", "--factors", 2, "--out", "modes", "--epochs", 4,
            "--feature-mode-starts", 2, "--no-progress", cwd=work)
    assert r.returncode == 0, r.stderr
    info = json.loads((work / "modes" / "metrics.json").read_text())["fit"]["feature_modes"]
    assert info["n_starts"] == 2 and info["epochs"] == 1 and len(info["gain"]) == 7
    assert '"feature_mode_starts": 2' in (work / "modes" / "model" / "config.json").read_text()
    for extra in (["--model", "vae"], ["--factor-correlation"],
                  ["--likelihood", "categorical"]):
        r = run("fit", "data.csv", "--factors", 2, "--out", "bad", "--epochs", 2,
                "--feature-mode-starts", 2, "--no-progress", *extra, cwd=work)
        assert r.returncode == 2 and "--feature-mode-starts" in r.stderr, (extra, r.stderr)
        assert not (work / "bad").exists()


def test_restarts_with_refinement_and_factor_correlation(work):
    r = run("fit", "data.csv", "--factors", 2, "--out", "restarted", "--epochs", 3,
            "--refine-support", "--restarts", 2, "--factor-correlation",
            "--lkj-concentration", 5, "--refine-polish", 1, "--seed", 3, "--no-progress",
            "--init", "factor_analysis", "--output-scale", 0.5, "--jobs", 2,
            "--reseed-rounds", 1, "--reseed-epochs", 1, cwd=work)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((work / "restarted" / "metrics.json").read_text())
    ref = metrics["refinement"]
    assert ref["restart_seeds"] == [3, 4] and ref["chosen_restart"] in (0, 1)
    assert ref["polish_epochs"] == 3
    best = int(np.argmax(ref["restart_heldout_loglik"]))
    sizes = ref["restart_support_size"]
    assert ref["chosen_restart"] == best or sizes[ref["chosen_restart"]] < sizes[best]
    m = ps.load_model(work / "restarted" / "model")
    assert m.n_restarts == 2 and m.factor_correlation and m.lkj_concentration == 5.0
    assert m.refine_polish == 1.0 and m.init == "factor_analysis" and m.output_scale == 0.5
    assert m.reseed_rounds == 1 and m.reseed_epochs == 1
    assert len(m.fit_info_["reseed"]) == 1  # the rounds ran in the worker processes too


def test_warnings_not_errors(work):
    X = pd.read_csv(work / "data.csv", index_col=0).iloc[:40]
    X["g1"] = 2.0
    X.to_csv(work / "const.csv")
    r = run("fit", "const.csv", "--factors", 9, "--batch-size", 100, "--epochs", 1,
            "--out", "warned", "--no-progress", cwd=work)
    assert r.returncode == 0, r.stderr
    warns = [ln for ln in r.stderr.splitlines() if ln.startswith("pyro-sparse: warning:")]
    text = " ".join(warns)
    assert "constant column" in text and "'g1'" in text
    assert "n_factors=9 is larger than the number of features (7)" in text
    assert "batch_size=100 is larger than the number of rows (40)" in text


# ------------------------------------------------------------------ faults
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    X = ps.datasets.paper_synthetic(n=1000, seed=1).X
    _csv(tmp_path / "d.csv", X)
    common = ["--factors", 3, "--epochs", 30, "--seed", 5, "--no-progress"]
    r = run("fit", "d.csv", "--out", "plain", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ck = tmp_path / ".killed.partial" / "checkpoint.safetensors"
    proc = subprocess.Popen(CMD + ["fit", "d.csv", "--out", "killed", "--checkpoint-every",
                                   "3"] + [str(c) for c in common],
                            cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not ck.exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the fit ended before it could be killed"
    assert not (tmp_path / "killed").exists()  # no half-written results
    r = run("fit", "d.csv", "--out", "killed", "--resume", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / ".killed.partial").exists()
    for f in ("loadings.csv", "inclusion.csv", "factors.csv"):
        assert (tmp_path / "plain" / f).read_bytes() == (tmp_path / "killed" / f).read_bytes()


def test_same_seed_gives_byte_identical_loadings(work):
    for out in ("again1", "again2"):
        r = run("fit", "data.csv", "--factors", 3, "--out", out, "--epochs", 3,
                "--no-progress", cwd=work)
        assert r.returncode == 0, r.stderr
    a = (work / "again1" / "loadings.csv").read_bytes()
    assert a == (work / "again2" / "loadings.csv").read_bytes()
    assert a == (work / "fitted" / "loadings.csv").read_bytes()


def test_diverging_loss_exits_3_and_writes_nothing(tmp_path):
    X = np.full((30, 3), 1e30)
    X[::2] *= -1
    _csv(tmp_path / "huge.csv", X)
    r = run("fit", "huge.csv", "--factors", 2, "--out", "o", "--no-progress", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "loss became" in r.stderr and "no results were written" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.csv"]


def test_diverging_after_a_checkpoint_keeps_it(tmp_path):
    # a fault injected into the real command: the loss turns NaN in epoch 5
    _csv(tmp_path / "d.csv", ps.datasets.paper_synthetic(n=100, seed=0).X)
    code = (
        "import sys, torch, pyro_sparse.infer.svi as svi\n"
        "real = svi.make_elbo\n"
        "def make_elbo(model):\n"
        "    elbo, n = real(model), [0]\n"
        "    base = elbo.differentiable_loss\n"
        "    def loss(*a):\n"
        "        n[0] += 1\n"
        "        out = base(*a)\n"
        "        return out * float('nan') if n[0] > 4 else out\n"
        "    elbo.differentiable_loss = loss\n"
        "    return elbo\n"
        "svi.make_elbo = make_elbo\n"
        "from pyro_sparse.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", code, "fit", "d.csv", "--factors", "2",
                        "--out", "o", "--epochs", "10", "--batch-size", "100",
                        "--checkpoint-every", "2", "--no-progress"],
                       cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 3, r.stderr
    assert "the last good checkpoint is kept at" in r.stderr
    ck = tmp_path / ".o.partial" / "checkpoint.safetensors"
    _, info = ps.infer.read_checkpoint(ck)
    assert info["epoch"] == 4 and np.isfinite(info["history"]).all()
    assert not (tmp_path / "o").exists()


def test_h5ad_with_layer(tmp_path):
    anndata = pytest.importorskip("anndata")
    import scipy.sparse as sp

    d = ps.datasets.sparse_counts(n=80, seed=0)
    a = anndata.AnnData(X=np.log1p(d.X))
    a.layers["counts"] = sp.csr_matrix(d.X)
    a.var_names = d.feature_names
    a.obs_names = [f"cell{i}" for i in range(80)]
    a.write_h5ad(tmp_path / "cells.h5ad")
    r = run("fit", "cells.h5ad", "--layer", "counts", "--likelihood", "negbin", "--factors", 3,
            "--epochs", 2, "--heldout", 0.25, "--out", "fit", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    F = pd.read_csv(tmp_path / "fit" / "factors.csv", index_col=0)
    assert F.index[0] == "cell0" and len(F) == 80
    held = json.loads((tmp_path / "fit" / "metrics.json").read_text())["heldout"]
    assert held["n_rows"] == 20 and np.isfinite(held["mse"])
    r = run("transform", "fit", "cells.h5ad", "--layer", "counts", "--out", "z.csv",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run("fit", "cells.h5ad", "--layer", "spliced", "--factors", 3, "--out", "bad",
            cwd=tmp_path)
    assert r.returncode == 2 and "has no layer 'spliced' (layers: 'counts')" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_demo_writes_its_data_and_fit(tmp_path):
    r = run("demo", "--out", "demo_run", "--epochs", 2, "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "support recovery" in r.stdout
    out = tmp_path / "demo_run"
    for f in ("data.csv", "loadings.csv", "inclusion.csv", "anchors.json", "model/config.json"):
        assert (out / f).is_file(), f
    assert list(pd.read_csv(out / "loadings.csv", index_col=0).index) == \
        [f"x{j}" for j in range(1, 8)]
    r = run("report", "demo_run", cwd=tmp_path)
    assert r.returncode == 0 and "factor_0" in r.stdout
    r = run("demo", "--out", "demo_run", "--epochs", 1, "--no-progress", cwd=tmp_path)
    assert r.returncode == 2 and "exists; pass --overwrite" in r.stderr
    # --overwrite replaces an earlier output of ours (every entry the demo writes is known)
    r = run("demo", "--out", "demo_run", "--epochs", 1, "--no-progress", "--overwrite",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # ... but not once the user has put something of theirs into it
    (out / "my_notes.txt").write_text("keep")
    r = run("demo", "--out", "demo_run", "--epochs", 1, "--no-progress", "--overwrite",
            cwd=tmp_path)
    assert r.returncode == 2 and "it holds my_notes.txt" in r.stderr
    assert (out / "my_notes.txt").read_text() == "keep" and (out / "model").is_dir()
