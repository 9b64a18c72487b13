import numpy as np
import pytest
from matplotlib.figure import Figure

import pyro_sparse as ps
from pyro_sparse.plots import plot_anchor_curves, plot_loadings


def test_plots_return_figures_headless(tmp_path):
    d = ps.datasets.paper_synthetic(n=200, seed=0)
    m = ps.SparseVAE(n_factors=3, hidden_dim=8).fit(d.X, epochs=2, progress=False)
    f1 = plot_loadings(m.loadings_, m.inclusion_probs_, d.feature_names)
    f2 = plot_anchor_curves(m, d.X, features=[0, 3], factor_of=[0, 1],
                            feature_names=d.feature_names)
    for f in (f1, f2):
        assert isinstance(f, Figure)
        f.savefig(tmp_path / "x.png")
    assert len(f2.axes) == 2
    assert m.decode(np.zeros((4, 3))).shape == (4, 7)


def test_diagnostic_plots_headless(tmp_path):
    from pyro_sparse.diagnostics import to_arviz
    from pyro_sparse.plots import plot_forest, plot_k_selection, plot_loss, plot_ppc

    d = ps.datasets.paper_synthetic(n=200, seed=0)
    R = ps.fit_restarts(ps.SparseVAE(n_factors=3, hidden_dim=8, w_guide="meanfield"), d.X,
                        n_restarts=2, epochs=3, progress=False)
    dt = to_arviz(R, num_samples=30, X=d.X, posterior_predictive=True, num_predictive=10)
    figs = [plot_forest(dt, 0), plot_forest(dt, "factor_1", features=["feature_0", "feature_1"]),
            plot_loss(dt), plot_loss(R.estimators_[0].loss_history_, start=1),
            plot_ppc(dt, features=["feature_0", "feature_3"], n_replicates=5)]
    table = ps.select_n_factors(ps.VAE(hidden_dim=8), d.X, [1, 2], epochs=2, progress=False)
    figs.append(plot_k_selection(table))
    for i, f in enumerate(figs):
        assert isinstance(f, Figure)
        f.savefig(tmp_path / f"{i}.png")
    assert len(figs[4].axes) == 2
    with pytest.raises(ValueError, match="unknown factor"):
        plot_forest(dt, 9)
    with pytest.raises(ValueError, match="posterior_predictive"):
        plot_ppc(to_arviz(R, num_samples=5, X=d.X))


def test_plot_argument_errors_name_the_argument():
    from pyro_sparse.diagnostics import to_arviz
    from pyro_sparse.plots import plot_forest, plot_k_selection, plot_loss, plot_ppc

    d = ps.datasets.paper_synthetic(n=120, seed=0)
    m = ps.SparseVAE(n_factors=2, hidden_dim=8).fit(d.X, epochs=2, progress=False)
    W, P = m.loadings_, m.inclusion_probs_
    cases = [
        (lambda: plot_loadings(W[:, 0]), r"loadings_gk must be a \(G, K\) matrix"),
        (lambda: plot_loadings(W, P[:3]), r"inclusion_gk has shape \(3, 2\) but loadings_gk"),
        (lambda: plot_loadings(W, feature_names=["a"]), "feature_names has 1 names for 7"),
        (lambda: plot_loadings(W, factor_names=["a", "b", "c"]), "factor_names has 3 names"),
        (lambda: plot_anchor_curves(m, d.X, features=[0, 3], factor_of=[0]),
         "must pair up one to one, got 2 features and 1 factors"),
        (lambda: plot_anchor_curves(m, d.X, features=[7], factor_of=[0]),
         r"features must be column indices in \[0, 7\), got \[7\]"),
        (lambda: plot_anchor_curves(m, d.X, features=[0], factor_of=[2]),
         r"factor_of must be column indices in \[0, 2\), got \[2\]"),
        (lambda: plot_loss(m.loss_history_, start=2), r"start must be an epoch index in \[0, 2\)"),
        (lambda: plot_loss(m.loss_history_, start=-1), "start must be an epoch index"),
        (lambda: plot_loss([]), "loss history must have shape"),
        (lambda: plot_k_selection([]), "non-empty DataFrame of select_n_factors"),
    ]
    dt = to_arviz(m, num_samples=5, X=d.X, posterior_predictive=True, num_predictive=5)
    cases += [
        (lambda: plot_forest(dt, 0, prob=1.5), r"prob must lie in \(0, 1\), got 1.5"),
        (lambda: plot_forest(dt, 0, threshold=0), r"threshold must lie in \(0, 1\)"),
        (lambda: plot_forest(dt, 0, features=["feature_0", "gene_x"]),
         r"unknown feature\(s\) \['gene_x'\]"),
        (lambda: plot_ppc(dt, features=["nope"]), r"unknown feature\(s\) \['nope'\]"),
        (lambda: plot_ppc(dt, n_replicates=0), "n_replicates must be an integer >= 1"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


def test_figures_show_in_a_notebook_without_pyplot():
    """A notebook user who never imports pyplot sees an image, not '<Figure size ...>':
    IPython's display formatter finds a PNG; the figure still pickles (fresh class lookup)."""
    import pickle
    import subprocess
    import sys

    from IPython.core.formatters import DisplayFormatter

    W = np.array([[1.0, 0.0], [0.0, -0.5], [0.3, 0.8]])
    fig = plot_loadings(W, np.array([[0.9, 0.1], [0.2, 0.95], [0.6, 0.7]]))
    assert fig._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")
    data, _ = DisplayFormatter().format(fig)
    assert "image/png" in data
    blob = pickle.dumps(fig)
    assert isinstance(pickle.loads(blob), Figure)
    # in a fresh process the class is looked up before any figure was drawn
    code = ("import pickle, sys; f = pickle.loads(sys.stdin.buffer.read()); "
            "print(type(f).__name__, len(f.axes))")
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         check=True)
    assert out.stdout.decode().split() == ["_NotebookFigure", str(len(fig.axes))]
