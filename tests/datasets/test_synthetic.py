import numpy as np
import pytest

from pyro_sparse.datasets import PAPER_SUPPORT, paper_synthetic, sparse_counts


def test_shapes_truth_and_determinism():
    d = paper_synthetic(n=500, rho=0.4, seed=0)
    assert d.X.shape == (500, 7) and d.Z.shape == (500, 2) and d.support.shape == (7, 2)
    np.testing.assert_array_equal(d.support, PAPER_SUPPORT)
    np.testing.assert_array_equal(d.X, paper_synthetic(n=500, rho=0.4, seed=0).X)
    assert not np.array_equal(d.X, paper_synthetic(n=500, rho=0.4, seed=1).X)


def test_generating_functions_and_correlation():
    d = paper_synthetic(n=20000, rho=0.6, seed=3, noise_sd=0.0)
    z1, z2 = d.Z.T
    np.testing.assert_allclose(d.X[:, 2], 3 * z1**2, rtol=1e-5)
    np.testing.assert_allclose(d.X[:, 6], 7 * z1 * z2, rtol=1e-4, atol=1e-5)
    assert np.corrcoef(z1, z2)[0, 1] == pytest.approx(0.6, abs=0.02)


def test_split_and_errors():
    tr, te = paper_synthetic(n=100, seed=0).split(0.3, seed=1)
    assert tr.X.shape[0] == 70 and te.X.shape[0] == 30
    with pytest.raises(ValueError, match="rho"):
        paper_synthetic(rho=1.0)


def test_sparse_counts_support_and_row_totals():
    import pyro_sparse as ps

    d = ps.datasets.sparse_counts(n=400, n_factors=3, anchors_per_factor=4, n_shared=2, seed=1)
    assert d.X.shape == (400, 14) and d.support.shape == (14, 3)
    assert (d.support.sum(1)[:12] == 1).all() and (d.support.sum(1)[12:] == 2).all()
    assert (d.X >= 0).all() and (d.X == np.round(d.X)).all()
    # row totals depend on the factors: the premise of the library-size benchmark
    assert abs(np.corrcoef(d.Z[:, 0], np.log1p(d.X.sum(1)))[0, 1]) > 0.1


def test_pbmc_counts_are_integers_with_labels():
    pytest.importorskip("scanpy")
    import pyro_sparse as ps

    a = ps.datasets.pbmc68k_counts()
    assert a.shape == (700, 765) and "bulk_labels" in a.obs
    X = a.X.toarray()
    assert (X == np.round(X)).all() and (X.sum(1) > 0).all()
    for genes in ps.datasets.PBMC_MARKERS.values():
        assert all(g in a.var_names for g in genes)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: paper_synthetic(n=0), ValueError, "n must be >= 1, got 0"),
    (lambda: paper_synthetic(n=10.5), TypeError, "n must be an integer, got float 10.5"),
    (lambda: paper_synthetic(n=10, seed="a"), TypeError, "seed must be an integer, got str"),
    (lambda: sparse_counts(n=10, n_factors=0), ValueError, "n_factors must be >= 1"),
    (lambda: sparse_counts(n=10, n_shared=-1), ValueError, "n_shared must be >= 0"),
    (lambda: sparse_counts(n=10, anchors_per_factor=True), TypeError, "anchors_per_factor"),
])
def test_generator_arguments_are_checked(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_numpy_integers_are_accepted():
    assert paper_synthetic(n=np.int64(5), seed=np.int32(1)).X.shape == (5, 7)
