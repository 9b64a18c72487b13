"""The how-to guides in guides/ run as written: python blocks in-process, bash blocks in a
shell with the installed ``pyro-sparse`` on PATH, in order, in one scratch folder."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

GUIDES = sorted((Path(__file__).resolve().parents[1] / "guides").glob("*.md"))


@pytest.mark.parametrize("path", GUIDES, ids=[p.name for p in GUIDES])
def test_guide_code_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```(python|bash)\n(.*?)```", path.read_text(), re.S)
    assert blocks, f"{path.name} has no python or bash code block"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}"
               f"{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    ns: dict = {}
    for lang, block in blocks:
        if lang == "python":
            exec(compile(block, str(path), "exec"), ns)
        else:
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, f"{path.name} bash block failed:\n{block}\n{r.stderr}"
