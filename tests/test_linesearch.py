"""optlib.linesearch: Armijo backtracking and the strong-Wolfe search (N&W Alg. 3.5/3.6) on 1-D functions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize

from optlib.linesearch import LineSearchResult, backtracking, cubic_minimizer, strong_wolfe


class Counted:
    """phi along a line, counting its calls (value only, or value and slope)."""

    def __init__(self, f, df=None):
        self.f, self.df, self.calls = f, df, []

    def __call__(self, alpha):
        self.calls.append(alpha)
        if self.df is None:
            return self.f(alpha)
        return self.f(alpha), self.df(alpha)


def along(fun, grad, x, d):
    """phi(α) = fun(x + αd) and phi'(α) = grad(x + αd)·d."""
    x, d = np.asarray(x, float), np.asarray(d, float)
    return (lambda a: float(fun(x + a * d))), (lambda a: float(grad(x + a * d) @ d))


def is_armijo(res, phi0, dphi0, c1):
    return res.f <= phi0 + c1 * res.alpha * dphi0


def is_strong_wolfe(res, phi0, dphi0, c1, c2):
    return is_armijo(res, phi0, dphi0, c1) and abs(res.g) <= c2 * abs(dphi0)


# ------------------------------------------------------------------ backtracking

def test_backtracking_halves_until_armijo_holds():
    # phi(α) = (α − 1)² − 1: phi(0) = 0, phi'(0) = −2; from α = 4: 4 and 2 fail, 1 passes
    phi = Counted(lambda a: (a - 1) ** 2 - 1)
    res = backtracking(phi, 0.0, -2.0, alpha=4.0)
    assert isinstance(res, LineSearchResult)
    assert (res.alpha, res.f, res.g, res.evaluations, res.success) == (1.0, -1.0, None, 3, True)
    assert phi.calls == [4.0, 2.0, 1.0]


def test_backtracking_takes_the_first_step_when_it_is_good_enough():
    phi = Counted(lambda a: (a - 1) ** 2 - 1)
    res = backtracking(phi, 0.0, -2.0, alpha=0.5, shrink=0.1, c1=0.5)
    assert res.alpha == 0.5 and res.evaluations == 1 and is_armijo(res, 0.0, -2.0, 0.5)


def test_backtracking_shrink_factor_and_c1():
    phi = Counted(lambda a: (a - 1) ** 2 - 1)
    # c1 = 0.9 asks for 90% of the tangent's decrease: 1 gives only 50%, 0.1 gives 95%
    res = backtracking(phi, 0.0, -2.0, alpha=1.0, shrink=0.1, c1=0.9)
    assert phi.calls == [1.0, pytest.approx(0.1)] and res.success
    assert is_armijo(res, 0.0, -2.0, 0.9)


def test_backtracking_treats_nan_as_too_long():
    phi = Counted(lambda a: math.nan if a > 0.3 else (a - 1) ** 2 - 1)
    res = backtracking(phi, 0.0, -2.0, alpha=1.0)
    assert res.alpha == 0.25 and res.success and math.isfinite(res.f)


def test_backtracking_gives_up_and_stays_put():
    phi = Counted(lambda a: 1.0)  # never decreases, whatever the slope claims
    res = backtracking(phi, 0.0, -1.0, max_evaluations=7)
    assert (res.alpha, res.f, res.g, res.evaluations, res.success) == (0.0, 0.0, -1.0, 7, False)
    assert len(phi.calls) == 7


# ------------------------------------------------------------------ cubic interpolation

def test_cubic_minimizer_is_exact_for_a_cubic_and_a_quadratic():
    def cubic(a):
        return a**3 - 3 * a, 3 * a**2 - 3  # local minimizer at a = 1

    assert cubic_minimizer(0.0, *cubic(0.0), 3.0, *cubic(3.0)) == pytest.approx(1.0, abs=1e-12)
    assert cubic_minimizer(3.0, *cubic(3.0), 0.5, *cubic(0.5)) == pytest.approx(1.0, abs=1e-12)

    def quad(a):
        return 2 * (a - 0.7) ** 2, 4 * (a - 0.7)

    assert cubic_minimizer(0.0, *quad(0.0), 5.0, *quad(5.0)) == pytest.approx(0.7, abs=1e-12)
    assert cubic_minimizer(0.0, *quad(0.0), 0.2, *quad(0.2)) == pytest.approx(0.7, abs=1e-12)  # extrapolates


def test_cubic_minimizer_without_a_minimizer_is_none():
    assert cubic_minimizer(0.0, 0.0, -1.0, 1.0, 0.0, 1.0) == pytest.approx(0.5)  # (a − ½)² − ¼
    assert cubic_minimizer(0.0, 0.0, 1.0, 1.0, 2.0, 4.0) is None  # a³ + a: increasing, d1² < g0 g1
    assert cubic_minimizer(0.0, 0.0, -1.0, 0.0, 0.0, -1.0) is None  # same point twice
    assert cubic_minimizer(0.0, 0.0, -1.0, 1.0, math.nan, 1.0) is None


# ------------------------------------------------------------------ strong Wolfe

def test_strong_wolfe_accepts_a_good_first_step_with_one_evaluation():
    phi = Counted(lambda a: (a - 1) ** 2, lambda a: 2 * (a - 1))
    res = strong_wolfe(phi, 1.0, -2.0, alpha=1.0)
    assert (res.alpha, res.f, res.g, res.evaluations, res.success) == (1.0, 0.0, 0.0, 1, True)


@pytest.mark.parametrize("alpha0", [1e-3, 0.3, 7.0, 1e3])
def test_strong_wolfe_finds_the_exact_minimizer_of_a_quadratic(alpha0):
    """Cubic interpolation reproduces a quadratic, so one interpolation lands on its minimizer."""
    phi = Counted(lambda a: 3 * (a - 2.5) ** 2, lambda a: 6 * (a - 2.5))
    res = strong_wolfe(phi, 3 * 2.5**2, -15.0, alpha=alpha0, c2=1e-3)
    assert res.success and res.alpha == pytest.approx(2.5, rel=1e-12)
    # extrapolation grows the step at most 10x per trial: from 1e-3 it takes 1e-2, 0.1, 1 to pass 2.5
    assert res.evaluations == len(phi.calls) == (5 if alpha0 == 1e-3 else 2)


def test_strong_wolfe_brackets_by_extrapolating_towards_a_far_minimizer():
    # phi decreases until α = 50: the first trial α = 1 is far too short
    phi = Counted(lambda a: (a - 50.0) ** 2 + 0.01 * (a - 50.0) ** 4,
                  lambda a: 2 * (a - 50.0) + 0.04 * (a - 50.0) ** 3)
    phi0, dphi0 = phi.f(0.0), phi.df(0.0)
    res = strong_wolfe(phi, phi0, dphi0, alpha=1.0, c2=0.1)
    assert res.success and is_strong_wolfe(res, phi0, dphi0, 1e-4, 0.1)
    assert phi.calls[1] > phi.calls[0]  # the second trial went further out
    assert res.evaluations == len(phi.calls) < 10


def rosenbrock_lines():
    """Lines through points of Rosenbrock's valley along descent directions (−g and random ones)."""
    fun, grad = scipy.optimize.rosen, scipy.optimize.rosen_der
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.uniform(-2, 2, size=2)
        g = grad(x)
        d = rng.standard_normal(2)
        if d @ g > 0:
            d = -d
        yield (fun, grad, x, d)
        yield (fun, grad, x, -g / np.linalg.norm(g))


@pytest.mark.parametrize("c1, c2", [(1e-4, 0.9), (1e-4, 0.1), (0.3, 0.4)])
def test_strong_wolfe_conditions_hold_on_rosenbrock_lines(c1, c2):
    for fun, grad, x, d in rosenbrock_lines():
        f, df = along(fun, grad, x, d)
        phi = Counted(f, df)
        phi0, dphi0 = f(0.0), df(0.0)
        res = strong_wolfe(phi, phi0, dphi0, alpha=1.0, c1=c1, c2=c2)
        assert res.success, (x, d)
        assert is_strong_wolfe(res, phi0, dphi0, c1, c2)
        assert res.f == f(res.alpha) and res.g == df(res.alpha)
        assert res.evaluations == len(phi.calls) <= 25


def test_strong_wolfe_agrees_with_scipy_about_what_is_acceptable():
    """SciPy's search (line_search_wolfe2, also N&W 3.5/3.6) and ours both return strong-Wolfe steps."""
    for fun, grad, x, d in rosenbrock_lines():
        f, df = along(fun, grad, x, d)
        ours = strong_wolfe(Counted(f, df), f(0.0), df(0.0), c2=0.9)
        theirs = scipy.optimize.line_search(fun, grad, x, d, c1=1e-4, c2=0.9)
        assert theirs[0] is not None
        for alpha in (ours.alpha, theirs[0]):
            assert f(alpha) <= f(0.0) + 1e-4 * alpha * df(0.0)
            assert abs(df(alpha)) <= 0.9 * abs(df(0.0))


def test_strong_wolfe_treats_nan_as_too_long():
    phi = Counted(lambda a: math.nan if a > 1.0 else (a - 2) ** 2,
                  lambda a: math.nan if a > 1.0 else 2 * (a - 2))
    res = strong_wolfe(phi, 4.0, -4.0, alpha=10.0, c2=0.9)
    assert res.success and 0 < res.alpha <= 1.0 and math.isfinite(res.f)
    assert is_strong_wolfe(res, 4.0, -4.0, 1e-4, 0.9)


def test_strong_wolfe_out_of_evaluations_returns_the_best_armijo_step():
    # slope −1 everywhere left of 0.5, then a cliff: no point satisfies |phi'| <= 0.1
    def f(a):
        return -a if a < 0.5 else 10.0

    def df(a):
        return -1.0 if a < 0.5 else 0.0

    phi = Counted(f, df)
    res = strong_wolfe(phi, 0.0, -1.0, alpha=1.0, c2=0.1, max_evaluations=6)
    assert not res.success and res.evaluations == 6 == len(phi.calls)
    assert 0 < res.alpha < 0.5 and res.f == -res.alpha  # the lowest Armijo point seen
    assert res.f == min(f(a) for a in phi.calls)


def test_strong_wolfe_min_interval_stops_the_zoom():
    def f(a):
        return -a if a < 0.5 else 10.0

    phi = Counted(f, lambda a: -1.0 if a < 0.5 else 0.0)
    res = strong_wolfe(phi, 0.0, -1.0, alpha=1.0, c2=0.1, max_evaluations=100, min_interval=1e-3)
    assert not res.success and res.evaluations < 100
    assert 0.5 - 1e-3 <= res.alpha < 0.5


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("kwargs, message", [
    (dict(c1=0.0), r"c1 must be in \(0, 1\)"),
    (dict(c1=1.0), r"c1 must be in \[0.0, 1.0\)"),
    (dict(c1=-0.1), r"c1 must be in"),
    (dict(c2=1.0), r"c2 must be in"),
    (dict(c1=0.5, c2=0.5), r"0 < c1 < c2 < 1, got c1=0.5, c2=0.5"),
    (dict(c1=0.9, c2=0.1), r"0 < c1 < c2 < 1"),
    (dict(alpha=0.0), r"alpha must be a finite number > 0"),
    (dict(alpha=math.inf), r"alpha must be a finite number > 0"),
    (dict(max_evaluations=0), r"max_evaluations must be a positive integer"),
    (dict(min_interval=-1.0), r"min_interval must be >= 0"),
])
def test_strong_wolfe_rejects_bad_constants(kwargs, message):
    phi = Counted(lambda a: (a - 1) ** 2, lambda a: 2 * (a - 1))
    with pytest.raises(ValueError, match=message):
        strong_wolfe(phi, 1.0, -2.0, **kwargs)
    assert phi.calls == []  # checked before any evaluation


@pytest.mark.parametrize("kwargs, message", [
    (dict(c1=0.0), r"c1 must be in \(0, 1\)"),
    (dict(c1=1.5), r"c1 must be in"),
    (dict(shrink=0.0), r"shrink must be in \(0, 1\)"),
    (dict(shrink=1.0), r"shrink must be in"),
    (dict(alpha=-1.0), r"alpha must be a finite number > 0"),
    (dict(max_evaluations=2.5), r"max_evaluations must be a positive integer"),
])
def test_backtracking_rejects_bad_constants(kwargs, message):
    with pytest.raises(ValueError, match=message):
        backtracking(lambda a: a, 0.0, -1.0, **kwargs)


@pytest.mark.parametrize("search", ["backtracking", "strong_wolfe"])
def test_the_direction_must_go_downhill_and_phi0_be_finite(search):
    fn = backtracking if search == "backtracking" else strong_wolfe
    phi = (lambda a: a) if search == "backtracking" else (lambda a: (a, 1.0))
    with pytest.raises(ValueError, match=r"downhill, phi'\(0\) < 0, got phi'\(0\) = 0.5"):
        fn(phi, 0.0, 0.5)
    with pytest.raises(ValueError, match=r"downhill"):
        fn(phi, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"downhill"):
        fn(phi, 0.0, math.nan)
    with pytest.raises(ValueError, match=r"phi\(0\) must be finite, got nan"):
        fn(phi, math.nan, -1.0)
