"""Start-up cost: ``import pyro_sparse`` in a fresh interpreter, and spawning restart workers.

Every worker of ``fit(n_jobs=...)`` and every ``pyro-sparse`` command pays it. Reports the
median of ``--reps`` fresh interpreters for the import, and the wall time of
``run_in_processes`` on a no-op (1 task on 1 worker, 2 on 2, 5 on 2).

Run:  .venv/bin/python benchmarks/startup.py          (under a minute)
Writes benchmarks/results/startup.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

from parallel_restarts import RESULTS, cpu_name


def noop() -> int:
    return os.getpid()


def import_seconds(reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import pyro_sparse"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    from pyro_sparse.infer import run_in_processes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--name", default="startup")
    argv = sys.argv[1:] if argv is None else list(argv)
    a = p.parse_args(argv)
    rows = [("`import pyro_sparse` in a fresh interpreter (median of "
             f"{a.reps}, interpreter start included)", import_seconds(a.reps))]
    for jobs, n in [(1, 1), (2, 2), (2, 5)]:
        t0 = time.perf_counter()
        run_in_processes(noop, [()] * n, jobs)
        rows.append((f"`run_in_processes`: {n} no-op task(s) on {jobs} worker(s)",
                     time.perf_counter() - t0))
    lines = ["# Start-up cost", "",
             f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()} ({platform.machine()}, "
             f"{os.cpu_count()} cores, {cpu_name()}), python {platform.python_version()}.",
             "Command: `.venv/bin/python benchmarks/startup.py"
             + (f" {' '.join(argv)}" if argv else "") + "`", "",
             "| what | wall s |", "|---|---|"] + [f"| {w} | {t:.2f} |" for w, t in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{a.name}.md").write_text(text)


if __name__ == "__main__":
    main()
