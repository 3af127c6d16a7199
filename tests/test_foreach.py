"""The multi-tensor path (implementation="foreach") gives the iterates of the readable single-tensor path."""
from __future__ import annotations

import pytest
import torch

from optlib.optim import SGD, AdaGrad, Adam, AdamW, AMSGrad, RMSProp
from optlib.optim._foreach import resolve

CONFIGS = {
    "SGD": (SGD, dict(lr=0.05)),
    "SGD momentum": (SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    "SGD dampening": (SGD, dict(lr=0.05, momentum=0.9, dampening=0.3)),
    "SGD Nesterov": (SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "SGD classical": (SGD, dict(lr=0.05, momentum=0.9, formulation="classical", weight_decay=0.01)),
    "SGD classical Nesterov": (SGD, dict(lr=0.05, momentum=0.9, formulation="classical", nesterov=True)),
    "AdaGrad": (AdaGrad, dict(lr=0.05, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
    "RMSProp": (RMSProp, dict(lr=0.01, weight_decay=0.01)),
    "RMSProp centered momentum": (RMSProp, dict(lr=0.01, centered=True, momentum=0.9)),
    "Adam": (Adam, dict(lr=0.01, weight_decay=0.01)),
    "Adam without bias correction": (Adam, dict(lr=0.01, bias_correction=False)),
    "AdamW": (AdamW, dict(lr=0.01, weight_decay=0.1)),
    "AdamW amsgrad": (AdamW, dict(lr=0.01, amsgrad=True)),
    "AMSGrad": (AMSGrad, dict(lr=0.01, weight_decay=0.01)),
}


def _params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 4), (4,), (3, 6), (3,), (2, 2)]
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_(True) for s in shapes]


def _gradients(params, step):
    # deterministic gradients that vary by step and size; the last tensor gets none on odd steps
    for i, p in enumerate(params):
        p.grad = None if (i == len(params) - 1 and step % 2) else torch.sin(p.detach() * (step + 1) + i)


def _run(cls, hyper, implementation, dtype, steps=25, groups=False, scheduled=True):
    params = _params(dtype)
    if groups:  # two groups, the second with its own learning rate
        spec = [dict(params=params[:3]), dict(params=params[3:], lr=hyper["lr"] / 3)]
        opt = cls(spec, implementation=implementation, **hyper)
    else:
        opt = cls(params, implementation=implementation, **hyper)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5) if scheduled else None
    for step in range(steps):
        _gradients(params, step)
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return [p.detach().clone() for p in params], opt


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("groups", [False, True])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_foreach_gives_the_single_tensor_iterates(name, groups, dtype):
    cls, hyper = CONFIGS[name]
    single, _ = _run(cls, hyper, "single", dtype, groups=groups)
    many, _ = _run(cls, hyper, "foreach", dtype, groups=groups)
    for a, b in zip(single, many):
        # the same elementwise operations in the same order: bit for bit on the CPU
        assert torch.equal(a, b), (a - b).abs().max()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_state_dict_moves_between_the_implementations(name):
    cls, hyper = CONFIGS[name]
    dtype = torch.float64
    reference, _ = _run(cls, hyper, "single", dtype, steps=20, scheduled=False)
    params = _params(dtype)
    first = cls(params, implementation="single", **hyper)
    for step in range(10):
        _gradients(params, step)
        first.step()
    state = first.state_dict()
    second = cls(params, implementation="foreach", **hyper)
    second.load_state_dict(state)
    assert second.param_groups[0]["implementation"] == "single"  # the saved group's choice comes back ...
    second.param_groups[0]["implementation"] = "foreach"  # ... and can be changed like any hyperparameter
    for step in range(10, 20):
        _gradients(params, step)
        second.step()
    for a, b in zip(reference, params):
        torch.testing.assert_close(b.detach(), a, rtol=0, atol=0)


def test_auto_is_single_on_the_cpu_and_old_state_dicts_load():
    params = _params(torch.float64)
    assert resolve("auto", params) == "single" and resolve("foreach", params) == "foreach"
    opt = Adam(params, lr=0.01)
    assert opt.param_groups[0]["implementation"] == "auto"
    state = opt.state_dict()
    for group in state["param_groups"]:
        del group["implementation"]  # as saved before the option existed
    restored = Adam(params, lr=0.01)
    restored.load_state_dict(state)
    _gradients(params, 0)
    restored.step()  # runs the single-tensor path


@pytest.mark.parametrize("cls", [SGD, AdaGrad, RMSProp, Adam, AdamW, AMSGrad])
def test_an_unknown_implementation_is_refused(cls):
    with pytest.raises(ValueError, match="implementation must be one of"):
        cls(_params(torch.float64), implementation="fused")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(CONFIGS))
def test_foreach_on_cuda_matches_the_single_tensor_path(name):
    cls, hyper = CONFIGS[name]
    results = []
    for implementation in ("single", "auto"):
        params = [p.detach().cuda().requires_grad_(True) for p in _params(torch.float32)]
        opt = cls(params, implementation=implementation, **hyper)
        assert resolve(opt.param_groups[0]["implementation"], params) == (
            "single" if implementation == "single" else "foreach")
        for step in range(25):
            _gradients(params, step)
            opt.step()
        results.append([p.detach().cpu() for p in params])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)  # CUDA's fused foreach kernels round differently
