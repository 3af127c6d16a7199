"""The parameters of a group as one flat vector: what the second-order methods solve for.

Newton, BFGS/L-BFGS, Hessian-free and the trust region work with x, g and steps in R^d; these
helpers move between that vector and the list of parameter tensors, always in the order of
``params``.
"""
from __future__ import annotations

from typing import Sequence

import torch


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The tensors, detached and concatenated into one vector."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def flat_grad(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The parameters' ``.grad`` as one vector, zeros where a parameter has no gradient."""
    return torch.cat([p.grad.detach().reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                      for p in params])


def split(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``flat`` cut into new tensors shaped like ``like``."""
    expected = sum(t.numel() for t in like)
    if flat.numel() != expected:
        raise ValueError(f"a flat vector of {flat.numel()} entries cannot fill parameters of {expected}")
    out, offset = [], 0
    for t in like:
        out.append(flat[offset:offset + t.numel()].view_as(t).clone())
        offset += t.numel()
    return out


@torch.no_grad()
def assign(params: Sequence[torch.Tensor], flat_x: torch.Tensor, flat_g: torch.Tensor | None = None) -> None:
    """Copy ``flat_x`` into the parameters in place (and ``flat_g`` into their ``.grad``)."""
    for p, value in zip(params, split(flat_x, params)):
        p.copy_(value)
    if flat_g is not None:
        set_grads(params, flat_g)


def set_grads(params: Sequence[torch.Tensor], flat_g: torch.Tensor) -> None:
    """Store ``flat_g`` as the parameters' ``.grad`` (new tensors)."""
    for p, g in zip(params, split(flat_g, params)):
        p.grad = g
