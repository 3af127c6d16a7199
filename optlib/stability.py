r"""Keeping training numerically sane: gradient norms, clipping by global norm, NaN/inf detection.

Clipping by global norm rescales all gradients together,

.. math::
    g \leftarrow g \cdot \min\!\Big(1, \frac{c}{\|g\| + 10^{-6}}\Big),

so the gradient keeps its direction and only its length is capped at c. :func:`clip_grad_norm_`
gives the same result as ``torch.nn.utils.clip_grad_norm_`` (tested). What is capped is the
gradient fed to the optimizer, not the step: with momentum ρ the step can grow to lr·c/(1 − ρ);
:func:`step_lengths` measures the steps a run actually takes.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch

from optlib import _validate


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite during a run."""


def _grads(params) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        params = [params]
    return [p.grad for p in params if p.grad is not None]


def global_grad_norm(params: Iterable[torch.Tensor] | torch.Tensor, norm_type: float = 2.0) -> torch.Tensor:
    """‖g‖ over all parameters' gradients taken as one vector (0 when no parameter has a gradient)."""
    norm_type = float(_validate._number("norm_type", norm_type))  # a bool or a string is a TypeError
    if not (norm_type == math.inf or norm_type > 0):
        raise ValueError(f"norm_type must be > 0 or inf, got {norm_type}")
    grads = _grads(params)
    if not grads:
        return torch.tensor(0.0)
    norms = [torch.linalg.vector_norm(g.detach(), norm_type) for g in grads]
    return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]), norm_type)


def clip_grad_norm_(params: Iterable[torch.Tensor] | torch.Tensor, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> torch.Tensor:
    """Scale all gradients in place so their global norm is at most ``max_norm``; return the norm before clipping.

    With ``error_if_nonfinite=True`` a NaN/inf norm raises instead of silently writing NaN into every
    gradient (what scaling by a NaN factor would do).
    """
    if not _validate._number("max_norm", max_norm) > 0:  # inf is allowed: no clipping, as in torch
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    params = [params] if isinstance(params, torch.Tensor) else list(params)
    total = global_grad_norm(params, norm_type)
    grads = _grads(params)
    if not grads:
        return total
    if error_if_nonfinite and not torch.isfinite(total):
        raise NonFiniteLossError(f"the total norm of order {float(norm_type)} of the gradients is {total.item()}: "
                                 "cannot clip; lower the learning rate or find the source of the NaN/inf")
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.detach().mul_(scale.to(g.device, g.dtype))
    return total


def check_finite(loss, step: int | None = None) -> float:
    """Return ``loss`` as a float, or raise :class:`NonFiniteLossError` saying where it became NaN/inf."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        where = f" at step {step}" if step is not None else ""
        raise NonFiniteLossError(f"loss became {value}{where}; lower the learning rate or clip the gradients")
    return value


@contextmanager
def step_lengths() -> Iterator[list[float]]:
    """Record ‖θ_after − θ_before‖, the length of every optimizer step taken inside the block.

    ``with stability.step_lengths() as lengths: trace = run.train(...)`` appends one float per
    ``optimizer.step()`` of any ``torch.optim.Optimizer`` (all its parameters taken as one vector),
    through PyTorch's global optimizer step hooks, which are removed when the block ends. Nothing
    about the run changes. With clipping at c and SGD's momentum ρ, a step can be longer than lr·c.
    """
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    lengths: list[float] = []
    before: dict[int, list[torch.Tensor]] = {}

    def params(optimizer):
        return [p for group in optimizer.param_groups for p in group["params"]]

    def pre(optimizer, args, kwargs):
        before[id(optimizer)] = [p.detach().clone() for p in params(optimizer)]

    def post(optimizer, args, kwargs):
        old = before.pop(id(optimizer))
        squares = [(p.detach() - q).pow(2).sum().to(old[0].device) for p, q in zip(params(optimizer), old)]
        lengths.append(math.sqrt(torch.stack(squares).sum().item()) if squares else 0.0)

    handles = [register_optimizer_step_pre_hook(pre), register_optimizer_step_post_hook(post)]
    try:
        yield lengths
    finally:
        for handle in handles:
            handle.remove()
