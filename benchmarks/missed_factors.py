"""What a missed factor is: data simulated from the model, the whole model learned.

On the calibration benchmark's simulation (``calibration.simulate``: spike entries 0, unit
signal per feature, G = 24, K = 3 true factors, 2,000 rows) the default fit
(``SparseVAE(n_factors=3, hidden_dim=20, w_guide="map")``, 200 epochs, batch 200, the
columns standardised as ``fit`` decides) often finds two of the three factors. For every true
factor z_k of every data set this script records:

- ``matched_corr``: |corr| between z_k and the encoder mean Hungarian-matched to it; the
  factor counts as found at >= 0.9 (as in ``calibration.py``);
- ``fold_corr``: the largest |corr| between |z_k| and any encoder mean: a code that tracks
  the factor's size but not its sign;
- ``r2_from_x``: held-out R^2 of z_k predicted from the data by gradient-boosted trees
  (3-fold cross-validation): is the factor, sign included, in the data?
- ``r2_from_codes`` / ``r2_abs_from_codes``: the same for z_k and for |z_k| predicted from
  the three encoder means: does the fit carry the factor in any form, or only its size?
- ``anchors`` / ``even_anchors``: the factor's anchors (features loaded on it alone) and how
  many of them depend more on |z_k| than on z_k (|corr(x_g, |z_k|)| > |corr(x_g, z_k)|).

Each true factor gets a status: ``found``; else ``carried`` when the codes hold z_k, sign
included, without one code tracking it linearly (``r2_from_codes`` >= 0.8); ``folded`` when
they hold its size but not its sign (``r2_abs_from_codes`` >= 0.8, ``r2_from_codes`` < 0.5);
``partial`` when they hold at least half of the variance of one of the two; else ``lost``.

Run:  .venv/bin/python benchmarks/missed_factors.py --reps 10 --first-rep 10 --name missed_factors
(``--jobs`` processes, one torch thread each; about 2 minutes per 10 data sets here).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import setup_worker  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FOUND = 0.9
HELD = 0.8
HALF = 0.5
STATUSES = ("found", "carried", "folded", "partial", "lost")


def _cv_r2(features, target, seed):
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import KFold, cross_val_score

    folds = KFold(3, shuffle=True, random_state=seed)
    return float(cross_val_score(HistGradientBoostingRegressor(random_state=seed), features,
                                 target, cv=folds, scoring="r2").mean())


def classify(matched_corr: float, r2_from_codes: float, r2_abs_from_codes: float) -> str:
    """``found``, ``carried``, ``folded``, ``partial`` or ``lost`` (see the module docstring)."""
    if matched_corr >= FOUND:
        return "found"
    if r2_from_codes >= HELD:
        return "carried"
    if r2_abs_from_codes >= HELD and r2_from_codes < HALF:
        return "folded"
    if max(r2_from_codes, r2_abs_from_codes) >= HALF:
        return "partial"
    return "lost"


def factor_rows(x_ng, z_nk, gamma_gk, codes_nk, seed: int = 0) -> list[dict]:
    """Per true factor, the measures of the module docstring for one fitted data set.

    Parameters
    ----------
    x_ng : numpy.ndarray, shape (N, G)
        The data.
    z_nk : numpy.ndarray, shape (N, K)
        True factors.
    gamma_gk : numpy.ndarray of bool, shape (G, K)
        True support.
    codes_nk : numpy.ndarray, shape (N, K_fit)
        Encoder means of the fit.
    seed : int
        Seed of the cross-validation folds and the trees.

    Returns
    -------
    list of dict
        One row per true factor: ``factor``, the measures and ``status``.
    """
    from scipy.optimize import linear_sum_assignment

    K, Kf = z_nk.shape[1], codes_nk.shape[1]
    c = np.abs(np.corrcoef(codes_nk.T, z_nk.T)[:Kf, Kf:])
    c_abs = np.abs(np.corrcoef(codes_nk.T, np.abs(z_nk).T)[:Kf, Kf:])
    c, c_abs = np.nan_to_num(c), np.nan_to_num(c_abs)
    rows_i, cols_i = linear_sum_assignment(-c)
    matched = np.zeros(K)
    matched[cols_i] = c[rows_i, cols_i]
    anchors = gamma_gk & (gamma_gk.sum(1, keepdims=True) == 1)
    out = []
    for k in range(K):
        zk = z_nk[:, k]
        even = 0
        for g in np.flatnonzero(anchors[:, k]):
            odd_c = abs(np.corrcoef(x_ng[:, g], zk)[0, 1])
            even_c = abs(np.corrcoef(x_ng[:, g], np.abs(zk))[0, 1])
            even += int(even_c > odd_c)
        row = dict(factor=k, matched_corr=float(matched[k]), fold_corr=float(c_abs[:, k].max()),
                   r2_from_x=_cv_r2(x_ng, zk, seed), r2_from_codes=_cv_r2(codes_nk, zk, seed),
                   r2_abs_from_codes=_cv_r2(codes_nk, np.abs(zk), seed),
                   anchors=int(anchors[:, k].sum()), even_anchors=even)
        row["status"] = classify(row["matched_corr"], row["r2_from_codes"],
                                 row["r2_abs_from_codes"])
        out.append(row)
    return out


def run_one(task):
    """Simulate data set ``seed``, fit the default Sparse VAE, return its factor rows."""
    seed, epochs, reseed_rounds, n = task
    setup_worker()
    from calibration import simulate

    import pyro_sparse as ps

    x, z, gamma, _, _ = simulate(seed, n=n, exact_zeros=True, unit_signal=True)
    x, z = x.numpy(), z.numpy()
    t0 = time.process_time()
    est = ps.SparseVAE(n_factors=z.shape[1], hidden_dim=20, w_guide="map",
                       reseed_rounds=reseed_rounds)
    est.fit(x, epochs=epochs, batch_size=200, lr=1e-2, seed=seed * 100, progress=False)
    cpu = time.process_time() - t0
    std = bool(est.fit_info_["standardize"]["used"])
    rows = factor_rows(x, z, gamma, est.transform(x), seed=seed)
    for r in rows:
        r.update(seed=seed, reseed_rounds=reseed_rounds, standardized=std, cpu_s=cpu)
    return rows


def render(df, name, command, seconds) -> str:
    """The markdown table: per data set, then the counts of found / folded / lost."""
    lines = [f"# {name}", "",
             f"Measured {date.today().isoformat()} on {platform.node()} ({platform.machine()}),"
             f" 1 torch thread per fit, {seconds:.0f} s.", f"Command: `{command}`", "",
             f"Found: matched |corr| >= {FOUND}. Otherwise, from the codes' tree R^2: carried "
             f"(z_k >= {HELD}), folded (|z_k| >= {HELD}, z_k < {HALF}), partial (either >= "
             f"{HALF}), lost. R^2: 3-fold cross-validated gradient-boosted trees.", "",
             "| data set | factor | status | matched \\|corr\\| | \\|corr\\| of a code with "
             "\\|z_k\\| | R^2 of z_k from x | R^2 of z_k from codes | R^2 of \\|z_k\\| from codes "
             "| V-shaped anchors |", "|---|---|---|---|---|---|---|---|---|"]
    for r in df.sort_values(["seed", "factor"]).itertuples():
        lines.append(f"| {r.seed} | {r.factor} | {r.status} | {r.matched_corr:.2f} | "
                     f"{r.fold_corr:.2f} | {r.r2_from_x:.2f} | {r.r2_from_codes:.2f} | "
                     f"{r.r2_abs_from_codes:.2f} | {r.even_anchors}/{r.anchors} |")
    counts = df.status.value_counts()
    missed = df[df.status != "found"]
    all_found = int(df.groupby("seed").status.apply(lambda s: (s == "found").all()).sum())
    tally = ", ".join(f"{k} {counts.get(k, 0)}" for k in STATUSES)
    lines += ["", f"Factors: {len(df)}; {tally}. Data sets with every "
              f"factor found: {all_found} of {df.seed.nunique()}. Median R^2 of a missed z_k "
              f"from x: "
              f"{missed.r2_from_x.median() if len(missed) else float('nan'):.2f}; "
              f"V-shaped anchors, missed factors {int(missed.even_anchors.sum())}/"
              f"{int(missed.anchors.sum())}, found factors "
              f"{int(df[df.status == 'found'].even_anchors.sum())}/"
              f"{int(df[df.status == 'found'].anchors.sum())}. Columns standardised in "
              f"{int(df.groupby('seed').standardized.first().sum())} of {df.seed.nunique()} fits;"
              f" CPU {df.groupby('seed').cpu_s.first().mean():.0f} s per fit."]
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{name}.md").write_text(text)
    return text


def main(argv=None):
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--first-rep", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--reseed-rounds", type=int, default=0)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--name", default="missed_factors")
    args = ap.parse_args(argv)
    if min(args.reps, args.epochs, args.jobs, args.rows) < 1 or args.reseed_rounds < 0:
        ap.error("--reps, --epochs, --rows and --jobs must be >= 1, --reseed-rounds >= 0")
    tasks = [(s, args.epochs, args.reseed_rounds, args.rows)
             for s in range(args.first_rep, args.first_rep + args.reps)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as ex:
        rows = [r for rs in ex.map(run_one, tasks) for r in rs]
    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    df.to_csv(RESULTS / f"{args.name}.csv", index=False)
    command = ".venv/bin/python benchmarks/missed_factors.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    print(render(df, args.name, command.strip(), time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
