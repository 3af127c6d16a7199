r"""Convergence rates of gradient descent and momentum, their bounds, and the problems that show them.

On a quadratic f(x) = ½ (x − x*)ᵀ A (x − x*) with eigenvalues μ = λ_min, L = λ_max and condition
number κ = L/μ, every method of this module acts on each eigen-direction separately. Along an
eigenvector of curvature λ the error e_t obeys

* gradient descent:  e_{t+1} = (1 − αλ) e_t,
* heavy ball:        e_{t+1} = (1 + ρ − αλ) e_t − ρ e_{t−1},
* Nesterov:          e_{t+1} = (1 + ρ)(1 − αλ) e_t − ρ (1 − αλ) e_{t−1},

so the pair (e_{t+1}, e_t) is multiplied by a 2×2 :func:`iteration_matrix` per step, and the
error shrinks asymptotically like the matrix's spectral radius to the power t. The best fixed
parameters give the rates

* gradient descent, α = 2/(L + μ):                           (κ − 1)/(κ + 1)        (:func:`gd_rate`)
* heavy ball, α = 4/(√L + √μ)², ρ = ((√κ − 1)/(√κ + 1))²:   (√κ − 1)/(√κ + 1)      (:func:`heavy_ball_rate`)

so reaching a tolerance takes about κ/2 · ln(1/tol) steps without momentum and √κ/2 · ln(1/tol)
with it. On smooth convex problems that are not strongly convex (μ = 0) there is no linear rate;
the worst-case bounds are L‖x₀ − x*‖²/(2t) for gradient descent with α = 1/L
(:func:`gd_convex_bound`) and 2L‖x₀ − x*‖²/(t + 1)² for Nesterov's accelerated gradient
(:func:`accelerated_convex_bound`), and no first-order method can beat
3L‖x₀ − x*‖²/(32(t + 1)²) on every such problem (:func:`first_order_lower_bound`, attained by
:func:`nesterov_hard_quadratic`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch

from optlib import _validate

__all__ = [
    "ConvexQuadratic", "LinearRate", "SlopeFit", "accelerated_convex_bound", "damped_oscillator",
    "effective_window", "first_order_lower_bound", "fit_rate", "fit_slope", "gd_convex_bound",
    "gd_optimal_lr", "gd_rate", "hard_quadratic_gaps", "heavy_ball_parameters", "heavy_ball_rate",
    "iteration_matrix", "lessard_function", "measure_linear_rate", "nesterov_hard_quadratic",
    "optimality_gaps", "overshoots", "settling_step", "spectral_radius", "step_ratios",
    "steps_to_tolerance",
]


# ------------------------------------------------------------------ rates on strongly convex quadratics

def _curvatures(L, mu) -> tuple[float, float]:
    L = _validate.positive("L", L)
    mu = _validate.positive("mu", mu)
    if mu > L:
        raise ValueError(f"mu must be <= L, got mu={mu}, L={L}")
    return L, mu


def _kappa(condition_number) -> float:
    kappa = _validate.at_least("condition_number", condition_number, 1.0)
    if math.isinf(kappa):
        raise ValueError("condition_number must be finite")
    return kappa


def gd_optimal_lr(L: float, mu: float) -> float:
    r"""α = 2/(L + μ): the fixed step that makes ``|1 − αμ| = |1 − αL|``, the best rate of gradient descent."""
    L, mu = _curvatures(L, mu)
    return 2.0 / (L + mu)


def gd_rate(condition_number: float) -> float:
    r"""(κ − 1)/(κ + 1): the factor by which gradient descent with α = 2/(L + μ) shrinks the error per step."""
    kappa = _kappa(condition_number)
    return (kappa - 1.0) / (kappa + 1.0)


def heavy_ball_parameters(L: float, mu: float) -> tuple[float, float]:
    r"""Polyak's optimal heavy-ball parameters (α, ρ) = (4/(√L + √μ)², ((√κ − 1)/(√κ + 1))²).

    With them both roots of z² − (1 + ρ − αλ) z + ρ = 0 are complex (or double) with modulus √ρ
    for every curvature λ in [μ, L], so every eigen-direction shrinks at the same rate √ρ.
    """
    L, mu = _curvatures(L, mu)
    lr = 4.0 / (math.sqrt(L) + math.sqrt(mu)) ** 2
    return lr, heavy_ball_rate(L / mu) ** 2


def heavy_ball_rate(condition_number: float) -> float:
    r"""(√κ − 1)/(√κ + 1): the rate of heavy-ball momentum with :func:`heavy_ball_parameters`."""
    root = math.sqrt(_kappa(condition_number))
    return (root - 1.0) / (root + 1.0)


def iteration_matrix(lr: float, curvature: float, momentum: float = 0.0, nesterov: bool = False) -> torch.Tensor:
    r"""The 2×2 matrix M with (e_{t+1}, e_t) = M (e_t, e_{t−1}) along an eigen-direction of curvature λ.

    Heavy ball: M = [[1 + ρ − αλ, −ρ], [1, 0]]; Nesterov: M = [[(1 + ρ)(1 − αλ), −ρ(1 − αλ)], [1, 0]].
    With ρ = 0 both reduce to gradient descent, whose factor 1 − αλ is M's nonzero eigenvalue.
    """
    lr = _validate.at_least("lr", lr, 0.0)
    curvature = _validate._number("curvature", curvature)
    momentum = _validate.in_range("momentum", momentum, 0.0, 1.0)
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
    shrink = 1.0 - lr * curvature
    if nesterov:
        top = [(1.0 + momentum) * shrink, -momentum * shrink]
    else:
        top = [1.0 + momentum - lr * curvature, -momentum]
    return torch.tensor([top, [1.0, 0.0]], dtype=torch.float64)


def spectral_radius(lr: float, curvatures, momentum: float = 0.0, nesterov: bool = False) -> float:
    r"""max over the given curvatures λ of the spectral radius of :func:`iteration_matrix`: the asymptotic rate.

    ``curvatures`` is one number or a sequence (e.g. all eigenvalues of a Hessian). Below 1 the
    method converges on that quadratic, above 1 it diverges.
    """
    values = np.atleast_1d(np.asarray(curvatures, dtype=float))
    if values.size == 0:
        raise ValueError("curvatures must not be empty")
    radii = [torch.linalg.eigvals(iteration_matrix(lr, float(lam), momentum, nesterov)).abs().max().item()
             for lam in values]
    return max(radii)


def steps_to_tolerance(rate: float, tolerance: float) -> int:
    r"""⌈ln(tol)/ln(rate)⌉: steps for an error that shrinks by ``rate`` per step to fall by the factor ``tolerance``."""
    rate = _validate.in_range("rate", rate, 0.0, 1.0)
    tolerance = _validate.in_range("tolerance", tolerance, 0.0, 1.0)
    if tolerance == 0:
        raise ValueError("tolerance must be > 0")
    if rate == 0:
        return 1
    return max(1, math.ceil(math.log(tolerance) / math.log(rate) - 1e-9))


def effective_window(momentum: float) -> float:
    r"""1/(1 − ρ) = Σ_k ρ^k: the total weight of past gradients in the velocity, its "number of averaged steps"."""
    momentum = _validate.in_range("momentum", momentum, 0.0, 1.0)
    return 1.0 / (1.0 - momentum)


# ------------------------------------------------------------------ bounds on smooth convex problems

def _steps(t) -> np.ndarray:
    t = np.asarray(t, dtype=float)
    if np.any(~np.isfinite(t)) or np.any(t < 0):
        raise ValueError("steps t must be finite and >= 0")
    return t


def _bound_args(L, distance_sq):
    return _validate.positive("L", L), _validate.at_least("distance_sq", distance_sq, 0.0)


def gd_convex_bound(L: float, distance_sq: float, t) -> np.ndarray:
    r"""L‖x₀ − x*‖²/(2t): the bound on f(x_t) − f* of gradient descent with α = 1/L on an L-smooth convex f (t ≥ 1)."""
    L, distance_sq = _bound_args(L, distance_sq)
    t = _steps(t)
    if np.any(t < 1):
        raise ValueError("the gradient-descent bound holds for t >= 1")
    return L * distance_sq / (2.0 * t)


def accelerated_convex_bound(L: float, distance_sq: float, t) -> np.ndarray:
    r"""2L‖x₀ − x*‖²/(t + 1)²: the bound on f(x_t) − f* of Nesterov's accelerated gradient with α = 1/L."""
    L, distance_sq = _bound_args(L, distance_sq)
    return 2.0 * L * distance_sq / (_steps(t) + 1.0) ** 2


def first_order_lower_bound(L: float, distance_sq: float, t) -> np.ndarray:
    r"""3L‖x₀ − x*‖²/(32(t + 1)²): no first-order method does better after t steps on every L-smooth convex f.

    (Nesterov, *Introductory Lectures on Convex Optimization*, Thm 2.1.7; attained on
    ``nesterov_hard_quadratic(2t + 1)`` from x₀ = 0 by any method whose iterates stay in the span of
    the gradients seen so far.)
    """
    L, distance_sq = _bound_args(L, distance_sq)
    return 3.0 * L * distance_sq / (32.0 * (_steps(t) + 1.0) ** 2)


# ------------------------------------------------------------------ fitting measured curves

@dataclass(frozen=True)
class SlopeFit:
    """A straight line log y = slope · log x + intercept fitted on [x_min, x_max] (``points`` points used)."""

    slope: float
    intercept: float
    x_min: float
    x_max: float
    points: int

    def __call__(self, x) -> np.ndarray:
        """The fitted power law e^intercept · x^slope, e.g. to draw it next to the data."""
        return np.exp(self.intercept) * np.asarray(x, dtype=float) ** self.slope


def fit_slope(x, y, *, x_min: float | None = None, x_max: float | None = None) -> SlopeFit:
    r"""Least-squares slope of log y against log x over x_min ≤ x ≤ x_max: y ∝ x^slope there.

    A convergence curve f(x_t) − f* ∝ t^{−p} is a line of slope −p on a log-log plot. Points with
    y ≤ 0 or non-finite values are ignored (they have no logarithm); at least two must remain.
    """
    x = np.asarray(x, dtype=float).reshape(-1)
    y = np.asarray(y, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if x_min is not None:
        keep &= x >= x_min
    if x_max is not None:
        keep &= x <= x_max
    if keep.sum() < 2:
        raise ValueError("fit_slope needs at least two points with x > 0 and y > 0 in the range")
    slope, intercept = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return SlopeFit(float(slope), float(intercept), float(x[keep].min()), float(x[keep].max()), int(keep.sum()))


def fit_rate(values, *, start: int = 0, stop: int | None = None) -> float:
    r"""Per-step factor r of a linearly converging sequence, values_t ≈ C r^t, by a fit of log values on t.

    Uses entries ``start`` to ``stop`` (exclusive); non-positive or non-finite entries are skipped.
    """
    values = np.asarray(values, dtype=float).reshape(-1)
    t = np.arange(values.size)[start:stop]
    v = values[start:stop]
    keep = np.isfinite(v) & (v > 0)
    if keep.sum() < 2:
        raise ValueError("fit_rate needs at least two positive values in the range")
    slope = np.polyfit(t[keep], np.log(v[keep]), 1)[0]
    return float(math.exp(slope))


# ------------------------------------------------------------------ test problems

class ConvexQuadratic:
    r"""f(x) = ½ (x − x*)ᵀ A (x − x*) + f*, with A symmetric positive semi-definite.

    ``hessian`` is the matrix A (d, d) or, for a diagonal A, the vector of its diagonal (d,) (cheap
    in high dimension). Written around x*, f(x) − f* is computed without cancellation, so log plots
    of the gap stay accurate far below the round-off of f itself. Takes points of shape (..., d).
    """

    def __init__(self, hessian, x_star, f_star: float = 0.0):
        A = torch.as_tensor(hessian, dtype=torch.float64)
        x_star = torch.as_tensor(x_star, dtype=torch.float64).reshape(-1)
        if A.ndim == 1:
            if (A < 0).any():
                raise ValueError("a diagonal Hessian must have entries >= 0")
            eigenvalues = A
        elif A.ndim == 2 and A.shape[0] == A.shape[1]:
            if not torch.allclose(A, A.T):
                raise ValueError("the Hessian must be symmetric")
            eigenvalues = torch.linalg.eigvalsh(A)
            if eigenvalues.min() < -1e-10 * max(eigenvalues.abs().max().item(), 1.0):
                raise ValueError(f"the Hessian must be positive semi-definite, got eigenvalue {eigenvalues.min():.3g}")
        else:
            raise ValueError(f"hessian must have shape (d,) or (d, d), got {tuple(A.shape)}")
        if x_star.numel() != A.shape[0]:
            raise ValueError(f"x_star has {x_star.numel()} entries but the Hessian is for d = {A.shape[0]}")
        self.A, self.x_star, self.f_star = A, x_star, float(_validate._number("f_star", f_star))
        self.dim = A.shape[0]
        self.L = float(eigenvalues.max())
        self.mu = max(float(eigenvalues.min()), 0.0)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """A v for v of shape (..., d)."""
        A = self.A.to(device=v.device, dtype=v.dtype)
        return v * A if A.ndim == 1 else v @ A  # A is symmetric

    def _check(self, x) -> torch.Tensor:
        x = torch.as_tensor(x)
        if not torch.is_floating_point(x):
            x = x.to(torch.float64)
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"this quadratic takes points of shape (..., {self.dim}), got {tuple(x.shape)}")
        return x

    def gap(self, x) -> torch.Tensor:
        """f(x) − f* = ½ (x − x*)ᵀ A (x − x*)."""
        x = self._check(x)
        e = x - self.x_star.to(device=x.device, dtype=x.dtype)
        return 0.5 * (e * self.matvec(e)).sum(-1)

    def __call__(self, x) -> torch.Tensor:
        return self.gap(x) + self.f_star

    def gradient(self, x) -> torch.Tensor:
        """A (x − x*)."""
        x = self._check(x)
        return self.matvec(x - self.x_star.to(device=x.device, dtype=x.dtype))

    def distance_sq(self, x0) -> float:
        """‖x₀ − x*‖², the quantity in every convex bound."""
        x0 = self._check(torch.as_tensor(x0, dtype=torch.float64))
        return float(((x0 - self.x_star.to(x0.device)) ** 2).sum())

    def __repr__(self) -> str:
        return f"ConvexQuadratic(dim={self.dim}, L={self.L:.4g}, mu={self.mu:.4g})"


class _Tridiagonal(ConvexQuadratic):
    """A = c · tridiag(−1, 2, −1), applied in O(d) instead of building the dense matrix."""

    def __init__(self, dim: int, scale: float, x_star, f_star: float):
        self.scale = scale
        self.dim = dim
        self.A = None
        self.x_star, self.f_star = torch.as_tensor(x_star, dtype=torch.float64), f_star
        k = torch.arange(1, dim + 1, dtype=torch.float64)
        eigenvalues = scale * 4 * torch.sin(k * math.pi / (2 * (dim + 1))) ** 2
        self.L, self.mu = float(eigenvalues.max()), float(eigenvalues.min())

    def __call__(self, x) -> torch.Tensor:
        # written as ½ xᵀAx − bᵀx (b = c e₁), so autograd's gradient A x − b is exactly zero beyond the
        # coordinates reached so far; ``gap`` keeps the cancellation-free form for plots
        x = self._check(x)
        return 0.5 * (x * self.matvec(x)).sum(-1) - self.scale * x[..., 0]

    def gradient(self, x) -> torch.Tensor:
        x = self._check(x)
        g = self.matvec(x)
        g[..., 0] -= self.scale
        return g

    def matvec(self, v):
        out = 2 * v
        out[..., 1:] -= v[..., :-1]
        out[..., :-1] -= v[..., 1:]
        return self.scale * out

    def dense(self) -> torch.Tensor:
        """The matrix A itself (for checks in small dimension)."""
        return self.matvec(torch.eye(self.dim, dtype=torch.float64))


def nesterov_hard_quadratic(dim: int, L: float = 1.0) -> ConvexQuadratic:
    r"""Nesterov's worst-case function for first-order methods, in dimension k = ``dim``:

    .. math::
        f(x) = \frac L4\Big(\tfrac12\big[x_1^2 + \sum_{i=1}^{k-1}(x_i - x_{i+1})^2 + x_k^2\big] - x_1\Big),

    with Hessian (L/4)·tridiag(−1, 2, −1) (eigenvalues in (0, L)), minimizer x*_i = 1 − i/(k + 1)
    and f* = (L/8)(−1 + 1/(k + 1)). From x₀ = 0 a method that moves in the span of the gradients
    it has seen reaches at most coordinate t after t steps, which is what makes the function hard:
    for k = 2t + 1 it forces f(x_t) − f* ≥ :func:`first_order_lower_bound`.
    """
    dim = _validate.positive_int("dim", dim)
    L = _validate.positive("L", L)
    i = torch.arange(1, dim + 1, dtype=torch.float64)
    x_star = 1.0 - i / (dim + 1)
    return _Tridiagonal(dim, L / 4.0, x_star, L / 8.0 * (-1.0 + 1.0 / (dim + 1)))


def optimality_gaps(problem: ConvexQuadratic, x0, method, steps: int, **hyperparams) -> np.ndarray:
    r"""f(x_k) − f* for k = 0, …, steps, running ``method([x], **hyperparams)`` from ``x0`` on ``problem``.

    x_k is the parameter itself, or ``optimizer.iterate(x)`` for methods whose parameter holds an
    extrapolated point (such as :class:`~optlib.optim.accelerated.AcceleratedGradient`, where the
    bound is about the gradient-step points). No parameter history is stored, so this is cheap in
    high dimension; the gap uses ``problem.gap`` (no cancellation against f*).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    x = torch.as_tensor(x0, dtype=torch.float64).detach().clone().reshape(-1).requires_grad_(True)
    optimizer = method([x], **hyperparams)
    point = getattr(optimizer, "iterate", lambda p: p.detach())
    gaps = [problem.gap(x.detach()).item()]
    for _ in range(steps):
        optimizer.zero_grad()
        problem(x).backward()
        optimizer.step()
        gaps.append(problem.gap(point(x)).item())
    return np.array(gaps)


def hard_quadratic_gaps(horizons, method, *, L: float = 1.0, **hyperparams) -> np.ndarray:
    r"""(f(x_t) − f*)/(L‖x₀ − x*‖²) after exactly t steps on ``nesterov_hard_quadratic(2t + 1, L)``, per t.

    One hard function per horizon t in ``horizons``, each run from x₀ = 0 with
    ``method([x], **hyperparams)`` (see :func:`optimality_gaps`). Normalized this way, the lower
    bound of every first-order method is ``first_order_lower_bound(1, 1, t)``.
    """
    horizons = [int(t) for t in horizons]
    if not horizons or any(t < 1 for t in horizons):
        raise ValueError(f"horizons must be a non-empty sequence of integers >= 1, got {horizons!r}")
    L = _validate.positive("L", L)
    gaps = []
    for t in horizons:
        hard = nesterov_hard_quadratic(2 * t + 1, L=L)
        origin = torch.zeros(hard.dim, dtype=torch.float64)
        final_gap = optimality_gaps(hard, origin, method, t, **hyperparams)[-1]
        gaps.append(final_gap / (L * hard.distance_sq(origin)))
    return np.array(gaps)


# ------------------------------------------------------------------ measuring runs on quadratics

class LinearRate(NamedTuple):
    """What :func:`measure_linear_rate` measured: the fitted factor per step and the steps to a tolerance."""

    rate: float
    steps: int | None


def measure_linear_rate(problem, x0, steps: int, tolerance: float, **hyperparams) -> LinearRate:
    r"""Run :class:`~optlib.optim.sgd.SGD` on ``problem`` and measure its linear rate.

    ``rate`` is the per-step factor of √(f(x_t)), fitted over the second half of the ``steps``
    steps (on a quadratic with minimum 0, √f is proportional to the size of the error); ``steps``
    of the result is the first t with f(x_t) ≤ ``tolerance`` · f(x₀), or None if never.
    """
    from optlib import optim, run

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 4:
        raise ValueError(f"steps must be an integer >= 4, got {steps!r}")
    tolerance = _validate.positive("tolerance", tolerance)
    trace = run.minimize(problem, x0, optim.SGD, steps=steps, record_params=False, **hyperparams)
    rate = fit_rate(np.sqrt(np.asarray(trace.loss)), start=steps // 2)
    return LinearRate(rate, trace.steps_to(tolerance * trace.loss[0]))


def step_ratios(path, gradient: Callable, lr: float, basis) -> np.ndarray:
    r"""Each step's components relative to a plain gradient step from the same point.

    For a path x₀, …, x_T (shape (T + 1, d)) and the columns q_j of ``basis`` (d, d), entry
    (t, j) is :math:`|q_j^\top(x_{t+1} - x_t)| \,/\, |\alpha\, q_j^\top \nabla f(x_t)|`: 1 for gradient descent with step α, above 1
    where a method moves further along q_j than the gradient alone would take it, below 1 where
    it moves less. ``gradient(x)`` returns ∇f at the rows of x.
    """
    lr = _validate.positive("lr", lr)
    path = torch.as_tensor(np.asarray(path), dtype=torch.float64)
    basis = torch.as_tensor(np.asarray(basis), dtype=torch.float64)
    if path.ndim != 2 or len(path) < 2:
        raise ValueError(f"path must have shape (T + 1, d) with T >= 1, got {tuple(path.shape)}")
    if basis.shape != (path.shape[1], path.shape[1]):
        raise ValueError(f"basis must have shape (d, d) = {(path.shape[1],) * 2}, got {tuple(basis.shape)}")
    moves = ((path[1:] - path[:-1]) @ basis).abs()
    plain = (lr * gradient(path[:-1]) @ basis).abs()
    return (moves / plain).numpy()


def damped_oscillator(time, friction: float, curvature: float = 1.0) -> np.ndarray:
    r"""x(t) of the heavy ball's ODE ẍ + c ẋ + λ x = 0 with x(0) = 1, ẋ(0) = 0 (unit mass).

    With the roots r₁, r₂ of r² + c r + λ = 0, x(t) = (r₂ e^{r₁t} − r₁ e^{r₂t})/(r₂ − r₁), which
    oscillates when c < 2√λ (complex roots); at critical damping, c = 2√λ, the limit
    (1 + c t/2) e^{−ct/2}.
    """
    friction = _validate.at_least("friction", friction, 0.0)
    curvature = _validate.positive("curvature", curvature)
    t = np.asarray(time, dtype=float)
    discriminant = friction * friction - 4.0 * curvature
    if abs(discriminant) <= 1e-12 * friction * friction:
        return (1.0 + friction * t / 2.0) * np.exp(-friction * t / 2.0)
    root = np.sqrt(complex(discriminant))
    r1, r2 = (-friction + root) / 2.0, (-friction - root) / 2.0
    return np.real((r2 * np.exp(r1 * t) - r1 * np.exp(r2 * t)) / (r2 - r1))


def settling_step(values, tolerance: float) -> int | None:
    r"""The first index from which ``abs(values)`` stays below ``tolerance`` to the end; None if the last is not.

    An index of 0 means the sequence never left the band.
    """
    tolerance = _validate.positive("tolerance", tolerance)
    values = np.asarray(values, dtype=float).reshape(-1)
    if values.size == 0:
        raise ValueError("values must not be empty")
    outside = np.flatnonzero(~(np.abs(values) < tolerance))
    if outside.size == 0:
        return 0
    return None if outside[-1] == values.size - 1 else int(outside[-1] + 1)


def overshoots(values, tolerance: float) -> int:
    r"""Sign changes of ``values`` (a coordinate of a path towards 0) until it settles.

    Counts the t with values[t] · values[t + 1] < 0 up to :func:`settling_step`, or over the whole
    sequence if it never settles; crossings inside the tolerance band afterwards are not counted.
    """
    values = np.asarray(values, dtype=float).reshape(-1)
    settled = settling_step(values, tolerance)
    head = values if settled is None else values[: settled + 1]
    return int((np.sign(head[1:]) * np.sign(head[:-1]) < 0).sum())


def lessard_function(x) -> torch.Tensor:
    r"""Lessard, Recht and Packard's (2016) function, on which heavy-ball momentum cycles.

    A strongly convex piecewise quadratic of one variable (applied to each entry of ``x`` and
    summed), with L = 25 and μ = 1:

    .. math::
        f(x) = \begin{cases} 12.5 x^2 & x < 1\\ x^2/2 + 24x - 12 & 1 \le x < 2\\
        12.5 x^2 - 24 x + 36 & x \ge 2\end{cases},\qquad
        f'(x) = \begin{cases} 25x & x < 1\\ x + 24 & 1 \le x < 2\\ 25x - 24 & x \ge 2\end{cases}

    Minimum 0 at x* = 0. The heavy ball with Polyak's parameters for κ = 25 ends in a cycle of
    three points from x₀ = 3.3; Nesterov's method with β = (√κ − 1)/(√κ + 1) converges.
    """
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        x = torch.as_tensor(x, dtype=torch.float64)
    middle = 0.5 * x**2 + 24 * x - 12
    right = 12.5 * x**2 - 24 * x + 36
    return torch.where(x < 1, 12.5 * x**2, torch.where(x < 2, middle, right)).sum()
