"""Columns on other scales: one column of the paper's synthetic data shifted or rescaled,
fitted in the data's units and with ``standardize=True``.

Each setting moves column x1 only (a shift by ``+20``, a scale by ``1000`` or ``0.01``; the
others as simulated) and fits the default Sparse VAE (K = 5, 200 epochs, the paper's
settings) on the training half. The held-out MSE is taken after mapping the reconstruction
back to the unmoved units, so the settings are comparable: ``x1`` for the moved column,
``others`` for the mean over x2-x7.

Run: ``.venv/bin/python benchmarks/column_scales.py --reps 5 --name column_scales``
(``--jobs`` processes, one torch thread each).
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
#: (label, shift of x1, scale of x1)
SETTINGS = [("as simulated", 0.0, 1.0), ("x1 + 20", 20.0, 1.0), ("x1 x 1000", 0.0, 1000.0),
            ("x1 x 0.01", 0.0, 0.01)]


def run_one(task):
    """Fit one setting on one replicate; returns a dict row."""
    label, shift, scale, standardize, rep, rho, epochs = task
    setup_worker()
    import pyro_sparse as ps

    data = ps.datasets.paper_synthetic(n=1000, rho=rho, seed=rep)
    train, test = data.split(0.5, seed=rep)
    a = np.ones(7)
    b = np.zeros(7)
    a[0], b[0] = scale, shift
    t0 = time.process_time()
    m = ps.SparseVAE(n_factors=5, standardize=standardize).fit(
        train.X * a + b, epochs=epochs, batch_size=100, lr=1e-2, seed=rep, progress=False)
    cpu = time.process_time() - t0
    err = ((m.reconstruct(test.X * a + b) - b) / a - test.X) ** 2
    return dict(setting=label, standardize=standardize, rep=rep, rho=rho,
                mse_x1=float(err[:, 0].mean()), mse_others=float(err[:, 1:].mean()),
                cpu_s=cpu)


def render(df, name, command, seconds):
    lines = [f"# {name}", "",
             f"Measured {date.today().isoformat()} on {platform.node()} ({platform.machine()}, "
             f"{platform.processor() or 'cpu'}), 1 torch thread per fit, {seconds:.0f} s.",
             f"Command: `{command}`", "",
             "Held-out MSE in the unmoved units, mean over replicates (sd in brackets).", "",
             "| setting | standardize | held-out MSE, x1 | held-out MSE, x2-x7 | CPU s/fit | "
             "replicates |", "|---|---|---|---|---|---|"]
    for label, _, _ in SETTINGS:
        for std in (False, True):
            d = df[(df.setting == label) & (df.standardize == std)]
            if d.empty:
                continue
            lines.append(f"| {label} | {std} | {d.mse_x1.mean():.3f} ({d.mse_x1.std():.3f}) | "
                         f"{d.mse_others.mean():.3f} ({d.mse_others.std():.3f}) | "
                         f"{d.cpu_s.mean():.1f} | {len(d)} |")
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


def main(argv=None):
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rho", type=float, default=0.4)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--name", default="column_scales")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.epochs < 1 or args.jobs < 1:
        ap.error("--reps, --epochs and --jobs must be >= 1")
    tasks = [(label, shift, scale, std, rep, args.rho, args.epochs)
             for label, shift, scale in SETTINGS for std in (False, True)
             for rep in range(args.reps)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as ex:
        rows = list(ex.map(run_one, tasks))
    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    df.to_csv(RESULTS / f"{args.name}.csv", index=False)
    command = ".venv/bin/python benchmarks/column_scales.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    render(df, args.name, command.strip(), time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
