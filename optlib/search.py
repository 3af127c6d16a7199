"""Gradient-free search: random search and random local search (chapter 1).

Besides the two searches, the measurements that explain them: how well one random guess
classifies, how much accuracy an alignment with a good direction buys, how often a random step
lowers a loss, and what gradient descent costs when its gradient comes from loss evaluations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from optlib import _validate, grad
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

    def evaluations_to(self, target: float) -> int | None:
        """How many candidates were tried when the best loss first reached ``target`` (``<=``).

        ``None`` when it never did. The evaluation of a local search's start is not counted.
        """
        target = _validate._number("target", target)
        return next((k + 1 for k, best in enumerate(self.best_so_far) if best <= target), None)


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


def _check_data(X: torch.Tensor, y: torch.Tensor) -> None:
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"expected X of shape (n, d) and y of shape (n,), got {tuple(X.shape)} and {tuple(y.shape)}")


def random_guess_accuracies(X: torch.Tensor, y: torch.Tensor, num_classes: int, count: int, *,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """Accuracy on ``(X, y)`` of each of ``count`` random linear classifiers ``W ~ N(0, I)``.

    Each ``W`` has shape ``(num_classes, d)`` and predicts ``argmax_j (W x)_j``; all ``count``
    matrices are drawn in one call ``torch.randn(count, num_classes, d)`` in the dtype of ``X``.
    Returns a float64 tensor of shape ``(count,)``.
    """
    _check_data(X, y)
    _validate.positive_int("num_classes", num_classes)
    _validate.positive_int("count", count)
    Ws = torch.randn(count, num_classes, X.shape[1], generator=generator, dtype=X.dtype).to(X.device)
    predictions = (X @ Ws.transpose(1, 2)).argmax(-1)
    return (predictions == y).double().mean(1).cpu()


def accuracy_at_cosine(direction: torch.Tensor, X: torch.Tensor, y: torch.Tensor, cosines, draws: int = 50, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Mean accuracy on ``(X, y)`` of linear classifiers at cosine ``c`` from ``direction``, for each ``c``.

    The classifiers are :math:`W = c\,\hat g + \sqrt{1 - c^2}\,r` with :math:`\hat g` the unit
    ``direction`` (shape ``(C, d)``) and ``r`` one of ``draws`` random unit directions orthogonal
    to it (the same ``draws`` for every ``c``). Tells how much accuracy an alignment buys: random
    search finds a candidate at a small cosine from the steepest-descent direction.
    Returns a float64 tensor with one mean accuracy per cosine.
    """
    _check_data(X, y)
    _validate.positive_int("draws", draws)
    if direction.ndim != 2 or direction.shape[1] != X.shape[1]:
        raise ValueError(f"direction must have shape (C, {X.shape[1]}), got {tuple(direction.shape)}")
    cosines = torch.as_tensor(cosines, dtype=torch.float64).reshape(-1)
    if len(cosines) and (cosines.min() < -1 or cosines.max() > 1):
        raise ValueError("cosines must lie in [-1, 1]")
    g_hat = direction / direction.norm()
    R = torch.randn(draws, *direction.shape, generator=generator, dtype=direction.dtype).to(direction.device)
    R = R - (R * g_hat).sum((1, 2), keepdim=True) * g_hat  # the component along g_hat removed
    R = R / R.norm(dim=(1, 2), keepdim=True)
    means = []
    for c in cosines.tolist():
        Ws = c * g_hat + math.sqrt(1 - c * c) * R
        means.append(((X @ Ws.transpose(1, 2)).argmax(-1) == y).double().mean().item())
    return torch.tensor(means, dtype=torch.float64)


def expected_max_normal(n: int, samples: int = 4000, *, generator: torch.Generator | None = None) -> float:
    """Monte Carlo estimate of z_n, the expected largest of ``n`` independent standard normal numbers.

    The mean over ``samples`` draws of ``n`` numbers (float64); z_n grows like sqrt(2 ln n).
    """
    _validate.positive_int("n", n)
    _validate.positive_int("samples", samples)
    return torch.randn(samples, n, generator=generator, dtype=torch.float64).max(1).values.mean().item()


def step_success_rate(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, step: float,
                      directions: torch.Tensor) -> float:
    """The fraction of steps ``x + step * e``, one for each row ``e`` of ``directions``, that lower ``f``.

    ``f`` must take a batch of points of shape ``(k, d)`` and return ``k`` values (as
    :class:`optlib.functions.TestFunction` does); ``x`` has shape ``(d,)``.
    """
    _validate.positive("step", step)
    if x.ndim != 1 or directions.ndim != 2 or directions.shape[1] != x.shape[0]:
        raise ValueError(f"expected x of shape (d,) and directions of shape (k, d), "
                         f"got {tuple(x.shape)} and {tuple(directions.shape)}")
    with torch.no_grad():
        return (f(x + step * directions) < f(x)).double().mean().item()


@dataclass
class FiniteDifferenceRun:
    """What :func:`finite_difference_descent` did: the final point and loss, its steps and loss evaluations."""

    x: torch.Tensor
    loss: float
    steps: int
    evaluations: int


def finite_difference_descent(f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, lr: float,
                              target: float, max_steps: int = 1000, *, h: float = 1e-5) -> FiniteDifferenceRun:
    """Gradient descent ``x <- x - lr * g`` with ``g`` a forward-difference gradient, until ``f(x) <= target``.

    Gradient descent that, like a search, only evaluates the loss: each gradient costs ``d + 1``
    evaluations of ``f`` (:func:`optlib.grad.numerical_gradient`), and those are what
    ``evaluations`` counts. The loss that decides when to stop is the ``f(x)`` the forward
    difference evaluates anyway, so it is not counted twice. Raises ``RuntimeError`` when
    ``target`` is not reached within ``max_steps`` steps.
    """
    _validate.positive("lr", lr)
    target = _validate._number("target", target)
    _validate.positive_int("max_steps", max_steps)
    counted = grad.CountingFunction(f)
    x = x0.detach().clone()
    with torch.no_grad():
        loss = float(f(x))
    steps = 0
    while loss > target:
        if steps == max_steps:
            raise RuntimeError(f"f was still {loss:.3g} > target {target:.3g} after {max_steps} steps")
        x = x - lr * grad.numerical_gradient(counted, x, h=h, method="forward")
        steps += 1
        with torch.no_grad():
            loss = float(f(x))
    return FiniteDifferenceRun(x, loss, steps, counted.calls)
