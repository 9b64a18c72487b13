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
