"""The non-amortised per-row Normal guide for z (pyro_sparse.guides.PerRowNormalGuide)."""

import pyro
import pytest
import torch
from pyro import poutine

from pyro_sparse.guides import PerRowNormalGuide


def _guide(N=6, K=2):
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(N, K, generator=g)
    scale = torch.rand(N, K, generator=g) + 0.1
    return PerRowNormalGuide(loc, scale), loc, scale


def test_samples_the_rows_it_is_given_under_the_data_plate():
    guide, loc, scale = _guide()
    idx = torch.tensor([4, 1])
    tr = poutine.trace(guide).get_trace(torch.zeros(2, 3), 6, idx)
    site = tr.nodes["z"]
    torch.testing.assert_close(site["fn"].base_dist.loc, loc[idx])
    torch.testing.assert_close(site["fn"].base_dist.scale, scale[idx])
    assert site["value"].shape == (2, 2)
    frame = [f for f in site["cond_indep_stack"] if f.name == "data"][0]
    assert frame.full_size == 6 and frame.size == 2 and frame.dim == -1
    assert site["scale"] == pytest.approx(3.0)  # 6 rows / a batch of 2


def test_without_indices_a_batch_must_hold_every_row():
    guide, loc, _ = _guide()
    tr = poutine.trace(guide).get_trace(torch.zeros(6, 3))
    torch.testing.assert_close(tr.nodes["z"]["fn"].base_dist.loc, loc)
    with pytest.raises(ValueError, match="row indices"):
        guide(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="holds 6 rows, the data has 7"):
        guide(torch.zeros(2, 3), 7, torch.tensor([0, 1]))


def test_second_moments_and_scaling_by_hand():
    guide, loc, scale = _guide()
    S, n = guide.second_moments()
    torch.testing.assert_close(S, (loc.double() ** 2 + scale.double() ** 2).sum(0))
    assert n == 6
    guide.scale_factors(torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(guide.loc_nk.detach(), loc * torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(guide.log_scale_nk.exp().detach(),
                               scale * torch.tensor([2.0, 0.5]))
    with pytest.raises(ValueError, match="holds 6 rows, x_ng has 5"):
        guide.second_moments(torch.zeros(5, 3))


@pytest.mark.parametrize("loc, scale, msg", [
    (torch.zeros(3), torch.ones(3), "matrices of one shape"),
    (torch.zeros(3, 2), torch.ones(3, 1), "matrices of one shape"),
    (torch.zeros(3, 2), torch.zeros(3, 2), "positive"),
])
def test_bad_starts_are_refused(loc, scale, msg):
    with pytest.raises(ValueError, match=msg):
        PerRowNormalGuide(loc, scale)


def test_parameters_are_module_local():
    guide, _, _ = _guide()
    with pyro.settings.context(module_local_params=True):
        guide(torch.zeros(6, 3))
    assert {n for n, _ in guide.named_parameters()} == {"loc_nk", "log_scale_nk"}
