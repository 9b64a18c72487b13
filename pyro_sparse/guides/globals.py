"""Guides for the global sites eta, W, sigma (and the factor correlation): MAP and mean-field.

``MAPGlobalGuide`` is the paper's MAP + EM estimator: W and sigma are point estimates, eta is
set by its closed-form M-step from the inclusion probabilities p* after every step.
``MeanFieldGlobalGuide`` puts an independent Normal on every W_gk (means, sds) instead;
``LowRankGlobalGuide`` adds a low-rank covariance that couples the entries of W;
``SpikeSlabGlobalGuide`` gives every W_gk a spike-and-slab posterior of its own (the SSL prior
tilted by a Gaussian), with a closed-form inclusion probability;
``SpikeSlabLowRankGlobalGuide`` keeps those marginals and couples the entries by a Gaussian
copula with a low-rank correlation.
Constrained quantities are stored unconstrained (``log sigma``, ``log sd``, an unconstrained
vector for the correlation Cholesky factor) and transformed on use.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from torch import nn
from torch.distributions import transform_to

from ..distributions import (
    LowRankGaussianCopula,
    TiltedSpikeSlabLasso,
    eta_mstep,
    inclusion_prob,
)
from ..models._plates import full_plate
from ..models._register import register_params

__all__ = ["MAPGlobalGuide", "MeanFieldGlobalGuide", "LowRankGlobalGuide",
           "SpikeSlabGlobalGuide", "SpikeSlabLowRankGlobalGuide", "W_GUIDES"]

W_GUIDES = ("map", "meanfield", "lowrank", "spikeslab", "spikeslab_lowrank")
# numbers of W draws held at once when inclusion probabilities are averaged over draws
INCLUSION_CHUNK = 1 << 22


class _GlobalGuideBase(nn.Module):
    """Common parts: sigma (point estimate), correlation Cholesky factor, eta by M-step."""

    def __init__(self, model):
        super().__init__()
        self.has_W = hasattr(model, "lambda0")
        self.likelihood = model.likelihood
        G, K = model.n_features, model.n_factors
        if self.has_W:
            self.lambda0, self.lambda1 = model.lambda0, model.lambda1
            self.a, self.b, self.pstar = model.a, model.b, model.pstar
            self.register_buffer("eta_k", torch.full((K,), 0.5))
        if self.likelihood == "normal":
            self.log_sigma_g1 = nn.Parameter(torch.zeros(G, 1))
        self.factor_correlation = bool(getattr(model, "factor_correlation", False))
        if self.factor_correlation:
            self.corr_raw = nn.Parameter(torch.zeros(K * (K - 1) // 2))

    def init_sigma(self, col_sd_g: torch.Tensor) -> None:
        """Initialise sigma_g at the column standard deviations (the authors' start)."""
        if self.likelihood == "normal":
            with torch.no_grad():
                self.log_sigma_g1.copy_(col_sd_g.reshape(-1, 1).clamp_min(1e-3).log())

    @property
    def sigma_g1(self) -> torch.Tensor:
        """Point estimate of sigma, shape (G, 1)."""
        return self.log_sigma_g1.exp()

    @property
    def corr_L(self) -> torch.Tensor:
        """Cholesky factor of the factor correlation matrix, shape (K, K)."""
        return transform_to(constraints.corr_cholesky)(self.corr_raw)

    def _eta(self, W_point_gk: torch.Tensor) -> torch.Tensor:
        # EM: E-step p* from the current W and eta, M-step for eta. In training mode the
        # new eta is kept (one EM step per call); in eval mode eta is read only.
        if self.training:
            with torch.no_grad():
                p = inclusion_prob(W_point_gk.detach(), self.eta_k, self.lambda0, self.lambda1,
                                   self.pstar)
                self.eta_k.copy_(eta_mstep(p, self.a, self.b))
        return self.eta_k

    def _sample_rest(self, features=None):
        if self.likelihood == "normal":
            if features is None:
                features = full_plate("features", self.log_sigma_g1.shape[0], -2)
            with features:
                pyro.sample("sigma", dist.Delta(self.sigma_g1))
        if self.factor_correlation:
            pyro.sample("corr_L", dist.Delta(self.corr_L, event_dim=2))

    def _W_point(self) -> torch.Tensor:
        raise NotImplementedError

    def _W_for_eta(self) -> torch.Tensor:
        # what the EM step reads (a guide whose step does not read W returns any (G, K) tensor)
        return self._W_point()

    def _sample_W(self):
        raise NotImplementedError

    def set_columns(self, columns, W_gc) -> None:
        """Set the reported loadings (MAP point or posterior mean) of some columns of W.

        Starts and re-seeding steps (``init_factor_analysis``, ``reseed_factor``, profiled
        loadings) write loadings through this, so that each guide lands on the values asked
        for: the point, the Normal mean, or (spike-and-slab) the tilt centre whose posterior
        mean they are.

        Parameters
        ----------
        columns : sequence of int
            Factor indices.
        W_gc : array-like, shape (G, len(columns))
            The loadings.
        """
        cols = [int(c) for c in columns]
        target = self._W_param()
        W = torch.as_tensor(W_gc, dtype=target.dtype, device=target.device)
        if W.shape != (target.shape[0], len(cols)):
            raise ValueError(f"loadings have shape {tuple(W.shape)}, expected "
                             f"({target.shape[0]}, {len(cols)}) for columns {cols}")
        with torch.no_grad():
            target[:, cols] = self._param_for_mean(W, cols)

    def set_rows(self, rows, W_rk) -> None:
        """Set the reported loadings (MAP point or posterior mean) of some features (rows of W).

        As :meth:`set_columns`, for whole rows: the other rows are left exactly as they are.

        Parameters
        ----------
        rows : sequence of int
            Feature indices.
        W_rk : array-like, shape (len(rows), K)
            The loadings.
        """
        rows = [int(r) for r in rows]
        target = self._W_param()
        W = torch.as_tensor(W_rk, dtype=target.dtype, device=target.device)
        if W.shape != (len(rows), target.shape[1]):
            raise ValueError(f"loadings have shape {tuple(W.shape)}, expected "
                             f"({len(rows)}, {target.shape[1]}) for rows {rows}")
        if not rows:
            return
        with torch.no_grad():
            full = self._W_point().detach().clone()
            full[rows] = W
            target[rows] = self._param_for_mean(full, list(range(target.shape[1])))[rows]

    def _W_param(self) -> torch.Tensor:
        raise NotImplementedError

    def _param_for_mean(self, W_gc, cols):
        return W_gc

    def forward(self, x_bg=None, n_data=None, idx=None, kl_weight=1.0, prior_weight=1.0,
                n_samples=None):
        """Sample the global sites (arguments as the model's; only ``prior_weight`` is used)."""
        register_params("globals_guide", self)
        with poutine.scale(scale=prior_weight):
            if self.has_W:
                W_gk = self._W_for_eta()
                K = W_gk.shape[-1]
                eta_k = self._eta(W_gk)
                factors = full_plate("factors", K, -1)
                features = full_plate("features", W_gk.shape[0], -2)
                with factors:
                    pyro.sample("eta", dist.Delta(eta_k))
                with features, factors:
                    self._sample_W()
                self._sample_rest(features)
            else:
                self._sample_rest(None)

    def point_estimates(self) -> dict:
        """Posterior point summaries of the global sites as tensors (no gradient)."""
        out = {}
        with torch.no_grad():
            if self.has_W:
                out["W"] = self._W_point().detach().clone()
                out["eta"] = self.eta_k.clone()
                out["inclusion"] = self.inclusion_probs()
            if self.likelihood == "normal":
                out["sigma"] = self.sigma_g1.detach().squeeze(-1)
            if self.factor_correlation:
                L = self.corr_L.detach()
                out["corr"] = L @ L.T
        return out


class MAPGlobalGuide(_GlobalGuideBase):
    """Point estimates for W (and sigma); eta by the closed-form EM M-step.

    Parameters
    ----------
    model : SparseVAEModel or VAEModel
        The model whose global sites this guide covers.
    init_scale : float
        W starts from N(0, init_scale^2) (the authors use 1).
    """

    def __init__(self, model, init_scale: float = 1.0):
        super().__init__(model)
        if self.has_W:
            self.W_gk = nn.Parameter(init_scale * torch.randn(model.n_features, model.n_factors))
            # entries outside the allowed support are held at exactly 0 (see restrict_support);
            # saved with the weights, so a refined fit keeps its support when fitted further
            self.register_buffer("support_mask_gk", torch.ones(model.n_features,
                                                               model.n_factors))

    def restrict_support(self, mask_gk) -> None:
        """Hold W at exactly 0 outside ``mask_gk`` from now on (the entries get no gradient).

        Parameters
        ----------
        mask_gk : array-like of bool, shape (G, K)
            True where W_gk may be non-zero.
        """
        m = torch.as_tensor(mask_gk, dtype=self.W_gk.dtype, device=self.W_gk.device)
        if m.shape != self.W_gk.shape:
            raise ValueError(f"mask has shape {tuple(m.shape)}, W has {tuple(self.W_gk.shape)}")
        with torch.no_grad():
            self.support_mask_gk.copy_(m)
            self.W_gk.mul_(m)

    def _W_point(self):
        return self.W_gk * self.support_mask_gk

    def _W_param(self):
        return self.W_gk

    def scale_columns(self, c_k) -> None:
        """Multiply column k of W by ``c_k[k]`` (for :func:`~pyro_sparse.infer.rescale_factors`)."""
        with torch.no_grad():
            self.W_gk.mul_(torch.as_tensor(c_k).to(self.W_gk))

    def _sample_W(self):
        pyro.sample("W", dist.Delta(self._W_point()))

    def inclusion_probs(self) -> torch.Tensor:
        """p*_gk at the MAP loadings."""
        return inclusion_prob(self._W_point().detach(), self.eta_k, self.lambda0, self.lambda1,
                              self.pstar)

    def sample_W(self, num_samples: int, generator: torch.Generator | None = None,
                 symmetry_spread: bool = True) -> torch.Tensor:
        """Draws of W: a point mass, repeated (shape (S, G, K); the other arguments are unused)."""
        W = self._W_point().detach()
        return W.expand(num_samples, *W.shape).clone()


class MeanFieldGlobalGuide(_GlobalGuideBase):
    """Independent Normal q(W_gk) = N(m_gk, s_gk^2); sigma a point estimate; eta by M-step.

    Parameters
    ----------
    model : SparseVAEModel
        The model.
    init_scale : float
        Means start from N(0, init_scale^2).
    init_sd : float
        Starting posterior sd of every entry.

    Notes
    -----
    eta's M-step uses p* at the posterior means; reported inclusion probabilities are
    E_q[p*(W)] by Monte Carlo.
    """

    def __init__(self, model, init_scale: float = 1.0, init_sd: float = 0.05):
        super().__init__(model)
        G, K = model.n_features, model.n_factors
        self.W_loc_gk = nn.Parameter(init_scale * torch.randn(G, K))
        self.W_logsd_gk = nn.Parameter(torch.full((G, K), float(torch.tensor(init_sd).log())))
        # posterior sd of each column's log scale along the z-W symmetry (set after fitting
        # by pyro_sparse.infer.rescale_factors; 0 until then)
        self.register_buffer("log_scale_sd_k", torch.zeros(K))

    @property
    def W_scale_gk(self) -> torch.Tensor:
        """Posterior sd of each W entry, shape (G, K)."""
        return self.W_logsd_gk.exp()

    def _W_point(self):
        return self.W_loc_gk

    def _W_param(self):
        return self.W_loc_gk

    def _sample_W(self):
        pyro.sample("W", dist.Normal(self.W_loc_gk, self.W_scale_gk))

    def scale_columns(self, c_k) -> None:
        """Multiply column k of W's posterior (means and sds) by ``c_k[k]``."""
        with torch.no_grad():
            c = torch.as_tensor(c_k).to(self.W_loc_gk)
            self.W_loc_gk.mul_(c)
            self.W_logsd_gk.add_(c.log())

    def marginal_sd(self) -> torch.Tensor:
        """sd of each entry under :meth:`sample_W` (symmetry spread included), shape (G, K).

        For ``W = a exp(sd_k e)`` with ``a ~ q`` and ``e ~ N(0, 1)`` independent:
        ``Var W = (m^2 + s^2) exp(2 sd_k^2) - m^2 exp(sd_k^2)``.
        """
        with torch.no_grad():
            m, s = self.W_loc_gk, self.W_scale_gk
            v = self.log_scale_sd_k ** 2
            return ((m**2 + s**2) * torch.exp(2 * v) - m**2 * torch.exp(v)).clamp_min(0).sqrt()

    def _draw(self, num_samples, generator=None):
        loc = self.W_loc_gk
        eps = torch.randn((num_samples, *loc.shape), generator=generator, device=loc.device,
                          dtype=loc.dtype)
        return loc + self.W_scale_gk * eps

    def sample_W(self, num_samples: int, generator: torch.Generator | None = None,
                 symmetry_spread: bool = True) -> torch.Tensor:
        """Draws of W from q, shape (S, G, K); ``generator`` makes them reproducible.

        With ``symmetry_spread`` (default), each draw's column k is also multiplied by
        ``exp(sd_k e)``, e ~ N(0, 1): the posterior spread along the scale symmetry between
        z_k and W_:k that the factorised guide cannot hold (``sd_k`` is ``log_scale_sd_k``,
        set by :func:`~pyro_sparse.infer.rescale_factors`; 0 before it runs).
        """
        with torch.no_grad():
            W = self._draw(num_samples, generator)
            if symmetry_spread and bool((self.log_scale_sd_k > 0).any()):
                e = torch.randn((num_samples, 1, W.shape[-1]), generator=generator,
                                device=W.device, dtype=W.dtype)
                W = W * torch.exp(self.log_scale_sd_k * e)
            return W

    def inclusion_probs(self, num_samples: int = 2000) -> torch.Tensor:
        """E_q[p*_gk] by Monte Carlo over ``num_samples`` draws of W.

        The draws are seeded (the same result on every call, and after save and load,
        whatever the global random state) and taken in chunks of at most about
        ``INCLUSION_CHUNK`` numbers, so memory stays bounded for wide data.
        """
        return self._inclusion_over_draws(num_samples)

    def _inclusion_over_draws(self, num_samples: int) -> torch.Tensor:
        # mean of p*(W) over seeded draws of sample_W, chunked
        with torch.no_grad():
            W_gk = self.W_loc_gk
            gen = torch.Generator(device=W_gk.device).manual_seed(0)
            chunk = max(1, min(num_samples, INCLUSION_CHUNK // max(W_gk.numel(), 1)))
            total = torch.zeros_like(W_gk)
            for start in range(0, num_samples, chunk):
                W = self.sample_W(min(chunk, num_samples - start), generator=gen)
                total += inclusion_prob(W, self.eta_k, self.lambda0, self.lambda1,
                                        self.pstar).sum(0)
            return total / num_samples


class LowRankGlobalGuide(MeanFieldGlobalGuide):
    """Gaussian q(vec W) = N(m, diag(s^2) + U U^T) with a rank-r factor U (GK x r).

    The mean-field family cannot express the posterior correlations between loadings, e.g.
    a whole column of W scaling together against the spread of its factor, and then
    understates the spread of each entry; the low-rank term captures the leading
    correlations at ``r`` extra parameters per entry.

    Parameters
    ----------
    model : SparseVAEModel
    init_scale, init_sd : float
        As for :class:`MeanFieldGlobalGuide`.
    rank : int
        r, the rank of the correlated part (default: the number of factors K).

    Notes
    -----
    The ``W`` site keeps the model's plates: the guide samples ``W = m + s * e + U f`` and
    reports it with a Delta whose log-density spreads the joint ``log q(W)`` evenly over the
    G x K entries, so the ELBO sees the exact joint density.
    """

    def __init__(self, model, init_scale: float = 1.0, init_sd: float = 0.05, rank=None):
        super().__init__(model, init_scale=init_scale, init_sd=init_sd)
        G, K = model.n_features, model.n_factors
        r = K if rank is None else int(rank)
        self.W_factor_ir = nn.Parameter(1e-3 * torch.randn(G * K, r))

    @property
    def W_scale_gk(self) -> torch.Tensor:
        """Marginal posterior sd of each W entry, shape (G, K)."""
        var = self.W_logsd_gk.exp() ** 2 + self.W_factor_ir.pow(2).sum(-1).reshape(
            self.W_logsd_gk.shape)
        return var.sqrt()

    def _q(self):
        return dist.LowRankMultivariateNormal(self.W_loc_gk.reshape(-1), self.W_factor_ir,
                                              self.W_logsd_gk.exp().reshape(-1) ** 2)

    def _draw(self, num_samples, generator=None):
        loc = self.W_loc_gk
        e = torch.randn((num_samples, *loc.shape), generator=generator, device=loc.device,
                        dtype=loc.dtype)
        f = torch.randn((num_samples, self.W_factor_ir.shape[1]), generator=generator,
                        device=loc.device, dtype=loc.dtype)
        return loc + self.W_logsd_gk.exp() * e + (f @ self.W_factor_ir.T).reshape(e.shape)

    def _sample_W(self):
        W = self._draw(1)[0]
        log_q = self._q().log_prob(W.reshape(-1))
        pyro.sample("W", dist.Delta(W, log_density=log_q / W.numel()))

    def scale_columns(self, c_k) -> None:
        """Multiply column k of W's posterior (mean, diagonal and low-rank parts) by c_k[k]."""
        super().scale_columns(c_k)
        with torch.no_grad():
            c = torch.as_tensor(c_k).to(self.W_loc_gk)
            G, K = self.W_loc_gk.shape
            self.W_factor_ir.view(G, K, -1).mul_(c[:, None])


class SpikeSlabGlobalGuide(MeanFieldGlobalGuide):
    """Per-entry spike-and-slab posterior: q(W_gk) proportional to SSL(W_gk; eta_k) N(W_gk; m, s^2).

    Each entry's q is the SSL prior tilted by a Gaussian (``TiltedSpikeSlabLasso``): a spike
    part and a slab part with an inclusion probability ``P_q(gamma_gk = 1)`` in closed form.
    A Gaussian q (mean-field, low-rank) must put a loading near 0 or away from it; this one can
    hold both, as the exact posterior of a borderline loading does. Entries are independent.

    Parameters
    ----------
    model : SparseVAEModel
        With the standard p* (``pstar="standard"``): the family is built on the normalised
        Laplace densities.
    init_scale, init_sd : float
        Tilt centres start from N(0, init_scale^2), tilt sds at ``init_sd``.

    Notes
    -----
    ``W_loc_gk`` and ``W_logsd_gk`` hold the tilt's centre and log sd; the posterior mean
    (the reported loadings) is shrunk from the centre towards 0. eta's M-step uses the
    closed-form inclusion probabilities ``E_q[gamma]`` and the family's prior weight follows
    eta. An entry the data do not inform tends to the prior itself, i.e. to an ever wider
    tilt; the tilt sd is capped at ``MAX_TILT_SD_SLAB_SCALES / lambda1`` (20 slab scales,
    where q is the prior to within about 1% in sd), beyond which the closed forms lose
    precision and a fit once diverged. Rescaling a column (:meth:`scale_columns`, used by
    the scale-symmetry step) scales the tilt's sd and moves its centre so that the posterior
    mean scales exactly; q itself is not closed under scaling (the prior's rates stay put),
    so the spread and inclusion probabilities are those of the rescaled fit, not scaled
    copies.
    """

    def __init__(self, model, init_scale: float = 1.0, init_sd: float = 0.05):
        if getattr(model, "pstar", "standard") != "standard":
            raise ValueError("w_guide='spikeslab' needs pstar='standard' (its family uses the "
                             f"normalised Laplace densities), got pstar={model.pstar!r}")
        super().__init__(model, init_scale=init_scale, init_sd=init_sd)

    #: the widest tilt, in slab scales 1 / lambda1: q is then the prior to within about 1%
    #: in sd, and wider tilts only cost precision in the closed forms
    MAX_TILT_SD_SLAB_SCALES = 20.0

    def _tilt_sd(self) -> torch.Tensor:
        """The tilt sds ``exp(W_logsd_gk)``, capped at ``MAX_TILT_SD_SLAB_SCALES / lambda1``."""
        cap = math.log(self.MAX_TILT_SD_SLAB_SCALES / self.lambda1)
        return self.W_logsd_gk.clamp(max=cap).exp()

    def _q(self) -> TiltedSpikeSlabLasso:
        return TiltedSpikeSlabLasso(self.W_loc_gk, self._tilt_sd(), self.eta_k,
                                    self.lambda0, self.lambda1)

    @property
    def W_scale_gk(self) -> torch.Tensor:
        """Posterior sd of each W entry under q (no symmetry spread), shape (G, K)."""
        with torch.no_grad():
            return self._q().variance.sqrt()

    def _W_point(self):
        with torch.no_grad():
            return self._q().mean

    def _W_for_eta(self):
        return self.W_loc_gk  # the M-step below reads q, not a point: only the shape is used

    def _param_for_mean(self, W_gc, cols):
        return TiltedSpikeSlabLasso.loc_for_mean(W_gc, self._tilt_sd()[:, cols],
                                                 self.eta_k[cols], self.lambda0, self.lambda1)

    def _eta(self, W_point_gk: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.eta_k.copy_(eta_mstep(self._q().inclusion_prob(), self.a, self.b))
        return self.eta_k

    def _sample_W(self):
        pyro.sample("W", self._q())

    def _draw(self, num_samples, generator=None):
        return self._q().rsample((num_samples,), generator=generator)

    def scale_columns(self, c_k) -> None:
        """Scale column k's posterior mean and tilt sd by ``c_k[k]`` (mean exactly)."""
        with torch.no_grad():
            c = torch.as_tensor(c_k).to(self.W_loc_gk)
            target = self._q().mean * c
            self.W_logsd_gk.add_(c.log())
            self.W_loc_gk.copy_(TiltedSpikeSlabLasso.loc_for_mean(
                target, self._tilt_sd(), self.eta_k, self.lambda0, self.lambda1))

    def marginal_sd(self) -> torch.Tensor:
        """sd of each entry under :meth:`sample_W` (symmetry spread included), shape (G, K)."""
        with torch.no_grad():
            q = self._q()
            m1, m2 = q.mean, q.second_moment
            v = self.log_scale_sd_k ** 2
            return (m2 * torch.exp(2 * v) - m1**2 * torch.exp(v)).clamp_min(0).sqrt()

    def inclusion_probs(self, num_samples: int = 2000) -> torch.Tensor:
        """``P_q(gamma_gk = 1)``: closed form, or E[p*] over ``num_samples`` draws of W when
        the scale-symmetry spread is set (draws then differ from q by that spread; the draws
        are seeded, so the result is the same on every call)."""
        with torch.no_grad():
            if not bool((self.log_scale_sd_k > 0).any()):
                return self._q().inclusion_prob()
            return self._inclusion_over_draws(num_samples)


class SpikeSlabLowRankGlobalGuide(SpikeSlabGlobalGuide):
    """Spike-and-slab marginals per entry, coupled by a low-rank Gaussian copula.

    Every W_gk keeps the marginal of :class:`SpikeSlabGlobalGuide` (the SSL prior tilted by a
    Gaussian; closed-form inclusion probability, moments, eta M-step); the entries are joined
    by a Gaussian copula whose correlation is that of ``U U^T + I`` with ``U`` (GK x r), the
    structure of :class:`LowRankGlobalGuide` (``LowRankGaussianCopula``). The copula changes
    no marginal, so p*, posterior means and sds are read as for the independent guide, while
    the draws (and intervals of any function of several entries) carry the correlations.

    Parameters
    ----------
    model : SparseVAEModel
        With ``pstar="standard"``.
    init_scale, init_sd : float
        As for :class:`SpikeSlabGlobalGuide`.
    rank : int
        r (default: the number of factors K).

    Notes
    -----
    The ``W`` site is a Delta at the copula draw whose log-density spreads the joint
    ``log q(W)`` (marginals plus copula density) evenly over the G x K entries, as the
    low-rank guide does. Rescaling a column (:meth:`scale_columns`) moves the marginals only:
    a copula's correlation is unchanged by monotone maps of each entry.
    """

    def __init__(self, model, init_scale: float = 1.0, init_sd: float = 0.05, rank=None):
        super().__init__(model, init_scale=init_scale, init_sd=init_sd)
        G, K = model.n_features, model.n_factors
        r = K if rank is None else int(rank)
        self.W_factor_ir = nn.Parameter(1e-3 * torch.randn(G * K, r))

    def _copula(self) -> LowRankGaussianCopula:
        return LowRankGaussianCopula(self._q(), self.W_factor_ir)

    def _sample_W(self):
        q = self._copula()
        W = q.rsample()
        pyro.sample("W", dist.Delta(W, log_density=q.log_prob(W) / W.numel()))

    def _draw(self, num_samples, generator=None):
        return self._copula().rsample((num_samples,), generator=generator)

    def copula_correlation(self) -> torch.Tensor:
        """Correlation matrix of the copula's normal scores, shape (GK, GK), rows ``g * K + k``."""
        with torch.no_grad():
            U = self.W_factor_ir
            S = U @ U.T + torch.eye(U.shape[0], dtype=U.dtype, device=U.device)
            d = S.diagonal().rsqrt()
            return S * d[:, None] * d[None, :]
