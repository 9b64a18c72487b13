"""Step implementations compared by benchmarks/speed.py (one module so each runs in a subprocess).

- ``pyro``: pyro_sparse's SVI step (Pyro model + guide, Trace_ELBO, Adam, EM for eta).
- ``pyro-jit``: the same step with Pyro's ``JitTrace_ELBO`` (model and guide traced once).
- ``plain``: the same maths written directly in PyTorch (same fused decoder kernel), to
  measure what Pyro's machinery costs.
- ``authors``: a per-feature Python loop over the shared decoder with the authors' loss
  scaling and two Adam optimisers, written from the reference description of their code.
- ``authors-full``: the same loop with the per-step overheads of the authors' training script
  kept: rows fetched one by one from a Dataset as dicts and collated by a DataLoader, the
  decoder input masked by the row-normalised |W|, p* and eta updated factor by factor in a
  Python loop, Adam's per-parameter (non-foreach) update with weight decay on the networks,
  and the loss parts read back with ``.item()`` every step.
- ``naive``: the straightforward (batch, features, hidden) vectorisation with autograd.
- ``vae``: pyro_sparse's dense VAE step (same encoder), for the cost ratio.
- ``pyro-bf16``, ``authors-bf16``: ``pyro`` and ``authors`` with PyTorch's fp32 matmuls run on
  bf16 inputs (see :func:`bf16_matmuls`), side by side at the same precision.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SHAPES = {
    "synthetic": dict(N=500, G=7, K=5, H=50, B=100, likelihood="normal"),
    "zeisel": dict(N=3005, G=558, K=15, H=100, B=512, likelihood="normal"),
    "movielens": dict(N=20000, G=300, K=50, H=300, B=512, likelihood="categorical"),
}


def make_data(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = SHAPES[shape]
    if s["likelihood"] == "categorical":
        return torch.poisson(torch.full((s["N"], s["G"]), 0.3), generator=g) + \
            (torch.arange(s["G"]) == 0).float()
    return torch.randn(s["N"], s["G"], generator=g)


def pyro_step(shape, x, vae=False, elbo_cls=None):
    """Our SVI step as ``fit`` runs it (``make_elbo``'s ELBO), or with ``elbo_cls`` instead
    (``pyro-trace``: Pyro's stock ``Trace_ELBO``, the step before ``ReparamTrace_ELBO``)."""
    import pyro

    import pyro_sparse as ps
    from pyro_sparse.estimators import _local_params
    from pyro_sparse.infer import make_elbo

    s = SHAPES[shape]
    est = (ps.VAE if vae else ps.SparseVAE)(n_factors=s["K"], hidden_dim=s["H"],
                                             likelihood=s["likelihood"])
    model, guide = est._build(est._model_config(x.numpy()), torch.device("cpu"), 0)
    params = list(model.parameters()) + list(guide.parameters())
    opt = torch.optim.Adam(params, lr=1e-2, foreach=True)
    elbo = make_elbo(model) if elbo_cls is None else elbo_cls()
    N = x.shape[0]

    def step(idx):
        with _local_params(), pyro.validation_enabled(False):
            loss = elbo.differentiable_loss(model, guide, x[idx], N, idx, 1.0, 1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return float(loss.detach())

    return step


def pyro_jit_step(shape, x):
    """The ``pyro`` step with Pyro's ``JitTrace_ELBO`` (the model and guide traced once by
    ``torch.jit.trace``; Pyro's JIT needs the global parameter store, so the parameters are
    registered there instead of staying module-local).

    Pyro's ``JitTrace_ELBO.differentiable_loss`` returns ``loss + (surrogate - surrogate
    .detach())`` with a loss that is itself differentiable under the JIT, which doubles every
    gradient; the step takes ``loss_and_surrogate_loss`` and differentiates the surrogate
    once (all sites here are reparameterised, so its gradient is the ELBO's).
    """
    import pyro
    from pyro.infer import JitTrace_ELBO

    import pyro_sparse as ps
    from pyro_sparse.estimators import _local_params

    s = SHAPES[shape]
    est = ps.SparseVAE(n_factors=s["K"], hidden_dim=s["H"], likelihood=s["likelihood"])
    with _local_params():
        model, guide = est._build(est._model_config(x.numpy()), torch.device("cpu"), 0)
    pyro.clear_param_store()
    params = list(model.parameters()) + list(guide.parameters())
    opt = torch.optim.Adam(params, lr=1e-2, foreach=True)
    elbo = JitTrace_ELBO(ignore_jit_warnings=True)
    N = x.shape[0]

    # tensors positional, everything else a keyword (one compiled trace per keyword set)
    def model_fn(x_bg, idx, n_data):
        return model(x_bg, n_data, idx, 1.0, 1.0)

    def guide_fn(x_bg, idx, n_data):
        return guide(x_bg, n_data, idx, 1.0, 1.0)

    def loss_and_grad(idx):
        with pyro.validation_enabled(False):
            loss, surrogate = elbo.loss_and_surrogate_loss(model_fn, guide_fn, x[idx], idx,
                                                           n_data=N)
        surrogate.backward()
        return loss.detach()

    def step(idx):
        opt.zero_grad(set_to_none=True)
        loss = loss_and_grad(idx)
        opt.step()
        return float(loss)

    step.loss_and_grad = loss_and_grad
    step.params = params
    step.parts = (model, guide, N)
    return step


def plain_step(shape, x):
    """Same ELBO as the Pyro model, written by hand (normal or categorical likelihood)."""
    from pyro_sparse.distributions import SigmaPrior, eta_mstep, inclusion_prob, ssl_log_prob
    from pyro_sparse.nn import GaussianEncoder, SparseDecoder

    s = SHAPES[shape]
    G, K, H = s["G"], s["K"], s["H"]
    N = x.shape[0]
    enc, dec = GaussianEncoder(G, K, H), SparseDecoder(G, K, H)
    W = nn.Parameter(torch.randn(G, K))
    log_sigma = nn.Parameter(torch.zeros(G))
    eta = torch.full((K,), 0.5)
    sp = SigmaPrior(3.0, 0.1948)
    beta_prior = torch.distributions.Beta(torch.ones(K), torch.full((K,), float(G)))
    params = list(enc.parameters()) + list(dec.parameters()) + [W, log_sigma]
    opt = torch.optim.Adam(params, lr=1e-2, foreach=True)
    cat = s["likelihood"] == "categorical"

    def step(idx):
        xb = x[idx]
        B = xb.shape[0]
        with torch.no_grad():
            eta.copy_(eta_mstep(inclusion_prob(W, eta, 10.0, 1.0), 1.0, float(G)))
        xin = xb / xb.sum(-1, keepdim=True).clamp_min(1) if cat else xb
        loc, scale = enc(xin)
        z = loc + scale * torch.randn_like(loc)
        out = dec(z, W)
        if cat:
            ll = (xb * torch.log_softmax(out, -1)).sum() + (torch.lgamma(xb.sum(-1) + 1)
                                                            - torch.lgamma(xb + 1).sum(-1)).sum()
            prior = 0.0
        else:
            sigma = log_sigma.exp()
            ll = (-0.5 * ((xb - out) / sigma) ** 2 - log_sigma
                  - 0.5 * math.log(2 * math.pi)).sum()
            prior = sp.log_prob(sigma).sum()
        kl = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).sum()
        prior = prior + ssl_log_prob(W, eta, 10.0, 1.0).sum() + beta_prior.log_prob(eta).sum()
        loss = -(N / B * (ll - kl) + prior)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


class _AuthorsStyleDecoder(nn.Module):
    """Shared K->H->H network applied feature by feature in a Python loop, G heads H->1."""

    def __init__(self, G, K, H):
        super().__init__()
        self.l1 = nn.Linear(K, H, bias=False)
        self.l2 = nn.Linear(H, H)
        self.heads = nn.ModuleList([nn.Linear(H, 1) for _ in range(G)])

    def forward(self, z, W):
        cols = []
        for g, head in enumerate(self.heads):
            h = torch.relu(self.l2(torch.relu(self.l1(z * W[g]))))
            cols.append(head(h))
        return torch.cat(cols, 1)


def _authors_parts(shape, nets_kw=None, w_kw=None):
    """Encoder, per-feature-loop decoder, W, log sigma, p*, eta and the two Adams."""
    from pyro_sparse.nn import GaussianEncoder

    s = SHAPES[shape]
    G, K, H = s["G"], s["K"], s["H"]
    enc, dec = GaussianEncoder(G, K, H), _AuthorsStyleDecoder(G, K, H)
    W = nn.Parameter(torch.randn(G, K))
    log_sigma = nn.Parameter(torch.zeros(G))
    opt_nets = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-2,
                                **(nets_kw or {}))
    opt_w = torch.optim.Adam([W, log_sigma], lr=1e-2, **(w_kw or {}))
    return (G, K, enc, dec, W, log_sigma, torch.full((G, K), 0.5), torch.rand(K), opt_nets,
            opt_w, s["likelihood"] == "categorical")


def _step_both(loss, opt_nets, opt_w):
    """One backward pass and a step of both of the authors' optimisers."""
    opt_nets.zero_grad()
    opt_w.zero_grad()
    loss.backward()
    opt_nets.step()
    opt_w.step()


def authors_step(shape, x):
    """Per-feature loop, MSE loss averaged over batch x features, priors / batch size."""
    from pyro_sparse.distributions import eta_mstep, inclusion_prob

    G, K, enc, dec, W, log_sigma, pstar, eta, opt_nets, opt_w, cat = _authors_parts(shape)

    def step(idx):
        xb = x[idx]
        B = xb.shape[0]
        xin = xb / xb.sum(-1, keepdim=True).clamp_min(1) if cat else xb
        loc, scale = enc(xin)
        z = loc + scale * torch.randn_like(loc)
        out = dec(z, W)
        if cat:
            rec = -(xb * torch.log_softmax(out, -1)).sum(-1).mean()
        else:
            rec = (((xb - out) / log_sigma.exp()) ** 2).mean() + log_sigma.mean()
        kl = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).mean()
        pen = ((1.0 * pstar + 10.0 * (1 - pstar)) * W.abs()).sum() / B
        loss = rec + kl + pen
        _step_both(loss, opt_nets, opt_w)
        with torch.no_grad():
            pstar.copy_(inclusion_prob(W, eta, 10.0, 1.0, "authors"))
            eta.copy_(eta_mstep(pstar, 1.0, float(G)))
        return float(loss.detach())

    return step


class _RowDataset(torch.utils.data.Dataset):
    """One dict per row, as the authors' data sets return them."""

    def __init__(self, x):
        self.x = x.numpy()

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return {"data": torch.tensor(self.x[i], dtype=torch.float)}


def authors_full_step(shape, x):
    """``authors_step`` plus the authors' script's per-step overheads (see module docstring)."""
    from torch.utils.data import DataLoader

    G, K, enc, dec, W, log_sigma, pstar, eta, opt_nets, opt_w, cat = _authors_parts(
        shape, dict(weight_decay=1.2e-6, foreach=False), dict(foreach=False))
    lam0, lam1, a, b = 10.0, 1.0, 1.0, float(G)
    data = _RowDataset(x)

    def step(idx):
        # the sampler's indices for this batch, fetched row by row and collated
        batch = next(iter(DataLoader(data, batch_size=len(idx), sampler=idx.tolist())))
        xb = batch["data"]
        B = xb.shape[0]
        xin = xb / xb.sum(-1, keepdim=True).clamp_min(1) if cat else xb
        loc, scale = enc(xin)
        z = loc + scale * torch.randn_like(loc)
        mask = torch.nn.functional.normalize(W.abs(), p=1, dim=-1)
        out = dec(z, mask)
        if cat:
            rec = -(xb * torch.log_softmax(out, -1)).sum(-1).mean()
            sig = torch.zeros(())
        else:
            rec = 0.5 * (((xb - out) / log_sigma.exp()) ** 2).mean()
            sig = ((B + 5.0) * log_sigma.sum() + 1.5 * torch.exp(-2 * log_sigma).sum()) / B
        kl = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).mean()
        pen = ((lam1 * pstar + lam0 * (1 - pstar)) * W.abs()).sum() / B
        loss = rec + kl + pen + sig
        _step_both(loss, opt_nets, opt_w)
        with torch.no_grad():
            for k in range(K):
                slab = eta[k] * torch.exp(-lam1 * W[:, k].abs())
                spike = (1 - eta[k]) * torch.exp(-lam0 * W[:, k].abs())
                pstar[:, k] = slab / (slab + spike)
                eta[k] = max((pstar[:, k].sum() + a - 1) / (a + b + G - 2), 1e-10)
        for part in (loss, rec, kl, sig, pen):
            part.item()
        return float(loss.detach())

    return step


def naive_step(shape, x):
    """(B, G, H) vectorisation of the same decoder with plain autograd and a plain ELBO."""
    s = SHAPES[shape]
    G, K, H = s["G"], s["K"], s["H"]
    from pyro_sparse.nn import GaussianEncoder

    enc = GaussianEncoder(G, K, H)
    l1, l2 = nn.Linear(K, H, bias=False), nn.Linear(H, H)
    V, c = nn.Parameter(torch.randn(G, H) * 0.1), nn.Parameter(torch.zeros(G))
    W = nn.Parameter(torch.randn(G, K))
    opt = torch.optim.Adam(list(enc.parameters()) + list(l1.parameters())
                           + list(l2.parameters()) + [V, c, W], lr=1e-2, foreach=True)

    def step(idx):
        xb = x[idx]
        loc, scale = enc(xb)
        z = loc + scale * torch.randn_like(loc)
        h = torch.relu(l2(torch.relu(l1(z.unsqueeze(1) * W))))  # (B, G, H)
        out = (h * V).sum(-1) + c
        loss = ((xb - out) ** 2).sum() + (0.5 * (loc**2 + scale**2 - 1) - scale.log()).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def bf16_matmuls(make_step):
    """``make_step`` with PyTorch's oneDNN fp32 matmuls run on bf16 inputs (fp32 accumulate).

    ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"`` is a process-wide switch (each
    measurement runs in a fresh process); on CPUs with AMX or AVX512-BF16 the matmuls run on
    those units, elsewhere they are emulated and slower.
    """

    def make(shape, x):
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
        return make_step(shape, x)

    return make


def saved_activations(make_step):
    """``make_step`` with the fused decoder saving both hidden activations at every shape
    (the decoder before 2026-12-07; now the first is recomputed in the backward once one
    (B, G, H) slab exceeds ``pyro_sparse.nn.decoder._RECOMPUTE_BYTES``)."""

    def make(shape, x):
        from pyro_sparse.nn import decoder

        decoder._RECOMPUTE_BYTES = 1 << 62
        return make_step(shape, x)

    return make


def _stock_trace_elbo():
    from pyro.infer import Trace_ELBO

    return Trace_ELBO


IMPLS = {
    "pyro": lambda shape, x: pyro_step(shape, x),
    "pyro-trace": lambda shape, x: pyro_step(shape, x, elbo_cls=_stock_trace_elbo()),
    "pyro-saveacts": saved_activations(pyro_step),
    "pyro-jit": pyro_jit_step,
    "plain": plain_step,
    "authors": authors_step,
    "authors-full": authors_full_step,
    "naive": naive_step,
    "vae": lambda shape, x: pyro_step(shape, x, vae=True),
    "pyro-bf16": bf16_matmuls(pyro_step),
    "authors-bf16": bf16_matmuls(authors_step),
}
