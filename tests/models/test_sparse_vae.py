import pyro
import pyro.optim
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO

from pyro_sparse.guides import make_guide
from pyro_sparse.models import SparseVAEModel


def local():
    return pyro.settings.context(module_local_params=True)


def test_model_sites_and_shapes():
    G, K, B = 6, 3, 8
    with local():
        model = SparseVAEModel(G, K, 10)
        guide = make_guide(model)
        x = torch.randn(B, G)
        gtr = poutine.trace(guide).get_trace(x)
        tr = poutine.trace(poutine.replay(model, trace=gtr)).get_trace(x)
    shapes = {n: tuple(s["value"].shape) for n, s in tr.nodes.items() if s["type"] == "sample"}
    assert shapes["eta"] == (K,)
    assert shapes["W"] == (G, K)
    assert shapes["sigma"] == (G, 1)
    assert shapes["z"] == (B, K)
    assert shapes["x"] == (B, G)
    assert tr.nodes["x"]["is_observed"]
    assert set(tr.nodes["W"]["cond_indep_stack"][i].name for i in range(2)) == {"features",
                                                                                 "factors"}


def test_enumerated_gamma_gives_same_elbo_as_closed_form_mixture():
    x = torch.randn(30, 5)
    with local():
        m1 = SparseVAEModel(5, 3, 8, marginalize="mixture")
        m2 = SparseVAEModel(5, 3, 8, marginalize="enumerate")
        m2.load_state_dict(m1.state_dict())
        guide = make_guide(m1).eval()
        pyro.set_rng_seed(1)
        a = Trace_ELBO().loss(m1, guide, x, 100)
        pyro.set_rng_seed(1)
        b = TraceEnum_ELBO(max_plate_nesting=2).loss(m2, guide, x, 100)
    assert a == pytest.approx(b, rel=1e-6)


def test_categorical_and_correlated_factor_models_run():
    x = torch.poisson(torch.full((20, 6), 3.0)) + 1
    with local():
        model = SparseVAEModel(6, 3, 8, likelihood="categorical", factor_correlation=True)
        guide = make_guide(model)
        loss = Trace_ELBO().loss(model, guide, x, 20)
        tr = poutine.trace(guide).get_trace(x)
    assert torch.isfinite(torch.tensor(loss))
    assert "sigma" not in tr.nodes and tr.nodes["corr_L"]["value"].shape == (3, 3)


def _elbo_at(model, guide, values, *args):
    """ELBO with the guide's W and z fixed at ``values`` (exact, no Monte Carlo noise)."""
    gtr = poutine.trace(poutine.condition(guide, values)).get_trace(*args)
    for name in values:
        gtr.nodes[name]["is_observed"] = False  # let the model replay the fixed draws
    mtr = poutine.trace(poutine.replay(model, trace=gtr)).get_trace(*args)
    return float((mtr.log_prob_sum() - gtr.log_prob_sum()).detach())


def test_minibatch_elbo_is_unbiased_for_full_data_elbo():
    """Averaging the N/B-scaled minibatch ELBOs over a partition gives the full-data ELBO.

    W and z are fixed at the same draws in the full and the minibatch runs, so the check is
    exact: data terms scale by N/B, global priors and the guide's W term count once.
    """
    N, G, K, B = 60, 5, 3, 15
    x = torch.randn(N, G)
    with local():
        model = SparseVAEModel(G, K, 8)
        guide = make_guide(model, "meanfield").eval()
        pyro.set_rng_seed(0)
        W = guide.globals_guide.sample_W(1)[0]
        z = torch.randn(N, K)
        full = _elbo_at(model, guide, {"W": W, "z": z}, x, N)
        parts = [_elbo_at(model, guide, {"W": W, "z": z[s:s + B]}, x[s:s + B], N,
                          torch.arange(s, s + B)) for s in range(0, N, B)]
    assert sum(parts) / len(parts) == pytest.approx(full, rel=1e-5)
    assert not all(p == pytest.approx(full, rel=1e-3) for p in parts)  # batches do differ


def test_user_written_svi_loop_with_global_param_store():
    """The README's loop: plain pyro.infer.SVI with pyro.optim, no pyro_sparse training code."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    N, G = 200, 6
    x = torch.randn(N, 2) @ torch.randn(2, G) + 0.1 * torch.randn(N, G)
    model = SparseVAEModel(n_features=G, n_factors=3, hidden_dim=16)
    guide = make_guide(model, w_guide="map")
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    W0 = guide.globals_guide.W_gk.detach().clone()
    losses = []
    for _epoch in range(30):
        perm = torch.randperm(N)
        tot = 0.0
        for s in range(0, N, 50):
            idx = perm[s:s + 50]
            tot += svi.step(x[idx], n_data=N, idx=idx)
        losses.append(tot / 4)
    assert losses[-1] < losses[0]
    assert not torch.equal(W0, guide.globals_guide.W_gk.detach())  # SVI trained the module
    names = set(pyro.get_param_store().keys())
    assert "globals_guide$W_gk" in names and any(n.startswith("sparse_vae$") for n in names)


def test_stale_param_store_is_reported():
    pyro.clear_param_store()
    x = torch.randn(10, 4)
    m1 = SparseVAEModel(4, 2, 8)
    Trace_ELBO().loss(m1, make_guide(m1), x)
    m2 = SparseVAEModel(4, 2, 8)
    with pytest.raises(RuntimeError, match="clear_param_store"):
        Trace_ELBO().loss(m2, make_guide(m2), x)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_factors=0), "n_factors must be >= 1"),
    (dict(likelihood="gauss"), "unknown likelihood"),
    (dict(marginalize="sample"), "marginalize"),
    (dict(pstar="x"), "pstar"),
    (dict(lambda0=-1.0), "lambda0"),
    (dict(lambda0=0.5, lambda1=2.0), "must be >= lambda1"),
    (dict(pstar="authors", marginalize="enumerate"), "needs marginalize='mixture'"),
])
def test_model_argument_errors(kwargs, match):
    args = dict(n_features=4, n_factors=2, hidden_dim=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SparseVAEModel(**args)


def test_prior_sampling_without_data():
    with local():
        model = SparseVAEModel(5, 2, 8)
        tr = poutine.trace(model).get_trace(None, n_samples=7)
    assert tr.nodes["x"]["value"].shape == (7, 5)
    assert tr.nodes["W"]["value"].shape == (5, 2)
