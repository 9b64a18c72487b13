"""Do the anchor report's fit-failure checks tell failed fits from good ones?

Fits the SparseVAE on several kinds of data and records, per fit, whether all true factors
were found (every true factor matched one-to-one to an encoder mean with |corr| >= 0.9),
the largest |corr| between the encoder means of two used factors (what
``pyro_sparse.diagnostics.redundant_factors`` thresholds) and the residual check
(``pyro_sparse.diagnostics.residual_check``: largest eigenvalue of the residuals' correlation
matrix against the independent-noise edge, and whether the features it lists lie on the
support of a factor the fit missed):
- ``model``: data simulated from the model (benchmarks/calibration.py: G=24, K=3, N=2000,
  spike entries 0, unit signal per feature), default fit, where most fits fail;
- ``model, FA + output start``: the same data, ``init="factor_analysis", output_scale=1.0``;
- ``paper rho=...``: the paper's synthetic study (N=1000, K=5 fitted) at rho 0, 0.4 and 0.8;
- ``paper rho=0.4, K=1``: one factor fitted for two true ones (a factor is surely missed).

Run:  make bench-redundancy   (two runs of 8 seeds, about 10 minutes each here, then merged)
or    .venv/bin/python benchmarks/redundancy.py --reps 8 [--first-seed S] [--name NAME]
Writes benchmarks/results/NAME.{md,csv} (``--render CSV ...`` re-renders merged run files
into redundancy.md). 1 torch thread per fit.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pyro_sparse.diagnostics.residuals import RESIDUAL_EXCESS

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
THRESHOLDS = (0.75, 0.8, 0.9)
EXCESS = (0.5, 1.0)
DATA = ("model", "model, FA + output start", "paper rho=0.0", "paper rho=0.4", "paper rho=0.8",
        "paper rho=0.4, K=1")


def fit_one(task):
    data, seed, *rest = task  # (data, seed[, epochs])
    epochs = int(rest[0]) if rest else 200
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    import pyro_sparse as ps
    from pyro_sparse.diagnostics import abs_corr, match_factors, redundant_factors, residual_check

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ps.ConvergenceWarning)
        if data.startswith("model"):
            import calibration

            x, z, gamma, *_ = calibration.simulate(seed, exact_zeros=True, unit_signal=True)
            x, z = x.numpy(), z.numpy()
            kw = dict(init="factor_analysis", output_scale=1.0) if "FA" in data else {}
            m = ps.SparseVAE(n_factors=3, hidden_dim=20, **kw).fit(
                x, epochs=epochs, batch_size=200, seed=seed * 100, progress=False)
        else:
            d = ps.datasets.paper_synthetic(n=1000, rho=float(data.split("=")[1].split(",")[0]),
                                            seed=seed)
            x, z, gamma = d.X, d.Z, d.support
            K = 1 if data.endswith("K=1") else 5
            m = ps.SparseVAE(n_factors=K).fit(x, epochs=epochs, seed=seed, progress=False)
    codes = m.transform(x)
    C = abs_corr(z, codes)
    if codes.shape[1] >= z.shape[1]:
        match = match_factors(z, codes)
        per_true = C[np.arange(z.shape[1]), match]
    else:  # fewer fitted factors than true ones: each true factor's best code
        per_true = C.max(1)
    found = per_true.min()
    pairs = redundant_factors(codes, (m.inclusion_probs_ >= 0.5).any(0), threshold=1e-9)
    rc = residual_check(m, x)
    missed = np.asarray(gamma, bool)[:, per_true < 0.9].any(1)  # support of missed factors
    listed = [int(n.split("_")[1]) for n, _ in rc.features]  # unnamed columns: feature_<g>
    return dict(data=data, seed=seed, min_matched_corr=float(found), recovered=found >= 0.9,
                max_pair_corr=float(abs(pairs[0][2])) if pairs else 0.0,
                resid_eig=rc.eigenvalue, resid_edge=rc.null_edge, resid_flag=rc.flagged,
                n_listed=len(listed), listed_on_missed=int(missed[listed].sum()))


def main(argv=None):
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="replicates are seeds first-seed .. first-seed + reps - 1")
    ap.add_argument("--name", default="redundancy", help="results file stem")
    ap.add_argument("--render", metavar="CSV", nargs="+",
                    help="only re-render the tables from these run files (merged)")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.render:
        df = pd.concat([pd.read_csv(f) for f in args.render], ignore_index=True)
        when = (f"Rendered {time.strftime('%Y-%m-%d')} from "
                + ", ".join(f"`{Path(f).name}`" for f in args.render)
                + f" ({len(df)} fits; each run file's own .md says when and where it ran).")
    else:
        tasks = [(d, s) for d in DATA
                 for s in range(args.first_seed, args.first_seed + args.reps)]
        with ProcessPoolExecutor(args.jobs) as ex:
            df = pd.DataFrame(list(ex.map(fit_one, tasks)))
        RESULTS.mkdir(exist_ok=True)
        df.to_csv(RESULTS / f"{args.name}.csv", index=False)
        when = (f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()} "
                f"({platform.machine()}, {os.cpu_count()} cores), 1 torch thread per fit, "
                f"{len(df)} fits in {time.time() - t0:.0f} s.")
    md = ["# Fit-failure checks (redundant factors, residual dependence) against fit failure", "",
          when,
          "Command: `.venv/bin/python benchmarks/redundancy.py " + (
              "--render " + " ".join(f"benchmarks/results/{Path(f).name}" for f in args.render)
              if args.render else f"--reps {args.reps}"
              + (f" --first-seed {args.first_seed}" if args.first_seed else ""))
          + (f" --name {args.name}" if args.name != "redundancy" else "") + "`", "",
          "A fit counts as failed when some true factor matches no encoder mean at |corr| >= "
          "0.9. Flagged: the largest |corr| between two used factors' encoder means reaches "
          "the threshold (the anchor report's default is 0.9).", "",
          "| data | fits | failed | " + " | ".join(
              f"failed fits flagged at {t} | good fits flagged at {t}" for t in THRESHOLDS)
          + " |", "|---|---|---|" + "---|---|" * len(THRESHOLDS)]
    for data, d in df.groupby("data", sort=False):
        bad, good = d[~d.recovered], d[d.recovered]
        cells = []
        for t in THRESHOLDS:
            cells += [f"{int((bad.max_pair_corr >= t).sum())}/{len(bad)}",
                      f"{int((good.max_pair_corr >= t).sum())}/{len(good)}"]
        md.append(f"| {data} | {len(d)} | {len(bad)} | " + " | ".join(cells) + " |")
    md += ["", "**Residual check** (`residual_check(model, X)` on the training rows): flagged "
           "when the largest eigenvalue of the residuals' correlation matrix reaches the "
           "independent-noise edge (1 + sqrt(G/N))^2 plus an excess (`excess=`, default "
           f"{RESIDUAL_EXCESS}). 'Listed on a missed factor': of the features the check lists "
           "(those whose residual variance its leading component carries >= 25% of), how many "
           "lie on the true support of a factor the fit missed, over the failed fits flagged "
           "at the default.", "",
           "| data | fits | failed | null edge | largest eigenvalue, failed (median) | good "
           "(median) | " + " | ".join(f"failed flagged at +{e} | good flagged at +{e}"
                                      for e in EXCESS)
           + " | listed on a missed factor |", "|---|---|---|---|---|---|" + "---|---|" *
           len(EXCESS) + "---|"]
    for data, d in df.groupby("data", sort=False):
        bad, good = d[~d.recovered], d[d.recovered]
        fb = bad[bad.resid_eig >= bad.resid_edge + RESIDUAL_EXCESS]

        def med(v):
            return f"{np.median(v):.2f}" if len(v) else "-"

        cells = []
        for e in EXCESS:
            cells += [f"{int((bad.resid_eig >= bad.resid_edge + e).sum())}/{len(bad)}",
                      f"{int((good.resid_eig >= good.resid_edge + e).sum())}/{len(good)}"]
        md.append(f"| {data} | {len(d)} | {len(bad)} | {d.resid_edge.iloc[0]:.2f} | "
                  f"{med(bad.resid_eig)} | {med(good.resid_eig)} | " + " | ".join(cells)
                  + f" | {int(fb.listed_on_missed.sum())}/{int(fb.n_listed.sum())} |")
    md += ["", "Per fit:", "", "| data | seed | min matched corr | max pair corr | largest "
           "residual eigenvalue | residual flag |", "|---|---|---|---|---|---|"]
    md += [f"| {r.data} | {r.seed} | {r.min_matched_corr:.2f} | {r.max_pair_corr:.2f} | "
           f"{r.resid_eig:.2f} | {'yes' if r.resid_flag else 'no'} |" for r in df.itertuples()]
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
