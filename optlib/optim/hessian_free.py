r"""Hessian-free optimization (Martens, 2010): a truncated-Newton step found by conjugate gradients
on Gauss-Newton-vector products, never forming a matrix.

Each step minimizes the damped quadratic model of the loss around θ,

.. math::
    q(p) = L(\theta) + g^\top p + \tfrac12 p^\top (G + \lambda I)\, p,

by running :func:`optlib.curvature.conjugate_gradient` on (G + λI) p = −g, where G is the
generalized Gauss-Newton matrix (positive semi-definite for a loss convex in the model's outputs)
or the Hessian, reached only through products Gv (:func:`optlib.curvature.ggn_matvec`). CG starts
from the previous step times ``warm_start`` and stops by Martens' rule on the progress of the
quadratic. The damping λ follows the Levenberg-Marquardt rule on the reduction ratio

.. math::
    \rho = \frac{L(\theta + p) - L(\theta)}{q(p) - q(0)}\,(\text{undamped } q),

λ ← λ·3/2 when ρ < ¼ (the model is trusted too much), λ ← λ·2/3 when ρ > ¾; an Armijo
backtracking search on the step length then makes sure the loss goes down.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.optim import Optimizer

from optlib import _validate, curvature
from optlib.optim._flat import assign, flatten

__all__ = ["CURVATURES", "martens_stop", "update_damping", "HessianFree"]

#: The matrix of the quadratic model: the generalized Gauss-Newton matrix or the Hessian.
CURVATURES = ("gauss_newton", "hessian")


def martens_stop(b: torch.Tensor, epsilon: float = 5e-4, min_window: int = 10) -> Callable:
    r"""The ``stop(x, r, k)`` rule of Martens (2010, §4.4) for :func:`~optlib.curvature.conjugate_gradient`.

    With φ(x) = ½xᵀAx − bᵀx = −½ xᵀ(r + b) (r = b − Ax) and a window k' = max(``min_window``, 0.1 k),
    CG stops at iteration k when φ has barely moved over the last k' iterations:

    .. math::
        k > k' \quad\text{and}\quad \frac{\varphi(x_k) - \varphi(x_{k-k'})}{\varphi(x_k)} < k'\,\epsilon .

    The error of the solve matters less than the time spent: the quadratic is only a model.
    """
    _validate.positive("epsilon", epsilon)
    _validate.positive_int("min_window", min_window)
    values: list[float] = []

    def stop(x: torch.Tensor, r: torch.Tensor, k: int) -> bool:
        values.append(-0.5 * torch.dot(x, r + b).item())
        window = max(min_window, math.ceil(0.1 * k))
        if k <= window or len(values) <= window:
            return False
        now, before = values[-1], values[-1 - window]
        return now < 0 and (now - before) / now < window * epsilon

    return stop


def update_damping(damping: float, rho: float, *, low: float = 0.25, high: float = 0.75, factor: float = 1.5,
                   minimum: float = 1e-8) -> float:
    """The Levenberg-Marquardt rule: λ·``factor`` when ρ < ``low``, λ/``factor`` when ρ > ``high``, else λ.

    A ρ that is not finite (the trial loss was NaN or infinite) counts as a failure.
    """
    if not math.isfinite(rho) or rho < low:
        return damping * factor
    if rho > high:
        return max(damping / factor, minimum)
    return damping


class HessianFree(Optimizer):
    r"""Hessian-free (truncated Newton) steps on a model's loss; see the module's docstring for the math.

    ``HessianFree(model, loss_fn, damping=1.0, curvature="gauss_newton", ...)`` takes the model
    and the loss ``loss_fn(outputs, y)`` (a scalar, mean or sum), because Gauss-Newton products
    need the outputs, not only the loss. ``step(closure)`` takes a closure that returns the batch
    ``(X, y)`` the step uses (the whole data set for full-batch optimization): the gradient, the
    curvature products, the reduction ratio and the line search are all computed on it. Returns
    the loss before the step.

    - ``lr``: the longest step length tried by the line search (1 is the model's own step);
    - ``damping``: the initial λ, adapted by :func:`update_damping` when ``adapt_damping``;
    - ``cg_max_iter``, ``cg_tol``: limits of each CG solve, stopped early by :func:`martens_stop`
      unless ``martens=False`` (then CG runs to ``cg_tol``: the exact damped Gauss-Newton step);
    - ``warm_start``: CG starts from this multiple of the previous step (Martens uses 0.95).

    The state (``optimizer.state["hf"]``) keeps ``damping``, ``rho``, ``cg_iterations``,
    ``cg_reason``, ``step_length``, the number of loss ``evaluations`` and curvature ``products``,
    and the previous step. One param group: the curvature couples all parameters.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, *, lr: float = 1.0, damping: float = 1.0,
                 curvature: str = "gauss_newton", cg_max_iter: int = 250, cg_tol: float = 1e-10,
                 warm_start: float = 0.95, adapt_damping: bool = True, martens: bool = True, armijo: float = 1e-4,
                 backtrack: float = 0.5, max_backtracks: int = 20):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        _validate.positive("lr", lr)
        _validate.positive("damping", damping)
        _validate.one_of("curvature", curvature, CURVATURES)
        _validate.positive_int("cg_max_iter", cg_max_iter)
        _validate.positive("cg_tol", cg_tol)
        _validate.in_range("warm_start", warm_start, 0.0, 1.0, high_inclusive=True)
        _validate.in_range("armijo", armijo, 0.0, 1.0)
        _validate.in_range("backtrack", backtrack, 0.0, 1.0)
        _validate.positive_int("max_backtracks", max_backtracks)
        params = [p for p in model.parameters()]
        if not params:
            raise ValueError("model has no parameters")
        if any(not p.requires_grad for p in params):
            raise ValueError("HessianFree optimizes all of the model's parameters: none may be frozen")
        super().__init__(params, dict(lr=lr, damping=damping, curvature=curvature, cg_max_iter=cg_max_iter,
                                      cg_tol=cg_tol, warm_start=warm_start, adapt_damping=adapt_damping, martens=martens,
                                      armijo=armijo, backtrack=backtrack, max_backtracks=max_backtracks))
        self.model, self.loss_fn = model, loss_fn

    # ---- the pieces of one step
    def _loss_at(self, params: list[torch.Tensor], flat: torch.Tensor, X, y) -> float:
        with torch.no_grad():
            assign(params, flat)
            return float(self.loss_fn(self.model(X), y))

    def _matvec(self, data, curvature_kind: str):
        if curvature_kind == "gauss_newton":
            return curvature.ggn_matvec(self.model, self.loss_fn, data)
        return curvature.hessian_matvec(self.model, self.loss_fn, data)

    @torch.no_grad()
    def step(self, closure=None):
        """One Hessian-free step on the batch ``closure()`` returns; the loss before the step."""
        if closure is None:
            raise ValueError("HessianFree.step needs a closure that returns the batch (X, y)")
        batch = closure()
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError("the closure of HessianFree must return the batch (X, y), "
                             f"got {type(batch).__name__}")
        X, y = batch
        group = self.param_groups[0]
        params = group["params"]
        state = self.state.setdefault("hf", {"damping": group["damping"], "previous": None, "evaluations": 0,
                                            "products": 0, "steps": 0})
        start = flatten(params)
        with torch.enable_grad():
            loss = self.loss_fn(self.model(X), y)
            if loss.ndim != 0:
                raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
            grads = torch.autograd.grad(loss, params)
        f0 = float(loss)
        if not math.isfinite(f0):
            raise FloatingPointError(f"the loss is {f0} at the start of the step: lower the step length or "
                                     "raise the damping")
        g = torch.cat([gr.reshape(-1) for gr in grads])
        state["evaluations"] += 1
        products = [0]
        base = self._matvec((X, y), group["curvature"])

        def model_matvec(v):
            products[0] += 1
            return base(v)

        damping = state["damping"]
        x0 = None if state["previous"] is None else group["warm_start"] * state["previous"]
        solve = curvature.conjugate_gradient(lambda v: model_matvec(v) + damping * v, -g, x0=x0,
                                             tol=group["cg_tol"], max_iter=group["cg_max_iter"],
                                             stop=martens_stop(-g) if group["martens"] else None)
        p = solve.x
        if solve.negative_curvature and solve.iterations == 0:
            p = -g  # the first direction already had negative curvature (Hessian): fall back to the gradient
        predicted = torch.dot(g, p).item() + 0.5 * torch.dot(p, model_matvec(p)).item()
        f1 = self._loss_at(params, start + p, X, y)
        state["evaluations"] += 1
        rho = (f1 - f0) / predicted if predicted < 0 else -math.inf
        # an Armijo backtracking search on the step length, from lr
        length, slope, trial = group["lr"], torch.dot(g, p).item(), f1
        if group["lr"] != 1.0:
            trial = self._loss_at(params, start + length * p, X, y)
            state["evaluations"] += 1
        for _ in range(group["max_backtracks"]):
            if math.isfinite(trial) and trial <= f0 + group["armijo"] * length * min(slope, 0.0):
                break
            length *= group["backtrack"]
            trial = self._loss_at(params, start + length * p, X, y)
            state["evaluations"] += 1
        else:
            length, trial = 0.0, f0  # no decrease found: stay, with more damping next time
        assign(params, start + length * p)
        for parameter, gradient in zip(params, grads):
            parameter.grad = gradient.detach().clone()
        if group["adapt_damping"]:
            state["damping"] = update_damping(damping, rho if length > 0 else -math.inf)
        state.update(previous=p if length > 0 else None, rho=rho, cg_iterations=solve.iterations,
                     cg_reason=solve.reason, step_length=length, products=state["products"] + products[0],
                     steps=state["steps"] + 1, loss_after=trial)
        return loss.detach()
