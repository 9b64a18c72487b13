"""scikit-learn-style estimators: ``SparseVAE`` and ``VAE``, thin shells over model + guide + loop.

``fit`` validates the data, builds the Pyro model and guide, runs :func:`~pyro_sparse.infer.fit_svi`
and exposes the fitted quantities as attributes with a trailing underscore.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import math
import numbers
import warnings

import numpy as np
import pyro
import torch

from .distributions import (
    PSTAR_VARIANTS,
    calibrate_sigma_prior,
    check_spike_rates,
    estimated_support,
)
from .guides import W_GUIDES, make_guide
from .infer import (
    INITS,
    ConvergenceWarning,
    as_rows,
    candidate_supports,
    check_checkpoint_target,
    effect_share,
    factor_analysis_init,
    factorises_over_features,
    fit_svi,
    full_data_loss,
    loss_trend,
    match_output_scale,
    one_se_choice,
    read_checkpoint,
    refine_posterior,
    rescale_factors,
    resolve_device,
    row_batches,
    search_feature_modes,
    write_checkpoint,
)
from .infer.parallel import check_n_jobs, effective_jobs, run_in_processes
from .infer.reseed import reseed_fit
from .io import (
    DataFile,
    as_data_matrix,
    column_stats,
    load_model_folder,
    save_model_folder,
)
from .likelihoods import (
    check_data,
    check_library,
    check_likelihood,
    mean_from_output,
    observation_dist,
    split_missing,
)
from .models import MARGINALIZE, SparseVAEModel, VAEModel
from .models.sparse_vae import check_positive_int

__all__ = ["SparseVAE", "VAE", "load_model"]


@contextlib.contextmanager
def _local_params():
    # every module of an estimator is built and called with module-local parameters, so two
    # estimators never share Pyro's global parameter store
    with pyro.settings.context(module_local_params=True):
        yield


def _same_value(a, b) -> bool:
    # a constructor argument equal to its default (1 == 1.0; None and booleans only equal
    # themselves, so 0 is not taken for False)
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return a is b
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _check_float(value, name, low=None, low_inclusive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {op} {low}, got {value}")
    return value


def _check_nonneg_int(value, name) -> int:
    """``value`` as int if it is an integer >= 0, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _check_fraction(value, name):
    value = _check_float(value, name, 0.0, low_inclusive=True)
    if value > 1:
        raise ValueError(f"{name} is a fraction of the epochs, in [0, 1]; got {value}")
    return value


#: default of ``output_scale`` (see :func:`pyro_sparse.infer.match_output_scale`)
OUTPUT_SCALE = None

#: default of ``lr_decay``: the learning rate falls over the last quarter of every training
#: (before 2026-12-06 the rate stayed constant, as in the paper; benchmarks/README.md,
#: "Settling the fit")
LR_DECAY = 0.25


def _check_seed(seed, allow_none: bool = False):
    # an integer seed (bool is not one), or None where allowed
    if seed is None and allow_none:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer{' or None' if allow_none else ''}, got "
                        f"{type(seed).__name__}")
    return int(seed)


def _standardisation(col_mean, col_sd):
    # centre and scale per feature: the column's mean and sd (sd 1 for a constant column)
    mean = np.asarray(col_mean, dtype=np.float64)
    sd = np.asarray(col_sd, dtype=np.float64)
    ok = np.isfinite(sd) & (sd > 0)
    return np.where(np.isfinite(mean), mean, 0.0), np.where(ok, sd, 1.0)


#: fit warns (normal likelihood, networks in the data's units) when a column's mean lies
#: more than this many of its sds from 0, or when the column sds span more than
#: SCALE_SPREAD_WARN; on the paper's synthetic data (exploratory runs, 3 replicates) a shift
#: of 10 sds cost the other columns about 30% in held-out MSE and 20 sds ruined the fit, a
#: spread of 54 cost 20% and of 540 ruined it (benchmarks/README.md, "Columns on other
#: scales")
OFFSET_WARN = 5.0
SCALE_SPREAD_WARN = 50.0


def _scale_note(col_mean_g, col_sd_g, names) -> str:
    # what the columns' means and sds say against fitting in the data's units, or ""
    mean = np.asarray(col_mean_g, dtype=np.float64)
    sd = np.asarray(col_sd_g, dtype=np.float64)
    ok = np.isfinite(sd) & (sd > 0) & np.isfinite(mean)
    if not ok.any():
        return ""

    def name(g):
        return repr(names[g]) if names else f"column {g}"

    parts = []
    shift = np.where(ok, np.abs(mean) / np.where(ok, sd, 1.0), 0.0)
    if shift.max() > OFFSET_WARN:
        g = int(np.argmax(shift))
        parts.append(f"{int((shift > OFFSET_WARN).sum())} column(s) have a mean more than "
                     f"{OFFSET_WARN:g} sds from 0 (the furthest: {name(g)}, mean "
                     f"{mean[g]:.4g}, sd {sd[g]:.4g})")
    lo, hi = int(np.argmin(np.where(ok, sd, np.inf))), int(np.argmax(np.where(ok, sd, 0.0)))
    if sd[hi] / sd[lo] > SCALE_SPREAD_WARN:
        parts.append(f"the column sds span a factor of {sd[hi] / sd[lo]:.3g} ({name(lo)}: "
                     f"{sd[lo]:.4g}, {name(hi)}: {sd[hi]:.4g})")
    return "; ".join(parts)


def _check_standardize(value, likelihood):
    # standardising is defined for the normal likelihood (counts have their own scale);
    # None: decided at fit from the columns' means and sds (_Estimator._standardizes)
    if value is None:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"standardize must be True, False or None, got "
                        f"{type(value).__name__}")
    if value and likelihood != "normal":
        raise ValueError(f"standardize=True applies to likelihood='normal' (counts and 0/1 "
                         f"data have their own scale), got likelihood={likelihood!r}")
    return bool(value)


def _check_output_scale(value):
    # None (torch's own initialisation of the output layer) or a positive multiple of the sd
    return None if value is None else _check_float(value, "output_scale", 0.0)


def _sample_with(obs, gen: torch.Generator) -> torch.Tensor:
    # torch distributions draw from the global RNG; fork it so the draws follow ``gen``
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
    devices = [gen.device] if gen.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return obs.sample()


def _module_tensors(model, guide) -> dict:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"guide.{k}": v for k, v in guide.state_dict().items()})
    return tensors


#: buffers added after models were first saved whose fresh values (the identity) are what
#: older folders and checkpoints mean: the standardisation of the encoder's input and the
#: decoder's output map
_IDENTITY_BUFFERS = ("in_loc_g", "in_scale_g", "out_loc_g", "out_scale_g")


def _with_identity_buffers(module, state: dict) -> dict:
    own = module.state_dict()
    missing = {k: v for k, v in own.items()
               if k not in state and k.rsplit(".", 1)[-1] in _IDENTITY_BUFFERS}
    return {**state, **missing}


def _load_state(model, guide, tensors: dict) -> None:
    m_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(_with_identity_buffers(model, m_state), strict=True)
    g_state = _with_identity_buffers(
        guide, {k[6:]: v for k, v in tensors.items() if k.startswith("guide.")})
    own = guide.state_dict()
    key = "globals_guide.log_scale_sd_k"
    if key in own and key not in g_state:
        # folders written before the scale-symmetry step: no spread recorded
        g_state[key] = torch.zeros_like(own[key])
    key = "globals_guide.support_mask_gk"
    if key in own and key not in g_state:
        # folders written before the support mask was saved: W's zeros are its support
        g_state[key] = (g_state["globals_guide.W_gk"] != 0).to(own[key].dtype)
    guide.load_state_dict(g_state, strict=True)


def _numpy_state(model, guide) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in _module_tensors(model, guide).items()}


def _diverged(seed, err) -> dict:
    # what stands in for a fit whose loss turned NaN (FloatingPointError): the others may stand
    return {"seed": int(seed), "error": str(err)}


def _is_diverged(out) -> bool:
    return isinstance(out, dict) and set(out) == {"seed", "error"}


def _drop_diverged(outs, hint: str, stacklevel: int):
    """Split fits from :func:`_diverged` markers: (kept, failed). Raises FloatingPointError
    when every fit diverged; warns (ConvergenceWarning, ending with ``hint``) when some did."""
    failed = [o for o in outs if _is_diverged(o)]
    kept = [o for o in outs if not _is_diverged(o)]
    if not kept:
        raise FloatingPointError(f"every restart diverged; restart seed {failed[0]['seed']}: "
                                 f"{failed[0]['error']}")
    if failed:
        warnings.warn(f"{len(failed)} of {len(outs)} restarts diverged (seeds "
                      f"{', '.join(str(f['seed']) for f in failed)}: {failed[0]['error']}); "
                      f"{hint}", ConvergenceWarning, stacklevel=stacklevel + 1)
    return kept, failed


def _restart_in_worker(cls, params, ctx, seed):
    # one restart of ``cls(**params).fit`` in a worker process (see _Estimator.fit's n_jobs)
    est = cls(**params)
    dev = torch.device("cpu")
    try:
        fit = est._fit_restart(ctx, seed, dev, as_rows(ctx["fit_arr"], dev))
    except FloatingPointError as e:
        return _diverged(seed, e)
    out = {k: v for k, v in fit.items() if k not in ("model", "guide", "cand")}
    out["state"] = _numpy_state(fit["model"], fit["guide"])
    out["cand"] = None
    if fit["cand"] is not None:
        out["cand"] = {k: v for k, v in fit["cand"].items() if k != "fitted"}
        out["cand"]["state"] = _numpy_state(*fit["cand"]["fitted"])
    return out


def _fit_in_worker(cls, params, X, seed, fit_kwargs):
    # a whole ``cls(**params).fit`` in a worker process (see _fit_many)
    try:
        return cls(**params).fit(X, seed=seed, **fit_kwargs)._payload()
    except FloatingPointError as e:
        return _diverged(seed, e)


def _worker_jobs(n_jobs, n_tasks: int, device, what: str) -> int:
    # the worker processes to start for n_tasks independent fits: validated, at most one per
    # task, and more than one only on CPU
    jobs = effective_jobs(check_n_jobs(n_jobs), n_tasks)
    if jobs > 1 and resolve_device(device).type != "cpu":
        raise ValueError(f"n_jobs={n_jobs} runs the {what} in CPU worker processes; use "
                         f"n_jobs=1 with device={device!r}")
    return jobs


def _in_workers(fn, tasks, jobs: int, progress: bool, desc: str, unit: str,
                stacklevel: int) -> list:
    # run_in_processes with torch.get_num_threads() // jobs threads per worker and, with
    # progress, a tqdm bar of finished tasks; the workers' warnings point ``stacklevel``
    # frames above the caller (at the user's call)
    threads = max(1, torch.get_num_threads() // jobs)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc=f"{desc} ({jobs} processes)", unit=unit,
                   leave=False)
    try:
        return run_in_processes(fn, tasks, jobs, threads=threads,
                                on_done=None if bar is None else lambda: bar.update(1),
                                stacklevel=stacklevel + 1)
    finally:
        if bar is not None:
            bar.close()


def _fit_many(cls, params_list, X, seeds, n_jobs, fit_kwargs, what="fits") -> list:
    # independent ``cls(**params).fit(X, seed=s, **fit_kwargs)``, one by one or in n_jobs
    # spawned CPU workers with torch.get_num_threads() // n_jobs threads each; the fitted
    # estimators come back in order, a _diverged marker in place of a fit whose loss turned
    # NaN (fit_restarts)
    jobs = _worker_jobs(n_jobs, len(seeds), fit_kwargs.get("device", "cpu"), what)
    if jobs == 1:
        outs = []
        for p, s in zip(params_list, seeds):
            try:
                outs.append(cls(**p).fit(X, seed=s, **fit_kwargs))
            except FloatingPointError as e:
                outs.append(_diverged(s, e))
    else:
        quiet = dict(fit_kwargs, progress=False, device="cpu")
        outs = _in_workers(_fit_in_worker,
                           [(cls, p, X, s, quiet) for p, s in zip(params_list, seeds)], jobs,
                           fit_kwargs.get("progress", True), f"{cls.__name__} {what}", "fit",
                           stacklevel=3)  # user -> fit_restarts -> _fit_many
        outs = [o if _is_diverged(o) else cls._from_payload(o) for o in outs]
    return outs


def _check_config_agrees(cfg: dict) -> None:
    # the estimator's parameters, the model's shapes and the feature names must tell one story
    mc, params = cfg["model_config"], cfg["params"]
    for key in ("n_factors", "hidden_dim", "likelihood"):
        if key in mc and mc[key] != params.get(key):
            raise ValueError(f"{key} is {params.get(key)!r} in params but {mc[key]!r} in "
                             "model_config")
    n = int(cfg["n_features"])
    if "n_features" in mc and mc["n_features"] != n:
        raise ValueError(f"n_features is {n} but model_config says {mc['n_features']}")
    names = cfg.get("feature_names")
    if names is not None and len(names) != n:
        raise ValueError(f"{len(names)} feature names for {n} features")


def check_estimator(estimator, where: str) -> None:
    """Raise a TypeError unless ``estimator`` is a SparseVAE or VAE instance.

    Parameters
    ----------
    estimator : object
        What the user passed.
    where : str
        The calling function, for the message's example.
    """
    if not isinstance(estimator, _Estimator):
        what = f"the class {estimator.__name__}" if isinstance(estimator, type) else \
            f"a {type(estimator).__name__}"
        raise TypeError(f"estimator must be a SparseVAE or VAE instance, got {what}; e.g. "
                        f"{where}(ps.SparseVAE(n_factors=5), X, ...)")


def _warn_duplicate_names(names, what):
    # a feature name used twice: fit works on positions, but the diagnostics index by name
    first, dups = {}, {}
    for i, n in enumerate(names):
        if n in first:
            dups.setdefault(n, [first[n]]).append(i)
        else:
            first[n] = i
    if dups:
        shown = "; ".join(f"{n!r} at columns {cols}" for n, cols in list(dups.items())[:3])
        warnings.warn(f"{what} has {len(dups)} duplicated feature name(s) ({shown}); the fit "
                      "uses column positions, but to_arviz coordinates and the anchor report "
                      "name features, so make the names unique to tell them apart",
                      UserWarning, stacklevel=4)


class _Estimator:
    """Shared fit / transform / reconstruct / save / load of the amortised VAEs."""

    _param_names: tuple = ()

    # ------------------------------------------------------------------ building
    def _model_config(self, x_ng, col_sd_g=None) -> dict:
        raise NotImplementedError

    def _make_model(self, cfg: dict):
        raise NotImplementedError

    def _sigma_prior_params(self, x_ng, col_sd_g=None):
        # the noise prior is calibrated on the data's column sds (normal likelihood only)
        if self.likelihood != "normal":
            return None
        return list(calibrate_sigma_prior(column_stats(x_ng)[1] if col_sd_g is None
                                          else col_sd_g))

    def _w_guide(self) -> str:
        return "map"

    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments as a dict (scikit-learn convention).

        Parameters
        ----------
        deep : bool
            Accepted for scikit-learn (``clone``, pipelines); no parameter is an estimator,
            so it changes nothing.
        """
        return {k: getattr(self, k) for k in self._param_names}

    def set_params(self, **params):
        """Set constructor arguments (scikit-learn convention), checked as the constructor does.

        Parameters
        ----------
        **params
            Constructor arguments by name. A fitted model is left as fitted; refit to use
            the new settings.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For an unknown name, or a value the constructor refuses (nothing is changed then).
        """
        unknown = sorted(set(params) - set(self._param_names))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for "
                             f"{type(self).__name__}; valid: {', '.join(self._param_names)}")
        checked = type(self)(**{**self.get_params(), **params})  # raises before any change
        for k in self._param_names:
            setattr(self, k, getattr(checked, k))
        return self

    def fit_transform(self, X, y=None, **fit_kwargs):
        """Fit to ``X`` and return its encoder means, shape (N, K) (scikit-learn convention).

        Parameters
        ----------
        X : array-like, shape (N, G)
            As :meth:`fit`.
        y : None
            Ignored.
        **fit_kwargs
            Options of :meth:`fit` (``epochs``, ``seed``, ``layer``, ...).
        """
        self.fit(X, **fit_kwargs)
        return self.transform(X, layer=fit_kwargs.get("layer"))

    def __repr__(self):
        # as scikit-learn prints estimators: only the arguments that differ from the defaults,
        # in constructor order (``SparseVAE(n_factors=3, lambda0=20.0)``; evaluates back)
        defaults = {k: p.default for k, p in inspect.signature(type(self)).parameters.items()}
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()
                         if k not in defaults or not _same_value(v, defaults[k]))
        return f"{type(self).__name__}({args})"

    def _build(self, cfg: dict, device, seed: int):
        pyro.set_rng_seed(seed)
        with _local_params():
            model = self._make_model(cfg)
            guide = make_guide(model, self._w_guide())
        return model.to(device), guide.to(device)

    # ------------------------------------------------------------------ data
    def _prepare(self, X, what="X", fitted=True, layer=None):
        if isinstance(X, DataFile) and what == "X":
            what = str(X.path)  # messages name the file the rows came from
        arr, names = as_data_matrix(X, what, layer)
        if fitted:
            self._check_fitted()
            if arr.shape[1] != self.n_features_in_:
                raise ValueError(f"{what} has {arr.shape[1]} features (columns) but the model "
                                 f"was fitted on {self.n_features_in_}")
            if names is not None and self.feature_names_in_ is not None and \
                    list(names) != list(self.feature_names_in_):
                diff = [(i, a, b) for i, (a, b) in enumerate(zip(names, self.feature_names_in_))
                        if a != b][:3]
                raise ValueError(f"{what} feature names differ from those seen in fit; first "
                                 f"differences (column, given, expected): {diff}")
        check_data(arr, self.likelihood, names, what, fitting=not fitted)
        if not fitted and names is not None:
            _warn_duplicate_names(names, what)
        return arr, names

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit first")

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, *, epochs: int = 200, batch_size: int = 100, lr: float = 1e-2,
            seed: int = 0, device="cpu", progress: bool = True, layer: str | None = None,
            checkpoint=None, checkpoint_every: int = 0, resume: bool = False, n_jobs: int = 1):
        """Fit the model to data by minibatch SVI.

        Parameters
        ----------
        X : numpy.ndarray, torch.Tensor, pandas.DataFrame, AnnData or scipy.sparse matrix
            Data, shape (N, G) (counts for ``poisson``, ``negbin`` and ``categorical``, 0/1
            for ``bernoulli``). NaN marks a missing entry: it is left out of the likelihood,
            and the encoder sees the column mean in its place. DataFrame column names and
            AnnData ``var_names`` are kept; sparse matrices are densified one minibatch at a
            time.
        y : None
            Ignored (the model is unsupervised); there so that scikit-learn pipelines, which
            pass ``y`` as the second argument, can fit it. The options below are keywords.
        epochs : int
            Passes over the data.
        batch_size : int
            Rows per SVI step.
        lr : float
            Adam learning rate.
        seed : int
            Random seed (initialisation, minibatch order, Monte Carlo draws).
        device : {"cpu", "cuda", "auto"} or torch.device
            Where to train.
        progress : bool
            Show a tqdm progress bar of epochs with the running loss.
        layer : str, optional
            With an AnnData, the layer to fit instead of ``X``.
        checkpoint : str or pathlib.Path, optional
            File for training checkpoints (model, guide, optimiser, RNG states, epoch),
            written atomically every ``checkpoint_every`` epochs. Needs ``n_restarts=1``.
        checkpoint_every : int
            Epochs between checkpoints (0: none).
        resume : bool
            Continue from ``checkpoint`` up to ``epochs`` in all. The data, the constructor
            arguments and the other fit arguments must be those of the interrupted run; on
            CPU the result equals an uninterrupted run with the same seed.
        n_jobs : int
            With ``n_restarts > 1``, fit the restarts in this many spawned CPU processes
            (-1: one per core), each with ``torch.get_num_threads() // n_jobs`` threads
            (at least 1). Every restart is seeded as in a serial fit, so at the same thread
            count per fit the result is the same; CPU only. A script that uses it needs the
            ``if __name__ == "__main__":`` guard of :mod:`multiprocessing`.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For bad data (naming row and column), bad arguments, or ``resume`` without a
            matching checkpoint.
        FloatingPointError
            When the loss becomes NaN or infinite (the last checkpoint is kept); with
            ``n_restarts > 1``, only when it does so in every restart.

        Warns
        -----
        ConvergenceWarning
            When the loss was still falling materially over the last epochs
            (:func:`pyro_sparse.infer.loss_trend`; the numbers are kept in
            ``fit_info_["loss_trend"]``): refit with more epochs. Also when some (not all)
            restarts diverged: the fit is chosen among the others, and
            ``fit_info_["failed_restarts"]`` lists each failed restart's seed and error.
        """
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        lr = _check_float(lr, "lr", 0.0)
        _check_seed(seed)
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every,
                                                                numbers.Integral) \
                or checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be an integer >= 0, got "
                             f"{checkpoint_every!r}")
        if (checkpoint_every or resume) and checkpoint is None:
            raise ValueError("checkpoint_every and resume need a checkpoint file (checkpoint=)")
        if checkpoint is not None and self.n_restarts > 1:
            raise ValueError("checkpoints need n_restarts=1 (fit restarts one by one instead)")
        if checkpoint is not None and not resume:
            check_checkpoint_target(checkpoint)
        dev = resolve_device(device)
        jobs = effective_jobs(check_n_jobs(n_jobs), self.n_restarts)
        if jobs > 1 and dev.type != "cpu":
            raise ValueError(f"n_jobs={n_jobs} runs restarts in CPU worker processes; use "
                             f"n_jobs=1 with device={device!r}")
        arr, names = self._prepare(X, fitted=False, layer=layer)
        col_mean, col_sd = column_stats(arr)
        scale_note = _scale_note(col_mean, col_sd, names) if self.likelihood == "normal" \
            else ""
        self._warn_about(arr, names, batch_size, col_sd, scale_note)
        cfg = self._model_config(arr, col_sd)
        fit_arr, heldout_arr = self._split_for_refinement(arr, seed, checkpoint)
        x_ng = as_rows(fit_arr, dev)
        run_id = None if checkpoint is None else \
            self._run_id(arr, dict(batch_size=batch_size, lr=lr, seed=int(seed)))
        resume_state = None
        if resume:
            tensors, info = read_checkpoint(checkpoint)
            if info.get("run_id") != run_id:
                raise ValueError(f"checkpoint {checkpoint} belongs to another run (different "
                                 "data, model settings, batch size, lr or seed)")
            resume_state = (tensors, info)
        standardize = self._standardizes(scale_note)
        ctx = dict(cfg=cfg, arr=arr, names=names, fit_arr=fit_arr, heldout_arr=heldout_arr,
                   col_mean=col_mean, col_sd=col_sd, epochs=epochs, batch_size=batch_size,
                   lr=lr, progress=progress, standardize=standardize)
        seeds = [int(seed) + r for r in range(self.n_restarts)]
        if jobs > 1:
            fits = self._restarts_in_processes(ctx, seeds, jobs, dev)
        else:
            built = []  # the modules being fitted (checkpoints need n_restarts=1)

            def save(done, snapshot):
                if checkpoint_every and done % checkpoint_every == 0:
                    t, info = snapshot()
                    t.update(_module_tensors(*built[-1]))
                    write_checkpoint(checkpoint, t, dict(info, run_id=run_id))

            fits = []
            for r, s in enumerate(seeds):
                try:
                    fits.append(self._fit_restart(
                        ctx, s, dev, x_ng, resume_state=resume_state,
                        on_epoch_end=save if checkpoint_every else None,
                        on_built=built.append,
                        desc=f"{type(self).__name__} restart {r + 1}/{self.n_restarts}"
                        if self.n_restarts > 1 else type(self).__name__))
                except FloatingPointError as e:
                    if self.n_restarts == 1:
                        raise
                    fits.append(_diverged(s, e))
        fits, failed = _drop_diverged(fits, "the fit is chosen among the others. See "
                                      "fit_info_['failed_restarts']", stacklevel=2)
        refined = [f for f in fits if f["cand"] is not None]
        if refined:
            # the same one-standard-error rule as between candidate supports: the sparsest
            # restart whose held-out log-likelihood is within one SE of the best
            chosen = one_se_choice([f["cand"]["scores_n"] for f in refined],
                                   [f["cand"]["size"] for f in refined])
            fit = refined[chosen]
        else:
            fit = min(fits, key=lambda f: f["final"])  # the first of equals, as in order
        model, guide, hist, s, post = (fit[k] for k in ("model", "guide", "hist", "seed",
                                                         "post"))
        post = dict(post, **self._refine_posterior(model, guide, x_ng, ctx, s))
        self._adopt(model, guide, cfg, arr, names, dev)
        self.loss_history_ = np.asarray(hist, dtype=float)
        # n_rows: the rows loss_history_ was computed on (without the refinement hold-out)
        trend = loss_trend(hist, fit_arr.shape[0], arr.shape[1],
                           exclude_last=self._decay_epochs(epochs))
        self.fit_info_ = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=int(seed),
                              chosen_restart_seed=s, n_rows=int(fit_arr.shape[0]), **post,
                              **({"failed_restarts": failed} if failed else {}),
                              standardize=dict(used=bool(standardize),
                                               setting=self.standardize,
                                               columns=scale_note or None),
                              loss_trend={k: (v if not isinstance(v, float) or math.isfinite(v)
                                              else None) for k, v in trend.items()})
        if trend["converged"] is False:
            warnings.warn(
                f"the training loss was still falling when the fit stopped after {len(hist)} "
                f"epochs (slope t = {trend['t']:.1f} over the last {trend['window']} epochs; "
                f"as many epochs again would gain about {trend['projected_gain']:.2f} nats per "
                "row and feature): the fit may be far from its optimum. Refit with more "
                "epochs and compare; see fit_info_['loss_trend']", ConvergenceWarning,
                stacklevel=2)
        if heldout_arr is not None:
            cand = fit["cand"] or self._refine_candidates(fit_arr, heldout_arr, epochs,
                                                          batch_size, lr, s, progress)
            self._refine_finish(arr, cand, batch_size, s, progress)
            if refined:
                self.refinement_.update(
                    restart_seeds=[f["seed"] for f in refined],
                    restart_heldout_loglik=[f["cand"]["score"] for f in refined],
                    restart_heldout_loglik_se=[f["cand"]["score_se"] for f in refined],
                    restart_support_size=[f["cand"]["size"] for f in refined],
                    chosen_restart=int(chosen))
        return self

    def _last_training_epochs(self, epochs: int) -> int:
        # epochs of the training that ends a fit of ``epochs`` epochs (subclasses that train
        # further after the fit say how long)
        return epochs

    def _decay_epochs(self, epochs: int) -> int:
        # epochs of the learning-rate decay that ends the last training: the convergence
        # check judges the fit before them
        return int(math.ceil(self.lr_decay * self._last_training_epochs(epochs)))

    def _fit_restart(self, ctx, s, dev, x_ng, resume_state=None, on_epoch_end=None,
                     on_built=None, desc=None) -> dict:
        # one restart with seed s: build, start, fit, post-process and (with a held-out part
        # and several restarts) refine; a pure function of (parameters, data, s) on CPU
        model, guide = self._build(ctx["cfg"], dev, s)
        if on_built is not None:
            on_built((model, guide))
        if self.likelihood == "normal":
            guide.globals_guide.init_sigma(torch.as_tensor(ctx["col_sd"], dtype=torch.float32,
                                                           device=dev))
        guide.local_guide.set_fill(ctx["col_mean"])
        if ctx.get("standardize", False):
            loc_g, scale_g = _standardisation(ctx["col_mean"], ctx["col_sd"])
            guide.local_guide.set_standardisation(loc_g, scale_g)
            model.decoder.set_output_affine(loc_g, scale_g)
        init_info = None
        if resume_state is not None:
            _load_state(model, guide, resume_state[0])
        else:
            init_info = self._initialise(guide, x_ng, s)
            out_info = self._start_output_layer(model, guide, ctx["col_mean"], ctx["col_sd"],
                                                s)
            if out_info is not None:
                init_info = dict(init_info or {}, output_scale=out_info)
        epochs = ctx["epochs"]
        with _local_params():
            hist = fit_svi(model, guide, x_ng, epochs=epochs, batch_size=ctx["batch_size"],
                           lr=ctx["lr"], seed=s, warmup_epochs=self.warmup * epochs,
                           progress=ctx["progress"], on_step=self._schedule(model, guide),
                           desc=desc or type(self).__name__, resume_state=resume_state,
                           on_epoch_end=on_epoch_end, lr_decay=self.lr_decay)
            more, rounds = self._reseed(model, guide, x_ng, ctx, s)
            hist = list(hist) + more
            more, modes = self._search_modes(model, guide, x_ng, ctx, s)
            hist = hist + more
            post = self._after_fit(model, guide, x_ng)
        if init_info is not None:
            post = dict(post, init=init_info)
        if rounds is not None:
            post = dict(post, reseed=rounds)
        if modes is not None:
            post = dict(post, feature_modes=modes)
        fit = dict(model=model, guide=guide, hist=hist, seed=s, post=post, cand=None,
                   final=hist[-1])
        if ctx["heldout_arr"] is not None and self.n_restarts > 1:
            # restarts are compared where refinement compares supports: on the held-out
            # rows (the training ELBO prefers denser, rotated solutions)
            self._adopt(model, guide, ctx["cfg"], ctx["arr"], ctx["names"], dev)
            fit["cand"] = self._refine_candidates(ctx["fit_arr"], ctx["heldout_arr"], epochs,
                                                  ctx["batch_size"], ctx["lr"], s,
                                                  ctx["progress"])
        elif self.n_restarts > 1:
            with _local_params():
                fit["final"] = full_data_loss(model, guide, x_ng)
        return fit

    def _restarts_in_processes(self, ctx, seeds, jobs, dev) -> list:
        # every restart in a spawned CPU worker; the fitted modules come back as numpy
        # state dicts (no shared memory, nothing unpickled from disk) and are rebuilt here
        quiet = dict(ctx, progress=False)
        outs = _in_workers(_restart_in_worker,
                           [(type(self), self.get_params(), quiet, s) for s in seeds], jobs,
                           ctx["progress"], f"{type(self).__name__} restarts", "restart",
                           stacklevel=3)  # user -> fit -> _restarts_in_processes

        def rebuild(state, s):
            model, guide = self._build(ctx["cfg"], torch.device("cpu"), s)
            _load_state(model, guide, {k: torch.from_numpy(v) for k, v in state.items()})
            return model.to(dev), guide.to(dev)

        fits = []
        for out in outs:
            if _is_diverged(out):
                fits.append(out)
                continue
            fit = dict(out)
            fit["model"], fit["guide"] = rebuild(out["state"], out["seed"])
            del fit["state"]
            if out["cand"] is not None:
                fit["cand"] = dict(out["cand"])
                fit["cand"]["fitted"] = rebuild(out["cand"]["state"], out["seed"])
                del fit["cand"]["state"]
            fits.append(fit)
        return fits

    def _initialise(self, guide, x_ng, seed):
        # a start other than the random one; returns what it did (for fit_info_) or None
        return None

    def _start_output_layer(self, model, guide, col_mean, col_sd, seed):
        # output_scale: the decoder's output layer rescaled to the data's spread (normal only)
        if self.output_scale is None or self.likelihood != "normal":
            return None
        weight_gh, bias_g = model.decoder.output_heads()
        # the output layer works in the units the decoder's output map gives it (the data's,
        # or standardised ones)
        loc_g = model.decoder.out_loc_g.cpu().numpy()
        scale_g = model.decoder.out_scale_g.cpu().numpy()
        dec = model.decoder

        def decode(z_bk):
            return (self._decode_with(model, guide, z_bk) - dec.out_loc_g) / dec.out_scale_g

        return match_output_scale(decode, weight_gh, bias_g, self.n_factors,
                                  (np.asarray(col_mean) - loc_g) / scale_g,
                                  np.asarray(col_sd) / scale_g, scale=self.output_scale,
                                  seed=seed)

    def _decode_with(self, model, guide, z_bk):
        # the decoder output of (model, guide) before they are adopted
        raise NotImplementedError

    def _adopt(self, model, guide, cfg, arr, names, dev):
        # make (model, guide) the estimator's fitted state
        self.model_, self.guide_ = model.eval(), guide.eval()
        self.model_config_ = cfg
        self.n_features_in_ = arr.shape[1]
        self.feature_names_in_ = names
        self.device_ = dev
        self._set_fitted_attributes()

    def _split_for_refinement(self, arr, seed, checkpoint):
        # (rows to fit, held-out rows or None); only SparseVAE(refine_support=True) holds out
        return arr, None

    def _schedule(self, model, guide):
        return None

    def _after_fit(self, model, guide, x_ng) -> dict:
        # a post-processing step of each restart's fit; returns entries for fit_info_
        return {}

    def _reseed(self, model, guide, x_ng, ctx, seed):
        # SparseVAE(reseed_rounds=...): (further per-epoch losses, per-round records or None)
        return [], None

    def _refine_posterior(self, model, guide, x_ng, ctx, seed) -> dict:
        # SparseVAE(refine_posterior_epochs=...) on the kept fit; returns fit_info_ entries
        return {}

    def _search_modes(self, model, guide, x_ng, ctx, seed):
        # SparseVAE(feature_mode_starts=...): (further per-epoch losses, record or None)
        return [], None

    def _standardizes(self, scale_note: str) -> bool:
        # standardize=None: standardised units for the normal likelihood when the columns'
        # means or scales are off (``scale_note`` non-empty, see _scale_note)
        if self.standardize is None:
            return self.likelihood == "normal" and bool(scale_note)
        return bool(self.standardize)

    def _warn_about(self, arr, names, batch_size, col_sd_g, scale_note=""):
        const = np.flatnonzero(col_sd_g == 0)
        if len(const):
            shown = ", ".join(repr(names[c]) if names else str(c) for c in const[:5])
            warnings.warn(f"{len(const)} constant column(s) carry no information: {shown}",
                          UserWarning, stacklevel=3)
        if scale_note and self.standardize is False:
            warnings.warn(f"{scale_note}; fit with standardize=True or None (the networks "
                          "then work in standardised units, the model stays in the data's)",
                          UserWarning, stacklevel=3)
        if self.n_factors > arr.shape[1]:
            warnings.warn(f"n_factors={self.n_factors} is larger than the number of features "
                          f"({arr.shape[1]}); surplus factors will stay unused",
                          UserWarning, stacklevel=3)
        if batch_size > arr.shape[0]:
            warnings.warn(f"batch_size={batch_size} is larger than the number of rows "
                          f"({arr.shape[0]}); each step uses all rows", UserWarning,
                          stacklevel=3)

    def _run_id(self, arr, fit_args: dict) -> str:
        # fingerprint of everything a resumed run must share with the interrupted one
        h = hashlib.sha256()
        if hasattr(arr, "tocsr"):
            for part in (arr.data, arr.indices, arr.indptr):
                h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(repr(arr.shape).encode())
        h.update(json.dumps(dict(estimator=type(self).__name__, params=self.get_params(),
                                 fit=fit_args), sort_keys=True, default=str).encode())
        return h.hexdigest()

    def _set_fitted_attributes(self):
        est = self.guide_.globals_guide.point_estimates()
        self.sigma_ = est["sigma"].cpu().numpy() if "sigma" in est else None
        self.factor_corr_ = est["corr"].cpu().numpy() if "corr" in est else None
        theta = self._obs_params()["theta_g"]
        self.dispersion_ = None if theta is None else theta.cpu().numpy()
        return est

    def _obs_params(self) -> dict:
        # the non-latent parameters of the likelihood: sigma (normal), theta (negbin)
        gg = self.guide_.globals_guide
        sigma = gg.sigma_g1.detach().squeeze(-1) if self.likelihood == "normal" else None
        log_theta = getattr(self.model_, "log_theta_g", None)
        theta = None if log_theta is None else log_theta.detach().exp()
        return dict(sigma_g=sigma, theta_g=theta)

    # ------------------------------------------------------------------ use
    def _batches(self, X, what, batch_size, layer=None):
        arr, _ = self._prepare(X, what, layer=layer)
        for xb in row_batches(arr, batch_size):
            yield xb.to(self.device_)

    def transform(self, X, batch_size: int = 4096, return_std: bool = False,
                  layer: str | None = None):
        """Encoder means E[z | x], shape (N, K).

        Parameters
        ----------
        X : array-like, DataFrame, AnnData or scipy.sparse matrix, shape (N, G)
            Data with the features seen in fit (NaN: missing, replaced by the training column
            mean for the encoder).
        batch_size : int
            Rows per forward pass (bounds memory).
        return_std : bool
            Also return the encoder standard deviations sd[z | x] (N, K).
        layer : str, optional
            With an AnnData, the layer to encode instead of ``X``.

        Returns
        -------
        numpy.ndarray, shape (N, K), or a tuple (means, sds)
        """
        locs, scales = [], []
        with torch.no_grad(), _local_params():
            for xb in self._batches(X, "X", batch_size, layer):
                loc, scale = self.guide_.local_guide.encode(xb)
                locs.append(loc.cpu())
                scales.append(scale.cpu())
        mu = torch.cat(locs).numpy()
        return (mu, torch.cat(scales).numpy()) if return_std else mu

    def _decode(self, z_bk, W_gk=None):
        raise NotImplementedError

    def reconstruct(self, X, batch_size: int = 4096, layer: str | None = None) -> np.ndarray:
        """Decoder mean at the encoder means, shape (N, G); missing entries are filled.

        For ``categorical``, ``poisson`` and ``negbin`` this is ``row total x softmax(decoder
        output)`` with the total and the softmax over the observed entries of each row (so a
        missing entry is predicted on the scale of the observed ones); for ``bernoulli`` the
        probabilities.

        Parameters
        ----------
        X : array-like, DataFrame, AnnData or scipy.sparse matrix, shape (N, G)
        batch_size : int
            Rows per forward pass.
        layer : str, optional
            With an AnnData, the layer to use instead of ``X``.
        """
        out = []
        with torch.no_grad(), _local_params():
            for xb in self._batches(X, "X", batch_size, layer):
                z = self.guide_.local_guide.encode(xb)[0]
                x0, mask = split_missing(xb)
                out.append(mean_from_output(self.likelihood, self._decode(z), x0, mask,
                                            self.library).cpu())
        return torch.cat(out).numpy()

    def decode(self, Z) -> np.ndarray:
        """Decoder mean for given factor values ``Z`` (N, K), shape (N, G).

        For ``categorical`` the result is the softmax over features (a row total of 1).
        """
        self._check_fitted()
        z = torch.as_tensor(np.asarray(Z, dtype=np.float32), device=self.device_)
        if z.ndim != 2 or z.shape[1] != self.n_factors:
            raise ValueError(f"Z must have shape (N, {self.n_factors}), got {tuple(z.shape)}")
        with torch.no_grad(), _local_params():
            return mean_from_output(self.likelihood, self._decode(z),
                                    library=self.library).cpu().numpy()

    def score(self, X, batch_size: int = 1024, seed: int | None = None) -> float:
        """Monte Carlo ELBO per row of ``X`` (higher is better).

        Parameters
        ----------
        X : array-like, shape (N, G)
        batch_size : int
            Rows per evaluation batch.
        seed : int, optional
            Seed of the Monte Carlo draws: the same seed gives the same score whatever ran
            before. None draws from torch's global random state (and advances it).

        Returns
        -------
        float
        """
        seed = _check_seed(seed, allow_none=True)
        arr, _ = self._prepare(X)
        x = as_rows(arr, self.device_)
        devices = [self.device_] if self.device_.type == "cuda" else []
        with _local_params(), torch.random.fork_rng(devices=devices,
                                                    enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            return -full_data_loss(self.model_, self.guide_, x, batch_size) / x.shape[0]

    # ------------------------------------------------------------------ posterior protocol
    # What the diagnostics read (pyro_sparse.diagnostics.to_arviz): draws of the global sites,
    # per-row log-likelihoods and posterior predictive draws. Decoder and encoder weights
    # (and sigma) are point estimates in every guide; only W can carry posterior spread.

    def _generator(self, seed: int) -> torch.Generator:
        gen = torch.Generator(device=self.device_)
        gen.manual_seed(int(seed))
        return gen

    def _W_draws(self, num_samples: int, gen) -> torch.Tensor | None:
        return None  # no W in this model

    def posterior_draws(self, num_samples: int = 1000, seed: int = 0) -> dict:
        """Draws of the global sites from the fitted posterior approximation.

        Parameters
        ----------
        num_samples : int
            S, the number of draws.
        seed : int
            Seed of the draws (the same seed gives the same draws, also in
            :meth:`log_likelihood` and :meth:`sample_posterior_predictive`).

        Returns
        -------
        dict of numpy.ndarray
            ``W`` (S, G, K), ``inclusion`` (S, G, K) = p*(W_s, eta) and ``eta`` (S, K) for
            models with loadings; ``sigma`` (S, G) for the normal likelihood. With the MAP
            guide every draw is the point estimate.
        """
        self._check_fitted()
        S = check_positive_int(num_samples, "num_samples")
        est = self.guide_.globals_guide.point_estimates()
        out = {}
        W = self._W_draws(S, self._generator(seed))
        if W is not None:
            eta = est["eta"]
            out["W"] = W.cpu().numpy()
            out["inclusion"] = self.model_.inclusion_prob(W, eta).cpu().numpy()
            out["eta"] = eta.expand(S, -1).cpu().numpy()
        if "sigma" in est:
            out["sigma"] = est["sigma"].expand(S, -1).cpu().numpy()
        return out

    def _predictive_setup(self, X, num_samples, batch_size, seed):
        # what log_likelihood and sample_posterior_predictive share: the data in row batches,
        # the W draws (None without W), sigma, and the generator that continues the draws
        S = check_positive_int(num_samples, "num_samples")
        B = check_positive_int(batch_size, "batch_size")
        gen = self._generator(seed)
        W_s = self._W_draws(S, gen)
        arr, _ = self._prepare(X)
        return row_batches(arr, B), W_s, self._obs_params(), gen

    def _z_prior(self):
        zeros = torch.zeros(self.n_factors, device=self.device_)
        if getattr(self, "factor_correlation", False):
            L = self.guide_.globals_guide.corr_L.detach()
            return torch.distributions.MultivariateNormal(zeros, scale_tril=L)
        return torch.distributions.Independent(torch.distributions.Normal(zeros, 1.0), 1)

    def log_likelihood(self, X, num_samples: int = 200, n_particles: int = 16,
                       batch_size: int = 256, seed: int = 0) -> np.ndarray:
        """Per-row log-likelihood log p(x_n | globals_s) for each posterior draw s.

        The factors z_n are integrated out by importance sampling with the encoder as the
        proposal (the IWAE estimate with ``n_particles`` draws; a lower bound in expectation
        that tightens as ``n_particles`` grows). The same z particles serve every draw s
        (common random numbers), so the spread over s is posterior spread, not Monte Carlo
        noise. This is what PSIS-LOO (``arviz_stats.loo``) needs.

        Parameters
        ----------
        X : array-like, shape (N, G)
        num_samples : int
            S, posterior draws (the first S draws of :meth:`posterior_draws` with this seed).
        n_particles : int
            Importance samples of z_n.
        batch_size : int
            Rows per pass (memory is about ``n_particles * batch_size * G`` floats).
        seed : int

        Returns
        -------
        numpy.ndarray, shape (S, N)
        """
        L = check_positive_int(n_particles, "n_particles")
        prior = self._z_prior()
        batches, W_s, obs_params, gen = self._predictive_setup(X, num_samples, batch_size, seed)
        # a point mass gives the same value for every draw: compute it once
        n_distinct = 1 if W_s is None or self.posterior_is_point_mass_ else W_s.shape[0]
        chunks = []
        with torch.no_grad(), _local_params():
            for xb in batches:
                xb = xb.to(self.device_)
                loc, scale = self.guide_.local_guide.encode(xb)
                z = loc + scale * torch.randn((L, *loc.shape), generator=gen, device=loc.device)
                lw = prior.log_prob(z) - torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
                x0, mask = split_missing(xb)
                x_lbg = x0.expand(L, -1, -1)
                m_lbg = None if mask is None else mask.expand(L, -1, -1)
                rows = []
                for s in range(n_distinct):
                    W = None if W_s is None else W_s[s]
                    out = self._decode(z.reshape(-1, z.shape[-1]), W).reshape(x_lbg.shape)
                    lx = observation_dist(self.likelihood, out, x_lbg, mask_bg=m_lbg,
                                          library=self.library,
                                          **obs_params).log_prob(x_lbg)
                    rows.append(torch.logsumexp(lx + lw, 0) - math.log(L))
                chunks.append(torch.stack(rows).expand(num_samples, -1).cpu())
        return torch.cat(chunks, 1).numpy().astype(np.float64)

    def sample_posterior_predictive(self, X, num_samples: int = 200, batch_size: int = 256,
                                    seed: int = 0) -> np.ndarray:
        """Replicated data: for each draw s and row n, z ~ q(z | x_n), x ~ p(x | z, globals_s).

        For ``categorical`` each replicate keeps the observed row total; ``poisson`` and
        ``negbin`` replicates have the observed row total as their expected total.
        Missing entries of ``X`` get replicates too.

        Parameters
        ----------
        X : array-like, shape (N, G)
        num_samples : int
            S, posterior draws (the first S draws of :meth:`posterior_draws`).
        batch_size : int
            Rows per pass.
        seed : int

        Returns
        -------
        numpy.ndarray, shape (S, N, G)
        """
        batches, W_s, obs_params, gen = self._predictive_setup(X, num_samples, batch_size, seed)
        S = int(num_samples)
        chunks = []
        with torch.no_grad(), _local_params():
            for xb in batches:
                xb = xb.to(self.device_)
                loc, scale = self.guide_.local_guide.encode(xb)
                z = loc + scale * torch.randn((S, *loc.shape), generator=gen, device=loc.device)
                x0, mask = split_missing(xb)
                reps = []
                for s in range(S):
                    W = None if W_s is None else W_s[s]
                    obs = observation_dist(self.likelihood, self._decode(z[s], W), x0,
                                           mask_bg=mask, library=self.library, **obs_params)
                    reps.append(_sample_with(obs, gen))
                chunks.append(torch.stack(reps).cpu())
        return torch.cat(chunks, 1).numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Save to a folder (``config.json`` + ``weights.safetensors``; no pickle).

        The folder is written beside ``path`` and renamed at the end.
        """
        self._check_fitted()
        tensors = _module_tensors(self.model_, self.guide_)
        tensors["loss_history"] = torch.as_tensor(self.loss_history_)
        config = dict(estimator=type(self).__name__, params=self.get_params(),
                      model_config=self.model_config_, n_features=self.n_features_in_,
                      feature_names=self.feature_names_in_, fit_info=self.fit_info_,
                      versions=dict(torch=torch.__version__, pyro=pyro.__version__))
        return save_model_folder(path, config, tensors)

    @classmethod
    def load(cls, path, device="cpu"):
        """Load an estimator saved by :meth:`save`.

        Raises
        ------
        ValueError
            When the folder is missing, corrupt, not ours, or holds another estimator class.
        """
        dev = resolve_device(device)
        cfg, tensors = load_model_folder(path)
        if cfg.get("estimator") != cls.__name__:
            raise ValueError(f"{path} holds a {cfg.get('estimator')!r} model, not a "
                             f"{cls.__name__}; use {cfg.get('estimator')}.load")
        try:
            hist = tensors.pop("loss_history").numpy()
            return cls._restore(cfg, tensors, hist, dev)
        except (KeyError, TypeError, RuntimeError, ValueError, AttributeError,
                MemoryError) as e:
            raise ValueError(f"{path} is corrupt or from an incompatible version: {e}") from None

    @classmethod
    def _restore(cls, cfg: dict, tensors: dict, loss_history, dev, extra=None):
        # an estimator rebuilt from its parameters, model config and module tensors
        params = dict(cfg["params"])
        if "standardize" in cls._param_names:
            # folders written before the option existed were fitted in the data's units
            params.setdefault("standardize", False)
        if "reseed_unfold" in cls._param_names:
            # re-seeding rounds before the unfolding proposal existed
            params.setdefault("reseed_unfold", False)
        if "reseed_reorder" in cls._param_names:
            # re-seeding rounds before the reordering proposal was the default
            params.setdefault("reseed_reorder", False)
        est = cls(**params)
        if not isinstance(cfg["model_config"], dict):
            raise TypeError("model_config is not a mapping")
        _check_config_agrees(cfg)
        model, guide = est._build(cfg["model_config"], torch.device("cpu"), 0)
        _load_state(model, guide, tensors)
        est.model_, est.guide_ = model.to(dev).eval(), guide.to(dev).eval()
        est.model_config_ = cfg["model_config"]
        est.loss_history_ = np.asarray(loss_history, dtype=float)
        est.n_features_in_ = int(cfg["n_features"])
        est.feature_names_in_ = cfg.get("feature_names")
        est.fit_info_ = cfg.get("fit_info", {})
        est.device_ = dev
        for k, v in (extra or {}).items():
            setattr(est, k, v)
        est._set_fitted_attributes()
        return est

    def _payload(self) -> dict:
        # the fitted state as plain Python and numpy (to send between processes)
        cfg = dict(params=self.get_params(), model_config=self.model_config_,
                   n_features=self.n_features_in_, feature_names=self.feature_names_in_,
                   fit_info=self.fit_info_)
        extra = {k: getattr(self, k) for k in ("refinement_",) if hasattr(self, k)}
        return dict(cfg=cfg, state=_numpy_state(self.model_, self.guide_),
                    loss_history=np.asarray(self.loss_history_), extra=extra)

    @classmethod
    def _from_payload(cls, payload: dict, device="cpu"):
        tensors = {k: torch.from_numpy(v) for k, v in payload["state"].items()}
        return cls._restore(payload["cfg"], tensors, payload["loss_history"],
                            resolve_device(device), payload["extra"])


class SparseVAE(_Estimator):
    """Sparse VAE (Moran et al.): a spike-and-slab-lasso prior on W makes each feature depend on
    a few factors through one shared decoder.

    Parameters
    ----------
    n_factors : int
        K, the number of latent factors (over-specify and read ``eta_`` to prune).
    likelihood : {"normal", "bernoulli", "poisson", "negbin", "categorical"}
        ``normal`` with per-feature sigma; ``bernoulli`` for 0/1 data; ``poisson`` and
        ``negbin`` (per-feature dispersion) for counts, their mean the row total times a
        softmax over features (see ``library``); ``categorical`` for count rows
        (multinomial with a softmax over features). Missing entries (NaN) are masked out.
    hidden_dim : int
        H, width of the decoder and encoder hidden layers.
    lambda0, lambda1 : float
        Spike and slab Laplace rates (lambda0 >> lambda1).
    a, b : float
        Beta(a, b) prior on each factor's inclusion rate eta; ``b=None`` means b = G.
    w_guide : {"map", "meanfield", "lowrank", "spikeslab", "spikeslab_lowrank"}
        Point estimate of W with EM for eta (the paper), an independent Normal variational
        posterior per entry, a Normal with a low-rank covariance coupling the entries
        (rank K), an independent spike-and-slab posterior per entry (the SSL prior
        tilted by a Gaussian, ``guides.SpikeSlabGlobalGuide``; inclusion probabilities in
        closed form), or those spike-and-slab marginals coupled by a Gaussian copula with a
        rank-K correlation (``guides.SpikeSlabLowRankGlobalGuide``).
    warmup : float
        Fraction of the epochs over which the z-KL and prior weights rise linearly to 1.
    lr_decay : float
        Fraction (0 to 1) of the last training steps over which Adam's learning rate falls
        linearly towards 0; every training of the fit (re-seeding rounds and refinement
        fine-tunes included) ends this way. With a constant rate (0, the paper's setting
        and this package's default before 2026-12-06) the minibatch noise keeps moving the
        parameters by about ``lr`` per step, which on a few thousand rows is more than the
        posterior sd of a loading. The default 0.25 settles them: on the paper's synthetic
        study it lowered the held-out MSE by 20-30%, and on data simulated from the model it
        raised the spike-and-slab guide's 90% interval coverage from 0.55 to 0.71
        (``benchmarks/README.md``, "Settling the fit").
    spike_anneal : float
        Fraction of the epochs over which the spike rate rises from ``lambda1`` to
        ``lambda0`` (0: fixed at ``lambda0``), as in the SSL's dynamic posterior exploration.
    n_restarts : int
        Independent fits (seeds ``seed``, ``seed + 1``, ...); the one with the best
        full-data ELBO is kept. With ``refine_support`` every restart is refined instead,
        on the same held-out rows, and the restarts are compared there by the one-standard-
        error rule the refinement uses between supports: the smallest chosen support whose
        held-out log-likelihood is within one standard error of the best restart's (the
        training ELBO prefers denser, rotated solutions).
    factor_correlation : bool
        Learn a factor correlation matrix (z ~ N(0, R), R ~ LKJ).
    lkj_concentration : float
        LKJ shape of the correlation prior (1: uniform; larger favours weak correlation).
    pstar : {"standard", "authors"}
        Inclusion-probability formula (see :func:`pyro_sparse.distributions.inclusion_prob`).
    marginalize : {"mixture", "enumerate"}
        How gamma is summed out (same ELBO; ``mixture`` is faster).
    library : {"composition", "offset"}
        Row totals of ``poisson`` / ``negbin``: ``composition`` (mean = row total x softmax,
        the library size profiled out; keeps supports sparse) or ``offset`` (mean = row
        total x exp(output)); see :func:`pyro_sparse.likelihoods.log_rate`.
    refine_support : bool
        Prune loadings that do not help held-out rows (needs ``w_guide="map"``): ``fit``
        holds out ``validation_fraction`` of the rows, fits on the rest, then fine-tunes
        nested candidate supports (entries whose factor carries less than 0-30% of the
        feature's decoded variation dropped, :mod:`pyro_sparse.infer.refine`) for
        ``epochs // 2`` epochs at ``lr / 10`` with the dropped loadings held at 0, keeps the
        smallest support whose held-out log-likelihood is within one standard error of the
        best, and fine-tunes it on all rows. Costs up to eight fine-tunes (per restart); see
        ``refinement_``.
    validation_fraction : float
        Share of the rows held out for ``refine_support``.
    refine_polish : float
        Needs ``refine_support`` (a ValueError otherwise): the chosen support of each fit
        is fine-tuned for a further ``refine_polish * epochs`` epochs (at ``lr / 10``, on
        the rows the fit used) and scored on the held-out rows again before restarts are
        compared (0: not polished). A sparse support is further from its optimum after the
        short fine-tune than a dense one, so unpolished scores favour dense, rotated
        restarts.
    init : {"random", "factor_analysis"}
        Where each fit starts. ``"random"``: random networks and W. ``"factor_analysis"``:
        a factor analysis of what the encoder sees (as many factors as BIC picks, at most
        ``n_factors``), varimax-rotated, first; those encoder means are pretrained to its
        scores and those columns of W start at its loadings (see
        :func:`pyro_sparse.infer.factor_analysis_init`); ``fit_info_["init"]`` records it.
        Meant against the split and collapsed factors a random start often ends in; it
        helped on model-simulated data and not on the paper's synthetic study
        (``benchmarks/README.md``).
    output_scale : float or None
        Normal likelihood only (other likelihoods ignore it). Before fitting, the decoder's
        output layer is rescaled so that over prior draws of z its output for every feature
        has the data's mean and ``output_scale`` times the data's sd (see
        :func:`pyro_sparse.infer.match_output_scale`; recorded in
        ``fit_info_["init"]["output_scale"]``). ``None`` keeps ``torch.nn.Linear``'s
        initialisation, whose output varies by a few hundredths of the data's sd, so that
        latents can collapse before the decoder learns to use them. On data simulated from
        the model 1.0 cut the loss and the Brier score of p*; on the paper's synthetic study
        it raised the held-out MSE (``benchmarks/README.md``), so it is off by default.
    reseed_rounds : int
        Rounds of re-seeding after the fit (0: none; see :mod:`pyro_sparse.infer.reseed`).
        Each round restarts the factor the fit needs least on the leading component of the
        residual correlation, trains it and, side by side from the same state, the fit as
        it was, for ``reseed_epochs`` epochs each, and keeps the one with the lower
        full-data negative ELBO; ``fit_info_["reseed"]`` records every round and
        ``loss_history_`` continues with the epochs kept. Costs ``2 * reseed_rounds *
        reseed_epochs`` epochs more. Meant against collapsed and duplicated factors; on
        data simulated from the model it found all factors more often
        (``benchmarks/README.md``, "Re-seeding collapsed factors").
    reseed_epochs : int or None
        Epochs of each of the two trainings per round; None: half the fit's ``epochs``.
    reseed_unfold : bool
        Let a round restart a factor whose codes look like a fold (its size without its
        sign) on a signed code instead (:func:`pyro_sparse.infer.unfold_direction`; the
        round's ``move`` says which). False gives the rounds as they were before
        2026-12-07; folders saved before then load with False.
    reseed_merge : bool
        Let a round that does not unfold merge a fold split over two latents (one code
        tracking a factor's size, another its sign;
        :func:`pyro_sparse.infer.split_fold_pair`) into one latent and restart the other
        on the residuals (``move="merge"``), kept only when the ELBO prefers it.
    reseed_reorder : bool
        Let a round restart a factor whose code disagrees with the ordering of its own
        anchors (a *torn* code, :func:`pyro_sparse.infer.torn_factor`) on that ordering
        (``move="reorder"``), at most once per factor, kept only when the ELBO prefers
        it. On by default since 2026-12-08; folders saved before then load with False.
    refine_posterior_epochs : int
        Variational W guides only (a ValueError for ``map`` or ``factor_correlation``):
        after the fit (and after choosing among restarts), refine W's posterior for this
        many epochs against one free Normal q(z_n) per training row, started at the
        encoder's output, with the decoder and the encoder held fixed
        (:func:`pyro_sparse.infer.refine_posterior`); the encoder is then rescaled to the
        refined q(z)'s second moments. 0: not refined. The encoder's amortisation gap
        otherwise biases the loadings by more than their posterior sd; on data simulated
        from the model, 200 epochs raised the spike-and-slab guide's 90% interval coverage
        (``benchmarks/README.md``, "Refining the posterior"). Recorded in
        ``fit_info_["refine_posterior"]``; costs about ``refine_posterior_epochs`` epochs.
    feature_mode_starts : int
        Likelihoods that factorise over features only (``normal``, ``bernoulli``, or
        ``poisson`` / ``negbin`` with ``library="offset"``), without
        ``factor_correlation``. After each restart's fit (and its re-seeding rounds), search
        every feature's loadings for a better mode, with the factors held at the encoder's
        means, from this many random starts besides the current loadings, move each feature
        whose best mode is better by more than 1 nat, then train ``epochs // 4`` more
        epochs (:func:`pyro_sparse.infer.search_feature_modes`). 0: no search. Given the
        factors the features are independent, and a feature's loadings can sit in a poor
        mode (its dependence on one factor mimicked by another) that gradient steps on the
        ELBO do not leave; on data simulated from the model with the decoder known, the
        search found such features (``benchmarks/README.md``, "Searching each feature's
        loadings"). Recorded in ``fit_info_["feature_modes"]`` (features moved, the gain
        of each feature's best start in nats).
    standardize : bool or None
        True needs the normal likelihood (a ValueError otherwise). The networks work in
        standardised units: the encoder sees each feature centred and scaled by the training
        column's mean and sd, and the decoder's output is mapped back (``mean_g + sd_g *
        output``), so the model, its likelihood, ``sigma_``, ``reconstruct`` and every score
        stay in the data's units and the loadings keep their meaning. Without it, a feature
        whose mean is far from 0 or whose scale is far from the others' can wreck the whole
        fit (on the paper's synthetic data, one column shifted by 20, or scaled by 1,000 or
        0.01, raised the other columns' held-out MSE 17- to 60-fold, and not with
        ``standardize=True``; ``benchmarks/README.md``, "Columns on other scales"); ``fit``
        warns, with ``False``, when the data look like that. None (default): standardise for
        the normal likelihood when a column's mean lies more than 5 sds from 0 or the column
        sds span more than a factor of 50, else fit in the data's units (so well-scaled data
        such as the paper's synthetic study are fitted exactly as before); recorded in
        ``fit_info_["standardize"]`` (``used``, and the columns that decided it). On data
        simulated from the model (decoder learned; its columns lie up to 18 sds from 0)
        standardising raised support F1 from 0.47-0.50 to 0.82-0.83 and cut the training
        loss from 24-25 to 14 nats per row, on data sets it was not developed on too; on the
        paper's synthetic study it changed the scores within the replicate spread.

    Attributes
    ----------
    loadings_ : numpy.ndarray, shape (G, K)
        MAP (``map``) or posterior mean (the variational guides) of W.
    inclusion_probs_ : numpy.ndarray, shape (G, K)
        p*_gk, posterior probability that feature g loads on factor k.
    eta_ : numpy.ndarray, shape (K,)
        Factor inclusion rates.
    sigma_ : numpy.ndarray, shape (G,) or None
        Noise sd per feature (normal likelihood).
    dispersion_ : numpy.ndarray, shape (G,) or None
        Negative-binomial inverse dispersion theta per feature (variance mu + mu^2/theta).
    loadings_sd_ : numpy.ndarray, shape (G, K)
        Variational guides only: posterior sd of W, including the spread along each
        factor's scale symmetry with z (see :mod:`pyro_sparse.infer.scale_symmetry`: after
        fitting, ``fit`` moves every factor to the ELBO's optimum along that symmetry and
        records the spread in ``fit_info_["factor_log_scale_sd"]``).
    loss_history_ : numpy.ndarray, shape (epochs,)
        Mean minibatch negative ELBO per epoch (of the first fit, before any refinement).
    fit_info_ : dict
        The fit's arguments and what it found out, including ``loss_trend`` (is the loss
        still falling at the end? see :func:`pyro_sparse.infer.loss_trend`).
    refinement_ : dict
        With ``refine_support``: per candidate its ``threshold``, ``support_size``, mean
        held-out log-likelihood per row ``heldout_loglik`` and its standard error
        ``heldout_loglik_se``; ``chosen`` (index), ``n_heldout``, ``epochs``, ``lr``.
        With ``n_restarts > 1`` also, per restart, ``restart_seeds``,
        ``restart_heldout_loglik`` (mean per row, at that restart's chosen support),
        ``restart_heldout_loglik_se``, ``restart_support_size``, and ``chosen_restart``.
    """

    _param_names = ("n_factors", "likelihood", "hidden_dim", "lambda0", "lambda1", "a", "b",
                    "w_guide", "warmup", "spike_anneal", "n_restarts", "factor_correlation",
                    "lkj_concentration", "pstar", "marginalize", "library", "refine_support",
                    "validation_fraction", "refine_polish", "init", "output_scale",
                    "reseed_rounds", "reseed_epochs", "lr_decay", "refine_posterior_epochs",
                    "feature_mode_starts", "standardize", "reseed_unfold", "reseed_merge",
                    "reseed_reorder")

    def __init__(self, n_factors: int = 5, likelihood: str = "normal", hidden_dim: int = 50,
                 lambda0: float = 10.0, lambda1: float = 1.0, a: float = 1.0, b=None,
                 w_guide: str = "map", warmup: float = 0.1, spike_anneal: float = 0.0,
                 n_restarts: int = 1, factor_correlation: bool = False,
                 lkj_concentration: float = 1.0,
                 pstar: str = "standard", marginalize: str = "mixture",
                 library: str = "composition", refine_support: bool = False,
                 validation_fraction: float = 0.2, refine_polish: float = 0.0,
                 init: str = "random", output_scale: float | None = OUTPUT_SCALE,
                 reseed_rounds: int = 0, reseed_epochs: int | None = None,
                 lr_decay: float = LR_DECAY, refine_posterior_epochs: int = 0,
                 feature_mode_starts: int = 0, standardize: bool | None = None,
                 reseed_unfold: bool = True, reseed_merge: bool = False,
                 reseed_reorder: bool = True):
        self.n_factors = check_positive_int(n_factors, "n_factors")
        self.likelihood = check_likelihood(likelihood)
        self.standardize = _check_standardize(standardize, self.likelihood)
        self.library = check_library(library)
        self.hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        self.lambda0 = _check_float(lambda0, "lambda0", 0.0)
        self.lambda1 = _check_float(lambda1, "lambda1", 0.0)
        check_spike_rates(self.lambda0, self.lambda1)
        self.a = _check_float(a, "a", 0.0)
        self.b = None if b is None else _check_float(b, "b", 0.0)
        if not isinstance(w_guide, str) or w_guide not in W_GUIDES:
            raise ValueError(f"unknown w_guide {w_guide!r}; choose one of {', '.join(W_GUIDES)}")
        self.w_guide = w_guide
        self.warmup = _check_fraction(warmup, "warmup")
        self.lr_decay = _check_fraction(lr_decay, "lr_decay")
        self.spike_anneal = _check_fraction(spike_anneal, "spike_anneal")
        self.n_restarts = check_positive_int(n_restarts, "n_restarts")
        self.factor_correlation = bool(factor_correlation)
        self.lkj_concentration = _check_float(lkj_concentration, "lkj_concentration", 0.0)
        if pstar not in PSTAR_VARIANTS:
            raise ValueError(f"unknown pstar {pstar!r}; choose one of {PSTAR_VARIANTS}")
        if marginalize not in MARGINALIZE:
            raise ValueError(f"unknown marginalize {marginalize!r}; choose one of {MARGINALIZE}")
        self.pstar, self.marginalize = pstar, marginalize
        self.refine_support = bool(refine_support)
        self.validation_fraction = _check_fraction(validation_fraction, "validation_fraction")
        self.refine_polish = _check_float(refine_polish, "refine_polish", 0.0, True)
        if self.refine_support and w_guide != "map":
            raise ValueError(f"refine_support needs w_guide='map', got {w_guide!r}")
        if self.refine_polish > 0 and not self.refine_support:
            raise ValueError(f"refine_polish={self.refine_polish} needs refine_support=True "
                             "(it fine-tunes the support the refinement chose)")
        if not isinstance(init, str) or init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
        self.init = init
        self.output_scale = _check_output_scale(output_scale)
        self.reseed_rounds = _check_nonneg_int(reseed_rounds, "reseed_rounds")
        self.reseed_unfold = bool(reseed_unfold)
        self.reseed_merge = bool(reseed_merge)
        self.reseed_reorder = bool(reseed_reorder)
        self.reseed_epochs = None if reseed_epochs is None else \
            check_positive_int(reseed_epochs, "reseed_epochs")
        self.refine_posterior_epochs = _check_nonneg_int(refine_posterior_epochs,
                                                         "refine_posterior_epochs")
        if self.refine_posterior_epochs and (w_guide == "map" or self.factor_correlation):
            raise ValueError("refine_posterior_epochs refines a variational posterior over W: "
                             "it needs w_guide other than 'map' and factor_correlation=False, "
                             f"got w_guide={w_guide!r}, "
                             f"factor_correlation={self.factor_correlation}")
        self.feature_mode_starts = _check_nonneg_int(feature_mode_starts,
                                                     "feature_mode_starts")
        if self.feature_mode_starts:
            if self.factor_correlation:
                raise ValueError("feature_mode_starts needs factor_correlation=False")
            if not factorises_over_features(self.likelihood, self.library):
                raise ValueError(
                    "feature_mode_starts searches each feature's loadings on its own, which "
                    "needs a likelihood that factorises over features ('normal', "
                    "'bernoulli', or 'poisson'/'negbin' with library='offset'); got "
                    f"likelihood={self.likelihood!r}, library={self.library!r}")

    def _w_guide(self):
        return self.w_guide

    def _initialise(self, guide, x_ng, seed):
        if self.init == "random":
            return None
        return dict(factor_analysis_init(guide, x_ng, seed=seed), method=self.init)

    def _split_for_refinement(self, arr, seed, checkpoint):
        if not self.refine_support:
            return arr, None
        if checkpoint is not None:
            raise ValueError("refine_support does not combine with checkpoints yet; fit "
                             "without checkpoint= or with refine_support=False")
        N = arr.shape[0]
        n_out = int(round(self.validation_fraction * N))
        if n_out < 2 or N - n_out < 2:
            raise ValueError(f"refine_support holds out validation_fraction="
                             f"{self.validation_fraction} of {N} rows = {n_out}; both parts "
                             "need at least 2 rows")
        perm = np.random.default_rng(int(seed)).permutation(N)
        return arr[np.sort(perm[n_out:])], arr[np.sort(perm[:n_out])]

    def _refine_candidates(self, fit_arr, heldout_arr, epochs, batch_size, lr, seed,
                           progress) -> dict:
        # fine-tune the nested candidate supports of the adopted fit and score them on the
        # held-out rows; see pyro_sparse.infer.refine for the procedure and its reasons
        dev = self.device_
        ft_epochs, ft_lr = max(1, epochs // 2), lr / 10
        base_model, base_guide = self.model_, self.guide_
        S0 = estimated_support(self.loadings_, self.inclusion_probs_)
        cands = candidate_supports(S0, self.effect_shares(fit_arr))
        x_fit = as_rows(fit_arr, dev)

        def tune_and_score(model, guide, n_epochs, tune_seed, desc):
            # fine-tune on the fit rows, then per-row log-likelihoods of the held-out rows
            with _local_params():
                fit_svi(model, guide, x_fit, epochs=n_epochs, batch_size=batch_size, lr=ft_lr,
                        seed=tune_seed, progress=progress, desc=desc, lr_decay=self.lr_decay)
            self.model_, self.guide_ = model.eval(), guide.eval()
            try:
                return self.log_likelihood(heldout_arr, num_samples=1, n_particles=32,
                                           seed=seed)[0]
            finally:
                self.model_, self.guide_ = base_model, base_guide

        scores, fitted = [], []
        for i, (_, S) in enumerate(cands):
            model, guide = copy.deepcopy(base_model), copy.deepcopy(base_guide)
            guide.globals_guide.restrict_support(S)
            scores.append(tune_and_score(model, guide, ft_epochs, seed + 1000 + i,
                                         f"refine {i + 1}/{len(cands)}"))
            fitted.append((model, guide))
        sizes = [int(S.sum()) for _, S in cands]
        c = one_se_choice(scores, sizes)
        n = len(scores[0])
        se_of = lambda v: float(np.std(v, ddof=1) / np.sqrt(n)) if n > 1 else 0.0  # noqa: E731
        se = [se_of(v) for v in scores]
        info = dict(threshold=[t for t, _ in cands], support_size=sizes,
                    heldout_loglik=[float(np.mean(v)) for v in scores], heldout_loglik_se=se,
                    chosen=int(c), n_heldout=int(n), epochs=ft_epochs, lr=ft_lr,
                    polish_epochs=0)
        chosen_n = scores[c]
        polish_epochs = int(round(self.refine_polish * epochs))
        if polish_epochs > 0:
            # fine-tune the chosen support further before it is scored against other
            # restarts: after ft_epochs a sparse support is further from its optimum than a
            # dense one, and comparing unfinished fits favours the dense (benchmarks/README)
            chosen_n = tune_and_score(*fitted[c], polish_epochs, seed + 3000, "refine: polish")
            info.update(polish_epochs=polish_epochs,
                        polished_heldout_loglik=float(np.mean(chosen_n)),
                        polished_heldout_loglik_se=se_of(chosen_n))
        return dict(fitted=fitted[c], scores_n=chosen_n, score=float(np.mean(chosen_n)),
                    score_se=se_of(chosen_n), size=sizes[c], info=info)

    def _refine_finish(self, arr, cand, batch_size, seed, progress):
        # fine-tune the chosen candidate on all rows and adopt it
        model, guide = cand["fitted"]
        info = cand["info"]
        with _local_params():
            fit_svi(model, guide, as_rows(arr, self.device_), epochs=info["epochs"],
                    batch_size=batch_size, lr=info["lr"], seed=seed + 2000, progress=progress,
                    desc="refine: all rows", lr_decay=self.lr_decay)
        self.model_, self.guide_ = model.eval(), guide.eval()
        self.refinement_ = dict(info)
        self._set_fitted_attributes()

    def _schedule(self, model, guide):
        if self.spike_anneal <= 0:
            return None
        g = guide.globals_guide

        def on_step(step, total):
            # dynamic posterior exploration (Rockova & George 2018): the spike rate rises
            # linearly from lambda1 to lambda0, then stays at lambda0
            frac = min(1.0, (step + 1) / max(1.0, self.spike_anneal * total))
            model.lambda0 = g.lambda0 = self.lambda1 + frac * (self.lambda0 - self.lambda1)

        return on_step

    def _after_fit(self, model, guide, x_ng):
        # variational W guides: move to the ELBO's optimum along each factor's scale symmetry
        # and record the posterior spread along it (pyro_sparse.infer.scale_symmetry)
        if self.w_guide == "map" or self.factor_correlation:
            return {}
        out = rescale_factors(model, guide, x_ng)
        return {"factor_scale_step": out["scale"].tolist(),
                "factor_log_scale_sd": out["log_scale_sd"].tolist()}

    def _refine_posterior(self, model, guide, x_ng, ctx, seed):
        if not self.refine_posterior_epochs:
            return {}
        with _local_params():
            out = refine_posterior(model, guide, x_ng, epochs=self.refine_posterior_epochs,
                                   batch_size=ctx["batch_size"], lr=ctx["lr"], seed=seed,
                                   lr_decay=self.lr_decay, progress=ctx["progress"])
        info = dict(epochs=self.refine_posterior_epochs, loss_before=out["loss_before"],
                    loss_after=out["loss_after"], scale=out["scale"].tolist(),
                    encoder_scale=out["encoder_scale"].tolist())
        # the scale step after the refinement supersedes the fit's
        return {"refine_posterior": info,
                "factor_log_scale_sd": out["log_scale_sd"].tolist()}

    def _reseed_epochs(self, epochs: int) -> int:
        return self.reseed_epochs or max(1, epochs // 2)

    @staticmethod
    def _mode_epochs(epochs: int) -> int:
        # the training after the feature-mode search
        return max(1, epochs // 4)

    def _last_training_epochs(self, epochs: int) -> int:
        # the training after the feature-mode search, else the last re-seeding round's
        if self.feature_mode_starts:
            return self._mode_epochs(epochs)
        return self._reseed_epochs(epochs) if self.reseed_rounds else epochs

    def _search_modes(self, model, guide, x_ng, ctx, seed):
        if not self.feature_mode_starts:
            return [], None
        out = search_feature_modes(model, guide, x_ng, n_starts=self.feature_mode_starts,
                                   seed=seed)
        epochs = self._mode_epochs(ctx["epochs"])
        more = fit_svi(model, guide, x_ng, epochs=epochs,
                       batch_size=ctx["batch_size"], lr=ctx["lr"], seed=seed + 7919,
                       progress=ctx["progress"], desc="feature modes", lr_decay=self.lr_decay)
        record = dict(n_starts=self.feature_mode_starts, moved=out["moved"].tolist(),
                      rejected=out["rejected"].tolist(), gain=out["gain_g"].tolist(),
                      rows_used=out["rows_used"], epochs=epochs)
        return list(more), record

    def _reseed(self, model, guide, x_ng, ctx, seed):
        if not self.reseed_rounds:
            return [], None
        # normal residuals in units of each column's sd, so that no feature's scale decides
        # which factor is needed least (counts: Pearson residuals are already comparable)
        return reseed_fit(model, guide, x_ng, n_rounds=self.reseed_rounds,
                          epochs=self._reseed_epochs(ctx["epochs"]),
                          batch_size=ctx["batch_size"], lr=ctx["lr"], seed=seed,
                          likelihood=self.likelihood, col_sd_g=ctx["col_sd"],
                          library=self.library, progress=ctx["progress"],
                          lr_decay=self.lr_decay, unfold=self.reseed_unfold,
                          merge=self.reseed_merge, reorder=self.reseed_reorder)

    def _model_config(self, x_ng, col_sd_g=None):
        return dict(n_features=int(x_ng.shape[1]), n_factors=self.n_factors,
                    hidden_dim=self.hidden_dim, likelihood=self.likelihood,
                    sigma_prior_params=self._sigma_prior_params(x_ng, col_sd_g),
                    lambda0=self.lambda0, lambda1=self.lambda1, a=self.a, b=self.b,
                    marginalize=self.marginalize,
                    pstar=self.pstar, factor_correlation=self.factor_correlation,
                    lkj_concentration=self.lkj_concentration, library=self.library)

    def _make_model(self, cfg):
        return SparseVAEModel(**cfg)

    def _set_fitted_attributes(self):
        est = super()._set_fitted_attributes()
        self.loadings_ = est["W"].cpu().numpy()
        self.inclusion_probs_ = est["inclusion"].cpu().numpy()
        self.eta_ = est["eta"].cpu().numpy()
        if self.w_guide != "map":
            self.loadings_sd_ = self.guide_.globals_guide.marginal_sd().cpu().numpy()
        return est

    @property
    def posterior_is_point_mass_(self) -> bool:
        """True for the MAP guide (every draw of W is the MAP), else False."""
        self._check_fitted()
        return self.w_guide == "map"

    def _W_draws(self, num_samples, gen):
        return self.guide_.globals_guide.sample_W(num_samples, generator=gen)

    def _decode(self, z_bk, W_gk=None):
        if W_gk is None:
            return self._decode_with(self.model_, self.guide_, z_bk)
        return self.model_.decoder(z_bk, W_gk)

    def effective_support(self, X, min_share: float = 0.1, threshold: float = 0.5,
                          layer: str | None = None) -> np.ndarray:
        """The p* support restricted to entries with a real effect on the rows ``X``.

        Entry (g, k) is kept when p*_gk >= ``threshold`` and factor k carries at least
        ``min_share`` of feature g's decoded variation (:meth:`effect_shares`). A loading
        can sit in the slab while barely changing what the decoder outputs (a small
        cross-loading onto a correlated factor, typically); this drops those entries without
        refitting. Unlike ``refine_support=True`` it does not change W.

        Parameters
        ----------
        X : array-like, DataFrame, AnnData or scipy.sparse matrix, shape (N, G)
            Rows to measure the effects on (the training rows, say).
        min_share : float
            Smallest share of a feature's decoded variation an entry must carry.
        threshold : float
            p* threshold of the support.
        layer : str, optional
            With an AnnData, the layer to use.

        Returns
        -------
        numpy.ndarray of bool, shape (G, K)
        """
        if not 0.0 < float(min_share):
            raise ValueError(f"min_share must be > 0, got {min_share!r}")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
        S = estimated_support(self.loadings_, self.inclusion_probs_, p_threshold=threshold)
        return S & (np.nan_to_num(self.effect_shares(X, layer=layer)) >= float(min_share))

    def effect_shares(self, X, layer: str | None = None) -> np.ndarray:
        """Share of each feature's decoded variation that each factor carries, on rows ``X``.

        ``share_gk = mean_n (f_g(W_g z_n) - f_g(W_g^(-k) z_n))^2 / var_n f_g(W_g z_n)`` at
        the encoder means ``z_n`` of the rows, with ``W_g^(-k)`` the loadings of feature g
        with entry k set to 0 (:func:`pyro_sparse.infer.effect_share`). Unlike p*, it does
        not depend on how the scale of a factor is split between W and the decoder's first
        layer: a small loading that the first layer scales up still shows its effect here.

        Parameters
        ----------
        X : array-like, DataFrame, AnnData or scipy.sparse matrix, shape (N, G)
            Rows to measure on (the training rows, or new ones).
        layer : str, optional
            With an AnnData, the layer to use.

        Returns
        -------
        numpy.ndarray, shape (G, K)
            Non-negative shares, 0 where W_gk = 0 (above 1 when the factor's effect is
            partly cancelled by the others).
        """
        self._check_fitted()
        z_nk = torch.as_tensor(self.transform(X, layer=layer), dtype=torch.float32,
                               device=self.device_)
        return effect_share(self._decode, z_nk, self.guide_.globals_guide._W_point().detach())

    def _decode_with(self, model, guide, z_bk):
        return model.decoder(z_bk, guide.globals_guide._W_point().detach())


class VAE(_Estimator):
    """Dense VAE and beta-VAE baseline (same encoder and likelihoods as :class:`SparseVAE`).

    Parameters
    ----------
    n_factors : int
        K.
    beta : float
        KL weight; 1 is the VAE, > 1 the beta-VAE.
    likelihood : {"normal", "bernoulli", "poisson", "negbin", "categorical"}
        As for :class:`SparseVAE`.
    hidden_dim : int
        H.
    warmup : float
        Fraction of the epochs of linear KL warm-up.
    n_restarts : int
        Independent fits; the best full-data ELBO is kept.
    library : {"composition", "offset"}
        As for :class:`SparseVAE`.
    output_scale : float or None
        As for :class:`SparseVAE`.
    lr_decay : float
        As for :class:`SparseVAE`.
    standardize : bool or None
        As for :class:`SparseVAE`.

    Attributes
    ----------
    sigma_ : numpy.ndarray, shape (G,) or None
    dispersion_ : numpy.ndarray, shape (G,) or None
    loss_history_ : numpy.ndarray, shape (epochs,)
    """

    _param_names = ("n_factors", "beta", "likelihood", "hidden_dim", "warmup", "n_restarts",
                    "library", "output_scale", "lr_decay", "standardize")

    def __init__(self, n_factors: int = 5, beta: float = 1.0, likelihood: str = "normal",
                 hidden_dim: int = 50, warmup: float = 0.1, n_restarts: int = 1,
                 library: str = "composition", output_scale: float | None = OUTPUT_SCALE,
                 lr_decay: float = LR_DECAY, standardize: bool | None = None):
        self.n_factors = check_positive_int(n_factors, "n_factors")
        self.beta = _check_float(beta, "beta", 0.0)
        self.likelihood = check_likelihood(likelihood)
        self.standardize = _check_standardize(standardize, self.likelihood)
        self.library = check_library(library)
        self.hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        self.warmup = _check_fraction(warmup, "warmup")
        self.lr_decay = _check_fraction(lr_decay, "lr_decay")
        self.n_restarts = check_positive_int(n_restarts, "n_restarts")
        self.output_scale = _check_output_scale(output_scale)

    def _model_config(self, x_ng, col_sd_g=None):
        return dict(n_features=int(x_ng.shape[1]), n_factors=self.n_factors,
                    hidden_dim=self.hidden_dim, likelihood=self.likelihood, beta=self.beta,
                    sigma_prior_params=self._sigma_prior_params(x_ng, col_sd_g),
                    library=self.library)

    def _make_model(self, cfg):
        return VAEModel(**cfg)

    @property
    def posterior_is_point_mass_(self) -> bool:
        """Always True: the VAE's global parameters are point estimates."""
        self._check_fitted()
        return True

    def _decode(self, z_bk, W_gk=None):
        return self._decode_with(self.model_, self.guide_, z_bk)

    def _decode_with(self, model, guide, z_bk):
        return model.decoder(z_bk)


def load_model(path, device="cpu"):
    """Load a saved :class:`SparseVAE` or :class:`VAE`, whichever the folder holds.

    Parameters
    ----------
    path : str or pathlib.Path
        A folder written by ``save``.
    device : {"cpu", "cuda", "auto"} or torch.device

    Raises
    ------
    ValueError
        When the folder is missing, corrupt, crafted or holds an unknown estimator (nothing
        is ever unpickled).
    """
    cfg, _ = load_model_folder(path)
    classes = {c.__name__: c for c in (SparseVAE, VAE)}
    name = cfg.get("estimator")
    if name not in classes:
        raise ValueError(f"{path} holds an unknown estimator {name!r}; expected one of "
                         f"{', '.join(classes)}")
    return classes[name].load(path, device=device)
