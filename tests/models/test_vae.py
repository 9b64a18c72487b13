import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyro_sparse.guides import make_guide
from pyro_sparse.models import VAEModel


def test_beta_scales_the_kl_terms_in_model_and_guide():
    x = torch.randn(12, 4)
    with pyro.settings.context(module_local_params=True):
        m1 = VAEModel(4, 2, 8, beta=1.0)
        g1 = make_guide(m1).eval()
        m4 = VAEModel(4, 2, 8, beta=4.0)
        g4 = make_guide(m4).eval()
        m4.load_state_dict(m1.state_dict())
        g4.load_state_dict(g1.state_dict())
        pyro.set_rng_seed(0)
        gt = poutine.trace(g1).get_trace(x)
        t1 = poutine.trace(poutine.replay(m1, trace=gt)).get_trace(x)
        gt4 = poutine.trace(poutine.replay(g4, trace=gt)).get_trace(x)
        t4 = poutine.trace(poutine.replay(m4, trace=gt)).get_trace(x)
        for tr in (gt, t1, gt4, t4):
            tr.compute_log_prob()
    kl1 = (gt.nodes["z"]["log_prob_sum"] - t1.nodes["z"]["log_prob_sum"]).detach()
    # log_prob_sum already carries the site's scale (beta)
    kl4 = (gt4.nodes["z"]["log_prob_sum"] - t4.nodes["z"]["log_prob_sum"]).detach()
    assert gt4.nodes["z"]["scale"] == t4.nodes["z"]["scale"] == 4.0
    assert float(kl4) == pytest.approx(4 * float(kl1), rel=1e-5)
    assert float(kl1) != 0.0
    assert "W" not in t1.nodes


def test_vae_elbo_finite_and_errors():
    with pyro.settings.context(module_local_params=True):
        m = VAEModel(4, 2, 8, beta=2.0)
        assert torch.isfinite(torch.tensor(Trace_ELBO().loss(m, make_guide(m),
                                                             torch.randn(5, 4))))
    with pytest.raises(ValueError, match="beta"):
        VAEModel(4, 2, 8, beta=0.0)
