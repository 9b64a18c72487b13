"""Reading data files and AnnData objects, writing results."""

import sys

import numpy as np
import pytest
import scipy.sparse as sp

import pyro_sparse as ps
from pyro_sparse.io import read_data, write_csv


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_with_sample_ids_and_missing_values(tmp_path):
    p = _write(tmp_path, "d.csv", "cell,g1,g2\nc1,1,2\nc2,,3.5\nc3,NA,4\n")
    d = read_data(p)
    assert d.sample_ids == ["c1", "c2", "c3"] and d.feature_names == ["g1", "g2"]
    np.testing.assert_array_equal(np.isnan(d.X), [[0, 0], [1, 0], [1, 0]])
    d = read_data(_write(tmp_path, "d.tsv", "g1\tg2\n1\t2\n3\t4\n"))
    assert d.sample_ids is None and d.X.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("text,match", [
    ("", "is empty"),
    ("a,b,c\n", "header row but no data rows"),
    ("a,b\n1,2\n3,4,5\n", "line 3 has 3 fields but the header has 2 \\(ragged row\\)"),
    ("a,b\n1,2\n3\n", "line 3 has 1 fields"),
    ("a,b\n1,2\n3,x7\n", "non-numeric value 'x7' at row 1, column 1 \\('b'\\)"),
    ("id,a,b\ns1,1,2\ns2,3,oops\n", "non-numeric value 'oops' at row 1 \\('s2'\\), column 2"),
    ("1.5,2\n1,2\n", "looks like data"),
    ("a,a\n1,2\n", "column 1 repeats the name 'a'"),
    ("id,a\ns1,1\ns1,2\n", "sample id 's1' .* more than once"),
    ("a,b\n1,True\n2,False\n", "non-numeric value 'True' at row 0, column 1"),
    ('"x, y",b\n1,2\n3,4,5\n', "line 3 has 3 fields"),  # quoted header: the csv path
    ("a;b\n1;2\n", "non-numeric value '1;2' .*; the header is one column that contains "
                   "';', but this file type is split on ','"),
])
def test_bad_text_files_name_the_problem(tmp_path, text, match):
    p = _write(tmp_path, "bad.csv", text)
    with pytest.raises(ValueError, match=match):
        read_data(p)


def test_unnamed_first_column_is_the_index(tmp_path):
    import pandas as pd

    X = np.arange(6.0).reshape(3, 2)
    pd.DataFrame(X, columns=["a", "b"]).to_csv(tmp_path / "p.csv")  # writes ",a,b" + 0,1,2
    d = read_data(tmp_path / "p.csv")
    assert d.feature_names == ["a", "b"] and d.sample_ids == ["0", "1", "2"]
    np.testing.assert_array_equal(d.X, X)


def test_quoted_names_crlf_and_blank_lines(tmp_path):
    p = tmp_path / "q.csv"
    p.write_bytes(b'cell,"gene, one",g2\r\nc1,1,NA\r\n\r\nc2,3,4\r\n')
    d = read_data(p)
    assert d.feature_names == ["gene, one", "g2"] and d.sample_ids == ["c1", "c2"]
    np.testing.assert_array_equal(d.X, [[1, np.nan], [3, 4]])


def test_numpy_files(tmp_path):
    X = np.arange(6.0).reshape(3, 2)
    np.save(tmp_path / "x.npy", X)
    np.testing.assert_array_equal(read_data(tmp_path / "x.npy").X, X)
    np.savez(tmp_path / "x.npz", X=X, feature_names=np.array(["a", "b"]))
    d = read_data(tmp_path / "x.npz")
    assert d.feature_names == ["a", "b"]
    np.savez(tmp_path / "y.npz", Y=X)
    with pytest.raises(ValueError, match="no array named 'X' \\(found: Y\\)"):
        read_data(tmp_path / "y.npz")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled objects, which are never loaded"):
        read_data(tmp_path / "o.npy")
    np.save(tmp_path / "v.npy", np.ones(3))
    with pytest.raises(ValueError, match="2-dimensional"):
        read_data(tmp_path / "v.npy")
    with pytest.raises(ValueError, match="no such file"):
        read_data(tmp_path / "missing.csv")
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(ValueError, match="unknown data format '.xlsx'"):
        read_data(tmp_path / "x.xlsx")


def test_write_csv_is_byte_stable(tmp_path):
    v = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    a = write_csv(tmp_path / "a.csv", v, ["x", "y", "z"], ["f0", "f1"], "feature")
    b = write_csv(tmp_path / "b.csv", v.copy(), ["x", "y", "z"], ["f0", "f1"], "feature")
    assert a.read_bytes() == b.read_bytes()
    back = np.loadtxt(a, delimiter=",", skiprows=1, usecols=(1, 2), dtype=np.float32)
    np.testing.assert_array_equal(back, v)  # 9 digits round-trip float32 exactly


# ------------------------------------------------------------------ AnnData
anndata = pytest.importorskip("anndata")


@pytest.fixture(scope="module")
def adata():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(80, 2))
    counts = rng.poisson(np.exp(0.6 * z[:, [0] * 4 + [1] * 4] + 1.0)).astype(np.float32)
    counts[counts.sum(1) == 0, 0] = 1
    a = anndata.AnnData(X=np.log1p(counts))
    a.layers["counts"] = sp.csr_matrix(counts)
    a.var_names = [f"gene{i}" for i in range(8)]
    a.obs_names = [f"cell{i}" for i in range(80)]
    return a


def test_anndata_layer_fit_transform_reconstruct_and_write(adata):
    m = ps.SparseVAE(n_factors=2, likelihood="negbin", hidden_dim=8)
    m.fit(adata, layer="counts", epochs=2, batch_size=32, progress=False)
    assert m.feature_names_in_ == list(adata.var_names)
    dense = adata.layers["counts"].toarray()
    np.testing.assert_allclose(m.transform(adata, layer="counts"), m.transform(dense),
                               rtol=1e-6)
    assert m.reconstruct(adata, layer="counts").shape == adata.shape
    with pytest.raises(ValueError, match="has no layer 'raw' \\(layers: 'counts'\\)"):
        m.transform(adata, layer="raw")
    with pytest.raises(TypeError, match="layer='counts' needs an AnnData"):
        m.transform(dense, layer="counts")
    a = adata.copy()
    ps.io.write_to_anndata(m, a, layer="counts")
    assert a.obsm["X_sparse_vae"].shape == (80, 2)
    np.testing.assert_array_equal(a.varm["sparse_vae_loadings"], m.loadings_)
    np.testing.assert_array_equal(a.varm["sparse_vae_inclusion"], m.inclusion_probs_)
    np.testing.assert_array_equal(a.uns["sparse_vae"]["eta"], m.eta_)
    # an error (here: the wrong features) leaves the AnnData unchanged
    b = adata[:, :6].copy()
    with pytest.raises(ValueError, match="6 features"):
        ps.io.write_to_anndata(m, b, layer="counts")
    assert "X_sparse_vae" not in b.obsm and "sparse_vae_loadings" not in b.varm


def test_h5ad_round_trip_and_missing_extra(adata, tmp_path, monkeypatch):
    p = tmp_path / "d.h5ad"
    adata.write_h5ad(p)
    d = read_data(p, layer="counts")
    assert sp.issparse(d.X) and d.feature_names == list(adata.var_names)
    assert d.sample_ids == list(adata.obs_names)
    monkeypatch.setitem(sys.modules, "anndata", None)  # as if the extra were not installed
    with pytest.raises(ValueError, match="pip install 'pyro-sparse\\[anndata\\]'"):
        read_data(p)


def test_one_column_whose_name_holds_a_separator_still_reads(tmp_path):
    # the separator hint only comes with a parse error: a valid one-column file reads as is
    d = read_data(_write(tmp_path, "one.csv", "dose;mg\n1.5\n2\n"))
    assert d.feature_names == ["dose;mg"] and d.X.ravel().tolist() == [1.5, 2.0]
