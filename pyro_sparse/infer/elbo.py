"""``Trace_ELBO`` without the per-step bookkeeping that reparameterised guides do not need.

At small shapes (a few features, a hundred rows) most of an SVI step is Pyro's handling of
the traces, not arithmetic; ``ReparamTrace_ELBO`` gives the same loss and gradients as
``pyro.infer.Trace_ELBO`` with less of it.
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO
from pyro.infer.util import is_validation_enabled, torch_item
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from pyro.util import warn_if_nan

__all__ = ["ReparamTrace_ELBO"]


def _sample_sites(trace):
    """The trace's sample sites, in order, without the plates' subsample sites."""
    return [s for s in trace.nodes.values()
            if s["type"] == "sample" and not site_is_subsample(s)]


def _reparameterised(guide_sites) -> bool:
    """True when every site of the guide is reparameterised and none is enumerated."""
    return all(s["fn"].has_rsample and "enumerate" not in s["infer"] for s in guide_sites)


def _scaled_log_prob_sum(site) -> torch.Tensor:
    log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    return scale_and_mask(log_p, site["scale"], site["mask"]).sum()


class ReparamTrace_ELBO(Trace_ELBO):
    """The ELBO of ``pyro.infer.Trace_ELBO``, evaluated with less per-step overhead.

    ``Trace_ELBO`` copies both traces to drop the plates' subsample sites, computes score
    function parts for every guide site and scales each guide log-density twice (once for
    the loss, once for the surrogate). When every latent site of the guide is
    reparameterised (or a point mass), none of that changes the result: the surrogate is
    the sum of the scaled log-densities. This class computes exactly that, once per site.

    The loss values and gradients equal ``Trace_ELBO``'s: the per-site terms are the same
    operations in the same order, and the returned loss carries the same value (a double-
    precision sum of the sites' terms) as ``Trace_ELBO``'s.

    Falls back to ``Trace_ELBO`` itself, with the same traces (so the random draws are the
    same), when a guide site is not reparameterised or is enumerated; and entirely when
    Pyro's validation is enabled (so its model/guide checks still run), particles are
    vectorised or the guide is a ``GuideMessenger``. Usable in a user's ``pyro.infer.SVI``
    loop like any Pyro ELBO.

    Parameters
    ----------
    num_particles : int
        Samples per ELBO estimate.
    **kwargs
        Passed on to ``Trace_ELBO``.
    """

    def _traces(self, model, guide, args, kwargs):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(
            poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        return model_trace, guide_trace

    def _use_stock(self, guide) -> bool:
        # a GuideMessenger guide (e.g. AutoNormalMessenger) is traced Trace_ELBO's own way
        return (is_validation_enabled() or self.vectorize_particles
                or isinstance(poutine.unwrap(guide), poutine.messenger.Messenger))

    def _particle(self, model, guide, args, kwargs, differentiable: bool):
        """(loss as a float, surrogate loss tensor or None) for one particle."""
        model_trace, guide_trace = self._traces(model, guide, args, kwargs)
        model_sites, guide_sites = _sample_sites(model_trace), _sample_sites(guide_trace)
        if not _reparameterised(guide_sites):
            model_trace = prune_subsample_sites(model_trace)
            guide_trace = prune_subsample_sites(guide_trace)
            model_trace.compute_log_prob()
            guide_trace.compute_score_parts()
            if differentiable:
                return self._differentiable_loss_particle(model_trace, guide_trace)
            return (-(torch_item(model_trace.log_prob_sum())
                      - torch_item(guide_trace.log_prob_sum()))), None
        if differentiable:
            elbo, surrogate = 0.0, 0
            for site in model_sites:
                lp = _scaled_log_prob_sum(site)
                elbo = elbo + torch_item(lp)
                surrogate = surrogate + lp
            for site in guide_sites:
                lp = _scaled_log_prob_sum(site)
                elbo = elbo - torch_item(lp)
                surrogate = surrogate - lp
            return -elbo, -surrogate
        # Trace_ELBO.loss sums each trace's terms as tensors, then reads the totals
        model_sum, guide_sum = 0.0, 0.0
        for site in model_sites:
            model_sum = model_sum + _scaled_log_prob_sum(site)
        for site in guide_sites:
            guide_sum = guide_sum + _scaled_log_prob_sum(site)
        return -(torch_item(model_sum) - torch_item(guide_sum)), None

    def loss(self, model, guide, *args, **kwargs):
        """Estimate of the negative ELBO (a float), as ``Trace_ELBO.loss``."""
        if self._use_stock(guide):
            return super().loss(model, guide, *args, **kwargs)
        loss = 0.0
        with torch.no_grad():
            for _ in range(self.num_particles):
                loss += self._particle(model, guide, args, kwargs, False)[0] / self.num_particles
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """Negative ELBO estimate whose gradient is ``Trace_ELBO``'s (a scalar tensor)."""
        if self._use_stock(guide):
            return super().differentiable_loss(model, guide, *args, **kwargs)
        loss, surrogate_loss = 0.0, 0.0
        for _ in range(self.num_particles):
            loss_p, surrogate_p = self._particle(model, guide, args, kwargs, True)
            surrogate_loss += surrogate_p / self.num_particles
            loss += loss_p / self.num_particles
        warn_if_nan(loss, "loss")
        return loss + (surrogate_loss - torch_item(surrogate_loss))

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """The loss (a float), after backpropagating the surrogate into the parameters."""
        if self._use_stock(guide):
            return super().loss_and_grads(model, guide, *args, **kwargs)
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return torch_item(loss)
