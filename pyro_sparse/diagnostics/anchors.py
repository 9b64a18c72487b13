"""Anchor report: each factor's anchor features, assumption A1, posterior anchor probabilities.

An anchor of factor k is a feature whose support row holds factor k only (reference §2). With
at least two anchors per factor (A1) the factors are identifiable; the report shows whether
the fitted support meets A1, how sure the posterior is, and, given the true support, how well
it was recovered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .arviz import chains_of
from .residuals import RESIDUAL_EXCESS, ResidualCheck, residual_check
from .support import anchors as support_anchors
from .support import corr, match_factors, support_scores

__all__ = ["AnchorReport", "anchor_report", "anchor_probability", "hidden_effects",
           "prune_factors", "match_supports", "redundant_factors", "merge_redundant"]

#: |corr| of two used factors' encoder means from which the report flags them as redundant
REDUNDANCY = 0.9
#: how :func:`anchor_report` reads the support (its ``support`` argument)
SUPPORT_READS = ("pstar", "effect", "merged")


def anchor_probability(inclusion_sgk: np.ndarray) -> np.ndarray:
    """Posterior probability that feature g is an anchor of factor k, shape (G, K).

    Given W, the gamma_gk are independent Bernoulli(p*_gk), so the probability that row g's
    support is exactly {k} is ``p*_gk * prod_{j != k} (1 - p*_gj)``; it is averaged over the
    posterior draws of p* (Rao-Blackwellised: no sampling of gamma).

    Parameters
    ----------
    inclusion_sgk : numpy.ndarray, shape (S, G, K) or (G, K)
        Draws of the inclusion probabilities p*.
    """
    p = np.asarray(inclusion_sgk, float)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3:
        raise ValueError(f"inclusion must have shape (S, G, K) or (G, K), got {p.shape}")
    q = np.clip(1.0 - p, 0.0, 1.0)
    # prod over j != k of (1 - p_gj), computed without dividing by (1 - p_gk)
    K = p.shape[-1]
    others = np.stack([np.prod(np.delete(q, k, axis=-1), axis=-1) for k in range(K)], -1)
    return (p * others).mean(0)


def redundant_factors(codes_nk, used_k=None, threshold: float = REDUNDANCY) -> list:
    """Pairs of used factors whose codes carry nearly the same signal.

    A fit that has split one true factor into two latents (and usually missed another) shows
    two factors whose encoder means are almost collinear; an identifiable fit has no such pair
    unless the true factors themselves correlate that strongly.

    Parameters
    ----------
    codes_nk : array, shape (N, K)
        Encoder means of some rows.
    used_k : array of bool, shape (K,), optional
        Factors to consider (default: all); unused factors are left out.
    threshold : float
        Pairs with |corr| >= threshold are returned.

    Returns
    -------
    list of (k, l, r)
        Factor indices ``k < l`` and their correlation ``r``, strongest first.
    """
    Z = np.asarray(codes_nk, float)
    if Z.ndim != 2:
        raise ValueError(f"codes must have shape (N, K), got {Z.shape}")
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    K = Z.shape[1]
    used = np.ones(K, bool) if used_k is None else np.asarray(used_k, bool)
    idx = np.flatnonzero(used)
    if len(idx) < 2 or Z.shape[0] < 3:
        return []
    c = corr(Z[:, idx], Z[:, idx])  # a constant column correlates 0
    pairs = [(int(idx[i]), int(idx[j]), float(c[i, j])) for i in range(len(idx))
             for j in range(i + 1, len(idx)) if abs(c[i, j]) >= threshold]
    return sorted(pairs, key=lambda t: -abs(t[2]))


def merge_redundant(S_gk, codes_nk, threshold: float = REDUNDANCY) -> np.ndarray:
    """A support with each group of redundant factors read as one factor.

    Used factors (non-empty columns of ``S_gk``) whose codes correlate at
    ``|r| >= threshold`` (:func:`redundant_factors`, joined transitively) are one factor
    split in two or more latents: the lowest-numbered column of each group gets the union of
    the group's supports and the others are emptied. Nothing else changes; the fitted model
    is not touched.

    Parameters
    ----------
    S_gk : array of bool, shape (G, K)
        A support (the p* support, or :meth:`SparseVAE.effective_support`).
    codes_nk : array, shape (N, K)
        Encoder means of some rows (the training rows, say).
    threshold : float
        |corr| from which two used factors are merged (the anchor report's redundancy
        threshold by default).

    Returns
    -------
    numpy.ndarray of bool, shape (G, K)
    """
    S = np.asarray(S_gk, bool)
    out = np.zeros_like(S)
    for group in _redundant_groups(S, codes_nk, threshold):
        out[:, group[0]] = S[:, group].any(1)
    return out


def _redundant_groups(S_gk, codes_nk, threshold: float) -> list:
    # every column's group (lowest column first): redundant used factors joined transitively,
    # every other column on its own
    S = np.asarray(S_gk, bool)
    Z = np.asarray(codes_nk, float)
    if S.ndim != 2 or Z.ndim != 2 or S.shape[1] != Z.shape[1]:
        raise ValueError(f"S_gk (G, K) and codes_nk (N, K) need the same K, got shapes "
                         f"{S.shape} and {Z.shape}")
    root = list(range(S.shape[1]))

    def find(k):
        while root[k] != k:
            k = root[k]
        return k

    for k, m, _ in redundant_factors(Z, S.any(0), threshold):
        a, b = sorted((find(k), find(m)))
        root[b] = a
    groups: dict[int, list] = {}
    for k in range(S.shape[1]):
        groups.setdefault(find(k), []).append(k)
    return [groups[r] for r in sorted(groups)]


def match_supports(S_true_gj: np.ndarray, S_hat_gk: np.ndarray) -> np.ndarray:
    """Match true factors to estimated columns by support overlap (Hungarian).

    Used when only the true support is known (no true factor values). Maximises the number
    of shared support entries; ``match[j]`` is the estimated column of true factor j.
    """
    St, Sh = np.asarray(S_true_gj, bool), np.asarray(S_hat_gk, bool)
    if St.shape[0] != Sh.shape[0]:
        raise ValueError(f"truth has {St.shape[0]} features (rows) but the model has "
                         f"{Sh.shape[0]}")
    if St.shape[1] > Sh.shape[1]:
        raise ValueError(f"truth has {St.shape[1]} factors, more than the model's "
                         f"{Sh.shape[1]}")
    overlap = St.astype(float).T @ Sh.astype(float)  # (J, K)
    jaccard = overlap / np.maximum(St.sum(0)[:, None] + Sh.sum(0)[None] - overlap, 1)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-(overlap + 1e-3 * jaccard))
    match = np.empty(St.shape[1], dtype=int)
    match[rows] = cols
    return match


@dataclass
class AnchorReport:
    """Result of :func:`anchor_report`; ``print(report)`` gives the summary.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (factor, anchor feature): ``factor``, ``feature``, ``anchor_prob``
        (posterior probability that the feature is an anchor of this factor),
        ``inclusion`` (p*, as the support read sees it), ``loading`` (posterior mean of W),
        ``eta``.
    factors : pandas.DataFrame
        One row per factor: ``factor``, ``eta``, ``n_support``, ``n_anchors``, ``a1``
        (at least two anchors), ``unused`` (empty support column), ``anchors`` (names),
        ``merged_into`` (with ``support="merged"``: the factor this one was read into, else
        empty).
    support : numpy.ndarray of bool, shape (G, K)
        Estimated support, read as ``support_read`` says.
    unused_factors : list of str
        Factors with an empty support column (not counting factors merged into another).
    scores : dict or None
        With ``truth``: precision, recall, f1, hamming, exact, anchor_recall and the
        ``match`` of true factors to estimated ones.
    redundant : list of (str, str, float) or None
        With ``X``: pairs of used factors whose encoder means correlate at |r| >=
        ``redundancy`` (:func:`redundant_factors`), a sign that one factor was split in two;
        None without ``X``.
    residual : ResidualCheck or None
        With ``X``: the residual dependence check (:func:`~pyro_sparse.diagnostics.
        residual_check`), a sign of a factor the fit missed when flagged; None without ``X``.
    hidden_effects : list of (str, int, int, int) or None
        With ``X``: ``(factor, n_outside, n_effect, n_support)`` for each factor that carries
        at least ``effect_share`` of the decoded variation of ``n_effect`` features, of which
        ``n_outside`` (at least 2, and at least as many as the factor's support) lie outside
        its p* support: loadings too small for p* that the decoder's first layer scales up,
        so p* understates where the factor acts (read ``model.effect_shares(X)``); None
        without ``X``.
    support_read : str
        ``"pstar"``, ``"effect"`` or ``"merged"`` (the ``support`` argument of
        :func:`anchor_report`).
    support_description : str
        The read in words, with its thresholds (the summary's first line).
    """

    table: object
    factors: object
    support: np.ndarray
    unused_factors: list
    threshold: float
    scores: dict | None = None
    notes: list = field(default_factory=list)
    redundant: list | None = None
    residual: ResidualCheck | None = None
    hidden_effects: list | None = None
    support_read: str = "pstar"
    support_description: str = ""

    def __str__(self):
        read = self.support_description or f"posterior mean p* >= {self.threshold}"
        lines = [f"Anchor report (support: {read})"]
        for _, row in self.factors.iterrows():
            if row["unused"]:
                continue
            a1 = "A1 holds" if row["a1"] else "A1 FAILS (fewer than 2 anchors)"
            n_anc = row["n_anchors"]
            lines.append(f"  {row['factor']}: eta={row['eta']:.3f}, {row['n_support']} "
                         f"features, {n_anc} anchor{'' if n_anc == 1 else 's'} - {a1}")
            sub = self.table[self.table["factor"] == row["factor"]]
            for _, a in sub.iterrows():
                lines.append(f"      {a['feature']:<20} P(anchor)={a['anchor_prob']:.2f}  "
                             f"p*={a['inclusion']:.2f}  W={a['loading']:+.3f}")
        if "merged_into" in self.factors:
            for _, row in self.factors[self.factors["merged_into"] != ""].iterrows():
                lines.append(f"  {row['factor']}: merged into {row['merged_into']}")
        if self.unused_factors:
            lines.append(f"  unused factors (empty support; prune them): "
                         f"{', '.join(self.unused_factors)}")
        for a, b, r in self.redundant or []:
            lines.append(f"  REDUNDANT: {a} and {b} (encoder means correlate r={r:+.2f})")
        for f, n_out, n_eff, n_sup in self.hidden_effects or []:
            lines.append(f"  EFFECT OUTSIDE THE SUPPORT: {f} carries a share of the decoded "
                         f"variation of {n_eff} features, {n_out} of them outside its "
                         f"support of {n_sup}")
        if self.residual is not None and self.residual.flagged:
            lines.append("  RESIDUALS SHARE VARIATION: " + ", ".join(
                n for n, _ in self.residual.features)
                + (" and more (spread thinly)" if self.residual.spread else "")
                + f" (largest residual eigenvalue "
                f"{self.residual.eigenvalue:.2f}, flag at {self.residual.threshold:.2f})")
        if self.scores is not None:
            s = self.scores
            lines.append(f"  against the truth: precision {s['precision']:.2f}, recall "
                         f"{s['recall']:.2f}, F1 {s['f1']:.2f}, Hamming {s['hamming']}, "
                         f"anchor recall {s['anchor_recall']:.2f}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):  # IPython
        p.text(str(self))

    def to_dict(self) -> dict:
        """The report as plain JSON-serialisable Python (what ``anchors.json`` holds)."""
        factors = []
        for _, row in self.factors.iterrows():
            sub = self.table[self.table["factor"] == row["factor"]]
            factors.append(dict(
                factor=str(row["factor"]), eta=float(row["eta"]),
                n_support=int(row["n_support"]), n_anchors=int(row["n_anchors"]),
                a1=bool(row["a1"]), unused=bool(row["unused"]),
                merged_into=str(row.get("merged_into", "")) or None,
                anchors=[dict(feature=str(a["feature"]), anchor_prob=float(a["anchor_prob"]),
                              inclusion=float(a["inclusion"]), loading=float(a["loading"]))
                         for _, a in sub.iterrows()]))
        out = dict(threshold=float(self.threshold), support_read=str(self.support_read),
                   support_description=str(self.support_description), factors=factors,
                   unused_factors=[str(f) for f in self.unused_factors],
                   notes=[str(n) for n in self.notes],
                   redundant=None if self.redundant is None else
                   [dict(factors=[str(a), str(b)], corr=float(r)) for a, b, r in self.redundant],
                   residual=None if self.residual is None else self.residual.to_dict(),
                   hidden_effects=None if self.hidden_effects is None else
                   [dict(factor=str(f), n_outside=int(o), n_effect=int(e), n_support=int(n))
                    for f, o, e, n in self.hidden_effects])
        if self.scores is not None:
            out["scores"] = {k: (v.tolist() if hasattr(v, "tolist") else v)
                             for k, v in self.scores.items()}
        return out


def _pooled_draws(chains, num_samples, seed):
    # inclusion and W draws of every chain, aligned, pooled over chains: (C*S, G, K)
    incl, W = [], []
    for est, perm, signs in chains:
        if not hasattr(est, "inclusion_probs_"):
            raise TypeError(f"{type(est).__name__} has no loadings W: the anchor report needs "
                            "a SparseVAE")
        d = est.posterior_draws(num_samples, seed=seed)
        incl.append(d["inclusion"][..., perm])
        W.append(d["W"][..., perm] * signs)
    return np.concatenate(incl), np.concatenate(W)


def anchor_report(model, truth=None, threshold: float = 0.5, num_samples: int = 1000,
                  z_true=None, X=None, seed: int = 0,
                  redundancy: float = REDUNDANCY,
                  residual_excess: float = RESIDUAL_EXCESS,
                  effect_share: float = 0.1, support: str = "pstar") -> AnchorReport:
    """Anchors per factor, assumption A1, unused factors and (with ``truth``) recovery scores.

    Parameters
    ----------
    model : fitted SparseVAE, or Restarts (draws of all restarts are pooled after alignment)
    truth : array of bool, shape (G, J), optional
        True support (a numeric matrix is read as nonzero = in the support, so the true W
        works too). Estimated factors are matched to true ones by the encoder means when
        ``z_true`` and ``X`` are given (used factors first: an unused factor's code can
        still correlate with the truth, e.g. through a learned factor correlation), else by
        support overlap.
    threshold : float
        A feature is in factor k's support when the posterior mean of p*_gk >= threshold.
    num_samples : int
        Posterior draws used for the anchor probabilities.
    z_true : array, shape (N, J), optional
        True factor values of the rows of ``X`` (for matching).
    X : array-like, shape (N, G), optional
        Data rows (the training rows, say). With it the report also checks for redundant
        factors (below); with ``z_true`` too, factors are matched to the truth through them.
    seed : int
    redundancy : float
        With ``X``: used factors whose encoder means on ``X`` correlate at |r| >= this are
        reported as redundant, with a note: one true factor carried by two latents, another
        usually missed. Measured (benchmarks/results/redundancy.md): at 0.9 it flagged 6 of 16
        failed fits on data simulated from the model and none of 23 good fits on the paper's
        synthetic study; it does not see a rotated solution (the failures at rho 0.8 there).
    residual_excess : float
        With ``X``: the residual check (:func:`~pyro_sparse.diagnostics.residual_check`)
        flags the fit when the largest eigenvalue of the residuals' correlation matrix
        reaches the independent-noise edge plus this, with a note: features whose shared
        variation the fit calls noise, usually a missed factor.
    effect_share : float
        With ``X``: a factor acts on a feature when it carries at least this share of the
        feature's decoded variation on the rows of ``X`` (``model.effect_shares(X)``, first
        restart); factors that act on more features outside their p* support than inside it
        are listed in ``hidden_effects`` (:func:`hidden_effects`) with a note.
    support : {"pstar", "effect", "merged"}
        How the support is read. ``"pstar"``: posterior mean p* >= ``threshold``.
        ``"effect"`` (needs ``X``): those entries that also carry at least ``effect_share``
        of the feature's decoded variation on ``X`` (as ``SparseVAE.effective_support``), so
        that cross-loadings the decoder barely uses do not hide anchors. ``"merged"`` (needs
        ``X``): the effect read with each group of redundant factors (codes at |r| >=
        ``redundancy``) read as one factor, in its lowest-numbered column (as
        :func:`merge_redundant`); the factors merged away are listed in the ``merged_into``
        column, not as unused. The anchor probabilities follow the read: an entry left out
        by its effect counts as excluded in every draw, and a merged entry's inclusion is
        the probability that any of the group's entries is included. The benchmarks read
        the learned-correlation recipe this way (``benchmarks/README.md``, "Where a factor
        acts"); it is a statement about the fitted decoder on the rows of ``X``.

    Returns
    -------
    AnchorReport
    """
    import pandas as pd

    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    if support not in SUPPORT_READS:
        raise ValueError(f"support must be one of {', '.join(map(repr, SUPPORT_READS))}, "
                         f"got {support!r}")
    if support != "pstar" and X is None:
        raise ValueError(f"support={support!r} reads the fitted decoder's effects on some rows: "
                         "pass them as X (the training rows, say)")
    chains = chains_of(model)
    est = chains[0][0]
    incl_sgk, W_sgk = _pooled_draws(chains, num_samples, seed)
    G, K = incl_sgk.shape[1:]
    names = [str(n) for n in (est.feature_names_in_ or [f"feature_{g}" for g in range(G)])]
    fnames = [f"factor_{k}" for k in range(K)]
    p_gk = incl_sgk.mean(0)
    W_gk = W_sgk.mean(0)
    S_pstar = p_gk >= threshold
    codes = share_gk = acts = None
    if X is not None:
        codes = est.transform(X)[:, chains[0][1]]
        share_gk = est.effect_shares(X)[:, chains[0][1]]
        acts = np.nan_to_num(share_gk, nan=0.0) >= effect_share
    read = f"posterior mean p* >= {threshold}"
    S, read_sgk, merged_into = S_pstar, incl_sgk, [""] * K
    if support != "pstar":
        S, read_sgk = S_pstar & acts, incl_sgk * acts
        read += f", effect share >= {effect_share} on X"
    if support == "merged":
        S, read_sgk, merged_into = _merge_read(S, read_sgk, codes, redundancy, fnames)
        read += f", redundant factors (|r| >= {redundancy}) merged"
    aprob = anchor_probability(read_sgk)
    p_read = read_sgk.mean(0)
    eta_k = np.mean([e.eta_[perm] for e, perm, _ in chains], axis=0)
    anc = support_anchors(S)
    rows = [dict(factor=fnames[k], feature=names[g], anchor_prob=float(aprob[g, k]),
                 inclusion=float(p_read[g, k]), loading=float(W_gk[g, k]),
                 eta=float(eta_k[k]))
            for k in range(K) for g in sorted(anc[k], key=lambda g: -aprob[g, k])]
    table = pd.DataFrame(rows, columns=["factor", "feature", "anchor_prob", "inclusion",
                                        "loading", "eta"])
    is_unused = ~S.any(0) & (np.asarray(merged_into) == "")
    factors = pd.DataFrame(dict(
        factor=fnames, eta=eta_k, n_support=S.sum(0).astype(int),
        n_anchors=[len(anc[k]) for k in range(K)], a1=[len(anc[k]) >= 2 for k in range(K)],
        unused=is_unused, anchors=[", ".join(names[g] for g in anc[k]) for k in range(K)],
        merged_into=merged_into))
    unused = [fnames[k] for k in range(K) if is_unused[k]]
    notes = []
    if all(e.posterior_is_point_mass_ for e, _, _ in chains):
        notes.append("MAP fit: anchor probabilities use p* at the MAP loadings (no posterior "
                     "spread in W); fit with w_guide='meanfield' or restarts for more.")
    redundant = None
    if X is not None:
        S_used = S_pstar if support == "pstar" else S_pstar & acts
        pairs = redundant_factors(codes, S_used.any(0), redundancy)
        redundant = [(fnames[k], fnames[m], r) for k, m, r in pairs]
        if pairs:
            advice = (
                ". Each group is read as one factor here (support='merged'); the fit has "
                "probably split one factor in two, and a factor it missed stays missed."
                if support == "merged" else
                ". The fit has probably split one factor in two and may have missed "
                "another: refit with other seeds or n_restarts and compare the ELBO, or "
                "read each group as one factor (diagnostics.merge_redundant, or "
                "support='merged').")
            notes.append("redundant factors: " + "; ".join(
                f"{a} ~ {b} (r={r:+.2f})" for a, b, r in redundant) + advice)
    residual = None
    hidden = None
    if X is not None:
        residual = residual_check(est, X, excess=residual_excess)
        if residual.flagged:
            notes.append(str(residual))
        hidden = hidden_effects(share_gk, S_pstar, effect_share, fnames)
        if hidden:
            notes.append(
                "p* understates where " + ", ".join(f for f, *_ in hidden) + " act: their "
                "loadings on those features are too small for the spike-and-slab prior to "
                "count, but the decoder's first layer scales them up (W's scale is not "
                "identified). Read model.effect_shares(X) for where a factor acts; "
                "refine_support=True prunes entries by their effect.")
    scores = None
    if truth is not None:
        St = np.asarray(truth)
        if St.dtype.kind not in "biuf" or (St.dtype.kind == "f" and np.isnan(St).any()):
            raise ValueError("truth must be a numeric or boolean support matrix without NaN "
                             f"(nonzero = in the support), got dtype {St.dtype}"
                             + (" with NaN" if St.dtype.kind == "f" else ""))
        St = St.astype(bool)
        if St.ndim != 2 or St.shape[0] != G:
            raise ValueError(f"truth must be a (G={G}, J) support matrix, got shape {St.shape}")
        if z_true is not None and codes is not None:
            match = match_factors(np.asarray(z_true), codes, prefer=S.any(0))
        else:
            match = match_supports(St, S)
        scores = support_scores(St, S, match)
        true_anc = support_anchors(St)
        n_true = sum(len(v) for v in true_anc.values())
        hit = sum(len(set(true_anc[j]) & set(anc[match[j]])) for j in range(St.shape[1]))
        scores["anchor_recall"] = hit / n_true if n_true else float("nan")
        scores["match"] = match
    return AnchorReport(table, factors, S, unused, float(threshold), scores, notes, redundant,
                        residual, hidden, support, read)


def _merge_read(S_gk, incl_sgk, codes_nk, threshold, fnames):
    # the support and the inclusion draws with each redundant group read as one factor, in
    # its lowest column: a merged entry is included when any of the group's entries is
    S, p = S_gk.copy(), incl_sgk.copy()
    merged_into = [""] * S.shape[1]
    for group in _redundant_groups(S_gk, codes_nk, threshold):
        if len(group) < 2:
            continue
        first, rest = group[0], group[1:]
        S[:, first] = S_gk[:, group].any(1)
        p[..., first] = 1.0 - np.prod(1.0 - incl_sgk[..., group], axis=-1)
        S[:, rest] = False
        p[..., rest] = 0.0
        for k in rest:
            merged_into[k] = fnames[first]
    return S, p, merged_into


def hidden_effects(share_gk, support_gk, effect_share: float = 0.1, names=None) -> list:
    """Factors that act on more features than their p* support says.

    Parameters
    ----------
    share_gk : array, shape (G, K)
        Effect shares (``SparseVAE.effect_shares``), factors in the support's order.
    support_gk : array of bool, shape (G, K)
        The p* support.
    effect_share : float
        A factor acts on a feature when it carries at least this share of the feature's
        decoded variation.
    names : sequence of str, optional
        Factor names (default ``factor_k``).

    Returns
    -------
    list of (str, int, int, int)
        ``(factor, n_outside, n_effect, n_support)`` for each factor with at least two
        features it acts on outside its support, and at least as many as inside it.
    """
    share_gk = np.asarray(share_gk, dtype=float)
    S = np.asarray(support_gk, dtype=bool)
    if share_gk.shape != S.shape:
        raise ValueError(f"share_gk has shape {share_gk.shape} but the support has {S.shape}")
    if not 0.0 < float(effect_share):
        raise ValueError(f"effect_share must be > 0, got {effect_share!r}")
    acts = np.nan_to_num(share_gk, nan=0.0) >= effect_share
    names = names or [f"factor_{k}" for k in range(S.shape[1])]
    out = []
    for k in range(S.shape[1]):
        n_out = int((acts[:, k] & ~S[:, k]).sum())
        if n_out >= 2 and n_out >= int(S[:, k].sum()):
            out.append((names[k], n_out, int(acts[:, k].sum()), int(S[:, k].sum())))
    return out


def prune_factors(model, threshold: float = 0.5, num_samples: int = 200) -> np.ndarray:
    """Indices of the factors to keep: those with a non-empty support column.

    Use as ``Z = model.transform(X)[:, keep]`` and ``model.loadings_[:, keep]``; the paper
    over-specifies K and drops the empty factors.

    Parameters
    ----------
    model : fitted SparseVAE
    threshold : float
        p* threshold of the support (as in :func:`anchor_report`).
    num_samples : int
        Draws for the posterior mean of p* (meanfield guide).

    Returns
    -------
    numpy.ndarray of int
    """
    incl, _ = _pooled_draws(chains_of(model), num_samples, 0)
    return np.flatnonzero((incl.mean(0) >= threshold).any(0))
