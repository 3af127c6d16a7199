"""Looking at a loss in many dimensions through low-dimensional slices.

A loss L(θ) with θ in R^d cannot be drawn, but its restriction to a line θ + a·u or a plane
θ + a·u + b·v can. These functions evaluate such slices and the straight path between two
parameter vectors (used to probe mode connectivity in chapter 4), read them (second differences
and kinks, the minimum of a 2-D slice), and draw random directions to slice along.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from optlib import _validate

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


def random_directions(count: int, dim: int, *, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor:
    """``count`` random unit vectors in R^``dim``, as the rows of a ``(count, dim)`` tensor.

    Gaussian vectors normalized to length 1, so their directions are uniform on the sphere;
    drawn on the CPU (a seed gives the same directions everywhere), then moved to ``device``.
    """
    _validate.positive_int("count", count)
    _validate.positive_int("dim", dim)
    E = torch.randn(count, dim, generator=generator, dtype=dtype)
    return (E / E.norm(dim=1, keepdim=True)).to(device)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The cosine of the angle between ``a`` and ``b``, each taken as one flat vector."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    norms = (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)).item()
    if norms == 0:
        raise ValueError("the cosine of a zero vector is undefined")
    return (a * b).sum().item() / norms


def second_differences(values) -> torch.Tensor:
    """``v[k+1] − 2 v[k] + v[k−1]`` for the interior points of a slice sampled on an even grid.

    h² times the curvature of a smooth slice; never negative along a line of a convex function.
    """
    values = torch.as_tensor(values)
    if values.ndim != 1 or len(values) < 3:
        raise ValueError(f"values must be a 1-D sequence of at least 3 numbers, got shape {tuple(values.shape)}")
    return values[2:] - 2 * values[1:-1] + values[:-2]


def count_kinks(values, tol: float = 1e-9) -> int:
    """How many interior grid points of a slice have a second difference above ``tol`` in size.

    A piecewise linear slice (a hinge loss along a line) is exactly linear between its kinks, so
    this counts the grid points next to a change of slope; ``tol`` absorbs round-off.
    """
    _validate.positive("tol", tol)
    return int((second_differences(values).abs() > tol).sum())


def slice_minimum(Z: torch.Tensor, alphas, betas) -> tuple[float, float, float]:
    """``(a, b, value)`` of the smallest entry of a 2-D slice ``Z`` from :func:`slice_2d`.

    ``Z`` has one row per ``b`` in ``betas`` and one column per ``a`` in ``alphas``.
    """
    alphas, betas = torch.as_tensor(alphas), torch.as_tensor(betas)
    if Z.shape != (len(betas), len(alphas)):
        raise ValueError(f"Z must have shape (len(betas), len(alphas)) = {(len(betas), len(alphas))}, "
                         f"got {tuple(Z.shape)}")
    row, column = divmod(int(Z.argmin()), len(alphas))
    return alphas[column].item(), betas[row].item(), Z[row, column].item()
