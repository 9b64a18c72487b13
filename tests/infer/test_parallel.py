"""Independent fits in spawned worker processes (pyro_sparse.infer.parallel)."""

import math
import operator
import os
import warnings

import pytest

from pyro_sparse.infer import check_n_jobs, run_in_processes


def test_check_n_jobs():
    assert check_n_jobs(1) == 1 and check_n_jobs(3) == 3
    assert check_n_jobs(-1) == (os.cpu_count() or 1)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="n_jobs must be >= 1 or -1"):
            check_n_jobs(bad)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match="n_jobs must be an integer"):
            check_n_jobs(bad)


def test_results_in_task_order_warnings_reissued_and_progress_counted():
    done = []
    tasks = [(2, 10), (3, 2), ("careful: ", "restart 2"), ("from a worker", UserWarning),
             (5, 1)]
    fns = [operator.pow, operator.pow, operator.add, warnings.warn, operator.pow]
    # module-level functions pickle by reference
    with pytest.warns(UserWarning, match="from a worker") as rec:
        out = run_in_processes(_apply, list(zip(fns, tasks)), n_jobs=2,
                               on_done=lambda: done.append(1))
    assert rec[0].filename == __file__  # the warning points at the call
    assert out == [1024, 9, "careful: restart 2", None, 5]
    assert len(done) == 5
    assert run_in_processes(operator.pow, [], 2) == []


def test_the_first_failing_task_raises_its_own_error():
    with pytest.raises(ValueError, match="math domain error"):
        run_in_processes(math.sqrt, [(4.0,), (-1.0,), (9.0,)], n_jobs=2)


def _apply(fn, args):
    return fn(*args)
