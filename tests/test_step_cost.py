"""optlib.step_cost: bytes counted per operation, per update, and the floor they set."""
import pytest
import torch

from optlib import step_cost
from optlib.optim import SGD, Adam, AdamW


def _params(n=1000, dtype=torch.float32):
    p = torch.randn(n, dtype=dtype, requires_grad=True)
    p.grad = torch.randn(n, dtype=dtype)
    return [p]


def test_elementwise_operations_count_what_they_read_and_write():
    x, y = torch.ones(100), torch.ones(100)
    traffic, out = step_cost.count_traffic(lambda: (x + y, y.add_(x), x.sqrt().view(10, 10)))
    assert [op[0] for op in traffic.operations] == ["add", "add_", "sqrt"]  # the view moves nothing
    assert [op[1:] for op in traffic.operations] == [(800, 400), (800, 400), (400, 400)]
    assert traffic.total == 3200 and out[0].shape == (100,)


def test_a_tensor_read_twice_by_one_operation_counts_once_and_out_is_written_only():
    g, v, dest = torch.ones(50), torch.ones(50), torch.empty(50)
    traffic, _ = step_cost.count_traffic(lambda: (v.addcmul_(g, g), torch.mul(g, 2, out=dest)))
    assert [op[1:] for op in traffic.operations] == [(400, 200), (200, 200)]


def test_a_mutable_argument_left_unchanged_counts_as_read_only():
    x = torch.ones(10)
    traffic, _ = step_cost.count_traffic(lambda: x.mul_(1.0))
    assert (traffic.read, traffic.written) == (40, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_readable_adam_moves_18_numbers_per_parameter_and_torchs_fused_kernel_7(dtype):
    readable = step_cost.update_traffic(Adam(_params(dtype=dtype), implementation="single"))
    multi = step_cost.update_traffic(Adam(_params(dtype=dtype), implementation="foreach"))
    fused = step_cost.update_traffic(torch.optim.Adam(_params(dtype=dtype), fused=True))
    size = torch.empty((), dtype=dtype).element_size()
    assert readable.per_number(1000, size) == pytest.approx(18, abs=0.01)  # 0-dim scalars are a few bytes
    assert multi.per_number(1000, size) == pytest.approx(18, abs=0.01)
    assert fused.per_number(1000, size) == pytest.approx(step_cost.NUMBERS_PER_PARAMETER["Adam"], abs=0.01)
    assert len(readable.operations) == 7  # one pass over memory per line of the update
    assert [op[0] for op in fused.operations if op[1] > 1000] == ["_fused_adam_"]  # (and the step counts)


def test_sgd_and_adamw_against_their_minimum():
    sgd = step_cost.update_traffic(SGD(_params(), lr=0.1, momentum=0.9))
    fused = step_cost.update_traffic(torch.optim.SGD(_params(), lr=0.1, momentum=0.9, fused=True))
    adamw = step_cost.update_traffic(AdamW(_params(), weight_decay=0.01))
    assert sgd.per_number(1000, 4) == pytest.approx(8, abs=0.01)
    assert fused.per_number(1000, 4) == pytest.approx(step_cost.NUMBERS_PER_PARAMETER["SGD-momentum"], abs=0.01)
    assert adamw.per_number(1000, 4) == pytest.approx(20, abs=0.01)  # the decay is one more pass over p


def test_update_traffic_needs_gradients_and_count_traffic_a_callable():
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="gradient"):
        step_cost.update_traffic(Adam([p]))
    with pytest.raises(TypeError, match="callable"):
        step_cost.count_traffic(42)


def test_bandwidth_floor_and_timing():
    rate = step_cost.bandwidth(n=2**16, repeats=2)
    assert rate > 0
    assert step_cost.floor_seconds(7, 10**6, 4, 28e9) == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        step_cost.floor_seconds(7, 0, 4, 1.0)
    with pytest.raises(ValueError):
        step_cost.bandwidth(n=0)
    opt = Adam(_params())
    opt.step()
    assert step_cost.seconds_per_step(opt, steps=2, blocks=3) > 0
    with pytest.raises(ValueError):
        step_cost.seconds_per_step(opt, steps=0)


def test_mlp_parameters_and_every_implementation_of_every_optimizer():
    params = step_cost.mlp_parameters(10_000, seed=1)
    assert [tuple(p.shape) for p in params[:2]] == [(50, 50), (50,)] and len(params) == 8
    assert sum(p.numel() for p in params) == 10_200 and all(p.grad is not None for p in params)
    assert torch.equal(params[0], step_cost.mlp_parameters(10_000, seed=1)[0])
    for name in step_cost.OPTIMIZERS:
        for implementation in step_cost.IMPLEMENTATIONS:
            if implementation == "optlib compiled":
                continue  # compiles for seconds; tests/test_compiled.py covers it
            opt = step_cost.make_optimizer(name, implementation, step_cost.mlp_parameters(100))
            assert isinstance(opt, torch.optim.Optimizer), (name, implementation)
    with pytest.raises(ValueError, match="one of"):
        step_cost.make_optimizer("Lion", "optlib", params)
    with pytest.raises(ValueError, match="one of"):
        step_cost.make_optimizer("Adam", "fastest", params)
    with pytest.raises(ValueError, match="n_params"):
        step_cost.mlp_parameters(3)
