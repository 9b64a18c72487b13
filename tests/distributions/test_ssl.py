import math

import numpy as np
import pytest
import torch

from pyro_sparse.distributions import (
    SigmaPrior,
    SpikeSlabLasso,
    adaptive_lasso_penalty,
    calibrate_sigma_prior,
    check_spike_rates,
    eta_mstep,
    inclusion_prob,
    ssl_log_prob,
)


def hand_pstar(w, eta, l0, l1, constants=True):
    psi1 = math.exp(-l1 * abs(w)) * (l1 / 2 if constants else 1)
    psi0 = math.exp(-l0 * abs(w)) * (l0 / 2 if constants else 1)
    return eta * psi1 / (eta * psi1 + (1 - eta) * psi0)


@pytest.mark.parametrize("w,eta", [(0.3, 0.05), (0.0, 0.5), (-1.2, 0.2), (0.05, 0.9)])
@pytest.mark.parametrize("variant", ["standard", "authors"])
def test_inclusion_prob_matches_hand_computation(w, eta, variant):
    got = inclusion_prob(torch.tensor(w, dtype=torch.float64), torch.tensor(eta), 10.0, 1.0,
                         variant)
    assert float(got) == pytest.approx(hand_pstar(w, eta, 10.0, 1.0, variant == "standard"),
                                       rel=1e-6)


def test_inclusion_prob_reference_values():
    # the reference's example: eta=0.05, |w|=0.3 gives 0.073 (standard) vs 0.44 (authors)
    w, eta = torch.tensor(0.3), torch.tensor(0.05)
    assert float(inclusion_prob(w, eta, 10.0, 1.0)) == pytest.approx(0.073, abs=1e-3)
    assert float(inclusion_prob(w, eta, 10.0, 1.0, "authors")) == pytest.approx(0.44, abs=5e-3)


def test_inclusion_prob_rejects_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        inclusion_prob(torch.zeros(1), torch.tensor(0.5), 10.0, 1.0, "bogus")


def test_ssl_log_prob_is_log_of_mixture():
    w = torch.linspace(-3, 3, 61, dtype=torch.float64).reshape(-1, 1)
    eta = torch.tensor([0.1, 0.7], dtype=torch.float64)
    got = ssl_log_prob(w, eta, 10.0, 1.0)
    want = torch.log(eta * 0.5 * torch.exp(-w.abs()) + (1 - eta) * 5 * torch.exp(-10 * w.abs()))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("seed", range(5))
def test_gradient_of_marginal_prior_equals_em_penalty_gradient(seed):
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(20, 4, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    eta = torch.rand(4, generator=g, dtype=torch.float64) * 0.9 + 0.05
    (grad_marginal,) = torch.autograd.grad(ssl_log_prob(w, eta, 10.0, 1.0).sum(), w)
    p = inclusion_prob(w.detach(), eta, 10.0, 1.0)
    (grad_em,) = torch.autograd.grad(-adaptive_lasso_penalty(w, p, 10.0, 1.0), w)
    torch.testing.assert_close(grad_marginal, grad_em)


def test_eta_mstep_formula_and_clamp():
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    eta = eta_mstep(p, a=1.0, b=3.0)
    assert eta[0] == pytest.approx((2.5 + 0.0) / (1 + 3 + 3 - 2))
    assert eta[1] == pytest.approx(1e-10)


def test_ssl_distribution_density_integrates_to_one_and_samples():
    d = SpikeSlabLasso(torch.tensor(0.3, dtype=torch.float64), 10.0, 1.0)
    grid = torch.linspace(-40, 40, 400001, dtype=torch.float64)
    mass = torch.trapezoid(d.log_prob(grid).exp(), grid)
    assert float(mass) == pytest.approx(1.0, abs=1e-4)
    s = SpikeSlabLasso(torch.full((20000,), 0.3), 10.0, 1.0).sample()
    # E|w| = eta / lambda1 + (1 - eta) / lambda0
    assert float(s.abs().mean()) == pytest.approx(0.3 + 0.07, rel=0.05)


def test_authors_variant_has_em_gradient():
    w = (torch.randn(10, 3) * 0.4).requires_grad_()
    eta = torch.tensor([0.2, 0.5, 0.8])
    d = SpikeSlabLasso(eta.expand(10, 3), 10.0, 1.0, "authors")
    (g,) = torch.autograd.grad(d.log_prob(w).sum(), w)
    p = inclusion_prob(w.detach(), eta, 10.0, 1.0, "authors")
    (want,) = torch.autograd.grad(-adaptive_lasso_penalty(w, p, 10.0, 1.0), w)
    torch.testing.assert_close(g, want)


def test_sigma_prior_matches_transformed_inverse_gamma():
    from pyro.distributions import InverseGamma, TransformedDistribution
    from torch.distributions.transforms import PowerTransform

    nu, xi = 3.0, 0.2
    ours = SigmaPrior(nu, xi)
    ref = TransformedDistribution(InverseGamma(torch.tensor(nu / 2), torch.tensor(nu * xi / 2)),
                                  [PowerTransform(torch.tensor(0.5))])
    s = torch.linspace(0.05, 5, 50)
    torch.testing.assert_close(ours.log_prob(s), ref.log_prob(s), rtol=1e-5, atol=1e-5)
    draws = SigmaPrior(nu, xi, (50000,)).sample()
    assert (draws > 0).all()


def test_calibrate_sigma_prior():
    nu, xi = calibrate_sigma_prior(np.linspace(1, 2, 101))
    assert nu == 3.0
    assert xi == pytest.approx(0.1948 * 1.05**2, rel=1e-6)
    assert calibrate_sigma_prior(np.zeros(5))[1] == pytest.approx(0.1948e-6)


def test_spike_rates_check():
    check_spike_rates(10.0, 1.0)
    check_spike_rates(1.0, 1.0)  # one Laplace: the Slab variant
    with pytest.raises(ValueError, match=r"lambda0 \(spike rate, 0.5\) must be >= lambda1"):
        check_spike_rates(0.5, 1.0)
