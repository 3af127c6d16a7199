r"""The first-order updates compiled: one fused loop per tensor instead of one pass per operation.

An update such as Adam's is memory-bound: the readable form (``optlib.optim.adaptive.adam_update``)
makes one pass over memory per operation (lerp, mul, addcmul, sqrt, div, add, addcdiv), so it
moves 18 numbers per parameter (counted by ``optlib.step_cost``) where the update needs 7
(read p, g, m, v; write p, m, v). TorchInductor, the compiler behind ``torch.compile``, turns the
same lines into one loop per tensor that reads and writes each number once, as torch's
``fused=True`` kernels do by hand (see ``benchmarks/optimizer_step.py``).

The functions below are the updates of :mod:`optlib.optim.sgd` and :mod:`optlib.optim.adaptive`
written once more for lists of tensors, with the quantities that change between steps (the
learning rate, the bias corrections) passed as 0-dim tensors: a Python float would be traced into
the graph as a constant, and a schedule would compile it again at every step. The arithmetic is
the same up to the order of floating-point operations, so the iterates agree with the readable
path to rounding (float64: 1e-12 relative; float32: a few ulps per step). The first call of each update compiles it (a few
seconds on a CPU); later calls with the same tensor shapes reuse the compiled code.

The graph is traced with ``make_fx`` and handed to TorchInductor (``torch._inductor.compile``)
directly rather than through ``torch.compile``: at a million parameters a step takes a few hundred
microseconds, and TorchDynamo's frame evaluation and guards would add tens of them to every call.
:func:`run` keys its cache on everything the traced graph depends on instead (the function, the
constants, and the shape, stride, dtype and device of every tensor), which is what those guards
would check.
"""
from __future__ import annotations

import torch
from torch.fx.experimental.proxy_tensor import make_fx

_COMPILED: dict = {}


def _layout(t: torch.Tensor) -> tuple:
    return t.shape, t.stride(), t.dtype, t.device


def run(fn, params: list, *tensors, **constants):
    """``fn(params, *tensors, **constants)``, traced and compiled once per kind of call.

    ``tensors`` are lists of tensors (gradients, state) or single 0-dim tensors (the learning
    rate). A kind of call is ``fn`` with the values of ``constants`` (betas, momentum, weight decay,
    ...) and the shape, stride, dtype and device of every tensor: the first call of each kind
    traces ``fn`` on its tensors (``make_fx``) and compiles the graph with TorchInductor; later calls
    run the compiled code, which updates the tensors in place.
    """
    arguments = [params, *tensors]
    structure = tuple(len(a) if isinstance(a, (list, tuple)) else None for a in arguments)
    flat = [t for a in arguments for t in (a if isinstance(a, (list, tuple)) else (a,))]
    key = (fn, structure, tuple(sorted(constants.items())), tuple(_layout(t) for t in flat))
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = _compile(fn, structure, constants, flat)
    compiled(*flat)


def _compile(fn, structure: tuple, constants: dict, example: list):
    def flat_fn(*flat):
        rest, arguments = list(flat), []
        for length in structure:
            if length is None:
                arguments.append(rest.pop(0))
            else:
                arguments.append(rest[:length])
                del rest[:length]
        fn(*arguments, **constants)

    # the graph mutates its inputs in place; trace on copies so that tracing moves nothing
    graph = make_fx(flat_fn)(*[t.clone() for t in example])
    return torch._inductor.compile(graph, example)


def scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a 0-dim tensor of ``like``'s dtype and device (an input of the graph, not a constant)."""
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def sgd(params, grads, velocities, lr, *, momentum: float, dampening: float, nesterov: bool,
        weight_decay: float) -> None:
    """SGD with (Nesterov) momentum in gradient units; the velocities exist already (or momentum is 0)."""
    for i in range(len(params)):
        p, g = params[i], grads[i]
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            v = velocities[i]
            v.mul_(momentum).add_(g, alpha=1 - dampening)
            g = g + momentum * v if nesterov else v
        p.sub_(lr * g)


def classical_momentum(params, grads, velocities, lr, *, momentum: float, nesterov: bool,
                       weight_decay: float) -> None:
    """Momentum with the velocity in parameter units: v ← ρv − αg; x ← x + v (or Nesterov's form)."""
    for i in range(len(params)):
        p, g, v = params[i], grads[i], velocities[i]
        if weight_decay:
            g = g + weight_decay * p
        previous = v.clone()
        v.mul_(momentum).sub_(lr * g)
        if nesterov:
            p.add_((1 + momentum) * v - momentum * previous)
        else:
            p.add_(v)


def adagrad(params, grads, sums, step_size, *, eps: float, weight_decay: float) -> None:
    """s ← s + g²; x ← x − α_t g / (√s + ε), α_t = ``step_size``."""
    for i in range(len(params)):
        p, g, s = params[i], grads[i], sums[i]
        if weight_decay:
            g = g + weight_decay * p
        s.addcmul_(g, g, value=1)
        p.sub_(step_size * g / (s.sqrt() + eps))


def rmsprop(params, grads, square_avgs, grad_avgs, buffers, lr, *, alpha: float, eps: float,
            weight_decay: float, momentum: float, centered: bool) -> None:
    """s ← αs + (1−α)g²; x ← x − lr · g / (√(s − m²) + ε) (m² when centered), optionally with momentum."""
    for i in range(len(params)):
        p, g, s = params[i], grads[i], square_avgs[i]
        if weight_decay:
            g = g + weight_decay * p
        s.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        if centered:
            m = grad_avgs[i]
            m.lerp_(g, 1 - alpha)
            avg = (s - m * m).sqrt() + eps
        else:
            avg = s.sqrt() + eps
        if momentum:
            b = buffers[i]
            b.mul_(momentum).add_(g / avg)
            p.sub_(lr * b)
        else:
            p.sub_(lr * g / avg)


def adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, lr, bias1, bias2_sqrt, *, beta1: float,
         beta2: float, eps: float, weight_decay: float, decoupled: bool, amsgrad: bool) -> None:
    """Adam/AdamW/AMSGrad; ``bias1`` = 1 − β₁ᵗ and ``bias2_sqrt`` = √(1 − β₂ᵗ) (both 1 without bias correction)."""
    for i in range(len(params)):
        p, g, m, v = params[i], grads[i], exp_avgs[i], exp_avg_sqs[i]
        if weight_decay:
            if decoupled:
                p.mul_(1 - lr * weight_decay)
            else:
                g = g + weight_decay * p
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        second = v
        if amsgrad:
            biggest = max_exp_avg_sqs[i]
            biggest.copy_(torch.maximum(biggest, v))
            second = biggest
        p.sub_((lr / bias1) * m / (second.sqrt() / bias2_sqrt + eps))
