"""Reading user data (arrays, DataFrames, AnnData, CSV/TSV/npy/npz/h5ad files), writing results,
and saving / loading fitted models (safetensors + JSON; loading never unpickles).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "as_data_matrix",
    "column_stats",
    "DataFile",
    "read_data",
    "write_csv",
    "write_to_anndata",
    "usual_permissions",
    "ANNDATA_HINT",
    "save_model_folder",
    "load_model_folder",
    "is_model_config",
    "MODEL_FORMAT",
]

ANNDATA_HINT = "install the extra: pip install 'pyro-sparse[anndata]'"
DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".npy", ".npz", ".h5ad")

MODEL_FORMAT = "pyro_sparse.model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


def _is_numeric_dtype(dt) -> bool:
    try:
        return bool(np.issubdtype(np.dtype(dt), np.number) or np.dtype(dt) == bool)
    except TypeError:  # pandas extension dtypes (string, category, ...)
        return bool(getattr(dt, "_is_numeric", False))


def _is_anndata(X) -> bool:
    return type(X).__name__ == "AnnData" and type(X).__module__.startswith("anndata")


def _from_anndata(adata, layer, what):
    if layer is None:
        mat = adata.X
    else:
        if layer not in adata.layers:
            have = ", ".join(map(repr, adata.layers.keys())) or "none"
            raise ValueError(f"{what} has no layer {layer!r} (layers: {have})")
        mat = adata.layers[layer]
    if mat is None:
        raise ValueError(f"{what}.X is empty (None); choose a layer with layer=...")
    return mat, [str(v) for v in adata.var_names]


def as_data_matrix(X, what: str = "X", layer: str | None = None):
    """Convert numpy / torch / pandas / AnnData / scipy.sparse / nested-list data to an array.

    Parameters
    ----------
    X : array-like, torch.Tensor, pandas.DataFrame, anndata.AnnData, scipy.sparse matrix
        or DataFile
        Shape (N, G). NaN marks a missing entry.
    what : str
        Argument name for messages.
    layer : str, optional
        With an AnnData, the layer to read instead of ``X``.

    Returns
    -------
    x_ng : numpy.ndarray of float64, or scipy.sparse.csr_matrix of float32
        Sparse input stays sparse (models densify it one minibatch at a time).
    feature_names : list of str or None
        Column names of a DataFrame or ``var_names`` of an AnnData, else None.

    Raises
    ------
    TypeError
        When X is not numeric or not array-like, or ``layer`` is given without an AnnData.
    """
    import scipy.sparse as sp

    names = None
    if isinstance(X, DataFile):
        X, names = X.X, X.feature_names
    if _is_anndata(X):
        X, names = _from_anndata(X, layer, what)
    elif layer is not None:
        raise TypeError(f"layer={layer!r} needs an AnnData, got {type(X).__name__}")
    if sp.issparse(X):
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise TypeError(f"{what} must be numeric, got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"{what} must be 2-dimensional, got shape {X.shape}")
        return sp.csr_matrix(X, dtype=np.float32), names
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        names = [str(c) for c in X.columns]
        bad = [c for c, dt in zip(X.columns, X.dtypes) if not _is_numeric_dtype(dt)]
        if bad:
            raise TypeError(f"{what} has non-numeric column(s): {', '.join(map(str, bad[:5]))}")
        arr = np.array(X.to_numpy(dtype=np.float64, na_value=np.nan))
    elif isinstance(X, torch.Tensor):
        arr = X.detach().cpu().double().numpy()
    elif isinstance(X, (str, bytes, dict)) or X is None:
        raise TypeError(f"{what} must be a numpy array, torch tensor or pandas DataFrame, "
                        f"got {type(X).__name__}")
    else:
        try:
            arr = np.asarray(X)
        except Exception as e:  # ragged lists and the like
            raise TypeError(f"{what} could not be read as a 2-D numeric array: {e}") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                       or arr.dtype == bool):
            raise TypeError(f"{what} must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        hint = ""
        if arr.ndim == 1:  # one row (or a pandas Series) passed on its own
            hint = ("; for a single row pass X.reshape(1, -1) (a pandas Series: "
                    "s.to_frame().T)")
        raise ValueError(f"{what} must be 2-dimensional (samples x features), got shape "
                         f"{arr.shape}{hint}")
    return arr, names


def column_stats(x_ng) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation of the observed (non-NaN) entries.

    Parameters
    ----------
    x_ng : numpy.ndarray or scipy.sparse matrix, shape (N, G)

    Returns
    -------
    mean_g, sd_g : numpy.ndarray, shape (G,)
    """
    if hasattr(x_ng, "tocoo"):
        coo = x_ng.tocoo()
        nan = np.isnan(coo.data)
        vals = np.where(nan, 0.0, coo.data).astype(np.float64)
        n_obs = x_ng.shape[0] - np.bincount(coo.col[nan], minlength=x_ng.shape[1])
        s1 = np.bincount(coo.col, vals, minlength=x_ng.shape[1])
        s2 = np.bincount(coo.col, vals ** 2, minlength=x_ng.shape[1])
        mean = s1 / np.maximum(n_obs, 1)
        var = np.maximum(s2 / np.maximum(n_obs, 1) - mean ** 2, 0.0)
        return mean, np.sqrt(var)
    with np.errstate(all="ignore"):
        return np.nanmean(x_ng, 0), np.nanstd(x_ng, 0)


# --------------------------------------------------------------------------- files
@dataclass
class DataFile:
    """A data matrix read from a file.

    Attributes
    ----------
    X : numpy.ndarray (N, G) or scipy.sparse.csr_matrix
        The values; NaN marks a missing entry.
    feature_names : list of str or None
    sample_ids : list of str or None
    path : pathlib.Path
    """

    X: object
    feature_names: list | None
    sample_ids: list | None
    path: Path

    def rows(self, idx) -> DataFile:
        """The rows ``idx`` (an integer array) as a new DataFile."""
        ids = None if self.sample_ids is None else [self.sample_ids[i] for i in idx]
        return DataFile(self.X[idx], self.feature_names, ids, self.path)

    def frame(self):
        """The data as a pandas DataFrame (densified), indexed by the sample ids."""
        import pandas as pd

        X = self.X.toarray() if hasattr(self.X, "toarray") else self.X
        return pd.DataFrame(X, index=self.sample_ids, columns=self.feature_names)


_NA = ["", "NA", "NaN", "nan", "N/A", "NULL", "null"]


def _as_number(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def _check_shape(path: Path, sep: str) -> tuple[list, int]:
    """Header fields and number of data rows; raise on a ragged row (naming its line)."""
    header, n_rows = None, 0
    with open(path, "rb") as fh:
        raw = fh.read(1 << 16)
    quoted = b'"' in raw or b"'" in raw
    if quoted or b"\r" in raw:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=sep)
            for fields in reader:
                if not fields or all(not f.strip() for f in fields):
                    continue  # blank line
                if header is None:
                    header = fields
                    continue
                n_rows += 1
                if len(fields) != len(header):
                    raise ValueError(f"{path}: line {reader.line_num} has {len(fields)} fields "
                                     f"but the header has {len(header)} (ragged row)")
        return header, n_rows
    bsep = sep.encode()
    with open(path, "rb") as fh:  # fast path: no quoting, count separators per line
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if header is None:
                text = line.decode("utf-8-sig").rstrip("\n")
                header = next(csv.reader([text], delimiter=sep))
                continue
            n_rows += 1
            n = line.count(bsep) + 1
            if n != len(header):
                raise ValueError(f"{path}: line {line_no} has {n} fields but the header has "
                                 f"{len(header)} (ragged row)")
    return header, n_rows


def _first_non_numeric(col):
    import pandas as pd

    text = col.astype(str).str.strip()
    na = col.isna() | text.isin(_NA)
    bad = (pd.to_numeric(text.where(~na), errors="coerce").isna() & ~na).to_numpy()
    if not bad.any():
        return None
    r = int(np.argmax(bad))
    return r, text.iloc[r]


def _read_table(path: Path, sep: str) -> DataFile:
    import pandas as pd

    header, n_rows = _check_shape(path, sep)
    if header is None:
        raise ValueError(f"{path} is empty")
    if n_rows == 0:
        raise ValueError(f"{path} has a header row but no data rows")
    names = [h.strip() for h in header]
    if all(_as_number(h) is not None for h in names if h):
        raise ValueError(f"{path}: the first row ({', '.join(names[:3])}, ...) looks like data;"
                         " the first row must be a header of feature names")
    seen = {}
    for i, h in enumerate(names):
        if h in seen and (i > 0 or h):
            raise ValueError(f"{path}: column {i} repeats the name {h!r} of column {seen[h]}; "
                             "feature names must be unique")
        seen.setdefault(h, i)
    # the C parser infers float columns; only columns that fail are inspected cell by cell
    df = pd.read_csv(path, sep=sep, header=0, keep_default_na=False, na_values=_NA,
                     skip_blank_lines=True, encoding="utf-8-sig", low_memory=False)
    df.columns = names
    ids = None
    first = df.iloc[:, 0]
    text = first.astype(str).str.strip()
    unnamed = names[0] == ""  # how pandas writes an index: an empty header cell
    if df.shape[1] > 1 and not first.isna().any() and (
            unnamed or (not pd.api.types.is_numeric_dtype(first.dtype)
                        and pd.to_numeric(text, errors="coerce").isna().all())):
        ids = list(text)  # sample ids: an unnamed first column, or one without numbers
        if len(set(ids)) != len(ids):
            dup = text[text.duplicated()].iloc[0]
            raise ValueError(f"{path}: sample id {dup!r} in column 0 ({names[0]!r}) "
                             "appears more than once")
        df, names = df.iloc[:, 1:], names[1:]
    values = np.empty(df.shape, dtype=np.float64)
    for j in range(df.shape[1]):
        col = df.iloc[:, j]
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col):
            values[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        bad = _first_non_numeric(col) if not pd.api.types.is_bool_dtype(col) else \
            (0, str(col.iloc[0]))
        if bad is not None:
            r, v = bad
            c = j + (1 if ids is not None else 0)
            where = f"row {r}" + (f" ({ids[r]!r})" if ids is not None else "")
            other = [d for d in (";", "\t", ",", "|") if d != sep and d in header[0]]
            hint = "" if len(header) > 1 or not other else (
                f"; the header is one column that contains {other[0]!r}, but this file type "
                f"is split on {sep!r} (.csv: comma, .tsv / .txt: tab): save it with that "
                "separator or rename it")
            raise ValueError(f"{path}: non-numeric value {v!r} at {where}, column {c} "
                             f"({names[j]!r}){hint}")
        text = col.astype(str).str.strip()
        values[:, j] = pd.to_numeric(text.where(~(col.isna() | text.isin(_NA))),
                                     errors="coerce").to_numpy(dtype=np.float64,
                                                               na_value=np.nan)
    return DataFile(values, names, ids, path)


def read_data(path, layer: str | None = None) -> DataFile:
    """Read a data matrix from ``.csv``, ``.tsv`` / ``.txt`` (tab), ``.npy``, ``.npz``, ``.h5ad``.

    Text files need a header row of feature names; a first column without a single number,
    or with an empty header cell (how pandas writes an index), holds sample ids. Empty cells
    and ``NA`` / ``NaN`` are missing values.
    ``.npz`` files hold the matrix under the key ``X`` (optionally ``feature_names`` and
    ``sample_ids``); ``.h5ad`` needs the ``anndata`` extra and keeps sparse matrices sparse.

    Parameters
    ----------
    path : str or pathlib.Path
    layer : str, optional
        AnnData layer to read instead of ``X`` (``.h5ad`` only).

    Returns
    -------
    DataFile

    Raises
    ------
    ValueError
        Naming the file (and the line, row or column) when it is missing, empty, header-only,
        ragged, holds a non-numeric cell, a pickled object array, or has an unknown suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    if suffix not in DATA_SUFFIXES:
        raise ValueError(f"{path}: unknown data format {suffix or '(no suffix)'!r}; use one of "
                         f"{', '.join(DATA_SUFFIXES)}")
    if layer is not None and suffix != ".h5ad":
        raise ValueError(f"{path}: layer={layer!r} applies to .h5ad files only")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty")
    if suffix in (".csv", ".tsv", ".txt"):
        return _read_table(path, "," if suffix == ".csv" else "\t")
    if suffix == ".h5ad":
        try:
            import anndata
        except ImportError:
            raise ValueError(f"{path}: reading .h5ad needs anndata; {ANNDATA_HINT}") from None
        try:
            adata = anndata.read_h5ad(path)
        except Exception as e:  # h5py / anndata raise many types for a bad file
            raise ValueError(f"{path} could not be read as an .h5ad file: {e}") from None
        X, names = as_data_matrix(adata, str(path), layer)
        return DataFile(X, names, [str(v) for v in adata.obs_names], path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ValueError(f"{path} holds pickled objects, which are never loaded; save a "
                             "numeric array") from None
        raise ValueError(f"{path} could not be read: {e}") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path} could not be read: {e}") from None
    names = ids = None
    if suffix == ".npz":
        with loaded:
            if "X" not in loaded.files:
                raise ValueError(f"{path} has no array named 'X' (found: "
                                 f"{', '.join(loaded.files) or 'none'})")
            try:
                arr = loaded["X"]
                names = [str(v) for v in loaded["feature_names"]] \
                    if "feature_names" in loaded.files else None
                ids = [str(v) for v in loaded["sample_ids"]] \
                    if "sample_ids" in loaded.files else None
            except ValueError as e:
                raise ValueError(f"{path}: {e} (pickled arrays are never loaded)") from None
    else:
        arr = loaded
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{path} must hold a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{path} must hold a 2-dimensional array (samples x features), got "
                         f"shape {arr.shape}")
    if names is not None and len(names) != arr.shape[1]:
        raise ValueError(f"{path}: {len(names)} feature_names for {arr.shape[1]} columns")
    if ids is not None and len(ids) != arr.shape[0]:
        raise ValueError(f"{path}: {len(ids)} sample_ids for {arr.shape[0]} rows")
    return DataFile(arr.astype(np.float64), names, ids, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def usual_permissions(path) -> None:
    """Give a file (0666) or folder (0777) made by ``tempfile`` the usual umask permissions.

    ``tempfile`` creates private files (0600 / 0700); results renamed into place should look
    like any other file the user writes.
    """
    path = Path(path)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())


def _atomic_write(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        usual_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(path, values, index, columns, index_label: str) -> Path:
    """Write a table atomically (temporary file beside ``path``, then rename).

    Floats are written with 9 significant digits (exact for float32), so the same values give
    byte-identical files.
    """
    import pandas as pd

    df = pd.DataFrame(np.asarray(values), index=list(index), columns=list(columns))
    df.index.name = index_label
    return _atomic_write(Path(path), lambda tmp: df.to_csv(tmp, float_format="%.9g"))


def write_to_anndata(model, adata, layer: str | None = None, key: str | None = None,
                     batch_size: int = 4096):
    """Store a fitted model's factors and loadings in an AnnData, in place.

    Writes ``obsm["X_<key>"]`` (encoder means, cells x factors) and, for models with loadings,
    ``varm["<key>_loadings"]`` and ``varm["<key>_inclusion"]`` (genes x factors) and
    ``uns["<key>"]`` (``eta``, the factor names and the estimator's parameters). Everything
    is computed before anything is written, so an error leaves ``adata`` unchanged.

    Parameters
    ----------
    model : SparseVAE or VAE
        Fitted on data with the same features as ``adata``.
    adata : anndata.AnnData
    layer : str, optional
        Layer to encode instead of ``X``.
    key : str, optional
        Default ``"sparse_vae"`` for models with loadings, else ``"vae"``.
    batch_size : int
        Rows encoded at a time (sparse matrices are densified one batch at a time).

    Returns
    -------
    anndata.AnnData
        ``adata`` itself.
    """
    if not _is_anndata(adata):
        raise TypeError(f"adata must be an anndata.AnnData, got {type(adata).__name__}")
    has_W = hasattr(model, "loadings_")
    key = key or ("sparse_vae" if has_W else "vae")
    z = model.transform(adata, layer=layer, batch_size=batch_size)
    factors = [f"factor_{k}" for k in range(z.shape[1])]
    varm, uns = {}, dict(factors=factors,
                         params=json.dumps(model.get_params(), sort_keys=True))
    if has_W:
        varm[f"{key}_loadings"] = np.asarray(model.loadings_, dtype=np.float32)
        varm[f"{key}_inclusion"] = np.asarray(model.inclusion_probs_, dtype=np.float32)
        uns["eta"] = np.asarray(model.eta_, dtype=np.float64)
    adata.obsm[f"X_{key}"] = z
    for k, v in varm.items():
        adata.varm[k] = v
    adata.uns[key] = uns
    return adata


def is_model_config(path) -> bool:
    """Whether the file ``path`` is a readable pyro_sparse model config (our format marker).

    Parameters
    ----------
    path : str or pathlib.Path
        A ``config.json`` inside a model folder.
    """
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and cfg.get("format") == MODEL_FORMAT


def _check_replaceable(path: Path) -> None:
    # only an empty folder or one of our model folders (our two files, our format marker) may
    # be replaced: anything else in it would be deleted with it
    refuse = f"{path} exists and is not a pyro_sparse model folder; refusing to overwrite it"
    if not path.is_dir():
        raise ValueError(refuse)
    entries = set(os.listdir(path))
    if not entries:
        return
    other = sorted(entries - {CONFIG_FILE, WEIGHTS_FILE})
    if other:
        raise ValueError(f"{refuse} (it holds {', '.join(other[:5])}"
                         f"{' ...' if len(other) > 5 else ''}, which saving would delete)")
    if not is_model_config(path / CONFIG_FILE):
        raise ValueError(f"{refuse} (its {CONFIG_FILE} is not a pyro_sparse model config)")


def save_model_folder(path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``config.json`` and ``weights.safetensors`` into folder ``path`` atomically.

    The folder is written beside its destination and renamed at the end, so a failure leaves
    nothing half-written. An existing model folder at ``path`` (our two files, our format
    marker) or an empty folder is replaced; any other folder or file raises a ValueError.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists():
        _check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    usual_permissions(tmp)
    try:
        cfg = dict(format=MODEL_FORMAT, format_version=FORMAT_VERSION, **config)
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True))
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  str(tmp / WEIGHTS_FILE))
        if path.exists():
            # move the previous model aside under a fresh name, then swap in the new one
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_model_folder(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a model folder written by :func:`save_model_folder`.

    Raises
    ------
    ValueError
        When the folder is missing, is not a pyro_sparse model, or its files are corrupt.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise ValueError(f"model folder {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder; a saved model is a folder holding "
                         f"{CONFIG_FILE} and {WEIGHTS_FILE}")
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    for f in (cfg_file, w_file):
        if not f.is_file():
            raise ValueError(f"{path} is not a pyro_sparse model folder: {f.name} is missing")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_file} is corrupt (not valid JSON: {e})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != MODEL_FORMAT:
        raise ValueError(f"{cfg_file} is not a pyro_sparse model config (format marker "
                         f"{MODEL_FORMAT!r} missing)")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{cfg_file}: unsupported format_version {cfg.get('format_version')!r}"
                         f" (this pyro_sparse reads {FORMAT_VERSION})")
    try:
        tensors = load_file(str(w_file))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{w_file} is corrupt or not a safetensors file: {e}") from None
    return cfg, tensors
