"""Matplotlib figures of fitted models; every function returns a Figure and never shows it.

Loadings heatmaps with inclusion probabilities, and anchor curves (a feature against its
matched factor with the decoder's curve, as the paper's Figure 2).
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_loadings", "plot_anchor_curves"]


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


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
    G, K = W.shape
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
    Z = estimator.transform(Xa)
    n = len(features)
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
