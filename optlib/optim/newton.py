r"""Newton's method for small problems (it builds the d × d Hessian): damping, ``|H|``, an Armijo line
search, and Levenberg-Marquardt damping adapted by the reduction ratio."""
from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

from optlib import _validate
from optlib.linesearch import backtracking
from optlib.optim._flat import assign, flatten
from optlib.stability import NonFiniteLossError

#: The ``mode`` of :class:`Newton`: H (Newton) or ``|H|`` (saddle-free Newton).
MODES = ("newton", "saddle_free")
#: The ``line_search`` of :class:`Newton`: None (a fixed step α = ``lr``) or Armijo backtracking
#: (:func:`optlib.linesearch.backtracking`, starting from α = ``lr``).
LINE_SEARCHES = (None, "armijo")
#: The reduction-ratio thresholds of :class:`LevenbergMarquardt`: λ grows when ρ < ``RHO_LOW``
#: (the quadratic model was too optimistic) and shrinks when ρ > ``RHO_HIGH`` (it was good).
RHO_LOW, RHO_HIGH = 0.25, 0.75
#: :class:`LevenbergMarquardt` never lowers λ below this (λ = 0 could never grow again by a factor).
MIN_DAMPING = 1e-12
#: Reductions of f smaller than ``ROUNDOFF``·ε·``|f|`` (ε: the machine epsilon of the loss's dtype) are
#: rounding noise: when the predicted and the actual reduction both are, :class:`LevenbergMarquardt`
#: takes ρ = 1 (the step is accepted and λ shrinks).
ROUNDOFF = 10.0


def newton_direction(grad: torch.Tensor, hess: torch.Tensor, damping: float = 0.0,
                     mode: str = "newton") -> torch.Tensor:
    r"""The step p solving (H + δI) p = −g, or (``|H|`` + δI) p = −g for ``mode='saddle_free'``.

    ``|H| = Q |Λ| Qᵀ`` flips the sign of negative curvature, so the step goes downhill along it
    instead of towards the saddle.
    """
    eye = torch.eye(len(grad), dtype=hess.dtype, device=hess.device)
    if mode == "saddle_free":
        hess = absolute_hessian(hess)
    return torch.linalg.solve(hess + damping * eye, -grad)


def absolute_hessian(hess: torch.Tensor) -> torch.Tensor:
    """``|H| = Q |Λ| Qᵀ``: H with each eigenvalue replaced by its absolute value."""
    eigvals, eigvecs = torch.linalg.eigh(hess)
    return eigvecs @ torch.diag(eigvals.abs()) @ eigvecs.T


def _loss_grad_hessian(closure, params) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f, ∇f (flat) and ∇²f (d × d, by d backward passes through the gradient) at the current point."""
    with torch.enable_grad():
        loss = closure()
        if not loss.requires_grad:
            raise ValueError("the closure's loss has no graph: return the loss without calling backward "
                             "and without torch.no_grad()")
        grads = torch.autograd.grad(loss, params, create_graph=True)
        g = torch.cat([gr.reshape(-1) for gr in grads])
        rows = [torch.cat([r.reshape(-1) for r in torch.autograd.grad(g[i], params, retain_graph=True)])
                for i in range(len(g))]
    return loss.detach(), g.detach(), torch.stack(rows).detach()


def _check_finite(loss: torch.Tensor, g: torch.Tensor, hess: torch.Tensor, name: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss.item()} at {name} step {step}: "
                                 "start from a point where the loss is finite")
    if not (torch.isfinite(g).all() and torch.isfinite(hess).all()):
        raise NonFiniteLossError(f"the gradient or the Hessian is not finite at {name} step {step} "
                                 f"(loss {loss.item()})")


class Newton(Optimizer):
    r"""x ← x − α (H + δI)⁻¹ ∇f(x)  (``mode='saddle_free'`` uses ``|H|`` in place of H).

    .. math::
        x_{t+1} = x_t - \alpha\,(H_t + \delta I)^{-1} \nabla f(x_t), \qquad H_t = \nabla^2 f(x_t)

    with step size α = ``lr`` and damping δ = ``damping``; the saddle-free variant replaces H_t by
    ``|H_t| = Q |Λ| Qᵀ`` (each eigenvalue replaced by its absolute value), so the step goes downhill
    along negative curvature.

    ``line_search='armijo'`` chooses α each step by Armijo backtracking
    (:func:`optlib.linesearch.backtracking`) along p = −(H + δI)⁻¹g, trying α = ``lr``, ``shrink``·α, …
    until f(x + αp) ≤ f(x) + c₁α gᵀp (c₁ = ``c1``). Where p is not a descent direction (gᵀp ≥ 0:
    H indefinite, as near a saddle, where the plain step goes uphill) or H + δI is singular, the
    step falls back to steepest descent, p = −g (Nocedal & Wright, §3.4). Near a minimum with
    H positive definite, α = 1 passes and the convergence is quadratic.

    A singular H makes the plain step undefined: for softmax regression with unpenalised
    intercepts, adding one constant to every class's intercept changes no prediction, so the
    Hessian has that null direction. Fix one class's intercept at 0 (the remaining parameters
    identify the model), add ``damping``, or use :class:`LevenbergMarquardt`.

    Builds the full Hessian by d extra backward passes and solves a d × d system, O(d²) memory
    and O(d³) time: meant for the book's small problems. ``step`` needs a closure that returns
    the loss **without** calling ``backward`` (Newton differentiates it twice itself);
    ``optlib.run.minimize`` builds the right closure from ``closure_calls_backward = False``.
    After a step each parameter's ``.grad`` holds the gradient at the point the step started from.
    The state of the first parameter counts ``step`` and ``evaluations`` (closure calls) and holds
    the last step size ``alpha`` and ``fallback`` (whether it was −g). With a line search, a NaN
    or infinite loss at x raises :class:`~optlib.stability.NonFiniteLossError` (a trial point's
    NaN only counts as a step too long).
    """

    closure_calls_backward = False

    def __init__(self, params, lr: float = 1.0, damping: float = 0.0, mode: str = "newton",
                 line_search: str | None = None, c1: float = 1e-4, shrink: float = 0.5):
        _validate.at_least("lr", lr, 0.0)
        _validate.at_least("damping", damping, 0.0)
        _validate.one_of("mode", mode, MODES)
        if line_search not in LINE_SEARCHES:  # (_validate.one_of sorts the choices, and None is not a str)
            raise ValueError(f"line_search must be one of {list(LINE_SEARCHES)}, got {line_search!r}")
        _validate.in_range("c1", c1, 0.0, 1.0)
        _validate.in_range("shrink", shrink, 0.0, 1.0)
        if line_search is not None and (c1 == 0 or shrink == 0 or lr == 0):
            raise ValueError(f"a line search needs c1 and shrink in (0, 1) and lr > 0, got c1={c1}, "
                             f"shrink={shrink}, lr={lr}")
        super().__init__(params, dict(lr=lr, damping=damping, mode=mode, line_search=line_search, c1=c1,
                                      shrink=shrink))

    def _params(self):
        if len(self.param_groups) > 1:
            raise ValueError(f"{type(self).__name__} couples all parameters through H: use a single param group")
        return list(self.param_groups[0]["params"])

    def _global_state(self, params) -> dict:
        state = self.state[params[0]]
        if not state:
            state.update(step=0, evaluations=0, alpha=0.0, fallback=False)
        return state

    def step(self, closure=None):
        """One Newton step; ``closure`` is required and returns the loss WITHOUT calling ``backward``.

        Returns the loss at the point the step started from.
        """
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure that returns the loss "
                             "(without calling backward)")
        params = self._params()
        group = self.param_groups[0]
        loss, g, hess = _loss_grad_hessian(closure, params)
        state = self._global_state(params)
        if group["line_search"] is not None:
            _check_finite(loss, g, hess, "Newton", state["step"])
        state["step"] += 1
        state["evaluations"] += 1
        if group["line_search"] is None:
            direction = newton_direction(g, hess, group["damping"], group["mode"])
            alpha = group["lr"]
            with torch.no_grad():
                offset = 0
                for p in params:
                    n = p.numel()
                    p.add_(direction[offset:offset + n].view_as(p), alpha=alpha)
                    p.grad = g[offset:offset + n].view_as(p).clone()
                    offset += n
            state["alpha"], state["fallback"] = alpha, False
            return loss

        x = flatten(params)
        try:
            direction = newton_direction(g, hess, group["damping"], group["mode"])
            slope = float(g @ direction)
        except torch.linalg.LinAlgError:  # H + δI singular
            slope = math.nan
        fallback = not slope < 0  # uphill, singular or NaN: steepest descent instead
        if fallback:
            direction, slope = -g, -float(g @ g)
        if slope == 0.0:  # g = 0: a critical point, nothing to search
            state["alpha"], state["fallback"] = 0.0, fallback
            assign(params, x, g)
            return loss

        def phi(alpha):
            assign(params, x + alpha * direction)
            with torch.no_grad():
                return float(closure())

        result = backtracking(phi, float(loss), slope, alpha=group["lr"], c1=group["c1"], shrink=group["shrink"])
        state["evaluations"] += result.evaluations
        state["alpha"], state["fallback"] = result.alpha, fallback
        assign(params, x + result.alpha * direction, g)
        return loss


class LevenbergMarquardt(Newton):
    r"""Newton with Levenberg-Marquardt damping: λ adapted by how well the quadratic model predicted the step.

    .. math::
        p &= -(H + \lambda I)^{-1} g \quad (\lambda \text{ first raised by } \times\text{factor until }
            H + \lambda I \succ 0), \\
        \rho &= \frac{f(x) - f(x + p)}{-(g^\top p + \tfrac12 p^\top H p)}
            = \frac{\text{actual reduction}}{\text{predicted reduction}}, \\
        x &\leftarrow x + p \ \text{ if } \rho > \eta, \qquad
        \lambda \leftarrow \begin{cases} \lambda \cdot \text{factor} & \rho < 1/4 \\
            \max(\lambda / \text{factor}, 10^{-12}) & \rho > 3/4 \\
            \lambda & \text{otherwise,} \end{cases}

    with λ₀ = ``damping``, η = ``eta`` and factor = ``factor``; ``mode='saddle_free'`` uses
    ``|H|`` in the solve (the model that ρ tests keeps the true H). Large λ gives a short step
    along −g/λ, small λ the Newton step: the damping interpolates between gradient descent and
    Newton, like the radius of a trust region (λ is the Lagrange multiplier of ‖p‖ ≤ Δ). With
    H + λI positive definite the predicted reduction, ½pᵀ(H + λI)p + ½λ‖p‖², is positive, so every
    accepted step decreases f; near a saddle λ rises above −λ_min(H) and the step goes downhill.
    A rejected step leaves x unchanged and raises λ. A trial point whose loss is NaN or infinite
    counts as ρ = −∞. Near the minimum both reductions fall to the rounding level of f, where
    their ratio is noise that would reject every step and drive λ up without end: when both are
    below ``ROUNDOFF``·ε·``|f|``, ρ is taken as 1, and the iteration keeps Newton's quadratic convergence.

    The closure returns the loss without calling ``backward`` (as :class:`Newton`); it is called
    once at x (with gradients enabled) and once at the trial point. The state of the first
    parameter holds ``damping`` (λ for the next step), ``rho`` and ``accepted`` (of the last step),
    ``step`` and ``evaluations``. A NaN or infinite loss at x raises
    :class:`~optlib.stability.NonFiniteLossError`.
    """

    def __init__(self, params, damping: float = 1.0, mode: str = "newton", eta: float = 1e-4,
                 factor: float = 4.0):
        _validate.positive("damping", damping)
        _validate.in_range("eta", eta, 0.0, RHO_LOW)
        _validate.positive("factor", factor)
        if not factor > 1:
            raise ValueError(f"factor must be > 1, got {factor}")
        super().__init__(params, lr=1.0, damping=damping, mode=mode)
        for group in self.param_groups:
            group.update(eta=eta, factor=factor)

    def _global_state(self, params) -> dict:
        state = self.state[params[0]]
        if not state:
            state.update(step=0, evaluations=0, damping=float(self.param_groups[0]["damping"]), rho=math.nan,
                         accepted=False)
        return state

    def step(self, closure=None):
        """One Levenberg-Marquardt iteration; ``closure`` is required and returns the loss WITHOUT calling ``backward``.

        Returns the loss at the point the step started from.
        """
        if closure is None:
            raise ValueError("LevenbergMarquardt.step needs a closure that returns the loss "
                             "(without calling backward)")
        params = self._params()
        group = self.param_groups[0]
        loss, g, hess = _loss_grad_hessian(closure, params)
        state = self._global_state(params)
        _check_finite(loss, g, hess, "Levenberg-Marquardt", state["step"])
        state["step"] += 1
        state["evaluations"] += 1
        curvature = absolute_hessian(hess) if group["mode"] == "saddle_free" else hess
        eye = torch.eye(len(g), dtype=hess.dtype, device=hess.device)
        lam = state["damping"]
        while torch.linalg.cholesky_ex(curvature + lam * eye).info != 0:  # not positive definite yet
            lam *= group["factor"]
        p = torch.linalg.solve(curvature + lam * eye, -g)
        predicted = -float(g @ p + 0.5 * p @ hess @ p)
        x = flatten(params)
        if not predicted > 0:  # g = 0: nothing to gain
            state["damping"], state["rho"], state["accepted"] = lam, math.nan, False
            assign(params, x, g)
            return loss
        assign(params, x + p)
        with torch.no_grad():
            trial = float(closure())
        state["evaluations"] += 1
        actual = float(loss) - trial
        roundoff = ROUNDOFF * torch.finfo(loss.dtype).eps * abs(float(loss))
        if not math.isfinite(actual):
            rho = -math.inf
        elif predicted <= roundoff and abs(actual) <= roundoff:  # f cannot tell the two apart: trust the model
            rho = 1.0
        else:
            rho = actual / predicted
        accepted = rho > group["eta"]
        assign(params, x + p if accepted else x, g)
        if rho < RHO_LOW:
            lam *= group["factor"]
        elif rho > RHO_HIGH:
            lam = max(lam / group["factor"], MIN_DAMPING)
        state["damping"], state["rho"], state["accepted"] = lam, rho, accepted
        return loss
