"""How recoverable are the factors of the calibration benchmark's simulation, before any fit?

The decoder-learned calibration runs (``calibration.py --decoder learned``) rarely find all
three true factors. This script asks whether the information is in the data and whether a
linear start can see it, on the same simulated data sets (spike entries 0, unit signal per
feature, as those runs):

- ``readout``: held-out |corr| between z_k and its least-squares prediction from x (trained
  on the first 75% of the rows, scored on the rest): what a supervised linear encoder gets.
- ``fa_cc_m``: the smallest canonical correlation between the true z and the scores of an
  m-factor analysis of the standardised data (m = K, 2K, 3K): 1 means the analysis's
  subspace contains every true factor, 0 that one is missing from it.
- ``fa_bic``: the number of factors (1..3K) with the smallest BIC.
- ``fa_start``: the smallest matched |corr| between z and the varimax-rotated K-factor
  scores, i.e. what ``SparseVAE(init="factor_analysis")`` starts its encoder at.
- ``vm_oracle_m``: true factors at matched |corr| >= 0.9 when each is matched (Hungarian,
  knowing z) to one of the varimax-rotated scores of an m-factor analysis (m = 2K, 3K): the
  best any rule that picks K of those rotated factors could start from.
- ``even_anchors``: anchors (features loaded on one factor only) whose dependence on the
  factor is closer to even than odd (|corr(x_g, |z_k|)| > |corr(x_g, z_k)|): the decoder's
  first layer has no bias, so a feature's function of W_gk z_k kinks at 0 and is often V-shaped.

Run:  .venv/bin/python benchmarks/recoverability.py --reps 10
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
from calibration import simulate

RESULTS = Path(__file__).resolve().parent / "results"


def _min_canonical_corr(s_nm, z_nk):
    q1, _ = np.linalg.qr(s_nm - s_nm.mean(0))
    q2, _ = np.linalg.qr(z_nk - z_nk.mean(0))
    return float(np.linalg.svd(q1.T @ q2, compute_uv=False).min())


def diagnose(seed: int, n_factors: int = 3, n: int = 2000) -> dict:
    """The recoverability measures (module docstring) of one simulated data set.

    Parameters
    ----------
    seed : int
        The data set (``calibration.simulate``'s seed).
    n_factors, n : int
        True factors K and rows N of the simulation.

    Returns
    -------
    dict
        ``seed``, ``readout_min``, ``fa_bic``, ``fa_cc_{K,2K,3K}``, ``fa_start_min``,
        ``fa_start_found``, ``even_anchors`` and ``anchors``.
    """
    from scipy.optimize import linear_sum_assignment

    from pyro_sparse.infer.initialization import _bic_fits, _rotated_scores, _standardise

    x, z, gamma, _, _ = simulate(seed, n=n, n_factors=n_factors, exact_zeros=True, unit_signal=True)
    x, z = x.numpy().astype(float), z.numpy().astype(float)
    N, K = z.shape
    cut = int(0.75 * N)
    A = np.c_[np.ones(N), x]
    coef, *_ = np.linalg.lstsq(A[:cut], z[:cut], rcond=None)
    pred = A[cut:] @ coef
    readout = [abs(np.corrcoef(pred[:, k], z[cut:, k])[0, 1]) for k in range(K)]
    xs = _standardise(x)
    bic, fits = _bic_fits(xs, 3 * K, seed)
    row = dict(seed=seed, readout_min=float(min(readout)),
               fa_bic=int(np.argmin(bic)) + 1)
    for m in (K, 2 * K, 3 * K):
        row[f"fa_cc_{m}"] = _min_canonical_corr(fits[m - 1].transform(xs), z)
    s, _ = _rotated_scores(fits[K - 1], xs)
    C = np.abs(np.corrcoef(s.T, z.T)[:K, K:])
    r, c = linear_sum_assignment(-C)
    row["fa_start_min"] = float(C[r, c].min())
    row["fa_start_found"] = int((C[r, c] >= 0.9).sum())
    for m in (2 * K, 3 * K):
        sm, _ = _rotated_scores(fits[m - 1], xs)
        Cm = np.abs(np.corrcoef(z.T, sm.T)[:K, K:])
        r, c = linear_sum_assignment(-Cm)
        row[f"vm_oracle_{m}"] = int((Cm[r, c] >= 0.9).sum())
    anchors = np.flatnonzero(gamma.sum(1) == 1)
    even = 0
    for g in anchors:
        k = int(np.flatnonzero(gamma[g])[0])
        odd_r = abs(np.corrcoef(x[:, g], z[:, k])[0, 1])
        even_r = abs(np.corrcoef(x[:, g], np.abs(z[:, k]))[0, 1])
        even += int(even_r > odd_r)
    row["even_anchors"] = even
    row["anchors"] = len(anchors)
    return row


def render(rows, name) -> str:
    K = 3
    md = [f"# Recoverability of the calibration simulation's factors ({name})", "",
          f"Machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} "
          f"cores; python {sys.version.split()[0]}. Data: `calibration.simulate(seed, "
          "exact_zeros=True, unit_signal=True)` (N 2000, G 24, K 3), the data sets of the "
          "decoder-learned calibration runs. Command: `.venv/bin/python "
          f"benchmarks/recoverability.py --reps {len(rows)}`. Measures: see the script's "
          "docstring.", "",
          f"| seed | supervised linear readout (min over factors) | BIC factors (1..{3 * K}) | "
          f"FA subspace min canon. corr, {K} factors | {2 * K} factors | {3 * K} factors | "
          "varimax FA start: factors at |corr| >= 0.9 | best K of the "
          f"{2 * K} varimax factors (oracle) | best K of {3 * K} (oracle) | even anchors / "
          "anchors |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['seed']} | {r['readout_min']:.2f} | {r['fa_bic']} | "
                  f"{r[f'fa_cc_{K}']:.2f} | {r[f'fa_cc_{2 * K}']:.2f} | "
                  f"{r[f'fa_cc_{3 * K}']:.2f} | {r['fa_start_found']}/{K} | "
                  f"{r[f'vm_oracle_{2 * K}']}/{K} | {r[f'vm_oracle_{3 * K}']}/{K} | "
                  f"{r['even_anchors']}/{r['anchors']} |")
    n = len(rows)

    def count(key, thr=0.9):
        return sum(r[key] >= thr for r in rows)

    md += ["", f"Data sets where every factor is at >= 0.9: supervised readout "
           f"{count('readout_min')}/{n}; FA subspace with {K} factors {count(f'fa_cc_{K}')}/{n}, "
           f"{2 * K} factors {count(f'fa_cc_{2 * K}')}/{n}, {3 * K} factors "
           f"{count(f'fa_cc_{3 * K}')}/{n}; varimax FA start "
           f"{sum(r['fa_start_found'] == K for r in rows)}/{n}; the best {K} of {2 * K} "
           f"varimax factors (oracle) {sum(r[f'vm_oracle_{2 * K}'] == K for r in rows)}/{n}, "
           f"of {3 * K} {sum(r[f'vm_oracle_{3 * K}'] == K for r in rows)}/{n}."]
    return "\n".join(md) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--name", default="recoverability")
    args = ap.parse_args(argv)
    rows = [diagnose(seed) for seed in range(args.reps)]
    import pandas as pd

    RESULTS.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(RESULTS / f"{args.name}.csv", index=False)
    text = render(rows, args.name)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
