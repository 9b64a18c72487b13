"""Non-amortised Normal guide for z: one free mean and sd per row of the training data.

``PerRowNormalGuide`` holds q(z_n) = N(m_n, diag s_n^2) for each of the N training rows,
usually started at an encoder's output. It has no amortisation gap (the encoder cannot put
every row's q at that row's own optimum), which is what a semi-amortised refinement of the
global posterior needs (:func:`pyro_sparse.infer.refine_posterior`). It cannot encode new rows.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from ..models._register import register_params

__all__ = ["PerRowNormalGuide"]


class PerRowNormalGuide(torch.nn.Module):
    """Free Normal q(z_n) per training row for the ``z`` site (plate ``data``).

    Parameters
    ----------
    loc_nk : torch.Tensor, shape (N, K)
        Starting means (e.g. the encoder's at every training row).
    scale_nk : torch.Tensor, shape (N, K)
        Starting sds (positive).

    Notes
    -----
    The guide is called with the row indices ``idx`` of each minibatch (as
    :func:`~pyro_sparse.infer.fit_svi` and :func:`~pyro_sparse.infer.full_data_loss` do);
    without them a batch must hold all N rows in order.
    """

    def __init__(self, loc_nk: torch.Tensor, scale_nk: torch.Tensor):
        super().__init__()
        loc_nk = torch.as_tensor(loc_nk).detach()
        scale_nk = torch.as_tensor(scale_nk).detach()
        if loc_nk.dim() != 2 or loc_nk.shape != scale_nk.shape:
            raise ValueError(f"loc_nk and scale_nk must be (N, K) matrices of one shape, got "
                             f"{tuple(loc_nk.shape)} and {tuple(scale_nk.shape)}")
        if not bool((scale_nk > 0).all()):
            raise ValueError("scale_nk must be positive everywhere")
        self.loc_nk = torch.nn.Parameter(loc_nk.clone())
        self.log_scale_nk = torch.nn.Parameter(scale_nk.log())

    @property
    def n_rows(self) -> int:
        """N, the rows this guide holds."""
        return self.loc_nk.shape[0]

    def forward(self, x_bg, n_data=None, idx=None, kl_weight=1.0, prior_weight=1.0,
                n_samples=None):
        """Sample ``z`` for the rows ``idx`` of the training data (arguments as the model's)."""
        register_params("z_rows_guide", self)
        N, B = self.n_rows, x_bg.shape[0]
        if n_data is not None and n_data != N:
            raise ValueError(f"this guide holds {N} rows, the data has {n_data}")
        if idx is None:
            if B != N:
                raise ValueError(f"a batch of {B} rows needs their row indices (idx); this "
                                 f"guide holds {N} rows")
            idx = torch.arange(N, device=self.loc_nk.device)
        loc, scale = self.loc_nk[idx], self.log_scale_nk[idx].exp()
        with pyro.plate("data", size=N, subsample=idx, dim=-1):
            with poutine.scale(scale=kl_weight):
                return pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def second_moments(self, x_ng=None, batch_size: int = 1024) -> tuple[torch.Tensor, int]:
        """``S_k = sum_n E_q[z_nk^2]`` over the N rows, and N (``x_ng`` is not needed)."""
        if x_ng is not None and x_ng.shape[0] != self.n_rows:
            raise ValueError(f"this guide holds {self.n_rows} rows, x_ng has {x_ng.shape[0]}")
        with torch.no_grad():
            S = (self.loc_nk.double() ** 2 + (2 * self.log_scale_nk.double()).exp()).sum(0)
        return S, self.n_rows

    def scale_factors(self, c_k) -> None:
        """Multiply every row's mean and sd of ``z_k`` by ``c_k[k]``."""
        with torch.no_grad():
            c = torch.as_tensor(c_k).to(self.loc_nk)
            self.loc_nk.mul_(c)
            self.log_scale_nk.add_(c.log())
