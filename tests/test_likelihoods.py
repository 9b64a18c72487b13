import numpy as np
import pytest
import torch

from pyro_sparse.likelihoods import (
    MultinomialLogits,
    check_data,
    check_likelihood,
    encoder_input,
    mean_from_output,
)


def test_check_likelihood():
    assert check_likelihood("normal") == "normal"
    with pytest.raises(ValueError, match="unknown likelihood 'poisson!'"):
        check_likelihood("poisson!")


@pytest.mark.parametrize("bad,kind", [(np.inf, "inf"), (-np.inf, "-inf")])
def test_infinite_values_named_by_row_and_column(bad, kind):
    x = np.ones((5, 3))
    x[3, 2] = bad
    with pytest.raises(ValueError, match=f"first: {kind} at row 3 \\('r3'\\), column 2 "
                                         "\\('c'\\)"):
        check_data(x, "normal", ["a", "b", "c"], row_names=[f"r{i}" for i in range(5)])


def test_count_checks():
    x = np.ones((4, 3))
    x[1, 0] = -1
    with pytest.raises(ValueError, match="negative value -1.0 at row 1, column 0"):
        check_data(x, "categorical")
    x[1, 0] = 0.5
    with pytest.raises(ValueError, match="non-integer value 0.5 at row 1, column 0"):
        check_data(x, "categorical")
    x[1] = 0
    with pytest.raises(ValueError, match="all-zero counts \\(row 1\\)"):
        check_data(x, "categorical")
    check_data(np.full((3, 2), -0.5), "normal")  # real data may be negative


def test_shape_checks():
    with pytest.raises(ValueError, match="2-dimensional"):
        check_data(np.ones(3), "normal")
    with pytest.raises(ValueError, match="empty"):
        check_data(np.ones((0, 3)), "normal")


def test_multinomial_logits_matches_torch_and_samples_totals():
    logits = torch.randn(4, 6, dtype=torch.float64)
    x = torch.tensor([[1, 0, 2, 0, 0, 3]] * 4, dtype=torch.float64)
    ours = MultinomialLogits(logits, x.sum(-1)).log_prob(x)
    ref = torch.distributions.Multinomial(6, logits=logits).log_prob(x)
    torch.testing.assert_close(ours, ref)
    totals = torch.tensor([5.0, 0.0, 13.0, 1.0])
    s = MultinomialLogits(logits.float(), totals).sample()
    torch.testing.assert_close(s.sum(-1), totals)
    assert (s >= 0).all()


def test_categorical_encoder_input_and_mean():
    x = torch.tensor([[1.0, 3.0], [0.0, 2.0]])
    torch.testing.assert_close(encoder_input(x, "categorical"), torch.tensor([[0.25, 0.75],
                                                                              [0.0, 1.0]]))
    m = mean_from_output("categorical", torch.zeros(2, 2), x)
    torch.testing.assert_close(m, torch.tensor([[2.0, 2.0], [1.0, 1.0]]))
    torch.testing.assert_close(encoder_input(x, "normal"), x)
