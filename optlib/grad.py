r"""Gradient tools: numerical gradients, the gradient check, and Hessians.

The gradient check compares an analytic gradient g_a with a numerical one g_n coordinate by
coordinate through the relative error ``|g_a − g_n| / max(|g_a|, |g_n|)``, which is scale-free:
an absolute error of 1e-6 is excellent for a gradient of size 10 and useless for one of size 1e-6.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable

import torch

from optlib import _validate

_METHODS = ("forward", "central")


def _scalar(value) -> float:
    value = value.item() if isinstance(value, torch.Tensor) else float(value)
    return value


def numerical_gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, h: float = 1e-5,
                       method: str = "central", indices=None) -> torch.Tensor:
    r"""Finite-difference gradient of a scalar function ``f`` at ``x``.

    forward:  ∂f/∂xᵢ ≈ (f(x + h eᵢ) − f(x)) / h          error O(h), 1 + d evaluations
    central:  ∂f/∂xᵢ ≈ (f(x + h eᵢ) − f(x − h eᵢ)) / 2h  error O(h²), 2d evaluations

    ``indices`` (flat positions) restricts the work to some coordinates; the others are NaN.
    ``x`` is not modified.
    """
    h = _validate.positive("h", h)
    _validate.one_of("method", method, _METHODS)
    x = x.detach().clone(memory_format=torch.contiguous_format)  # view(-1) below needs contiguous memory
    flat = x.view(-1)
    grad = torch.full_like(flat, float("nan"))
    positions = range(flat.numel()) if indices is None else [int(i) for i in indices]
    with torch.no_grad():
        f0 = _scalar(f(x)) if method == "forward" else None
        for i in positions:
            old = flat[i].item()
            flat[i] = old + h
            f_plus = _scalar(f(x))
            if method == "forward":
                grad[i] = (f_plus - f0) / h
            else:
                flat[i] = old - h
                grad[i] = (f_plus - _scalar(f(x))) / (2 * h)
            flat[i] = old
    return grad.view_as(x)


def relative_error(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Elementwise ``|a − b| / max(|a|, |b|, eps)``; 0 where both are exactly zero."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    scale = torch.maximum(a.abs(), b.abs()).clamp(min=eps)
    return (a - b).abs() / scale


def order_of_magnitude(value: float) -> str:
    """``value`` rounded to the nearest power of ten, as text ("1e-09" for 6e-10).

    Errors at the round-off floor vary in their first digit between machines and even between
    runs (the order of a BLAS reduction can change); their power of ten is what carries meaning,
    and it is what the book prints.
    """
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{10.0 ** round(math.log10(abs(value))):.0e}"


def decade(value: float) -> str:
    """The decade that holds ``value``, as text: ``"[1e-04, 1e-03)"`` for 3e-4.

    For an error that varies between machines by tens of percent (a float32 round-off error),
    :func:`order_of_magnitude` can flip where the value is near 10^(k + 1/2), e.g. 3.2e-4; the
    decade flips only near a power of ten. Print whichever of the two the value is far from.
    """
    value = float(value)
    if value <= 0 or not math.isfinite(value):
        raise ValueError(f"decade needs a positive finite value, got {value!r}")
    k = math.floor(math.log10(value))
    return f"[{10.0 ** k:.0e}, {10.0 ** (k + 1):.0e})"


@dataclass
class GradCheck:
    """The outcome of :func:`gradient_check`."""

    indices: torch.Tensor
    analytic: torch.Tensor
    numerical: torch.Tensor
    rel_errors: torch.Tensor
    tolerance: float

    @property
    def max_rel_error(self) -> float:
        """The largest relative error over the checked coordinates."""
        return self.rel_errors.max().item()

    @property
    def passed(self) -> bool:
        """True when the largest relative error is at most ``tolerance``."""
        return self.max_rel_error <= self.tolerance

    @property
    def verdict(self) -> str:
        """A reading of the largest relative error by the usual rules of thumb (float64)."""
        e = self.max_rel_error
        if e < 1e-7:
            return "excellent: the gradient is right"
        if e < 1e-4:
            return "acceptable for losses with kinks (hinge, ReLU); suspicious for smooth ones"
        if e < 1e-2:
            return "suspicious: probably a bug"
        return "wrong: the analytic gradient is incorrect"

    def __repr__(self) -> str:
        return (f"GradCheck(checked={len(self.indices)}, max_rel_error={self.max_rel_error:.2e}, "
                f"passed={self.passed})")


def gradient_check(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, analytic_grad: torch.Tensor,
                   h: float = 1e-5, num_checks: int | None = None, tolerance: float = 1e-6,
                   generator: torch.Generator | None = None) -> GradCheck:
    """Compare ``analytic_grad`` with a central-difference gradient of ``f`` at ``x``.

    Checking every coordinate costs 2d evaluations of ``f``; ``num_checks`` samples that many
    coordinates at random instead (the usual practice for real models). Use float64: in float32
    round-off alone gives relative errors near 1e-3.
    """
    analytic_grad = torch.as_tensor(analytic_grad).detach()
    if analytic_grad.shape != x.shape:
        raise ValueError(f"analytic_grad has shape {tuple(analytic_grad.shape)} but x has {tuple(x.shape)}")
    _validate.positive("tolerance", tolerance)
    n = x.numel()
    if num_checks is None:
        indices = torch.arange(n)
    else:
        _validate.positive_int("num_checks", num_checks)
        indices = torch.randperm(n, generator=generator)[:num_checks].sort().values
    numerical = numerical_gradient(f, x, h=h, method="central", indices=indices.tolist()).reshape(-1)[indices]
    analytic = analytic_grad.reshape(-1)[indices].to(numerical.dtype)
    return GradCheck(indices, analytic, numerical, relative_error(analytic, numerical), tolerance)


def hessian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Exact Hessian of a scalar function at ``x`` (shape (d, d) for a vector x), by autograd."""
    if x.ndim != 1:
        raise ValueError(f"hessian expects a vector x, got shape {tuple(x.shape)}")
    return torch.autograd.functional.hessian(f, x.detach())


class CountingFunction:
    """Wrap a function and count how many times it is called: the cost of a numerical gradient.

    >>> counted = CountingFunction(loss)
    >>> _ = numerical_gradient(counted, w)
    >>> counted.calls  # 2 * w.numel() for central differences
    """

    def __init__(self, f: Callable):
        if not callable(f):
            raise TypeError(f"f must be callable, got {type(f).__name__}")
        self.f = f
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.f(*args, **kwargs)

    def reset(self) -> None:
        """Set the call count back to 0."""
        self.calls = 0


def finite_difference_errors(f: Callable[[torch.Tensor], torch.Tensor], x: float, exact: float, hs,
                             method: str = "central", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""Absolute error ``|D_h f(x) − f'(x)|`` of a finite difference for each step ``h`` in ``hs``.

    ``f`` is a scalar function of one variable, evaluated in ``dtype`` at the point ``x``; ``exact``
    is the true derivative f'(x). Plotted against h on log-log axes, the error falls like h
    (forward) or h² (central) until round-off, which grows like ε/h, takes over.
    Returns a float64 tensor of the same length as ``hs``.
    """
    _validate.one_of("method", method, _METHODS)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype!r}")
    exact = _validate._number("exact", exact)
    point = torch.tensor([_validate._number("x", x)], dtype=dtype)
    errors = [abs(numerical_gradient(f, point, h=_validate.positive("h", float(h)), method=method).item() - exact)
              for h in hs]
    return torch.tensor(errors, dtype=torch.float64)


def directional_slopes(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, directions: torch.Tensor,
                       h: float = 1e-5) -> torch.Tensor:
    r"""The slope of ``f`` at ``x`` along each row u of ``directions``, by a central difference.

    D_u f(x) ≈ (f(x + h u) − f(x − h u)) / 2h; for a differentiable f it equals ∇f(x)ᵀu, largest
    along the gradient. ``x`` has shape (d,) and ``directions`` (k, d); returns a float64 tensor (k,).
    """
    h = _validate.positive("h", h)
    if x.ndim != 1 or directions.ndim != 2 or directions.shape[1] != x.shape[0]:
        raise ValueError(f"expected x of shape (d,) and directions of shape (k, d), "
                         f"got {tuple(x.shape)} and {tuple(directions.shape)}")
    with torch.no_grad():
        return torch.tensor([(_scalar(f(x + h * u)) - _scalar(f(x - h * u))) / (2 * h) for u in directions],
                            dtype=torch.float64)


@dataclass
class GradientCost:
    """What one gradient of ``f`` at ``x`` costs, three ways (:func:`gradient_cost`).

    ``evaluations`` counts calls of ``f`` and ``flops`` the floating-point operations that
    ``torch.utils.flop_counter`` counts (matrix-matrix products and the like; neither
    elementwise operations nor matrix-vector products are counted), for ``"forward"`` and ``"central"`` differences and for ``"autograd"``
    (one evaluation and one backward pass).
    """

    dim: int
    evaluations: dict[str, int]
    flops: dict[str, int]


def gradient_cost(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> GradientCost:
    """Count the loss evaluations and the FLOPs of one gradient of ``f`` at ``x``, numerical and autograd.

    A numerical gradient costs ``d + 1`` (forward) or ``2d`` (central) evaluations of ``f``, each
    as many FLOPs as one evaluation; autograd costs one evaluation plus one backward pass,
    whatever ``d`` is. Counted, not timed, so the result is the same on every machine.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counted = CountingFunction(f)
    with FlopCounterMode(display=False) as flops:
        with torch.no_grad():
            counted(x)
    one_evaluation = flops.get_total_flops()
    evaluations, total_flops = {}, {}
    for method in _METHODS:
        counted.reset()
        numerical_gradient(counted, x, method=method)
        evaluations[method] = counted.calls
        total_flops[method] = counted.calls * one_evaluation
    counted.reset()
    leaf = x.detach().clone().requires_grad_(True)
    with FlopCounterMode(display=False) as flops:
        counted(leaf).backward()
    evaluations["autograd"], total_flops["autograd"] = counted.calls, flops.get_total_flops()
    return GradientCost(x.numel(), evaluations, total_flops)


def flat_gradient(model: torch.nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient of ``loss_fn(model(X), y)`` with respect to all parameters of ``model``, as one vector.

    The parameters are concatenated in the order of ``model.parameters()``; ``model``'s ``.grad``
    fields are left as they were.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(X), y), params)
    return torch.cat([g.reshape(-1) for g in grads])


def per_example_gradients(model: torch.nn.Module, loss_fn: Callable, X: torch.Tensor,
                          y: torch.Tensor) -> torch.Tensor:
    """The gradient of the loss of each example alone, as the rows of an ``(n, P)`` tensor.

    Row i is :func:`flat_gradient` on example i (a batch of one). For a loss that is a mean over
    examples, the mean of the rows is the gradient on the whole batch: what minibatch SGD samples.
    """
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    return torch.stack([flat_gradient(model, loss_fn, X[i:i + 1], y[i:i + 1]) for i in range(len(X))])


def minibatch_noise(per_example: torch.Tensor, batch_size: int, num_batches: int, *,
                    generator: torch.Generator | None = None) -> float:
    r"""Mean of ‖g_B − ∇L‖² over ``num_batches`` minibatches drawn the way SGD draws them.

    ``per_example`` holds the per-example gradients (n, P) (:func:`per_example_gradients`); ∇L is
    their mean and g_B the mean over a batch. Batches are consecutive slices of random shuffles of
    the n examples (a shuffle gives ⌊n/B⌋ batches; the leftover examples are skipped), as in an
    epoch of SGD. In expectation the result is σ²/B · (n − B)/(n − 1), σ² the mean of ‖∇ℓᵢ − ∇L‖².
    """
    if per_example.ndim != 2:
        raise ValueError(f"per_example must have shape (n, P), got {tuple(per_example.shape)}")
    n = len(per_example)
    _validate.positive_int("batch_size", batch_size)
    _validate.positive_int("num_batches", num_batches)
    if batch_size > n:
        raise ValueError(f"batch_size must be at most the number of examples {n}, got {batch_size}")
    full = per_example.mean(0)
    per_shuffle, squares, drawn = n // batch_size, [], 0
    while drawn < num_batches:
        order = torch.randperm(n, generator=generator)[:per_shuffle * batch_size].to(per_example.device)
        g_B = per_example[order].reshape(per_shuffle, batch_size, -1).mean(1)
        squares.append((g_B - full).pow(2).sum(1))
        drawn += per_shuffle
    return torch.cat(squares)[:num_batches].mean().item()
