"""The compiled path (implementation="compiled") gives the iterates of the readable path to rounding."""
from __future__ import annotations

import pytest
import torch

from optlib.optim import SGD, AdaGrad, Adam, AdamW, RMSProp

CONFIGS = {
    "SGD Nesterov": (SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "SGD dampening": (SGD, dict(lr=0.05, momentum=0.9, dampening=0.3)),
    "SGD classical Nesterov": (SGD, dict(lr=0.05, momentum=0.9, formulation="classical", nesterov=True)),
    "AdaGrad": (AdaGrad, dict(lr=0.05, lr_decay=0.01, weight_decay=0.01)),
    "RMSProp centered momentum": (RMSProp, dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.01)),
    "Adam": (Adam, dict(lr=0.01, weight_decay=0.01)),
    "AdamW amsgrad": (AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
}


def _params(dtype):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_(True) for s in [(6, 4), (4,), (3, 6)]]


def _run(cls, hyper, implementation, dtype, steps=20, groups=False):
    params = _params(dtype)
    spec = [dict(params=params[:2]), dict(params=params[2:], lr=hyper["lr"] / 3)] if groups else params
    opt = cls(spec, implementation=implementation, **hyper)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)  # a new lr must not recompile
    for step in range(steps):
        for i, p in enumerate(params):
            p.grad = torch.sin(p.detach() * (step + 1) + i)
        opt.step()
        scheduler.step()
    return [p.detach().clone() for p in params]


def _relative(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_compiled_gives_the_readable_iterates_to_rounding(name):
    cls, hyper = CONFIGS[name]
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
        for groups in (False, True):
            reference = _run(cls, hyper, "single", dtype, groups=groups)
            fused = _run(cls, hyper, "compiled", dtype, groups=groups)
            assert max(_relative(a, b) for a, b in zip(fused, reference)) < tolerance, (dtype, groups)


def test_a_state_dict_moves_from_the_readable_path_to_the_compiled_one():
    cls, hyper = CONFIGS["Adam"]
    reference = _run(cls, hyper, "single", torch.float64, steps=20)
    params = _params(torch.float64)
    first = cls(params, implementation="single", **hyper)
    second = cls(params, implementation="compiled", **hyper)
    scheduler = torch.optim.lr_scheduler.StepLR(first, step_size=7, gamma=0.5)
    for step in range(10):
        for i, p in enumerate(params):
            p.grad = torch.sin(p.detach() * (step + 1) + i)
        first.step()
        scheduler.step()
    second.load_state_dict(first.state_dict())
    second.param_groups[0]["implementation"] = "compiled"
    scheduler = torch.optim.lr_scheduler.StepLR(second, step_size=7, gamma=0.5, last_epoch=9)
    for step in range(10, 20):
        for i, p in enumerate(params):
            p.grad = torch.sin(p.detach() * (step + 1) + i)
        second.step()
        scheduler.step()
    assert max(_relative(p.detach(), r) for p, r in zip(params, reference)) < 1e-12


def test_one_compilation_per_kind_of_call_and_a_new_layout_compiles_anew():
    from optlib.optim import _compiled

    def kinds():
        return sum(1 for key in _compiled._COMPILED if key[0] is _compiled.sgd)

    before = kinds()
    _run(SGD, dict(lr=0.05, momentum=0.7), "compiled", torch.float64)  # 20 steps, lr halved twice
    assert kinds() == before + 1
    params = [torch.randn(5, 3, dtype=torch.float64).t().requires_grad_(True)]  # transposed: other strides
    reference = params[0].detach().clone().requires_grad_(True)
    for p in (params[0], reference):
        p.grad = torch.ones_like(p)
    for opt in (SGD(params, lr=0.05, momentum=0.7, implementation="compiled"),
                SGD([reference], lr=0.05, momentum=0.7, implementation="single")):
        opt.step()
        opt.step()
    assert kinds() == before + 2
    assert torch.allclose(params[0], reference, rtol=0, atol=1e-14)
