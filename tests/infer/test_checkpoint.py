import numpy as np
import pytest
import torch

import pyro_sparse as ps
from pyro_sparse.infer import check_checkpoint_target, read_checkpoint, write_checkpoint


def test_checkpoint_target_is_never_a_foreign_file(tmp_path):
    check_checkpoint_target(tmp_path / "absent.ckpt")  # a new file: fine
    ours = write_checkpoint(tmp_path / "ours.ckpt", {"a": torch.zeros(2)}, {"epoch": 1})
    check_checkpoint_target(ours)  # an earlier checkpoint may be replaced by a fresh fit
    with pytest.raises(ValueError, match="is a folder"):
        check_checkpoint_target(tmp_path)
    foreign = tmp_path / "results.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a pyro_sparse checkpoint; refusing to overwrite"):
        check_checkpoint_target(foreign)


def test_fit_leaves_a_foreign_file_at_the_checkpoint_path_alone(tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 4)).astype("float32")
    foreign = tmp_path / "notes.txt"
    foreign.write_text("precious")
    m = ps.SparseVAE(n_factors=2, hidden_dim=8)
    with pytest.raises(ValueError, match="refusing to overwrite"):
        m.fit(X, epochs=2, checkpoint=foreign, checkpoint_every=1, progress=False)
    assert foreign.read_text() == "precious" and not hasattr(m, "model_")
    # a checkpoint of an earlier run at the path is replaced by a fresh (not resumed) fit
    ck = tmp_path / "fit.ckpt"
    m.fit(X, epochs=2, checkpoint=ck, checkpoint_every=1, seed=0, progress=False)
    m.fit(X, epochs=3, checkpoint=ck, checkpoint_every=1, seed=1, progress=False)
    assert read_checkpoint(ck)[1]["epoch"] == 3
