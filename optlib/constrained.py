r"""Constrained optimization: the Lagrangian, the KKT conditions, and three ways to handle constraints.

A problem is

.. math::
    \min_x f(x) \quad \text{s.t.} \quad h(x) = 0 \ (m \text{ equalities}), \qquad
    g(x) \le 0 \ (p \text{ inequalities}),

with the Lagrangian L(x, λ, μ) = f(x) + λᵀh(x) + μᵀg(x). A point x* with multipliers (λ*, μ*)
satisfies the **KKT conditions** when

- stationarity: ∇f(x*) + J_h(x*)ᵀλ* + J_g(x*)ᵀμ* = 0;
- primal feasibility: h(x*) = 0 and g(x*) ≤ 0;
- dual feasibility: μ* ≥ 0;
- complementary slackness: μ*_i g_i(x*) = 0 for every i.

:func:`kkt_check` measures each residual and names the ones that fail. The sign convention is
SciPy SLSQP's for inequalities (for min x² s.t. x ≥ 1, written g(x) = 1 − x ≤ 0, μ* = 2);
``trust-constr`` reports the opposite sign.

The **formulations** turn the constrained problem into losses a torch optimizer can minimize,
each with a dual update; they see only the values f, h and g, so the same object works for a
vector x and for the parameters of an ``nn.Module``:

- :class:`QuadraticPenalty`: f + (w/2)(‖h‖² + ‖max(g, 0)‖²), the weight w raised by ``update``;
  the minimizer misses the constraint by O(1/w) and the Hessian's condition number grows like w.
- :class:`AugmentedLagrangian` (the method of multipliers, Hestenes-Powell-Rockafellar): the
  Lagrangian plus the penalty; ``update`` moves the multipliers λ ← λ + ρh, μ ← max(0, μ + ρg),
  and a finite ρ suffices.
- :class:`PrimalDual`: gradient descent on x and ascent on (λ, μ) of L itself, the multipliers
  clamped at 0 and moved with their own step size η at every ``update``.

:func:`solve` runs any of them on a :class:`Problem` of a vector x (L-BFGS or gradient steps
on the primal), and :func:`estimate_multipliers` recovers multipliers from a point alone (e.g.
after projected gradient, :mod:`optlib.projections`). :func:`slsqp` is the reference: SciPy's
SLSQP on the same :class:`Problem`, its multipliers converted to the signs above.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
import torch

from optlib import _validate
from optlib.stability import NonFiniteLossError

__all__ = ["CONDITIONS", "AugmentedLagrangian", "Constraints", "DualPath", "Formulation", "KKTReport", "PrimalDual", "Problem", "QuadraticPenalty",
           "SlsqpResult", "SolveResult",
           "estimate_multipliers", "kkt_check", "lagrangian", "primal_dual_path", "slsqp", "solve"]

Fn = Callable[[torch.Tensor], torch.Tensor]
F64 = torch.float64
#: The four KKT conditions, in the order reports list them.
CONDITIONS = ("stationarity", "primal feasibility", "dual feasibility", "complementary slackness")


def _vector(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must return a torch tensor, got {type(value).__name__}")
    if value.ndim > 1:
        raise ValueError(f"{name} must return a scalar or a vector, got shape {tuple(value.shape)}")
    return value.reshape(-1)


@dataclass(frozen=True)
class Problem:
    """min ``objective(x)`` s.t. ``equalities(x) = 0`` and ``inequalities(x) ≤ 0`` (each a vector or None)."""

    objective: Fn
    equalities: Fn | None = None
    inequalities: Fn | None = None
    name: str = "problem"

    def __post_init__(self):
        for what in ("objective", "equalities", "inequalities"):
            fn = getattr(self, what)
            if fn is not None and not callable(fn):
                raise TypeError(f"{what} must be a function of x, got {type(fn).__name__}")
        if self.objective is None:
            raise TypeError("a problem needs an objective")

    def values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """f(x) (a scalar), h(x) and g(x) (vectors, empty when there are none); refuses NaN or inf."""
        f = self.objective(x)
        if not isinstance(f, torch.Tensor) or f.numel() != 1:
            raise ValueError(f"the objective must return a scalar tensor, got {getattr(f, 'shape', f)!r}")
        f = f.reshape(())
        empty = x.new_zeros(0)
        h = _vector("equalities", self.equalities(x)) if self.equalities is not None else empty
        g = _vector("inequalities", self.inequalities(x)) if self.inequalities is not None else empty
        for name, value in (("the objective", f), ("h(x)", h), ("g(x)", g)):
            if not torch.isfinite(value).all():
                raise NonFiniteLossError(f"{name} is not finite at x = {x.detach().tolist()}")
        return f, h, g


def _multipliers(name: str, value, count: int, like: torch.Tensor) -> torch.Tensor:
    if value is None:
        value = like.new_zeros(count)
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1)
    if value.numel() != count:
        raise ValueError(f"{name} has {value.numel()} entries for {count} constraint(s)")
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} has NaN or infinite entries")
    return value


def _largest(values: torch.Tensor) -> float:
    """The largest entry of ``values``, 0 for an empty tensor."""
    return float(values.max()) if values.numel() else 0.0


def _violation(h: torch.Tensor, g: torch.Tensor) -> float:
    """max(abs(h), max(g, 0)): how far (h, g) is from feasible."""
    return max(_largest(h.abs()), _largest(g.clamp(min=0)))


def lagrangian(problem: Problem, x: torch.Tensor, eq_multipliers=None, ineq_multipliers=None) -> torch.Tensor:
    """L(x, λ, μ) = f(x) + λᵀh(x) + μᵀg(x), differentiable in x (missing multipliers count as 0)."""
    f, h, g = problem.values(x)
    lam = _multipliers("eq_multipliers", eq_multipliers, len(h), f)
    mu = _multipliers("ineq_multipliers", ineq_multipliers, len(g), f)
    return f + lam @ h + mu @ g


def _jacobians(problem: Problem, x: torch.Tensor):
    """f, h, g at x and ∇f, J_h, J_g (rows are the constraints' gradients), all detached."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        f, h, g = problem.values(x)
        grad_f = torch.autograd.grad(f, x, allow_unused=True)[0]
        rows = [torch.autograd.grad(c, x, retain_graph=True, allow_unused=True)[0] for c in (*h, *g)]
    zero = torch.zeros_like(x)
    grad_f = zero if grad_f is None else grad_f
    rows = [zero if r is None else r for r in rows]
    jac = torch.stack([r.reshape(-1) for r in rows]) if rows else x.new_zeros(0, x.numel())
    return f.detach(), h.detach(), g.detach(), grad_f.reshape(-1), jac[:len(h)], jac[len(h):]


def estimate_multipliers(problem: Problem, x: torch.Tensor, active_tol: float = 1e-6) -> tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
    """The multipliers that best satisfy stationarity at x, by least squares.

    Equalities all take part; an inequality takes part when it is active (g_i(x) ≥ −``active_tol``),
    the others get μ_i = 0. The multipliers are not clamped: a negative μ_i says x is not a KKT
    point (the constraint pushes the wrong way), which :func:`kkt_check` reports.
    """
    _validate.at_least("active_tol", active_tol, 0.0)
    _, h, g, grad_f, jac_h, jac_g = _jacobians(problem, x)
    active = g >= -active_tol
    columns = torch.cat([jac_h, jac_g[active]]).T
    mu = torch.zeros_like(g)
    if columns.shape[1] == 0:
        return h.new_zeros(0), mu
    solution = torch.linalg.lstsq(columns, -grad_f.unsqueeze(1), driver="gelsd").solution.reshape(-1)
    mu[active] = solution[len(h):]
    return solution[:len(h)], mu


@dataclass
class KKTReport:
    """The residual of each KKT condition at a point (infinity norms), and which exceed ``tol``."""

    residuals: dict[str, float]
    tol: float
    eq_multipliers: torch.Tensor
    ineq_multipliers: torch.Tensor

    @property
    def violated(self) -> list[str]:
        """The names of the conditions whose residual exceeds ``tol``, in the order of :data:`CONDITIONS`."""
        return [name for name in CONDITIONS if not self.residuals[name] <= self.tol]

    @property
    def satisfied(self) -> bool:
        """Whether every residual is at most ``tol``."""
        return not self.violated

    def __str__(self) -> str:
        lines = [f"{name:>24}  {self.residuals[name]:.1e}  {'ok' if self.residuals[name] <= self.tol else 'VIOLATED'}"
                 for name in CONDITIONS]
        return "\n".join(lines)


def kkt_check(problem: Problem, x: torch.Tensor, eq_multipliers=None, ineq_multipliers=None, *,
              tol: float = 1e-6) -> KKTReport:
    """Each KKT condition's residual at (x, λ, μ), with the failing ones named (``report.violated``).

    Without multipliers, :func:`estimate_multipliers` supplies them. Residuals: stationarity
    ‖∇ₓL‖∞; primal feasibility max(abs(h), max(g, 0)); dual feasibility max(−μ, 0);
    complementary slackness max abs(μ_i g_i).
    """
    tol = _validate.positive("tol", tol)
    _, h, g, grad_f, jac_h, jac_g = _jacobians(problem, x)
    if eq_multipliers is None and ineq_multipliers is None:
        lam, mu = estimate_multipliers(problem, x, active_tol=tol)
    else:
        lam = _multipliers("eq_multipliers", eq_multipliers, len(h), grad_f)
        mu = _multipliers("ineq_multipliers", ineq_multipliers, len(g), grad_f)

    residuals = {
        "stationarity": _largest((grad_f + jac_h.T @ lam + jac_g.T @ mu).abs()),
        "primal feasibility": _violation(h, g),
        "dual feasibility": _largest((-mu).clamp(min=0)),
        "complementary slackness": _largest((mu * g).abs()),
    }
    return KKTReport(residuals, tol, lam, mu)


# ---------------------------------------------------------------------------------------------
# the reference solver


class SlsqpResult(tuple):
    """``(x, eq_multipliers, ineq_multipliers)`` in optlib's signs, with SciPy's ``result`` attached."""

    result: object

    def __new__(cls, x, lam, mu, result):
        self = super().__new__(cls, (x, lam, mu))
        self.result = result
        return self


def slsqp(problem: Problem, x0, *, ftol: float = 1e-10, maxiter: int = 500, tol: float = 1e-6) -> SlsqpResult:
    """SciPy's SLSQP on ``problem`` from ``x0``: ``x, lam, mu = slsqp(problem, x0)`` (float64 tensors).

    The objective's gradient and the constraints' Jacobians come from autograd, not finite differences.

    SLSQP wants inequalities as c(x) ≥ 0, so it is given −g; its Lagrangian is f − λᵀh − μᵀc,
    so its equality multipliers are the negatives of optlib's (L = f + λᵀh + μᵀg) and its
    inequality multipliers equal optlib's. ``.result`` holds SciPy's ``OptimizeResult``. SciPy
    reports the multipliers from version 1.15 on; with an older SciPy they are computed from
    stationarity at SLSQP's point (:func:`estimate_multipliers`), which agrees with them to the
    accuracy of that point.

    SLSQP sometimes stops with "Positive directional derivative for linesearch" when it cannot
    improve a point that already solves the problem to far better than ``ftol`` allows; such a
    result is accepted when every KKT residual (with SLSQP's multipliers) is at most ``tol``.
    Any other failure raises ``RuntimeError``.
    """
    from scipy.optimize import minimize

    x0 = torch.as_tensor(x0, dtype=F64).reshape(-1)

    def numpy_fn(fn, sign=1.0):
        return lambda v: sign * fn(torch.tensor(v, dtype=F64)).detach().reshape(-1).numpy()

    # exact derivatives (finite differences would cap the accuracy near 1e-8), copied into fresh arrays:
    # autograd may return expanded views (the gradient of a sum has stride 0)
    def numpy_jacobian(fn, sign=1.0):
        return lambda v: sign * np.array(torch.autograd.functional.jacobian(
            lambda x: fn(x).reshape(-1), torch.tensor(v, dtype=F64)).numpy(), dtype=np.float64)

    def objective_and_gradient(v):
        x = torch.tensor(v, dtype=F64, requires_grad=True)
        f = problem.objective(x)
        gradient = torch.autograd.grad(f, x, allow_unused=True)[0] if f.requires_grad else None
        gradient = np.zeros_like(v) if gradient is None else np.array(gradient.numpy(), dtype=np.float64)
        return float(f.detach()), gradient

    constraints = []
    m = 0
    if problem.equalities is not None:
        constraints.append(dict(type="eq", fun=numpy_fn(problem.equalities), jac=numpy_jacobian(problem.equalities)))
        m = len(problem.values(x0)[1])
    if problem.inequalities is not None:
        constraints.append(dict(type="ineq", fun=numpy_fn(problem.inequalities, -1.0),
                                jac=numpy_jacobian(problem.inequalities, -1.0)))
    result = minimize(objective_and_gradient, x0.numpy(), jac=True, method="SLSQP", constraints=constraints,
                      options=dict(ftol=ftol, maxiter=maxiter))
    x = torch.tensor(result.x, dtype=F64)
    if getattr(result, "multipliers", None) is not None:
        multipliers = torch.tensor(np.asarray(result.multipliers, dtype=np.float64).reshape(-1), dtype=F64)
        lam, mu = -multipliers[:m], multipliers[m:]
    else:  # SciPy < 1.15 (Colab's in 2026) does not report them: stationarity at SLSQP's point gives them
        lam, mu = estimate_multipliers(problem, x, active_tol=tol)
    if not result.success and not kkt_check(problem, x, lam, mu, tol=tol).satisfied:
        raise RuntimeError(f"SLSQP failed on {problem.name}: {result.message}")
    return SlsqpResult(x, lam, mu, result)


# ---------------------------------------------------------------------------------------------
# formulations: a loss for the primal optimizer and an update of the multipliers (or weight)


class Formulation:
    """The base of the formulations: holds the multipliers, created on the first ``loss`` call from the shapes of
    h and g. Subclasses define ``loss(f, eq, ineq)`` and ``update(eq, ineq)``.
    """

    def __init__(self):
        self.eq_multipliers: torch.Tensor | None = None
        self.ineq_multipliers: torch.Tensor | None = None
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def _values(self, f, eq, ineq) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not isinstance(f, torch.Tensor) or f.numel() != 1:
            raise ValueError(f"the objective must be a scalar tensor, got {getattr(f, 'shape', f)!r}")
        f = f.reshape(())
        h = f.new_zeros(0) if eq is None else _vector("the equality constraints", eq)
        g = f.new_zeros(0) if ineq is None else _vector("the inequality constraints", ineq)
        for name, value in (("the objective", f), ("h", h), ("g", g)):
            if not torch.isfinite(value).all():
                raise NonFiniteLossError(f"{name} is not finite ({value.detach().tolist()})")
        if self.eq_multipliers is None:
            self.eq_multipliers = h.detach().new_zeros(len(h))
            self.ineq_multipliers = g.detach().new_zeros(len(g))
        if (len(h), len(g)) != (len(self.eq_multipliers), len(self.ineq_multipliers)):
            raise ValueError(f"{len(h)} equalities and {len(g)} inequalities given, but the multipliers were "
                             f"made for {len(self.eq_multipliers)} and {len(self.ineq_multipliers)}")
        self._last = (h.detach(), g.detach())
        return f, h, g

    def _seen(self, eq, ineq) -> tuple[torch.Tensor, torch.Tensor]:
        if eq is None and ineq is None:
            if self._last is None:
                raise RuntimeError("update() before any loss(): call loss(f, eq, ineq) first")
            return self._last
        _, h, g = self._values(torch.zeros(()), eq, ineq)
        return h.detach(), g.detach()

    def multipliers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current (λ, μ) estimates (copies)."""
        if self.eq_multipliers is None:
            raise RuntimeError("no multipliers yet: call loss(f, eq, ineq) first")
        return self.eq_multipliers.clone(), self.ineq_multipliers.clone()


class QuadraticPenalty(Formulation):
    """f + (w/2)(‖h‖² + ‖max(g, 0)‖²); ``update()`` multiplies w by ``growth`` (up to ``max_weight``).

    Its minimizer for a fixed w violates an active constraint by about λ*/w; w h and
    w max(g, 0) there estimate the multipliers (what :meth:`Formulation.multipliers` returns).
    """

    def __init__(self, weight: float = 1.0, growth: float = 10.0, max_weight: float = 1e12):
        super().__init__()
        self.weight = _validate.positive("weight", weight)
        self.growth = _validate.at_least("growth", growth, 1.0)
        self.max_weight = _validate.at_least("max_weight", max_weight, self.weight)

    def loss(self, f, eq=None, ineq=None) -> torch.Tensor:
        """The penalized loss of objective value ``f`` and constraint values ``eq`` = h, ``ineq`` = g."""
        f, h, g = self._values(f, eq, ineq)
        penalty = (h ** 2).sum() + (g.clamp(min=0) ** 2).sum()
        self.eq_multipliers = self.weight * h.detach()
        self.ineq_multipliers = self.weight * g.detach().clamp(min=0)
        return f + 0.5 * self.weight * penalty

    def update(self, eq=None, ineq=None) -> None:
        """Raise the weight (the constraint values, default those of the last ``loss``, are only checked)."""
        self._seen(eq, ineq)
        self.weight = min(self.weight * self.growth, self.max_weight)


class AugmentedLagrangian(Formulation):
    r"""The method of multipliers: minimize L_ρ, then λ ← λ + ρh, μ ← max(0, μ + ρg).

    .. math::
        L_\rho(x) = f + \lambda^\top h + \tfrac\rho2 \lVert h\rVert^2
        + \tfrac1{2\rho} \textstyle\sum_i \big(\max(0, \mu_i + \rho g_i)^2 - \mu_i^2\big),

    whose gradient in x is that of the Lagrangian at the updated multipliers; the last term is
    the Rockafellar form for inequalities (no slack variables). ``growth`` > 1 raises ρ at each
    update while the infeasibility has not fallen below ``shrink`` times its previous value.
    """

    def __init__(self, penalty: float = 10.0, growth: float = 1.0, shrink: float = 0.25,
                 max_penalty: float = 1e8):
        super().__init__()
        self.penalty = _validate.positive("penalty", penalty)
        self.growth = _validate.at_least("growth", growth, 1.0)
        self.shrink = _validate.in_range("shrink", shrink, 0.0, 1.0, high_inclusive=True)
        self.max_penalty = _validate.at_least("max_penalty", max_penalty, self.penalty)
        self._infeasibility = math.inf

    def loss(self, f, eq=None, ineq=None) -> torch.Tensor:
        """L_ρ of objective value ``f`` and constraint values ``eq`` = h, ``ineq`` = g at the current multipliers."""
        f, h, g = self._values(f, eq, ineq)
        rho, lam, mu = self.penalty, self.eq_multipliers, self.ineq_multipliers
        shifted = (mu + rho * g).clamp(min=0)
        return f + lam @ h + 0.5 * rho * (h ** 2).sum() + ((shifted ** 2).sum() - (mu ** 2).sum()) / (2 * rho)

    def update(self, eq=None, ineq=None) -> None:
        """The multiplier step with the given constraint values (default: those of the last ``loss``)."""
        h, g = self._seen(eq, ineq)
        rho = self.penalty
        self.eq_multipliers = self.eq_multipliers + rho * h
        self.ineq_multipliers = (self.ineq_multipliers + rho * g).clamp(min=0)
        infeasibility = _violation(h, g)
        if infeasibility > self.shrink * self._infeasibility:
            self.penalty = min(self.penalty * self.growth, self.max_penalty)
        self._infeasibility = infeasibility


class PrimalDual(Formulation):
    """Gradient descent-ascent on L: the loss is L(x, λ, μ); ``update()`` is λ ← λ + ηh, μ ← max(0, μ + ηg).

    η is ``dual_lr``; the primal step is whatever optimizer minimizes the loss. Called after
    every primal step this is the simultaneous scheme of constrained deep learning (Cooper's
    ``SimultaneousOptimizer``) when the loss was computed before the step, and the alternating one
    when ``update`` is given the constraint values at the new point.
    """

    def __init__(self, dual_lr: float = 0.1):
        super().__init__()
        self.dual_lr = _validate.positive("dual_lr", dual_lr)

    def loss(self, f, eq=None, ineq=None) -> torch.Tensor:
        """L(x, λ, μ) of objective value ``f`` and constraint values ``eq`` = h, ``ineq`` = g."""
        f, h, g = self._values(f, eq, ineq)
        return f + self.eq_multipliers @ h + self.ineq_multipliers @ g

    def update(self, eq=None, ineq=None) -> None:
        """The dual ascent step with the given constraint values (default: those of the last ``loss``)."""
        h, g = self._seen(eq, ineq)
        self.eq_multipliers = self.eq_multipliers + self.dual_lr * h
        self.ineq_multipliers = (self.ineq_multipliers + self.dual_lr * g).clamp(min=0)


@dataclass
class Constraints:
    """Constraints on a model for :func:`optlib.run.train`: ``run.train(..., constraints=Constraints(...))``.

    ``ineq(model)`` returns g ≤ 0 and ``eq(model)`` returns h = 0 (vectors; either may be None),
    computed from whatever data they close over (e.g. the whole training set and its sensitive
    attribute). At every step the optimizer minimizes ``formulation.loss(loss, h, g)`` in place of
    the loss, and after every ``update_every`` steps ``formulation.update()`` moves the
    multipliers (or the penalty weight) with the constraint values of that step.
    """

    formulation: "Formulation"
    ineq: Callable | None = None
    eq: Callable | None = None
    update_every: int = 1

    def __post_init__(self):
        if not isinstance(self.formulation, Formulation):
            raise TypeError("formulation must be QuadraticPenalty, AugmentedLagrangian or PrimalDual, "
                            f"got {type(self.formulation).__name__}")
        if self.ineq is None and self.eq is None:
            raise ValueError("give ineq, eq or both")
        for name in ("ineq", "eq"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise TypeError(f"{name} must be a function of the model")
        _validate.positive_int("update_every", self.update_every)

    def loss(self, loss: torch.Tensor, model) -> torch.Tensor:
        """The formulation's loss for the model's ``loss`` and its constraint values now."""
        eq = self.eq(model) if self.eq is not None else None
        ineq = self.ineq(model) if self.ineq is not None else None
        return self.formulation.loss(loss, eq, ineq)

    def violation(self) -> float:
        """max(abs(h), max(g, 0)) at the last evaluation."""
        h, g = self.formulation._seen(None, None)
        return _violation(h, g)


# ---------------------------------------------------------------------------------------------
# the driver for a problem of a vector x


@dataclass
class SolveResult:
    """Where :func:`solve` ended, its multipliers, its KKT report and one row per outer step."""

    x: torch.Tensor
    eq_multipliers: torch.Tensor
    ineq_multipliers: torch.Tensor
    kkt: KKTReport
    outer_steps: int
    history: list[dict] = field(default_factory=list)


def _primal_steps(problem, formulation, x, inner, steps, lr, tol):
    """Minimize the formulation's loss over x from x: ``steps`` L-BFGS iterations or gradient steps."""
    from optlib.optim.quasi_newton import LBFGS

    x = x.detach().clone().requires_grad_(True)
    if inner == "lbfgs":
        opt = LBFGS([x], max_iter=steps, tolerance_grad=tol, tolerance_change=0.0, history_size=20)

        def closure():
            opt.zero_grad()
            loss = formulation.loss(*problem.values(x))
            loss.backward()
            return loss

        opt.step(closure)
        formulation.loss(*problem.values(x.detach()))  # the constraint values at the final point
    else:
        opt = torch.optim.SGD([x], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            formulation.loss(*problem.values(x)).backward()
            opt.step()
        with torch.no_grad():
            formulation.loss(*problem.values(x))
    return x.detach()


def solve(problem: Problem, formulation: Formulation, x0: torch.Tensor, *, outer_steps: int = 50,
          inner: str = "lbfgs", inner_steps: int = 200, lr: float = 0.1, tol: float = 1e-8) -> SolveResult:
    """Alternate a primal minimization of ``formulation.loss`` with ``formulation.update()``.

    ``inner="lbfgs"`` minimizes to max|∇| ≤ ``tol`` (at most ``inner_steps`` iterations): the
    penalty and augmented-Lagrangian methods. ``inner="gd"`` takes ``inner_steps`` gradient steps
    of length ``lr`` (``inner_steps=1`` with :class:`PrimalDual` is gradient descent-ascent).
    The multipliers are updated with the constraint values at the new point. Stops after
    ``outer_steps`` updates or as soon as every KKT residual is ≤ ``tol`` (checked with the
    formulation's multipliers).
    """
    if not isinstance(formulation, Formulation):
        raise TypeError(f"formulation must be QuadraticPenalty, AugmentedLagrangian or PrimalDual, "
                        f"got {type(formulation).__name__}")
    _validate.one_of("inner", inner, ("lbfgs", "gd"))
    _validate.positive_int("outer_steps", outer_steps)
    _validate.positive_int("inner_steps", inner_steps)
    _validate.positive("lr", lr)
    _validate.positive("tol", tol)
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim != 1:
        raise ValueError("x0 must be a 1-D floating-point tensor")
    x, history = x0.detach().clone(), []
    report = None
    for outer in range(1, outer_steps + 1):
        x = _primal_steps(problem, formulation, x, inner, inner_steps, lr, tol)
        formulation.update()
        lam, mu = formulation.multipliers()
        report = kkt_check(problem, x, lam, mu, tol=tol)
        f = float(problem.values(x)[0])
        history.append(dict(outer=outer, objective=f, **report.residuals))
        if report.satisfied:
            break
    lam, mu = formulation.multipliers()
    return SolveResult(x, lam, mu, report, len(history), history)


# ---------------------------------------------------------------------------------------------
# primal-dual descent-ascent step by step, for a problem of a vector x


class DualPath(NamedTuple):
    """What :func:`primal_dual_path` returns: the iterates, the multipliers and the violations.

    ``path`` has shape (k + 1, d): x_0 … x_k; ``multipliers`` (k, m + p): (λ, μ) after each of the
    k updates; ``violations`` (k,): max(abs(h), max(g, 0)) at x_0 … x_{k-1}, where each update read
    the constraints. ``stopped`` says why the run ended early (a non-finite value), else None.
    """

    path: torch.Tensor
    multipliers: torch.Tensor
    violations: torch.Tensor
    stopped: str | None = None


def primal_dual_path(problem: Problem, x0, *, lr: float, dual_lr: float, steps: int) -> DualPath:
    r"""Simultaneous gradient descent-ascent on the Lagrangian of ``problem`` from ``x0``, multipliers from 0.

    Each step computes L(x_k, λ_k, μ_k) = f + λᵀh + μᵀg at x_k, takes x_{k+1} = x_k − α∇ₓL (α = ``lr``)
    and moves the multipliers with the constraint values at x_k: λ ← λ + ηh, μ ← max(0, μ + ηg)
    (η = ``dual_lr``): :class:`PrimalDual` driven by plain gradient steps, which is
    what ``run.train(..., constraints=Constraints(PrimalDual(η), ...))`` does with SGD. A run that
    reaches a non-finite value stops there (``stopped`` says so).
    """
    _validate.positive("lr", lr)
    _validate.positive_int("steps", steps)
    formulation = PrimalDual(dual_lr=dual_lr)
    x = torch.as_tensor(x0, dtype=F64).detach().clone().reshape(-1).requires_grad_(True)
    optimizer = torch.optim.SGD([x], lr=lr)
    path, multipliers, violations, stopped = [x.detach().clone()], [], [], None
    for _ in range(steps):
        optimizer.zero_grad()
        try:
            f, h, g = problem.values(x)
        except NonFiniteLossError:
            stopped = f"non-finite values after {len(multipliers)} steps"
            break
        formulation.loss(f, h, g).backward()
        optimizer.step()
        formulation.update()
        h, g = h.detach(), g.detach()
        violations.append(_violation(h, g))
        multipliers.append(torch.cat(formulation.multipliers()))
        path.append(x.detach().clone())
        if not torch.isfinite(path[-1]).all():
            stopped = f"non-finite iterate after {len(multipliers)} steps"
            break
    width = len(multipliers[0]) if multipliers else 0
    return DualPath(torch.stack(path), torch.stack(multipliers) if multipliers else torch.zeros(0, width, dtype=F64),
                    torch.tensor(violations, dtype=F64), stopped)
