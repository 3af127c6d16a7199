r"""Nesterov's accelerated gradient for smooth convex problems, with an increasing momentum schedule.

From y₀ = x₀, each step takes a gradient step from the extrapolated point y_k and extrapolates again:

.. math::
    x_{k+1} &= y_k - \alpha \nabla f(y_k),\\
    y_{k+1} &= x_{k+1} + \beta_k\,(x_{k+1} - x_k).

With α = 1/L on an L-smooth convex f this guarantees f(x_k) − f* ≤ 2L‖x₀ − x*‖²/(k + 1)² for

* ``schedule="t"`` (Nesterov, 1983; FISTA of Beck & Teboulle, 2009): t₀ = 1,
  t_{k+1} = (1 + √(1 + 4t_k²))/2, β_k = (t_k − 1)/t_{k+1};
* ``schedule="k"``: β_k = k/(k + 3), i.e. (j − 1)/(j + 2) after the j-th gradient step
  (Su, Boyd & Candès, 2016).

Both start at β₀ = 0 and grow towards 1, roughly like 1 − 3/k. ``schedule="constant"`` keeps
β_k = ``momentum``: that is torch's ``SGD(nesterov=True)`` (same iterates), the method for strongly
convex problems with β = (√κ − 1)/(√κ + 1).

The parameter tensor holds y_k, the point where the next gradient is evaluated, exactly as in
torch's Nesterov SGD; x_k, the point the bound is about, is ``optimizer.iterate(param)``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch.optim import Optimizer

from optlib import _validate
from optlib.optim._closure import closure_loss

#: The momentum schedules of :class:`AcceleratedGradient` (see the module docstring).
SCHEDULES = ("t", "k", "constant")
__all__ = ["SCHEDULES", "AcceleratedGradient", "accelerated_update", "lookahead_nesterov", "momentum_coefficient",
           "next_t"]


def next_t(t: float) -> float:
    r"""t_{k+1} = (1 + √(1 + 4 t_k²))/2, Nesterov's sequence (t₀ = 1, t_k ≥ (k + 2)/2)."""
    return (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0


def momentum_coefficient(k: int, schedule: str, *, t: float = 1.0, momentum: float | None = None) -> float:
    r"""β_k for step k = 0, 1, … : (t_k − 1)/t_{k+1} (schedule "t", pass t = t_k), k/(k + 3) ("k"), or ``momentum``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    _validate.one_of("schedule", schedule, SCHEDULES)
    if schedule == "t":
        return (t - 1.0) / next_t(t)
    if schedule == "k":
        return k / (k + 3.0)
    if momentum is None:
        raise ValueError("schedule='constant' needs a momentum")
    return momentum


def accelerated_update(param: torch.Tensor, grad: torch.Tensor, x_prev: torch.Tensor, *, lr: float,
                       beta: float) -> torch.Tensor:
    r"""One step on ``param`` = y_k in place: x_{k+1} = y_k − α g, then y_{k+1} = x_{k+1} + β (x_{k+1} − x_k).

    Returns x_{k+1} (a new tensor); ``x_prev`` is x_k.
    """
    x_next = param - lr * grad
    param.copy_(x_next).add_(x_next - x_prev, alpha=beta)
    return x_next


class AcceleratedGradient(Optimizer):
    r"""Nesterov's accelerated gradient method (see the module docstring for the algorithm).

    ``lr`` is α (1/L for the guarantee), ``schedule`` one of ``"t"``, ``"k"``, ``"constant"``,
    ``momentum`` the fixed β of ``"constant"`` (and only there). Without momentum the first step is
    a plain gradient step. Works with several parameter tensors and param groups; the state of
    each parameter holds ``step`` (k), ``x`` (x_k) and ``t`` (t_k).
    """

    def __init__(self, params, lr: float = 1e-2, schedule: str = "t", momentum: float | None = None):
        _validate.at_least("lr", lr, 0.0)
        _validate.one_of("schedule", schedule, SCHEDULES)
        if schedule == "constant":
            if momentum is None:
                raise ValueError("schedule='constant' needs a momentum in [0, 1)")
            _validate.in_range("momentum", momentum, 0.0, 1.0)
        elif momentum is not None:
            raise ValueError(f"momentum is only used with schedule='constant', got momentum={momentum} "
                             f"with schedule={schedule!r}")
        super().__init__(params, dict(lr=lr, schedule=schedule, momentum=momentum))

    @torch.no_grad()
    def step(self, closure=None):
        """One step on every parameter that has a gradient; ``closure`` (optional) re-evaluates the loss,
        calling ``backward``, and its loss is returned.
        """
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"], state["t"], state["x"] = 0, 1.0, p.detach().clone()
                k, t = state["step"], state["t"]
                beta = momentum_coefficient(k, group["schedule"], t=t, momentum=group["momentum"])
                state["x"] = accelerated_update(p, p.grad, state["x"], lr=group["lr"], beta=beta)
                state["step"], state["t"] = k + 1, next_t(t)
        return loss

    def iterate(self, param: torch.Tensor) -> torch.Tensor:
        """x_k for ``param`` (which holds y_k): the gradient-step point the convergence bound is about."""
        state = self.state.get(param)
        return param.detach() if not state else state["x"]


def lookahead_nesterov(fn: Callable[[torch.Tensor], torch.Tensor], x0, steps: int, lr: float,
                       momentum: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Nesterov's method as first written, with the gradient taken at the look-ahead point.

    .. math::
        u_{t+1} = \rho u_t - \alpha \nabla f(x_t + \rho u_t),\qquad x_{t+1} = x_t + u_{t+1},\qquad u_0 = 0,

    in float64 with gradients by autograd. Returns two arrays of shape (steps + 1, d): the points
    x_t and the look-ahead points x_t + ρ u_t (the parameters of ``SGD(nesterov=True)``).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    lr = _validate.at_least("lr", lr, 0.0)
    momentum = _validate.in_range("momentum", momentum, 0.0, 1.0)
    x = torch.as_tensor(x0, dtype=torch.float64).detach().clone().reshape(-1)
    u = torch.zeros_like(x)
    points, ahead = [x.clone()], [x.clone()]
    for _ in range(steps):
        point = (x + momentum * u).requires_grad_(True)
        (gradient,) = torch.autograd.grad(fn(point), point)
        u = momentum * u - lr * gradient
        x = x + u
        points.append(x.clone())
        ahead.append(x + momentum * u)
    return torch.stack(points).numpy(), torch.stack(ahead).numpy()
