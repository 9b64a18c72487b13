"""Every tutorial notebook executes top to bottom with the smoke flag (few epochs), and its
committed outputs come from a full-size run of the code it shows."""

import importlib.util
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("PYRO_SPARSE_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


def test_there_is_a_tutorial():
    assert any(p.name == "01_sparse_vae_synthetic.ipynb" for p in NOTEBOOKS)
    assert os.path.getsize(NOTEBOOKS[0]) > 0


def _load_executor():
    spec = importlib.util.spec_from_file_location("tutorials_execute",
                                                  NOTEBOOKS[0].parent / "execute.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_outputs_belong_to_the_code(path):
    """The notebooks are committed with the outputs of a full-size run of the code shown
    (``make tutorials``): every code cell ran, none raised, the figures are embedded, and
    the digest of the code cells taken at that run matches the cells as they are now."""
    nb = nbformat.read(path, as_version=4)
    run = nb.metadata.get("pyro_sparse_run")
    assert run is not None, f"{path.name} has no full-run outputs: run `make tutorials`"
    assert run["smoke"] is False
    assert run["code_sha256"] == _load_executor().code_digest(nb), (
        f"{path.name}: code cells changed since the committed outputs were made; "
        "rerun `make tutorials`")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_code_digest_sees_an_edited_cell(tmp_path):
    executor = _load_executor()
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    before = executor.code_digest(nb)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.source += "\n"
    assert executor.code_digest(nb) != before
    md = next(c for c in nb.cells if c.cell_type == "markdown")
    code.source = code.source[:-1]
    md.source += " edited prose"
    assert executor.code_digest(nb) == before   # prose is not code
