"""Support refinement: prune loadings that do not help held-out rows.

The ELBO of a Sparse VAE fitted on a few hundred rows keeps loadings that improve the fit of
the training rows but not of new ones (measured in benchmarks/README.md: the true support,
held fixed and fine-tuned, has a better held-out likelihood than the fitted, denser one).
Refinement compares nested candidate supports on rows held out of the fit:

1. :func:`effect_share` ranks every support entry by the share of feature g's decoded
   variation that factor k carries;
2. :func:`candidate_supports` drops the entries below a list of thresholds;
3. each candidate is fine-tuned with the other loadings held at 0 and scored by the per-row
   log-likelihood of the held-out rows;
4. :func:`one_se_choice` keeps the smallest support whose held-out score is within one
   standard error of the best (the one-standard-error rule of cross-validation).

These are small pure functions; :class:`pyro_sparse.SparseVAE` (``refine_support=True``)
runs the whole procedure.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["effect_share", "candidate_supports", "one_se_choice", "REFINE_THRESHOLDS"]

#: effect-share thresholds of the candidate supports (0 keeps the fitted support)
REFINE_THRESHOLDS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


def effect_share(decode, z_nk: torch.Tensor, W_gk: torch.Tensor,
                 batch_size: int = 1024) -> np.ndarray:
    """Share of each feature's decoded variation that each factor carries.

    ``share_gk = mean_n (f_g(W_g * z_n) - f_g(W_g^(-k) * z_n))^2 / var_n f_g(W_g * z_n)``,
    where ``W_g^(-k)`` is row g of W with entry k set to 0. Because feature g's output depends
    on its own row of W only, zeroing column k for every feature at once gives every
    feature's share in one decoder pass per factor.

    Parameters
    ----------
    decode : callable
        ``decode(z_bk, W_gk) -> out_bg``, the decoder output (means or logits).
    z_nk : torch.Tensor, shape (N, K)
        Factors, e.g. the encoder means of the training rows.
    W_gk : torch.Tensor, shape (G, K)
        Loadings.
    batch_size : int
        Rows per decoder pass.

    Returns
    -------
    numpy.ndarray, shape (G, K)
        Non-negative shares; 0 where ``W_gk = 0``. A share can exceed 1 when the factor's
        effect is partly cancelled by the others.
    """
    with torch.no_grad():
        N, K = z_nk.shape
        G = W_gk.shape[0]
        s1 = torch.zeros(G, dtype=torch.float64)
        s2 = torch.zeros(G, dtype=torch.float64)
        d2 = torch.zeros(G, K, dtype=torch.float64)
        for s in range(0, N, batch_size):
            z = z_nk[s:s + batch_size]
            out = decode(z, W_gk)
            s1 += out.sum(0).double().cpu()
            s2 += (out.double() ** 2).sum(0).cpu()
            for k in range(K):
                W = W_gk.clone()
                W[:, k] = 0
                d2[:, k] += ((out - decode(z, W)).double() ** 2).sum(0).cpu()
        var = (s2 / N - (s1 / N) ** 2).clamp_min(1e-12)
        return (d2 / N / var[:, None]).numpy()


def candidate_supports(support_gk, share_gk, thresholds=REFINE_THRESHOLDS) -> list:
    """Nested supports: the entries of ``support_gk`` whose share reaches each threshold.

    Parameters
    ----------
    support_gk : array-like of bool, shape (G, K)
        The fitted support.
    share_gk : array-like, shape (G, K)
        From :func:`effect_share`.
    thresholds : sequence of float
        Increasing thresholds; identical supports are listed once (at the smallest
        threshold that gives them).

    Returns
    -------
    list of (float, numpy.ndarray of bool)
        ``(threshold, S_gk)`` pairs, largest support first.
    """
    S0 = np.asarray(support_gk, bool)
    share = np.asarray(share_gk, float)
    if share.shape != S0.shape:
        raise ValueError(f"share has shape {share.shape}, the support {S0.shape}")
    out = []
    for t in sorted(float(t) for t in thresholds):
        S = S0 & (share >= t)
        if not any(np.array_equal(S, c) for _, c in out):
            out.append((t, S))
    return out


def one_se_choice(scores_cn, sizes) -> int:
    """Index of the smallest candidate whose mean score is within one SE of the best.

    Parameters
    ----------
    scores_cn : array-like, shape (C, N)
        Per-row held-out scores (higher is better, e.g. log-likelihoods) of C candidates on
        the same N rows.
    sizes : sequence of int, length C
        Candidate sizes (number of support entries).

    Returns
    -------
    int
        The chosen candidate. The standard error is that of the mean paired difference to
        the best candidate over rows; ties in size go to the better score.
    """
    scores = np.asarray(scores_cn, float)
    if scores.ndim != 2 or scores.shape[0] != len(sizes):
        raise ValueError(f"scores must have shape (C, N) with C = {len(sizes)} candidates, "
                         f"got {scores.shape}")
    means = scores.mean(1)
    best = int(np.argmax(means))
    n = scores.shape[1]
    for c in sorted(range(len(sizes)), key=lambda c: (sizes[c], -means[c])):
        d = scores[best] - scores[c]
        se = d.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
        if d.mean() <= se:
            return c
    return best
