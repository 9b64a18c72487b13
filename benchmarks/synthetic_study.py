"""The paper's synthetic study (Moran et al., section 5), reproduced with pyro_sparse.

For each rho and replicate: simulate 1,000 rows, split 50/50, fit every model variant on the
train half with the paper's settings (K=5, H=50, 200 epochs, batch 100, lr 0.01, lambda0 10,
lambda1 1), and score on the held-out half: reconstruction MSE, DCI disentanglement of the
encoder means (gradient-boosted trees on the whole test fold) and, for the sparse variants,
support precision / recall / F1 after one-to-one (Hungarian) matching of factors.

Run:  .venv/bin/python benchmarks/synthetic_study.py --reps 10 --jobs 2
Writes benchmarks/results/synthetic_study.{csv,md} and synthetic_study.png.
Each fit runs on 1 torch thread; --jobs processes run side by side.
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

RESULTS = Path(__file__).resolve().parent / "results"

#: model variants: name -> (estimator class name, constructor kwargs)
VARIANTS = {
    "SparseVAE": ("SparseVAE", {}),
    # slab only: one Laplace(1) prior on every W entry (a lasso), no spike
    "SparseVAE-Slab": ("SparseVAE", {"lambda0": 1.0, "lambda1": 1.0}),
    "VAE": ("VAE", {"beta": 1.0}),
    "beta-VAE(2)": ("VAE", {"beta": 2.0}),
    "beta-VAE(4)": ("VAE", {"beta": 4.0}),
    # ablations of the defaults (not in the default run)
    "SparseVAE-nowarmup": ("SparseVAE", {"warmup": 0.0}),
    "SparseVAE-corr": ("SparseVAE", {"factor_correlation": True}),
    "SparseVAE-restarts3": ("SparseVAE", {"n_restarts": 3}),
    "SparseVAE-authors-pstar": ("SparseVAE", {"pstar": "authors"}),
    # a stronger Beta(1, b) prior on the inclusion rates (paper: b = G = 7); 35 = G x K
    "SparseVAE-b35": ("SparseVAE", {"b": 35.0}),
    "SparseVAE-b50": ("SparseVAE", {"b": 50.0}),
    "SparseVAE-anneal": ("SparseVAE", {"spike_anneal": 0.5}),
    "SparseVAE-corr-anneal": ("SparseVAE", {"factor_correlation": True, "spike_anneal": 0.5}),
    "SparseVAE-corr-restarts3": ("SparseVAE", {"factor_correlation": True, "n_restarts": 3}),
    # 2026-12-07: the networks in standardised units (SparseVAE(standardize=True), the
    # default since) and in the data's units (the default before)
    "SparseVAE-std": ("SparseVAE", {"standardize": True}),
    "VAE-std": ("VAE", {"standardize": True}),
    "SparseVAE-nostd": ("SparseVAE", {"standardize": False}),
    "VAE-nostd": ("VAE", {"standardize": False}),
    # variational W guides (posterior spread in W) alone and with the stronger eta prior
    "SparseVAE-meanfield": ("SparseVAE", {"w_guide": "meanfield"}),
    "SparseVAE-meanfield-b50": ("SparseVAE", {"w_guide": "meanfield", "b": 50.0}),
    "SparseVAE-lowrank-b50": ("SparseVAE", {"w_guide": "lowrank", "b": 50.0}),
    "SparseVAE-b50-anneal": ("SparseVAE", {"b": 50.0, "spike_anneal": 0.5}),
    "SparseVAE-b50-restarts3": ("SparseVAE", {"b": 50.0, "n_restarts": 3}),
    # support refinement on held-out rows (20% of the training half)
    "SparseVAE-refine": ("SparseVAE", {"refine_support": True}),
    "SparseVAE-corr-refine": ("SparseVAE", {"refine_support": True,
                                            "factor_correlation": True}),
    # a stronger LKJ prior (concentration 5) against near-duplicate factors
    "SparseVAE-corr5": ("SparseVAE", {"factor_correlation": True, "lkj_concentration": 5.0}),
    "SparseVAE-corr5-refine": ("SparseVAE", {"refine_support": True, "factor_correlation": True,
                                             "lkj_concentration": 5.0}),
    # restarts, each refined on the same held-out rows; compared there (2026-12-02 first run:
    # best held-out log-likelihood; since then: the one-standard-error rule, sparsest first)
    "SparseVAE-refine-restarts3": ("SparseVAE", {"refine_support": True, "n_restarts": 3}),
    "SparseVAE-corr5-refine-restarts3": ("SparseVAE", {"refine_support": True,
                                                       "factor_correlation": True,
                                                       "lkj_concentration": 5.0,
                                                       "n_restarts": 3}),
    "SparseVAE-corr5-refine-restarts5": ("SparseVAE", {"refine_support": True,
                                                       "factor_correlation": True,
                                                       "lkj_concentration": 5.0,
                                                       "n_restarts": 5}),
    # the same with each restart's chosen support fine-tuned 3 x epochs more before the
    # restarts are compared (2026-12-02: unfinished sparse fits lost to dense ones)
    "SparseVAE-corr5-refine-restarts5-polish3": ("SparseVAE", {"refine_support": True,
                                                               "factor_correlation": True,
                                                               "lkj_concentration": 5.0,
                                                               "n_restarts": 5,
                                                               "refine_polish": 3.0}),
    # a varimax-rotated factor analysis as the start (encoder pretrained to its scores, W at
    # its loadings; 2026-12-02: against split / collapsed factors on model-simulated data)
    "SparseVAE-fainit": ("SparseVAE", {"init": "factor_analysis"}),
    "SparseVAE-corr5-fainit": ("SparseVAE", {"factor_correlation": True,
                                             "lkj_concentration": 5.0,
                                             "init": "factor_analysis"}),
    # the decoder's output layer started at the data's spread (infer.match_output_scale;
    # 2026-12-03: against collapsed latents on model-simulated data)
    "SparseVAE-outscale": ("SparseVAE", {"output_scale": 1.0}),
    "VAE-outscale": ("VAE", {"beta": 1.0, "output_scale": 1.0}),
    "SparseVAE-outscale0.3": ("SparseVAE", {"output_scale": 0.3}),
    "SparseVAE-noutscale": ("SparseVAE", {"output_scale": None}),
    "VAE-noutscale": ("VAE", {"beta": 1.0, "output_scale": None}),
    # 2026-12-04: rounds of re-seeding the weakest factor, kept when the ELBO prefers them
    "SparseVAE-reseed3": ("SparseVAE", {"reseed_rounds": 3}),
    "SparseVAE-reseed5": ("SparseVAE", {"reseed_rounds": 5}),
    "SparseVAE-reseed5-nounfold": ("SparseVAE", {"reseed_rounds": 5, "reseed_unfold": False}),
    "SparseVAE-reseed5-reorder": ("SparseVAE", {"reseed_rounds": 5, "reseed_reorder": True}),
    # 2026-12-06: the learning rate falls linearly over the last 25% of the steps (the
    # default from then on: rows named SparseVAE / VAE measured before it used a constant
    # rate, as the -constlr variants do now)
    "SparseVAE-lrdecay": ("SparseVAE", {"lr_decay": 0.25}),
    "VAE-lrdecay": ("VAE", {"beta": 1.0, "lr_decay": 0.25}),
    "SparseVAE-constlr": ("SparseVAE", {"lr_decay": 0.0}),
    # 2026-12-07: each feature's loadings searched for a better mode given the factors
    "SparseVAE-modes16": ("SparseVAE", {"feature_mode_starts": 16}),
    "SparseVAE-refine-modes16": ("SparseVAE", {"refine_support": True,
                                               "feature_mode_starts": 16}),
    "VAE-constlr": ("VAE", {"beta": 1.0, "lr_decay": 0.0}),
    # 2026-12-07: the learned factor correlation with re-seeding (against split copies)
    "SparseVAE-corr5-reseed3": ("SparseVAE", {"factor_correlation": True,
                                              "lkj_concentration": 5.0, "reseed_rounds": 3}),
    "SparseVAE-corr5-refine-reseed3": ("SparseVAE", {"refine_support": True,
                                                     "factor_correlation": True,
                                                     "lkj_concentration": 5.0,
                                                     "reseed_rounds": 3}),
}
DEFAULT_VARIANTS = ["SparseVAE", "SparseVAE-Slab", "VAE", "beta-VAE(2)", "beta-VAE(4)"]
# the default Sparse VAE with PyTorch's fp32 matmuls run on bf16 inputs
# (torch.backends.mkldnn.matmul.fp32_precision = "bf16"; see benchmarks/README.md, speed)
VARIANTS["SparseVAE-bf16matmul"] = ("SparseVAE", {})
MATMUL_PRECISION = {"SparseVAE-bf16matmul": "bf16"}


def run_one(task):
    """Fit one variant on one replicate and score it; returns a dict row."""
    import torch

    torch.set_num_threads(1)
    import pyro_sparse as ps
    from pyro_sparse.diagnostics import (
        dci,
        estimated_support,
        match_factors,
        merge_redundant,
        support_scores,
    )

    variant, rho, rep, epochs, common = task
    torch.backends.mkldnn.matmul.fp32_precision = MATMUL_PRECISION.get(variant, "ieee")
    cls_name, kwargs = VARIANTS[variant]
    data = ps.datasets.paper_synthetic(n=1000, rho=rho, seed=rep)
    train, test = data.split(0.5, seed=rep)
    est = getattr(ps, cls_name)(n_factors=5, hidden_dim=50, **{**common.get(cls_name, {}),
                                                               **kwargs})
    t0 = time.process_time()
    est.fit(train.X, epochs=epochs, batch_size=100, lr=1e-2, seed=rep, progress=False)
    cpu_s = time.process_time() - t0
    rec = est.reconstruct(test.X)
    codes = est.transform(test.X)
    row = dict(variant=variant, rho=rho, rep=rep, cpu_s=cpu_s,
               mse=float(np.mean((rec - test.X) ** 2)),
               mse_x7=float(np.mean((rec[:, 6] - test.X[:, 6]) ** 2)),
               dci_d=dci(codes, test.Z, seed=rep)["disentanglement"])
    if cls_name == "SparseVAE":
        match = match_factors(test.Z, codes)
        # with lambda0 == lambda1 (the slab-only variant) p* equals eta and says nothing about
        # an entry: its support is |W| >= 0.01 alone
        informative = est.lambda0 != est.lambda1
        S = estimated_support(est.loadings_, est.inclusion_probs_ if informative else None)
        sc = support_scores(data.support, S, match)
        row.update(precision=sc["precision"], recall=sc["recall"], f1=sc["f1"],
                   exact=sc["exact"], x7_lost=bool(not S[6].any()))
        # the same scores with true factors matched to used factors (non-empty support
        # columns) first: under a learned factor correlation an unused factor's code is
        # predicted from the used ones and can win the |corr| matching
        su = support_scores(data.support, S, match_factors(test.Z, codes, prefer=S.any(0)))
        row.update(precision_used=su["precision"], recall_used=su["recall"], f1_used=su["f1"])
        # the p* support restricted to the entries that carry at least 10% of the feature's
        # decoded variation on the training rows (SparseVAE.effective_support)
        S_eff = est.effective_support(train.X, min_share=0.1)
        se = support_scores(data.support, S_eff, match)
        row.update(precision_effect=se["precision"], recall_effect=se["recall"],
                   f1_effect=se["f1"])
        # both: the effect-restricted support, true factors matched to its non-empty
        # columns first
        sb = support_scores(data.support, S_eff,
                            match_factors(test.Z, codes, prefer=S_eff.any(0)))
        row.update(precision_effect_used=sb["precision"], recall_effect_used=sb["recall"],
                   f1_effect_used=sb["f1"])
        # and with factors whose codes are near-collinear (the anchor report's redundancy
        # check, |r| >= 0.9 on the training rows) read as one factor: their supports merged
        S_mrg = merge_redundant(S_eff, est.transform(train.X))
        sm = support_scores(data.support, S_mrg,
                            match_factors(test.Z, codes, prefer=S_mrg.any(0)))
        row.update(precision_merged=sm["precision"], recall_merged=sm["recall"],
                   f1_merged=sm["f1"])
    return row


def summarise(df, variants):
    """Markdown table of means (and sds) per variant and rho."""
    lines = ["| variant | rho | held-out MSE | MSE sd | DCI-D | support P | support R | "
             "support F1 | support F1, used factors matched first | support F1, entries with "
             "effect share >= 0.1 | the same, used factors matched first | the same, redundant "
             "factors merged | exact support | x7 row lost | CPU s/fit | replicates |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in variants:
        for rho in sorted(df.rho.unique()):
            d = df[(df.variant == v) & (df.rho == rho)]
            if d.empty:
                continue
            def f(c, fmt="{:.3f}", d=d):
                return fmt.format(d[c].mean()) if c in d and d[c].notna().any() else "-"
            lines.append(f"| {v} | {rho} | {f('mse')} | {d.mse.std():.3f} | {f('dci_d', '{:.2f}')}"
                         f" | {f('precision', '{:.2f}')} | {f('recall', '{:.2f}')} | "
                         f"{f('f1', '{:.2f}')} | {f('f1_used', '{:.2f}')} | "
                         f"{f('f1_effect', '{:.2f}')} | {f('f1_effect_used', '{:.2f}')} | "
                         f"{f('f1_merged', '{:.2f}')} | "
                         f"{f('exact', '{:.0%}')} | "
                         f"{f('x7_lost', '{:.0%}')} | {d.cpu_s.mean():.1f} | "
                         f"{d.rep.nunique()} |")
    return "\n".join(lines)


def plot(df, variants, path):
    """Box plots of held-out MSE, DCI and support F1 against rho."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rhos = sorted(df.rho.unique())
    metrics = [("mse", "held-out MSE (log scale)"), ("dci_d", "DCI disentanglement"),
               ("f1", "support F1 (sparse variants)")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    width = 0.8 / len(variants)
    for ax, (col, title) in zip(axes, metrics):
        for i, v in enumerate(variants):
            vals = [df[(df.variant == v) & (df.rho == r)][col].dropna().to_numpy() for r in rhos]
            if not any(len(x) for x in vals) :
                continue
            pos = np.arange(len(rhos)) + (i - (len(variants) - 1) / 2) * width
            bp = ax.boxplot(vals, positions=pos, widths=width * 0.9, patch_artist=True,
                            showfliers=True, flierprops=dict(markersize=2))
            for b in bp["boxes"]:
                b.set_facecolor(f"C{i}")
            ax.plot([], [], color=f"C{i}", lw=6, label=v)
        ax.set_xticks(range(len(rhos)), [str(r) for r in rhos])
        ax.set_xlabel("rho (factor correlation)")
        ax.set_title(title)
        if col == "mse":
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--first-rep", type=int, default=0,
                    help="replicates (data seeds) first-rep .. first-rep + reps - 1")
    ap.add_argument("--rhos", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8])
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS,
                    choices=list(VARIANTS))
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--name", default="synthetic_study")
    ap.add_argument("--render", nargs="+", metavar="CSV",
                    help="no fitting: merge these result CSVs (later files replace earlier "
                         "rows of the same variant, rho and replicate) and write the table "
                         "and plot under --name")
    args = ap.parse_args(argv)
    import pandas as pd

    if args.render:
        df = pd.concat([pd.read_csv(f) for f in args.render], ignore_index=True)
        df = df.drop_duplicates(["variant", "rho", "rep"], keep="last")
        variants = [v for v in VARIANTS if v in set(df.variant)]
        RESULTS.mkdir(exist_ok=True)
        df.to_csv(RESULTS / f"{args.name}.csv", index=False)
        header = (f"# {args.name}\n\nMerged from {', '.join(Path(f).name for f in args.render)}"
                  " (see each run's command in benchmarks/README.md); 2 processes x 1 torch "
                  f"thread on {platform.node() or '?'} ({os.cpu_count()} cores).\n\n"
                  f"Means over {df.rep.nunique()} replicates per rho (sd of the MSE beside "
                  "it).\n\n")
        (RESULTS / f"{args.name}.md").write_text(header + summarise(df, variants) + "\n")
        plot(df, variants, RESULTS / f"{args.name}.png")
        print(header + summarise(df, variants))
        return

    tasks = [(v, rho, rep, args.epochs, {})
             for rep in range(args.first_rep, args.first_rep + args.reps) for rho in args.rhos
             for v in args.variants]
    t0 = time.time()
    rows = []
    with ProcessPoolExecutor(args.jobs) as ex:
        for i, row in enumerate(ex.map(run_one, tasks, chunksize=1)):
            rows.append(row)
            if (i + 1) % 10 == 0:
                print(f"{i + 1}/{len(tasks)} fits, {time.time() - t0:.0f} s", file=sys.stderr)
    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    df.to_csv(RESULTS / f"{args.name}.csv", index=False)
    header = (f"# {args.name}\n\nMeasured {time.strftime('%Y-%m-%d')} on {platform.node() or '?'}"
              f" ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), "
              f"{args.jobs} processes x 1 torch thread, {len(tasks)} fits in "
              f"{time.time() - t0:.0f} s.\nCommand: `.venv/bin/python benchmarks/"
              f"synthetic_study.py --reps {args.reps} --first-rep {args.first_rep} "
              f"--rhos {' '.join(map(str, args.rhos))} "
              f"--variants {' '.join(args.variants)} --epochs {args.epochs} --name {args.name}`"
              f"\n\nMeans over {args.reps} replicates per rho (sd of the MSE beside it).\n\n")
    (RESULTS / f"{args.name}.md").write_text(header + summarise(df, args.variants) + "\n")
    plot(df, args.variants, RESULTS / f"{args.name}.png")
    print(header + summarise(df, args.variants))


if __name__ == "__main__":
    main()
