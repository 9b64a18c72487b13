import pyro
import pytest
import torch

from pyro_sparse.guides import make_guide
from pyro_sparse.infer import fit_svi, resolve_device, warmup_weight
from pyro_sparse.models import SparseVAEModel


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(TypeError):
        resolve_device(3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_warmup_weight():
    assert warmup_weight(0, 0) == 1.0
    assert warmup_weight(0, 10) == pytest.approx(0.1)
    assert warmup_weight(50, 10) == 1.0


def test_fit_svi_is_deterministic_and_reports_nan():
    x = torch.randn(40, 4)
    out = []
    for _ in range(2):
        with pyro.settings.context(module_local_params=True):
            pyro.set_rng_seed(3)
            model = SparseVAEModel(4, 2, 8)
            guide = make_guide(model)
            h = fit_svi(model, guide, x, epochs=3, batch_size=16, seed=3, warmup_epochs=1)
        out.append((h, guide.globals_guide.W_gk.detach().clone()))
    assert out[0][0] == out[1][0]
    torch.testing.assert_close(out[0][1], out[1][1], rtol=0, atol=0)
    with pyro.settings.context(module_local_params=True):
        model = SparseVAEModel(4, 2, 8)
        guide = make_guide(model)
        # values beyond float32 range overflow the Gaussian log-density
        with pytest.raises(FloatingPointError, match="loss became (nan|inf)"):
            fit_svi(model, guide, torch.full((10, 4), 1e30), epochs=1)
