"""Normal scores and quantiles of the tilted SSL family, and the low-rank Gaussian copula built
on them: inverses, gradients, a normalised joint density with the marginals kept, and a known
distribution recovered by SVI."""

import math

import numpy as np
import pyro
import pytest
import torch
from scipy import stats
from torch.special import ndtr

from pyro_sparse.distributions import LowRankGaussianCopula, TiltedSpikeSlabLasso

L0, L1 = 10.0, 1.0


def random_family(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    loc = 2.0 * torch.randn(n, generator=g, dtype=torch.float64)
    scale = torch.exp(1.5 * torch.randn(n, generator=g, dtype=torch.float64) - 2.0)
    eta = torch.rand(n, generator=g, dtype=torch.float64)
    return TiltedSpikeSlabLasso(loc, scale, eta, L0, L1)


def test_quantile_inverts_the_cdf_and_the_normal_score():
    q = random_family(5000)
    score = 2.0 * torch.randn(5000, generator=torch.Generator().manual_seed(1),
                              dtype=torch.float64)
    score = score[score.abs() < 6]
    q = TiltedSpikeSlabLasso(q.loc[:len(score)], q.scale[:len(score)], q.eta[:len(score)],
                             L0, L1)
    w = q.from_normal_score(score)
    # to 1e-8 in F (the slowest cases have tilt sds near 20, far beyond any loading's)
    np.testing.assert_allclose(q.cdf(w), ndtr(score), atol=1e-8, rtol=0)
    np.testing.assert_allclose(q.normal_score(w), score, atol=1e-6, rtol=0)
    ordinary = q.scale < 2.0
    np.testing.assert_allclose(q.cdf(w)[ordinary], ndtr(score)[ordinary], atol=1e-11, rtol=0)
    # monotone: a larger score gives a larger point
    assert (q.from_normal_score(score + 0.1) > w).all()


@pytest.mark.parametrize("which", range(4))
def test_quantile_gradients_match_finite_differences(which):
    p0 = torch.tensor([[0.3, 0.1, 0.25, 0.7], [-0.7, 0.5, 0.6, -1.2], [1.5, 0.2, 0.2, 0.0],
                       [0.02, 0.05, 0.4, 1.5]], dtype=torch.float64)

    def quantile(p):
        return TiltedSpikeSlabLasso(p[:, 0], p[:, 1], p[:, 2], L0, L1).from_normal_score(p[:, 3])

    p = p0.clone().requires_grad_()
    (g,) = torch.autograd.grad(quantile(p).sum(), p)
    eps = 1e-6
    with torch.no_grad():
        d = torch.zeros_like(p0)
        d[:, which] = eps
        fd = (quantile(p0 + d) - quantile(p0 - d)) / (2 * eps)
    np.testing.assert_allclose(g[:, which], fd, rtol=1e-5, atol=1e-7)


def copula_2d():
    marg = TiltedSpikeSlabLasso(torch.tensor([0.1, 0.4], dtype=torch.float64),
                                torch.tensor([0.2, 0.3], dtype=torch.float64),
                                torch.tensor(0.4, dtype=torch.float64), L0, L1)
    return LowRankGaussianCopula(marg, torch.tensor([[1.5], [-1.0]], dtype=torch.float64))


def test_joint_density_is_normalised_and_keeps_the_marginals():
    c = copula_2d()
    x = torch.linspace(-3.0, 3.5, 1301, dtype=torch.float64)
    dx = float(x[1] - x[0])
    X, Y = torch.meshgrid(x, x, indexing="ij")
    dens = c.log_prob(torch.stack([X, Y], -1)).exp()
    assert float(dens.sum() * dx * dx) == pytest.approx(1.0, abs=2e-3)
    # integrating out the second entry gives the first marginal, and vice versa
    want = c.marginal.log_prob(torch.stack([x, x], -1)).exp()
    i = slice(100, 1200, 50)
    np.testing.assert_allclose((dens.sum(1) * dx)[i], want[i, 0], rtol=0.02, atol=2e-3)
    np.testing.assert_allclose((dens.sum(0) * dx)[i], want[i, 1], rtol=0.02, atol=2e-3)


def test_draws_keep_the_marginals_and_carry_the_correlation():
    c = copula_2d()
    w = c.sample((20_000,), generator=torch.Generator().manual_seed(0))
    assert w.shape == (20_000, 2)
    for j in range(2):
        q = TiltedSpikeSlabLasso(c.marginal.loc[j], c.marginal.scale[j], c.marginal.eta[j],
                                 L0, L1)
        ks = stats.kstest(w[:, j].numpy(), lambda t, q=q: q.cdf(torch.as_tensor(t)).numpy())
        assert ks.pvalue > 1e-3
    # the normal scores have the copula's correlation, 1.5 * -1 / sqrt(3.25 * 2)
    z = c.marginal.normal_score(w)
    r = float(torch.corrcoef(z.T)[0, 1])
    assert r == pytest.approx(-1.5 / math.sqrt(6.5), abs=0.02)
    # and the same generator seed gives the same draws
    torch.testing.assert_close(c.sample((20_000,), generator=torch.Generator().manual_seed(0)),
                               w)


def test_zero_factor_is_the_independent_family():
    marg = random_family(12).expand((12,))
    marg = TiltedSpikeSlabLasso(marg.loc.reshape(4, 3), marg.scale.reshape(4, 3),
                                marg.eta.reshape(4, 3), L0, L1)
    c = LowRankGaussianCopula(marg, torch.zeros(12, 2, dtype=torch.float64))
    assert c.event_shape == (4, 3) and c.batch_shape == ()
    w = c.sample((7,))
    assert w.shape == (7, 4, 3)
    torch.testing.assert_close(c.log_prob(w), marg.log_prob(w).sum((-2, -1)))


def test_bad_arguments_are_named():
    marg = random_family(6)
    with pytest.raises(ValueError, match="shape \\(n, r\\) with n = 6"):
        LowRankGaussianCopula(marg, torch.zeros(5, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch of entries"):
        LowRankGaussianCopula(TiltedSpikeSlabLasso(0.0, 1.0, 0.5, L0, L1), torch.zeros(1, 1))


def test_svi_recovers_a_known_copula():
    """The target is in the family: SVI must find its marginals and its correlation."""
    t = lambda v: torch.tensor(v)  # noqa: E731
    true_m = TiltedSpikeSlabLasso(t([0.4, -0.8, 0.05]), t([0.3, 0.2, 0.15]), t(0.3), L0, L1)
    true_U = t([[1.2], [0.9], [-0.6]])
    target = LowRankGaussianCopula(true_m, true_U)

    def model():
        pyro.sample("w", target)

    def guide():
        loc = pyro.param("loc", torch.zeros(3))
        scale = pyro.param("scale", torch.full((3,), 0.5),
                           constraint=pyro.distributions.constraints.positive)
        U = pyro.param("U", torch.full((3, 1), 0.1))
        pyro.sample("w", LowRankGaussianCopula(TiltedSpikeSlabLasso(loc, scale, t(0.3), L0, L1),
                                               U))

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = pyro.infer.SVI(model, guide, pyro.optim.ClippedAdam({"lr": 0.03, "lrd": 0.998}),
                         pyro.infer.Trace_ELBO(num_particles=16, vectorize_particles=True))
    for _ in range(800):
        svi.step()
    fitted = TiltedSpikeSlabLasso(pyro.param("loc").detach(), pyro.param("scale").detach(),
                                  t(0.3), L0, L1)
    np.testing.assert_allclose(fitted.mean, true_m.mean, atol=0.04)
    np.testing.assert_allclose(fitted.variance.sqrt(), true_m.variance.sqrt(), rtol=0.15)
    np.testing.assert_allclose(fitted.inclusion_prob(), true_m.inclusion_prob(), atol=0.05)

    def corr(U):
        S = U @ U.T + torch.eye(3)
        d = S.diagonal().rsqrt()
        return S * d[:, None] * d[None, :]

    np.testing.assert_allclose(corr(pyro.param("U").detach()), corr(true_U), atol=0.08)
