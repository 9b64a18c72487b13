"""Counts and missing values: the library-size treatment, and imputation of hidden entries.

Part ``library``: on simulated negative-binomial counts with a known sparse support and row
totals that depend on the factors (``ps.datasets.sparse_counts``, 1000 rows, 3 factors with
5 anchors each + 3 shared features (G = 18), or 30 anchors each + 10 shared (G = 100)), fit
the Sparse VAE (negbin, K = 5 > 3, 300 epochs, lr 0.005)
with the library size profiled out (``library="composition"``, mean = row total x softmax)
and with a fixed offset (``library="offset"``, mean = row total x exp(output)). Reports
support precision / recall / F1 after one-to-one matching of factors (by encoder means
against the true z on held-out rows), the mean number of factors per feature (truth: 1.17)
(truth: 1.17 for G = 18, 1.10 for G = 100) and the held-out log-likelihood per row.

Part ``impute``: hide 10% of the entries (uniformly at random) of (a) the paper's synthetic
study (rho 0.4, 1000 rows, normal likelihood) and (b) the simulated counts (negbin), fit on
the data with the holes, and report the error of the filled-in values (``reconstruct``)
against the hidden truth for the Sparse VAE, the VAE and the column mean of the observed
entries: RMSE, and for counts also the mean absolute error.

Run:  .venv/bin/python benchmarks/counts_and_missing.py --reps 3 --jobs 2
Writes benchmarks/results/counts_and_missing.{csv,md} (NAME.* with --name NAME). 1 torch
thread per fit. ``--parts library --settings composition refine ...`` compares further fit
settings on the simulated counts (see SETTINGS).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from _common import imputation_scores, setup_worker

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {"G=18": (5, 3), "G=100": (30, 10)}  # anchors per factor, shared features
# part library: name -> (library, further SparseVAE arguments); the first two are the default
SETTINGS = {
    "composition": ("composition", {}),
    "offset": ("offset", {}),
    "refine": ("composition", {"refine_support": True}),
    "corr5-refine": ("composition", {"factor_correlation": True, "lkj_concentration": 5.0,
                                     "refine_support": True}),
    "corr5": ("composition", {"factor_correlation": True, "lkj_concentration": 5.0}),
    "corr-restarts3": ("composition", {"factor_correlation": True, "n_restarts": 3}),
    "restarts3": ("composition", {"n_restarts": 3}),
    "reseed3": ("composition", {"reseed_rounds": 3}),
    "fa": ("composition", {"init": "factor_analysis"}),
    "fa-refine": ("composition", {"init": "factor_analysis", "refine_support": True}),
}


def run_library(args):
    rep, setting, epochs, shape = args
    library, kwargs = SETTINGS[setting]
    setup_worker()
    import pyro_sparse as ps
    from pyro_sparse.diagnostics import (
        estimated_support,
        match_factors,
        merge_redundant,
        support_scores,
    )

    anchors, shared = SHAPES[shape]
    data = ps.datasets.sparse_counts(n=1000, anchors_per_factor=anchors, n_shared=shared,
                                     seed=rep)
    train, test = data.split(0.2, seed=rep)
    t0 = time.perf_counter()
    m = ps.SparseVAE(n_factors=5, likelihood="negbin", library=library, hidden_dim=32,
                     **kwargs)
    m.fit(train.X, epochs=epochs, lr=5e-3, seed=rep, progress=False)
    S = estimated_support(m.loadings_, m.inclusion_probs_)
    codes_test = m.transform(test.X)
    match = match_factors(test.Z, codes_test)
    sc = support_scores(data.support, S, match)
    # the p* support without entries carrying < 10% of a feature's decoded variation
    S_eff = m.effective_support(train.X, min_share=0.1)
    se = support_scores(data.support, S_eff, match)
    # the same with redundant factors (codes |r| >= 0.9 on the training rows) merged and the
    # true factors matched to the used factors first (benchmarks/README.md, "Where a factor
    # acts")
    S_mrg = merge_redundant(S_eff, m.transform(train.X))
    sm = support_scores(data.support, S_mrg,
                        match_factors(test.Z, codes_test, prefer=S_mrg.any(0)))
    return dict(part="library", rep=rep, dataset=shape,
                method=f"SparseVAE negbin, library={library}"
                       + "".join(f", {k}={v}" for k, v in kwargs.items()),
                precision=sc["precision"], recall=sc["recall"], f1=sc["f1"],
                f1_effect=se["f1"], f1_merged=sm["f1"],
                factors_per_feature=float(S.sum(1).mean()),
                heldout_loglik=float(m.log_likelihood(test.X, num_samples=1).mean()),
                seconds=time.perf_counter() - t0)


def run_impute(args):
    rep, dataset, epochs = args
    setup_worker()
    import pyro_sparse as ps

    if dataset == "paper synthetic (normal)":
        X = ps.datasets.paper_synthetic(n=1000, rho=0.4, seed=rep).X.astype(np.float64)
        lik, kw = "normal", dict(lr=1e-2)
    else:
        X = ps.datasets.sparse_counts(n=1000, seed=rep).X.astype(np.float64)
        lik, kw = "negbin", dict(lr=5e-3)
    rng = np.random.default_rng(100 + rep)
    hole = rng.random(X.shape) < 0.10
    hole[hole.all(1)] = False
    est = [("SparseVAE", ps.SparseVAE(n_factors=5, likelihood=lik, hidden_dim=32)),
           ("VAE", ps.VAE(n_factors=5, likelihood=lik, hidden_dim=32))]
    return [dict(part="impute", rep=rep, dataset=dataset, **r)
            for r in imputation_scores(X, hole, est, epochs=epochs, seed=rep, **kw)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--parts", nargs="+", choices=["library", "impute"],
                    default=["library", "impute"])
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS),
                    default=["composition", "offset"],
                    help="part library: the fits compared, names of SETTINGS (the "
                         "SparseVAE arguments of each are listed there and in the result "
                         "table's method column)")
    ap.add_argument("--name", default="counts_and_missing",
                    help="results file stem (benchmarks/results/NAME.{csv,md})")
    args = ap.parse_args(argv)
    import pandas as pd

    lib_jobs = [(r, st, args.epochs, shape) for r in range(args.reps)
                for st in args.settings for shape in SHAPES] if "library" in args.parts else []
    imp_jobs = [(r, ds, args.epochs) for r in range(args.reps)
                for ds in ("paper synthetic (normal)", "sparse counts (negbin)")] \
        if "impute" in args.parts else []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as ex:
        lib_rows = list(ex.map(run_library, lib_jobs))
        imp_rows = [r for rows in ex.map(run_impute, imp_jobs) for r in rows]
    wall = time.perf_counter() - t0
    lib = pd.DataFrame(lib_rows)
    imp = pd.DataFrame(imp_rows)
    RESULTS.mkdir(exist_ok=True)
    pd.concat([lib, imp]).to_csv(RESULTS / f"{args.name}.csv", index=False)

    def table(df):
        cols = [f"{a} ({b})" for a, b in df.columns]
        head = "| " + " | ".join([" / ".join(map(str, df.index.names))] + cols) + " |"
        sep = "|" + "---|" * (len(cols) + 1)
        body = []
        for idx, row in df.iterrows():
            name = " / ".join(idx) if isinstance(idx, tuple) else idx
            body.append("| " + " | ".join([name] + [f"{v:.3f}" for v in row]) + " |")
        return [head, sep] + body

    command = (f"`.venv/bin/python benchmarks/counts_and_missing.py --reps {args.reps} "
               f"--epochs {args.epochs} --jobs {args.jobs}")
    if args.parts != ["library", "impute"]:
        command += " --parts " + " ".join(args.parts)
    if "library" in args.parts and args.settings != ["composition", "offset"]:
        command += " --settings " + " ".join(args.settings)
    if args.name != "counts_and_missing":
        command += f" --name {args.name}"
    md = ["# Counts and missing values", "",
          f"Command: {command}`  ",
          f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}, 1 torch thread per fit, {args.jobs} fits in parallel; "
          f"wall time {wall:.0f} s. Mean and sd over {args.reps} replicates."]
    if len(lib):
        lsum = lib.groupby(["dataset", "method"])[
            ["precision", "recall", "f1", "f1_effect", "f1_merged", "factors_per_feature",
             "heldout_loglik", "seconds"]].agg(["mean", "std"])
        md += ["", "## Library size and support settings on simulated counts", "",
               "Simulated negbin counts, 3 true factors; 1.17 (G=18) and 1.10 (G=100) factors "
               "per feature in the truth; K = 5.", ""]
        md += table(lsum)
    if len(imp):
        isum = imp.groupby(["dataset", "method"])[["rmse", "mae"]].agg(["mean", "std"])
        md += ["", "## Imputation of 10% hidden entries", ""]
        md += table(isum)
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))

if __name__ == "__main__":
    main()
