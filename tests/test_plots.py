import numpy as np
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
