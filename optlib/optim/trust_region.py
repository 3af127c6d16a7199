r"""Trust-region Newton with truncated conjugate gradients (Steihaug-Toint), the method of TRON and
SciPy's ``trust-ncg``.

At x_t the method trusts the quadratic model

.. math::
    m_t(p) = f(x_t) + g_t^\top p + \tfrac12\, p^\top H_t p, \qquad g_t = \nabla f(x_t),\ H_t = \nabla^2 f(x_t),

only inside a ball ‖p‖ ≤ Δ_t. :func:`steihaug_cg` minimizes the model approximately in that ball with
conjugate gradients, touching H only through Hessian-vector products, and :class:`TrustRegion`
tests the step against the function: the ratio of actual to predicted reduction decides whether
the step is taken and how the radius changes.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch.optim import Optimizer

from optlib import _validate
from optlib.optim._flat import set_grads, split
from optlib.stability import NonFiniteLossError

__all__ = ["STOP_REASONS", "SHRINK", "GROW", "RHO_LOW", "RHO_HIGH", "SteihaugResult", "steihaug_cg", "update_radius",
           "TrustRegion"]

#: Why :func:`steihaug_cg` stopped: the residual fell below ``tol`` inside the region (an
#: approximate Newton step), the step reached the boundary, a direction of non-positive
#: curvature was found (the step then goes to the boundary along it), or ``max_iter`` ran out.
STOP_REASONS = ("tolerance", "boundary", "negative_curvature", "max_iter")

#: The radius update of :class:`TrustRegion` (:func:`update_radius`): the factor by which the radius
#: shrinks when ρ < ``RHO_LOW`` ...
SHRINK = 0.25
#: ... the factor by which it grows (up to ``max_radius``) when ρ > ``RHO_HIGH`` and the step reached
#: the boundary ...
GROW = 2.0
#: ... the ratio below which the model is judged poor ...
RHO_LOW = 0.25
#: ... and the ratio above which it is judged good.
RHO_HIGH = 0.75


class SteihaugResult(NamedTuple):
    """What :func:`steihaug_cg` returns: the step, why CG stopped, and what it cost."""

    #: the step p (‖p‖ ≤ radius, up to rounding)
    step: torch.Tensor
    #: one of :data:`STOP_REASONS`
    reason: str
    #: the number of Hessian-vector products used (one per CG iteration)
    iterations: int
    #: m(0) − m(p) = −(gᵀp + ½ pᵀHp) ≥ 0, the decrease the quadratic model predicts
    predicted_reduction: float


def _to_boundary(z: torch.Tensor, d: torch.Tensor, radius: float) -> tuple[float, float]:
    """The two roots t_a ≤ t_b of ‖z + t d‖ = radius (z inside the ball, so t_a ≤ 0 ≤ t_b)."""
    a, b, c = torch.dot(d, d).item(), 2 * torch.dot(z, d).item(), torch.dot(z, z).item() - radius**2
    sqrt_disc = math.sqrt(max(b * b - 4 * a * c, 0.0))
    # the numerically stable pair of roots (no cancellation between -b and sqrt_disc)
    aux = b + math.copysign(sqrt_disc, b)
    if aux == 0.0:
        return -math.sqrt(-c / a), math.sqrt(-c / a)
    roots = sorted((-aux / (2 * a), -2 * c / aux))
    return roots[0], roots[1]


def steihaug_cg(grad: torch.Tensor, hvp: Callable[[torch.Tensor], torch.Tensor], radius: float,
                tol: float | None = None, max_iter: int | None = None) -> SteihaugResult:
    r"""Minimize m(p) = gᵀp + ½ pᵀHp over ‖p‖ ≤ radius by truncated CG (Steihaug 1983, Toint 1981).

    Conjugate gradients on Hp = −g from p₀ = 0, with residual r = Hp + g and directions d₀ = −g:

    .. math::
        \alpha_j = \frac{r_j^\top r_j}{d_j^\top H d_j},\quad p_{j+1} = p_j + \alpha_j d_j,\quad
        r_{j+1} = r_j + \alpha_j H d_j,\quad d_{j+1} = -r_{j+1} + \frac{r_{j+1}^\top r_{j+1}}{r_j^\top r_j}\, d_j,

    stopping as soon as

    - ``negative_curvature``: d_jᵀHd_j ≤ 0, the model is unbounded below along d_j; return the point
      p_j + τd_j on the boundary (of the two, the one with the lower model value);
    - ``boundary``: ‖p_{j+1}‖ ≥ radius; return p_j + τd_j with τ ≥ 0 and ‖p_j + τd_j‖ = radius;
    - ``tolerance``: ‖r_{j+1}‖ < ``tol``; return p_{j+1}, an approximate Newton step inside the region;
    - ``max_iter``: after ``max_iter`` products; return p_j.

    Since p₀ = 0 and the first direction is −g, the step always reduces the model at least as much as
    the Cauchy point (steepest descent within the region), and ‖p_j‖ grows monotonically, so the
    first exit through the boundary is the right one. ``tol`` defaults to SciPy's and TRON's forcing
    term min(0.5, √‖g‖)·‖g‖, which makes the outer iteration converge superlinearly; ``max_iter``
    defaults to the dimension (exact arithmetic would finish by then). ``hvp(v)`` returns Hv for a
    flat tensor v like ``grad``.
    """
    if not isinstance(grad, torch.Tensor) or grad.ndim != 1:
        raise ValueError(f"grad must be a 1-D tensor, got {getattr(grad, 'shape', type(grad))}")
    _validate.positive("radius", radius)
    g_norm = torch.linalg.vector_norm(grad).item()
    if not math.isfinite(g_norm):
        raise NonFiniteLossError(f"the gradient's norm is {g_norm}: cannot build the quadratic model")
    if tol is None:
        tol = min(0.5, math.sqrt(g_norm)) * g_norm
    else:
        _validate.at_least("tol", tol, 0.0)
    max_iter = len(grad) if max_iter is None else _validate.positive_int("max_iter", max_iter)

    z = torch.zeros_like(grad)
    Hz = torch.zeros_like(grad)  # H z, kept up to date so the model value needs no extra product

    def result(p, Hp, reason, iterations):
        model = torch.dot(grad, p) + 0.5 * torch.dot(p, Hp)
        return SteihaugResult(p, reason, iterations, -model.item())

    if g_norm == 0.0 or g_norm < tol:
        return result(z, Hz, "tolerance", 0)
    r = grad.clone()
    d = -r
    rr = torch.dot(r, r)
    for j in range(1, max_iter + 1):
        Hd = hvp(d)
        dHd = torch.dot(d, Hd)
        if dHd <= 0:
            ta, tb = _to_boundary(z, d, radius)
            candidates = [(z + t * d, Hz + t * Hd) for t in (ta, tb)]
            values = [torch.dot(grad, p) + 0.5 * torch.dot(p, Hp) for p, Hp in candidates]
            p, Hp = candidates[0] if values[0] < values[1] else candidates[1]
            return result(p, Hp, "negative_curvature", j)
        alpha = rr / dHd
        z_next = z + alpha * d
        if torch.linalg.vector_norm(z_next) >= radius:
            _, tb = _to_boundary(z, d, radius)
            return result(z + tb * d, Hz + tb * Hd, "boundary", j)
        Hz = Hz + alpha * Hd
        r = r + alpha * Hd
        rr_next = torch.dot(r, r)
        z = z_next
        if math.sqrt(rr_next.item()) < tol:
            return result(z, Hz, "tolerance", j)
        d = -r + (rr_next / rr) * d
        rr = rr_next
    return result(z, Hz, "max_iter", max_iter)


def update_radius(radius: float, rho: float, hit_boundary: bool, max_radius: float) -> float:
    """Δ/4 when ρ < 1/4 (the model was poor), min(2Δ, max_radius) when ρ > 3/4 and the step reached the
    boundary (the model was good and the region held the step back), Δ otherwise."""
    if rho < RHO_LOW:
        return SHRINK * radius
    if rho > RHO_HIGH and hit_boundary:
        return min(GROW * radius, max_radius)
    return radius


class TrustRegion(Optimizer):
    r"""Trust-region Newton-CG (Steihaug-Toint CG inside, as in TRON and SciPy's ``trust-ncg``).

    Each step, at x with gradient g, Hessian H (seen only through products Hv) and radius Δ:

    .. math::
        p &\approx \arg\min_{\|p\| \le \Delta}\; g^\top p + \tfrac12 p^\top H p
            \quad\text{(truncated CG)}, \\
        \rho &= \frac{f(x) - f(x + p)}{-(g^\top p + \tfrac12 p^\top H p)}
            = \frac{\text{actual reduction}}{\text{predicted reduction}}, \\
        x &\leftarrow x + p \ \text{ if } \rho > \eta, \qquad
        \Delta \leftarrow \begin{cases} \Delta/4 & \rho < 1/4 \\
            \min(2\Delta, \Delta_{\max}) & \rho > 3/4 \text{ and } \|p\| = \Delta \\
            \Delta & \text{otherwise.} \end{cases}

    (the truncated-CG step is :func:`steihaug_cg`'s), with Δ₀ = ``radius``, Δ_max = ``max_radius`` and
    η = ``eta`` (the acceptance threshold, in [0, 1/4)).
    A rejected step leaves x unchanged and only shrinks the region, so one ``step`` call is one
    iteration of the method in SciPy's sense (``nit`` counts rejected trials too). A trial point
    whose loss is NaN or infinite counts as ρ = −∞: rejected, and the region shrinks.

    ``cg_tol`` (``None``: min(0.5, √‖g‖)·‖g‖) and ``cg_max_iter`` (``None``: the dimension) are passed
    to :func:`steihaug_cg`. The Hessian-vector products come from double backpropagation, so
    ``step`` needs a closure that returns the loss **without** calling ``backward`` (as
    :class:`~optlib.optim.newton.Newton`; ``closure_calls_backward = False``); the closure is called
    once at x (with gradients enabled) and once at the trial point (under ``torch.no_grad``).
    A NaN or infinite loss at x raises :class:`~optlib.stability.NonFiniteLossError`.

    The state of the first parameter holds the method's scalars: ``radius`` (for the next step),
    ``rho`` and ``accepted`` (of the last step; ρ is NaN when g = 0 and no step was tried),
    ``step`` (iterations), ``evaluations`` (closure calls), ``hvps`` (Hessian-vector products),
    ``cg_reason`` and ``cg_iterations``. After a step each parameter's ``.grad`` holds the
    gradient at the point the step started from.
    """

    closure_calls_backward = False

    def __init__(self, params, radius: float = 1.0, max_radius: float = 1000.0, eta: float = 0.15,
                 cg_tol: float | None = None, cg_max_iter: int | None = None):
        _validate.positive("radius", radius)
        _validate.positive("max_radius", max_radius)
        if radius > max_radius:
            raise ValueError(f"radius must be <= max_radius, got radius={radius} > max_radius={max_radius}")
        _validate.in_range("eta", eta, 0.0, RHO_LOW)
        if cg_tol is not None:
            _validate.at_least("cg_tol", cg_tol, 0.0)
        if cg_max_iter is not None:
            _validate.positive_int("cg_max_iter", cg_max_iter)
        super().__init__(params, dict(radius=radius, max_radius=max_radius, eta=eta, cg_tol=cg_tol,
                                      cg_max_iter=cg_max_iter))

    def _global_state(self, params) -> dict:
        state = self.state[params[0]]
        if not state:
            state.update(radius=float(self.param_groups[0]["radius"]), rho=float("nan"), accepted=False, step=0,
                         evaluations=0, hvps=0, cg_reason=None, cg_iterations=0)
        return state

    def step(self, closure=None):
        """One trust-region iteration; ``closure`` is required and returns the loss WITHOUT calling ``backward``.

        Returns the loss at the point the step started from.
        """
        if closure is None:
            raise ValueError("TrustRegion.step needs a closure that returns the loss (without calling backward)")
        if len(self.param_groups) > 1:
            raise ValueError("TrustRegion couples all parameters through H: use a single param group")
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.requires_grad]
        state = self._global_state(params)
        with torch.enable_grad():
            loss = closure()
            state["evaluations"] += 1
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise ValueError(f"the closure must return a scalar tensor, got {getattr(loss, 'shape', loss)!r}")
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"loss became {loss.item()} at trust-region step {state['step']}: "
                                         "start from a point where the loss is finite")
            if not loss.requires_grad:
                raise ValueError("the closure's loss has no graph: return the loss without calling backward "
                                 "and without torch.no_grad()")
            grads = torch.autograd.grad(loss, params, create_graph=True)
        flat_grad = torch.cat([g.reshape(-1) for g in grads])

        def hvp(v: torch.Tensor) -> torch.Tensor:
            state["hvps"] += 1
            with torch.enable_grad():
                hv = torch.autograd.grad(flat_grad, params, grad_outputs=v, retain_graph=True)
            return torch.cat([h.reshape(-1) for h in hv]).detach()

        g = flat_grad.detach()
        radius = state["radius"]
        cg = steihaug_cg(g, hvp, radius, group["cg_tol"], group["cg_max_iter"])
        state["step"] += 1
        state["cg_reason"], state["cg_iterations"] = cg.reason, cg.iterations
        with torch.no_grad():
            if cg.predicted_reduction <= 0.0:  # g = 0 (or a model that cannot decrease): nothing to try
                state["rho"], state["accepted"] = float("nan"), False
                set_grads(params, g)
                return loss.detach()
            start = [p.detach().clone() for p in params]
            for p, dp in zip(params, split(cg.step, params)):
                p.add_(dp)
            trial = closure()
            state["evaluations"] += 1
            actual = loss.item() - float(trial)
            rho = actual / cg.predicted_reduction if math.isfinite(actual) else -math.inf
            hit_boundary = cg.reason in ("boundary", "negative_curvature")
            accepted = rho > group["eta"]
            if not accepted:  # back to x exactly (x + p − p may differ from x in the last bit)
                for p, x in zip(params, start):
                    p.copy_(x)
            set_grads(params, g)  # after the trial evaluation, whose closure may have zeroed them
        state["rho"], state["accepted"] = rho, accepted
        state["radius"] = update_radius(radius, rho, hit_boundary, group["max_radius"])
        return loss.detach()
