"""Gradient-free search: random search and random local search (chapter 1)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from optlib import _validate
from optlib.device import get_device


@dataclass
class SearchResult:
    """What a search found: the ``best`` parameters and their loss, the loss of every candidate tried,
    the running minimum after each trial, and how many candidates were ``accepted`` (improved on the best).
    """

    best: torch.Tensor            # the best parameters found
    best_loss: float
    losses: list[float] = field(default_factory=list)        # loss of every candidate tried
    best_so_far: list[float] = field(default_factory=list)   # running minimum after each trial
    accepted: int = 0             # how many candidates improved on the incumbent


def random_search(loss_fn: Callable[[torch.Tensor], torch.Tensor], shape, trials: int = 1000,
                  scale: float = 1e-3, *, generator: torch.Generator | None = None,
                  dtype: torch.dtype = torch.float32, device="cpu") -> SearchResult:
    """Draw ``trials`` independent parameter tensors ``scale * N(0, I)``; keep the one of lowest loss."""
    _validate.positive_int("trials", trials)
    _validate.positive("scale", scale)
    device = get_device(device)  # candidates are drawn on the CPU (so a seed gives the same ones everywhere), then moved
    result = SearchResult(best=None, best_loss=float("inf"))
    for _ in range(trials):
        candidate = scale * torch.randn(shape, generator=generator, dtype=dtype)
        candidate = candidate.to(device)
        loss = float(loss_fn(candidate))
        result.losses.append(loss)
        if loss < result.best_loss:
            result.best, result.best_loss = candidate, loss
            result.accepted += 1
        result.best_so_far.append(result.best_loss)
    return result


def random_local_search(loss_fn: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, trials: int = 1000,
                        step_size: float = 1e-3, *, generator: torch.Generator | None = None) -> SearchResult:
    """From ``start``, try ``start + step_size * N(0, I)`` and move there whenever the loss drops."""
    _validate.positive_int("trials", trials)
    _validate.positive("step_size", step_size)
    current = start.detach().clone()
    result = SearchResult(best=current, best_loss=float(loss_fn(current)))
    for _ in range(trials):
        noise = torch.randn(current.shape, generator=generator, dtype=current.dtype).to(current.device)
        candidate = result.best + step_size * noise
        loss = float(loss_fn(candidate))
        result.losses.append(loss)
        if loss < result.best_loss:
            result.best, result.best_loss = candidate, loss
            result.accepted += 1
        result.best_so_far.append(result.best_loss)
    return result
