"""Is the posterior uncertainty over W calibrated? Coverage and reliability on model-simulated data.

Data come from the Sparse VAE itself: a known support gamma with three anchors per factor and
random extra entries, W | gamma from the spike-and-slab-lasso prior, a fixed random decoder
network, normal noise. The Sparse VAE is then fitted with a variational W guide while the
decoder network is frozen at the truth: with the network learned, the scale and sign of each
W_gk trade off against the network's weights and per-feature heads, so W itself is not
identified and no interval could "cover" it. Given the network, W is identified and coverage
tests the W guide alone. The encoder, sigma and eta are learned. As ``SparseVAE.fit`` does for
these guides, each fit ends with the scale-symmetry step (``rescale_factors``: every factor
moved to the ELBO's optimum along z_k -> c z_k, W_:k -> W_:k / c, and that direction's
posterior spread added to the draws of W); ``--no-rescale`` leaves it out.

Reported per guide: coverage of the central 50% and 90% credible intervals of W (all entries,
support entries, off-support entries) and the reliability of the inclusion probabilities:
predicted E_q[p*] in ten bins against the true inclusion frequency.

``--decoder learned`` fits the whole model with ``SparseVAE.fit`` and its defaults from a random
start, as a user would. W is then not identified, so only p* (reliability, support F1 of
p* >= 0.5), factor recovery and what the anchor report says (does A1 hold?) are scored. Use it
with ``--exact-zeros`` (spike entries of W set to 0: small spike draws, amplified by the
rescaled heads, otherwise carry real effects and the true support is not what the data show)
and ``--unit-signal`` (every feature's signal sd 1, so that no factor's anchors sit far below
the noise).

Run:  .venv/bin/python benchmarks/calibration.py --reps 5 --jobs 2
Writes benchmarks/results/calibration.{md,csv} and calibration.png. 1 torch thread per fit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BINS = np.linspace(0.0, 1.0, 11)


def simulate(seed, n=2000, n_features=24, n_factors=3, hidden=20, lambda0=10.0, lambda1=1.0,
             extra_rate=0.2, noise_sd=0.3, exact_zeros=False, unit_signal=False):
    """Data from the model: returns (x_ng, z_nk, gamma_gk, W_gk, decoder state_dict).

    With ``exact_zeros`` the spike entries are set to 0, so that off-support features do not
    depend on the factor at all (spike draws, though small, can matter: the decoder's heads
    are rescaled to unit signal and amplify them). With ``unit_signal`` every feature's head
    is scaled so that its own signal sd is 1 (by default one factor scales all heads so that
    the median feature's is 1, which can leave a factor's anchors far below the noise).
    """
    import torch

    from pyro_sparse.nn import SparseDecoder

    g = torch.Generator().manual_seed(seed)
    G, K = n_features, n_factors
    gamma = (torch.rand(G, K, generator=g) < extra_rate).float()
    for k in range(K):  # three anchors per factor
        gamma[3 * k:3 * k + 3] = 0.0
        gamma[3 * k:3 * k + 3, k] = 1.0
    scale = torch.where(gamma > 0, 1.0 / lambda1, 1.0 / lambda0)
    u = torch.rand(G, K, generator=g) - 0.5
    W = -scale * torch.sign(u) * torch.log1p(-2 * u.abs())  # Laplace(0, scale)
    if exact_zeros:
        W = W * gamma
    torch.manual_seed(seed + 10_000)
    dec = SparseDecoder(G, K, hidden)
    z = torch.randn(n, K, generator=g)
    with torch.no_grad():
        # a freshly initialised network barely varies its output: rescale the per-feature
        # heads so the median feature's signal sd is 1 (noise_sd is then the noise-to-signal);
        # features that depend on no factor (all-zero rows with exact_zeros) are left out
        sd = dec(z, W).std(0)
        if unit_signal:
            dec.V_gh.div_(torch.where(sd > 0, sd, 1.0).unsqueeze(-1))
        else:
            dec.V_gh.div_(sd[sd > 0].median())
        x = dec(z, W) + noise_sd * torch.randn(n, G, generator=g)
    return x, z, gamma.numpy().astype(bool), W.numpy(), dec.state_dict()


def label(guide_name, rescale=True, restarts=1, init_truth=True, decoder="frozen",
          exact_zeros=False, unit_signal=False, epochs=200, fit_factors=None,
          fit_init="random", fit_kwargs=None, reseed=0, profile=False, lr_decay=0.0,
          refine_epochs=0, feature_modes=0, unfold=True):
    """Row label of one setting, e.g. ``lowrank (2 restarts, random start)``.

    ``fit_kwargs`` (a dict of extra ``SparseVAE`` arguments) is listed as ``k=v`` pairs.
    """
    learned = decoder == "learned"
    notes = [n for n, on in (("no rescale", not rescale),
                             (f"{restarts} restarts", restarts > 1),
                             ("random start", not init_truth and not learned),
                             ("decoder learned, SparseVAE.fit", learned),
                             ("spike entries 0", exact_zeros),
                             ("unit signal per feature", unit_signal),
                             (f"{epochs} epochs", epochs != 200),
                             (f"K={fit_factors} fitted", fit_factors is not None),
                             ("factor-analysis start", fit_init != "random")) if on]
    notes += [f"{k}={v}" for k, v in sorted((fit_kwargs or {}).items())]
    if reseed and not learned:  # learned: reseed_rounds travels in fit_kwargs
        notes.append(f"reseed_rounds={reseed}" + (", loadings profiled" if profile else ""))
    if lr_decay and not learned:  # learned: lr_decay travels in fit_kwargs
        notes.append(f"lr_decay={lr_decay:g}")
    if feature_modes and not learned:  # learned: travels in fit_kwargs
        notes.append(f"feature modes searched ({feature_modes} starts)")
    if refine_epochs and not learned:  # learned: travels in fit_kwargs
        notes.append(f"posterior refined {refine_epochs} epochs")
    if not unfold and (reseed or (fit_kwargs or {}).get("reseed_rounds")):
        notes.append("no unfolding")
    return guide_name + (f" ({', '.join(notes)})" if notes else "")


def _fit_frozen(x, W, dec_state, seed, guide_name, epochs, lambda0, lambda1, restarts,
                init_truth, rescale, reseed=0, profile=False, lr_decay=0.0, refine_epochs=0,
                feature_modes=0, unfold=True):
    """Decoder network frozen at the truth; returns (W draws, p*, encoder means).

    ``reseed`` rounds of :func:`pyro_sparse.infer.reseed_fit` (``epochs // 2`` epochs each,
    the decoder left as it is, with ``profile_loadings=profile`` and ``unfold``) follow each
    fit, before the scale step, as in ``SparseVAE.fit``; ``lr_decay`` is passed to every
    training. With
    ``refine_epochs`` the kept fit's W posterior is then refined against per-row q(z)
    (:func:`pyro_sparse.infer.refine_posterior`, as ``SparseVAE(refine_posterior_epochs=)``
    does), and the fit as it was before is returned as well, in ``flags["before"]`` (the
    same tuple, its ``seconds`` those of the fit alone): the two are scored side by side.
    With ``feature_modes`` (random starts per feature) each restart, after its re-seeding
    rounds, has its features' loadings searched for better modes given the factors
    (:func:`pyro_sparse.infer.search_feature_modes`) and trains ``epochs // 4`` more epochs,
    as ``SparseVAE(feature_mode_starts=)`` does."""
    import pyro
    import torch

    from pyro_sparse.guides import make_guide
    from pyro_sparse.infer import (
        fit_svi,
        full_data_loss,
        refine_posterior,
        rescale_factors,
        reseed_fit,
        search_feature_modes,
    )
    from pyro_sparse.models import SparseVAEModel

    G, K = W.shape
    t0 = time.perf_counter()
    best = None
    n_moved = []
    for r in range(restarts):  # the landscape has factor-swapping local optima: keep the best
        with pyro.settings.context(module_local_params=True):
            pyro.set_rng_seed(seed * 100 + r)
            model = SparseVAEModel(G, K, hidden_dim=20, lambda0=lambda0, lambda1=lambda1,
                                   a=1.0, b=float(K))
            model.decoder.load_state_dict(dec_state)
            model.decoder.requires_grad_(False)
            guide = make_guide(model, guide_name)
            guide.globals_guide.init_sigma(x.std(0))
            if init_truth:  # W's point / posterior mean at the truth
                guide.globals_guide.set_columns(range(K), W)
            fit_svi(model, guide, x, epochs=epochs, batch_size=200, lr=1e-2,
                    seed=seed * 100 + r, warmup_epochs=0.1 * epochs, lr_decay=lr_decay)
            if reseed:
                reseed_fit(model, guide, x, n_rounds=reseed, epochs=max(1, epochs // 2),
                           batch_size=200, lr=1e-2, seed=seed * 100 + r,
                           col_sd_g=x.std(0).numpy(), redraw_decoder=False,
                           profile_loadings=profile, lr_decay=lr_decay, unfold=unfold)
            if feature_modes:
                found = search_feature_modes(model, guide, x, n_starts=feature_modes,
                                             seed=seed * 100 + r)
                fit_svi(model, guide, x, epochs=max(1, epochs // 4), batch_size=200, lr=1e-2,
                        seed=seed * 100 + r + 50, lr_decay=lr_decay)
                n_moved.append(len(found["moved"]))
            if rescale:  # what SparseVAE.fit does for the variational guides
                rescale_factors(model, guide, x)
            loss = full_data_loss(model, guide, x)
        if best is None or loss < best[0]:
            best = (loss, model, guide, n_moved[-1] if n_moved else 0)
    _, model, guide, moved = best

    def read():
        gg = guide.globals_guide
        with torch.no_grad():
            mu = guide.local_guide.encode(x)[0].numpy()
        flags = {"eta_fit": gg.eta_k.numpy().copy()}
        if feature_modes:
            flags["features_moved"] = moved
        return gg.sample_W(2000).numpy(), gg.inclusion_probs().numpy(), mu, flags

    if not refine_epochs:
        return read()
    before = read() + (time.perf_counter() - t0,)
    with pyro.settings.context(module_local_params=True):
        refine_posterior(model, guide, x, epochs=refine_epochs, batch_size=200, lr=1e-2,
                         seed=seed * 100 + 99, lr_decay=lr_decay)
    draws, p, mu, flags = read()
    return draws, p, mu, dict(flags, before=before)


def _fit_learned(x, K, seed, guide_name, epochs, lambda0, lambda1, restarts, fit_init="random",
                 fit_kwargs=None, unfold=True):
    """The whole model learned by ``SparseVAE.fit`` with its defaults (b = G), as a user runs
    it, with ``K`` factors, start ``fit_init`` and any further ``SparseVAE`` arguments in
    ``fit_kwargs``; returns no W draws."""
    import pyro_sparse as ps

    est = ps.SparseVAE(n_factors=K, hidden_dim=20, lambda0=lambda0, lambda1=lambda1,
                       w_guide=guide_name, n_restarts=restarts, init=fit_init,
                       reseed_unfold=unfold, **(fit_kwargs or {}))
    with warnings.catch_warnings():  # recorded below instead
        warnings.simplefilter("ignore", ps.ConvergenceWarning)
        est.fit(x.numpy(), epochs=epochs, batch_size=200, lr=1e-2, seed=seed * 100,
                progress=False)
    # what the anchor report tells a user who has no truth: is A1 (>= 2 anchors) met by
    # every used factor?
    f = ps.diagnostics.anchor_report(est, num_samples=200).factors
    used = f[~f["unused"]]
    flags = dict(n_used_factors=int(len(used)), a1_all_used=bool(used["a1"].all()),
                 loss_per_row=float(est.loss_history_[-1]) / x.shape[0],
                 warned=est.fit_info_["loss_trend"]["converged"] is False)
    codes = est.transform(x.numpy())
    # the synthetic study's merged read-out: p* support restricted to effect share >= 0.1,
    # factors whose codes correlate at |r| >= 0.9 read as one (scored per fit in _score)
    merged = ps.diagnostics.merge_redundant(est.effective_support(x.numpy(), min_share=0.1),
                                            codes)
    flags = dict(flags, eta_fit=np.asarray(est.eta_, dtype=float),
                 share=est.effect_shares(x.numpy()), support_merged=merged)
    return None, est.inclusion_probs_, codes, flags


def fit_one(args):
    """One replicate x one setting: per-entry rows (true W, q mean, q sd, p*, gamma).

    With ``decoder="learned"`` the scale and sign of W are not identified, so only p* and
    factor recovery are scored (the interval columns are NaN). With ``fit_factors`` > K
    (decoder learned) the fitted factors left over after matching count as true zeros:
    their entries are rows with ``gamma`` False (k >= K), so a used surplus factor costs
    precision and reliability.
    """
    (seed, guide_name, epochs, lambda0, lambda1, restarts, init_truth, rescale, decoder,
     exact_zeros, unit_signal, fit_factors, fit_init, fit_kwargs, reseed, profile,
     *rest) = args
    # older task tuples end at ``profile`` or ``lr_decay``
    lr_decay = rest[0] if rest else 0.0
    refine_epochs = rest[1] if len(rest) > 1 else 0
    feature_modes = rest[2] if len(rest) > 2 else 0
    unfold = rest[3] if len(rest) > 3 else True
    import torch

    torch.set_num_threads(1)
    x, z, gamma, W, dec_state = simulate(seed, lambda0=lambda0, lambda1=lambda1,
                                         exact_zeros=exact_zeros, unit_signal=unit_signal)
    G, K = W.shape
    t0 = time.perf_counter()
    if decoder == "frozen":
        draws, p, mu, flags = _fit_frozen(x, W, dec_state, seed, guide_name, epochs, lambda0,
                                          lambda1, restarts, init_truth, rescale, reseed,
                                          profile, lr_decay, refine_epochs, feature_modes,
                                          unfold)
    else:
        draws, p, mu, flags = _fit_learned(x, fit_factors or K, seed, guide_name, epochs,
                                           lambda0, lambda1, restarts, fit_init, fit_kwargs,
                                           unfold)
    seconds = time.perf_counter() - t0
    name = label(guide_name, rescale, restarts, init_truth, decoder, exact_zeros, unit_signal,
                 epochs, fit_factors, fit_init, fit_kwargs, reseed, profile, lr_decay,
                 refine_epochs, feature_modes, unfold)
    before = flags.pop("before", None)
    rows = _score(seed, name, draws, p, mu, flags, z, gamma, W, seconds)
    if before is not None:  # the same fit before refine_posterior, side by side
        name0 = label(guide_name, rescale, restarts, init_truth, decoder, exact_zeros,
                      unit_signal, epochs, fit_factors, fit_init, fit_kwargs, reseed, profile,
                      lr_decay, 0, feature_modes, unfold)
        rows = _score(seed, name0, *before[:4], z, gamma, W, before[4]) + rows
    return rows


def _score(seed, name, draws, p, mu, flags, z, gamma, W, seconds):
    # per-entry rows of one fit: match its factors to the true ones, then score each entry
    G, K = W.shape
    flags = dict(flags)
    eta_fit = flags.pop("eta_fit")  # per fitted factor; each row gets its matched factor's
    share = flags.pop("share", None)  # effect shares (G, K fitted), decoder-learned fits
    merged = flags.pop("support_merged", None)  # merged read-out (G, K fitted), the same
    if merged is not None:
        # scored per fit as in the synthetic study: used (non-empty) merged columns matched
        # to the true factors first, then precision / recall / F1 of the whole support
        from pyro_sparse.diagnostics import match_factors, support_scores

        sm = support_scores(np.asarray(gamma, bool), merged,
                            match_factors(z.numpy(), mu, prefer=merged.any(0)))
        flags["f1_merged"] = sm["f1"]
    # the factors' order and signs are not identified (z_k -> -z_k with W_:k -> -W_:k
    # leaves everything unchanged even with the network fixed): match each true factor to an
    # encoder factor (Hungarian on |corr| of encoder means and true z) and take its sign
    from scipy.optimize import linear_sum_assignment

    Kf = mu.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.nan_to_num(np.corrcoef(mu.T, z.numpy().T)[:Kf, Kf:])  # collapsed factor: 0
    fit_idx, true_idx = linear_sum_assignment(-np.abs(c))
    of_true = fit_idx[np.argsort(true_idx)]  # encoder factor matched to true factor k
    matched = c[of_true, np.arange(K)]
    sign = np.where(matched < 0, -1.0, 1.0)
    ordered = bool((of_true == np.arange(K)).all())  # the identity matching
    recovered = bool(np.abs(matched).min() >= 0.9)  # every true factor found
    surplus = np.setdiff1d(np.arange(Kf), of_true)  # fitted factors no true one matched
    p_surplus = p[:, surplus]
    p = p[:, of_true]
    if share is None:
        share_surplus = np.full(p_surplus.shape, np.nan)
        share = np.full(p.shape, np.nan)
    else:
        share_surplus, share = share[:, surplus], share[:, of_true]
    if draws is not None:
        draws = draws[:, :, of_true] * sign
    rows = []
    for gi in range(G):
        for j in range(len(surplus)):
            rows.append(dict(seed=seed, guide=name, g=gi, k=K + j, W_true=0.0, gamma=False,
                             q_mean=np.nan, q_sd=np.nan, p_star=float(p_surplus[gi, j]),
                             eta_fit=float(eta_fit[surplus[j]]), in50=np.nan, in90=np.nan,
                             share=float(share_surplus[gi, j]),
                             ordered=ordered, recovered=recovered, seconds=seconds, **flags))
        for k in range(K):
            row = dict(seed=seed, guide=name,
                       g=gi, k=k, W_true=float(W[gi, k]), gamma=bool(gamma[gi, k]),
                       q_mean=np.nan, q_sd=np.nan, p_star=float(p[gi, k]),
                       eta_fit=float(eta_fit[of_true[k]]), in50=np.nan,
                       in90=np.nan, share=float(share[gi, k]), ordered=ordered,
                       recovered=recovered, seconds=seconds,
                       **flags)
            if draws is not None:
                d = draws[:, gi, k]
                lo50, hi50 = np.quantile(d, [0.25, 0.75])
                lo90, hi90 = np.quantile(d, [0.05, 0.95])
                row.update(q_mean=float(d.mean()), q_sd=float(d.std()),
                           in50=float(lo50 <= W[gi, k] <= hi50),
                           in90=float(lo90 <= W[gi, k] <= hi90))
            rows.append(row)
    return rows


def reliability(p, y):
    """Per p* bin: (bin, mean predicted, observed frequency, count)."""
    from pyro_sparse.diagnostics import reliability_bins

    t = reliability_bins(p, y, n_bins=len(BINS) - 1)
    return [(int(r.bin), r.predicted, r.observed, int(r.count)) for r in t.itertuples()]


def _max_gap(d):
    from pyro_sparse.diagnostics import max_reliability_gap

    if not len(d):
        return float("nan")
    return max_reliability_gap(d["p_star"].to_numpy(), d["gamma"].to_numpy().astype(float),
                               n_bins=len(BINS) - 1, min_count=20)


def _noise_check(d):
    """``reliability_check`` of the pooled entries: what a calibrated p* would show here."""
    from pyro_sparse.diagnostics import reliability_check

    return reliability_check(d["p_star"].to_numpy(), d["gamma"].to_numpy().astype(float),
                             tol=0.1, n_bins=len(BINS) - 1, min_count=20, level=0.95)


def _oracle_gap(d, lambda0, lambda1):
    """Gap of p* at the true W and each true column's inclusion rate (no fit at all)."""
    import torch

    from pyro_sparse.distributions.ssl import inclusion_prob

    eta = d.groupby(["seed", "k"])["gamma"].transform("mean").to_numpy(float)
    p = inclusion_prob(torch.as_tensor(d["W_true"].to_numpy(float)),
                       torch.as_tensor(eta), lambda0, lambda1).numpy()
    return _max_gap(d.assign(p_star=p))


def _eta_diagnosis(d, lambda0, lambda1, n_draws=400):
    """Is a reliability miss in W's posterior or in eta? (frozen-decoder runs; else None).

    Scores E_q[p*] recomputed at each column's true inclusion rate (normal marginals of q,
    ``n_draws`` draws; not for the spike-and-slab guide, whose q is not normal: ``gap`` is
    then NaN), and sets the fitted eta (the run's ``eta_fit`` where recorded, else read off
    by inverting p* at the posterior mean; median per data set and factor) beside the true
    rate.
    """
    import torch

    from pyro_sparse.distributions.ssl import inclusion_prob

    d = d[d["q_mean"].notna()]
    if not len(d):
        return None
    normal_q = not str(d["guide"].iloc[0]).startswith("spikeslab")
    gap = p_value = float("nan")
    if normal_q:
        rate = d.groupby(["seed", "k"])["gamma"].transform("mean").to_numpy(float)
        m = torch.as_tensor(d["q_mean"].to_numpy(float))
        sd = torch.as_tensor(d["q_sd"].to_numpy(float))
        gen = torch.Generator().manual_seed(0)
        W = m + sd * torch.randn((n_draws,) + m.shape, generator=gen, dtype=m.dtype)
        p_rate = inclusion_prob(W, torch.as_tensor(rate), lambda0, lambda1).mean(0).numpy()
        at_rate = _noise_check(d.assign(p_star=p_rate))
        gap, p_value = at_rate.gap, at_rate.p_value
    recorded = "eta_fit" in d and d["eta_fit"].notna().all()
    if recorded:
        implied = d["eta_fit"].to_numpy(float)
    elif normal_q:
        # p* = sigmoid(logit eta + log(lambda1 / lambda0) + (lambda0 - lambda1) |w|)
        ps = d["p_star"].clip(1e-6, 1 - 1e-6).to_numpy()
        llr = np.log(lambda1 / lambda0) + (lambda0 - lambda1) * np.abs(d["q_mean"].to_numpy())
        implied = 1 / (1 + np.exp(-(np.log(ps / (1 - ps)) - llr)))
    else:
        implied = None  # no eta to report
    import pandas as pd

    rate = d.groupby(["seed", "k"])["gamma"].mean()
    eta = (d.assign(implied=implied).groupby(["seed", "k"])["implied"].median()
           if implied is not None else pd.Series([np.nan]))
    return dict(gap=gap, p_value=p_value, eta_recorded=bool(recorded),
                eta_median=float(eta.median()), eta_sd=float(eta.std()),
                rate_median=float(rate.median()), rate_sd=float(rate.std()))


def summarize(df, lambda0=10.0, lambda1=1.0):
    lines = []
    df = df.astype({"in50": float, "in90": float})  # bool in older run files, NaN-able now
    for guide, d in df.groupby("guide", sort=False):
        lines.append(dict(
            guide=guide, reps=d["seed"].nunique(), entries=len(d),
            cover50=d["in50"].mean(), cover90=d["in90"].mean(),
            cover90_support=d.loc[d["gamma"], "in90"].mean(),
            cover90_off=d.loc[~d["gamma"], "in90"].mean(),
            cover90_recovered=d.loc[d["recovered"], "in90"].mean(),
            max_reliability_gap=_max_gap(d),
            max_reliability_gap_recovered=_max_gap(d[d["recovered"]]),
            noise=_noise_check(d), oracle_gap=_oracle_gap(d, lambda0, lambda1),
            eta_diag=_eta_diagnosis(d, lambda0, lambda1),
            brier=float(((d["p_star"] - d["gamma"].astype(float)) ** 2).mean()),
            ordered=d.groupby("seed")["ordered"].first().mean(),
            recovered=d.groupby("seed")["recovered"].first().mean(),
            seconds_per_fit=d.groupby("seed")["seconds"].max().mean(),
            a1=_a1_summary(d), f1=_f1(d), f1_effect=_f1(d, 0.1),
            f1_merged=_per_rep(d, "f1_merged", "{:.2f}"),
            loss=_per_rep(d, "loss_per_row", "{:.1f}"),
            warned=_per_rep(d, "warned", "{:.0f}", np.sum)))
    return lines


def _f1(d, min_share=None):
    """Support F1 of p* >= 0.5 against gamma, pooled over the replicates' entries; with
    ``min_share``, of p* >= 0.5 and effect share >= min_share (NaN without shares)."""
    S, T = d["p_star"].to_numpy() >= 0.5, d["gamma"].to_numpy().astype(bool)
    if min_share is not None:
        if "share" not in d or d["share"].isna().all():
            return float("nan")
        S = S & (d["share"].to_numpy() >= min_share)
    tp = float((S & T).sum())
    return 2 * tp / max(float(S.sum() + T.sum()), 1.0)


def _per_rep(d, col, fmt, agg=np.mean):
    """``agg`` over replicates of a per-replicate column (``-`` for run files without it)."""
    if col not in d or d[col].isna().all():
        return "-"
    return fmt.format(agg(d.groupby("seed")[col].first().astype(float)))


def _a1_summary(d):
    """'A1 holds in a/b reps with factors recovered, c/e without' (decoder-learned runs)."""
    if "a1_all_used" not in d or d["a1_all_used"].isna().all():
        return "-"
    per = d.groupby("seed")[["recovered", "a1_all_used"]].first()
    rec, miss = per[per["recovered"]], per[~per["recovered"]]
    return (f"{int(rec['a1_all_used'].astype(bool).sum())}/{len(rec)} recovered, "
            f"{int(miss['a1_all_used'].astype(bool).sum())}/{len(miss)} not")


def render(df, name, lambda0=10.0, lambda1=1.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = summarize(df, lambda0, lambda1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for i, (guide, d) in enumerate(df.groupby("guide", sort=False)):
        rel = reliability(d["p_star"].to_numpy(), d["gamma"].to_numpy().astype(float))
        axes[0].plot([r[1] for r in rel], [r[2] for r in rel], "o-", label=guide)
        for r in rel:
            axes[0].annotate(str(r[3]), (r[1], r[2]), fontsize=6, color=f"C{i}")
        if d["q_sd"].isna().all():  # decoder learned: W not identified, no intervals
            continue
        z = (d["W_true"] - d["q_mean"]) / d["q_sd"].clip(lower=1e-9)
        axes[1].hist(z.clip(-6, 6), bins=48, density=True, histtype="step", label=guide)
    axes[0].plot([0, 1], [0, 1], "k:", lw=1)
    axes[0].fill_between([0, 1], [-0.1, 0.9], [0.1, 1.1], color="0.9")
    axes[0].set(xlabel="predicted inclusion probability E_q[p*] (bin mean)",
                ylabel="true inclusion frequency", title="Reliability (numbers: entries)",
                xlim=(0, 1), ylim=(0, 1))
    grid = np.linspace(-6, 6, 200)
    axes[1].plot(grid, np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi), "k:", lw=1, label="N(0,1)")
    axes[1].set(xlabel="(W_true - posterior mean) / posterior sd", ylabel="density",
                title="Standardised errors (calibrated: N(0, 1))")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.savefig(RESULTS / f"{name}.png", dpi=120)
    md = [f"# Calibration of the W posterior ({name})", "",
          f"Machine: {platform.machine()} {platform.processor() or ''}, "
          f"{os.cpu_count()} cores, 1 torch thread per fit; python {sys.version.split()[0]}.",
          "Targets (issue 4): 90% intervals cover >= 0.80 of the true entries; reliability "
          "curve within 0.1 of the diagonal (bins with >= 20 entries).",
          "Sampling noise (`pyro_sparse.diagnostics.reliability_check`): the largest gap a "
          "perfectly calibrated p* would show on the same entries (95% quantile over 2,000 "
          "draws of the truth from p*), the p-value of the observed gap against it, and the "
          "bins whose 95% Wilson interval lies wholly more than 0.1 from the diagonal; "
          "'gap at the true W' is p* of the true loadings at each true column's inclusion "
          "rate, with no fit at all. 'Merged read-out' (decoder learned): the p* support "
          "restricted to effect share >= 0.1, factors whose codes correlate at |r| >= 0.9 "
          "merged, used factors matched first, F1 per fit (as the synthetic study's "
          "`f1_merged`).", "",
          "| guide | reps | identity order | factors recovered | entries | cover 50% | "
          "cover 90% | cover 90% (support) | cover 90% (off) | cover 90% (reps with factors "
          "recovered) | max reliability gap | max reliability gap (reps with factors recovered) | "
          "gap a calibrated p* would show (95%) | p-value of the gap | bins shown > 0.1 off "
          "/ checked | gap at the true W | "
          "Brier | support F1 (p* >= 0.5) | support F1 (p* >= 0.5, effect share >= 0.1) | "
          "support F1, merged read-out (mean over reps) | "
          "A1 met by every used factor | final loss / row | "
          "reps with a ConvergenceWarning | s / rep |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
          "---|---|"]
    for s in summ:
        md.append(f"| {s['guide']} | {s['reps']} | {s['ordered']:.2f} | "
                  f"{s['recovered']:.2f} | {s['entries']} | "
                  f"{s['cover50']:.3f} | "
                  f"{s['cover90']:.3f} | {s['cover90_support']:.3f} | {s['cover90_off']:.3f} |"
                  f" {s['cover90_recovered']:.3f} | {s['max_reliability_gap']:.3f} | "
                  f"{s['max_reliability_gap_recovered']:.3f} | "
                  f"{s['noise'].calibrated_quantile:.3f} | {s['noise'].p_value:.3f} | "
                  f"{s['noise'].n_outside}/{s['noise'].n_checked} | {s['oracle_gap']:.3f} | "
                  f"{s['brier']:.4f} | {s['f1']:.2f} | {s['f1_effect']:.2f} | {s['f1_merged']} | "
                  f"{s['a1']} | "
                  f"{s['loss']} | "
                  f"{s['warned']} | "
                  f"{s['seconds_per_fit']:.0f} |")
    md += ["", "Reliability bins (guide: bin mean predicted -> observed frequency "
           "[95% Wilson interval], count):", ""]
    for s in summ:
        md.append(f"- {s['guide']}: " + "; ".join(
            f"{r.predicted:.2f} -> {r.observed:.2f} [{r.observed_lower:.2f}, "
            f"{r.observed_upper:.2f}] ({r.count})" for r in s["noise"].bins.itertuples()))
    diag = [s for s in summ if s["eta_diag"] is not None]
    if diag:
        md += ["", "Posterior of W or eta? E_q[p*] recomputed at each column's true inclusion "
               "rate (normal marginals of q; n/a for the spike-and-slab guide), and the "
               "fitted eta (as recorded by the run, or, in run files without it, read off p* "
               "at the posterior mean; median over data sets x factors, sd in brackets):", ""]
        for s in diag:
            e = s["eta_diag"]
            at_rate = ("n/a" if math.isnan(e["gap"]) else
                       f"{e['gap']:.3f} (p-value {e['p_value']:.3f})")
            how = "recorded" if e["eta_recorded"] else "read off p*"
            eta = (f"eta ({how}) {e['eta_median']:.3f} ({e['eta_sd']:.3f})"
                   if math.isfinite(e["eta_median"]) else "eta not in this run file")
            md.append(f"- {s['guide']}: gap {at_rate}; {eta} against the true rate "
                      f"{e['rate_median']:.3f} ({e['rate_sd']:.3f})")
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main(argv=None):
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--first-rep", type=int, default=0,
                    help="data sets first_rep .. first_rep + reps - 1 (fresh ones for a "
                         "held-out check of a setting chosen on 0 .. 9)")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--guides", nargs="+", default=["meanfield"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--restarts", type=int, default=1, help="fits per replicate (best ELBO)")
    ap.add_argument("--init", choices=["truth", "random"], default="truth",
                    help="start W's posterior mean at the true W (separates optimisation "
                         "failures, i.e. factor-swapping local optima, from calibration)")
    ap.add_argument("--no-rescale", action="store_true",
                    help="skip the scale-symmetry step (rescale_factors) that SparseVAE.fit "
                         "applies to variational W guides (the results before it existed)")
    ap.add_argument("--decoder", choices=["frozen", "learned"], default="frozen",
                    help="frozen: the decoder network is fixed at the truth, so W is "
                         "identified and its intervals can be scored; learned: the whole "
                         "model is fitted by SparseVAE.fit from a random start, as a user "
                         "would (p* reliability and factor recovery only)")
    ap.add_argument("--exact-zeros", action="store_true",
                    help="simulate the spike entries of W as exactly 0")
    ap.add_argument("--unit-signal", action="store_true",
                    help="scale every feature's head to signal sd 1 (default: one scale for "
                         "all heads, median feature at 1)")
    ap.add_argument("--fit-factors", type=int, default=None,
                    help="--decoder learned: factors to fit (default: the true 3); surplus "
                         "fitted factors are scored as true zeros")
    ap.add_argument("--fit-init", choices=["random", "factor_analysis"], default="random",
                    help="--decoder learned: SparseVAE(init=...), the start of each fit")
    ap.add_argument("--fit-kwargs", type=json.loads, default=None,
                    help="--decoder learned: further SparseVAE arguments as a JSON object, "
                         "e.g. the synthetic study's recipe '{\"factor_correlation\": true, "
                         "\"lkj_concentration\": 5, \"refine_support\": true, "
                         "\"refine_polish\": 3}' (with --restarts 5)")
    ap.add_argument("--reseed-rounds", type=int, default=0,
                    help="re-seeding rounds after each fit (SparseVAE(reseed_rounds=...); "
                         "with --decoder frozen the decoder is left as it is)")
    ap.add_argument("--no-unfold", action="store_true",
                    help="re-seeding rounds without the unfolding proposal "
                         "(reseed_fit(unfold=False), SparseVAE(reseed_unfold=False))")
    ap.add_argument("--profile-loadings", action="store_true",
                    help="--decoder frozen, with --reseed-rounds: each re-seeded loading set "
                         "by a per-feature search over PROFILE_GRID (reseed_fit("
                         "profile_loadings=True))")
    ap.add_argument("--lr-decay", type=float, default=0.0,
                    help="fraction of each training's last steps over which the learning rate "
                         "falls linearly (fit_svi's lr_decay; SparseVAE(lr_decay=) when the "
                         "decoder is learned)")
    ap.add_argument("--refine-posterior", type=int, default=0, metavar="EPOCHS",
                    help="after the fit, refine W's posterior against per-row q(z) for this "
                         "many epochs (pyro_sparse.infer.refine_posterior; "
                         "SparseVAE(refine_posterior_epochs=) when the decoder is learned)")
    ap.add_argument("--feature-modes", type=int, default=0, metavar="STARTS",
                    help="--decoder frozen: after each restart's re-seeding, search every "
                         "feature's loadings for a better mode from this many random starts, "
                         "then train epochs // 4 more (pyro_sparse.infer.search_feature_modes)")
    ap.add_argument("--lambda0", type=float, default=10.0)
    ap.add_argument("--lambda1", type=float, default=1.0)
    ap.add_argument("--name", default="calibration")
    ap.add_argument("--render", nargs="*", help="only render these CSVs (concatenated)")
    ap.add_argument("--render-seeds", nargs=2, type=int, metavar=("FIRST", "LAST"),
                    help="with --render: keep the data sets with seeds FIRST..LAST only")
    ap.add_argument("--render-tags", nargs="*", metavar="TAG",
                    help="with --render: one tag per CSV, appended to its guide labels "
                         "(to set runs of the same setting by different code side by side)")
    args = ap.parse_args(argv)
    if args.decoder == "frozen" and (args.fit_factors or args.fit_init != "random"
                                     or args.fit_kwargs):
        ap.error("--fit-factors, --fit-init and --fit-kwargs need --decoder learned")
    if args.fit_kwargs is not None and not isinstance(args.fit_kwargs, dict):
        ap.error("--fit-kwargs must be a JSON object")
    if args.render_seeds and not args.render:
        ap.error("--render-seeds needs --render")
    if args.render_tags is not None and len(args.render_tags) != len(args.render or []):
        ap.error(f"--render-tags needs one tag per --render CSV ({len(args.render or [])}), "
                 f"got {len(args.render_tags)}")
    if args.first_rep < 0:
        ap.error("--first-rep must be >= 0")
    if args.reseed_rounds < 0:
        ap.error("--reseed-rounds must be >= 0")
    if args.profile_loadings and (args.decoder != "frozen" or not args.reseed_rounds):
        ap.error("--profile-loadings needs --decoder frozen and --reseed-rounds")
    if not 0.0 <= args.lr_decay <= 1.0:
        ap.error("--lr-decay must be between 0 and 1")
    if args.lr_decay and args.decoder == "learned":
        args.fit_kwargs = dict(args.fit_kwargs or {}, lr_decay=args.lr_decay)
    if args.refine_posterior < 0:
        ap.error("--refine-posterior must be >= 0")
    if args.feature_modes < 0:
        ap.error("--feature-modes must be >= 0")
    if args.feature_modes and args.decoder != "frozen":
        ap.error("--feature-modes needs --decoder frozen")
    if args.refine_posterior and args.decoder == "learned":
        args.fit_kwargs = dict(args.fit_kwargs or {},
                               refine_posterior_epochs=args.refine_posterior)
    if args.reseed_rounds and args.decoder == "learned":
        args.fit_kwargs = dict(args.fit_kwargs or {}, reseed_rounds=args.reseed_rounds)
    RESULTS.mkdir(exist_ok=True)
    if args.render:
        frames = [pd.read_csv(f) for f in args.render]
        for f, tag in zip(frames, args.render_tags or [], strict=False):
            f["guide"] = f["guide"].astype(str) + f" [{tag}]"
        df = pd.concat(frames, ignore_index=True)
        if args.render_seeds:
            lo, hi = args.render_seeds
            df = df[(df["seed"] >= lo) & (df["seed"] <= hi)]
            if df.empty:
                ap.error(f"no rows with seeds {lo}..{hi} in {', '.join(args.render)}")
        render(df, args.name, args.lambda0, args.lambda1)
        return 0
    tasks = [(s, gname, args.epochs, args.lambda0, args.lambda1, args.restarts,
              args.init == "truth", not args.no_rescale, args.decoder, args.exact_zeros,
              args.unit_signal, args.fit_factors, args.fit_init, args.fit_kwargs,
              args.reseed_rounds if args.decoder == "frozen" else 0, args.profile_loadings,
              args.lr_decay if args.decoder == "frozen" else 0.0,
              args.refine_posterior if args.decoder == "frozen" else 0, args.feature_modes,
              not args.no_unfold)
             for gname in args.guides
             for s in range(args.first_rep, args.first_rep + args.reps)]
    rows, failed = [], []
    with ProcessPoolExecutor(args.jobs) as ex:
        futures = [ex.submit(fit_one, t) for t in tasks]
        for t, fut in zip(tasks, futures, strict=True):
            try:  # one failing replicate must not lose the others
                rows += fut.result()
            except Exception as err:  # noqa: BLE001 - reported, then the run exits 1
                failed.append((t[1], t[0], repr(err)))
                print(f"calibration: {t[1]} seed {t[0]} failed: {err!r}", file=sys.stderr)
    if not rows:
        return 1
    df = pd.DataFrame(rows)
    df.to_csv(RESULTS / f"{args.name}.csv", index=False)
    render(df, args.name, args.lambda0, args.lambda1)
    if failed:
        with open(RESULTS / f"{args.name}.md", "a") as fh:
            fh.write("\nFailed replicates (not in the table):\n\n"
                     + "".join(f"- {g} seed {s}: {e}\n" for g, s, e in failed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
