"""The ``pyro-sparse`` command: fit, transform, reconstruct, report and demo from a shell.

Results go to files and stdout, progress to stderr. Bad input gives one line on stderr and
exit status 2 with nothing written; a diverging fit exits with status 3 and keeps its last
good checkpoint. ``fit`` writes into a hidden folder beside its destination and renames it at
the end, so an output folder is either complete or absent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser", "write_fit_outputs"]

PROG = "pyro-sparse"
EXIT_USAGE, EXIT_DIVERGED = 2, 3
CHECKPOINT = "checkpoint.safetensors"


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit status 2."""


class Diverged(Exception):
    """The loss became NaN or infinite: exit status 3."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(f"{message} (see {self.prog} --help)")


# --------------------------------------------------------------------------- helpers
def _int_at_least(name, low: int):
    def conv(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") \
                from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{name} must be >= {low}, got {v}")
        return v
    return conv


def _positive_int(name):
    return _int_at_least(name, 1)


def _nonneg_int(name):
    return _int_at_least(name, 0)


def _positive_float(name):
    def conv(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") \
                from None
        if not np.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a finite number > 0, got {text}")
        return v
    return conv


def _fraction(name, what, upper_closed=False):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (0 <= v <= 1 if upper_closed else 0 <= v < 1):
            raise argparse.ArgumentTypeError(
                f"{name} is a fraction of {what} in [0, 1{']' if upper_closed else ')'}, got "
                f"{text}")
        return v
    return parse


def _names(prefix, n, given=None):
    return list(given) if given is not None else [f"{prefix}_{i}" for i in range(n)]


def _model_folder(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such model folder")
    return path / "model" if (path / "model" / "config.json").exists() else path


def _load(path):
    from .estimators import load_model

    return load_model(_model_folder(path))


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, replacing an existing ``dst`` only once ``src`` is complete."""
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=dst.parent))
        os.replace(dst, old / dst.name)
        os.replace(src, dst)
        shutil.rmtree(old)
    else:
        os.replace(src, dst)


# what `fit` and `demo` write into --out: --overwrite replaces a folder holding only these
OUTPUT_ENTRIES = frozenset({"anchors.json", "data.csv", "effect.csv", "factors.csv",
                            "heldout.csv", "inclusion.csv", "loadings.csv", "metrics.json",
                            "model", "plots", "posterior.nc"})


def _check_out_dir(out: Path, overwrite: bool) -> None:
    # --out: absent, or (with --overwrite) an empty folder or an earlier output of ours; a
    # folder holding anything else would be deleted by the replacement, so it is refused
    if not out.exists():
        return
    if not overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    if not out.is_dir():
        raise UsageError(f"{out} is a file, not an output folder; refusing to replace it")
    entries = set(os.listdir(out))
    if not entries:
        return
    other = sorted(entries - OUTPUT_ENTRIES)
    from .io import CONFIG_FILE, is_model_config

    if other or not is_model_config(out / "model" / CONFIG_FILE):
        what = (f"it holds {', '.join(other[:5])}{' ...' if len(other) > 5 else ''}"
                if other else "it has no pyro_sparse model in model/")
        raise UsageError(f"{out} is not a pyro-sparse output folder ({what}); --overwrite "
                         "only replaces an earlier output, so choose another --out")


def _check_out_file(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists; pass --overwrite to replace it")
    if path.exists() and path.is_dir():
        raise UsageError(f"{path} is a folder, not a file")
    if not path.parent.exists():
        raise UsageError(f"{path.parent}: no such folder for the output")


# --------------------------------------------------------------------------- outputs
def _heldout_lppd(est, X) -> float:
    """Mean over rows of log (1/S) sum_s p(x_n | globals_s), z integrated out (IWAE)."""
    from scipy.special import logsumexp

    S = 1 if est.posterior_is_point_mass_ else 20
    ll = est.log_likelihood(X, num_samples=S)
    return float(np.mean(logsumexp(ll, axis=0) - np.log(S)))


def write_fit_outputs(est, folder, data, heldout_rows=None, extra_metrics=None,
                      num_draws: int = 100) -> Path:
    """Write everything ``pyro-sparse fit`` leaves in its output folder into ``folder``.

    ``model/``, ``factors.csv``, ``metrics.json``, ``posterior.nc``, ``plots/loss.png`` and,
    for models with loadings, ``loadings.csv``, ``inclusion.csv``, ``effect.csv`` (effect
    shares on the fitted rows), ``anchors.json`` and ``plots/loadings.png``.

    Parameters
    ----------
    est : SparseVAE or VAE
        Fitted.
    folder : pathlib.Path
        Existing folder to write into.
    data : pyro_sparse.io.DataFile
        All rows (factors are written for every one, held-out rows included).
    heldout_rows : numpy.ndarray of int, optional
        Rows not used in fitting (listed in ``heldout.csv``, scored in ``metrics.json``).
    extra_metrics : dict, optional
        Merged into ``metrics.json``.
    num_draws : int
        Posterior draws of W stored in ``posterior.nc`` (1 for a point-mass posterior).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .diagnostics import anchor_report, to_arviz
    from .io import write_csv
    from .plots import plot_loadings, plot_loss

    folder = Path(folder)
    X = data.X
    samples = _names("sample", X.shape[0], data.sample_ids)
    features = _names("feature", X.shape[1], est.feature_names_in_ or data.feature_names)
    factors = [f"factor_{k}" for k in range(est.n_factors)]
    est.save(folder / "model")
    write_csv(folder / "factors.csv", est.transform(data), samples, factors, "sample")
    metrics = dict(model=type(est).__name__, params=est.get_params(),
                   fit=est.fit_info_, final_loss=float(est.loss_history_[-1]),
                   final_loss_per_row=float(est.loss_history_[-1]) / est.fit_info_["n_rows"])
    if heldout_rows is not None and len(heldout_rows):
        Xh = X[heldout_rows]
        R = est.reconstruct(Xh)
        Xd = Xh.toarray() if hasattr(Xh, "toarray") else Xh
        obs = ~np.isnan(Xd)
        metrics["heldout"] = dict(
            n_rows=int(len(heldout_rows)),
            elbo_per_row=float(est.score(Xh)),
            loglik_per_row=_heldout_lppd(est, Xh),
            mse=float(np.mean((R[obs] - Xd[obs]) ** 2)))
        write_csv(folder / "heldout.csv", np.asarray(heldout_rows)[:, None],
                  [samples[i] for i in heldout_rows], ["row"], "sample")
    if getattr(est, "refinement_", None):
        metrics["refinement"] = est.refinement_
    metrics.update(extra_metrics or {})
    if hasattr(est, "loadings_"):
        write_csv(folder / "loadings.csv", est.loadings_, features, factors, "feature")
        write_csv(folder / "inclusion.csv", est.inclusion_probs_, features, factors, "feature")
        # where each factor acts on the rows the model was fitted on (held-out rows left out)
        fit_rows = X if heldout_rows is None or not len(heldout_rows) else \
            X[np.setdiff1d(np.arange(X.shape[0]), heldout_rows)]
        write_csv(folder / "effect.csv", est.effect_shares(fit_rows), features, factors,
                  "feature")
        rep = anchor_report(est, num_samples=num_draws, X=data)
        (folder / "anchors.json").write_text(json.dumps(rep.to_dict(), indent=2) + "\n")
    point = est.posterior_is_point_mass_
    dt = to_arviz(est, num_samples=1 if point else num_draws)
    dt.to_netcdf(folder / "posterior.nc", engine="h5netcdf")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    (folder / "plots").mkdir(exist_ok=True)
    fig = plot_loss(est.loss_history_)
    fig.savefig(folder / "plots" / "loss.png", dpi=100)
    plt.close(fig)
    if hasattr(est, "loadings_"):
        fig = plot_loadings(est.loadings_, est.inclusion_probs_, feature_names=features)
        fig.savefig(folder / "plots" / "loadings.png", dpi=100)
        plt.close(fig)
    return folder


# --------------------------------------------------------------------------- commands
def _make_estimator(a):
    from .estimators import VAE, SparseVAE

    if a.model == "vae":
        return VAE(n_factors=a.factors, likelihood=a.likelihood, hidden_dim=a.hidden,
                   n_restarts=a.restarts, output_scale=a.output_scale, lr_decay=a.lr_decay,
                   standardize=a.standardize)
    return SparseVAE(n_factors=a.factors, likelihood=a.likelihood, hidden_dim=a.hidden,
                     lambda0=a.lambda0, lambda1=a.lambda1, w_guide=a.w_guide,
                     refine_support=a.refine_support, n_restarts=a.restarts,
                     factor_correlation=a.factor_correlation,
                     lkj_concentration=a.lkj_concentration, refine_polish=a.refine_polish,
                     init=a.init, output_scale=a.output_scale,
                     reseed_rounds=a.reseed_rounds, reseed_epochs=a.reseed_epochs,
                     lr_decay=a.lr_decay, refine_posterior_epochs=a.refine_posterior_epochs,
                     feature_mode_starts=a.feature_mode_starts, standardize=a.standardize)


def cmd_fit(a) -> int:
    from .infer import factorises_over_features, resolve_device
    from .io import read_data
    from .likelihoods import check_data

    out = Path(a.out)
    work = out.parent / f".{out.name}.partial"
    ck = work / CHECKPOINT
    _check_out_dir(out, a.overwrite)
    if not out.parent.exists():
        raise UsageError(f"{out.parent}: no such folder for --out")
    if a.refine_support and (a.model == "vae" or a.checkpoint_every or a.resume):
        raise UsageError("--refine-support needs --model sparse and does not combine with "
                         "--checkpoint-every or --resume")
    if a.refine_polish and not a.refine_support:
        raise UsageError("--refine-polish needs --refine-support")
    if a.standardize and a.likelihood != "normal":
        raise UsageError(f"--standardize applies to --likelihood normal (counts and 0/1 data "
                         f"have their own scale), got --likelihood {a.likelihood}")
    if a.restarts > 1 and (a.checkpoint_every or a.resume):
        raise UsageError("--restarts > 1 does not combine with --checkpoint-every or --resume "
                         "(fit restarts one by one with --seed instead)")
    if a.jobs > 1 and a.device != "cpu":
        raise UsageError("--jobs > 1 fits restarts in CPU processes; use --device cpu")
    if a.model == "vae" and (a.factor_correlation or a.lkj_concentration != 1.0
                             or a.init != "random" or a.reseed_rounds
                             or a.reseed_epochs is not None or a.refine_posterior_epochs
                             or a.feature_mode_starts):
        raise UsageError("--factor-correlation, --lkj-concentration, --init, --reseed-rounds, "
                         "--reseed-epochs, --refine-posterior-epochs and --feature-mode-starts "
                         "need --model sparse")
    if a.feature_mode_starts and (a.factor_correlation
                                  or not factorises_over_features(a.likelihood)):
        raise UsageError("--feature-mode-starts needs a likelihood that factorises over "
                         "features (here: normal or bernoulli) and no --factor-correlation")
    if a.refine_posterior_epochs and (a.w_guide == "map" or a.factor_correlation):
        raise UsageError("--refine-posterior-epochs refines a variational posterior over W: "
                         "it needs --w-guide other than map and no --factor-correlation")
    if a.resume and not ck.is_file():
        raise UsageError(f"--resume: no checkpoint at {ck} (an interrupted fit with "
                         "--checkpoint-every leaves one)")
    if not a.resume and ck.is_file() and not a.overwrite:
        raise UsageError(f"an interrupted run left a checkpoint at {ck}; pass --resume to "
                         "continue it or --overwrite to start over")
    device = resolve_device(a.device)
    data = read_data(a.data, layer=a.layer)
    est = _make_estimator(a)
    check_data(data.X, a.likelihood, data.feature_names, str(a.data), data.sample_ids)
    N = data.X.shape[0]
    rows = np.arange(N)
    heldout = None
    if a.heldout > 0:
        perm = np.random.default_rng(a.seed).permutation(N)
        n_out = int(round(a.heldout * N))
        if n_out < 1 or n_out >= N:
            raise UsageError(f"--heldout {a.heldout} leaves {n_out} of {N} rows out; need at "
                             "least one row on each side")
        heldout, rows = np.sort(perm[:n_out]), np.sort(perm[n_out:])
    X_fit = data.rows(rows) if heldout is not None else data
    if a.overwrite and not a.resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(exist_ok=True)
    keep_work = False
    t0 = time.perf_counter()
    try:
        try:
            est.fit(X_fit, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                    device=device, progress=not a.no_progress,
                    checkpoint=ck if (a.checkpoint_every or a.resume) else None,
                    checkpoint_every=a.checkpoint_every, resume=a.resume, n_jobs=a.jobs)
        except FloatingPointError as e:
            keep_work = ck.is_file()
            where = (f"the last good checkpoint is kept at {ck}" if keep_work
                     else "no checkpoint was written (use --checkpoint-every)")
            raise Diverged(f"training stopped: {e}; {where}; no results were written") \
                from None
        seconds = time.perf_counter() - t0
        results = work / "results"
        if results.exists():
            shutil.rmtree(results)
        results.mkdir()
        write_fit_outputs(est, results, data, heldout,
                          dict(data=str(a.data), seconds=round(seconds, 3), device=str(device)))
        _replace_dir(results, out)
    except BaseException:
        keep_work = ck.is_file()  # an error or a kill after a checkpoint keeps the checkpoint
        raise
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}/ ({type(est).__name__}, {est.n_factors} factors, "
          f"{a.epochs} epochs, final loss {est.loss_history_[-1]:.6g})")
    return 0


def _transform_like(a, what: str) -> int:
    from .io import read_data, write_csv

    out = Path(a.out)
    if out.exists() and Path(a.data).exists() and out.resolve() == Path(a.data).resolve():
        raise UsageError(f"--out {out} is the input data file; write the {what} elsewhere")
    _check_out_file(out, a.overwrite)
    est = _load(a.model_dir)
    data = read_data(a.data, layer=a.layer)
    samples = _names("sample", data.X.shape[0], data.sample_ids)
    if what == "transform":
        values = est.transform(data)
        cols = [f"factor_{k}" for k in range(values.shape[1])]
    else:
        values = est.reconstruct(data)
        cols = _names("feature", values.shape[1],
                      est.feature_names_in_ or data.feature_names)
    write_csv(out, values, samples, cols, "sample")
    print(f"wrote {out} ({values.shape[0]} rows x {values.shape[1]} columns)")
    return 0


def cmd_transform(a) -> int:
    return _transform_like(a, "transform")


def cmd_reconstruct(a) -> int:
    return _transform_like(a, "reconstruct")


def cmd_report(a) -> int:
    from .diagnostics import anchor_report

    est = _load(a.model_dir)
    if not hasattr(est, "loadings_"):
        raise UsageError(f"{a.model_dir} holds a {type(est).__name__}, which has no loadings "
                         "and hence no anchors; report needs a Sparse VAE")
    if a.support != "pstar" and a.data is None:
        raise UsageError(f"--support {a.support} reads the decoder's effects on some rows: "
                         "give them with --data FILE (the training data, say)")
    X = None
    if a.data is not None:
        from .io import read_data

        X = read_data(a.data, layer=a.layer)
    print(anchor_report(est, threshold=a.threshold, X=X, support=a.support))
    return 0


def cmd_demo(a) -> int:
    from . import demo
    from .io import DataFile

    out = None if a.out is None else Path(a.out)
    if out is not None:
        _check_out_dir(out, a.overwrite)
    if out is not None and not out.parent.exists():
        raise UsageError(f"{out.parent}: no such folder for --out")
    est, data = demo.run(epochs=a.epochs, seed=a.seed, progress=not a.no_progress)
    if out is not None:
        from .io import usual_permissions, write_csv

        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        usual_permissions(work)
        try:
            write_csv(work / "data.csv", data.X, _names("sample", data.X.shape[0]),
                      data.feature_names, "sample")
            write_fit_outputs(est, work, DataFile(data.X, data.feature_names, None,
                                                  work / "data.csv"))
            _replace_dir(work, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"\nwrote the demo's data and fit to {out}/ (try: {PROG} report {out})")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyro-sparse`` (subcommands fit, transform, reconstruct,
    report, demo)."""
    from .likelihoods import LIKELIHOODS

    p = _Parser(prog=PROG, description="Sparse, identifiable deep generative models "
                "(the Sparse VAE) from the command line.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)

    f = sub.add_parser("fit", help="fit a model and write its results into a folder",
                       description="Fit a Sparse VAE (or VAE) to DATA (.csv/.tsv with a header "
                       "of feature names, .npy, .npz with key X, or .h5ad) and write loadings, "
                       "inclusion probabilities, factors, anchors, metrics, the posterior and "
                       "plots into DIR.")
    f.add_argument("data", metavar="DATA")
    f.add_argument("--layer", default=None, metavar="NAME",
                   help="with an .h5ad file, the AnnData layer to use instead of X")
    f.add_argument("--factors", type=_positive_int("--factors"), required=True, metavar="K")
    f.add_argument("--out", required=True, metavar="DIR")
    f.add_argument("--likelihood", choices=LIKELIHOODS, default="normal")
    f.add_argument("--model", choices=("sparse", "vae"), default="sparse")
    f.add_argument("--hidden", type=_positive_int("--hidden"), default=50, metavar="H")
    f.add_argument("--epochs", type=_positive_int("--epochs"), default=200, metavar="E")
    f.add_argument("--batch-size", type=_positive_int("--batch-size"), default=100,
                   metavar="B")
    f.add_argument("--lr", type=_positive_float("--lr"), default=1e-2, metavar="LR")
    f.add_argument("--lr-decay", type=_fraction("--lr-decay", "the steps", True),
                   default=0.25, metavar="FRACTION",
                   help="the learning rate falls linearly towards 0 over this fraction of the "
                        "last steps of every training, so the fit settles (default 0.25; 0: "
                        "constant, the paper's setting)")
    f.add_argument("--lambda0", type=_positive_float("--lambda0"), default=10.0, metavar="L0")
    f.add_argument("--lambda1", type=_positive_float("--lambda1"), default=1.0, metavar="L1")
    f.add_argument("--w-guide", choices=("map", "meanfield", "lowrank", "spikeslab",
                                         "spikeslab_lowrank"), default="map")
    f.add_argument("--refine-support", action="store_true",
                   help="hold out 20%% of the rows and prune loadings that do not help them "
                        "(SparseVAE refine_support; up to 4x the fitting time)")
    f.add_argument("--restarts", type=_positive_int("--restarts"), default=1, metavar="R",
                   help="independent fits (seeds S, S+1, ...); the best ELBO is kept, or with "
                        "--refine-support the sparsest within one SE of the best held-out "
                        "log-likelihood")
    f.add_argument("--jobs", type=_positive_int("--jobs"), default=1, metavar="J",
                   help="with --restarts > 1: fit the restarts in J CPU processes (the same "
                        "fits as one by one at one thread per fit)")
    f.add_argument("--refine-polish", type=_positive_float("--refine-polish"), default=0.0,
                   metavar="P",
                   help="with --refine-support: fine-tune each restart's chosen support P x "
                        "epochs more before the restarts are compared (3 is what "
                        "benchmarks/README.md measured)")
    f.add_argument("--factor-correlation", action="store_true",
                   help="learn a factor correlation matrix (z ~ N(0, R), R ~ LKJ)")
    f.add_argument("--lkj-concentration", type=_positive_float("--lkj-concentration"),
                   default=1.0, metavar="C",
                   help="LKJ shape of --factor-correlation (1 uniform; 5 disfavours "
                        "near-duplicate factors)")
    f.add_argument("--init", choices=("random", "factor_analysis"), default="random",
                   help="start of each fit: random, or a varimax-rotated factor analysis "
                        "(encoder pretrained to its scores, W at its loadings)")
    f.add_argument("--output-scale", type=_positive_float("--output-scale"), default=None,
                   metavar="S",
                   help="normal likelihood: start the decoder's output layer at the data's "
                        "mean and S times its sd (default: torch's initialisation)")
    f.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                   help="the networks work in standardised units (each column centred and "
                        "scaled; the model stays in the data's units); default: on for "
                        "--likelihood normal; --no-standardize fits in the data's units")
    f.add_argument("--reseed-rounds", type=_nonneg_int("--reseed-rounds"), default=0,
                   metavar="R",
                   help="after the fit, R rounds of re-seeding the factor the fit needs least "
                        "on the residuals' leading component, each kept only when the ELBO "
                        "prefers it to training on (costs 2 R x E epochs more)")
    f.add_argument("--reseed-epochs", type=_positive_int("--reseed-epochs"), default=None,
                   metavar="E", help="epochs of each training in a re-seed round "
                                     "(default: half of --epochs)")
    f.add_argument("--refine-posterior-epochs", type=_nonneg_int("--refine-posterior-epochs"),
                   default=0, metavar="E",
                   help="variational --w-guide: after the fit, refine W's posterior for E "
                        "epochs against a free q(z) per row (the encoder's amortisation gap "
                        "otherwise narrows and shifts W's intervals)")
    f.add_argument("--feature-mode-starts", type=_nonneg_int("--feature-mode-starts"),
                   default=0, metavar="S",
                   help="after the fit, search every feature's loadings for a better mode "
                        "from S random starts (factors held at the encoder's means), then "
                        "train a quarter of --epochs more")
    f.add_argument("--seed", type=_nonneg_int("--seed"), default=0, metavar="S")
    f.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    f.add_argument("--heldout", type=_fraction("--heldout", "the rows"), default=0.0,
                   metavar="FRACTION", help="rows kept out of fitting and scored in metrics.json")
    f.add_argument("--checkpoint-every", type=_nonneg_int("--checkpoint-every"), default=0,
                   metavar="EPOCHS", help="write an atomic checkpoint every EPOCHS epochs")
    f.add_argument("--resume", action="store_true",
                   help="continue an interrupted fit from its checkpoint")
    f.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    f.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    f.set_defaults(func=cmd_fit)

    for name, what, func in (("transform", "encoder means (factors) per sample",
                              cmd_transform),
                             ("reconstruct", "decoder means per sample (fills missing values)",
                              cmd_reconstruct)):
        t = sub.add_parser(name, help=what, description=f"Write the {what} of DATA under the "
                           "model in MODEL_DIR to a CSV file.")
        t.add_argument("model_dir", metavar="MODEL_DIR")
        t.add_argument("data", metavar="DATA")
        t.add_argument("--out", required=True, metavar="FILE.csv")
        t.add_argument("--layer", default=None, metavar="NAME",
                       help="with an .h5ad file, the AnnData layer to use instead of X")
        t.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
        t.set_defaults(func=func)

    r = sub.add_parser("report", help="print the anchor table of a fitted Sparse VAE")
    r.add_argument("model_dir", metavar="MODEL_DIR")
    r.add_argument("--threshold", type=_positive_float("--threshold"), default=0.5,
                   help="p* at or above which a feature is in a factor's support")
    r.add_argument("--data", default=None, metavar="DATA",
                   help="rows to read the fitted decoder on (the training data, say): adds "
                        "the redundancy, residual and effect checks, and is needed by "
                        "--support effect / merged")
    r.add_argument("--layer", default=None, metavar="NAME",
                   help="with an .h5ad file, the AnnData layer to use instead of X")
    r.add_argument("--support", choices=("pstar", "effect", "merged"), default="pstar",
                   help="pstar: p* >= THRESHOLD; effect: also an effect share >= 0.1 on "
                        "DATA; merged: effect, with redundant factors read as one")
    r.set_defaults(func=cmd_report)

    d = sub.add_parser("demo", help="fit the paper's synthetic study and print what was "
                       "recovered (the README's main job)")
    d.add_argument("--out", default=None, metavar="DIR",
                   help="also write the data and the fit's outputs here")
    d.add_argument("--epochs", type=_positive_int("--epochs"), default=200)
    d.add_argument("--seed", type=_nonneg_int("--seed"), default=0)
    d.add_argument("--overwrite", action="store_true")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def _version() -> str:
    from . import __version__

    return f"{PROG} {__version__}"


def _one_line(msg) -> str:
    return " ".join(str(msg).split())


def main(argv=None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 3 diverged, 130 ^C)."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        for mod in ("arviz", "xarray", "pyro", "torch", "matplotlib", "h5netcdf"):
            warnings.filterwarnings("ignore", module=rf"{mod}(\.|$)")
        try:
            args = build_parser().parse_args(argv)
            return args.func(args)
        except (UsageError, ValueError, TypeError) as e:
            print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_USAGE
        except Diverged as e:
            print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_DIVERGED
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    raise SystemExit(main())
