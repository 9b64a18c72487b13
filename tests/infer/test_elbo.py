"""ReparamTrace_ELBO against pyro.infer.Trace_ELBO: the same loss and gradients, bit for bit."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

import pyro_sparse as ps
from pyro_sparse.estimators import _local_params
from pyro_sparse.infer import ReparamTrace_ELBO, make_elbo
from pyro_sparse.models import SparseVAEModel
from pyro_sparse.models._plates import full_plate

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 5)).astype("float32")
X_NAN = X.copy()
X_NAN[3, 2] = np.nan
COUNTS = rng.poisson(3.0, size=(40, 5)).astype("float32")

CASES = [(ps.SparseVAE, dict(w_guide=g), X)
         for g in ("map", "meanfield", "lowrank", "spikeslab", "spikeslab_lowrank")]
CASES += [(ps.SparseVAE, dict(likelihood="categorical"), COUNTS),
          (ps.SparseVAE, dict(likelihood="negbin"), COUNTS),
          (ps.SparseVAE, dict(factor_correlation=True), X_NAN),
          (ps.VAE, dict(), X),
          (ps.VAE, dict(likelihood="poisson"), COUNTS)]


def _loss_and_grads(elbo, est, data, seed=1, num_particles=None):
    with _local_params(), pyro.validation_enabled(False):
        model, guide = est._build(est._model_config(data), torch.device("cpu"), 0)
        x, idx = torch.as_tensor(data), torch.arange(5, 20)
        args = (x[idx], x.shape[0], idx, 0.5, 0.7)
        pyro.set_rng_seed(seed)
        loss = elbo.differentiable_loss(model, guide, *args)
        loss.backward()
        pyro.set_rng_seed(seed)
        value = elbo.loss(model, guide, *args)
    grads = {n: p.grad for n, p in
             list(model.named_parameters()) + list(guide.named_parameters())
             if p.grad is not None}
    return loss.detach(), value, grads


@pytest.mark.parametrize("cls, kw, data", CASES,
                         ids=[f"{c.__name__}-{'-'.join(map(str, k.values())) or 'default'}"
                              for c, k, _ in CASES])
def test_same_loss_and_gradients_as_trace_elbo(cls, kw, data):
    est = cls(n_factors=3, hidden_dim=8, **kw)
    l0, v0, g0 = _loss_and_grads(Trace_ELBO(), est, data)
    l1, v1, g1 = _loss_and_grads(ReparamTrace_ELBO(), est, data)
    assert torch.equal(l0, l1)
    assert v0 == v1
    assert g0.keys() == g1.keys() and len(g0) > 3
    for name in g0:
        assert torch.equal(g0[name], g1[name]), name


def test_several_particles_average_as_trace_elbo():
    est = ps.SparseVAE(n_factors=2, hidden_dim=8)
    l0, v0, g0 = _loss_and_grads(Trace_ELBO(num_particles=3), est, X)
    l1, v1, g1 = _loss_and_grads(ReparamTrace_ELBO(num_particles=3), est, X)
    assert torch.allclose(l0, l1) and v0 == pytest.approx(v1, rel=1e-6)
    for name in g0:
        assert torch.allclose(g0[name], g1[name], rtol=1e-5, atol=1e-6), name


def _nonreparam_model(x):
    p = pyro.sample("p", dist.Beta(2.0, 2.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Bernoulli(p), obs=x)


def _nonreparam_guide(x):
    a = pyro.param("a", torch.tensor(2.0), constraint=dist.constraints.positive)
    u = pyro.sample("u", dist.Bernoulli(0.5))            # not reparameterised: score function
    pyro.sample("p", dist.Beta(a + u, 2.0))


def test_guide_without_reparameterisation_falls_back_to_trace_elbo():
    x = torch.tensor([1.0, 0.0, 1.0, 1.0])
    out = []
    for elbo in (Trace_ELBO(), ReparamTrace_ELBO()):
        pyro.clear_param_store()
        with pyro.validation_enabled(False):
            pyro.set_rng_seed(0)
            loss = elbo.differentiable_loss(_nonreparam_model, _nonreparam_guide, x)
            loss.backward()
        out.append((loss.detach(), pyro.param("a").unconstrained().grad.clone()))
    assert torch.equal(out[0][0], out[1][0])
    assert torch.equal(out[0][1], out[1][1]) and out[0][1].abs() > 0


def test_user_svi_loop_with_validation_on():
    # validation on: Trace_ELBO's own path, its model/guide checks included
    pyro.clear_param_store()
    model = SparseVAEModel(5, 2, 8)
    guide = ps.guides.make_guide(model)
    x = torch.as_tensor(X)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), ReparamTrace_ELBO())
    with pyro.validation_enabled(True):
        losses = [svi.step(x) for _ in range(3)]
    assert all(np.isfinite(losses))
    pyro.clear_param_store()


def test_make_elbo_picks_it_for_the_mixture_model():
    assert isinstance(make_elbo(SparseVAEModel(5, 2, 8)), ReparamTrace_ELBO)
    assert not isinstance(make_elbo(SparseVAEModel(5, 2, 8, marginalize="enumerate")),
                          ReparamTrace_ELBO)


def test_full_plate_is_reused_and_leaves_no_site():
    a = full_plate("features", 7, -2)
    assert full_plate("features", 7, -2) is a
    assert full_plate("features", 8, -2) is not a
    with poutine.trace() as tr:
        full_plate("factors", 11, -1)          # built inside a trace: no subsample site
        with full_plate("factors", 11, -1):
            pyro.sample("w", dist.Normal(torch.zeros(11), 1.0))
    assert list(tr.trace.nodes) == ["w"]
    assert tr.trace.nodes["w"]["cond_indep_stack"][0].name == "factors"


def test_guide_messenger_takes_trace_elbos_own_path():
    from pyro.infer.autoguide import AutoNormalMessenger

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    x = torch.tensor([0.5, 1.5, 1.0])
    out = []
    for elbo in (Trace_ELBO(), ReparamTrace_ELBO()):
        pyro.clear_param_store()
        guide = AutoNormalMessenger(model)
        with pyro.validation_enabled(False):
            pyro.set_rng_seed(0)
            out.append(float(elbo.differentiable_loss(model, guide, x)))
    assert out[0] == out[1]
    pyro.clear_param_store()
