r"""Quasi-Newton methods: BFGS (a dense inverse-Hessian approximation) and L-BFGS (the last m pairs only).

Both build a model of the inverse Hessian from what the iterates reveal. After a step
s_k = x_{k+1} − x_k the gradient changed by y_k = g_{k+1} − g_k, and the new approximation
H_{k+1} is required to satisfy the **secant condition** H_{k+1} y_k = s_k (on a quadratic,
∇²f s = y exactly). BFGS picks the H_{k+1} closest to H_k among those:

.. math::
    H_{k+1} = (I - \rho_k s_k y_k^\top)\, H_k\, (I - \rho_k y_k s_k^\top) + \rho_k s_k s_k^\top,
    \qquad \rho_k = \frac{1}{y_k^\top s_k},

which stays positive definite as long as y_kᵀs_k > 0, the curvature condition a strong-Wolfe
line search guarantees (:mod:`optlib.linesearch`). Each iteration then steps along
d_k = −H_k g_k:

.. math::
    x_{k+1} = x_k + \alpha_k d_k, \qquad \alpha_k \text{ from the line search.}

:class:`BFGS` stores H (d × d, for small problems); :class:`LBFGS` never forms it and computes
H_k g_k from the last m pairs with :func:`two_loop`, in O(md) time and memory.

Both follow ``torch.optim.LBFGS``'s conventions: ``step(closure)`` runs up to ``max_iter``
iterations, the closure re-evaluates the loss and calls ``backward``, and each ``step`` call
evaluates the closure once at its start (so ``max_iter=1`` costs one extra evaluation per
iteration). The state of the first parameter counts ``func_evals`` and ``n_iter`` over all
calls and keeps the curvature pairs between calls. They work in the parameters' dtype (float64
or float32). A NaN or infinite loss (or gradient) at the start of an iteration raises
:class:`~optlib.stability.NonFiniteLossError`; a NaN at a trial step of the line search only
counts as "too long".
"""
from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

from optlib import _validate
from optlib.linesearch import strong_wolfe
from optlib.optim._flat import assign, flat_grad, flatten
from optlib.stability import NonFiniteLossError

__all__ = ["BFGS", "LBFGS", "LINE_SEARCHES", "bfgs_update", "curvature_ok", "two_loop"]

#: The ``line_search`` of :class:`BFGS` and :class:`LBFGS`: strong Wolfe
#: (:func:`optlib.linesearch.strong_wolfe`), or None for a fixed step α = ``lr``.
LINE_SEARCHES = ("strong_wolfe", None)

#: At most this many evaluations per line search (``torch.optim.LBFGS``'s ``max_ls``).
MAX_LINE_SEARCH_EVALUATIONS = 25


def two_loop(grad: torch.Tensor, s_list, y_list, gamma: float | None = None) -> torch.Tensor:
    r"""H g for the L-BFGS inverse Hessian H built from the pairs (sᵢ, yᵢ), oldest first (N&W Alg. 7.4).

    H is what the BFGS update makes of H⁰ = γI with the pairs applied in order; the two loops apply
    it to g without forming it:

    .. math::
        &q \leftarrow g; \quad \text{for } i = k-1, \dots, k-m:\ \
            a_i = \rho_i s_i^\top q,\ \ q \leftarrow q - a_i y_i \\
        &r \leftarrow \gamma q; \quad \text{for } i = k-m, \dots, k-1:\ \
            b = \rho_i y_i^\top r,\ \ r \leftarrow r + (a_i - b)\, s_i

    with ρᵢ = 1/(yᵢᵀsᵢ). ``gamma`` defaults to s_{k−1}ᵀy_{k−1} / y_{k−1}ᵀy_{k−1} (N&W eq. 7.20), the
    newest pair's estimate of the inverse curvature, and to 1 with no pairs (then H g = g).
    The search direction is −H g.
    """
    if len(s_list) != len(y_list):
        raise ValueError(f"s_list and y_list must have the same length, got {len(s_list)} and {len(y_list)}")
    if gamma is None:
        gamma = float(s_list[-1] @ y_list[-1] / (y_list[-1] @ y_list[-1])) if s_list else 1.0
    rhos = [1.0 / (y @ s) for s, y in zip(s_list, y_list)]
    q = grad.clone()
    alphas = []
    for s, y, rho in zip(reversed(s_list), reversed(y_list), reversed(rhos)):
        a = rho * (s @ q)
        q = q - a * y
        alphas.append(a)
    r = gamma * q
    for s, y, rho, a in zip(s_list, y_list, rhos, reversed(alphas)):
        b = rho * (y @ r)
        r = r + (a - b) * s
    return r


def bfgs_update(H: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The BFGS update of the inverse Hessian, H⁺ = (I − ρsyᵀ) H (I − ρysᵀ) + ρssᵀ with ρ = 1/(yᵀs).

    Multiplied out (O(d²) instead of two d × d products), with u = Hy:

    .. math::
        H^+ = H - \rho\,(u s^\top + s u^\top) + (\rho + \rho^2\, y^\top u)\, s s^\top,

    and H⁺y = s (the secant condition). Needs yᵀs > 0 (see :func:`curvature_ok`).
    """
    rho = 1.0 / (y @ s)
    u = H @ y
    return H - rho * (torch.outer(u, s) + torch.outer(s, u)) + (rho + rho**2 * (y @ u)) * torch.outer(s, s)


def curvature_ok(s: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether the pair may enter an update: sᵀy > ε‖s‖‖y‖ (ε the dtype's machine epsilon).

    A pair with sᵀy ≤ 0 (possible without a Wolfe line search) would make H indefinite, and
    one with sᵀy ≈ 0 would blow it up, so the quasi-Newton methods skip it and keep H as it is.
    """
    eps = torch.finfo(s.dtype).eps
    return bool(s @ y > eps * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(y))


class _QuasiNewton(Optimizer):
    """The loop BFGS and L-BFGS share: direction −Hg, line search, curvature pair, stopping tests."""

    def __init__(self, params, lr, max_iter, max_eval, tolerance_grad, tolerance_change, line_search, c1, c2,
                 **extra):
        _validate.positive("lr", lr)
        _validate.positive_int("max_iter", max_iter)
        max_eval = max_iter * 5 // 4 if max_eval is None else _validate.positive_int("max_eval", max_eval)
        _validate.at_least("tolerance_grad", tolerance_grad, 0.0)
        _validate.at_least("tolerance_change", tolerance_change, 0.0)
        if line_search not in LINE_SEARCHES:  # (_validate.one_of sorts the choices, and None is not a str)
            raise ValueError(f"line_search must be one of {list(LINE_SEARCHES)}, got {line_search!r}")
        _validate.in_range("c1", c1, 0.0, 1.0)
        _validate.in_range("c2", c2, 0.0, 1.0)
        if not 0 < c1 < c2:
            raise ValueError(f"the Wolfe constants need 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, line_search=line_search, c1=c1, c2=c2,
                                      **extra))
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__} couples all parameters: use a single param group")
        self._params = self.param_groups[0]["params"]

    # --- what the two methods do differently
    def _init_state(self, state: dict, numel: int, like: torch.Tensor) -> None:
        raise NotImplementedError

    def _has_curvature(self, state: dict) -> bool:
        raise NotImplementedError

    def _direction(self, grad: torch.Tensor, state: dict) -> torch.Tensor:
        raise NotImplementedError

    def _update(self, s: torch.Tensor, y: torch.Tensor, state: dict) -> None:
        raise NotImplementedError

    def _evaluate(self, closure) -> tuple[float, torch.Tensor]:
        with torch.enable_grad():
            loss = closure()
        return float(loss), flat_grad(self._params)

    @torch.no_grad()
    def step(self, closure=None):
        """Up to ``max_iter`` iterations; ``closure`` re-evaluates the loss and calls ``backward``.

        Returns the loss at the point the call started from. Stops early when max|g| ≤
        ``tolerance_grad``, after ``max_eval`` evaluations (this call's), when the step or the
        change of the loss falls below ``tolerance_change``, or when the line search finds no
        decrease. Afterwards each parameter's ``.grad`` is the gradient at the final point.
        """
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure that re-evaluates the loss and calls "
                             "backward")
        group = self.param_groups[0]
        state = self.state[self._params[0]]
        if not state:
            state.update(func_evals=0, n_iter=0, stop_reason=None)
            self._init_state(state, sum(p.numel() for p in self._params), self._params[0])
        with torch.enable_grad():
            orig_loss = closure()
        loss, g = float(orig_loss), flat_grad(self._params)
        evals = 1
        for _ in range(group["max_iter"]):
            if not (math.isfinite(loss) and bool(torch.isfinite(g).all())):
                state["func_evals"] += evals
                raise NonFiniteLossError(f"{type(self).__name__}: the loss is {loss} (gradient finite: "
                                         f"{bool(torch.isfinite(g).all())}) at iteration {state['n_iter']}; "
                                         "start from a point where loss and gradient are finite")
            if g.abs().max() <= group["tolerance_grad"]:
                state["stop_reason"] = "tolerance_grad"
                break
            d = self._direction(g, state)
            gtd = float(g @ d)
            if not gtd < 0:  # rounding made -Hg point uphill: forget the curvature and use -g
                self._init_state(state, g.numel(), self._params[0])
                d = -g
                gtd = float(g @ d)
            alpha0 = group["lr"] if self._has_curvature(state) else min(1.0, 1.0 / float(g.abs().sum())) * group["lr"]
            x = flatten(self._params)
            tried = {}

            def phi(alpha):
                assign(self._params, x + alpha * d)
                f, grad = self._evaluate(closure)
                tried[alpha] = (f, grad)
                return f, float(grad @ d)

            if group["line_search"] == "strong_wolfe":
                d_max = float(d.abs().max())
                result = strong_wolfe(phi, loss, gtd, alpha=alpha0, c1=group["c1"], c2=group["c2"],
                                      max_evaluations=MAX_LINE_SEARCH_EVALUATIONS,
                                      min_interval=group["tolerance_change"] / d_max)
                alpha, evals = result.alpha, evals + result.evaluations
            else:
                alpha = alpha0
                phi(alpha)
                evals += 1
            if alpha == 0.0:  # no step decreased the loss enough: stay at x
                assign(self._params, x, g)
                state["stop_reason"] = "line_search_failed"
                break
            new_loss, new_g = tried[alpha]
            s = alpha * d
            assign(self._params, x + s, new_g)
            self._update(s, new_g - g, state)
            state["n_iter"] += 1
            loss_change = abs(new_loss - loss)
            loss, g = new_loss, new_g
            if g.abs().max() <= group["tolerance_grad"]:
                state["stop_reason"] = "tolerance_grad"
                break
            if evals >= group["max_eval"]:
                state["stop_reason"] = "max_eval"
                break
            if s.abs().max() <= group["tolerance_change"] or loss_change < group["tolerance_change"]:
                state["stop_reason"] = "tolerance_change"
                break
        else:
            state["stop_reason"] = "max_iter"
        state["func_evals"] += evals
        return orig_loss.detach() if isinstance(orig_loss, torch.Tensor) else orig_loss


class LBFGS(_QuasiNewton):
    r"""L-BFGS (Nocedal 1980; Liu & Nocedal 1989): BFGS from the last m curvature pairs, with a strong-Wolfe search.

    .. math::
        d_k = -H_k g_k, \qquad x_{k+1} = x_k + \alpha_k d_k, \qquad
        H^0_k = \gamma_k I, \quad \gamma_k = \frac{s_{k-1}^\top y_{k-1}}{y_{k-1}^\top y_{k-1}},

    where H_k g_k comes from :func:`two_loop` over the last m pairs (s_i, y_i), i = k − m, …, k − 1,
    applied to H⁰_k; α_k from :func:`optlib.linesearch.strong_wolfe` (c₁ = ``c1``, c₂ = ``c2``), first trial
    α = ``lr`` (and min(1, 1/‖g‖₁)·``lr`` before any pair exists, when d = −g has the gradient's
    scale); ``line_search=None`` takes the fixed step α = ``lr`` instead. Then s_k = α_k d_k,
    y_k = g_{k+1} − g_k join the history (m = ``history_size``; the oldest pair leaves) unless
    :func:`curvature_ok` rejects them. Memory O(md): the method of choice for smooth deterministic
    problems too big for a d × d matrix.

    The arguments and stopping rules are ``torch.optim.LBFGS``'s (``max_iter`` iterations per
    ``step`` call, ``max_eval`` = 5/4 ``max_iter`` evaluations by default, stop when max|g| ≤
    ``tolerance_grad``); the state of the first parameter holds ``func_evals``, ``n_iter``,
    ``stop_reason`` and the pairs ``s``, ``y``.
    """

    def __init__(self, params, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 10,
                 line_search: str | None = "strong_wolfe", c1: float = 1e-4, c2: float = 0.9):
        _validate.positive_int("history_size", history_size)
        super().__init__(params, lr, max_iter, max_eval, tolerance_grad, tolerance_change, line_search, c1, c2,
                         history_size=history_size)

    def _init_state(self, state, numel, like):
        state["s"], state["y"] = [], []

    def _has_curvature(self, state):
        return bool(state["s"])

    def _direction(self, grad, state):
        return -two_loop(grad, state["s"], state["y"])

    def _update(self, s, y, state):
        if not curvature_ok(s, y):
            return
        state["s"].append(s)
        state["y"].append(y)
        if len(state["s"]) > self.param_groups[0]["history_size"]:
            state["s"].pop(0)
            state["y"].pop(0)


class BFGS(_QuasiNewton):
    r"""BFGS (Broyden, Fletcher, Goldfarb, Shanno 1970) with a dense inverse Hessian H and a strong-Wolfe search.

    .. math::
        d_k = -H_k g_k,\qquad x_{k+1} = x_k + \alpha_k d_k,\qquad
        H_{k+1} = (I - \rho_k s_k y_k^\top) H_k (I - \rho_k y_k s_k^\top) + \rho_k s_k s_k^\top

    with s_k = α_k d_k, y_k = g_{k+1} − g_k, ρ_k = 1/(y_kᵀs_k) (:func:`bfgs_update`). H₀ = I; just
    before the first update it is rescaled to (y₀ᵀs₀ / y₀ᵀy₀) I (N&W eq. 6.20), so the first
    quasi-Newton step has the right length. A pair with y_kᵀs_k ≤ 0 (or nearly: :func:`curvature_ok`)
    is skipped: H_{k+1} = H_k, and ``skipped`` counts it. On a quadratic with exact line searches
    BFGS produces the conjugate-gradient iterates and ends in at most d steps with H = ∇²f⁻¹.
    The line search, its arguments and the stopping rules are :class:`LBFGS`'s. O(d²) memory:
    for small problems. The state of the first parameter holds ``func_evals``, ``n_iter``,
    ``stop_reason``, ``skipped`` and ``inverse_hessian``.
    """

    def __init__(self, params, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 line_search: str | None = "strong_wolfe", c1: float = 1e-4, c2: float = 0.9):
        super().__init__(params, lr, max_iter, max_eval, tolerance_grad, tolerance_change, line_search, c1, c2)

    def _init_state(self, state, numel, like):
        state["inverse_hessian"] = torch.eye(numel, dtype=like.dtype, device=like.device)
        state["updated"] = False
        state.setdefault("skipped", 0)

    def _has_curvature(self, state):
        return state["updated"]

    def _direction(self, grad, state):
        return -(state["inverse_hessian"] @ grad)

    def _update(self, s, y, state):
        if not curvature_ok(s, y):
            state["skipped"] += 1
            return
        H = state["inverse_hessian"]
        if not state["updated"]:
            H = (s @ y) / (y @ y) * H
        state["inverse_hessian"] = bfgs_update(H, s, y)
        state["updated"] = True
