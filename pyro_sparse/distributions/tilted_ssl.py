"""A spike-and-slab variational family for one loading: the SSL prior tilted by a Gaussian.

``q(w) = SSL(w; eta, lambda0, lambda1) N(w; loc, scale^2) / Z`` has a spike part and a slab
part with an inclusion probability of its own, and it is the exact posterior of a loading
whose likelihood is Gaussian in it. Writing each Laplace half-line times the Gaussian as a
truncated Normal makes everything closed-form: the normaliser Z, the inclusion probability
``P_q(gamma = 1)``, the moments and the CDF. Draws are exact (a piece, then a truncated
Normal by inverse CDF) and carry implicit reparameterisation gradients
(``dw/dtheta = -dF(w; theta)/dtheta / q(w)``, Figurnov et al. 2018), so the family works in
any reparameterised ELBO.

Pieces, for the spike (rate lambda0, weight 1 - eta) and the slab (lambda1, eta), on
``w >= 0`` (sign +1) and ``w < 0`` (sign -1):
``(lam / 2) exp(-lam |w|) N(w; m, s^2) = (lam / 2) exp(-s_i lam m + lam^2 s^2 / 2)
N(w; m - s_i lam s^2, s^2)``.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.special import erfcx, log_ndtr, ndtri

from .ssl import _clamp_eta, ssl_log_prob

__all__ = ["TiltedSpikeSlabLasso"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
# piece order: spike+, spike-, slab+, slab-
_SIGNS = (1.0, -1.0, 1.0, -1.0)


def _ndtri_of_log(log_p: torch.Tensor, newton: int = 30) -> torch.Tensor:
    """``Phi^-1(exp(log_p))`` in float64, also where ``exp(log_p)`` underflows.

    ``ndtri`` where the probability is representable; below ``exp(-600)`` Newton steps on the
    concave ``log Phi(u) = log_p``, started left of the root (``-sqrt(-2 log_p)``), so every
    step stays left of it and the iteration increases monotonically to the root.
    """
    far = log_p < -600.0
    out = ndtri(log_p.exp())
    if not bool(far.any()):
        return out
    lp = torch.where(far, log_p, torch.full_like(log_p, -600.0))
    u = -torch.sqrt(-2.0 * lp)
    for _ in range(newton):
        # d/du log Phi(u) = phi(u) / Phi(u), stably through erfcx for u < 0
        slope = _SQRT_2_OVER_PI / erfcx(-u / _SQRT2)
        u = u + (lp - log_ndtr(u)) / slope
    return torch.where(far, u, out)


class TiltedSpikeSlabLasso(TorchDistribution):
    """``q(w) proportional to SSL(w; eta, lambda0, lambda1) N(w; loc, scale^2)``, per entry.

    Parameters
    ----------
    loc, scale : torch.Tensor
        Centre and sd of the Gaussian tilt (broadcastable; ``scale > 0``). They are the
        variational parameters; ``loc`` is not the mean of q (see :attr:`mean`).
    eta : torch.Tensor
        Slab probability of the prior, broadcastable to the batch shape.
    lambda0, lambda1 : float
        Spike and slab Laplace rates (standard normalised densities).

    Notes
    -----
    Computations run in float64 and are returned in the dtype of ``loc``. With a Gaussian
    likelihood in ``w`` (``N(y; w, v)`` over ``n`` observations) the exact posterior is this
    distribution with ``loc = mean(y)`` and ``scale^2 = v / n``.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive,
                       "eta": constraints.unit_interval}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, eta, lambda0: float, lambda1: float, validate_args=None):
        loc, scale, eta = torch.broadcast_tensors(torch.as_tensor(loc), torch.as_tensor(scale),
                                                  torch.as_tensor(eta).to(torch.as_tensor(loc)))
        self.loc, self.scale, self.eta = loc, scale, eta
        self.lambda0, self.lambda1 = float(lambda0), float(lambda1)
        self._pieces_cache = None
        super().__init__(loc.shape, torch.Size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        return TiltedSpikeSlabLasso(self.loc.expand(shape), self.scale.expand(shape),
                                    self.eta.expand(shape), self.lambda0, self.lambda1)

    # --- the four pieces -------------------------------------------------------------------
    def _pieces(self):
        """float64 (log mass, centre, sign, s) of the pieces; last axis of size 4 (cached)."""
        # a cache filled under no_grad holds no graph: recompute when gradients are wanted
        grad = torch.is_grad_enabled()
        if self._pieces_cache is None or (grad and not self._pieces_cache[0]):
            self._pieces_cache = (grad, self._compute_pieces())
        return self._pieces_cache[1]

    def _compute_pieces(self):
        mu = self.loc.double().unsqueeze(-1)
        s = self.scale.double().unsqueeze(-1)
        eta = _clamp_eta(self.eta.double()).unsqueeze(-1)
        lam = mu.new_tensor([self.lambda0, self.lambda0, self.lambda1, self.lambda1])
        sgn = mu.new_tensor(_SIGNS)
        log_w = torch.cat([torch.log1p(-eta), torch.log1p(-eta), torch.log(eta),
                           torch.log(eta)], -1)
        centre = mu - sgn * lam * s**2
        log_mass = (log_w + torch.log(lam / 2) - sgn * lam * mu + 0.5 * lam**2 * s**2
                    + log_ndtr(sgn * centre / s))
        return log_mass, centre, sgn, s

    def inclusion_prob(self) -> torch.Tensor:
        """``P_q(gamma = 1)``: the slab pieces' share of the mass (batch shape).

        Equals ``E_q[p*(w, eta)]`` exactly, since ``p*(w) q(w)`` is the slab part of q.
        """
        log_mass, _, _, _ = self._pieces()
        out = torch.logsumexp(log_mass[..., 2:], -1) - torch.logsumexp(log_mass, -1)
        return out.exp().to(self.loc.dtype)

    def _piece_moments(self):
        """float64 (piece probabilities, piece means, piece variances); last axis of size 4.

        Each piece is N(m, s^2) truncated to ``sgn * w >= 0``; with ``alpha = -sgn m / s`` the
        inverse Mills ratio ``h = phi(alpha) / (1 - Phi(alpha))`` is computed through
        ``erfcx`` (no ratio of underflowing tails), and the variance factor
        ``1 + alpha h - h^2`` by its asymptotic series ``1/alpha^2 - 6/alpha^4`` where
        ``alpha > 100`` (the closed form cancels there).
        """
        log_mass, m, sgn, s = self._pieces()
        p = torch.softmax(log_mass, -1)
        alpha = -sgn * m / s
        h = _SQRT_2_OVER_PI / erfcx(alpha / _SQRT2)
        e1 = m + s * sgn * h
        far = alpha > 100.0
        a_far = torch.where(far, alpha, torch.full_like(alpha, 100.0))
        factor = torch.where(far, a_far**-2 - 6.0 * a_far**-4, 1.0 + alpha * h - h**2)
        return p, e1, s**2 * factor.clamp_min(0.0)

    @property
    def mean(self) -> torch.Tensor:
        p, e1, _ = self._piece_moments()
        return (p * e1).sum(-1).to(self.loc.dtype)

    @property
    def second_moment(self) -> torch.Tensor:
        """``E_q[w^2]`` (batch shape)."""
        p, e1, v = self._piece_moments()
        return (p * (v + e1**2)).sum(-1).to(self.loc.dtype)

    @property
    def variance(self) -> torch.Tensor:
        # law of total variance over the pieces: no E[w^2] - E[w]^2 cancellation
        p, e1, v = self._piece_moments()
        m1 = (p * e1).sum(-1, keepdim=True)
        return (p * (v + (e1 - m1) ** 2)).sum(-1).to(self.loc.dtype)

    @staticmethod
    def loc_for_mean(mean, scale, eta, lambda0: float, lambda1: float,
                     iters: int = 100) -> torch.Tensor:
        """The tilt centre whose distribution has the given mean (per entry, by bisection).

        The mean of q increases with ``loc``, so the root is unique.

        Parameters
        ----------
        mean, scale, eta : torch.Tensor
            Target means, tilt sds and slab probabilities (broadcastable).
        lambda0, lambda1 : float
        iters : int
            Bisection steps (in float64).

        Returns
        -------
        torch.Tensor
            ``loc`` with the broadcast shape, in the dtype of ``mean``.
        """
        target, s, e = torch.broadcast_tensors(torch.as_tensor(mean).double(),
                                               torch.as_tensor(scale).double(),
                                               torch.as_tensor(eta).double())

        def mean_at(loc):
            return TiltedSpikeSlabLasso(loc, s, e, lambda0, lambda1).mean

        with torch.no_grad():
            half = max(lambda0, lambda1) * s**2 + 10.0 * s + 1.0
            lo, hi = target - half, target + half
            for _ in range(60):  # widen until the bracket holds the target
                low_bad, high_bad = mean_at(lo) > target, mean_at(hi) < target
                if not (low_bad.any() or high_bad.any()):
                    break
                lo = torch.where(low_bad, lo - 2 * (hi - lo), lo)
                hi = torch.where(high_bad, hi + 2 * (hi - lo), hi)
            for _ in range(iters):
                mid = 0.5 * (lo + hi)
                below = mean_at(mid) < target
                lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
            return (0.5 * (lo + hi)).to(torch.as_tensor(mean).dtype)

    # --- densities ----------------------------------------------------------------------
    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        v = value.double()
        log_mass, _, _, _ = self._pieces()
        mu, s = self.loc.double(), self.scale.double()
        log_tilt = -0.5 * ((v - mu) / s) ** 2 - torch.log(s) - _LOG_SQRT_2PI
        out = (ssl_log_prob(v, self.eta.double(), self.lambda0, self.lambda1) + log_tilt
               - torch.logsumexp(log_mass, -1))
        return out.to(value.dtype)

    def _log_tail(self, v):
        """log F(v) where v < 0 and log (1 - F(v)) where v >= 0 (float64, with gradients)."""
        log_mass, m, sgn, s = self._pieces()
        v1 = v.unsqueeze(-1)
        # a piece's mass beyond v, towards its own side (v on the piece's side of 0), or up
        # to v from -inf for the negative pieces
        part = log_mass + log_ndtr(sgn * (m - v1) / s) - log_ndtr(sgn * m / s)
        log_z = torch.logsumexp(log_mass, -1)
        log_surv = torch.logsumexp(part[..., 0::2], -1) - log_z  # positive pieces, v >= 0
        log_cdf = torch.logsumexp(part[..., 1::2], -1) - log_z  # negative pieces, v < 0
        return torch.where(v >= 0, log_surv, log_cdf)

    def cdf(self, value):
        v = value.double()
        t = self._log_tail(v).exp()
        return torch.where(v >= 0, 1.0 - t, t).to(value.dtype)

    # --- normal scores (for copulas) -------------------------------------------------------
    def normal_score(self, value) -> torch.Tensor:
        """``Phi^-1(F(value))``, computed from the tail on value's side of 0 (stable far out).

        Differentiable in ``value`` and in the parameters; clamped to +-``SCORE_CLAMP``.

        Parameters
        ----------
        value : torch.Tensor
            Points (broadcastable to the batch shape).

        Returns
        -------
        torch.Tensor
            Standard-normal scores in the dtype of ``value``.
        """
        return self._score64(value.double()).to(value.dtype)

    def _score64(self, v):
        log_t = self._log_tail(v).clamp_min(-700.0)
        t = log_t.exp()
        score = torch.where(v >= 0, -ndtri(t), ndtri(t))
        return score.clamp(-self.SCORE_CLAMP, self.SCORE_CLAMP)

    SCORE_CLAMP = 8.5

    def from_normal_score(self, score) -> torch.Tensor:
        """The point with normal score ``score``: ``F^-1(Phi(score))``, i.e. the quantile.

        Found in float64 (bisection steps, then safeguarded Newton steps on the log tail mass
        beyond the point) and returned with implicit gradients in ``score`` and in
        the parameters: ``dw = (dscore - dS(w; theta)) / S'(w)`` with ``S`` the normal-score
        function, so a Gaussian copula built on this family is reparameterised.

        Parameters
        ----------
        score : torch.Tensor
            Standard-normal scores (batch shape, or sample shape + batch shape); values
            beyond +-``SCORE_CLAMP`` are clamped.

        Returns
        -------
        torch.Tensor
            Points in the dtype of ``loc``.
        """
        self._pieces()  # with gradients where enabled; the bisection reads the cache
        sc = score.double().clamp(-self.SCORE_CLAMP, self.SCORE_CLAMP)
        w0 = self._quantile64(sc.detach())
        with torch.no_grad():
            # a wide tilt (its pieces' centres far out, the spike's mass near 0) needs more
            # halvings than the bracket's first 10 before Newton takes over; redo where the
            # point's normal score is off
            off = (self._score64(w0) - sc.detach()).abs() > 1e-6
            if bool(off.any()):
                w0 = torch.where(off, self._quantile64(sc.detach(), bisect=40), w0)
        needs_grad = (sc.requires_grad or self.loc.requires_grad or self.scale.requires_grad
                      or self.eta.requires_grad)
        if not (torch.is_grad_enabled() and needs_grad):
            return w0.to(self.loc.dtype)
        s0 = self._score64(w0)
        # S'(w) = q(w) / phi(S(w))
        slope = torch.exp(self.log_prob(w0).double() + 0.5 * s0.detach() ** 2
                          + _LOG_SQRT_2PI).detach()
        w = w0 + (sc - s0) / slope
        return w.to(self.loc.dtype)

    def _quantile64(self, sc, bisect=10, newton=8):
        """F^-1(Phi(sc)) in float64, no gradient: ``bisect`` halvings, then ``newton`` steps.

        The side of 0 is read off ``S(0)``; then only that side's two pieces enter, and the
        search matches their log tail mass beyond the point to ``log Phi(-sc)`` (w >= 0) or
        ``log Phi(sc)`` (w < 0), with no ``ndtri`` in the loop. A Newton step that leaves the
        current bracket is replaced by its midpoint. Accurate to about 1e-11 in F for tilt
        sds below 2; wider tilts (the bracket then spans the pieces' far centres) need more
        halvings, which :meth:`from_normal_score` adds where the first pass is off.
        """
        with torch.no_grad():
            log_mass, m, sgn, s = self._pieces()
            log_z = torch.logsumexp(log_mass, -1)
            # log of the mass of q below 0 (negative pieces) and the side of each draw
            log_neg = torch.logsumexp(log_mass[..., 1::2], -1) - log_z
            pos = sc >= self._score_of_log_cdf(log_neg)  # w >= 0 where Phi(sc) >= F(0)
            a = log_mass - log_ndtr(sgn * m / s) - log_z.unsqueeze(-1)
            a, m, s = (t.expand(*sc.shape, 4) for t in (a, m, s))
            # the side's two pieces (spike, slab): positive ones at 0, 2; negative at 1, 3
            spike = torch.where(pos, 0, 1).unsqueeze(-1)
            a_0, a_1 = a.gather(-1, spike).squeeze(-1), a.gather(-1, spike + 2).squeeze(-1)
            m_0, m_1 = m.gather(-1, spike).squeeze(-1), m.gather(-1, spike + 2).squeeze(-1)
            s1 = s[..., 0]
            sg = torch.where(pos, 1.0, -1.0).to(sc)
            # target log tail: log(1 - F(w)) = log Phi(-sc) (w >= 0), log F(w) = log Phi(sc)
            target = log_ndtr(-sg * sc)
            reach = torch.maximum(m_0.abs(), m_1.abs()) + 12.0 * s1
            lo = torch.where(pos, torch.zeros_like(sc), -reach)
            hi = torch.where(pos, reach, torch.zeros_like(sc))

            def log_tail(w):
                return torch.logaddexp(a_0 + log_ndtr(sg * (m_0 - w) / s1),
                                       a_1 + log_ndtr(sg * (m_1 - w) / s1))

            for _ in range(bisect):
                mid = 0.5 * (lo + hi)
                # the tail beyond mid (towards the side) falls as mid moves outwards
                lt = log_tail(mid)
                up = torch.where(pos, lt > target, lt < target)
                lo, hi = torch.where(up, mid, lo), torch.where(up, hi, mid)
            w = 0.5 * (lo + hi)
            c_0, c_1 = a_0 - torch.log(s1) - _LOG_SQRT_2PI, a_1 - torch.log(s1) - _LOG_SQRT_2PI
            for _ in range(newton):
                # safeguarded Newton on log tail(w) = target; its slope is -+ q(w) / tail(w)
                lt = log_tail(w)
                log_d = torch.logaddexp(c_0 - 0.5 * ((w - m_0) / s1) ** 2,
                                        c_1 - 0.5 * ((w - m_1) / s1) ** 2)
                w_new = w + sg * (lt - target) * torch.exp(lt - log_d)
                up = torch.where(pos, lt > target, lt < target)
                lo, hi = torch.where(up, w, lo), torch.where(up, hi, w)
                inside = (w_new >= lo) & (w_new <= hi) & torch.isfinite(w_new)
                w = torch.where(inside, w_new, 0.5 * (lo + hi))
            return w

    @staticmethod
    def _score_of_log_cdf(log_p):
        return ndtri(log_p.exp()).clamp(-TiltedSpikeSlabLasso.SCORE_CLAMP,
                                        TiltedSpikeSlabLasso.SCORE_CLAMP)

    # --- sampling ---------------------------------------------------------------------------
    def _draw(self, shape, generator=None):
        """Exact draws (float64, no gradient): a piece by its mass, then a truncated Normal."""
        with torch.no_grad():
            log_mass, m, sgn, s = self._pieces()
            log_mass, m, s = (t.expand(*shape, 4) for t in (log_mass, m, s))
            dev = log_mass.device
            u = torch.rand(log_mass.shape, generator=generator, device=dev,
                           dtype=torch.float64).clamp(1e-300, 1.0 - 1e-16)
            piece = torch.argmax(log_mass - torch.log(-torch.log(u)), -1, keepdim=True)
            m1, s1 = m.gather(-1, piece), s.gather(-1, piece)
            sg = sgn.expand(m.shape).gather(-1, piece)
            v = torch.rand(m1.shape, generator=generator, device=dev,
                           dtype=torch.float64).clamp_min(1e-300)
            # standardised draw beyond the boundary 0 on the piece's side: u = Phi^-1(v
            # Phi(sg m / s)), found in log space where that mass underflows (a piece whose
            # Gaussian centre lies far on the other side of 0, as the spike pieces of a wide
            # tilt: there the draw is near-exponential, not a point)
            log_target = torch.log(v) + log_ndtr(sg * m1 / s1)
            u = _ndtri_of_log(log_target)
            w = m1 - s1 * sg * u
            w = torch.where(sg > 0, w.clamp_min(0.0), w.clamp_max(-1e-300))
            return w.squeeze(-1)

    def rsample(self, sample_shape=torch.Size(), generator=None):
        """Draws with implicit reparameterisation gradients in ``loc``, ``scale``, ``eta``.

        Parameters
        ----------
        sample_shape : torch.Size
        generator : torch.Generator, optional
            Makes the draws reproducible.
        """
        shape = self._extended_shape(sample_shape)
        self._pieces()  # with gradients where enabled, shared by the draw and the tails
        w0 = self._draw(shape, generator)
        needs_grad = self.loc.requires_grad or self.scale.requires_grad or self.eta.requires_grad
        if not (torch.is_grad_enabled() and needs_grad):
            return w0.to(self.loc.dtype)
        log_t = self._log_tail(w0)
        ratio = torch.exp(log_t - self.log_prob(w0).double()).detach()
        sign = torch.where(w0 >= 0, 1.0, -1.0).to(w0)
        w = w0 + sign * ratio * (log_t - log_t.detach())
        return w.to(self.loc.dtype)

    def sample(self, sample_shape=torch.Size(), generator=None):
        return self._draw(self._extended_shape(sample_shape), generator).to(self.loc.dtype)
