r"""Keeping training numerically sane: gradient norms, clipping by global norm, NaN/inf detection.

Clipping by global norm rescales all gradients together,

.. math::
    g \leftarrow g \cdot \min\!\Big(1, \frac{c}{\|g\| + 10^{-6}}\Big),

so the update keeps its direction and only its length is capped at c. :func:`clip_grad_norm_`
gives the same result as ``torch.nn.utils.clip_grad_norm_`` (tested).
"""
from __future__ import annotations

import math
from typing import Iterable

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
