"""The scale symmetry between a factor and its loadings: a parameter-expansion step and the
posterior spread along it.

The decoder sees only the products ``W_gk * z_nk``, so for every factor k and every c > 0 the
move ``z_:k -> c z_:k``, ``W_:k -> W_:k / c`` leaves the likelihood unchanged. Only the priors
(z ~ N(0, 1), the spike-and-slab lasso on W) and the guide's entropies pin c down, and minibatch
Adam moves slowly along such a flat direction: a fitted column of W is often a few percent too
small or too large, which is several posterior standard deviations. The guides factorise W and
z, so they also miss the posterior spread of this joint direction altogether.

With ``t = log c`` the ELBO changes along the symmetry by (per factor k)

    J_k(t) = -1/2 e^{2t} S_k + (N - m) t + E_q sum_g log p_SSL(W_gk e^{-t} | eta_k)

where ``S_k = sum_n E_q[z_nk^2]``, N the number of rows, and m = G when W has a variational
guide (its entropy falls by G t) and 0 for the MAP guide. This is also the log posterior density
of t given everything else, Jacobian included. :func:`optimal_log_scales` maximises it
(Newton's method, every factor at once) and returns the curvature there;
:func:`rescale_factors` applies the maximiser to a fitted encoder and W guide (the classic
parameter-expanded variational Bayes step, Qi & Jaakkola 2006) and records the Laplace
approximation of the posterior sd of t, which the variational W guides then add to their draws.
"""

from __future__ import annotations

import torch

from ..distributions import ssl_log_prob

__all__ = ["scale_objective", "optimal_log_scales", "factor_moments", "rescale_factors"]


def scale_objective(t_k, S_k, n_rows: int, W_sgk, eta_k, lambda0: float, lambda1: float,
                    w_entropy: bool) -> torch.Tensor:
    """J_k(t_k), the ELBO (up to a constant) after scaling factor k by ``exp(t_k)``.

    Parameters
    ----------
    t_k : torch.Tensor, shape (K,)
        Log scale of each factor.
    S_k : torch.Tensor, shape (K,)
        Sum over rows of E_q[z_nk^2].
    n_rows : int
        N, the rows ``S_k`` sums over.
    W_sgk : torch.Tensor, shape (S, G, K)
        Draws of W from its guide (one draw for a point estimate).
    eta_k : torch.Tensor, shape (K,)
        Slab probabilities.
    lambda0, lambda1 : float
        Spike and slab rates.
    w_entropy : bool
        Whether W has a variational guide whose entropy moves with t (adds ``-G t``).

    Returns
    -------
    torch.Tensor, shape (K,)
    """
    G = W_sgk.shape[-2]
    prior = ssl_log_prob(W_sgk * torch.exp(-t_k), eta_k, lambda0, lambda1).sum(-2).mean(0)
    return -0.5 * torch.exp(2 * t_k) * S_k + (n_rows - (G if w_entropy else 0)) * t_k + prior


def optimal_log_scales(S_k, n_rows: int, W_sgk, eta_k, lambda0: float, lambda1: float,
                       w_entropy: bool, max_iter: int = 50, tol: float = 1e-9):
    """Maximise :func:`scale_objective` over ``t_k`` (separately per factor).

    Parameters
    ----------
    S_k, n_rows, W_sgk, eta_k, lambda0, lambda1, w_entropy
        As for :func:`scale_objective`.
    max_iter : int
        Newton iterations at most.
    tol : float
        Stop when every Newton step is smaller than this.

    Returns
    -------
    t_k : torch.Tensor, shape (K,)
        The maximising log scales (float64).
    sd_k : torch.Tensor, shape (K,)
        ``(-J_k''(t_k))^{-1/2}``: the Laplace approximation of the posterior sd of t.
    """
    S = torch.as_tensor(S_k, dtype=torch.float64).detach().cpu()
    W = torch.as_tensor(W_sgk, dtype=torch.float64).detach().cpu()
    eta = torch.as_tensor(eta_k, dtype=torch.float64).detach().cpu()
    if (S <= 0).any():
        raise ValueError("every factor needs a positive sum of E[z^2] (S_k > 0)")

    def value_grad_hess(t):
        t = t.clone().requires_grad_(True)
        J = scale_objective(t, S, n_rows, W, eta, lambda0, lambda1, w_entropy)
        (g,) = torch.autograd.grad(J.sum(), t, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), t)  # J_k depends on t_k only: h is the diagonal
        return J.detach(), g.detach(), h.detach()

    t = torch.zeros_like(S)
    for _ in range(max_iter):
        J, g, h = value_grad_hess(t)
        # Newton where the objective is concave, else a plain gradient step; steps capped
        step = torch.where(h < 0, -g / h.clamp(max=-1e-12), 1e-3 * g).clamp(-0.5, 0.5)
        for _ in range(30):  # backtrack per factor until J does not decrease
            J_new = scale_objective(t + step, S, n_rows, W, eta, lambda0, lambda1, w_entropy)
            worse = J_new < J - 1e-12
            if not worse.any():
                break
            step = torch.where(worse, step / 2, step)
        t = t + step
        if step.abs().max() < tol:
            break
    _, _, h = value_grad_hess(t)
    sd = torch.where(h < 0, (-h.clamp(max=-1e-300)).rsqrt(), torch.zeros_like(h))
    return t, sd


def factor_moments(local_guide, x_ng, batch_size: int = 1024) -> tuple[torch.Tensor, int]:
    """``S_k = sum_n E_q[z_nk^2]`` under the z guide, over all rows of ``x_ng``.

    Parameters
    ----------
    local_guide : AmortizedNormalGuide or PerRowNormalGuide
        Any z guide with ``second_moments(x_ng, batch_size)``.
    x_ng : torch.Tensor or SparseRows, shape (N, G)
    batch_size : int

    Returns
    -------
    S_k : torch.Tensor, shape (K,)
    n_rows : int
    """
    return local_guide.second_moments(x_ng, batch_size)


def rescale_factors(model, guide, x_ng, batch_size: int = 1024, num_w_draws: int = 64,
                    seed: int = 0) -> dict:
    """Move a fitted Sparse VAE along each factor's scale symmetry to the ELBO's maximum.

    Rescales the z guide's mean and sd of every ``z_k`` by ``c_k`` and the guide's column
    ``W_:k`` by ``1 / c_k``; the decoder output at any row is unchanged. For the variational
    W guides, also records ``sd_k`` (the posterior sd of ``log c_k``) in the guide, whose
    draws of W then carry that spread (see :meth:`MeanFieldGlobalGuide.sample_W`).

    Parameters
    ----------
    model : SparseVAEModel
        Without ``factor_correlation`` (the symmetry's optimum then couples the factors).
    guide : ModelGuide
        The fitted guide: a z guide (the amortised encoder, or a
        :class:`~pyro_sparse.guides.PerRowNormalGuide`) and a W guide.
    x_ng : torch.Tensor or SparseRows, shape (N, G)
        The training rows.
    batch_size : int
        Rows per encoder pass.
    num_w_draws : int
        Draws of W for the prior term when W has a variational guide.
    seed : int
        Seeds those draws.

    Returns
    -------
    dict
        ``scale`` (c_k) and ``log_scale_sd`` (sd_k), numpy arrays of shape (K,).

    Raises
    ------
    ValueError
        For a model without W or with ``factor_correlation``.
    """
    if not hasattr(model, "lambda0"):
        raise ValueError("rescale_factors needs a model with loadings W (a Sparse VAE)")
    if getattr(model, "factor_correlation", False):
        raise ValueError("rescale_factors does not support factor_correlation=True")
    gg = guide.globals_guide
    variational = hasattr(gg, "W_loc_gk")
    S_k, N = factor_moments(guide.local_guide, x_ng, batch_size)
    with torch.no_grad():
        if variational:
            gen = torch.Generator(device=gg.W_loc_gk.device).manual_seed(seed)
            W_sgk = gg.sample_W(num_w_draws, generator=gen, symmetry_spread=False)
        else:
            W_sgk = gg._W_point().detach()[None]
    t_k, sd_k = optimal_log_scales(S_k, N, W_sgk, gg.eta_k, model.lambda0, model.lambda1,
                                   w_entropy=variational)
    c = torch.exp(t_k)
    guide.local_guide.scale_factors(c)
    gg.scale_columns(1.0 / c)
    with torch.no_grad():
        if variational:
            gg.log_scale_sd_k.copy_(sd_k.to(gg.log_scale_sd_k))
    return {"scale": c.numpy(), "log_scale_sd": sd_k.numpy()}
