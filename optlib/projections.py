r"""Euclidean projections onto simple sets, and projected gradient for any torch optimizer.

The projection of y onto a closed convex set C is the nearest point of C,

.. math::
    \Pi_C(y) = \arg\min_{x \in C} \tfrac12 \lVert x - y \rVert_2^2 .

Projected gradient descent alternates a gradient step with a projection,
x_{k+1} = Π_C(x_k − α ∇f(x_k)); its fixed points are the points where −∇f lies in the normal
cone of C, which are the KKT points of min f over C. Each projection here is exact and costs
O(d) (O(d log d) for the simplex and the L1 ball, which sort).

:class:`Projected` wraps any optimizer (SGD, Adam, ...): after each of its steps it projects the
parameters it was given a projection for, in place, so a training loop gains a constraint by
changing the line that builds the optimizer.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch.optim import Optimizer

from optlib import _validate

__all__ = ["Projected", "project_box", "project_l1_ball", "project_l2_ball", "project_simplex"]


def _floating(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} has NaN or infinite entries")
    return x


def project_box(x: torch.Tensor, lower=-float("inf"), upper=float("inf")) -> torch.Tensor:
    """The nearest point of the box lower ≤ x ≤ upper (bounds are numbers or tensors broadcasting to x)."""
    x = _floating("x", x)
    lower = torch.as_tensor(lower, dtype=x.dtype, device=x.device)
    upper = torch.as_tensor(upper, dtype=x.dtype, device=x.device)
    if torch.isnan(lower).any() or torch.isnan(upper).any():
        raise ValueError("the bounds must not be NaN")
    if (lower > upper).any():
        raise ValueError("the box is empty: some lower bound exceeds its upper bound")
    return torch.maximum(torch.minimum(x, upper), lower)


def project_l2_ball(x: torch.Tensor, radius: float = 1.0, center: torch.Tensor | None = None) -> torch.Tensor:
    """The nearest point of the ball ‖x − center‖₂ ≤ radius (the whole tensor is one vector)."""
    x = _floating("x", x)
    radius = _validate.at_least("radius", radius, 0.0)
    c = torch.zeros_like(x) if center is None else _floating("center", center).to(x.dtype)
    norm = torch.linalg.vector_norm(x - c)
    if norm <= radius:
        return x.clone()
    return c + (x - c) * (radius / norm)


def project_simplex(x: torch.Tensor, total: float = 1.0) -> torch.Tensor:
    """The nearest point of {w ≥ 0, Σ w = total} (the whole tensor is one vector).

    Sort-based (Held, Wolfe and Crowder 1974; Duchi et al. 2008): the projection is
    max(x − τ, 0) with the one threshold τ that makes the entries sum to ``total``.
    """
    x = _floating("x", x)
    total = _validate.positive("total", total)
    flat = x.reshape(-1)
    u = torch.sort(flat, descending=True).values
    cumulative = torch.cumsum(u, 0) - total
    index = torch.arange(1, len(u) + 1, dtype=x.dtype, device=x.device)
    support = u - cumulative / index > 0  # true for the first rho entries, false after
    rho = int(support.nonzero().max())
    tau = cumulative[rho] / (rho + 1)
    return torch.clamp(flat - tau, min=0).reshape(x.shape)


def project_l1_ball(x: torch.Tensor, radius: float = 1.0) -> torch.Tensor:
    """The nearest point of the ball ‖x‖₁ ≤ radius: soft-thresholding at the level that lands on the sphere."""
    x = _floating("x", x)
    radius = _validate.positive("radius", radius)
    if x.abs().sum() <= radius:
        return x.clone()
    return torch.sign(x) * project_simplex(x.abs(), radius)


Projection = Callable[[torch.Tensor], torch.Tensor]


class Projected(Optimizer):
    """``optimizer``'s step followed by a projection of the chosen parameters onto their sets.

    ``projections`` maps parameters to functions ``tensor -> projected tensor`` (e.g.
    ``lambda w: project_l2_ball(w, 3.0)``); the other parameters are left free. With
    ``optimizer = SGD(params, lr)`` this is projected gradient descent. The parameters are
    projected once at construction too, so every iterate is feasible. ``param_groups``,
    ``state`` and ``state_dict`` are the wrapped optimizer's, so schedulers work unchanged.
    """

    def __init__(self, optimizer: Optimizer, projections: Mapping[torch.Tensor, Projection]):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for p, project in projections.items():
            if id(p) not in owned:
                raise ValueError("a projected parameter is not among the optimizer's parameters")
            if not callable(project):
                raise TypeError(f"a projection must be callable, got {type(project).__name__}")
        self.optimizer = optimizer
        self.projections = list(projections.items())
        self._project()

    # the wrapped optimizer's bookkeeping, so that schedulers and state_dict see it
    @property
    def param_groups(self):
        """The wrapped optimizer's parameter groups."""
        return self.optimizer.param_groups

    @property
    def state(self):
        """The wrapped optimizer's state."""
        return self.optimizer.state

    @property
    def defaults(self):
        """The wrapped optimizer's defaults."""
        return self.optimizer.defaults

    def state_dict(self):
        """The wrapped optimizer's ``state_dict`` (the projections are code, not state)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict):
        """Load a ``state_dict`` into the wrapped optimizer."""
        self.optimizer.load_state_dict(state_dict)

    def zero_grad(self, set_to_none: bool = True):
        """The wrapped optimizer's ``zero_grad``."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def __repr__(self) -> str:
        return f"Projected({self.optimizer!r}, {len(self.projections)} projected tensor(s))"

    @torch.no_grad()
    def _project(self) -> None:
        for p, project in self.projections:
            value = project(p.detach())
            if not isinstance(value, torch.Tensor) or value.shape != p.shape:
                raise ValueError(f"a projection returned shape {getattr(value, 'shape', type(value).__name__)} "
                                 f"for a parameter of shape {tuple(p.shape)}")
            p.copy_(value)

    def step(self, closure=None):
        """One step of the wrapped optimizer, then the projections; returns the closure's loss."""
        loss = self.optimizer.step(closure)
        self._project()
        return loss
