"""The flat-vector helpers of the second-order optimizers."""
import pytest
import torch

from optlib.optim._flat import assign, flat_grad, flatten, set_grads, split


def _params():
    return [torch.zeros(2, 3, dtype=torch.float64, requires_grad=True),
            torch.zeros(4, dtype=torch.float64, requires_grad=True)]


def test_flatten_and_assign_round_trip_in_place():
    params = _params()
    storage = [p.data_ptr() for p in params]
    x, g = torch.arange(10.0, dtype=torch.float64), -torch.arange(10.0, dtype=torch.float64)
    assign(params, x, g)
    assert [p.data_ptr() for p in params] == storage  # optimizer state keyed on these stays valid
    assert torch.equal(flatten(params), x) and torch.equal(flat_grad(params), g)
    assert torch.equal(params[0], x[:6].view(2, 3)) and params[1].requires_grad


def test_missing_gradients_count_as_zero_and_grads_are_new_tensors():
    params = _params()
    params[1].grad = torch.ones(4, dtype=torch.float64)
    assert torch.equal(flat_grad(params), torch.cat([torch.zeros(6), torch.ones(4)]).double())
    g = torch.arange(10.0, dtype=torch.float64)
    set_grads(params, g)
    g.zero_()
    assert flat_grad(params).sum() == 45


def test_a_vector_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="9 entries cannot fill parameters of 10"):
        split(torch.zeros(9), _params())
