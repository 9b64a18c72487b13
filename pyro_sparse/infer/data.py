"""Rows of the data on the training device: dense tensors, or scipy sparse matrices that are
densified one minibatch at a time (never the whole matrix).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SparseRows", "as_rows", "row_batches"]


class SparseRows:
    """A scipy CSR matrix that hands out dense float32 rows on ``device``.

    Indexing with a tensor or array of row indices, or with a slice, returns a dense
    ``(B, G)`` tensor; only those rows are densified.

    Parameters
    ----------
    csr : scipy.sparse.csr_matrix, shape (N, G)
    device : torch.device
    """

    def __init__(self, csr, device):
        self.csr = csr
        self.shape = csr.shape
        self.device = torch.device(device)

    def __getitem__(self, idx):
        if isinstance(idx, torch.Tensor):
            idx = idx.cpu().numpy()
        block = self.csr[idx].toarray().astype(np.float32, copy=False)
        return torch.from_numpy(block).to(self.device)

    def __len__(self):
        return self.shape[0]


def as_rows(x_ng, device):
    """Dense ``x_ng`` as a float32 tensor on ``device``; sparse as :class:`SparseRows`."""
    if hasattr(x_ng, "tocsr"):
        return SparseRows(x_ng.tocsr(), device)
    return torch.as_tensor(np.asarray(x_ng), dtype=torch.float32, device=device)


def row_batches(x_ng, batch_size: int):
    """Yield consecutive row blocks of ``x_ng`` (dense or sparse) as float32 CPU tensors."""
    rows = as_rows(x_ng, "cpu")
    for s in range(0, x_ng.shape[0], batch_size):
        yield rows[s:s + batch_size]
