"""Wall time of restarts fitted one by one against restarts in worker processes (``n_jobs``).

The tuned recipe of the synthetic study (learned factor correlation, support refinement,
five polished restarts), plain restarts chosen by ELBO, and ``select_n_factors`` over
K = 2-6 (one default fit per K), on the paper's synthetic data (the study's training half,
500 rows). Side by side in one run, interleaved per data set:

- ``serial, 1 thread``: ``n_jobs=1`` with one torch thread (what the study ran);
- ``serial, T threads``: ``n_jobs=1`` with all T cores given to torch;
- ``n_jobs=T``: T workers with one thread each.

Every run uses the same seeds, and the table says whether the ``n_jobs`` fit's loadings (for
K selection: its table's scores) are bit-identical to the one-thread serial fit's (they
should be: each restart is seeded as in a serial fit). Process start-up (each worker
imports torch and Pyro) is inside the wall time.
A scaling probe before and after the fits (a fixed one-thread workload alone and in T
processes at once) says how many cores the machine really gave: on a shared VM the second
core is sometimes not there, and then no ``n_jobs`` can help.

Run:  .venv/bin/python benchmarks/parallel_restarts.py          (14-28 minutes on 2 cores)
Writes benchmarks/results/parallel_restarts.{md,csv}.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

SETTINGS = {
    "recipe (corr5 + refine + 5 polished restarts)":
        dict(n_factors=5, factor_correlation=True, lkj_concentration=5.0, refine_support=True,
             n_restarts=5, refine_polish=3.0),
    "5 restarts by ELBO": dict(n_factors=5, n_restarts=5),
    # select_n_factors(n_jobs=): one default fit per K, each fitted and scored in a worker
    "K selection (K = 2-6)": dict(select=[2, 3, 4, 5, 6]),
}


def run_setting(setting: str, X, epochs: int, jobs: int) -> np.ndarray:
    """Fit one setting; returns what must agree with the serial run (loadings or table)."""
    import pyro_sparse as ps

    params = dict(SETTINGS[setting])
    kw = dict(epochs=epochs, batch_size=100, lr=1e-2, seed=0, progress=False, n_jobs=jobs)
    if "select" in params:
        table = ps.select_n_factors(ps.SparseVAE(), X, params["select"], **kw)
        return table[["heldout_loglik", "heldout_elbo", "train_elbo"]].to_numpy()
    return ps.SparseVAE(**params).fit(X, **kw).loadings_


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def busy_loop(reps: int) -> float:
    """A fixed CPU-bound torch workload at one thread; returns its wall seconds."""
    import torch

    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    t0 = time.perf_counter()
    for _ in range(reps):
        a = torch.tanh(a @ a * 0.01)
    return time.perf_counter() - t0


def probe_scaling(jobs: int, reps: int) -> dict:
    """How much the machine gives to ``jobs`` processes at once, right now.

    The same workload alone and in ``jobs`` worker processes at once (each timed inside its
    worker, so start-up is excluded): ``scaling`` = jobs x alone / slowest concurrent copy,
    ``jobs`` on a machine with that many free cores, 1 when the copies share one.
    """
    from pyro_sparse.infer import run_in_processes

    alone = min(run_in_processes(busy_loop, [(reps,)], 1)[0] for _ in range(2))
    together = max(run_in_processes(busy_loop, [(reps,)] * jobs, jobs))
    return dict(alone_s=round(alone, 2), together_s=round(together, 2),
                scaling=round(jobs * alone / together, 2))


def main(argv=None):
    import torch

    import pyro_sparse as ps

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rhos", type=float, nargs="+", default=[0.4, 0.8])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--rows", type=int, default=500,
                   help="training rows (the training half of a data set twice as large)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--name", default="parallel_restarts")
    p.add_argument("--probe-reps", type=int, default=4000,
                   help="size of the scaling probe's workload (about 1 ms per rep)")
    argv = sys.argv[1:] if argv is None else list(argv)
    a = p.parse_args(argv)
    T = a.jobs
    warnings.simplefilter("ignore")
    rows = []
    t_start = time.perf_counter()
    probes = [probe_scaling(T, a.probe_reps)]
    print("scaling probe:", probes[-1], flush=True)
    for setting in a.settings:
        for rho in a.rhos:
            data = ps.datasets.paper_synthetic(n=2 * a.rows, rho=rho, seed=0)
            train, _ = data.split(0.5, seed=0)
            runs = [("serial, 1 thread", 1, 1), (f"serial, {T} threads", T, 1),
                    (f"n_jobs={T}", 1, T)]
            ref = None
            for mode, threads, jobs in runs:
                torch.set_num_threads(threads)
                t0 = time.perf_counter()
                c0 = time.process_time()
                result = run_setting(setting, train.X, a.epochs, jobs)
                wall = time.perf_counter() - t0
                cpu = time.process_time() - c0  # this process only (workers not counted)
                if ref is None:
                    ref = result
                rows.append(dict(setting=setting, rho=rho, mode=mode, threads=threads,
                                 n_jobs=jobs, wall_s=round(wall, 1),
                                 parent_cpu_s=round(cpu, 1),
                                 same_as_serial_1_thread=bool(np.array_equal(result, ref))))
                print(rows[-1], flush=True)
    probes.append(probe_scaling(T, a.probe_reps))
    print("scaling probe:", probes[-1], flush=True)
    total = time.perf_counter() - t_start
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{a.name}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["# Restarts one by one against restarts in worker processes", "",
             f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()} ({platform.machine()}, "
             f"{os.cpu_count()} cores, {cpu_name()}), python {platform.python_version()}, "
             f"torch {torch.__version__}; run took {total:.0f} s.",
             "Command: `.venv/bin/python benchmarks/parallel_restarts.py"
             + (f" {' '.join(argv)}" if argv else "") + "`", "",
             f"Paper synthetic data, {a.rows} training rows, {a.epochs} epochs, batch 100, seed 0. "
             "Wall time includes worker start-up. `speed-up` is against the one-thread serial "
             "fit of the same setting and data set. With R restarts of equal length on J "
             "workers the speed-up is at most R / ceil(R / J) (5/3 for 5 restarts on 2; "
             "restarts of unequal length can balance better, up to J), less each worker's "
             "start-up (a fresh Python importing torch and Pyro). `same loadings`: "
             "bit-identical to the one-thread serial fit (for K selection: the held-out and "
             "training scores of every K).", "",
             f"Scaling probe (the same one-thread workload alone and {T} copies at once; "
             f"{T} means {T} free cores, 1 means the copies shared one): "
             + ", ".join(f"{'before' if i == 0 else 'after'} the fits {p['scaling']}x "
                         f"({p['alone_s']} s alone, {p['together_s']} s together)"
                         for i, p in enumerate(probes)) + ".", "",
             "| setting | rho | mode | wall s | speed-up | same loadings as serial, 1 thread |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        base = next(b for b in rows if b["setting"] == r["setting"] and b["rho"] == r["rho"]
                    and b["mode"] == "serial, 1 thread")
        lines.append(f"| {r['setting']} | {r['rho']} | {r['mode']} | {r['wall_s']} | "
                     f"{base['wall_s'] / r['wall_s']:.2f}x | "
                     f"{'yes' if r['same_as_serial_1_thread'] else 'no'} |")
    (RESULTS / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
