"""Execute the tutorial notebooks at full size and save them with their outputs.

The notebooks are committed with the outputs of a full-size run, so that a reader sees the
figures and numbers without running anything. The tests run them again with the smoke flag
(``PYRO_SPARSE_SMOKE=1``, a few epochs) on a copy; this script is how the committed outputs
are made (``make tutorials``).

Each notebook runs in its own kernel with 1 torch thread; its metadata records the date, the
machine, how long it took and a digest of its code cells (``tests/test_tutorials.py`` checks
that the committed outputs belong to the code shown). The run is refused as a whole if any
cell raises (the notebook on disk is then left exactly as it was).

Run:  .venv/bin/python tutorials/execute.py [NAME.ipynb ...] [--jobs 2]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent

__all__ = ["code_digest", "execute", "main"]


def _cpu_model() -> str:
    # the CPU's name where Linux reports it ("" elsewhere)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def code_digest(nb) -> str:
    """SHA-256 of a notebook's code cells (their sources in order).

    Stored with the outputs, so a test can tell whether the outputs still belong to the code
    shown (an edited cell without a rerun changes it).
    """
    h = hashlib.sha256()
    for c in nb.cells:
        if c.cell_type == "code":
            h.update(c.source.encode())
            h.update(b"\0")
    return h.hexdigest()


def execute(path: Path, timeout: int = 1800) -> float:
    """Run ``path`` top to bottom at full size and replace it with the executed notebook.

    Parameters
    ----------
    path : Path
        A notebook under ``tutorials/``.
    timeout : int
        Seconds any single cell may take.

    Returns
    -------
    float
        Wall seconds the run took.

    Raises
    ------
    RuntimeError
        When a cell raises; the notebook on disk is not changed.
    """
    import nbformat
    from nbclient import NotebookClient

    # the kernel inherits this environment: 1 thread, full size, matplotlib's inline backend
    # (figures embedded as PNG), and without tqdm's notice that ipywidgets is not installed
    # (Pyro imports tqdm.auto; the notice is about the environment, not the tutorial)
    os.environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                       "PYTHONWARNINGS": "ignore:IProgress not found"})
    for name in ("PYRO_SPARSE_SMOKE", "MPLBACKEND"):
        os.environ.pop(name, None)
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    wall = time.perf_counter() - t0
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells)
              if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    if errors:
        raise RuntimeError(f"{path.name}: cell {errors[0][0]} raised {errors[0][1]}: "
                           f"{errors[0][2]}; the notebook was not changed")
    nb.metadata["pyro_sparse_run"] = {
        "date": _dt.date.today().isoformat(),
        "machine": ", ".join(x for x in (platform.machine(), f"{os.cpu_count()} cores",
                                         _cpu_model()) if x),
        "python": platform.python_version(),
        "torch_threads": 1,
        "smoke": False,
        "wall_seconds": round(wall, 1),
        "code_sha256": code_digest(nb),
    }
    # written beside the notebook and renamed over it: never a half-written notebook
    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=path.parent)
    os.close(fd)
    try:
        nbformat.write(nb, tmp)
        shutil.copymode(path, tmp)   # mkstemp makes the file private; keep the notebook's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return wall


def main(argv=None) -> int:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="notebooks to run (default: all in tutorials/)")
    ap.add_argument("--jobs", type=int, default=1, help="notebooks run side by side")
    args = ap.parse_args(argv)
    paths = [HERE / n for n in args.names] or sorted(HERE.glob("*.ipynb"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {p: pool.submit(execute, p) for p in paths}
        failed = 0
        for p, f in futures.items():
            try:
                print(f"{p.name}: {f.result():.0f} s")
            except RuntimeError as e:
                failed += 1
                print(str(e), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
