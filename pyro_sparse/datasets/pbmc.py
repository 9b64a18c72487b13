"""scanpy's ``pbmc68k_reduced`` (700 blood cells x 765 genes) with its raw counts recovered.

The file ships inside the scanpy wheel, so it works offline; ``.raw`` holds
``log1p(counts / size_factor)``, and the counts are recovered exactly (up to float32
rounding) by scaling each cell so that its smallest non-zero value is one count.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pbmc68k_counts", "PBMC_MARKERS"]

#: marker genes of the annotated cell types that are present among the 765 genes
PBMC_MARKERS = {
    "B cells": ["CD79A", "MS4A1"],
    "NK / cytotoxic": ["NKG7", "GNLY"],
    "monocytes": ["LYZ", "S100A8", "FCGR3A"],
    "dendritic": ["FCER1A", "CST3"],
    "T cells": ["CD3E", "IL7R", "CCR7", "CD8A"],
}


def pbmc68k_counts():
    """Load ``pbmc68k_reduced`` as an AnnData of integer counts.

    Returns
    -------
    anndata.AnnData
        700 cells x 765 genes; ``X`` and ``layers["counts"]`` hold the counts (scipy CSR,
        float32); ``obs`` keeps ``bulk_labels`` (10 annotated cell types), ``louvain`` and
        ``n_counts`` (the cell's total over all genes before selection).

    Raises
    ------
    ImportError
        Without scanpy (``pip install 'pyro-sparse[pbmc]'``).
    ValueError
        If the recovered values are not integers (a changed file).
    """
    try:
        import scanpy as sc
    except ImportError:
        raise ImportError("pbmc68k_counts needs scanpy, which ships the data: "
                          "pip install 'pyro-sparse[pbmc]'") from None
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    src = sc.datasets.pbmc68k_reduced()
    raw = src.raw.X
    E = np.expm1(np.asarray(raw.toarray() if sp.issparse(raw) else raw, dtype=np.float64))
    unit = np.array([row[row > 0].min() if (row > 0).any() else 1.0 for row in E])
    C = E / unit[:, None]
    dev = float(np.abs(C - np.round(C)).max())
    if dev > 0.25:
        raise ValueError(f"pbmc68k_reduced: the recovered counts are not integers (largest "
                         f"deviation {dev:.3f}); the file shipped with scanpy has changed")
    counts = sp.csr_matrix(np.round(C).astype(np.float32))
    obs = src.obs[["bulk_labels", "louvain", "n_counts"]].copy()
    out = anndata.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=list(src.raw.var_names)))
    out.layers["counts"] = counts.copy()
    return out
