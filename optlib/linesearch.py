r"""Line searches: how far to go along a descent direction.

An optimizer that has chosen a direction d at x hands the search the 1-D function

.. math::
    \phi(\alpha) = f(x + \alpha d), \qquad \phi'(\alpha) = \nabla f(x + \alpha d)^\top d,

with φ'(0) < 0 (d goes downhill), and asks for a step α > 0 that is

- **Armijo** (sufficient decrease): φ(α) ≤ φ(0) + c₁ α φ'(0), the decrease is at least a
  fraction c₁ of what the tangent line promises;
- **strong Wolfe**: Armijo, and ``|φ'(α)| ≤ c₂ |φ'(0)|``, the slope has flattened, so the step is
  not needlessly short (0 < c₁ < c₂ < 1). For a quasi-Newton method it also guarantees
  sᵀy = α (φ'(α) − φ'(0)) > 0, the curvature condition its update needs.

:func:`backtracking` needs only values of φ; :func:`strong_wolfe` (Nocedal & Wright, Algorithms
3.5 and 3.6) needs φ and φ' at every trial step. Both count their evaluations and return a
:class:`LineSearchResult`. A trial step whose value is NaN or infinite counts as too long.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

from optlib import _validate

__all__ = ["LineSearchResult", "backtracking", "cubic_minimizer", "strong_wolfe"]


class LineSearchResult(NamedTuple):
    """What a line search returns: the step, φ and φ' there, the evaluations it cost, and whether it succeeded."""

    #: the step α (0.0 when no trial step satisfied even the sufficient-decrease condition)
    alpha: float
    #: φ(α)
    f: float
    #: φ'(α), or None where the search never computed it (:func:`backtracking` on success)
    g: float | None
    #: how many times φ was called
    evaluations: int
    #: whether α satisfies the search's conditions (Armijo, or strong Wolfe)
    success: bool


def _check_start(phi0, dphi0) -> tuple[float, float]:
    phi0, dphi0 = float(phi0), float(dphi0)
    if not math.isfinite(phi0):
        raise ValueError(f"phi(0) must be finite, got {phi0}")
    if not dphi0 < 0:
        raise ValueError(f"the direction must go downhill, phi'(0) < 0, got phi'(0) = {dphi0}")
    return phi0, dphi0


def _check_constants(c1, c2=None) -> None:
    _validate.in_range("c1", c1, 0.0, 1.0)
    if c1 == 0:
        raise ValueError("c1 must be in (0, 1), got 0.0")
    if c2 is not None:
        _validate.in_range("c2", c2, 0.0, 1.0)
        if not c1 < c2:
            raise ValueError(f"the Wolfe constants need 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")


def backtracking(phi: Callable[[float], float], phi0: float, dphi0: float, alpha: float = 1.0,
                 c1: float = 1e-4, shrink: float = 0.5, max_evaluations: int = 50) -> LineSearchResult:
    r"""Armijo backtracking: try α, ρα, ρ²α, … until φ(α) ≤ φ(0) + c₁ α φ'(0).

    ``phi(alpha)`` returns φ(α) (a number); ``phi0`` = φ(0) and ``dphi0`` = φ'(0) < 0 are known
    already. ρ = ``shrink``. Since φ(α) = φ(0) + α φ'(0) + o(α) and c₁ < 1, a small enough step
    always passes. After ``max_evaluations`` failures it returns α = 0 (stay put) with
    ``success=False``.
    """
    phi0, dphi0 = _check_start(phi0, dphi0)
    _check_constants(c1)
    _validate.positive("alpha", alpha)
    _validate.in_range("shrink", shrink, 0.0, 1.0)
    if shrink == 0:
        raise ValueError("shrink must be in (0, 1), got 0.0")
    _validate.positive_int("max_evaluations", max_evaluations)
    for k in range(1, max_evaluations + 1):
        f = float(phi(alpha))
        if f <= phi0 + c1 * alpha * dphi0:  # False for NaN: a NaN step counts as too long
            return LineSearchResult(alpha, f, None, k, True)
        alpha *= shrink
    return LineSearchResult(0.0, phi0, dphi0, max_evaluations, False)


def cubic_minimizer(a0: float, f0: float, g0: float, a1: float, f1: float, g1: float) -> float | None:
    r"""The minimizer of the cubic through (a₀, f₀) and (a₁, f₁) with slopes g₀, g₁ (N&W eq. 3.59).

    .. math::
        d_1 = g_0 + g_1 - 3\,\frac{f_0 - f_1}{a_0 - a_1},\quad
        d_2 = \operatorname{sign}(a_1 - a_0)\sqrt{d_1^2 - g_0 g_1},\quad
        a = a_1 - (a_1 - a_0)\,\frac{g_1 + d_2 - d_1}{g_1 - g_0 + 2 d_2}.

    None when the cubic has no local minimizer (d₁² < g₀g₁) or the data are not finite. When φ is
    itself a quadratic (or cubic), the answer is its exact minimizer.
    """
    if a0 == a1 or not all(math.isfinite(v) for v in (a0, f0, g0, a1, f1, g1)):
        return None
    d1 = g0 + g1 - 3 * (f0 - f1) / (a0 - a1)
    disc = d1 * d1 - g0 * g1
    if not disc >= 0:
        return None
    d2 = math.copysign(math.sqrt(disc), a1 - a0)
    denominator = g1 - g0 + 2 * d2
    if denominator == 0:
        return None
    a = a1 - (a1 - a0) * (g1 + d2 - d1) / denominator
    return a if math.isfinite(a) else None


#: A zoom trial closer than this fraction of the bracket's width to an end makes little progress
#: (the second time in a row it is moved this far in).
ZOOM_MARGIN = 0.1
#: Extrapolation while bracketing: the next trial lies in [α + EXTRAPOLATE_MIN (α − α_prev), EXTRAPOLATE_MAX α].
EXTRAPOLATE_MIN, EXTRAPOLATE_MAX = 0.01, 10.0


def strong_wolfe(phi: Callable[[float], tuple[float, float]], phi0: float, dphi0: float, alpha: float = 1.0,
                 c1: float = 1e-4, c2: float = 0.9, max_evaluations: int = 25,
                 min_interval: float = 0.0) -> LineSearchResult:
    r"""A step satisfying the strong Wolfe conditions: bracketing, then zoom (Nocedal & Wright, Alg. 3.5, 3.6).

    ``phi(alpha)`` returns the pair (φ(α), φ'(α)); ``phi0`` = φ(0) and ``dphi0`` = φ'(0) < 0 are
    known already; the first trial step is ``alpha``.

    **Bracketing** (Alg. 3.5) tries α₁ = ``alpha``, α₂, … and stops as soon as an interval must hold
    an acceptable step:

    1. φ(αᵢ) > φ(0) + c₁αᵢφ'(0) or φ(αᵢ) ≥ φ(αᵢ₋₁): too long, zoom(αᵢ₋₁, αᵢ);
    2. ``|φ'(αᵢ)| ≤ c₂|φ'(0)|``: αᵢ is accepted;
    3. φ'(αᵢ) ≥ 0: the slope turned, zoom(αᵢ, αᵢ₋₁);
    4. otherwise extrapolate: αᵢ₊₁ is the minimizer of the cubic through αᵢ₋₁ and αᵢ, kept in
       [αᵢ + 0.01(αᵢ − αᵢ₋₁), 10αᵢ].

    **zoom(α_lo, α_hi)** (Alg. 3.6) keeps α_lo the best step so far that satisfies Armijo and
    φ'(α_lo)(α_hi − α_lo) < 0, so a minimizer of φ lies between them. Each trial α is the
    :func:`cubic_minimizer` of the two ends (bisection where it does not exist). A trial within
    10% of the bracket's width of an end shrinks the bracket little: that is allowed once, and
    the next time (or when α falls outside) α moves to 10% of the width from that end (the
    safeguard of ``torch.optim.LBFGS`` and minFunc). Then

    - φ(α) > φ(0) + c₁αφ'(0) or φ(α) ≥ φ(α_lo): α_hi ← α;
    - else, if ``|φ'(α)| ≤ c₂|φ'(0)|``: α is accepted;
    - else, if φ'(α)(α_hi − α_lo) ≥ 0: α_hi ← α_lo; and then α_lo ← α.

    After ``max_evaluations`` calls of φ, or when the bracket is narrower than ``min_interval``,
    the search returns α_lo with ``success=False`` (α_lo = 0 when no step decreased φ enough).
    """
    phi0, dphi0 = _check_start(phi0, dphi0)
    _check_constants(c1, c2)
    _validate.positive("alpha", alpha)
    _validate.positive_int("max_evaluations", max_evaluations)
    _validate.at_least("min_interval", min_interval, 0.0)
    evaluations = 0

    def evaluate(a):
        nonlocal evaluations
        evaluations += 1
        f, g = phi(a)
        return float(f), float(g)

    def armijo(a, f):
        return f <= phi0 + c1 * a * dphi0  # False for NaN

    def curvature(g):
        return abs(g) <= -c2 * dphi0

    def zoom(lo, hi):
        """lo, hi: (α, φ(α), φ'(α)) with lo the best Armijo step so far."""
        stalled = False
        while evaluations < max_evaluations and abs(hi[0] - lo[0]) > min_interval:
            left, right = min(lo[0], hi[0]), max(lo[0], hi[0])
            margin = ZOOM_MARGIN * (right - left)
            a = cubic_minimizer(*lo, *hi)
            if a is None:
                a = 0.5 * (left + right)
            if min(a - left, right - a) < margin:  # (nearly) at an end: little progress
                if stalled or not left < a < right:
                    a = right - margin if right - a < a - left else left + margin
                    stalled = False
                else:
                    stalled = True
            else:
                stalled = False
            f, g = evaluate(a)
            if not armijo(a, f) or not f < lo[1]:
                hi = (a, f, g)
            else:
                if curvature(g):
                    return LineSearchResult(a, f, g, evaluations, True)
                if g * (hi[0] - lo[0]) >= 0:
                    hi = lo
                lo = (a, f, g)
        return LineSearchResult(lo[0], lo[1], lo[2], evaluations, False)

    prev = (0.0, phi0, dphi0)
    a = float(alpha)
    while True:
        f, g = evaluate(a)
        if not armijo(a, f) or (evaluations > 1 and not f < prev[1]):
            return zoom(prev, (a, f, g))
        if curvature(g):
            return LineSearchResult(a, f, g, evaluations, True)
        if g >= 0:
            return zoom((a, f, g), prev)
        if evaluations >= max_evaluations:
            return LineSearchResult(a, f, g, evaluations, False)
        low, high = a + EXTRAPOLATE_MIN * (a - prev[0]), EXTRAPOLATE_MAX * a
        trial = cubic_minimizer(*prev, a, f, g)
        prev = (a, f, g)
        a = high if trial is None else min(max(trial, low), high)
