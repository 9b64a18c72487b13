"""Matplotlib figures of fitted models; every function returns a Figure and never shows it.

Loadings heatmaps with inclusion probabilities, anchor curves (a feature against its matched
factor with the decoder's curve, as the paper's Figure 2), and figures of the DataTree from
:func:`pyro_sparse.diagnostics.to_arviz`: forest plot, loss trace, posterior predictive check,
and the K-selection curve of :func:`pyro_sparse.select_n_factors`.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure  # this module itself loads on first use (ps.plots)

__all__ = ["plot_loadings", "plot_anchor_curves", "plot_forest", "plot_loss", "plot_ppc",
           "plot_k_selection"]


def _check_names(names, n, what):
    # a label list must give one label per row / column of the figure
    if names is not None and len(names) != n:
        raise ValueError(f"{what} has {len(names)} names for {n} entries")


def _check_prob(value, name):
    if not (isinstance(value, (int, float)) and 0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return float(value)


def _select_features(da, features):
    # the named features of a DataTree variable, with the unknown ones named
    if features is None:
        return da
    if isinstance(features, str):
        features = [features]
    known = [str(f) for f in da["feature"].values]
    missing = [f for f in features if str(f) not in known]
    if missing:
        raise ValueError(f"features: unknown feature(s) {missing[:5]}; the DataTree has "
                         f"{known[:10]}{' ...' if len(known) > 10 else ''}")
    if len(features) == 0:
        raise ValueError("features is empty")
    return da.sel(feature=list(features))


class _NotebookFigure(Figure):
    """A matplotlib Figure that notebooks display as a PNG image.

    Not registered with pyplot, so nothing accumulates in its state; IPython draws a plain
    Figure only once pyplot's inline backend is loaded, which a user who never imports pyplot
    lacks, so the figure renders itself (Agg, no display needed).
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def _figure(figsize):
    return _NotebookFigure(figsize=figsize, layout="constrained")


def plot_loadings(loadings_gk, inclusion_gk=None, feature_names=None, factor_names=None,
                  threshold: float = 0.5):
    """Heatmap of W with p* written in each cell; cells with p* >= threshold are outlined.

    Parameters
    ----------
    loadings_gk : array, shape (G, K)
    inclusion_gk : array, shape (G, K), optional
    feature_names, factor_names : sequence of str, optional
    threshold : float
        p* at or above which a cell counts as in the support.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Rectangle

    W = np.asarray(loadings_gk, float)
    if W.ndim != 2:
        raise ValueError(f"loadings_gk must be a (G, K) matrix, got shape {W.shape}")
    G, K = W.shape
    _check_names(feature_names, G, "feature_names")
    _check_names(factor_names, K, "factor_names")
    if inclusion_gk is not None and np.shape(inclusion_gk) != W.shape:
        raise ValueError(f"inclusion_gk has shape {np.shape(inclusion_gk)} but loadings_gk "
                         f"has {W.shape}")
    fig = _figure((1.2 + 0.9 * K, 1.0 + 0.35 * G))
    ax = fig.add_subplot()
    lim = float(np.abs(W).max()) or 1.0
    im = ax.imshow(W, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    fig.colorbar(im, ax=ax, label="loading W")
    ax.set_yticks(range(G), feature_names or [f"feature_{g}" for g in range(G)])
    ax.set_xticks(range(K), factor_names or [f"factor_{k}" for k in range(K)], rotation=45)
    if inclusion_gk is not None:
        P = np.asarray(inclusion_gk, float)
        for g in range(G):
            for k in range(K):
                ax.text(k, g, f"{P[g, k]:.2f}", ha="center", va="center", fontsize=7)
                if P[g, k] >= threshold:
                    ax.add_patch(Rectangle((k - 0.5, g - 0.5), 1, 1, fill=False, lw=1.5))
        ax.set_title(f"W (colour) and inclusion probability p* (text; box: p* >= {threshold})")
    return fig


def plot_anchor_curves(estimator, X, features, factor_of, feature_names=None, grid=100):
    """Each feature against its factor's encoder mean, with the decoder's curve.

    The curve varies factor k over the range of its encoder means with the other factors at
    their mean.

    Parameters
    ----------
    estimator : fitted SparseVAE or VAE
    X : array-like, shape (N, G)
    features : sequence of int
        Features to draw.
    factor_of : sequence of int
        Factor (column of ``transform``) to draw each feature against.
    feature_names : sequence of str, optional
    grid : int
        Points on the decoder curve.

    Returns
    -------
    matplotlib.figure.Figure
    """
    Xa = np.asarray(X, float)
    features, factor_of = list(features), list(factor_of)
    n, G = len(features), Xa.shape[1]
    if n == 0 or len(factor_of) != n:
        raise ValueError(f"features and factor_of must pair up one to one, got {n} features "
                         f"and {len(factor_of)} factors")
    K = getattr(estimator, "n_factors", None)
    for what, idx, size in (("features", features, G), ("factor_of", factor_of, K)):
        bad = [i for i in idx if not isinstance(i, (int, np.integer))
               or (size is not None and not 0 <= i < size)]
        if bad:
            raise ValueError(f"{what} must be column indices in [0, {size}), got {bad[:5]}")
    _check_names(feature_names, G, "feature_names")
    Z = estimator.transform(Xa)
    fig = _figure((3.0 * n, 2.8))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, g, k in zip(axes, features, factor_of):
        ax.scatter(Z[:, k], Xa[:, g], s=3, alpha=0.4, color="0.4")
        zz = np.tile(Z.mean(0), (grid, 1))
        zz[:, k] = np.linspace(Z[:, k].min(), Z[:, k].max(), grid)
        ax.plot(zz[:, k], estimator.decode(zz)[:, g], color="C3", lw=2)
        name = feature_names[g] if feature_names else f"feature {g}"
        ax.set_xlabel(f"factor {k} (encoder mean)")
        ax.set_ylabel(name)
    return fig


def _group(dt, name):
    try:
        return dt[name].to_dataset()
    except KeyError:
        raise ValueError(f"the DataTree has no {name!r} group; build it with to_arviz(...)"
                         f"{' with X and posterior_predictive=True' if 'pred' in name else ''}"
                         ) from None


def plot_forest(dt, factor, prob: float = 0.9, features=None, threshold: float = 0.5):
    """Forest plot of one factor's loadings: posterior mean and central interval per feature.

    Each chain (restart) is drawn separately; features whose mean inclusion probability is
    at least ``threshold`` are drawn filled, the others hollow.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`pyro_sparse.diagnostics.to_arviz` (needs ``W`` in the posterior).
    factor : int or str
        Factor index or name (``"factor_0"``...).
    prob : float
        Mass of the central interval.
    features : sequence of str, optional
        Features to show (default all).
    threshold : float
        p* threshold for the filled markers.

    Returns
    -------
    matplotlib.figure.Figure
    """
    prob = _check_prob(prob, "prob")
    threshold = _check_prob(threshold, "threshold")
    post = _group(dt, "posterior")
    if "W" not in post:
        raise ValueError("the posterior has no W (a VAE has no loadings)")
    name = factor if isinstance(factor, str) else f"factor_{int(factor)}"
    known = [str(f) for f in post["factor"].values]
    if name not in known:
        raise ValueError(f"unknown factor {factor!r}; the model has {known}")
    W = post["W"].sel(factor=name)
    P = post["inclusion"].sel(factor=name).mean(("chain", "draw"))
    W = _select_features(W, features)
    P = P.sel(feature=W["feature"].values)
    feats = [str(f) for f in W["feature"].values]
    C = W.sizes["chain"]
    lo_q, hi_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    fig = _figure((5.5, 1.0 + 0.3 * len(feats) * max(1, C / 2)))
    ax = fig.add_subplot()
    y = np.arange(len(feats))[::-1].astype(float)
    for c in range(C):
        Wc = W.isel(chain=c)
        mean = Wc.mean("draw").values
        lo, hi = Wc.quantile(lo_q, "draw").values, Wc.quantile(hi_q, "draw").values
        yc = y + (c - (C - 1) / 2) * 0.8 / max(C, 1)
        ax.hlines(yc, lo, hi, color=f"C{c}", lw=2)
        inside = P.values >= threshold
        ax.scatter(mean[inside], yc[inside], color=f"C{c}", zorder=3,
                   label=f"chain {c}" if C > 1 else None)
        ax.scatter(mean[~inside], yc[~inside], facecolor="white", edgecolor=f"C{c}", zorder=3)
    ax.axvline(0, color="0.5", lw=0.8, ls=":")
    ax.set_yticks(y, [f"{f} (p*={p:.2f})" for f, p in zip(feats, P.values)])
    ax.set_xlabel(f"W[:, {name}] (dot: mean, bar: central {prob:.0%} interval)")
    ax.set_title(f"Loadings of {name}; filled: p* >= {threshold}")
    if C > 1:
        ax.legend(fontsize=7)
    return fig


def plot_loss(dt_or_history, start: int = 0):
    """Training loss trace (mean negative ELBO per epoch), one line per chain.

    Parameters
    ----------
    dt_or_history : xarray.DataTree or array-like, shape (epochs,) or (chains, epochs)
        A DataTree with ``sample_stats/loss``, or ``loss_history_``.
    start : int
        First epoch shown (the first epochs often dwarf the rest).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if hasattr(dt_or_history, "children"):
        loss = np.atleast_2d(_group(dt_or_history, "sample_stats")["loss"].values)
    else:
        loss = np.atleast_2d(np.asarray(dt_or_history, float))
    if loss.ndim != 2 or loss.shape[1] == 0:
        raise ValueError(f"the loss history must have shape (epochs,) or (chains, epochs), "
                         f"got {loss.shape}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or \
            not 0 <= start < loss.shape[1]:
        raise ValueError(f"start must be an epoch index in [0, {loss.shape[1]}), got {start!r}")
    fig = _figure((5.5, 3.2))
    ax = fig.add_subplot()
    epochs = np.arange(loss.shape[1])
    for c, row in enumerate(loss):
        ax.plot(epochs[start:], row[start:], color=f"C{c}", lw=1.2,
                label=f"chain {c}" if len(loss) > 1 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (negative ELBO)")
    if len(loss) > 1:
        ax.legend(fontsize=7)
    return fig


def plot_ppc(dt, features=None, n_replicates: int = 50, bins: int = 40):
    """Posterior predictive check: observed distribution of each feature against replicates.

    Parameters
    ----------
    dt : xarray.DataTree
        From ``to_arviz(model, X=X, posterior_predictive=True)``.
    features : sequence of str, optional
        Features to show (default: up to the first 6).
    n_replicates : int
        Replicated data sets drawn (thin lines).
    bins : int
        Histogram bins.

    Returns
    -------
    matplotlib.figure.Figure
    """
    pp = _group(dt, "posterior_predictive")["x"]
    obs = _group(dt, "observed_data")["x"]
    names = [str(f) for f in obs["feature"].values]
    feats = [str(f) for f in _select_features(obs, features)["feature"].values] \
        if features is not None else names[:6]
    if isinstance(n_replicates, bool) or not isinstance(n_replicates, (int, np.integer)) \
            or n_replicates < 1:
        raise ValueError(f"n_replicates must be an integer >= 1, got {n_replicates!r}")
    fig = _figure((2.6 * len(feats), 2.6))
    axes = fig.subplots(1, len(feats), squeeze=False)[0]
    reps = pp.stack(sample=("chain", "draw"))
    n = min(int(n_replicates), reps.sizes["sample"])
    for ax, f in zip(axes, feats):
        o = obs.sel(feature=f).values
        r = reps.sel(feature=f).values  # (obs_id, samples)
        edges = np.histogram_bin_edges(np.concatenate([o, r[:, :n].ravel()]), bins=bins)
        mid = (edges[:-1] + edges[1:]) / 2
        for i in range(n):
            ax.plot(mid, np.histogram(r[:, i], edges, density=True)[0], color="C0",
                    alpha=0.15, lw=0.8)
        ax.plot(mid, np.histogram(o, edges, density=True)[0], color="k", lw=1.5)
        ax.set_title(f)
        ax.set_yticks([])
    axes[0].set_ylabel("density (black: observed,\nblue: replicates)")
    return fig


def plot_k_selection(table):
    """Held-out log-likelihood per row against K, with the factors each fit uses.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`pyro_sparse.select_n_factors`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    need = ("n_factors", "heldout_loglik", "heldout_elbo", "recommended", "used_factors")
    cols = getattr(table, "columns", None)
    if cols is None or any(c not in cols for c in need) or len(table) == 0:
        raise ValueError("table must be the non-empty DataFrame of select_n_factors, with "
                         f"columns {', '.join(need)}")
    fig = _figure((5.5, 3.4))
    ax = fig.add_subplot()
    k = table["n_factors"].to_numpy()
    ax.plot(k, table["heldout_loglik"], "o-", color="C0", label="held-out log-lik / row")
    ax.plot(k, table["heldout_elbo"], "s--", color="C0", alpha=0.5,
            label="held-out ELBO / row")
    rec = table.loc[table["recommended"], "n_factors"]
    for kr in rec:
        ax.axvline(kr, color="C3", ls=":", label=f"recommended K = {kr}")
    ax.set_xlabel("K (factors fitted)")
    ax.set_ylabel("nats per row")
    ax2 = ax.twinx()
    ax2.bar(k, table["used_factors"], alpha=0.2, color="C2", width=0.4)
    ax2.set_ylabel("factors used (non-empty support)", color="C2")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xticks(k)
    return fig

