import pyro
import pytest
import torch

from pyro_sparse.distributions import eta_mstep, inclusion_prob
from pyro_sparse.guides import MAPGlobalGuide, MeanFieldGlobalGuide, make_guide
from pyro_sparse.models import SparseVAEModel


def local():
    return pyro.settings.context(module_local_params=True)


def test_map_guide_runs_one_em_step_per_call_in_training_mode_only():
    with local():
        model = SparseVAEModel(6, 3, 8)
        g = MAPGlobalGuide(model)
        eta0 = g.eta_k.clone()
        want = eta_mstep(inclusion_prob(g.W_gk.detach(), eta0, 10.0, 1.0), model.a, model.b)
        g.train()
        g()
        torch.testing.assert_close(g.eta_k, want)
        g.eval()
        before = g.eta_k.clone()
        with torch.no_grad():
            g.W_gk.mul_(0)
        g()
        torch.testing.assert_close(g.eta_k, before)


def test_meanfield_guide_draws_and_inclusion():
    with local():
        model = SparseVAEModel(6, 3, 8)
        g = MeanFieldGlobalGuide(model, init_sd=0.3)
        draws = g.sample_W(500)
        assert draws.shape == (500, 6, 3)
        assert float(draws.std(0).mean()) == pytest.approx(0.3, rel=0.1)
        p = g.inclusion_probs()
        assert p.shape == (6, 3) and ((p >= 0) & (p <= 1)).all()


def test_make_guide_rejects_unknown_w_guide():
    with pytest.raises(ValueError, match="unknown w_guide 'laplace'"):
        make_guide(SparseVAEModel(3, 2, 4), "laplace")


def test_sigma_initialised_at_column_sd():
    with local():
        g = MAPGlobalGuide(SparseVAEModel(3, 2, 4))
        g.init_sigma(torch.tensor([0.5, 2.0, 0.0]))
        torch.testing.assert_close(g.sigma_g1.squeeze(-1), torch.tensor([0.5, 2.0, 1e-3]))
