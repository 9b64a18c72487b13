import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyro_sparse.guides import make_guide
from pyro_sparse.models import SparseVAEModel, VAEModel
from pyro_sparse.models._inputs import check_minibatch


@pytest.mark.parametrize("x,kw,exc,match", [
    (np.zeros((4, 3), np.float32), {}, TypeError, "must be a torch.Tensor .* got ndarray"),
    (torch.zeros(3), {}, ValueError, r"must have shape \(batch, 3\), got \(3,\)"),
    (torch.zeros(4, 2), {}, ValueError, "has 2 features .* built for 3"),
    (torch.zeros(4, 3, dtype=torch.float64), {}, TypeError, "dtype torch.float64 but"),
    (torch.zeros(4, 3), dict(n_data=2), ValueError, r"n_data \(2\) .* minibatch \(4 rows\)"),
    (torch.zeros(4, 3), dict(idx=torch.arange(3)), ValueError, "3 row indices for .* 4 rows"),
])
def test_check_minibatch_names_the_problem(x, kw, exc, match):
    with pytest.raises(exc, match=match):
        check_minibatch(x, 3, torch.float32, **kw)


def test_check_minibatch_accepts_a_valid_batch():
    check_minibatch(torch.full((4, 3), float("nan")), 3, torch.float32, n_data=10,
                    idx=torch.arange(4))


@pytest.mark.parametrize("model_cls", [SparseVAEModel, VAEModel])
def test_user_svi_loop_gets_the_message_not_a_matmul_error(model_cls):
    with pyro.settings.context(module_local_params=True):
        model = model_cls(n_features=5, n_factors=2, hidden_dim=8)
        guide = make_guide(model)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
        with pytest.raises(ValueError, match="x_bg has 4 features .* built for 5"):
            svi.step(torch.randn(6, 4))
        with pytest.raises(TypeError, match="pass x_bg.to"):
            svi.step(torch.randn(6, 5, dtype=torch.float64))
        assert np.isfinite(svi.step(torch.randn(6, 5), n_data=60, idx=torch.arange(6)))
