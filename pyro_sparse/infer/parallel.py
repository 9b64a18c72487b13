"""Independent fits in worker processes: restarts are embarrassingly parallel.

Workers are *spawned* (fresh interpreters, never forked: a forked copy of a process whose
OpenMP thread pool has run can hang), each with its own torch thread count, so that
``n_jobs`` workers x ``threads`` threads do not oversubscribe the machine. A script that
calls this needs the usual ``if __name__ == "__main__":`` guard, as for any use of
:mod:`multiprocessing` with spawned workers.
"""

from __future__ import annotations

import multiprocessing
import numbers
import os
import warnings
from concurrent.futures import ProcessPoolExecutor

__all__ = ["check_n_jobs", "effective_jobs", "run_in_processes"]


def check_n_jobs(n_jobs) -> int:
    """Validate ``n_jobs``: a positive integer, or -1 for one worker per CPU core.

    Raises
    ------
    TypeError, ValueError
        For a non-integer, 0, or a negative number other than -1.
    """
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral):
        raise TypeError(f"n_jobs must be an integer, got {type(n_jobs).__name__}")
    if n_jobs == -1:
        return os.cpu_count() or 1
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1 or -1 (one per CPU core), got {n_jobs}")
    return int(n_jobs)


def effective_jobs(n_jobs: int, n_tasks: int) -> int:
    """Workers actually started: at most one per task."""
    return max(1, min(int(n_jobs), int(n_tasks)))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    warnings.simplefilter("default")


def _call_recording_warnings(fn, args):
    # run fn(*args) in the worker; its warnings travel back to be re-issued by the caller
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args)
    return out, [(w.category, str(w.message)) for w in caught]


def run_in_processes(fn, tasks, n_jobs: int, threads: int = 1, on_done=None,
                     stacklevel: int = 1) -> list:
    """Run ``fn(*task)`` for every task in spawned worker processes.

    Parameters
    ----------
    fn : callable
        A module-level function (it is pickled by reference); its arguments and result must
        be picklable.
    tasks : sequence of tuple
        Positional arguments of each call.
    n_jobs : int
        Worker processes (at most one per task is started).
    threads : int
        torch threads per worker.
    on_done : callable, optional
        Called with no arguments each time a task finishes (for progress bars).
    stacklevel : int
        Where the re-issued warnings point: 1 is the line that called this function, 2 its
        caller, and so on (as :func:`warnings.warn`'s ``stacklevel`` one frame up).

    Returns
    -------
    list
        The results, in the order of ``tasks``. Warnings a task raised are re-issued here,
        in task order.

    Raises
    ------
    Exception
        The error of the first task (in task order) that raised one; tasks not yet started
        are cancelled, and those running are waited for.
    """
    tasks = list(tasks)
    if not tasks:
        return []
    ctx = multiprocessing.get_context("spawn")
    jobs = effective_jobs(n_jobs, len(tasks))
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(int(threads),)) as pool:
        futures = [pool.submit(_call_recording_warnings, fn, tuple(t)) for t in tasks]
        if on_done is not None:
            for f in futures:
                f.add_done_callback(lambda _f: on_done())
        results = []
        for i, f in enumerate(futures):
            try:
                out, caught = f.result()
            except BaseException:
                # tasks not started are dropped; running ones finish before the pool closes
                for later in futures[i + 1:]:
                    later.cancel()
                raise
            for category, message in caught:
                warnings.warn(message, category, stacklevel=int(stacklevel) + 1)
            results.append(out)
    return results
