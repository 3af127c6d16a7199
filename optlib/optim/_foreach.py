r"""The first-order updates over all of a group's tensors at once (``torch._foreach_*``).

Each function here is the update function of :mod:`optlib.optim.sgd` or :mod:`optlib.optim.adaptive`
(the readable reference the book shows) applied to lists of tensors, with the same elementwise
operations in the same order: one multi-tensor call per line of the reference instead of one call
per line *and* per tensor. So the iterates are bitwise those of the reference (tests check it),
and what changes is the number of kernel launches: on CUDA, where a launch costs microseconds,
that is most of a small model's step; on the CPU a foreach call is a loop over the same kernels,
and buys little.

The optimizers choose with their ``implementation`` argument (:data:`IMPLEMENTATIONS`):
``"single"`` loops over the tensors with the reference function, ``"foreach"`` calls these,
``"compiled"`` runs the update compiled by TorchInductor (``optlib.optim._compiled``: fused,
the fastest on a CPU, a few seconds to compile at the first step), and ``"auto"`` (the default)
picks ``"foreach"`` when the group's tensors are all on CUDA and ``"single"`` otherwise, as
``torch.optim`` does with ``foreach=None``; it never compiles on its own.
"""
from __future__ import annotations

import torch

#: The choices of the optimizers' ``implementation`` argument.
IMPLEMENTATIONS = ("auto", "single", "foreach", "compiled")


def resolve(implementation: str, params: list[torch.Tensor]) -> str:
    """``"single"``, ``"foreach"`` or ``"compiled"`` for a group of ``params`` (``"auto"``: foreach when all are
    on CUDA, else single)."""
    if implementation == "auto":
        on_cuda = bool(params) and all(p.device.type == "cuda" for p in params)
        return "foreach" if on_cuda else "single"
    return implementation


def sgd_foreach(params, grads, velocities, *, lr: float, momentum: float, dampening: float, nesterov: bool,
                weight_decay: float) -> list[torch.Tensor] | None:
    """:func:`optlib.optim.sgd.sgd_update` on lists; ``velocities`` holds a buffer or None per tensor.

    Returns the velocities (None without momentum); the new ones are copies of the first gradient.
    """
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if momentum:
        old = [i for i, v in enumerate(velocities) if v is not None]
        if old:
            existing = [velocities[i] for i in old]
            torch._foreach_mul_(existing, momentum)
            torch._foreach_add_(existing, [grads[i] for i in old], alpha=1 - dampening)
        velocities = [v if v is not None else torch.clone(g).detach() for v, g in zip(velocities, grads)]
        grads = torch._foreach_add(grads, velocities, alpha=momentum) if nesterov else velocities
    torch._foreach_add_(params, grads, alpha=-lr)
    return velocities if momentum else None


def classical_momentum_foreach(params, grads, velocities, *, lr: float, momentum: float, nesterov: bool,
                               weight_decay: float) -> list[torch.Tensor]:
    """:func:`optlib.optim.sgd.classical_momentum_update` on lists (velocity in parameter units)."""
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    velocities = [v if v is not None else torch.zeros_like(p) for v, p in zip(velocities, params)]
    previous = torch._foreach_mul(velocities, 1.0) if nesterov else None  # a copy
    torch._foreach_mul_(velocities, momentum)
    torch._foreach_add_(velocities, grads, alpha=-lr)
    if nesterov:
        torch._foreach_add_(params, previous, alpha=-momentum)
        torch._foreach_add_(params, velocities, alpha=1 + momentum)
    else:
        torch._foreach_add_(params, velocities)
    return velocities


def adagrad_foreach(params, grads, sums, steps: list[int], *, lr: float, lr_decay: float, eps: float,
                    weight_decay: float) -> None:
    """:func:`optlib.optim.adaptive.adagrad_update` on lists (``steps``: each tensor's step count)."""
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    step_sizes = [-lr / (1 + (step - 1) * lr_decay) for step in steps]
    torch._foreach_addcmul_(sums, grads, grads, value=1)
    std = torch._foreach_sqrt(sums)
    torch._foreach_add_(std, eps)
    torch._foreach_addcdiv_(params, grads, std, step_sizes)


def rmsprop_foreach(params, grads, square_avgs, grad_avgs, momentum_buffers, *, lr: float, alpha: float,
                    eps: float, weight_decay: float, momentum: float) -> None:
    """:func:`optlib.optim.adaptive.rmsprop_update` on lists (``grad_avgs``/``momentum_buffers`` None when unused)."""
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_mul_(square_avgs, alpha)
    torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
    if grad_avgs is not None:
        torch._foreach_lerp_(grad_avgs, grads, 1 - alpha)
        avg = torch._foreach_addcmul(square_avgs, grad_avgs, grad_avgs, value=-1)
        torch._foreach_sqrt_(avg)
    else:
        avg = torch._foreach_sqrt(square_avgs)
    torch._foreach_add_(avg, eps)
    if momentum_buffers is not None:
        torch._foreach_mul_(momentum_buffers, momentum)
        torch._foreach_addcdiv_(momentum_buffers, grads, avg)
        torch._foreach_add_(params, momentum_buffers, alpha=-lr)
    else:
        torch._foreach_addcdiv_(params, grads, avg, value=-lr)


def adam_foreach(params, grads, exp_avgs, exp_avg_sqs, steps: list[int], *, lr: float, beta1: float, beta2: float,
                 eps: float, weight_decay: float, decoupled: bool, bias_correction: bool,
                 max_exp_avg_sqs: list[torch.Tensor] | None = None) -> None:
    """:func:`optlib.optim.adaptive.adam_update` on lists (``steps``: each tensor's step count)."""
    if weight_decay:
        if decoupled:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        else:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    second = exp_avg_sqs
    if max_exp_avg_sqs is not None:
        torch._foreach_maximum_(max_exp_avg_sqs, exp_avg_sqs)
        second = max_exp_avg_sqs
    denom = torch._foreach_sqrt(second)
    if bias_correction:
        step_sizes = [-(lr / (1 - beta1 ** step)) for step in steps]
        torch._foreach_div_(denom, [(1 - beta2 ** step) ** 0.5 for step in steps])
    else:
        step_sizes = [-lr] * len(params)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)

