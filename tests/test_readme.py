"""The README's two commands come first, and its Python examples run as written."""

import re
from pathlib import Path

import pyro

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    first_block = text.split("```")[1]
    assert [ln.split("#")[0].strip() for ln in first_block.strip().splitlines()] == \
        ["make demo", "make test"]


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    ns: dict = {}
    for block in blocks:
        # the quick start uses the paper's 200 epochs; 5 keep the test fast
        exec(compile(block.replace("epochs=200", "epochs=5"), "README", "exec"), ns)
        pyro.clear_param_store()
    assert ns["m2"].loadings_.shape == (7, 5)
