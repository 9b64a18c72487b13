"""The SSL prior tilted by a Gaussian: closed forms against quadrature, exact draws, gradients,
and a known posterior recovered by SVI."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from pyro_sparse.distributions import SpikeSlabLasso, TiltedSpikeSlabLasso, inclusion_prob

L0, L1 = 10.0, 1.0
CASES = [(0.0, 0.3, 0.3), (1.5, 0.2, 0.2), (-0.7, 0.5, 0.6), (0.05, 0.02, 0.1),
         (3.0, 0.05, 0.01), (-4.0, 1.0, 0.5)]


def q_of(mu, s, eta, dtype=torch.float64):
    t = lambda v: torch.tensor(v, dtype=dtype)  # noqa: E731
    return TiltedSpikeSlabLasso(t(mu), t(s), t(eta), L0, L1)


def quadrature(mu, s, eta):
    """Unnormalised prior x tilt on a fine grid: (grid, density / Z, dx)."""
    grid = torch.linspace(-12.0, 12.0, 1_200_001, dtype=torch.float64)
    dens = (SpikeSlabLasso(torch.tensor(eta, dtype=torch.float64), L0, L1).log_prob(grid).exp()
            * torch.distributions.Normal(mu, s).log_prob(grid).exp())
    dx = float(grid[1] - grid[0])
    return grid, dens / (dens.sum() * dx), dx


@pytest.mark.parametrize("mu,s,eta", CASES)
def test_density_moments_and_inclusion_match_quadrature(mu, s, eta):
    q = q_of(mu, s, eta)
    grid, dens, dx = quadrature(mu, s, eta)
    # log_prob is normalised and equals prior x tilt / Z
    assert float(q.log_prob(grid).exp().sum() * dx) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(q.log_prob(grid[::1000]).exp(), dens[::1000], rtol=1e-3,
                               atol=1e-8)
    m = float((grid * dens).sum() * dx)
    v = float((grid**2 * dens).sum() * dx) - m**2
    assert float(q.mean) == pytest.approx(m, abs=1e-5)
    assert float(q.variance) == pytest.approx(v, rel=1e-3, abs=1e-7)
    # P_q(gamma = 1) = E_q[p*(w)]
    pi = float((inclusion_prob(grid, torch.tensor(eta, dtype=torch.float64), L0, L1)
                * dens).sum() * dx)
    assert float(q.inclusion_prob()) == pytest.approx(pi, abs=1e-5)
    # the CDF, on both sides of 0
    cdf = torch.cumsum(dens, 0) * dx
    for i in (300_000, 599_000, 601_000, 700_000):
        assert float(q.cdf(grid[i])) == pytest.approx(float(cdf[i]), abs=2e-4)


@pytest.mark.parametrize("mu,s,eta", CASES + [(0.0, 0.01, 0.5), (0.3, 0.1, 0.25)])
def test_draws_follow_the_distribution(mu, s, eta):
    q = q_of(mu, s, eta)
    x = q.sample((20_000,), generator=torch.Generator().manual_seed(0))
    ks = stats.kstest(x.numpy(), lambda t: q.cdf(torch.as_tensor(t)).numpy())
    assert ks.pvalue > 1e-3
    # reproducible with a generator
    y = q.sample((20_000,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, y)


@pytest.mark.parametrize("mu,s,eta", [(0.3, 0.1, 0.25), (-0.7, 0.5, 0.6), (1.5, 0.2, 0.2)])
def test_implicit_gradients_match_the_closed_form(mu, s, eta):
    p = torch.tensor([mu, s, eta], dtype=torch.float64, requires_grad=True)
    torch.manual_seed(0)
    x = TiltedSpikeSlabLasso(p[0], p[1], p[2], L0, L1).rsample((200_000,))
    (g_mc,) = torch.autograd.grad((x**2).mean(), p)
    (g_exact,) = torch.autograd.grad(
        TiltedSpikeSlabLasso(p[0], p[1], p[2], L0, L1).second_moment, p)
    np.testing.assert_allclose(g_mc, g_exact, rtol=0.03, atol=3e-3)


@pytest.mark.parametrize("mu,s,lam0", [(1.5, 20.0, 10.0), (-3.0, 20.0, 100.0),
                                        (0.0, 20.0, 50.0), (0.3, 8.0, 100.0)])
def test_moments_stay_accurate_for_a_wide_tilt(mu, s, lam0):
    """A tilt far wider than the prior (q close to the prior itself; s lambda0 up to 2,000
    puts the spike pieces' truncation points that many sds out) keeps its mean and variance.
    Ratios of underflowing normal tails and an E[w^2] - E[w]^2 difference lost them (the
    variance came out 0 at s lambda0 = 2,000)."""
    eta = torch.tensor(0.27, dtype=torch.float64)
    q = TiltedSpikeSlabLasso(torch.tensor(mu, dtype=torch.float64),
                             torch.tensor(s, dtype=torch.float64), eta, lam0, L1)
    grid = torch.linspace(-60.0, 60.0, 2_400_001, dtype=torch.float64)
    log_dens = (SpikeSlabLasso(eta, lam0, L1).log_prob(grid)
                + torch.distributions.Normal(mu, s).log_prob(grid))
    dens = (log_dens - log_dens.max()).exp()
    dens = dens / dens.sum()
    m = float((grid * dens).sum())
    v = float(((grid - m) ** 2 * dens).sum())
    assert float(q.mean) == pytest.approx(m, abs=1e-5)
    assert float(q.variance) == pytest.approx(v, rel=1e-4)
    assert float(q.second_moment) == pytest.approx(v + m**2, rel=1e-4)
    x = q.sample((20_000,), generator=torch.Generator().manual_seed(1))
    ks = stats.kstest(x.numpy(), lambda t: q.cdf(torch.as_tensor(t)).numpy())
    assert ks.pvalue > 1e-3
    # the quantile function (the copula guide's draws) as well: F(w(score)) = Phi(score)
    sc = torch.randn(5000, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    w = q.from_normal_score(sc)
    err = (q.cdf(w) - torch.distributions.Normal(0.0, 1.0).cdf(sc)).abs().max()
    assert float(err) < 1e-6


def test_float32_batches_and_expand():
    q = TiltedSpikeSlabLasso(torch.zeros(4, 3), torch.full((4, 3), 0.2), torch.tensor(0.3),
                             L0, L1)
    assert q.batch_shape == (4, 3) and q.mean.dtype == torch.float32
    w = q.rsample((5,))
    assert w.shape == (5, 4, 3) and w.dtype == torch.float32
    assert q.log_prob(w).shape == (5, 4, 3)
    assert q.expand((2, 4, 3)).sample().shape == (2, 4, 3)


def test_loc_for_mean_inverts_the_mean():
    s = torch.tensor([0.02, 0.1, 0.5, 1.0], dtype=torch.float64)
    target = torch.tensor([0.001, -0.4, 2.0, -3.0], dtype=torch.float64)
    loc = TiltedSpikeSlabLasso.loc_for_mean(target, s, 0.3, L0, L1)
    torch.testing.assert_close(TiltedSpikeSlabLasso(loc, s, 0.3, L0, L1).mean, target,
                               rtol=1e-9, atol=1e-12)


def test_svi_recovers_the_exact_posterior_of_a_gaussian_mean():
    """w ~ SSL(eta), y_i ~ N(w, 1): the posterior is this family at (mean y, 1 / sqrt(n))."""
    eta, n = 0.3, 8
    y = torch.tensor([0.9, 0.1, 0.6, -0.2, 0.8, 0.3, 0.7, 0.4])  # mean 0.45: borderline
    exact = TiltedSpikeSlabLasso(y.mean(), torch.tensor(1 / math.sqrt(n)), eta, L0, L1)
    assert 0.2 < float(exact.inclusion_prob()) < 0.8

    def model():
        w = pyro.sample("w", SpikeSlabLasso(torch.tensor(eta), L0, L1))
        with pyro.plate("obs", n):
            pyro.sample("y", dist.Normal(w, 1.0), obs=y)

    def guide():
        loc = pyro.param("loc", torch.tensor(-1.0))
        scale = pyro.param("scale", torch.tensor(1.0), constraint=dist.constraints.positive)
        pyro.sample("w", TiltedSpikeSlabLasso(loc, scale, torch.tensor(eta), L0, L1))

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = pyro.infer.SVI(model, guide, pyro.optim.ClippedAdam({"lr": 0.02, "lrd": 0.999}),
                         pyro.infer.Trace_ELBO(num_particles=16, vectorize_particles=True))
    for _ in range(500):
        svi.step()
    loc, scale = pyro.param("loc").detach(), pyro.param("scale").detach()
    assert float(loc) == pytest.approx(float(y.mean()), abs=0.05)
    assert float(scale) == pytest.approx(1 / math.sqrt(n), rel=0.1)
    fitted = TiltedSpikeSlabLasso(loc, scale, eta, L0, L1)
    assert float(fitted.inclusion_prob()) == pytest.approx(float(exact.inclusion_prob()),
                                                           abs=0.03)
    # the posterior mean is shrunk far below mean(y) = 0.45
    assert float(fitted.mean) == pytest.approx(float(exact.mean), abs=0.03)
