import pyro
import pytest
import torch

from pyro_sparse.distributions import eta_mstep, inclusion_prob
from pyro_sparse.guides import (
    LowRankGlobalGuide,
    MAPGlobalGuide,
    MeanFieldGlobalGuide,
    SpikeSlabGlobalGuide,
    SpikeSlabLowRankGlobalGuide,
    make_guide,
)
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


@pytest.mark.parametrize("cls", [MeanFieldGlobalGuide, LowRankGlobalGuide])
def test_gaussian_guides_inclusion_is_seeded_chunked_and_matches_many_draws(cls, monkeypatch):
    import pyro_sparse.guides.globals as globals_mod

    with local():
        model = SparseVAEModel(6, 3, 8)
        g = cls(model, init_sd=0.3)
        with torch.no_grad():
            g.W_loc_gk.copy_(torch.linspace(-0.5, 0.5, 18).reshape(6, 3))
        torch.manual_seed(1)
        p = g.inclusion_probs()
        torch.manual_seed(2)  # the global random state does not enter
        torch.testing.assert_close(g.inclusion_probs(), p, atol=0.0, rtol=0.0)
        # E_q[p*] against 100,000 independent draws: within the Monte Carlo error of 2,000
        draws = g.sample_W(100_000, generator=torch.Generator().manual_seed(5))
        want = inclusion_prob(draws, g.eta_k, 10.0, 1.0).mean(0)
        torch.testing.assert_close(p, want, atol=0.03, rtol=0.0)
        # memory stays bounded: draws taken a few at a time give the same estimate
        monkeypatch.setattr(globals_mod, "INCLUSION_CHUNK", 18 * 7)
        torch.testing.assert_close(g.inclusion_probs(), want, atol=0.03, rtol=0.0)


def test_lowrank_guide_density_and_marginal_sd():
    with local():
        model = SparseVAEModel(5, 2, 8)
        g = LowRankGlobalGuide(model, init_sd=0.2)
        with torch.no_grad():
            g.W_factor_ir.normal_(0.0, 0.3)
        draws = g.sample_W(4000, generator=torch.Generator().manual_seed(0))
        assert draws.shape == (4000, 5, 2)
        torch.testing.assert_close(draws.std(0), g.W_scale_gk.detach(), rtol=0.08, atol=0.0)
        # entries are correlated through U: the empirical covariance matches D + U U^T
        cov = torch.cov(draws.reshape(4000, -1).T)
        want = torch.diag(g.W_logsd_gk.exp().reshape(-1) ** 2) + \
            g.W_factor_ir @ g.W_factor_ir.T
        torch.testing.assert_close(cov, want.detach(), atol=0.03, rtol=0.0)
        # the W site carries the exact joint log q(W), spread over the G x K entries
        tr = pyro.poutine.trace(g).get_trace()
        site = tr.nodes["W"]
        joint = g._q().log_prob(site["value"].reshape(-1))
        torch.testing.assert_close(site["fn"].log_prob(site["value"]).sum(), joint)


def test_spikeslab_guide_draws_inclusion_and_em_step():
    with local():
        model = SparseVAEModel(5, 2, 8)
        g = SpikeSlabGlobalGuide(model, init_sd=0.2)
        with torch.no_grad():
            g.W_loc_gk.copy_(torch.tensor([[0.0, 0.1], [0.3, -0.4], [0.6, 1.0],
                                           [-1.5, 0.05], [2.0, -0.2]]))
        q = g._q()
        draws = g.sample_W(20000, generator=torch.Generator().manual_seed(0))
        assert draws.shape == (20000, 5, 2)
        # draws follow q; the reported loadings are q's mean, shrunk from the tilt centres
        torch.testing.assert_close(draws.mean(0), q.mean, atol=0.01, rtol=0.0)
        torch.testing.assert_close(g.W_scale_gk, q.variance.sqrt())
        torch.testing.assert_close(g.point_estimates()["W"], q.mean)
        m = q.mean.detach()
        assert float(m[0, 0]) == 0.0 and 0 < float(m[2, 0]) < 0.6
        # the closed-form inclusion is E_q[p*] over the draws
        p = g.inclusion_probs()
        mc = inclusion_prob(draws, g.eta_k, 10.0, 1.0).mean(0)
        torch.testing.assert_close(p, mc, atol=0.01, rtol=0.0)
        # one EM step per call in training mode, from the closed-form inclusion
        want = eta_mstep(p, model.a, model.b)
        g.train()
        tr = pyro.poutine.trace(g).get_trace()
        torch.testing.assert_close(g.eta_k, want)
        # the W site is q (with the new eta): its log-density is q's
        site = tr.nodes["W"]
        torch.testing.assert_close(site["fn"].log_prob(site["value"]),
                                   g._q().log_prob(site["value"]))


def test_spikeslab_guide_caps_the_tilt_sd():
    # an entry the data do not inform drifts towards the prior, i.e. an ever wider tilt; a
    # fit once reached exp(17) there, where the closed-form mean came out as 1e19 and the
    # next step was NaN. Beyond 20 slab scales the tilt is capped: q is then the prior to
    # within about 1% in sd, and its mean, sd and draws stay finite and right
    with local():
        model = SparseVAEModel(3, 2, 8)
        g = SpikeSlabGlobalGuide(model, init_sd=0.2)
        with torch.no_grad():
            g.W_loc_gk.copy_(torch.tensor([[1.53, 0.2], [0.0, -0.4], [0.6, 1.0]]))
            g.W_logsd_gk[0, 0] = 17.0
        eta = float(g.eta_k[0])
        prior_sd = (2 * eta / 1.0**2 + 2 * (1 - eta) / 10.0**2) ** 0.5
        m, sd = g._W_point(), g.W_scale_gk
        assert torch.isfinite(m).all() and torch.isfinite(sd).all()
        assert abs(float(m[0, 0])) < 0.02 * prior_sd
        assert float(sd[0, 0]) == pytest.approx(prior_sd, rel=0.02)
        draws = g.sample_W(20000, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(draws).all()
        assert float(draws[:, 0, 0].std()) == pytest.approx(prior_sd, rel=0.05)
        # the capped sd is what q, set_rows and the scale step use
        assert float(g._q().scale[0, 0]) == pytest.approx(20.0)
        g.set_rows([0], torch.tensor([[0.5, 0.2]]))
        torch.testing.assert_close(g._W_point()[0], torch.tensor([0.5, 0.2]), atol=1e-5,
                                   rtol=0.0)


def test_spikeslab_lowrank_guide_keeps_the_marginals_and_couples_the_entries():
    with local():
        model = SparseVAEModel(5, 2, 8)
        g = SpikeSlabLowRankGlobalGuide(model, init_sd=0.2)
        assert g.W_factor_ir.shape == (10, 2)
        with torch.no_grad():
            g.W_loc_gk.copy_(torch.tensor([[0.0, 0.1], [0.3, -0.4], [0.6, 1.0],
                                           [-1.5, 0.05], [2.0, -0.2]]))
            g.W_factor_ir.copy_(torch.linspace(-1.5, 1.5, 20).reshape(10, 2))
        q = g._q()
        draws = g.sample_W(20000, generator=torch.Generator().manual_seed(0))
        assert draws.shape == (20000, 5, 2)
        # the copula changes no marginal: means, sds and inclusion are q's
        torch.testing.assert_close(draws.mean(0), q.mean, atol=0.01, rtol=0.0)
        torch.testing.assert_close(draws.std(0), q.variance.sqrt(), atol=0.01, rtol=0.05)
        torch.testing.assert_close(g.inclusion_probs(), q.inclusion_prob())
        mc = inclusion_prob(draws, g.eta_k, 10.0, 1.0).mean(0)
        torch.testing.assert_close(g.inclusion_probs(), mc, atol=0.01, rtol=0.0)
        # ... while the draws' normal scores carry the copula's correlation
        C = g.copula_correlation()
        assert C.shape == (10, 10) and float(C[0, 9].abs()) > 0.3
        z = q.normal_score(draws).reshape(20000, 10)
        torch.testing.assert_close(torch.corrcoef(z.T), C, atol=0.03, rtol=0.0)
        # the W site carries the exact joint log q(W) spread over the entries
        g.train()
        tr = pyro.poutine.trace(g).get_trace()
        site = tr.nodes["W"]
        torch.testing.assert_close(site["fn"].log_prob(site["value"]).sum(),
                                   g._copula().log_prob(site["value"]))
        # rescaling a column moves its marginals (mean exactly), not the correlation
        m0 = g._q().mean.detach().clone()
        g.scale_columns(torch.tensor([2.0, 0.5]))
        torch.testing.assert_close(g._q().mean, m0 * torch.tensor([2.0, 0.5]), atol=1e-6,
                                   rtol=1e-5)
        torch.testing.assert_close(g.copula_correlation(), C)


def test_spikeslab_guide_needs_the_standard_pstar():
    with pytest.raises(ValueError, match="pstar='standard'"):
        SpikeSlabGlobalGuide(SparseVAEModel(4, 2, 8, pstar="authors"))


def test_make_guide_rejects_unknown_w_guide():
    with pytest.raises(ValueError, match="unknown w_guide 'laplace'"):
        make_guide(SparseVAEModel(3, 2, 4), "laplace")


def test_sigma_initialised_at_column_sd():
    with local():
        g = MAPGlobalGuide(SparseVAEModel(3, 2, 4))
        g.init_sigma(torch.tensor([0.5, 2.0, 0.0]))
        torch.testing.assert_close(g.sigma_g1.squeeze(-1), torch.tensor([0.5, 2.0, 1e-3]))


@pytest.mark.parametrize("w_guide", ["map", "meanfield", "lowrank", "spikeslab",
                                     "spikeslab_lowrank"])
def test_set_rows_sets_the_reported_loadings(w_guide):
    with local():
        model = SparseVAEModel(5, 3, 8)
        g = make_guide(model, w_guide).globals_guide
        before = g.point_estimates()["W"]
        want = torch.tensor([[0.0, 0.02, -0.7], [1.5, -0.4, 0.05]])
        g.set_rows([1, 3], want)
        W = g.point_estimates()["W"]
        torch.testing.assert_close(W[[1, 3]], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(W[[0, 2, 4]], before[[0, 2, 4]], atol=1e-6, rtol=0)
        g.set_rows([], torch.zeros(0, 3))  # nothing to set
        torch.testing.assert_close(g.point_estimates()["W"], W)
        with pytest.raises(ValueError, match="expected \\(2, 3\\)"):
            g.set_rows([1, 3], want[:, :2])


@pytest.mark.parametrize("w_guide", ["map", "meanfield", "lowrank", "spikeslab",
                                     "spikeslab_lowrank"])
def test_set_columns_sets_the_reported_loadings(w_guide):
    with local():
        model = SparseVAEModel(5, 3, 8)
        g = make_guide(model, w_guide).globals_guide
        before = g.point_estimates()["W"]
        want = torch.tensor([[0.0, 0.02], [0.3, -0.4], [0.6, 1.0], [-1.5, 0.05], [2.0, -0.2]])
        g.set_columns([0, 2], want)
        W = g.point_estimates()["W"]
        # the posterior mean (not, for spike-and-slab, the tilt centre) lands on the values
        torch.testing.assert_close(W[:, [0, 2]], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(W[:, 1], before[:, 1])
        with pytest.raises(ValueError, match="expected \\(5, 2\\)"):
            g.set_columns([0, 2], want[:3])
