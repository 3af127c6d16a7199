"""Looking at a loss in many dimensions through low-dimensional slices.

A loss L(θ) with θ in R^d cannot be drawn, but its restriction to a line θ + a·u or a plane
θ + a·u + b·v can. These functions evaluate such slices and the straight path between two
parameter vectors (used to probe mode connectivity in chapter 4).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

#: A loss as a function of one parameter tensor.
LossFn = Callable[[torch.Tensor], torch.Tensor]


def random_direction(like: torch.Tensor, *, generator: torch.Generator | None = None,
                     normalize: bool = True) -> torch.Tensor:
    """A Gaussian direction shaped like ``like``; unit Frobenius norm when ``normalize``."""
    u = torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)
    return u / torch.linalg.vector_norm(u) if normalize else u


@torch.no_grad()
def slice_1d(loss_fn: LossFn, center: torch.Tensor, direction: torch.Tensor, alphas) -> torch.Tensor:
    """L(center + a·direction) for every a in ``alphas``."""
    if direction.shape != center.shape:
        raise ValueError(f"direction has shape {tuple(direction.shape)}, center {tuple(center.shape)}")
    alphas = torch.as_tensor(alphas, dtype=center.dtype)
    return torch.stack([torch.as_tensor(loss_fn(center + float(a) * direction)) for a in alphas])


@torch.no_grad()
def slice_2d(loss_fn: LossFn, center: torch.Tensor, u: torch.Tensor, v: torch.Tensor, alphas, betas) -> torch.Tensor:
    """L(center + a·u + b·v) on the grid ``betas × alphas`` (rows follow b, columns follow a)."""
    if u.shape != center.shape or v.shape != center.shape:
        raise ValueError("u and v must have the shape of center")
    return torch.stack([slice_1d(loss_fn, center + float(b) * v, u, alphas) for b in torch.as_tensor(betas)])


def flatten_params(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` as one detached vector."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@torch.no_grad()
def load_flat_params(model: nn.Module, flat: torch.Tensor) -> None:
    """Write a vector produced by :func:`flatten_params` back into ``model``."""
    total = sum(p.numel() for p in model.parameters())
    if flat.numel() != total:
        raise ValueError(f"model has {total} parameters, vector has {flat.numel()}")
    offset = 0
    for p in model.parameters():
        p.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()


@torch.no_grad()
def interpolate_models(model: nn.Module, theta_a: torch.Tensor, theta_b: torch.Tensor, loss_fn: Callable,
                       X: torch.Tensor, y: torch.Tensor, alphas) -> torch.Tensor:
    """Loss of ``model`` with parameters (1 − a)·θ_a + a·θ_b on (X, y), for each a in ``alphas``.

    ``model`` is used as scratch space; its parameters are restored afterwards.
    """
    saved = flatten_params(model)
    try:
        losses = []
        for a in torch.as_tensor(alphas, dtype=theta_a.dtype):
            load_flat_params(model, (1 - a) * theta_a + a * theta_b)
            losses.append(float(loss_fn(model(X), y)))
        return torch.tensor(losses, dtype=theta_a.dtype)  # float64 runs keep their precision
    finally:
        load_flat_params(model, saved)
