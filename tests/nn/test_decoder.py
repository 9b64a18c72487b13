import pytest
import torch

from pyro_sparse.nn import DenseDecoder, GaussianEncoder, SparseDecoder, sparse_decoder_forward
from pyro_sparse.nn import decoder as decoder_module


@pytest.fixture(params=["saved", "recomputed"])
def first_activation(request, monkeypatch):
    """Both backward paths: the first hidden activation saved by the forward (small shapes)
    or recomputed in the backward (large shapes; forced here by a zero size limit)."""
    limit = 0 if request.param == "recomputed" else 1 << 40
    monkeypatch.setattr(decoder_module, "_RECOMPUTE_BYTES", limit)
    return request.param


def naive(z, W, A1, A2, b2, V, c):
    u = z.unsqueeze(1) * W  # (B, G, K)
    h1 = torch.relu(u @ A1.T)
    h2 = torch.relu(h1 @ A2.T + b2)
    return (h2 * V).sum(-1) + c


def params(B=6, G=5, K=3, H=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(B, K), (G, K), (H, K), (H, H), (H,), (G, H), (G,)]
    return [torch.randn(*s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


@pytest.mark.parametrize("block", [1, 2, 3, 5, 8])
def test_fused_decoder_matches_naive_forward_and_gradients(block, first_activation):
    p = params()
    out = sparse_decoder_forward(*p, block=block)
    ref = naive(*p)
    torch.testing.assert_close(out, ref)
    go = torch.randn_like(out)
    g1 = torch.autograd.grad(out, p, go)
    g2 = torch.autograd.grad(ref, p, go)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_fused_decoder_gradcheck(first_activation):
    p = params(B=4, G=3, K=2, H=3)
    assert torch.autograd.gradcheck(lambda *a: sparse_decoder_forward(*a, block=2), p)


def test_zero_loading_means_feature_ignores_factor_exactly():
    dec = SparseDecoder(n_features=4, n_factors=3, hidden_dim=8)
    W = torch.randn(4, 3)
    W[2, 1] = 0.0
    z = torch.randn(10, 3)
    z2 = z.clone()
    z2[:, 1] = torch.randn(10) * 5
    with torch.no_grad():
        a, b = dec(z, W), dec(z2, W)
    torch.testing.assert_close(a[:, 2], b[:, 2], rtol=0, atol=0)
    assert not torch.allclose(a[:, 0], b[:, 0])


def test_decoder_handles_leading_sample_dims():
    dec = SparseDecoder(5, 2, 6)
    z = torch.randn(3, 7, 2)
    assert dec(z, torch.randn(5, 2)).shape == (3, 7, 5)


def test_dense_decoder_and_encoder_shapes():
    assert DenseDecoder(6, 3, 10)(torch.randn(4, 3)).shape == (4, 6)
    loc, scale = GaussianEncoder(6, 3, 10)(torch.randn(4, 6))
    assert loc.shape == scale.shape == (4, 3)
    assert (scale > 0).all()


def test_workspace_is_not_shared_between_live_graphs(first_activation):
    """Two forwards before either backward: each graph keeps its own saved activations."""
    p1 = params(B=8, G=5, K=3, H=4, seed=1)
    p2 = params(B=8, G=5, K=3, H=4, seed=2)
    out1 = sparse_decoder_forward(*p1, block=2)
    out2 = sparse_decoder_forward(*p2, block=2)  # must not overwrite out1's activations
    g1 = torch.autograd.grad(out1.sum(), p1)
    g2 = torch.autograd.grad(out2.sum(), p2)
    for got, want in zip(g1 + g2, torch.autograd.grad(naive(*p1).sum(), p1)
                         + torch.autograd.grad(naive(*p2).sum(), p2)):
        torch.testing.assert_close(got, want)


def test_no_grad_forward_matches():
    p = params()
    with torch.no_grad():
        torch.testing.assert_close(sparse_decoder_forward(*p, block=2), naive(*p))


def test_large_shapes_recompute_the_first_activation(monkeypatch):
    """Past the size limit only one activation slab is pooled (half the workspace)."""
    B, G, H = 64, 40, 32
    p = params(B=B, G=G, K=3, H=H, dtype=torch.float32)
    for limit, n_slabs in ((1 << 40, 2), (0, 1)):
        monkeypatch.setattr(decoder_module, "_RECOMPUTE_BYTES", limit)
        decoder_module._WORKSPACE.clear()
        out = sparse_decoder_forward(*p, block=4)
        (buf, _), = decoder_module._WORKSPACE.entries
        assert buf.shape == (n_slabs, G * B * H)
        torch.autograd.grad(out.sum(), p)
